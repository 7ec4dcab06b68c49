/**
 * When to try a deferred message again, and when to give up.
 *
 * RFC 5321 §4.5.4.1: "the retry interval SHOULD be at least 30 minutes" and
 * "the give-up time generally needs to be at least 4-5 days"; both "MUST be
 * configurable". tern takes them from `queue.retry` and `queue.max_age`.
 *
 * @module
 */

/**
 * How long to wait before the next attempt, from the configured schedule.
 *
 * The schedule lists the waits after the first, second, third… attempt; once
 * it runs out, its last wait repeats. RFC 5321 §4.5.4.1 suggests waits of at
 * least 30 minutes between tries of one message; a short first wait (say one
 * minute) still helps with greylisting, which is why the schedule is a list.
 *
 * @param attempts The attempts made so far, at least 1.
 * @param schedule The waits in ms (`queue.retry`), not empty.
 * @returns The wait in ms before the next attempt.
 * @throws {RangeError} When `attempts` is below 1 or the schedule is empty.
 *
 * @example The last wait repeats
 * ```ts
 * import { retryDelay } from "./retry.ts";
 * import assert from "node:assert/strict";
 * const minute = 60_000;
 * const schedule = [1 * minute, 5 * minute, 60 * minute];
 * assert.equal(retryDelay(1, schedule), 1 * minute);
 * assert.equal(retryDelay(2, schedule), 5 * minute);
 * assert.equal(retryDelay(9, schedule), 60 * minute);
 * ```
 */
export function retryDelay(attempts: number, schedule: readonly number[]): number {
  if (!(attempts >= 1)) {
    throw new RangeError(
      `Cannot compute a retry delay after ${attempts} attempts: need at least 1`,
    );
  }
  const last = schedule.length - 1;
  const delay = schedule[Math.min(Math.floor(attempts) - 1, last)];
  if (delay === undefined) {
    throw new RangeError("Cannot compute a retry delay: the retry schedule is empty");
  }
  return delay;
}

/**
 * Tells whether a message has stayed in the queue long enough to give up on
 * it (RFC 5321 §4.5.4.1 give-up time, `queue.max_age`): its pending
 * recipients then bounce instead of being deferred again.
 *
 * @param arrival When the message was accepted, epoch ms.
 * @param now The current time, epoch ms.
 * @param maxAge The give-up time in ms.
 * @returns `true` once the message's age has reached `maxAge`.
 *
 * @example Five days is the usual give-up time
 * ```ts
 * import { isExpired } from "./retry.ts";
 * import assert from "node:assert/strict";
 * const day = 86_400_000;
 * assert.equal(isExpired(0, 4 * day, 5 * day), false);
 * assert.equal(isExpired(0, 5 * day, 5 * day), true);
 * ```
 */
export function isExpired(arrival: number, now: number, maxAge: number): boolean {
  return now - arrival >= maxAge;
}
