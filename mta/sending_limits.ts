/**
 * Per-account sending limits for submission: messages per hour and
 * recipients per day, so a stolen password cannot turn an account into a
 * spam cannon. Counts are kept in fixed buckets, in memory, per process:
 * 12 five-minute buckets for the hour and 24 one-hour buckets for the day,
 * so a window slides by a bucket at a time and an account costs a fixed,
 * small amount of memory. The map of accounts is bounded too.
 *
 * A refusal is temporary (`451 4.7.1`, RFC 5321 §4.2.5): the client keeps
 * the message and tries later, when the window has moved on.
 *
 * @module
 */

import type { Config, ListenerMode } from "../config/schema.ts";
import type { Logger } from "../log/logger.ts";
import { isPositive, REPLIES, type Reply } from "../smtp/reply.ts";
import type { ConnectionInfo, MessageSink, ServerHandlers } from "../smtp/server.ts";

/** How one window is cut into buckets. */
interface WindowShape {
  /** Bucket length, ms. */
  readonly bucketMs: number;
  /** Buckets in the window. */
  readonly buckets: number;
}

/** The hour: 12 buckets of 5 minutes. */
const HOUR: WindowShape = { bucketMs: 5 * 60_000, buckets: 12 };
/** The day: 24 buckets of 1 hour. */
const DAY: WindowShape = { bucketMs: 60 * 60_000, buckets: 24 };

/** Counts in a ring of buckets; each bucket remembers which period it counts. */
class BucketWindow {
  readonly #shape: WindowShape;
  readonly #counts: number[];
  readonly #periods: number[];

  constructor(shape: WindowShape) {
    this.#shape = shape;
    this.#counts = new Array<number>(shape.buckets).fill(0);
    this.#periods = new Array<number>(shape.buckets).fill(-Infinity);
  }

  /** The sum over the buckets still inside the window at `now`. */
  sum(now: number): number {
    const current = Math.floor(now / this.#shape.bucketMs);
    let total = 0;
    for (let i = 0; i < this.#shape.buckets; i++) {
      if (this.#periods[i]! > current - this.#shape.buckets) total += this.#counts[i]!;
    }
    return total;
  }

  add(amount: number, now: number): void {
    const period = Math.floor(now / this.#shape.bucketMs);
    const slot = ((period % this.#shape.buckets) + this.#shape.buckets) % this.#shape.buckets;
    if (this.#periods[slot] !== period) {
      this.#periods[slot] = period;
      this.#counts[slot] = 0;
    }
    this.#counts[slot]! += amount;
  }
}

/** One account's usage. */
class Usage {
  readonly messages = new BucketWindow(HOUR);
  readonly recipients = new BucketWindow(DAY);
  /** When it last sent, ms: idle accounts are forgotten first. */
  lastUsed = 0;
}

/** The limits in force (from `limits.user_messages_per_hour` and `limits.user_recipients_per_day`); 0 = no limit. */
export interface SendingLimitValues {
  /** Messages one account may submit per hour. */
  readonly userMessagesPerHour: number;
  /** Recipients one account may submit to per day. */
  readonly userRecipientsPerDay: number;
}

/** A limit reached: which one, its value, and how much is used. */
export interface SendingLimitHit {
  /** `messages_per_hour` or `recipients_per_day`. */
  readonly limit: "messages_per_hour" | "recipients_per_day";
  /** The limit's value. */
  readonly max: number;
  /** How much of it is used (for recipients, including the transaction's so far). */
  readonly used: number;
}

/** Options of {@linkcode SendingLimits}. */
export interface SendingLimitsOptions {
  /** Accounts remembered at most; the idlest are forgotten beyond it. @default {10000} */
  readonly maxAccounts?: number;
}

/**
 * Counts what each account submits and says when a limit is reached. Pure
 * apart from its map: the caller passes the clock and the limits in force,
 * so a configuration reload applies at the next check.
 *
 * In memory, per process: a restart forgets the counts, and several tern
 * processes would each count on their own.
 *
 * @example
 * ```ts
 * import { SendingLimits } from "./sending_limits.ts";
 * const limits = { userMessagesPerHour: 1, userRecipientsPerDay: 0 };
 * const counter = new SendingLimits();
 * console.log(counter.checkMessage("bob@example.test", limits, 0)); // null
 * counter.record("bob@example.test", 3, 0);
 * console.log(counter.checkMessage("bob@example.test", limits, 1000)?.limit); // "messages_per_hour"
 * ```
 */
export class SendingLimits {
  readonly #accounts = new Map<string, Usage>();
  readonly #maxAccounts: number;

  constructor(options: SendingLimitsOptions = {}) {
    this.#maxAccounts = options.maxAccounts ?? 10_000;
  }

  /** How many accounts are remembered (bounded by `maxAccounts`). */
  get size(): number {
    return this.#accounts.size;
  }

  /**
   * What the account has used at `now`: messages in the last hour,
   * recipients in the last day.
   *
   * @param account The authenticated user.
   * @param now The clock, ms.
   * @returns The two counts (0 for an account never seen).
   */
  check(account: string, now: number): { messages: number; recipients: number } {
    const usage = this.#accounts.get(account);
    if (usage === undefined) return { messages: 0, recipients: 0 };
    return { messages: usage.messages.sum(now), recipients: usage.recipients.sum(now) };
  }

  /**
   * May the account start one more message (at MAIL)?
   *
   * @param account The authenticated user.
   * @param limits The limits in force.
   * @param now The clock, ms.
   * @returns `null`, or the message limit it has reached.
   */
  checkMessage(account: string, limits: SendingLimitValues, now: number): SendingLimitHit | null {
    const max = limits.userMessagesPerHour;
    if (max === 0) return null;
    const used = this.check(account, now).messages;
    return used >= max ? { limit: "messages_per_hour", max, used } : null;
  }

  /**
   * May the account add one more recipient (at RCPT)?
   *
   * @param account The authenticated user.
   * @param pending Recipients already accepted in the transaction, not yet recorded.
   * @param limits The limits in force.
   * @param now The clock, ms.
   * @returns `null`, or the recipient limit it has reached.
   */
  checkRecipient(
    account: string,
    pending: number,
    limits: SendingLimitValues,
    now: number,
  ): SendingLimitHit | null {
    const max = limits.userRecipientsPerDay;
    if (max === 0) return null;
    const used = this.check(account, now).recipients + pending;
    return used >= max ? { limit: "recipients_per_day", max, used } : null;
  }

  /**
   * Counts one accepted message (after its `250`) and its accepted recipients.
   *
   * @param account The authenticated user.
   * @param recipients How many recipients the message was accepted for.
   * @param now The clock, ms.
   */
  record(account: string, recipients: number, now: number): void {
    let usage = this.#accounts.get(account);
    if (usage === undefined) {
      usage = new Usage();
      this.#makeRoom(now);
    } else {
      // Map order is recency order: the first entries are the idlest.
      this.#accounts.delete(account);
    }
    usage.messages.add(1, now);
    usage.recipients.add(recipients, now);
    usage.lastUsed = now;
    this.#accounts.set(account, usage);
  }

  /** Forgets accounts idle for a day (they count nothing), then the idlest, to stay in bounds. */
  #makeRoom(now: number): void {
    if (this.#accounts.size < this.#maxAccounts) return;
    const dayMs = DAY.bucketMs * DAY.buckets;
    for (const [account, usage] of this.#accounts) {
      if (now - usage.lastUsed <= dayMs) break; // recency order: the rest are newer
      this.#accounts.delete(account);
    }
    while (this.#accounts.size >= this.#maxAccounts) {
      const idlest = this.#accounts.keys().next();
      if (idlest.done) break;
      this.#accounts.delete(idlest.value);
    }
  }
}

/** What {@linkcode limitSending} needs. */
export interface LimitSendingOptions {
  /** The listener: only `submission` and `submissions` are limited. */
  readonly mode: ListenerMode;
  /** The counts, shared by every listener of the process. */
  readonly counter: SendingLimits;
  /** The limits in force, read at each check (so a reload applies at the next command). */
  readonly limits: () => Pick<Config["limits"], keyof SendingLimitValues>;
  /** Where `submission.limited` lines go. */
  readonly logger: Logger;
  /** The clock, ms. */
  readonly now: () => number;
}

/** Replies are awaited whether the inner handler answers at once or later. */
type MaybePromise<T> = T | Promise<T>;

function then<T, U>(value: MaybePromise<T>, next: (value: T) => U): MaybePromise<U> {
  return value instanceof Promise ? value.then(next) : next(value);
}

/**
 * Puts the per-account sending limits in front of a submission listener's
 * handlers: the message limit at MAIL, the recipient limit at RCPT (both
 * `451 4.7.1`, temporary, RFC 5321 §4.2.5, so the client keeps the message),
 * and the count after the `250` at the end of data, for the recipients
 * actually accepted. Only authenticated sessions are counted; other
 * listeners' handlers are returned as they are.
 *
 * @param handlers The listener's handlers.
 * @param options The counter, the limits, the logger, the clock.
 * @returns The handlers, limited.
 */
export function limitSending(
  handlers: ServerHandlers,
  options: LimitSendingOptions,
): ServerHandlers {
  if (options.mode !== "submission" && options.mode !== "submissions") return handlers;
  const { counter, logger, now } = options;
  // Recipients accepted in each session's open transaction, not yet counted.
  const pending = new WeakMap<ConnectionInfo, number>();
  const refuse = (user: string, connection: ConnectionInfo, hit: SendingLimitHit): Reply => {
    logger.log("warn", "submission.limited", undefined, {
      session: connection.id,
      client: connection.remoteAddress,
      user,
      limit: hit.limit,
      max: hit.max,
      used: hit.used,
    });
    const what = hit.limit === "messages_per_hour"
      ? `${hit.max} messages per hour`
      : `${hit.max} recipients per day`;
    return REPLIES.sendingLimited(what);
  };
  const { sender, recipient, open } = handlers;
  return {
    ...handlers,
    sender(reversePath, parameters, connection) {
      const answer = sender ? sender(reversePath, parameters, connection) : REPLIES.senderOk;
      const user = connection.authenticatedAs;
      if (user === null) return answer;
      return then(answer, (r) => {
        if (!isPositive(r)) return r;
        const hit = counter.checkMessage(user, options.limits(), now());
        if (hit !== null) return refuse(user, connection, hit);
        pending.set(connection, 0); // a new transaction
        return r;
      });
    },
    recipient(forwardPath, parameters, connection) {
      const answer = recipient(forwardPath, parameters, connection);
      const user = connection.authenticatedAs;
      if (user === null) return answer;
      return then(answer, (r) => {
        if (!isPositive(r)) return r;
        const soFar = pending.get(connection) ?? 0;
        const hit = counter.checkRecipient(user, soFar, options.limits(), now());
        if (hit !== null) return refuse(user, connection, hit);
        pending.set(connection, soFar + 1);
        return r;
      });
    },
    async open(envelope, connection): Promise<MessageSink | Reply> {
      const opened = await open(envelope, connection);
      const user = connection.authenticatedAs;
      if (user === null || !("commit" in opened)) return opened;
      return {
        write: (chunk) => opened.write(chunk),
        abort: () => opened.abort(),
        async commit(): Promise<Reply> {
          const r = await opened.commit();
          if (isPositive(r)) counter.record(user, envelope.forwardPaths.length, now());
          return r;
        },
      };
    },
  };
}
