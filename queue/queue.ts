/**
 * The queue as the rest of tern sees it: the contract every store
 * implements: {@linkcode KvQueue} (Deno KV, kv_queue.ts), the default and
 * the embedded store, and `PgQueue` (PostgreSQL, pg_queue.ts), which a
 * fleet of nodes shares. Both run the same tests (`queue_suite.ts`). The MTA, the `tern` commands and the delivery loop
 * depend on these interfaces only; the store is chosen where the queue is
 * opened (`queue/open_queue.ts`, for `mta/mta.ts` and `cli/_common.ts`).
 *
 * What every implementation promises:
 *
 * - RFC 5321 §6.1: {@linkcode IncomingMessage.commit} resolves only once the
 *   message is durable, and a crash at any instant leaves each message either
 *   wholly queued or absent (cleaned by {@linkcode Queue.recover});
 * - a message is claimed by at most one worker at a time, across processes
 *   sharing the store; a claim lapses by itself when its worker dies;
 * - `tern queue hold` and `delete` win over a delivery that ends at the same
 *   moment;
 * - failures are typed (errors.ts): {@linkcode QueueNotFoundError},
 *   {@linkcode QueueConflictError}, {@linkcode QueueUnavailableError}; an
 *   unknown id or a lost claim that callers expect is a return value instead.
 *
 * @module
 */

import type { Logger } from "../log/logger.ts";
import type { Envelope } from "../smtp/envelope.ts";
import type { ClaimedMessage, QueuedMessage, QueueRecipient, RecipientOutcome } from "./types.ts";

/** What every store is opened with (`KvQueueOptions`, `PgQueueOptions` add their own). */
export interface StoreOptions {
  /** Waits between attempts in ms (`queue.retry`); the last one repeats. RFC 5321 §4.5.4.1. */
  readonly retry: readonly number[];
  /** Give-up time in ms (`queue.max_age`): then pending recipients bounce. RFC 5321 §4.5.4.1. */
  readonly maxAge: number;
  /** Where events go. @default {NULL_LOGGER} */
  readonly logger?: Logger;
  /** How long a claim keeps a message from other workers unless renewed, ms. @default {60000} */
  readonly leaseMs?: number;
  /**
   * How long an upload may stay without activity before `recover` takes it
   * for dead and removes it, ms. Long enough that an upload running right
   * now in another process (`tern send`) is not harmed. @default {3600000}
   */
  readonly incompleteAfterMs?: number;
  /**
   * The most content octets that uploads together keep in memory for claims
   * taken at commit (`ReceiveInit.keepContent`). @default {67108864} (64 MiB)
   */
  readonly keepContentBudget?: number;
}

/** What {@linkcode Queue.receive} needs to start a message. */
export interface ReceiveInit {
  /** The envelope as accepted. */
  readonly envelope: Envelope;
  /** The recipients after alias expansion, in order; at least one. */
  readonly recipients: readonly QueueRecipient[];
  /** The client's address, or `"local"` for `tern send`. */
  readonly clientAddress: string;
  /** The arrival time, epoch ms: the queue id's time, the first due time. */
  readonly now: number;
  /**
   * Content up to this size stays in memory even when it goes to a spool
   * file, so that {@linkcode IncomingMessage.commitAndClaim} returns it and
   * its delivery does not read it back (within the queue's
   * `keepContentBudget`). Content of at most
   * {@linkcode Queue.inMemoryContentLimit} octets is always in memory.
   * @default {0}
   */
  readonly keepContent?: number;
  /**
   * The queue id, made by the caller with `newQueueId` (an SMTP session
   * worker names its messages itself, sparing a round trip to the store's
   * thread). Its commit fails with `QueueConflictError` if the id is taken.
   * @default {a new one}
   */
  readonly queueId?: string;
}

/** What {@linkcode IncomingMessage.commit} may add to the message. */
export interface CommitOptions {
  /**
   * Header fields that go on top of the content, known only once the content
   * is complete: a `DKIM-Signature` (RFC 6376 §5.6), an
   * `Authentication-Results` (RFC 8601 §5), a trace block. Stored with the
   * message and read back before the written content: `openContent`, a
   * claim's `content` and the message's `size` all include it. Each line ends
   * in CRLF. At most {@linkcode MAX_COMMIT_HEADER} octets.
   * @default {none}
   */
  readonly header?: Uint8Array;
  /**
   * Commit the message held (as `tern queue hold` leaves one): stored, listed
   * as held, never attempted until `release`. A quarantining milter asks for
   * this. Not with `commitAndClaim`: a held message cannot be claimed.
   * @default {false}
   */
  readonly hold?: boolean;
}

/** The most octets a value of {@linkcode Queue.setState} may hold. */
export const MAX_STATE_VALUE = 60 * 1024;

/** The most octets a name of {@linkcode Queue.setState} may hold. */
export const MAX_STATE_NAME = 512;

/**
 * Checks a state name and value against the limits every store keeps
 * (a value fits in one Deno KV value).
 *
 * @param name The state's name.
 * @param value Its value, or `null`.
 * @throws {RangeError} When either is too long.
 */
export function checkStateSize(name: string, value: string | null): void {
  const octets = (text: string) => new TextEncoder().encode(text).length;
  if (name === "" || octets(name) > MAX_STATE_NAME) {
    throw new RangeError(`State name must be 1 to ${MAX_STATE_NAME} octets`);
  }
  if (value !== null && octets(value) > MAX_STATE_VALUE) {
    throw new RangeError(`State value of ${name} is over ${MAX_STATE_VALUE} octets`);
  }
}

/** The most octets {@linkcode CommitOptions.header} may hold. */
export const MAX_COMMIT_HEADER = 32 * 1024;

/**
 * A message being received: content is streamed in with {@linkcode write},
 * then the message is made durable with {@linkcode commit} or dropped with
 * {@linkcode abort}. Memory stays bounded (a store buffers at most
 * {@linkcode Queue.inMemoryContentLimit} octets), or up to
 * {@linkcode ReceiveInit.keepContent}.
 */
export interface IncomingMessage {
  /** The queue id, known at once so it can go into the Received header. */
  readonly queueId: string;
  /** Octets written so far. */
  readonly size: number;
  /**
   * Appends content. Full chunks are stored as they fill, so memory stays
   * bounded however large the message.
   *
   * @param chunk The next octets, as received (after dot-unstuffing).
   * @returns When the octets are buffered or stored.
   */
  write(chunk: Uint8Array): Promise<void>;
  /**
   * Makes the message durable: when this resolves, and only then, the server
   * may answer `250 2.0.0 Ok: queued as <ID>` (RFC 5321 §6.1).
   *
   * @param options Header fields to put on top of the content.
   * @returns When the commit is on disk.
   * @throws {RangeError} When the header is over {@linkcode MAX_COMMIT_HEADER} octets.
   * @throws {QueueConflictError} When the upload was removed meanwhile (idle
   *   too long) or its queue id is taken; the upload is then removed.
   * @throws {QueueUnavailableError} When the store cannot be written.
   */
  commit(options?: CommitOptions): Promise<void>;
  /**
   * Makes the message durable, as {@linkcode commit} does, and claims it for
   * delivery by this process in the same commit: no other worker takes
   * it, and the delivery needs no read from the store. A message of at most
   * `inMemoryContentLimit` octets comes with its content in memory. If this process dies before
   * the attempt is recorded, the lease lapses (or {@linkcode Queue.recover}
   * ends it at the next start) and the message is delivered from the store.
   *
   * @param now The current time, epoch ms: the lease runs from it.
   * @param options Header fields to put on top of the content.
   * @returns The claim, as {@linkcode Queue.claimDue} would give it.
   * @throws {QueueConflictError} When the upload was removed meanwhile (idle
   *   too long) or its queue id is taken; the upload is then removed.
   * @throws {QueueUnavailableError} When the store cannot be written.
   */
  commitAndClaim(now: number, options?: CommitOptions): Promise<ClaimedMessage>;
  /**
   * Drops the message and whatever it has stored. Does nothing after a
   * commit or a second time.
   *
   * @returns When the stored parts are deleted.
   */
  abort(): Promise<void>;
}

/** Options of {@linkcode Queue.claimDue}. */
export interface ClaimOptions {
  /** The current time, epoch ms: messages due at or before it are claimed. */
  readonly now: number;
  /** The most messages to claim. */
  readonly limit: number;
  /** Queue ids not to claim (those this process is delivering). @default {none} */
  readonly exclude?: { has(queueId: string): boolean };
}

/** What {@linkcode Queue.recover} found. */
export interface RecoverResult {
  /** Uploads that never committed and were removed. */
  readonly incompleteRemoved: number;
  /** Messages whose lease has expired: their worker died; they are claimable again. */
  readonly leasesExpired: number;
  /** Spool files that no message or upload named (left by a crash during a removal). */
  readonly spoolOrphansRemoved: number;
}

/**
 * A durable mail queue: receive a message, claim it for delivery, record
 * each attempt until every recipient is sent or bounced, and inspect or
 * change it from `tern queue`. Several processes may use one store at once.
 *
 * Times are epoch ms passed in by the caller (`now`), so tests and the
 * retry schedule need no clock of their own.
 *
 * @example Queue a message, deliver it, and see it leave the queue
 * ```ts
 * import { KvQueue } from "./kv_queue.ts";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * const queue = await KvQueue.open(`${dir}/queue.sqlite3`, {
 *   retry: [60_000, 300_000],
 *   maxAge: 5 * 86_400_000,
 * });
 * try {
 *   const now = Date.now();
 *   const message = await queue.receive({
 *     envelope: { reversePath: "alice@example.test", forwardPaths: ["bob@example.net"], body: "8BITMIME", smtputf8: false },
 *     recipients: [{ address: "bob@example.net", originalRecipient: "bob@example.net", mailbox: null }],
 *     clientAddress: "192.0.2.1",
 *     now,
 *   });
 *   await message.write(new TextEncoder().encode("Subject: hi\r\n\r\nHello\r\n"));
 *   await message.commit(); // now, and only now, answer 250
 *
 *   const [claim] = await queue.claimDue({ now, limit: 10 });
 *   assert.ok(claim);
 *   const content = await new Response(queue.openContent(claim.message.queueId)).text();
 *   assert.equal(content, "Subject: hi\r\n\r\nHello\r\n");
 *   const final = await queue.recordAttempt(claim, [
 *     { index: 0, status: "sent", reply: { code: 250, enhancedStatus: "2.0.0", text: "Ok" } },
 *   ], now);
 *   assert.equal(final?.recipients[0]?.status, "sent");
 *   assert.equal(await queue.count(), 0);
 * } finally {
 *   await queue.close();
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 */
export interface Queue {
  /** How long a claim lasts unless renewed, ms (for a deliverer's renewal timer). */
  readonly leaseMs: number;

  /**
   * Content of at most this many octets comes in memory with a claim taken at
   * commit ({@linkcode ClaimedMessage.content}); a deliverer counts it as
   * memory it holds.
   */
  readonly inMemoryContentLimit: number;

  /**
   * Starts receiving a message. The queue id is assigned at once, so the
   * caller can write it into the Received header before any content. Nothing
   * is visible to readers until {@linkcode IncomingMessage.commit} resolves.
   *
   * @param init The envelope, the expanded recipients, the client, the time.
   * @returns The message to write content into, then commit or abort.
   * @throws {RangeError} When there are no recipients, or `now` is not a valid time.
   *
   * @example Receive, then change one's mind
   * ```ts
   * import { KvQueue } from "./kv_queue.ts";
   * import assert from "node:assert/strict";
   * const dir = await Deno.makeTempDir();
   * const queue = await KvQueue.open(`${dir}/queue.sqlite3`, { retry: [60_000], maxAge: 86_400_000 });
   * const message = await queue.receive({
   *   envelope: { reversePath: "", forwardPaths: ["bob@example.test"], body: "7BIT", smtputf8: false },
   *   recipients: [{ address: "bob@example.test", originalRecipient: "bob@example.test", mailbox: "bob@example.test" }],
   *   clientAddress: "local",
   *   now: Date.now(),
   * });
   * assert.equal(message.queueId.length, 14);
   * await message.write(new Uint8Array(100_000));
   * await message.abort();
   * assert.equal(await queue.count(), 0);
   * await queue.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  receive(init: ReceiveInit): Promise<IncomingMessage>;

  /**
   * Claims messages that are due: next attempt at or before `now`, not held,
   * with no live lease. Each claim is one checked write of a lease,
   * so two processes never claim the same message. A message whose previous
   * lease expired (its worker died mid-delivery) comes back with
   * `recovered: true`.
   *
   * While leased, the message's due time is its lease's end: if the worker
   * dies, the message becomes due again by itself.
   *
   * @param options The time, how many at most, ids to leave alone.
   * @returns The claimed messages, oldest due first.
   *
   * @example Two workers never get the same message
   * ```ts
   * import { KvQueue } from "./kv_queue.ts";
   * import assert from "node:assert/strict";
   * const dir = await Deno.makeTempDir();
   * const queue = await KvQueue.open(`${dir}/queue.sqlite3`, { retry: [60_000], maxAge: 86_400_000 });
   * const now = Date.now();
   * const message = await queue.receive({
   *   envelope: { reversePath: "a@example.test", forwardPaths: ["b@example.net"], body: "7BIT", smtputf8: false },
   *   recipients: [{ address: "b@example.net", originalRecipient: "b@example.net", mailbox: null }],
   *   clientAddress: "local",
   *   now,
   * });
   * await message.commit();
   * assert.equal((await queue.claimDue({ now, limit: 5 })).length, 1);
   * assert.equal((await queue.claimDue({ now, limit: 5 })).length, 0);
   * await queue.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  claimDue(options: ClaimOptions): Promise<ClaimedMessage[]>;

  /**
   * Extends a claim for a delivery that takes longer than a lease, so no
   * other worker takes the message meanwhile.
   *
   * @param claim The claim from {@linkcode claimDue}.
   * @param now The current time, epoch ms; the lease then ends at `now + leaseMs`.
   * @returns `true` when extended; `false` when the claim is no longer ours
   *   (the message was deleted, or another worker took it after our lease lapsed).
   *
   * @example Keep a claim during a long delivery
   * ```ts
   * import { KvQueue } from "./kv_queue.ts";
   * import assert from "node:assert/strict";
   * const dir = await Deno.makeTempDir();
   * const queue = await KvQueue.open(`${dir}/queue.sqlite3`, { retry: [60_000], maxAge: 86_400_000, leaseMs: 1_000 });
   * const now = Date.now();
   * const message = await queue.receive({
   *   envelope: { reversePath: "a@example.test", forwardPaths: ["b@example.net"], body: "7BIT", smtputf8: false },
   *   recipients: [{ address: "b@example.net", originalRecipient: "b@example.net", mailbox: null }],
   *   clientAddress: "local",
   *   now,
   * });
   * await message.commit();
   * const [claim] = await queue.claimDue({ now, limit: 1 });
   * assert.ok(claim && await queue.renewLease(claim, now + 900));
   * assert.equal((await queue.claimDue({ now: now + 1_500, limit: 1 })).length, 0);
   * await queue.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  renewLease(claim: ClaimedMessage, now: number): Promise<boolean>;

  /**
   * Whether a claim still holds the message as it was claimed: not held,
   * deleted or taken by another worker since. One read; for a claim that
   * waited before its delivery started (a `tern queue hold` or `delete`
   * meanwhile must win).
   *
   * @param claim The claim.
   * @returns `false` when the message changed or the claim is lost.
   */
  isClaimCurrent(claim: ClaimedMessage): Promise<boolean>;

  /**
   * Gives back a claim that was never attempted (a delivery loop stopping
   * with messages still waiting for a slot): the lease is deleted and the
   * message is due again at its next attempt time, for any worker, with no
   * attempt counted.
   *
   * @param claim The claim, from {@linkcode claimDue} or
   *   {@linkcode IncomingMessage.commitAndClaim}.
   * @returns `true` when given back; `false` when it was no longer ours.
   *
   * @example Claim, then give it back
   * ```ts
   * import { KvQueue } from "./kv_queue.ts";
   * import assert from "node:assert/strict";
   * const dir = await Deno.makeTempDir();
   * const queue = await KvQueue.open(`${dir}/queue.sqlite3`, { retry: [60_000], maxAge: 86_400_000 });
   * const now = Date.now();
   * const message = await queue.receive({
   *   envelope: { reversePath: "a@example.test", forwardPaths: ["b@example.net"], body: "7BIT", smtputf8: false },
   *   recipients: [{ address: "b@example.net", originalRecipient: "b@example.net", mailbox: null }],
   *   clientAddress: "local",
   *   now,
   * });
   * const claim = await message.commitAndClaim(now);
   * assert.equal((await queue.claimDue({ now, limit: 1 })).length, 0);
   * assert.ok(await queue.unclaim(claim));
   * const [again] = await queue.claimDue({ now, limit: 1 });
   * assert.equal(again?.recovered, false);
   * await queue.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  unclaim(claim: ClaimedMessage): Promise<boolean>;

  /**
   * Streams a message's stored content, chunk by chunk, reading a few chunks
   * at a time so memory stays bounded.
   *
   * @param queueId The message.
   * @returns The content, exactly as written; the stream fails if the message
   *   does not exist or is removed while being read.
   *
   * @example Read the content back
   * ```ts
   * import { KvQueue } from "./kv_queue.ts";
   * import assert from "node:assert/strict";
   * const dir = await Deno.makeTempDir();
   * const queue = await KvQueue.open(`${dir}/queue.sqlite3`, { retry: [60_000], maxAge: 86_400_000 });
   * const message = await queue.receive({
   *   envelope: { reversePath: "a@example.test", forwardPaths: ["b@example.net"], body: "7BIT", smtputf8: false },
   *   recipients: [{ address: "b@example.net", originalRecipient: "b@example.net", mailbox: null }],
   *   clientAddress: "local",
   *   now: Date.now(),
   * });
   * await message.write(new TextEncoder().encode("Subject: x\r\n\r\nbody\r\n"));
   * await message.commit();
   * const text = await new Response(queue.openContent(message.queueId)).text();
   * assert.equal(text, "Subject: x\r\n\r\nbody\r\n");
   * await queue.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  openContent(queueId: string): ReadableStream<Uint8Array>;

  /**
   * Records the outcome of one delivery attempt and releases the claim.
   *
   * Each named recipient gets `attempts + 1`, `lastAttempt`, `lastReply` and
   * its new status; a recipient already `sent` or `bounced` is left as it is.
   * RFC 5321 §4.5.4.1: a deferred recipient of a message older than
   * `maxAge` bounces instead, its reply text ending "(gave up after <age>)"
   * (logged as `queue.expired`). The next attempt is set from the retry
   * schedule and the most attempts among pending recipients.
   *
   * When every recipient is `sent` or `bounced` the message is removed and
   * its final record returned, so a DSN can name the bounced recipients.
   *
   * @param claim The claim from {@linkcode claimDue}; it must still be ours.
   * @param outcomes What happened to each recipient tried.
   * @param now When the attempt ended, epoch ms.
   * @returns The updated (or final) record; `null` when the claim was lost
   *   (the message was deleted, or another worker took it after our lease
   *   lapsed): then nothing is written.
   *
   * @example A temporary failure schedules a retry
   * ```ts
   * import { KvQueue } from "./kv_queue.ts";
   * import assert from "node:assert/strict";
   * const dir = await Deno.makeTempDir();
   * const queue = await KvQueue.open(`${dir}/queue.sqlite3`, { retry: [60_000, 300_000], maxAge: 86_400_000 });
   * const now = Date.now();
   * const message = await queue.receive({
   *   envelope: { reversePath: "a@example.test", forwardPaths: ["b@example.net"], body: "7BIT", smtputf8: false },
   *   recipients: [{ address: "b@example.net", originalRecipient: "b@example.net", mailbox: null }],
   *   clientAddress: "local",
   *   now,
   * });
   * await message.commit();
   * const [claim] = await queue.claimDue({ now, limit: 1 });
   * assert.ok(claim);
   * const record = await queue.recordAttempt(claim, [
   *   { index: 0, status: "deferred", reply: { code: 451, enhancedStatus: "4.7.1", text: "Greylisted" } },
   * ], now);
   * assert.equal(record?.recipients[0]?.status, "deferred");
   * assert.equal(record?.nextAttempt, now + 60_000);
   * await queue.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  recordAttempt(
    claim: ClaimedMessage,
    outcomes: readonly RecipientOutcome[],
    now: number,
  ): Promise<QueuedMessage | null>;

  /**
   * Reads one message.
   *
   * @param queueId The message.
   * @returns Its record, or `null` when there is no such (committed) message.
   *
   * @example Look a message up
   * ```ts
   * import { KvQueue } from "./kv_queue.ts";
   * import assert from "node:assert/strict";
   * const dir = await Deno.makeTempDir();
   * const queue = await KvQueue.open(`${dir}/queue.sqlite3`, { retry: [60_000], maxAge: 86_400_000 });
   * assert.equal(await queue.get("01JDQ4ZK8M3T7Q"), null);
   * await queue.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  get(queueId: string): Promise<QueuedMessage | null>;

  /**
   * Lists the queued messages in arrival order, reading a batch at a time so
   * memory stays bounded however long the queue.
   *
   * @returns The messages, oldest first.
   *
   * @example Print the queue
   * ```ts
   * import { KvQueue } from "./kv_queue.ts";
   * const dir = await Deno.makeTempDir();
   * const queue = await KvQueue.open(`${dir}/queue.sqlite3`, { retry: [60_000], maxAge: 86_400_000 });
   * for await (const message of queue.list()) {
   *   console.log(message.queueId, message.size, message.envelope.reversePath);
   * }
   * await queue.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  list(): AsyncIterable<QueuedMessage>;

  /**
   * Counts the queued messages (by reading the message keys).
   *
   * @returns How many committed messages are queued, held ones included.
   *
   * @example An empty queue
   * ```ts
   * import { KvQueue } from "./kv_queue.ts";
   * import assert from "node:assert/strict";
   * const dir = await Deno.makeTempDir();
   * const queue = await KvQueue.open(`${dir}/queue.sqlite3`, { retry: [60_000], maxAge: 86_400_000 });
   * assert.equal(await queue.count(), 0);
   * await queue.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  count(): Promise<number>;

  /**
   * Removes a message for good (`tern queue delete`), even during a delivery:
   * that delivery's {@linkcode recordAttempt} then returns `null`.
   *
   * @param queueId The message.
   * @returns `true` when it was removed, `false` for an unknown id.
   *
   * @example Delete an unknown id
   * ```ts
   * import { KvQueue } from "./kv_queue.ts";
   * import assert from "node:assert/strict";
   * const dir = await Deno.makeTempDir();
   * const queue = await KvQueue.open(`${dir}/queue.sqlite3`, { retry: [60_000], maxAge: 86_400_000 });
   * assert.equal(await queue.delete("01JDQ4ZK8M3T7Q"), false);
   * await queue.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  delete(queueId: string): Promise<boolean>;

  /**
   * Parks a message (`tern queue hold`): it is never attempted until
   * released. A delivery already running finishes, and the message stays held.
   *
   * @param queueId The message.
   * @returns `true` when it is now held, `false` for an unknown id.
   *
   * @example Hold an unknown id
   * ```ts
   * import { KvQueue } from "./kv_queue.ts";
   * import assert from "node:assert/strict";
   * const dir = await Deno.makeTempDir();
   * const queue = await KvQueue.open(`${dir}/queue.sqlite3`, { retry: [60_000], maxAge: 86_400_000 });
   * assert.equal(await queue.hold("01JDQ4ZK8M3T7Q"), false);
   * await queue.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  hold(queueId: string): Promise<boolean>;

  /**
   * Unparks a held message (`tern queue release`): it is due again at its
   * next attempt time (at once if that has passed).
   *
   * @param queueId The message.
   * @returns `true` when it is now not held, `false` for an unknown id.
   *
   * @example Release an unknown id
   * ```ts
   * import { KvQueue } from "./kv_queue.ts";
   * import assert from "node:assert/strict";
   * const dir = await Deno.makeTempDir();
   * const queue = await KvQueue.open(`${dir}/queue.sqlite3`, { retry: [60_000], maxAge: 86_400_000 });
   * assert.equal(await queue.release("01JDQ4ZK8M3T7Q"), false);
   * await queue.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  release(queueId: string): Promise<boolean>;

  /**
   * Makes every message that is not held due at `now` (`tern queue flush`).
   * Messages being delivered right now are left to their worker.
   *
   * @param now The current time, epoch ms.
   * @returns How many messages were made due.
   *
   * @example Flush an empty queue
   * ```ts
   * import { KvQueue } from "./kv_queue.ts";
   * import assert from "node:assert/strict";
   * const dir = await Deno.makeTempDir();
   * const queue = await KvQueue.open(`${dir}/queue.sqlite3`, { retry: [60_000], maxAge: 86_400_000 });
   * assert.equal(await queue.flush(Date.now()), 0);
   * await queue.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  flush(now: number): Promise<number>;

  /**
   * Makes one message due at `now` (`tern queue flush ID`), unless it is held
   * or being delivered right now (its worker records the outcome).
   *
   * @param queueId The message.
   * @param now The current time, epoch ms.
   * @returns `"due"` when it is due now, `"held"`, `"delivering"`, or
   *   `"unknown"` for an unknown id.
   *
   * @example Flush an unknown id
   * ```ts
   * import { KvQueue } from "./kv_queue.ts";
   * import assert from "node:assert/strict";
   * const dir = await Deno.makeTempDir();
   * const queue = await KvQueue.open(`${dir}/queue.sqlite3`, { retry: [60_000], maxAge: 86_400_000 });
   * assert.equal(await queue.flushOne("01JDQ4ZK8M3T7Q", Date.now()), "unknown");
   * await queue.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  flushOne(queueId: string, now: number): Promise<"due" | "held" | "delivering" | "unknown">;

  /**
   * Cleans up at start: removes uploads that never committed and have been
   * idle longer than `incompleteAfterMs` (a crash mid-stream, here or in
   * another process), finishes removals a crash interrupted, deletes spool
   * files that no message or upload names, and counts expired leases (those
   * messages are claimable again, as `recovered`).
   * Logs `queue.recovered`.
   *
   * @param now The current time, epoch ms.
   * @returns What was found.
   *
   * @example Recover an empty store
   * ```ts
   * import { KvQueue } from "./kv_queue.ts";
   * import assert from "node:assert/strict";
   * const dir = await Deno.makeTempDir();
   * const queue = await KvQueue.open(`${dir}/queue.sqlite3`, { retry: [60_000], maxAge: 86_400_000 });
   * assert.deepEqual(await queue.recover(Date.now()), {
   *   incompleteRemoved: 0,
   *   leasesExpired: 0,
   *   spoolOrphansRemoved: 0,
   * });
   * await queue.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  recover(now: number): Promise<RecoverResult>;

  /**
   * Reads a piece of the MTA's own state kept beside the messages (a cached
   * MTA-STS policy, report counts): shared by every process and node of the
   * store, like the messages.
   *
   * @param name The state's name, such as `mta-sts/example.org`.
   * @returns The value last set, or `null`.
   */
  getState(name: string): Promise<string | null>;

  /**
   * Sets or removes a piece of state (see {@linkcode getState}). Last write wins.
   *
   * @param name The state's name (at most 512 octets).
   * @param value The value (at most {@linkcode MAX_STATE_VALUE} octets), or `null` to remove it.
   * @returns When the write is durable.
   * @throws {RangeError} When the name or the value is too long.
   */
  setState(name: string, value: string | null): Promise<void>;

  /**
   * Waits for commits in flight, then closes the store. The queue cannot be
   * used afterwards.
   *
   * @returns When the store is closed.
   *
   * @example Close a queue
   * ```ts
   * import { KvQueue } from "./kv_queue.ts";
   * const dir = await Deno.makeTempDir();
   * const queue = await KvQueue.open(`${dir}/queue.sqlite3`, { retry: [60_000], maxAge: 86_400_000 });
   * await queue.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  close(): Promise<void>;
}

/**
 * The part of a {@linkcode Queue} the delivery loop and the deliverers use:
 * claim, renew, read, record, give back.
 */
export type DeliveryQueue = Pick<
  Queue,
  | "leaseMs"
  | "inMemoryContentLimit"
  | "claimDue"
  | "renewLease"
  | "isClaimCurrent"
  | "unclaim"
  | "openContent"
  | "recordAttempt"
>;
