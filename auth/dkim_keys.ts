/**
 * DKIM signing keys: reading a private key file (PEM; RSA of 2048 bits or
 * more, or Ed25519), making a new one, and writing the DNS record that
 * publishes its public half (RFC 6376 §3.6.1, RFC 8463 §4).
 *
 * @module
 */

import { openSslRsaSigner } from "./rsa_openssl.ts";
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
} from "node:crypto";

/** The signing algorithms tern uses: RFC 6376 §3.3.1 and RFC 8463 §3. */
export type DkimAlgorithm = "rsa-sha256" | "ed25519-sha256";

/** One signing key, for one domain and selector. */
export interface DkimKey {
  /** The signing domain (`d=`), lower case. */
  readonly domain: string;
  /** The selector (`s=`): the key's record is `<selector>._domainkey.<domain>`. */
  readonly selector: string;
  /** The algorithm the key signs with (`a=`). */
  readonly algorithm: DkimAlgorithm;
  /** The private key. */
  readonly privateKey: KeyObject;
  /** The public key as the `p=` tag of the DNS record publishes it (base64). */
  readonly publicKey: string;
  /**
   * The same RSA key loaded into OpenSSL, several times faster than
   * `node:crypto` here (rsa_openssl.ts); absent for Ed25519 keys and where
   * OpenSSL cannot be loaded.
   */
  readonly openSsl?: { sign(digest: Uint8Array): Uint8Array };
}

/** RSA keys shorter than this are refused: RFC 8301 §3.2 says signers MUST use at least 1024, and 2048 is today's norm. */
export const MIN_RSA_BITS = 2048;

/** A selector: dot-separated labels of letters, digits and hyphens (RFC 6376 §3.1). */
const SELECTOR =
  /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/i;

/** A domain name of letters, digits and hyphens, at least two labels. */
const DOMAIN =
  /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$/i;

/**
 * Whether a selector is well formed (RFC 6376 §3.1: labels as in a domain name).
 *
 * @param selector The selector.
 * @returns True when it may be used.
 */
export function isSelector(selector: string): boolean {
  return SELECTOR.test(selector);
}

/**
 * Reads a private key for signing.
 *
 * @param pem The key file's text: PEM, PKCS#8 (`BEGIN PRIVATE KEY`) or
 *   PKCS#1 (`BEGIN RSA PRIVATE KEY`), not encrypted.
 * @param domain The signing domain.
 * @param selector The selector its public key is published under.
 * @returns The key.
 * @throws {Error} With a one-line reason: not a PEM private key, an
 *   encrypted key, RSA below 2048 bits, another key type, a bad domain or selector.
 *
 * @example
 * ```ts
 * import { parseDkimKey } from "./dkim_keys.ts";
 * import { generateKeyPairSync } from "node:crypto";
 * import assert from "node:assert/strict";
 *
 * const { privateKey } = generateKeyPairSync("ed25519");
 * const pem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
 * const key = parseDkimKey(pem, "Example.test", "s2026");
 * assert.equal(key.algorithm, "ed25519-sha256");
 * assert.equal(key.domain, "example.test");
 * assert.throws(() => parseDkimKey("hello", "example.test", "s2026"), /not a PEM private key/);
 * ```
 */
export function parseDkimKey(pem: string, domain: string, selector: string): DkimKey {
  const name = domain.replace(/\.$/, "").toLowerCase();
  if (!DOMAIN.test(name)) throw new Error(`not a domain name: ${JSON.stringify(domain)}`);
  if (!isSelector(selector)) {
    throw new Error(
      `not a selector: ${JSON.stringify(selector)} (letters, digits, hyphens and dots)`,
    );
  }
  const privateKey = readPrivateKey(pem);
  const algorithm = keyAlgorithm(privateKey);
  const openSsl = algorithm === "rsa-sha256"
    ? openSslRsaSigner(privateKey.export({ type: "pkcs8", format: "pem" }).toString())
    : null;
  return Object.freeze({
    domain: name,
    selector: selector.toLowerCase(),
    algorithm,
    privateKey,
    publicKey: publicKeyData(privateKey),
    ...(openSsl === null ? {} : { openSsl }),
  });
}

function readPrivateKey(pem: string): KeyObject {
  const begin = /-----BEGIN ([A-Z0-9 ]+)-----/.exec(pem)?.[1];
  if (begin === undefined) throw new Error("not a PEM private key (no -----BEGIN line)");
  if (begin === "ENCRYPTED PRIVATE KEY" || /Proc-Type: 4,ENCRYPTED/.test(pem)) {
    throw new Error("the key is encrypted with a passphrase: store it unencrypted, mode 0600");
  }
  if (/PUBLIC KEY|CERTIFICATE/.test(begin)) {
    throw new Error(`not a PEM private key (found ${begin}): give the private key`);
  }
  try {
    return createPrivateKey({ key: pem, format: "pem" });
  } catch (error: unknown) {
    const why = error instanceof Error ? error.message.replace(/\s+/g, " ") : String(error);
    throw new Error(`not a PEM private key (${why})`);
  }
}

function keyAlgorithm(key: KeyObject): DkimAlgorithm {
  if (key.asymmetricKeyType === "ed25519") return "ed25519-sha256";
  if (key.asymmetricKeyType === "rsa") {
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS) {
      throw new Error(
        `RSA key of ${bits} bits is too short: use ${MIN_RSA_BITS} bits or more (tern dkim keygen makes one)`,
      );
    }
    return "rsa-sha256";
  }
  throw new Error(
    `unsupported key type ${
      key.asymmetricKeyType ?? "unknown"
    }: use RSA (2048 bits or more) or Ed25519`,
  );
}

/**
 * The `p=` value: for RSA the DER SubjectPublicKeyInfo (RFC 6376 §3.6.1, as
 * every signer publishes it), for Ed25519 the raw 32-octet key (RFC 8463 §4.2).
 */
function publicKeyData(privateKey: KeyObject): string {
  const publicKey = createPublicKey(privateKey);
  const der = new Uint8Array(publicKey.export({ type: "spki", format: "der" }));
  // An Ed25519 SubjectPublicKeyInfo is a fixed 12-octet prefix, then the key.
  const data = privateKey.asymmetricKeyType === "ed25519" ? der.subarray(der.length - 32) : der;
  return base64(data);
}

function base64(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/**
 * The text of the key's DNS record (RFC 6376 §3.6.1): `v=DKIM1; k=rsa; p=…`
 * or `v=DKIM1; k=ed25519; p=…`.
 *
 * @param key The key.
 * @returns The TXT record's text, not yet split into strings.
 */
export function dkimRecordText(key: DkimKey): string {
  const k = key.algorithm === "ed25519-sha256" ? "ed25519" : "rsa";
  return `v=DKIM1; k=${k}; p=${key.publicKey}`;
}

/**
 * A TXT value written as zone-file character-strings: quoted, each at most
 * 255 octets (RFC 1035 §3.3; a longer DKIM record is several strings, which
 * verifiers join, RFC 6376 §3.6.2.2).
 *
 * @param text The value (ASCII).
 * @returns `"…" "…"`.
 *
 * @example
 * ```ts
 * import { txtStrings } from "./dkim_keys.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(txtStrings("v=DMARC1; p=none"), '"v=DMARC1; p=none"');
 * assert.equal(txtStrings("a".repeat(300)), `"${"a".repeat(255)}" "${"a".repeat(45)}"`);
 * ```
 */
export function txtStrings(text: string): string {
  const parts: string[] = [];
  for (let i = 0; i < text.length || i === 0; i += 255) {
    parts.push(`"${text.slice(i, i + 255).replace(/["\\]/g, "\\$&")}"`);
  }
  return parts.join(" ");
}

/**
 * The key's DNS record as a zone-file line:
 * `S._domainkey.D. IN TXT "v=DKIM1; k=rsa; p=…" "…"`.
 *
 * @param key The key.
 * @returns One line, without a line break.
 */
export function dkimRecordLine(key: DkimKey): string {
  return `${key.selector}._domainkey.${key.domain}. IN TXT ${txtStrings(dkimRecordText(key))}`;
}

/** The key types `tern dkim keygen` makes. */
export type DkimKeyType = "rsa" | "ed25519";

/**
 * Makes a new private key: RSA of 2048 bits, or Ed25519.
 *
 * @param type The kind of key.
 * @returns The private key as PKCS#8 PEM.
 */
export function generateDkimKey(type: DkimKeyType): string {
  const pair = type === "rsa"
    ? generateKeyPairSync("rsa", { modulusLength: MIN_RSA_BITS })
    : generateKeyPairSync("ed25519");
  return pair.privateKey.export({ type: "pkcs8", format: "pem" }).toString();
}
