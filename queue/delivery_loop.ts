/**
 * The delivery loop: claims due messages from the queue and hands each to a
 * deliverer, at most `concurrency` at a time, then records what happened.
 *
 * Work written by another process (`tern send`, `tern queue flush`) is found
 * by polling the store every `pollMs`: Deno KV's `watch` and `listenQueue` do
 * not cross processes. Work committed in this process can skip the wait with
 * {@linkcode DeliveryLoop.wake}.
 *
 * @module
 */

import type { Logger } from "../log/logger.ts";
import type { ClaimedMessage, KvQueue } from "./kv_queue.ts";
import type { QueuedMessage, RecipientOutcome } from "./types.ts";

/**
 * Delivers one claimed message and says what happened to each recipient
 * tried. `content` opens the stored content (it may be called once per
 * next hop).
 */
export type Deliver = (
  claim: ClaimedMessage,
  content: () => ReadableStream<Uint8Array>,
) => Promise<RecipientOutcome[]>;

/** Options of {@linkcode DeliveryLoop}. */
export interface DeliveryLoopOptions {
  /** Delivers one message (to local mailboxes, to next hops). */
  readonly deliver: Deliver;
  /** The most messages in delivery at once. */
  readonly concurrency: number;
  /** How often to look for due work, ms. @default {1000} */
  readonly pollMs?: number;
  /** Where events go. */
  readonly logger: Logger;
  /** The clock. @default {Date.now} */
  readonly now?: () => number;
  /**
   * Called with the final record of a message that has left the queue (every
   * recipient sent or bounced): where a DSN to the sender starts.
   * @default {nothing}
   */
  readonly onDone?: (final: QueuedMessage) => void;
}

const DEFAULT_POLL_MS = 1000;

/**
 * Claims due messages and delivers them. An exception thrown by `deliver`
 * never loses a message: every pending recipient is deferred with code 0 and
 * enhanced status 4.3.0 (RFC 3463 "other or undefined mail system status"),
 * and the retry schedule applies. Leases are renewed during long deliveries.
 *
 * @example Deliver everything to a deliverer that accepts all
 * ```ts
 * import { DeliveryLoop } from "./delivery_loop.ts";
 * import { KvQueue } from "./kv_queue.ts";
 * import { NULL_LOGGER } from "../log/logger.ts";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * const queue = await KvQueue.open(`${dir}/queue.sqlite3`, { retry: [60_000], maxAge: 86_400_000 });
 * const done: string[] = [];
 * const loop = new DeliveryLoop(queue, {
 *   concurrency: 4,
 *   logger: NULL_LOGGER,
 *   deliver: (claim) =>
 *     Promise.resolve(claim.message.recipients.map((_, index) => ({
 *       index,
 *       status: "sent" as const,
 *       reply: { code: 250, enhancedStatus: "2.0.0", text: "Ok" },
 *     }))),
 *   onDone: (final) => done.push(final.queueId),
 * });
 * loop.start();
 * const message = await queue.receive({
 *   envelope: { reversePath: "a@example.test", forwardPaths: ["b@example.net"], body: "7BIT", smtputf8: false },
 *   recipients: [{ address: "b@example.net", originalRecipient: "b@example.net", mailbox: null }],
 *   clientAddress: "local",
 *   now: Date.now(),
 * });
 * await message.commit();
 * loop.wake();
 * while (done.length === 0) await new Promise((r) => setTimeout(r, 10));
 * await loop.stop();
 * assert.deepEqual(done, [message.queueId]);
 * await queue.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class DeliveryLoop {
  readonly #queue: KvQueue;
  readonly #deliver: Deliver;
  readonly #concurrency: number;
  readonly #pollMs: number;
  readonly #logger: Logger;
  readonly #now: () => number;
  readonly #onDone: ((final: QueuedMessage) => void) | undefined;
  readonly #inFlight = new Map<string, Promise<void>>();
  #running = false;
  #loop: Promise<void> | null = null;
  /** Set by wake(); cleared when the loop looks for work. */
  #woken = false;
  #wakeSleeper: (() => void) | null = null;

  /**
   * Makes a loop; nothing happens until {@linkcode DeliveryLoop.start}.
   *
   * @param queue The queue to take messages from.
   * @param options The deliverer, concurrency, poll interval, logger, clock.
   */
  constructor(queue: KvQueue, options: DeliveryLoopOptions) {
    if (!(options.concurrency >= 1)) {
      throw new RangeError(`Cannot start deliveries with concurrency ${options.concurrency}`);
    }
    this.#queue = queue;
    this.#deliver = options.deliver;
    this.#concurrency = Math.floor(options.concurrency);
    this.#pollMs = options.pollMs ?? DEFAULT_POLL_MS;
    this.#logger = options.logger;
    this.#now = options.now ?? Date.now;
    this.#onDone = options.onDone;
  }

  /** How many messages are being delivered right now. */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  /**
   * Starts claiming and delivering. Does nothing if already started.
   *
   * @example Start and stop
   * ```ts
   * import { DeliveryLoop } from "./delivery_loop.ts";
   * import { KvQueue } from "./kv_queue.ts";
   * import { NULL_LOGGER } from "../log/logger.ts";
   * const dir = await Deno.makeTempDir();
   * const queue = await KvQueue.open(`${dir}/queue.sqlite3`, { retry: [60_000], maxAge: 86_400_000 });
   * const loop = new DeliveryLoop(queue, { concurrency: 1, logger: NULL_LOGGER, deliver: () => Promise.resolve([]) });
   * loop.start();
   * await loop.stop();
   * await queue.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#loop = this.#run();
  }

  /**
   * Looks for due work now instead of at the next poll: call it after a
   * commit in this process.
   *
   * @example Nudge after queueing
   * ```ts
   * import { DeliveryLoop } from "./delivery_loop.ts";
   * import { KvQueue } from "./kv_queue.ts";
   * import { NULL_LOGGER } from "../log/logger.ts";
   * const dir = await Deno.makeTempDir();
   * const queue = await KvQueue.open(`${dir}/queue.sqlite3`, { retry: [60_000], maxAge: 86_400_000 });
   * const loop = new DeliveryLoop(queue, { concurrency: 1, logger: NULL_LOGGER, deliver: () => Promise.resolve([]) });
   * loop.start();
   * loop.wake();
   * await loop.stop();
   * await queue.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  wake(): void {
    this.#woken = true;
    this.#wakeSleeper?.();
  }

  /**
   * Stops claiming and waits for the deliveries in flight to be recorded.
   *
   * @returns When the loop has stopped and nothing is in flight.
   *
   * @example Stop a loop that was never started
   * ```ts
   * import { DeliveryLoop } from "./delivery_loop.ts";
   * import { KvQueue } from "./kv_queue.ts";
   * import { NULL_LOGGER } from "../log/logger.ts";
   * const dir = await Deno.makeTempDir();
   * const queue = await KvQueue.open(`${dir}/queue.sqlite3`, { retry: [60_000], maxAge: 86_400_000 });
   * const loop = new DeliveryLoop(queue, { concurrency: 1, logger: NULL_LOGGER, deliver: () => Promise.resolve([]) });
   * await loop.stop();
   * await queue.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  async stop(): Promise<void> {
    this.#running = false;
    this.wake();
    await this.#loop;
    this.#loop = null;
    while (this.#inFlight.size > 0) await Promise.all(this.#inFlight.values());
  }

  async #run(): Promise<void> {
    while (this.#running) {
      this.#woken = false;
      const free = this.#concurrency - this.#inFlight.size;
      let claims: ClaimedMessage[] = [];
      let failed = false;
      if (free > 0) {
        try {
          claims = await this.#queue.claimDue({
            now: this.#now(),
            limit: free,
            exclude: new Set(this.#inFlight.keys()),
          });
        } catch (error: unknown) {
          failed = true;
          this.#logger.log("error", "queue.error", undefined, {
            action: "claim",
            error: error instanceof Error ? error.message : String(error),
          });
        }
      }
      // Once claimed, a message is delivered even if stop() came meanwhile:
      // stop() waits for it, and its lease is released by recordAttempt.
      for (const claim of claims) this.#start(claim);
      if (!this.#running) break;
      // A full batch means more may be due: look again at once if there is room.
      const more = !failed && free > 0 && claims.length === free;
      if (more && this.#inFlight.size < this.#concurrency) continue;
      await this.#sleep();
    }
  }

  /** Waits for wake(), a finished delivery or the poll interval. */
  #sleep(): Promise<void> {
    if (this.#woken || !this.#running) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#wakeSleeper = null;
        resolve();
      };
      const timer = setTimeout(done, this.#pollMs);
      this.#wakeSleeper = done;
    });
  }

  #start(claim: ClaimedMessage): void {
    const id = claim.message.queueId;
    const delivery = this.#deliverOne(claim).finally(() => {
      this.#inFlight.delete(id);
      this.wake(); // a slot is free
    });
    this.#inFlight.set(id, delivery);
  }

  async #deliverOne(claim: ClaimedMessage): Promise<void> {
    const id = claim.message.queueId;
    // Renew the lease well before it lapses, so a slow delivery is not taken
    // over by another worker (which would deliver it twice).
    const renewal = setInterval(() => {
      this.#queue.renewLease(claim, this.#now()).then((ok) => {
        if (!ok) {
          this.#logger.log("warn", "queue.error", id, {
            action: "renew lease",
            reason: "lease lost",
          });
        }
      }).catch((error: unknown) => {
        this.#logger.log("error", "queue.error", id, {
          action: "renew lease",
          error: error instanceof Error ? error.message : String(error),
        });
      });
    }, Math.max(1, Math.floor(this.#queue.leaseMs / 3)));
    let outcomes: RecipientOutcome[];
    try {
      outcomes = await this.#deliver(claim, () => this.#queue.openContent(id));
    } catch (error: unknown) {
      // Never a lost message: an unexpected failure is a temporary one.
      const text = error instanceof Error ? error.message : String(error);
      this.#logger.log("error", "delivery.error", id, { error: text, status: "4.3.0" });
      outcomes = [];
      claim.message.recipients.forEach((r, index) => {
        if (r.status === "queued" || r.status === "deferred") {
          outcomes.push({
            index,
            status: "deferred",
            reply: { code: 0, enhancedStatus: "4.3.0", text },
          });
        }
      });
    } finally {
      clearInterval(renewal);
    }
    let record: QueuedMessage | null = null;
    try {
      record = await this.#queue.recordAttempt(claim, outcomes, this.#now());
    } catch (error: unknown) {
      // The lease lapses and the message is claimed again, as `recovered`.
      this.#logger.log("error", "queue.error", id, {
        action: "record attempt",
        error: error instanceof Error ? error.message : String(error),
      });
    }
    if (
      record !== null &&
      record.recipients.every((r) => r.status === "sent" || r.status === "bounced")
    ) {
      try {
        this.#onDone?.(record);
      } catch (error: unknown) {
        this.#logger.log("error", "queue.error", id, {
          action: "after delivery",
          error: error instanceof Error ? error.message : String(error),
        });
      }
    }
  }
}
