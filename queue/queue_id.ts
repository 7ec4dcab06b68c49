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
/** The bits of {@linkcode RANDOM_LENGTH} characters. */
const RANDOM_BITS = RANDOM_LENGTH * 5;
/** The largest time that fits in {@linkcode TIME_LENGTH} characters. */
const MAX_TIME = 32 ** TIME_LENGTH - 1;

/** Length of a queue id made by {@linkcode newQueueId}. */
export const QUEUE_ID_LENGTH: number = TIME_LENGTH + RANDOM_LENGTH;

/**
 * This thread's share of the random part: its top `bits` hold `slot`
 * ({@linkcode setQueueIdThread}); none while the process has one thread.
 */
let slot = { value: 0, bits: 0 };
/**
 * The last random part this thread gave for each of its recent milliseconds
 * (at most {@linkcode RECENT_MS} of them, the oldest forgotten first).
 */
const recent = new Map<number, number>();
/** How many milliseconds {@linkcode recent} remembers. */
const RECENT_MS = 4096;

/**
 * Gives this thread its own share of the ids, when several threads of one
 * process make them (the session workers): the top bits of each id's random
 * part hold `index`, so two threads never make the same id, whatever the
 * draws. Called once at a thread's start.
 *
 * @param index This thread: 0 for the main thread, 1 to `threads - 1` for the others.
 * @param threads Threads that make ids, the main thread included.
 * @throws {RangeError} When `index` is not one of those threads.
 */
export function setQueueIdThread(index: number, threads: number): void {
  if (!Number.isSafeInteger(threads) || threads < 1 || threads > 2 ** 10) {
    throw new RangeError(`Cannot share queue ids among ${threads} threads`);
  }
  if (!Number.isSafeInteger(index) || index < 0 || index >= threads) {
    throw new RangeError(`Cannot give queue ids to thread ${index} of ${threads}`);
  }
  slot = { value: index, bits: Math.ceil(Math.log2(threads)) };
  recent.clear();
}

/** A random part of this thread's share: its slot on top, random bits below. */
function drawRandom(): number {
  const [word = 0] = crypto.getRandomValues(new Uint32Array(1));
  const low = RANDOM_BITS - slot.bits;
  return slot.value * 2 ** low + (word % 2 ** low);
}

/**
 * Makes a queue id: 14 characters of upper-case Crockford base32, 9 for the
 * arrival time in epoch milliseconds and 5 for a random part.
 *
 * Ids sort by arrival (to the millisecond) and hold only `[0-9A-Z]`, so they
 * are safe in log lines, on a command line and in Maildir file names (which
 * must avoid `/` and `:`).
 *
 * A thread never makes the same id twice. Random parts alone would repeat:
 * two ids of one millisecond share theirs once in 33 million pairs, which a
 * server taking a thousand messages a second meets about once a day, and a
 * message delivered at acceptance is never checked against the store (two
 * messages with one id get one Maildir file name, and the second replaces
 * the first). So the first id of a millisecond gets a random part, and each
 * later one of that millisecond the one before it plus one. The thread
 * remembers its last {@linkcode RECENT_MS} milliseconds, which covers an
 * upload made again for an earlier arrival (a milter's new envelope).
 * Threads of one process draw from shares of their own
 * ({@linkcode setQueueIdThread}); ids of different processes (the nodes of a
 * fleet) are told apart by their random parts only, and a store refuses a
 * repeated one at commit.
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
  const ms = Math.floor(now);
  const before = recent.get(ms);
  let random: number;
  if (before === undefined) {
    random = drawRandom();
    if (recent.size >= RECENT_MS) recent.delete(recent.keys().next().value!);
  } else {
    // The next random part of the share, round to its start: a repeat would
    // take more ids in one millisecond than the share has (2^25 in one thread).
    const size = 2 ** (RANDOM_BITS - slot.bits);
    random = slot.value * size + (before + 1) % size;
  }
  recent.set(ms, random);
  return encode(ms, TIME_LENGTH) + encode(random, RANDOM_LENGTH);
}

/** `value` in `length` characters of Crockford base32, most significant first. */
function encode(value: number, length: number): string {
  let rest = value;
  let text = "";
  for (let i = 0; i < length; i++) {
    text = CROCKFORD.charAt(rest % 32) + text;
    rest = Math.floor(rest / 32);
  }
  return text;
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
