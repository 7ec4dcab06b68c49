/**
 * Password hashes for `accounts` in `tern.yaml`, made by `tern hash-password`
 * and checked when a client authenticates (AUTH PLAIN or LOGIN).
 *
 * The hash is scrypt (RFC 7914) with N = 2^15, r = 8, p = 1, a 16-byte random
 * salt and a 32-byte key, written as
 * `$scrypt$ln=15,r=8,p=1$<salt>$<key>` with both parts in base64 (no
 * padding). The password is normalized to Unicode NFC first (as RFC 8265's
 * OpaqueString profile does), so the same password typed on two systems that
 * compose accents differently still matches.
 *
 * @module
 */

import { randomBytes, scrypt, type ScryptOptions, timingSafeEqual } from "node:crypto";
import { Buffer } from "node:buffer";

/** The cost parameters of new hashes. */
const LOG2_N = 15;
const BLOCK_SIZE = 8;
const PARALLELISM = 1;
const SALT_BYTES = 16;
const KEY_BYTES = 32;

/** Limits on what a stored hash may ask for, so a hand-edited hash cannot exhaust memory or time. */
const MAX_LOG2_N = 20;
const MAX_BLOCK_SIZE = 32;
const MAX_PARALLELISM = 16;

const HASH_PATTERN =
  /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2})$/;

/** A hash string taken apart. */
interface ScryptHash {
  readonly log2N: number;
  readonly blockSize: number;
  readonly parallelism: number;
  readonly salt: Buffer;
  readonly key: Buffer;
}

function decodeHash(hash: string): ScryptHash | null {
  const match = HASH_PATTERN.exec(hash);
  if (match === null) return null;
  const [, ln = "", r = "", p = "", salt = "", key = ""] = match;
  const parsed = {
    log2N: Number(ln),
    blockSize: Number(r),
    parallelism: Number(p),
    salt: Buffer.from(salt, "base64"),
    key: Buffer.from(key, "base64"),
  };
  const isSane = parsed.log2N >= 1 && parsed.log2N <= MAX_LOG2_N &&
    parsed.blockSize >= 1 && parsed.blockSize <= MAX_BLOCK_SIZE &&
    parsed.parallelism >= 1 && parsed.parallelism <= MAX_PARALLELISM &&
    parsed.salt.length >= 8 && parsed.key.length >= 16 && parsed.key.length <= 64;
  return isSane ? parsed : null;
}

function deriveKey(
  password: string,
  hash: Omit<ScryptHash, "key">,
  length: number,
): Promise<Buffer> {
  const n = 2 ** hash.log2N;
  const options: ScryptOptions = {
    N: n,
    r: hash.blockSize,
    p: hash.parallelism,
    // scrypt needs about 128 · N · r · p bytes; Node's default ceiling (32 MiB) is just too low for N = 2^15, r = 8.
    maxmem: 128 * n * hash.blockSize * hash.parallelism + 16 * 1024 * 1024,
  };
  return new Promise((resolve, reject) => {
    scrypt(password.normalize("NFC"), hash.salt, length, options, (error, key) => {
      if (error === null) resolve(key);
      else reject(error);
    });
  });
}

function toBase64(bytes: Buffer): string {
  return bytes.toString("base64").replace(/=+$/, "");
}

/**
 * Hashes a password for an account in `tern.yaml` (what `tern hash-password`
 * prints). Each call uses a fresh random salt, so the same password gives a
 * different string every time. Takes about a tenth of a second, on purpose.
 *
 * @param password The password, not empty.
 * @returns The hash, `$scrypt$ln=15,r=8,p=1$<salt>$<key>`.
 * @throws {RangeError} When the password is empty.
 *
 * @example Hash a password
 * ```ts
 * import { hashPassword } from "./password.ts";
 * import assert from "node:assert/strict";
 *
 * const hash = await hashPassword("correct horse battery staple");
 * assert.match(hash, /^\$scrypt\$ln=15,r=8,p=1\$/);
 * ```
 */
export async function hashPassword(password: string): Promise<string> {
  if (password === "") throw new RangeError("Cannot hash an empty password");
  const params = {
    log2N: LOG2_N,
    blockSize: BLOCK_SIZE,
    parallelism: PARALLELISM,
    salt: randomBytes(SALT_BYTES),
  };
  const key = await deriveKey(password, params, KEY_BYTES);
  return `$scrypt$ln=${LOG2_N},r=${BLOCK_SIZE},p=${PARALLELISM}$${toBase64(params.salt)}$${
    toBase64(key)
  }`;
}

/**
 * Checks a password against a hash made by {@linkcode hashPassword}, in
 * constant time for a given hash. A malformed hash never matches (and never
 * throws), so a broken `accounts` entry locks the account rather than opening it.
 *
 * @param password The password the client sent.
 * @param hash The stored hash.
 * @returns Whether the password matches.
 *
 * @example Check a password
 * ```ts
 * import { hashPassword, verifyPassword } from "./password.ts";
 * import assert from "node:assert/strict";
 *
 * const hash = await hashPassword("s3cret");
 * assert.equal(await verifyPassword("s3cret", hash), true);
 * assert.equal(await verifyPassword("guess", hash), false);
 * assert.equal(await verifyPassword("s3cret", "not a hash"), false);
 * ```
 */
export async function verifyPassword(password: string, hash: string): Promise<boolean> {
  const stored = decodeHash(hash);
  if (stored === null) return false;
  try {
    const key = await deriveKey(password, stored, stored.key.length);
    return timingSafeEqual(key, stored.key);
  } catch {
    return false;
  }
}

/**
 * Tells whether a string is a well-formed hash as made by
 * {@linkcode hashPassword} (without checking any password against it). The
 * configuration uses it to refuse a plain-text password in `accounts`.
 *
 * @param hash The string to look at.
 * @returns Whether {@linkcode verifyPassword} could ever accept it.
 *
 * @example Tell a hash from a plain password
 * ```ts
 * import { isPasswordHash } from "./password.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(isPasswordHash("hunter2"), false);
 * assert.equal(
 *   isPasswordHash("$scrypt$ln=15,r=8,p=1$c2FsdHNhbHRzYWx0c2FsdA$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U"),
 *   true,
 * );
 * ```
 */
export function isPasswordHash(hash: string): boolean {
  return decodeHash(hash) !== null;
}
