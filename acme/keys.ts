/**
 * ECDSA P-256 keys (the account key and each certificate's key), made and
 * read with Web Crypto, kept as PKCS #8 PEM, and the base64url text JWS
 * uses (RFC 7515 §2).
 *
 * @module
 */

/** A P-256 key pair that can sign, with its private half exportable. */
export interface EcKeyPair {
  /** Signs (ECDSA with SHA-256). */
  readonly privateKey: CryptoKey;
  /** Its public half, for the JWK and the certificate's subject public key. */
  readonly publicKey: CryptoKey;
}

const ALGORITHM = { name: "ECDSA", namedCurve: "P-256" } as const;

/**
 * Makes a new P-256 key pair.
 *
 * @returns The pair.
 */
export async function generateKeyPair(): Promise<EcKeyPair> {
  const pair = await crypto.subtle.generateKey(ALGORITHM, true, ["sign", "verify"]);
  return { privateKey: pair.privateKey, publicKey: pair.publicKey };
}

/**
 * The private key as PKCS #8 PEM (`-----BEGIN PRIVATE KEY-----`), which
 * `node:tls` and openssl read.
 *
 * @param pair The pair.
 * @returns The PEM text.
 */
export async function exportPrivateKeyPem(pair: EcKeyPair): Promise<string> {
  const der = new Uint8Array(await crypto.subtle.exportKey("pkcs8", pair.privateKey));
  return toPem("PRIVATE KEY", der);
}

/**
 * Reads a key written by {@linkcode exportPrivateKeyPem}.
 *
 * @param pem PKCS #8 PEM of a P-256 key.
 * @returns The pair (the public half derived from the private one).
 * @throws {Error} When it is not a P-256 PKCS #8 key.
 */
export async function importPrivateKeyPem(pem: string): Promise<EcKeyPair> {
  const der = fromPem("PRIVATE KEY", pem);
  const privateKey = await crypto.subtle.importKey("pkcs8", der, ALGORITHM, true, ["sign"]);
  // The private JWK carries x and y: the public key without another format.
  const { kty, crv, x, y } = await crypto.subtle.exportKey("jwk", privateKey);
  if (kty !== "EC" || crv !== "P-256" || x === undefined || y === undefined) {
    throw new Error("not a P-256 key");
  }
  const publicKey = await crypto.subtle.importKey(
    "jwk",
    { kty, crv, x, y },
    ALGORITHM,
    true,
    ["verify"],
  );
  return { privateKey, publicKey };
}

/**
 * Signs with ECDSA P-256 and SHA-256.
 *
 * @param pair The key.
 * @param data What to sign.
 * @returns r then s, 64 bytes (the JWS form, RFC 7518 §3.4).
 */
export async function sign(pair: EcKeyPair, data: Uint8Array): Promise<Uint8Array> {
  const signature = await crypto.subtle.sign(
    { name: "ECDSA", hash: "SHA-256" },
    pair.privateKey,
    data as Uint8Array<ArrayBuffer>,
  );
  return new Uint8Array(signature);
}

/**
 * SHA-256.
 *
 * @param data Bytes or text (UTF-8).
 * @returns The digest.
 */
export async function sha256(data: Uint8Array | string): Promise<Uint8Array> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
}

/**
 * base64url without padding (RFC 7515 §2).
 *
 * @param data Bytes or text (UTF-8).
 * @returns The encoding.
 */
export function base64url(data: Uint8Array | string): string {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/**
 * PEM armour (RFC 7468), 64 characters a line.
 *
 * @param label Like `CERTIFICATE`.
 * @param der The bytes.
 * @returns The text, ending with a newline.
 */
export function toPem(label: string, der: Uint8Array): string {
  let binary = "";
  for (const byte of der) binary += String.fromCharCode(byte);
  const lines = btoa(binary).match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

/**
 * The bytes of the first PEM block with this label.
 *
 * @param label Like `PRIVATE KEY`.
 * @param pem The text.
 * @returns The bytes.
 * @throws {Error} When there is no such block.
 */
export function fromPem(label: string, pem: string): Uint8Array<ArrayBuffer> {
  const match = new RegExp(`-----BEGIN ${label}-----([^-]+)-----END ${label}-----`).exec(pem);
  if (match === null) throw new Error(`no ${label} in the PEM text`);
  const binary = atob(match[1]!.replace(/\s+/g, ""));
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}
