/**
 * The delivery loop: claims due messages from the queue and hands each to a
 * deliverer, at most `concurrency` at a time, then records what happened.
 *
 * Work written by another process (`tern send`, `tern queue flush`) is found
 * by polling the store every `pollMs`: Deno KV's `watch` and `listenQueue` do
 * not cross processes. Work committed in this process can skip the wait with
 * {@linkcode DeliveryLoop.wake}, or skip the store altogether: a message
 * committed and claimed at once (`IncomingMessage.commitAndClaim`)
 * is given to {@linkcode DeliveryLoop.handOff} with its content in memory, so
 * delivering it reads nothing from the store and recording it is one write.
 *
 * @module
 */

import type { Logger } from "../log/logger.ts";
import type { DeliveryQueue } from "./queue.ts";
import type { ClaimedMessage, QueuedMessage, RecipientOutcome } from "./types.ts";

/**
 * What the loop offers one delivery besides its message: a way out of its
 * slot for the part that only waits on other hosts, and the loop's stop.
 */
export interface DeliveryContext {
  /**
   * Aborted when the loop stops: a delivery should give up what it is only
   * waiting for (a connection, a greeting) and leave out the recipients it
   * did not attempt; a delivery that returns no outcome at all after the
   * abort is given back to the store unattempted.
   */
  readonly signal: AbortSignal;
  /**
   * Gives up this delivery's slot for the rest of it, which waits on other
   * hosts: the slot goes to the next message while this one keeps its claim
   * (its lease is still renewed). Call it once the local work is done.
   * Deliveries out of their slot are bounded (`offSlotLimit`); past the
   * bound it returns `false` and the delivery keeps its slot.
   *
   * @returns Whether the slot was given up.
   */
  leaveSlot(): boolean;
}

/**
 * Delivers one claimed message and says what happened to each recipient
 * tried. `content` opens the stored content (it may be called once per
 * next hop); `context` lets the delivery leave its slot while it waits on
 * the network, and tells it when the loop stops.
 */
export type Deliver = (
  claim: ClaimedMessage,
  content: () => ReadableStream<Uint8Array>,
  context: DeliveryContext,
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
  /**
   * The most handed-off claims waiting for a slot; past it,
   * {@linkcode DeliveryLoop.acceptsHandOff} says no and new messages wait
   * in the store. @default {4096}
   */
  readonly handOffLimit?: number;
  /** The most content octets the waiting claims may hold in memory. @default {32 MiB} */
  readonly handOffBytes?: number;
  /**
   * The most deliveries that may wait on other hosts out of a slot
   * ({@linkcode DeliveryContext.leaveSlot}), so a slow or dead next hop never
   * holds the slots local mail needs; each still holds its claim and lease.
   * @default {256}
   */
  readonly offSlotLimit?: number;
}

const DEFAULT_POLL_MS = 1000;
const DEFAULT_HAND_OFF_LIMIT = 4096;
/**
 * A hand-off that waited longer than this for a slot is checked against the
 * store before its delivery starts, so a `tern queue hold` or `delete` given
 * meanwhile wins. Shorter waits skip the read.
 */
const RECHECK_AFTER_MS = 1000;
const DEFAULT_HAND_OFF_BYTES = 32 * 1024 * 1024;
const DEFAULT_OFF_SLOT_LIMIT = 256;
/** The longest wait between claims while the store keeps failing, ms. */
const MAX_FAILED_POLL_MS = 5_000;

/** The content of a claim taken at commit, as a stream. */
function memoryStream(bytes: Uint8Array): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(bytes);
      controller.close();
    },
  });
}

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
  readonly #queue: DeliveryQueue;
  /** The store's {@linkcode DeliveryQueue.inMemoryContentLimit}, read once. */
  readonly #inMemoryLimit: number;
  readonly #deliver: Deliver;
  readonly #concurrency: number;
  readonly #pollMs: number;
  readonly #logger: Logger;
  readonly #now: () => number;
  readonly #onDone: ((final: QueuedMessage) => void) | undefined;
  /** Every claim being delivered, in a slot or out of one. */
  readonly #inFlight = new Map<string, Promise<void>>();
  /** The deliveries in flight that left their slot to wait on other hosts. */
  readonly #offSlot = new Set<string>();
  readonly #offSlotLimit: number;
  /** Aborted by stop(); renewed by start(). */
  #stopping = new AbortController();
  /**
   * Handed-off claims waiting for a slot, by queue id, oldest first (a Map
   * keeps insertion order), with when each was handed off (the loop's clock).
   */
  readonly #waiting = new Map<string, { claim: ClaimedMessage; since: number }>();
  /** What the poll must not claim: messages being delivered or waiting here. */
  readonly #ours = {
    has: (id: string): boolean => this.#inFlight.has(id) || this.#waiting.has(id),
  };
  /** Content octets the waiting claims hold in memory. */
  #waitingBytes = 0;
  readonly #handOffLimit: number;
  readonly #handOffBytes: number;
  /** When the store is next looked at even while handed-off claims wait. */
  #nextPoll = 0;
  /** Give-backs of claims handed off after stop(): stop() waits for them. */
  readonly #returning = new Set<Promise<void>>();
  #running = false;
  #loop: Promise<void> | null = null;
  /** Set by wake(); cleared when the loop looks for work. */
  #woken = false;
  /**
   * Whether the store may hold due messages the loop has not claimed: set by
   * wake() (mail committed without a hand-off) and by a poll that came back
   * full; cleared by a poll that did not. A finished delivery looks at the
   * store only then, or when the poll interval is up: with every message
   * handed off, a look per delivery would be a read per message for nothing.
   */
  #storeMayHaveMore = true;
  #wakeSleeper: (() => void) | null = null;
  /** Claims that failed in a row (the store unavailable); 0 after one that did not. */
  #claimFailures = 0;

  /**
   * Makes a loop; nothing happens until {@linkcode DeliveryLoop.start}.
   *
   * @param queue The queue to take messages from.
   * @param options The deliverer, concurrency, poll interval, logger, clock.
   */
  constructor(queue: DeliveryQueue, options: DeliveryLoopOptions) {
    if (!(options.concurrency >= 1)) {
      throw new RangeError(`Cannot start deliveries with concurrency ${options.concurrency}`);
    }
    this.#queue = queue;
    this.#inMemoryLimit = queue.inMemoryContentLimit;
    this.#deliver = options.deliver;
    this.#concurrency = Math.floor(options.concurrency);
    this.#pollMs = options.pollMs ?? DEFAULT_POLL_MS;
    this.#logger = options.logger;
    this.#now = options.now ?? Date.now;
    this.#onDone = options.onDone;
    this.#handOffLimit = options.handOffLimit ?? DEFAULT_HAND_OFF_LIMIT;
    this.#handOffBytes = options.handOffBytes ?? DEFAULT_HAND_OFF_BYTES;
    this.#offSlotLimit = Math.max(0, Math.floor(options.offSlotLimit ?? DEFAULT_OFF_SLOT_LIMIT));
  }

  /** How many messages are being delivered right now (in a slot or out of one). */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  /** How many deliveries in flight left their slot to wait on other hosts. */
  get offSlot(): number {
    return this.#offSlot.size;
  }

  /** Slots taken: deliveries in flight that have not left theirs. */
  get #busySlots(): number {
    return this.#inFlight.size - this.#offSlot.size;
  }

  /** How many handed-off claims wait for a slot. */
  get waiting(): number {
    return this.#waiting.size;
  }

  /**
   * Whether a message of `size` octets should be committed with a claim and
   * handed off ({@linkcode handOff}): the loop runs and its waiting list has
   * room. When not, commit it plainly; the loop finds it in the store.
   *
   * @param size The message's size in octets.
   * @returns `true` when a hand-off is welcome.
   */
  acceptsHandOff(size: number): boolean {
    const bytes = size <= this.#inMemoryLimit ? size : 0;
    return this.#running && this.waiting < this.#handOffLimit &&
      this.#waitingBytes + bytes <= this.#handOffBytes;
  }

  /**
   * Takes a message this process has just committed and claimed
   * (`IncomingMessage.commitAndClaim`): it is delivered as soon as
   * a slot is free, with its in-memory content, before messages from the
   * store (which still get a share of the slots at every poll). After
   * {@linkcode stop}, the claim is given back to the store instead.
   *
   * @param claim The claim returned by `commitAndClaim`.
   *
   * @example Commit, claim and hand off
   * ```ts
   * import { DeliveryLoop } from "./delivery_loop.ts";
   * import { KvQueue } from "./kv_queue.ts";
   * import { NULL_LOGGER } from "../log/logger.ts";
   * import assert from "node:assert/strict";
   *
   * const dir = await Deno.makeTempDir();
   * const queue = await KvQueue.open(`${dir}/queue.sqlite3`, { retry: [60_000], maxAge: 86_400_000 });
   * const seen: string[] = [];
   * const loop = new DeliveryLoop(queue, {
   *   concurrency: 2,
   *   pollMs: 60_000,
   *   logger: NULL_LOGGER,
   *   deliver: async (claim, content) => {
   *     seen.push(await new Response(content()).text());
   *     return [{ index: 0, status: "sent", reply: { code: 250, enhancedStatus: "2.0.0", text: "Ok" } }];
   *   },
   * });
   * loop.start();
   * const now = Date.now();
   * const message = await queue.receive({
   *   envelope: { reversePath: "a@example.test", forwardPaths: ["b@example.net"], body: "7BIT", smtputf8: false },
   *   recipients: [{ address: "b@example.net", originalRecipient: "b@example.net", mailbox: null }],
   *   clientAddress: "local",
   *   now,
   * });
   * await message.write(new TextEncoder().encode("Subject: hi\r\n\r\nHello\r\n"));
   * assert.ok(loop.acceptsHandOff(message.size));
   * loop.handOff(await message.commitAndClaim(now));
   * await loop.stop();
   * assert.deepEqual(seen, ["Subject: hi\r\n\r\nHello\r\n"]);
   * assert.equal(await queue.count(), 0);
   * await queue.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  handOff(claim: ClaimedMessage): void {
    if (!this.#running) {
      this.#giveBack(claim);
      return;
    }
    if (this.waiting === 0 && this.#busySlots < this.#concurrency) {
      this.#start(claim);
      return;
    }
    this.#waiting.set(claim.message.queueId, { claim, since: this.#now() });
    this.#waitingBytes += claim.content?.byteLength ?? 0;
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
    if (this.#stopping.signal.aborted) this.#stopping = new AbortController();
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
    this.#storeMayHaveMore = true;
    this.#nudge();
  }

  /** Wakes the loop to fill free slots, without a reason to read the store. */
  #nudge(): void {
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
    // Deliveries waiting on other hosts give up the wait (their claims go back).
    this.#stopping.abort(new Error("shutting down"));
    this.wake();
    await this.#loop;
    this.#loop = null;
    // Claims still waiting were never attempted: back to the store, due as before.
    for (let next = this.#takeWaiting(); next !== null; next = this.#takeWaiting()) {
      this.#giveBack(next.claim);
    }
    while (this.#inFlight.size > 0 || this.#returning.size > 0) {
      await Promise.all([...this.#inFlight.values(), ...this.#returning]);
    }
  }

  /** The oldest waiting handed-off claim, or `null`. */
  #takeWaiting(): { claim: ClaimedMessage; since: number } | null {
    for (const [id, waiting] of this.#waiting) {
      this.#waiting.delete(id);
      this.#waitingBytes -= waiting.claim.content?.byteLength ?? 0;
      return waiting;
    }
    return null;
  }

  /** Logs a store operation that threw: `queue.error` with what was being done. */
  #failed(level: "warn" | "error", id: string | undefined, action: string, error: unknown): void {
    this.#logger.log(level, "queue.error", id, {
      action,
      error: error instanceof Error ? error.message : String(error),
    });
  }

  /** Returns an unattempted claim to the store (a failure only delays it: the lease lapses). */
  #giveBack(claim: ClaimedMessage): void {
    const id = claim.message.queueId;
    const done = this.#queue.unclaim(claim).then(() => {}, (error: unknown) => {
      this.#failed("warn", id, "give back claim", error);
    }).finally(() => this.#returning.delete(done));
    this.#returning.add(done);
  }

  async #run(): Promise<void> {
    while (this.#running) {
      this.#woken = false;
      const now = this.#now();
      const polling = now >= this.#nextPoll;
      const free = this.#concurrency - this.#busySlots;
      // At each poll the store gets up to half the free slots (retries, mail
      // from other processes), so a steady stream of new mail cannot starve
      // it; handed-off claims take the rest, and whatever the store leaves.
      const limit = this.waiting > 0
        ? (polling ? Math.ceil(free / 2) : 0)
        : (polling || this.#storeMayHaveMore ? free : 0);
      let claims: ClaimedMessage[] = [];
      let failed = false;
      if (limit > 0) {
        if (polling) this.#nextPoll = now + this.#pollMs;
        try {
          claims = await this.#queue.claimDue({
            now,
            limit,
            exclude: this.#ours,
          });
          this.#claimFailures = 0;
        } catch (error: unknown) {
          failed = true;
          this.#claimFailures++;
          this.#failed("error", undefined, "claim", error);
        }
      }
      // Once claimed, a message is delivered even if stop() came meanwhile:
      // stop() waits for it, and its lease is released by recordAttempt.
      for (const claim of claims) this.#start(claim);
      if (!this.#running) break;
      while (this.#busySlots < this.#concurrency) {
        const next = this.#takeWaiting();
        if (next === null) break;
        this.#start(next.claim, next.since);
      }
      // A full batch means more may be due: look again at once if there is room.
      const more = !failed && limit > 0 && claims.length === limit;
      if (limit > 0) this.#storeMayHaveMore = more;
      if (more && this.#busySlots < this.#concurrency) continue;
      // With claims waiting, wake for the next poll; with a poll pending but
      // every slot busy, the next finished delivery wakes the loop.
      const untilPoll = this.#nextPoll - this.#now();
      await this.#sleep(
        failed
          ? this.#failedPollPause()
          : this.waiting > 0 && untilPoll > 0
          ? untilPoll
          : this.#pollMs,
      );
    }
  }

  /**
   * How long to wait after claims failed `#claimFailures` times in a row (a
   * store that cannot be reached): doubling from the poll interval up to
   * {@linkcode MAX_FAILED_POLL_MS}, so an outage is not a log line per poll.
   * A wake() (a commit, another node's notification) still tries at once.
   */
  #failedPollPause(): number {
    const doubled = this.#pollMs * 2 ** Math.min(this.#claimFailures - 1, 10);
    return Math.min(doubled, Math.max(this.#pollMs, MAX_FAILED_POLL_MS));
  }

  /** Waits for wake(), a finished delivery or `ms`. */
  #sleep(ms: number): Promise<void> {
    if (this.#woken || !this.#running) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#wakeSleeper = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#wakeSleeper = done;
    });
  }

  /** Delivers a claim in a slot of its own; `waitingSince` for one that waited in the list. */
  #start(claim: ClaimedMessage, waitingSince?: number): void {
    const id = claim.message.queueId;
    if (this.#inFlight.has(id)) {
      // Cannot happen through this loop's own poll, which leaves waiting
      // claims alone; kept so a second claim of one id never hides the first.
      this.#logger.log("warn", "queue.error", id, {
        action: "deliver",
        reason: "claimed again while waiting",
      });
      this.#nudge();
      return;
    }
    let left = false;
    let done = false;
    const context: DeliveryContext = {
      signal: this.#stopping.signal,
      leaveSlot: () => {
        if (left) return true;
        if (done || this.#offSlot.size >= this.#offSlotLimit) return false;
        left = true;
        this.#offSlot.add(id);
        this.#slotFreed();
        return true;
      },
    };
    const delivery: Promise<void> = this.#deliverOne(claim, context, waitingSince).finally(() => {
      done = true;
      if (this.#inFlight.get(id) === delivery) {
        this.#inFlight.delete(id);
        this.#offSlot.delete(id);
      }
      // A delivery out of its slot freed it already; it only makes room
      // under offSlotLimit, which needs nothing more than a look.
      if (left) this.#nudge();
      else this.#slotFreed();
    });
    this.#inFlight.set(id, delivery);
  }

  /**
   * A slot came free: it goes to the next waiting claim at once, unless the
   * store is due a look; then the loop shares the slots out.
   */
  #slotFreed(): void {
    const next = this.#running && this.#now() < this.#nextPoll ? this.#takeWaiting() : null;
    if (next !== null) this.#start(next.claim, next.since);
    else this.#nudge();
  }

  async #deliverOne(
    claim: ClaimedMessage,
    context: DeliveryContext,
    waitingSince?: number,
  ): Promise<void> {
    const id = claim.message.queueId;
    if (waitingSince !== undefined && this.#now() - waitingSince > RECHECK_AFTER_MS) {
      // Held or deleted while it waited: the operator's word wins. Give the
      // claim back, so a held message stays held and unleased.
      let current = true;
      try {
        current = await this.#queue.isClaimCurrent(claim);
      } catch (error: unknown) {
        this.#failed("error", id, "check before delivery", error);
      }
      if (!current) {
        this.#logger.log("info", "queue.error", id, {
          action: "deliver",
          reason: "held, deleted or taken while waiting",
        });
        await this.#queue.unclaim(claim).catch(() => false);
        return;
      }
    }
    // A handed-off claim may have waited: renew a lease that is half gone
    // before starting, and leave alone a message that is no longer ours.
    if (claim.lease.expires - this.#now() < this.#queue.leaseMs / 2) {
      let renewed = false;
      try {
        renewed = await this.#queue.renewLease(claim, this.#now());
      } catch (error: unknown) {
        this.#failed("error", id, "renew lease", error);
      }
      if (!renewed) {
        this.#logger.log("warn", "queue.error", id, {
          action: "deliver",
          reason: "lease lost before delivery",
        });
        return;
      }
    }
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
        this.#failed("error", id, "renew lease", error);
      });
    }, Math.max(1, Math.floor(this.#queue.leaseMs / 3)));
    let outcomes: RecipientOutcome[];
    try {
      const inMemory = claim.content;
      outcomes = await this.#deliver(
        claim,
        inMemory === undefined ? () => this.#queue.openContent(id) : () => memoryStream(inMemory),
        context,
      );
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
    if (outcomes.length === 0 && context.signal.aborted) {
      // Stopped before anything was tried: no attempt to count, due as before.
      await this.#queue.unclaim(claim).catch((error: unknown) => {
        this.#failed("warn", id, "give back claim", error);
      });
      return;
    }
    let record: QueuedMessage | null = null;
    try {
      record = await this.#queue.recordAttempt(claim, outcomes, this.#now());
    } catch (error: unknown) {
      // The lease lapses and the message is claimed again, as `recovered`.
      this.#failed("error", id, "record attempt", error);
    }
    if (
      record !== null &&
      record.recipients.every((r) => r.status === "sent" || r.status === "bounced")
    ) {
      try {
        this.#onDone?.(record);
      } catch (error: unknown) {
        this.#failed("error", id, "after delivery", error);
      }
    }
  }
}
