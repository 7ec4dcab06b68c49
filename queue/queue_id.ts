/**
 * Queue ids: the name a message carries from `250 2.0.0 Ok: queued as <ID>`
 * to the logs, `tern queue` and the Maildir file.
 *
 * @module
 */

/**
 * Crockford's base32 alphabet (https://www.crockford.com/base32.html): digits
 * and upper-case letters without I, L, O and U, in ASCII order, so that ids
 * compare as strings the way their timestamps compare as numbers.
 */
const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/** Characters that encode the arrival time: 32^9 ms is about 1,100 years. */
const TIME_LENGTH = 9;
/** Random characters: 25 bits, to tell apart messages of the same millisecond. */
const RANDOM_LENGTH = 5;
/** The largest time that fits in {@linkcode TIME_LENGTH} characters. */
const MAX_TIME = 32 ** TIME_LENGTH - 1;

/** Length of a queue id made by {@linkcode newQueueId}. */
export const QUEUE_ID_LENGTH: number = TIME_LENGTH + RANDOM_LENGTH;

/**
 * Makes a queue id: 14 characters of upper-case Crockford base32, 9 for the
 * arrival time in epoch milliseconds and 5 random ones.
 *
 * Ids sort by arrival (to the millisecond) and hold only `[0-9A-Z]`, so they
 * are safe in log lines, on a command line and in Maildir file names (which
 * must avoid `/` and `:`).
 *
 * @param now The arrival time, epoch ms (a whole number from 0 to 32^9 - 1).
 * @returns The new id, e.g. `"01JDQ4ZK8M3T7QX"`.
 * @throws {RangeError} When `now` is not a time that fits in 9 characters.
 *
 * @example Ids sort by arrival
 * ```ts
 * import { newQueueId } from "./queue_id.ts";
 * import assert from "node:assert/strict";
 * const first = newQueueId(Date.UTC(2025, 0, 1));
 * const second = newQueueId(Date.UTC(2025, 0, 1, 0, 0, 1));
 * assert.equal(first.length, 14);
 * assert.match(first, /^[0-9A-HJKMNP-TV-Z]{14}$/);
 * assert.ok(first < second);
 * ```
 */
export function newQueueId(now: number): string {
  if (!Number.isFinite(now) || now < 0 || now > MAX_TIME) {
    throw new RangeError(
      `Cannot make a queue id for time ${now}: not an epoch ms from 0 to ${MAX_TIME}`,
    );
  }
  let time = Math.floor(now);
  let id = "";
  for (let i = 0; i < TIME_LENGTH; i++) {
    id = CROCKFORD.charAt(time % 32) + id;
    time = Math.floor(time / 32);
  }
  const random = crypto.getRandomValues(new Uint8Array(RANDOM_LENGTH));
  for (const byte of random) id += CROCKFORD.charAt(byte & 31);
  return id;
}

/**
 * Tells whether a string has the shape of a queue id made by
 * {@linkcode newQueueId}; the `tern queue` commands use it to reject a typo
 * before touching the store.
 *
 * @param text What the user typed.
 * @returns `true` for 14 characters of upper-case Crockford base32.
 *
 * @example Check what a user typed
 * ```ts
 * import { isQueueId, newQueueId } from "./queue_id.ts";
 * import assert from "node:assert/strict";
 * assert.ok(isQueueId(newQueueId(Date.now())));
 * assert.ok(!isQueueId("not-an-id"));
 * ```
 */
export function isQueueId(text: string): boolean {
  return /^[0-9A-HJKMNP-TV-Z]{14}$/.test(text);
}
