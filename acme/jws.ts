/**
 * The JSON Web Signatures ACME requests are made of (RFC 8555 §6.2, RFC
 * 7515 flattened JSON serialization), signed ES256 with the account key, and
 * the key authorization challenges are answered with (RFC 8555 §8.1, the
 * JWK thumbprint of RFC 7638).
 *
 * @module
 */

import { base64url, type EcKeyPair, sha256, sign } from "./keys.ts";

/** The public account key as a JWK: exactly the members RFC 7638 §3.2 hashes for EC keys. */
export interface EcJwk {
  /** The curve, `P-256`. */
  readonly crv: string;
  /** `EC`. */
  readonly kty: string;
  /** The x coordinate, base64url. */
  readonly x: string;
  /** The y coordinate, base64url. */
  readonly y: string;
}

/** A flattened JWS, the body of every ACME POST. */
export interface FlattenedJws {
  /** The protected header, base64url JSON. */
  readonly protected: string;
  /** The payload, base64url JSON, or `""` for POST-as-GET (RFC 8555 §6.3). */
  readonly payload: string;
  /** The signature, base64url. */
  readonly signature: string;
}

/**
 * The public JWK of a key.
 *
 * @param pair The key.
 * @returns `{ crv, kty, x, y }`.
 */
export async function publicJwk(pair: EcKeyPair): Promise<EcJwk> {
  const jwk = await crypto.subtle.exportKey("jwk", pair.publicKey);
  return { crv: jwk.crv!, kty: jwk.kty!, x: jwk.x!, y: jwk.y! };
}

/**
 * The key authorization for a challenge token: `token.thumbprint`, where
 * the thumbprint is SHA-256 of the JWK's required members in lexical order
 * without spaces (RFC 7638 §3, RFC 8555 §8.1).
 *
 * @param token The challenge's token.
 * @param jwk The account's public key.
 * @returns The key authorization.
 */
export async function keyAuthorization(token: string, jwk: EcJwk): Promise<string> {
  const canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y });
  return `${token}.${base64url(await sha256(canonical))}`;
}

/** Who signs: the JWK itself (newAccount), or the account URL once known (RFC 8555 §6.2). */
export type Signer =
  | { readonly jwk: EcJwk }
  | { readonly kid: string };

/**
 * Signs one request.
 *
 * @param pair The account key.
 * @param signer `jwk` for newAccount, `kid` afterwards.
 * @param url The request URL, which the header must repeat.
 * @param nonce A fresh nonce from the server.
 * @param payload The JSON payload, or `null` for POST-as-GET.
 * @returns The body to POST.
 */
export async function signRequest(
  pair: EcKeyPair,
  signer: Signer,
  url: string,
  nonce: string,
  payload: unknown,
): Promise<FlattenedJws> {
  const header = { alg: "ES256", nonce, url, ...signer };
  const protectedPart = base64url(JSON.stringify(header));
  const payloadPart = payload === null ? "" : base64url(JSON.stringify(payload));
  const input = new TextEncoder().encode(`${protectedPart}.${payloadPart}`);
  const signature = base64url(await sign(pair, input));
  return { protected: protectedPart, payload: payloadPart, signature };
}
