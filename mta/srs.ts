/**
 * The Sender Rewriting Scheme (SRS), in the "SRS0" form of libsrs2 and
 * postsrsd, as pure functions.
 *
 * Mail that an alias forwards to another domain keeps its original sender,
 * so the next MTA checks SPF (RFC 7208) against the sender's domain and finds
 * our address not allowed. SRS rewrites the envelope sender into an address
 * of our own domain that encodes the original one:
 *
 * ```
 * SRS0=HHHH=TT=orig-domain=orig-local@srs-domain
 * ```
 *
 * - `TT`: the day the address was made, days since the epoch mod 1024, as
 *   two base32 characters (RFC 4648 §6 alphabet);
 * - `HHHH`: the first 4 characters of the base64 HMAC-SHA1, keyed with the
 *   secret, over `TT`, the domain and the local part, each in lower case
 *   (libsrs2 folds case so that an MTA that lower-cases addresses does not
 *   break the hash); compared without regard to case.
 *
 * A bounce to such an address is taken only when the hash verifies and the
 * address is at most {@linkcode SRS_MAX_AGE_DAYS} days old (so it cannot be
 * used as an open relay), and goes back to the original sender.
 *
 * @module
 */

import { createHmac, timingSafeEqual } from "node:crypto";

/** Days an SRS address stays valid for bounces (libsrs2's default maximum age). */
export const SRS_MAX_AGE_DAYS = 21;

/** RFC 4648 §6 base32 alphabet, as libsrs2 uses for the timestamp. */
const BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const DAY_MS = 86_400_000;
/** The timestamp wraps every 1024 days (two base32 characters). */
const TIMESTAMP_RANGE = 1024;
const HASH_LENGTH = 4;

/** What SRS needs: the secret and our domain. */
export interface SrsKey {
  /** The HMAC key. */
  readonly secret: string;
  /** The domain rewritten addresses are in. */
  readonly domain: string;
}

/** The outcome of reversing an address. */
export type SrsReversal =
  | { readonly kind: "valid"; readonly address: string }
  | { readonly kind: "invalid"; readonly reason: string };

/** The 2-character timestamp of a day: days since the epoch mod 1024, base32. */
export function srsTimestamp(nowMs: number): string {
  const days = Math.floor(nowMs / DAY_MS) % TIMESTAMP_RANGE;
  return BASE32[(days >> 5) & 31]! + BASE32[days & 31]!;
}

/** The hash: HMAC-SHA1 over the parts in lower case, base64, first 4 characters. */
export function srsHash(secret: string, parts: readonly string[]): string {
  const hmac = createHmac("sha1", secret);
  for (const part of parts) hmac.update(part.toLowerCase());
  return hmac.digest("base64").slice(0, HASH_LENGTH);
}

/** Splits at the last `@`. */
function split(address: string): { local: string; domain: string } | null {
  const at = address.lastIndexOf("@");
  if (at <= 0 || at === address.length - 1) return null;
  return { local: address.slice(0, at), domain: address.slice(at + 1) };
}

/**
 * Whether an address is an SRS0 address of the key's domain.
 *
 * @param address The address.
 * @param key The SRS domain (the secret is not used).
 * @returns Whether it looks like one (the hash is not checked).
 */
export function isSrsAddress(address: string, key: Pick<SrsKey, "domain">): boolean {
  const parts = split(address);
  return parts !== null && parts.domain.toLowerCase() === key.domain.toLowerCase() &&
    /^srs0[=+-]/i.test(parts.local);
}

/**
 * Rewrites a sender into an SRS0 address of our domain. The null sender and
 * an address that is already one of our SRS0 addresses are kept as they are.
 *
 * @param sender The original reverse-path, `local@domain`, or `""`.
 * @param key The secret and our domain.
 * @param nowMs The time, for the timestamp.
 * @returns The reverse-path to use.
 *
 * @example
 * ```ts
 * import { srsForward } from "./srs.ts";
 * const key = { secret: "s3cret", domain: "example.test" };
 * console.log(srsForward("carol@example.org", key, 0).replace(/=.{4}=/, "=HHHH="));
 * // "SRS0=HHHH=AA=example.org=carol@example.test"
 * ```
 */
export function srsForward(sender: string, key: SrsKey, nowMs: number): string {
  if (sender === "" || isSrsAddress(sender, key)) return sender;
  const parts = split(sender);
  if (parts === null) return sender;
  const timestamp = srsTimestamp(nowMs);
  const hash = srsHash(key.secret, [timestamp, parts.domain, parts.local]);
  return `SRS0=${hash}=${timestamp}=${parts.domain}=${parts.local}@${key.domain}`;
}

/**
 * Turns an SRS0 address back into the original sender, checking its hash and
 * age.
 *
 * @param address A recipient address of the SRS domain.
 * @param key The secret and our domain.
 * @param nowMs The time, for the age check.
 * @param maxAgeDays The oldest address taken. @default {SRS_MAX_AGE_DAYS}
 * @returns The original address, or why it is refused; `null` when it is no SRS0 address.
 *
 * @example A round trip, and a forgery
 * ```ts
 * import { srsForward, srsReverse } from "./srs.ts";
 * const key = { secret: "s3cret", domain: "example.test" };
 * const srs = srsForward("carol@example.org", key, Date.now());
 * console.log(srsReverse(srs, key, Date.now())); // { kind: "valid", address: "carol@example.org" }
 * console.log(srsReverse("SRS0=AAAA=AA=example.org=carol@example.test", key, 0)?.kind); // "invalid"
 * ```
 */
export function srsReverse(
  address: string,
  key: SrsKey,
  nowMs: number,
  maxAgeDays = SRS_MAX_AGE_DAYS,
): SrsReversal | null {
  if (!isSrsAddress(address, key)) return null;
  const local = split(address)!.local;
  // SRS0=HHHH=TT=domain=local: the original local part may itself hold "=".
  const m = /^srs0[=+-]([^=]+)=([^=]+)=([^=]+)=(.+)$/i.exec(local);
  if (m === null) return { kind: "invalid", reason: "malformed SRS address" };
  const [, hash = "", timestamp = "", domain = "", original = ""] = m;
  if (hash.length !== HASH_LENGTH) return { kind: "invalid", reason: "bad SRS hash" };
  const expected = srsHash(key.secret, [timestamp, domain, original]);
  const isMatch = timingSafeEqual(
    new TextEncoder().encode(expected.toLowerCase()),
    new TextEncoder().encode(hash.toLowerCase()),
  );
  if (!isMatch) return { kind: "invalid", reason: "bad SRS hash" };
  const then = decodeTimestamp(timestamp);
  if (then === null) return { kind: "invalid", reason: "bad SRS timestamp" };
  const today = Math.floor(nowMs / DAY_MS) % TIMESTAMP_RANGE;
  const age = (today - then + TIMESTAMP_RANGE) % TIMESTAMP_RANGE;
  if (age > maxAgeDays) return { kind: "invalid", reason: "SRS address expired" };
  return { kind: "valid", address: `${original}@${domain}` };
}

/** The day number of a 2-character base32 timestamp, or `null`. */
function decodeTimestamp(text: string): number | null {
  if (text.length !== 2) return null;
  const hi = BASE32.indexOf(text[0]!.toUpperCase());
  const lo = BASE32.indexOf(text[1]!.toUpperCase());
  return hi < 0 || lo < 0 ? null : (hi << 5) | lo;
}
