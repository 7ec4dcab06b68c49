/**
 * What recording one delivery attempt does to a message's recipients, the
 * same for every store: a final state never changes, a reply text is cut to
 * a bounded length, a temporary failure past `queue.max_age` becomes a
 * bounce (RFC 5321 §4.5.4.1), and the next attempt follows the retry
 * schedule. A store only reads the recipients and writes the result.
 *
 * @module
 */

import type { Logger } from "../log/logger.ts";
import type { RecipientOutcome, RecipientState, ReplySummary } from "./types.ts";
import { isExpired, retryDelay } from "./retry.ts";

/** Longest reply text kept per recipient, so a recipient always fits in one stored value. */
const MAX_REPLY_TEXT = 2_000;

/** The rules an attempt is recorded under: the queue's give-up time and where expiries are logged. */
export interface AttemptRules {
  /** Give-up time in ms (`queue.max_age`). */
  readonly maxAge: number;
  /** Where `queue.expired` is logged. */
  readonly logger: Logger;
}

/** Recipients after an attempt, and the indices that changed (ascending). */
export interface AppliedOutcomes {
  /** Every recipient, changed or not, in order. */
  readonly recipients: RecipientState[];
  /** Indices of the recipients the attempt changed, ascending. */
  readonly changed: number[];
}

/** Says how long a message waited, for "(gave up after 5d 0h)". */
function formatAge(ms: number): string {
  const minutes = Math.floor(ms / 60_000);
  const days = Math.floor(minutes / 1440);
  const hours = Math.floor((minutes % 1440) / 60);
  if (days > 0) return `${days}d ${hours}h`;
  if (hours > 0) return `${hours}h ${minutes % 60}m`;
  return `${minutes}m`;
}

/** Whether a recipient still waits for delivery (`queued` or `deferred`). */
export function isPending(r: RecipientState): boolean {
  return r.status === "queued" || r.status === "deferred";
}

/**
 * Applies one attempt's outcomes to a message's recipients; logs and marks
 * the ones that expire.
 *
 * @throws {RangeError} When an outcome names a recipient the message does not have.
 */
export function applyOutcomes(
  id: string,
  arrival: number,
  current: readonly RecipientState[],
  outcomes: readonly RecipientOutcome[],
  now: number,
  rules: AttemptRules,
): AppliedOutcomes {
  const recipients = [...current];
  const changed = new Set<number>();
  const expired = isExpired(arrival, now, rules.maxAge);
  for (const outcome of outcomes) {
    const before = recipients[outcome.index];
    if (before === undefined) {
      throw new RangeError(
        `Cannot record an outcome for recipient ${outcome.index} of message ${id}: it has ${recipients.length}`,
      );
    }
    if (!isPending(before)) continue; // a final state never changes
    let status: RecipientState["status"] = outcome.status;
    let reply: ReplySummary = {
      code: outcome.reply.code,
      enhancedStatus: outcome.reply.enhancedStatus,
      text: outcome.reply.text.slice(0, MAX_REPLY_TEXT),
    };
    if (status === "deferred" && expired) {
      // RFC 5321 §4.5.4.1: past the give-up time a temporary failure is final.
      const age = formatAge(now - arrival);
      status = "bounced";
      reply = { ...reply, text: `${reply.text} (gave up after ${age})` };
      rules.logger.log("warn", "queue.expired", id, {
        rcpt: `<${before.address}>`,
        age,
        status: reply.enhancedStatus,
      });
    }
    recipients[outcome.index] = {
      ...before,
      status,
      attempts: before.attempts + 1,
      lastAttempt: now,
      lastReply: reply,
    };
    changed.add(outcome.index);
  }
  return { recipients, changed: [...changed].sort((a, b) => a - b) };
}

/**
 * When the next attempt is due: the retry schedule's wait for the most
 * attempts made among the pending recipients (RFC 5321 §4.5.4.1).
 */
export function nextAttemptAt(
  pending: readonly RecipientState[],
  now: number,
  retry: readonly number[],
): number {
  const attempts = Math.max(1, ...pending.map((r) => r.attempts));
  return now + retryDelay(attempts, retry);
}
