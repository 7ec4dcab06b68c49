/**
 * DANE for SMTP (RFC 7672, RFC 7671) without I/O: reading TLSA records
 * (RFC 6698 §2.1), keeping the usable ones, and judging a server's
 * certificate chain against them.
 *
 * Usable for SMTP (RFC 7672 §3.1.3): DANE-TA(2) and DANE-EE(3), selectors
 * Cert(0) and SPKI(1), matching types Full(0), SHA2-256(1), SHA2-512(2).
 * PKIX-TA(0) and PKIX-EE(1) are not: an MTA has no agreed set of CAs.
 *
 * - DANE-EE: the server's own certificate (or key) must match; no name or
 *   date is checked (RFC 7672 §3.1.1).
 * - DANE-TA: a certificate of the chain the server sent must match, the
 *   chain must lead from the server's certificate up to it by signatures,
 *   and the server's certificate must be in date and name the MX host
 *   (RFC 7672 §3.1.2, §3.2.2).
 *
 * @module
 */

import { createHash, X509Certificate } from "node:crypto";

/** One TLSA record (RFC 6698 §2.1). */
export interface Tlsa {
  /** 0 PKIX-TA, 1 PKIX-EE, 2 DANE-TA, 3 DANE-EE. */
  readonly usage: number;
  /** 0 the whole certificate, 1 its SubjectPublicKeyInfo. */
  readonly selector: number;
  /** 0 the data itself, 1 its SHA-256, 2 its SHA-512. */
  readonly matchingType: number;
  /** The association data. */
  readonly data: Uint8Array;
}

/**
 * Reads a TLSA record's data.
 *
 * @param rdata The record data (usage, selector, matching type, data).
 * @returns The record, or `null` when it is too short.
 *
 * @example A DANE-EE SPKI SHA-256 record
 * ```ts
 * import { parseTlsa } from "./dane.ts";
 * const tlsa = parseTlsa(new Uint8Array([3, 1, 1, ...new Uint8Array(32)]));
 * console.log(tlsa?.usage, tlsa?.data.length); // 3 32
 * ```
 */
export function parseTlsa(rdata: Uint8Array): Tlsa | null {
  if (rdata.length < 4) return null;
  return {
    usage: rdata[0]!,
    selector: rdata[1]!,
    matchingType: rdata[2]!,
    data: rdata.slice(3),
  };
}

/**
 * Whether a TLSA record can be used for SMTP (RFC 7672 §3.1.3): DANE-TA or
 * DANE-EE, a known selector and matching type, a digest of the right length.
 *
 * @param tlsa The record.
 * @returns `true` when usable.
 */
export function isUsableTlsa(tlsa: Tlsa): boolean {
  if (tlsa.usage !== 2 && tlsa.usage !== 3) return false;
  if (tlsa.selector !== 0 && tlsa.selector !== 1) return false;
  if (tlsa.matchingType === 1) return tlsa.data.length === 32;
  if (tlsa.matchingType === 2) return tlsa.data.length === 64;
  return tlsa.matchingType === 0 && tlsa.data.length > 0;
}

/** The bytes a record's selector picks from a certificate (RFC 6698 §2.1.2). */
function selected(cert: X509Certificate, selector: number): Uint8Array {
  if (selector === 0) return new Uint8Array(cert.raw);
  return new Uint8Array(cert.publicKey.export({ type: "spki", format: "der" }));
}

/** Whether a certificate matches a record (RFC 6698 §2.1.3). */
function matches(tlsa: Tlsa, cert: X509Certificate): boolean {
  const bytes = selected(cert, tlsa.selector);
  const value = tlsa.matchingType === 0 ? bytes : new Uint8Array(
    createHash(tlsa.matchingType === 1 ? "sha256" : "sha512").update(bytes).digest(),
  );
  return value.length === tlsa.data.length && value.every((b, i) => b === tlsa.data[i]);
}

/**
 * Judges a server's certificate chain against usable TLSA records.
 *
 * @param records The usable records of the host (see {@linkcode isUsableTlsa}).
 * @param chain The chain the server sent, DER, its own certificate first.
 * @param names The names the server's certificate may carry for DANE-TA: the
 *   MX host name (and the TLSA base domain when it differs, RFC 7672 §3.2.2).
 * @param now The time, for DANE-TA's date check.
 * @returns `null` when a record matches, else why none did.
 */
export function checkDaneChain(
  records: readonly Tlsa[],
  chain: readonly Uint8Array[],
  names: readonly string[],
  now: number = Date.now(),
): string | null {
  let certs: X509Certificate[];
  try {
    certs = chain.map((der) => new X509Certificate(der));
  } catch {
    return "the server's certificate cannot be parsed";
  }
  const leaf = certs[0];
  if (leaf === undefined) return "the server sent no certificate";
  if (records.some((r) => r.usage === 3 && matches(r, leaf))) return null;
  for (const record of records.filter((r) => r.usage === 2)) {
    const at = certs.findIndex((c) => matches(record, c));
    if (at < 0) continue;
    if (!isSignedUpTo(certs, at)) continue;
    if (!isInDate(leaf, now)) return "the server's certificate is out of date (DANE-TA)";
    if (!names.some((n) => leaf.checkHost(n, { wildcards: true, singleLabelSubdomains: false }))) {
      return `the server's certificate does not name ${names.join(" or ")} (DANE-TA)`;
    }
    return null;
  }
  return "no TLSA record matches the server's certificate";
}

/** Whether each certificate from the leaf up to `top` is signed by the next one. */
function isSignedUpTo(certs: readonly X509Certificate[], top: number): boolean {
  for (let i = 0; i < top; i++) {
    const child = certs[i]!;
    const issuer = certs[i + 1]!;
    try {
      if (!child.checkIssued(issuer) || !child.verify(issuer.publicKey)) return false;
    } catch {
      return false;
    }
  }
  return true;
}

function isInDate(cert: X509Certificate, now: number): boolean {
  return Date.parse(cert.validFrom) <= now && now <= Date.parse(cert.validTo);
}
