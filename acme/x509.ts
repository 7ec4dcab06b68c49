/**
 * The certificate signing request sent to finalize an order (RFC 8555
 * §7.4, PKCS #10 of RFC 2986), and self-signed certificates: the temporary
 * one served until the CA's arrives, and the tls-alpn-01 challenge
 * certificate (RFC 8737 §3). Both signed with ECDSA P-256 / SHA-256.
 *
 * @module
 */

import {
  bitString,
  booleanTrue,
  contextTag,
  type Der,
  ecdsaSignatureToDer,
  integer,
  octetString,
  oid,
  sequence,
  set,
  time,
  utf8String,
} from "./der.ts";
import { type EcKeyPair, sign } from "./keys.ts";

const ECDSA_WITH_SHA256 = "1.2.840.10045.4.3.2";
const COMMON_NAME = "2.5.4.3";
const SUBJECT_ALT_NAME = "2.5.29.17";
const BASIC_CONSTRAINTS = "2.5.29.19";
const EXTENSION_REQUEST = "1.2.840.113549.1.9.14";
/** id-pe-acmeIdentifier (RFC 8737 §6.1). */
const ACME_IDENTIFIER = "1.3.6.1.5.5.7.1.31";

/** The signature algorithm, with no parameters (RFC 5758 §3.2). */
function signatureAlgorithm(): Der {
  return sequence(oid(ECDSA_WITH_SHA256));
}

/** `CN=<name>`; a CN holds at most 64 characters (RFC 5280 upper bound), so a longer name goes in SAN only. */
function name(commonName: string): Der {
  if (commonName.length > 64) return sequence();
  return sequence(set(sequence(oid(COMMON_NAME), utf8String(commonName))));
}

/** One extension: its id, critical or not, and its value (RFC 5280 §4.1). */
function extension(id: string, value: Der, critical = false): Der {
  return critical
    ? sequence(oid(id), booleanTrue(), octetString(value))
    : sequence(oid(id), octetString(value));
}

/** subjectAltName with dNSNames (RFC 5280 §4.2.1.6: `[2] IMPLICIT IA5String`). */
function subjectAltName(domains: readonly string[]): Der {
  const names = domains.map((d) => contextTag(2, new TextEncoder().encode(d), false));
  return extension(SUBJECT_ALT_NAME, sequence(...names));
}

async function spki(pair: EcKeyPair): Promise<Der> {
  return new Uint8Array(await crypto.subtle.exportKey("spki", pair.publicKey));
}

/** Signs a to-be-signed structure and wraps it with the algorithm and signature. */
async function signed(pair: EcKeyPair, tbs: Der): Promise<Der> {
  const signature = ecdsaSignatureToDer(await sign(pair, tbs));
  return sequence(tbs, signatureAlgorithm(), bitString(signature));
}

/**
 * A PKCS #10 request for the names, signed by the certificate's key: the
 * CA takes the names from the subjectAltName extension request (RFC 8555
 * §7.4), the first also as the common name.
 *
 * @param pair The certificate's key (never the account key, RFC 8555 §11.1).
 * @param domains The names, at least one.
 * @returns The DER request.
 */
export async function createCsr(pair: EcKeyPair, domains: readonly string[]): Promise<Der> {
  const extensionRequest = sequence(
    oid(EXTENSION_REQUEST),
    set(sequence(subjectAltName(domains))),
  );
  const info = sequence(
    integer(0),
    name(domains[0]!),
    await spki(pair),
    contextTag(0, [extensionRequest]),
  );
  return signed(pair, info);
}

/** What {@linkcode createSelfSigned} puts in the certificate. */
export interface SelfSignedOptions {
  /** The names (subjectAltName), the first also the common name. */
  readonly domains: readonly string[];
  /** Valid from. */
  readonly notBefore: Date;
  /** Valid until. */
  readonly notAfter: Date;
  /**
   * For a tls-alpn-01 answer: SHA-256 of the key authorization, carried in
   * the critical acmeIdentifier extension (RFC 8737 §3).
   */
  readonly acmeIdentifier?: Uint8Array;
}

/**
 * A self-signed X.509 v3 certificate.
 *
 * @param pair Its key, which also signs it.
 * @param options Names, validity, and the acmeIdentifier for tls-alpn-01.
 * @returns The DER certificate.
 */
export async function createSelfSigned(pair: EcKeyPair, options: SelfSignedOptions): Promise<Der> {
  const serial = crypto.getRandomValues(new Uint8Array(16));
  serial[0]! &= 0x7f; // positive (RFC 5280 §4.1.2.2)
  const subject = name(options.domains[0]!);
  const extensions = [
    extension(BASIC_CONSTRAINTS, sequence(), true),
    subjectAltName(options.domains),
  ];
  if (options.acmeIdentifier !== undefined) {
    // RFC 8737 §3: extnValue is Authorization ::= OCTET STRING (SIZE (32)), critical.
    extensions.push(extension(ACME_IDENTIFIER, octetString(options.acmeIdentifier), true));
  }
  const tbs = sequence(
    contextTag(0, [integer(2)]), // v3
    integer(serial),
    signatureAlgorithm(),
    subject,
    sequence(time(options.notBefore), time(options.notAfter)),
    subject,
    await spki(pair),
    contextTag(3, [sequence(...extensions)]),
  );
  return signed(pair, tbs);
}
