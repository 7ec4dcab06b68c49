/**
 * The durable queue in a Deno KV store: the {@linkcode Queue} implementation
 * tern runs on. Messages accepted by the SMTP server or `tern send` are kept
 * until every recipient is delivered or bounced.
 *
 * ## The promise
 *
 * RFC 5321 §6.1: once the server has answered the end of data with a 250, "it
 * MUST NOT lose the message for frivolous reasons, such as because the host
 * later crashes". So `250 2.0.0 Ok: queued as <ID>` is sent only after
 * {@linkcode IncomingMessage.commit} resolves, and a commit is one KV atomic
 * operation, fsynced by SQLite. A crash at any instant leaves each message
 * either wholly queued or absent: invisible to every reader, and cleaned by
 * {@linkcode KvQueue.recover} at the next start.
 *
 * The parts live beside this file, one concept each: the key layout and
 * stored records (kv_keys.ts), sizing and committing atomic operations
 * (kv_atomic.ts), sharing commits (group_committer.ts), the upload
 * (kv_upload.ts), the spool files (spool.ts) and the store-independent rules
 * of an attempt (attempt.ts).
 *
 * **Cross-process coordination.** The server, `tern send` and `tern queue` may
 * open the same file at once, and KV `watch`/`listenQueue` do not cross
 * processes. So every change is a read, then an atomic operation that checks
 * the versionstamps of what was read: two claimers cannot both take a lease,
 * a `tern queue hold` cannot be overwritten by a delivery that ends at the
 * same time, and a removal that needs several operations leaves a `removing`
 * marker so a crash half-way is finished at the next start. New work written
 * by another process is found by polling the due index. Deno KV's SQLite
 * store does not wait when another connection holds the write lock (it fails
 * at once with "database is locked"), so every write is retried after a
 * short random pause; nothing was written by the failed try.
 *
 * **Limits.** A KV value holds at most 64 KiB; an atomic operation at most
 * 1,000 mutations, 100 checks, 800 KiB of keys and values and 80 KiB of keys.
 * Content is chunked, every recipient has its own key (up to 10,000 per
 * message, or more), and every write is sized against those limits.
 *
 * @module
 */

import { dirname } from "node:path";
import { createPrivateFile, makePrivate, PRIVATE_DIRECTORY_MODE } from "../fs/private.ts";
import { type Logger, NULL_LOGGER } from "../log/logger.ts";
import type { ClaimedMessage, QueuedMessage, RecipientOutcome, RecipientState } from "./types.ts";
import {
  checkStateSize,
  type ClaimOptions,
  type IncomingMessage,
  type Queue,
  type ReceiveInit,
  type RecoverResult,
  type StoreOptions,
} from "./queue.ts";
import { QueueConflictError, QueueUnavailableError } from "./errors.ts";
import { newQueueId } from "./queue_id.ts";
import { Spool } from "./spool.ts";
import { applyOutcomes, isPending, nextAttemptAt } from "./attempt.ts";
import {
  commitOp,
  type Cost,
  costOf,
  del,
  fitsBudget,
  type Mutation,
  NO_COST,
  retryLocked,
  set,
  splitIntoOps,
} from "./kv_atomic.ts";
import { GroupCommitter } from "./group_committer.ts";
import {
  CHUNK_SIZE,
  type ContentCounts,
  contentDeletes,
  HOST,
  type IncomingRecord,
  isDeadLocalProcess,
  KEY,
  PREFIX,
  rescheduled,
  type StoredLease,
  type StoredMeta,
  toMessage,
} from "./kv_keys.ts";
import { Upload, type UploadContext } from "./kv_upload.ts";
import {
  listMessages,
  readContent,
  readEnvelope,
  readMessage,
  readMetaAndLease,
  readRecipients,
} from "./kv_read.ts";

/** Default lease: how long a claim keeps other workers away, unless renewed. */
const DEFAULT_LEASE_MS = 60_000;
const DEFAULT_KEEP_CONTENT_BUDGET = 64 * 1024 * 1024;
/** Default age after which an upload with no activity is taken for dead. */
const DEFAULT_INCOMPLETE_AFTER_MS = 60 * 60_000;
/** How many times a change that lost to a concurrent one is tried again before giving up. */
const CONFLICT_RETRIES = 8;
/**
 * The record of an attempt waits to share the next commit (one fsync for
 * both): no client's reply waits on it, and a crash before it is durable
 * repeats the attempt, which a crash just before the record did already
 * (the Maildir writer finds its own earlier delivery of a recovered claim).
 */
const DEFERRABLE = true;

/** Options of {@linkcode KvQueue.open}: those of every store (`StoreOptions`). */
export type KvQueueOptions = StoreOptions;

/**
 * The durable queue of tern in a Deno KV store (see kv_keys.ts for the key
 * layout), implementing {@linkcode Queue} (whose documentation shows it at
 * work). Several processes may open the same file at once: the server,
 * `tern send` and `tern queue` coordinate through the store alone.
 */
export class KvQueue implements Queue {
  readonly #kv: Deno.Kv;
  readonly #retry: readonly number[];
  readonly #maxAge: number;
  readonly #logger: Logger;
  readonly #leaseMs: number;
  readonly #incompleteAfterMs: number;
  readonly #committer: GroupCommitter;
  readonly #spool: Spool;
  readonly #keepContentBudget: number;
  /** Content octets that uploads keep in memory now (`keepContent`). */
  #keptOctets = 0;
  /**
   * What this process knows of the claims it holds: the stored meta and the
   * versionstamp of the commit that last wrote it and the lease. While the
   * lease is ours nothing else changes them unless the versionstamps move
   * (a `hold`, a `delete`), so an attempt can be recorded with checks
   * instead of reads; when a check fails, the record is read afresh.
   */
  readonly #snapshots = new WeakMap<ClaimedMessage, { meta: StoredMeta; versionstamp: string }>();
  #closed = false;

  /** Content that fits in one chunk comes in memory with a claim taken at commit. */
  readonly inMemoryContentLimit: number = CHUNK_SIZE;

  private constructor(kv: Deno.Kv, path: string, options: KvQueueOptions) {
    if (options.retry.length === 0) {
      throw new RangeError("Cannot open the queue: the retry schedule is empty");
    }
    this.#kv = kv;
    this.#retry = [...options.retry];
    this.#maxAge = options.maxAge;
    this.#logger = options.logger ?? NULL_LOGGER;
    this.#leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
    this.#incompleteAfterMs = options.incompleteAfterMs ?? DEFAULT_INCOMPLETE_AFTER_MS;
    this.#committer = new GroupCommitter(kv);
    this.#spool = new Spool(path);
    this.#keepContentBudget = options.keepContentBudget ?? DEFAULT_KEEP_CONTENT_BUDGET;
  }

  /**
   * Opens (or creates) the queue store at `path`, creating its directory.
   * The store's files (`path`, its `-wal`, `-shm` and `-spool`) are made
   * owner-only (0600, the spool 0700) whatever the umask; the directory is
   * created 0700 but an existing one is left as it is (the caller owns it).
   *
   * @param path The KV file, e.g. `data/queue.sqlite3`. Always a path: without
   *   one Deno may open a throwaway store.
   * @param options Retry schedule, give-up time, logger, lease length.
   * @returns The open queue; {@linkcode KvQueue.close} it when done.
   *
   * @example Open a queue in a new directory
   * ```ts
   * import { KvQueue } from "./kv_queue.ts";
   * import assert from "node:assert/strict";
   * const dir = await Deno.makeTempDir();
   * const queue = await KvQueue.open(`${dir}/data/queue.sqlite3`, { retry: [60_000], maxAge: 86_400_000 });
   * assert.equal(await queue.count(), 0);
   * await queue.close();
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  static async open(path: string, options: KvQueueOptions): Promise<KvQueue> {
    await Deno.mkdir(dirname(path), { recursive: true, mode: PRIVATE_DIRECTORY_MODE });
    // The store holds whole messages (recent ones in its -wal file): owner
    // only, whatever the umask. SQLite gives the -wal and -shm files it makes
    // the mode of the database file; files an older version left readable are
    // tightened before anything more is written to them.
    await createPrivateFile(path);
    await makePrivate([`${path}-wal`, `${path}-shm`, `${path}-journal`, `${path}-spool`]);
    const kv = await retryLocked(() => Deno.openKv(path));
    try {
      return new KvQueue(kv, path, options);
    } catch (error: unknown) {
      kv.close();
      throw error;
    }
  }

  /** How long a claim lasts unless renewed, ms (for a deliverer's renewal timer). */
  get leaseMs(): number {
    return this.#leaseMs;
  }

  /** Starts receiving a message. See {@linkcode Queue.receive}. */
  receive(init: ReceiveInit): Promise<IncomingMessage> {
    try {
      this.#assertOpen();
      if (init.recipients.length === 0) {
        throw new RangeError("Cannot queue a message with no recipients");
      }
      const context: UploadContext = {
        kv: this.#kv,
        committer: this.#committer,
        leaseMs: this.#leaseMs,
        spool: this.#spool,
        reserveKept: (octets) => {
          if (this.#keptOctets + octets > this.#keepContentBudget) return false;
          this.#keptOctets += octets;
          return true;
        },
        releaseKept: (octets) => {
          this.#keptOctets -= octets;
        },
        remember: (claim, meta, versionstamp) => this.#snapshots.set(claim, { meta, versionstamp }),
        removeUpload: (id, versionstamp, counts) =>
          this.#removeAll(id, counts, [{ key: KEY.incoming(id), versionstamp }], [
            del(KEY.incoming(id)),
          ]),
      };
      return Promise.resolve(new Upload(init.queueId ?? newQueueId(init.now), init, context));
    } catch (error: unknown) {
      return Promise.reject(error);
    }
  }

  /** Claims messages that are due. See {@linkcode Queue.claimDue}. */
  async claimDue(options: ClaimOptions): Promise<ClaimedMessage[]> {
    this.#assertOpen();
    const { now, limit, exclude } = options;
    const claimed: ClaimedMessage[] = [];
    if (limit <= 0) return claimed;
    // Only the keys due by `now`: without the end, each poll read (and
    // decoded) a whole batch of future keys, retries hours away, to find
    // the first one not due; a queue of a million deferred messages made
    // every poll cost milliseconds. A boolean sorts after every string in
    // a key, so `[..., now, true]` ends after the last id due at `now`.
    const entries = this.#kv.list<null>({ prefix: PREFIX.due, end: [...PREFIX.due, now, true] }, {
      batchSize: Math.min(Math.max(limit * 2, 16), 500),
    });
    // Candidates are claimed together, so their claims share commits; a
    // candidate someone else took is replaced by the next due one.
    let candidates: [string, number][] = [];
    const take = async (): Promise<void> => {
      const results = await Promise.all(candidates.map(([id, due]) => this.#claim(id, due, now)));
      for (const c of results) if (c !== null && claimed.length < limit) claimed.push(c);
      candidates = [];
    };
    for await (const entry of entries) {
      const due = entry.key[2];
      const id = entry.key[3];
      if (typeof due !== "number" || typeof id !== "string") continue;
      if (due > now) break;
      if (exclude?.has(id)) continue;
      candidates.push([id, due]);
      if (claimed.length + candidates.length >= limit) {
        await take();
        if (claimed.length >= limit) break;
      }
    }
    if (candidates.length > 0) await take();
    return claimed;
  }

  /** Claims one message whose due key says `due`; `null` when it is not ours to take. */
  async #claim(id: string, due: number, now: number): Promise<ClaimedMessage | null> {
    const [metaEntry, leaseEntry] = await readMetaAndLease(this.#kv, id);
    const meta = metaEntry.value;
    if (meta === null) {
      // A due key without its meta cannot be written by this layout; remove
      // it rather than trip over it on every poll.
      await commitOp(this.#kv, [metaEntry], [del(KEY.due(due, id))]);
      this.#logger.log("warn", "queue.error", id, { reason: "due entry without message" });
      return null;
    }
    if (meta.held || meta.due !== due) return null;
    const previous = leaseEntry.value;
    if (previous !== null && previous.expires > now) return null;
    const lease: StoredLease = {
      token: crypto.randomUUID(),
      pid: Deno.pid,
      host: HOST,
      claimed: now,
      expires: now + this.#leaseMs,
    };
    // Claims made at the same moment share one commit (one fsync).
    const versionstamp = await this.#committer.submitStamped([metaEntry, leaseEntry], [
      set(KEY.lease(id), lease),
      ...rescheduled(id, meta, lease.expires),
    ]);
    if (versionstamp === null) return null; // another worker was faster
    const message = await readMessage(this.#kv, meta);
    if (message === null) return null; // deleted meanwhile
    const recovered = previous !== null;
    const claimed: ClaimedMessage = {
      message,
      recovered,
      lease: { token: lease.token, expires: lease.expires, versionstamp },
    };
    this.#snapshots.set(claimed, { meta: { ...meta, due: lease.expires }, versionstamp });
    if (recovered) {
      this.#logger.log("warn", "queue.recovered", id, {
        reason: "lease expired",
        pid: previous.pid,
        claimed: new Date(previous.claimed).toISOString(),
      });
    }
    return claimed;
  }

  /**
   * Extends a claim for a delivery that takes longer than a lease, so no other worker takes the
   * message meanwhile. See {@linkcode Queue.renewLease}.
   */
  async renewLease(claim: ClaimedMessage, now: number): Promise<boolean> {
    this.#assertOpen();
    const id = claim.message.queueId;
    for (let i = 0; i < CONFLICT_RETRIES; i++) {
      const [metaEntry, leaseEntry] = await readMetaAndLease(this.#kv, id);
      const meta = metaEntry.value;
      const lease = leaseEntry.value;
      if (meta === null || lease === null || lease.token !== claim.lease.token) return false;
      const expires = now + this.#leaseMs;
      const mutations = [
        set(KEY.lease(id), { ...lease, expires } satisfies StoredLease),
        ...rescheduled(id, meta, expires),
      ];
      const versionstamp = await commitOp(this.#kv, [metaEntry, leaseEntry], mutations);
      if (versionstamp === null) continue;
      if (meta.due !== null) {
        this.#snapshots.set(claim, { meta: { ...meta, due: expires }, versionstamp });
      } else {
        this.#snapshots.delete(claim); // the meta kept its versionstamp: read it next time
      }
      return true;
    }
    return false;
  }

  /**
   * Whether a claim still holds the message as it was claimed. See
   * {@linkcode Queue.isClaimCurrent}.
   */
  async isClaimCurrent(claim: ClaimedMessage): Promise<boolean> {
    this.#assertOpen();
    const id = claim.message.queueId;
    const [metaEntry, leaseEntry] = await readMetaAndLease(this.#kv, id);
    const meta = metaEntry.value;
    if (meta === null || meta.held || leaseEntry.value?.token !== claim.lease.token) return false;
    const snapshot = this.#snapshots.get(claim);
    return snapshot === undefined || metaEntry.versionstamp === snapshot.versionstamp;
  }

  /**
   * Gives back a claim that was never attempted (a delivery loop stopping with messages still
   * waiting for a slot). See {@linkcode Queue.unclaim}.
   */
  async unclaim(claim: ClaimedMessage): Promise<boolean> {
    this.#assertOpen();
    const id = claim.message.queueId;
    this.#snapshots.delete(claim);
    for (let i = 0; i < CONFLICT_RETRIES; i++) {
      const [metaEntry, leaseEntry] = await readMetaAndLease(this.#kv, id);
      const meta = metaEntry.value;
      const lease = leaseEntry.value;
      if (meta === null || lease === null || lease.token !== claim.lease.token) return false;
      const mutations = [del(KEY.lease(id)), ...rescheduled(id, meta, meta.nextAttempt)];
      if (await this.#committer.submit([metaEntry, leaseEntry], mutations)) return true;
    }
    return false;
  }

  /**
   * Streams a message's stored content, chunk by chunk, reading a few chunks at a time so memory
   * stays bounded. See {@linkcode Queue.openContent}.
   */
  openContent(queueId: string): ReadableStream<Uint8Array> {
    this.#assertOpen();
    return readContent(this.#kv, this.#spool, queueId);
  }

  /**
   * Records the outcome of one delivery attempt and releases the claim. See
   * {@linkcode Queue.recordAttempt}.
   */
  async recordAttempt(
    claim: ClaimedMessage,
    outcomes: readonly RecipientOutcome[],
    now: number,
  ): Promise<QueuedMessage | null> {
    this.#assertOpen();
    const id = claim.message.queueId;
    let recipients: RecipientState[] | null = null;
    let changed: number[] = [];
    // First from what the claim knows, with checks instead of reads; after a
    // conflict (or with no snapshot), from the store.
    let snapshot = this.#snapshots.get(claim);
    this.#snapshots.delete(claim);
    for (let i = 0; i < CONFLICT_RETRIES; i++) {
      let meta: StoredMeta | null;
      let checks: Deno.AtomicCheck[];
      // The claim's own recipients and envelope are current while its snapshot is.
      const fromSnapshot = snapshot !== undefined;
      if (snapshot !== undefined) {
        meta = snapshot.meta;
        checks = [
          { key: KEY.msg(id), versionstamp: snapshot.versionstamp },
          { key: KEY.lease(id), versionstamp: snapshot.versionstamp },
        ];
        snapshot = undefined;
      } else {
        const [metaEntry, leaseEntry] = await readMetaAndLease(this.#kv, id);
        meta = metaEntry.value;
        if (meta === null || leaseEntry.value?.token !== claim.lease.token) {
          this.#logger.log("warn", "queue.error", id, {
            reason: meta === null ? "message deleted during delivery" : "lease lost",
            action: "attempt not recorded",
          });
          return null;
        }
        checks = [metaEntry, leaseEntry];
      }
      if (recipients === null) {
        // Read and update once: while the lease is ours nobody else changes
        // recipients, and a retry after a conflict must not count twice.
        const current = fromSnapshot
          ? [...claim.message.recipients]
          : await readRecipients(this.#kv, id, meta.recipients);
        if (current === null) continue;
        ({ recipients, changed } = applyOutcomes(id, meta.arrival, current, outcomes, now, {
          maxAge: this.#maxAge,
          logger: this.#logger,
        }));
      }
      const states = recipients;
      const pending = states.filter(isPending);
      const envelope = fromSnapshot ? claim.message.envelope : await readEnvelope(this.#kv, meta);
      if (pending.length === 0) {
        const final = toMessage({ ...meta, envelope }, recipients);
        const head = [
          del(KEY.msg(id)),
          del(KEY.lease(id)),
          ...(meta.due === null ? [] : [del(KEY.due(meta.due, id))]),
        ];
        if (!(await this.#removeAll(id, meta, checks, head, DEFERRABLE))) continue;
        this.#logger.log("info", "queue.removed", id, {
          reason: "done",
          sent: recipients.filter((r) => r.status === "sent").length,
          bounced: recipients.filter((r) => r.status === "bounced").length,
        });
        return final;
      }
      const nextAttempt = nextAttemptAt(pending, now, this.#retry);
      const updated: StoredMeta = { ...meta, nextAttempt, due: meta.held ? null : nextAttempt };
      const writes = changed.map((n) => set(KEY.rcpt(id, n), states[n]));
      const marker = [
        ...(meta.due === null ? [] : [del(KEY.due(meta.due, id))]),
        ...(updated.due === null ? [] : [set(KEY.due(updated.due, id), null)]),
        set(KEY.msg(id), updated),
        del(KEY.lease(id)),
      ];
      if (await this.#writeChecked(checks, writes, marker, DEFERRABLE)) {
        return toMessage({ ...updated, envelope }, recipients);
      }
    }
    throw new QueueConflictError(
      id,
      `Cannot record the attempt on message ${id}: the store kept changing`,
    );
  }

  /** Reads one message. See {@linkcode Queue.get}. */
  async get(queueId: string): Promise<QueuedMessage | null> {
    this.#assertOpen();
    const meta = (await retryLocked(() => this.#kv.get<StoredMeta>(KEY.msg(queueId)))).value;
    return meta === null ? null : await readMessage(this.#kv, meta);
  }

  /**
   * Lists the queued messages in arrival order, reading a batch at a time so memory stays bounded
   * however long the queue. See {@linkcode Queue.list}.
   */
  async *list(): AsyncIterable<QueuedMessage> {
    this.#assertOpen();
    yield* listMessages(this.#kv);
  }

  /** Counts the queued messages (by reading the message keys). See {@linkcode Queue.count}. */
  async count(): Promise<number> {
    this.#assertOpen();
    let count = 0;
    for await (const _ of this.#kv.list({ prefix: PREFIX.msg }, { batchSize: 1000 })) count++;
    return count;
  }

  /**
   * Removes a message for good (`tern queue delete`), even during a delivery. See
   * {@linkcode Queue.delete}.
   */
  async delete(queueId: string): Promise<boolean> {
    this.#assertOpen();
    for (let i = 0; i < CONFLICT_RETRIES; i++) {
      const metaEntry = await retryLocked(() => this.#kv.get<StoredMeta>(KEY.msg(queueId)));
      const meta = metaEntry.value;
      if (meta === null) return false;
      const head = [
        del(KEY.msg(queueId)),
        del(KEY.lease(queueId)),
        ...(meta.due === null ? [] : [del(KEY.due(meta.due, queueId))]),
      ];
      if (await this.#removeAll(queueId, meta, [metaEntry], head)) {
        this.#logger.log("info", "queue.removed", queueId, { reason: "deleted" });
        return true;
      }
    }
    throw new QueueConflictError(
      queueId,
      `Cannot delete message ${queueId}: the store kept changing`,
    );
  }

  /** Parks a message (`tern queue hold`). See {@linkcode Queue.hold}. */
  hold(queueId: string): Promise<boolean> {
    return this.#updateMeta(
      queueId,
      (meta) => meta.held ? null : { ...meta, held: true, due: null },
    );
  }

  /** Unparks a held message (`tern queue release`). See {@linkcode Queue.release}. */
  release(queueId: string): Promise<boolean> {
    return this.#updateMeta(
      queueId,
      (meta, lease) =>
        meta.held
          ? { ...meta, held: false, due: Math.max(meta.nextAttempt, lease?.expires ?? 0) }
          : null,
    );
  }

  /**
   * Makes every message that is not held due at `now` (`tern queue flush`). See
   * {@linkcode Queue.flush}.
   */
  async flush(now: number): Promise<number> {
    this.#assertOpen();
    let flushed = 0;
    for await (
      const entry of this.#kv.list<StoredMeta>({ prefix: PREFIX.msg }, { batchSize: 100 })
    ) {
      let eligible = false;
      await this.#updateMeta(entry.value.queueId, (meta, lease) => {
        eligible = !meta.held && (lease === null || lease.expires <= now);
        if (!eligible || (meta.due !== null && meta.due <= now)) return null;
        return { ...meta, nextAttempt: now, due: now };
      });
      if (eligible) flushed++;
    }
    return flushed;
  }

  /**
   * Makes one message due at `now` (`tern queue flush ID`), unless it is held or being delivered
   * right now (its worker records the outcome). See {@linkcode Queue.flushOne}.
   */
  async flushOne(
    queueId: string,
    now: number,
  ): Promise<"due" | "held" | "delivering" | "unknown"> {
    let outcome: "due" | "held" | "delivering" = "due";
    const found = await this.#updateMeta(queueId, (meta, lease) => {
      outcome = meta.held ? "held" : lease !== null && lease.expires > now ? "delivering" : "due";
      if (outcome !== "due" || (meta.due !== null && meta.due <= now)) return null;
      return { ...meta, nextAttempt: now, due: now };
    });
    return found ? outcome : "unknown";
  }

  /**
   * Read-modify-write of one meta with its due key, retried on conflict.
   * `change` returns `null` for "nothing to do". Returns whether the message
   * exists.
   */
  async #updateMeta(
    id: string,
    change: (meta: StoredMeta, lease: StoredLease | null) => StoredMeta | null,
  ): Promise<boolean> {
    this.#assertOpen();
    for (let i = 0; i < CONFLICT_RETRIES; i++) {
      const [metaEntry, leaseEntry] = await readMetaAndLease(this.#kv, id);
      const meta = metaEntry.value;
      if (meta === null) return false;
      const updated = change(meta, leaseEntry.value);
      if (updated === null) return true;
      const mutations = [set(KEY.msg(id), updated)];
      if (meta.due !== updated.due) {
        if (meta.due !== null) mutations.push(del(KEY.due(meta.due, id)));
        if (updated.due !== null) mutations.push(set(KEY.due(updated.due, id), null));
      }
      if ((await commitOp(this.#kv, [metaEntry, leaseEntry], mutations)) !== null) return true;
    }
    throw new QueueConflictError(id, `Cannot update message ${id}: the store kept changing`);
  }

  /** Cleans up at start. See {@linkcode Queue.recover}. */
  async recover(now: number): Promise<RecoverResult> {
    this.#assertOpen();
    let incompleteRemoved = 0;
    for await (const entry of this.#kv.list<IncomingRecord>({ prefix: PREFIX.incoming })) {
      const id = entry.key[2];
      const upload = entry.value;
      if (typeof id !== "string") continue;
      // An upload is dead when its process is gone (a crash here), or when it
      // has been idle too long (a crash elsewhere, which we cannot see).
      if (now - upload.touched < this.#incompleteAfterMs && !isDeadLocalProcess(upload)) continue;
      const removed = await this.#removeAll(id, upload, [entry], [del(KEY.incoming(id))]);
      if (removed) {
        incompleteRemoved++;
        this.#logger.log("info", "queue.removed", id, {
          reason: "incomplete upload",
          pid: upload.pid,
          started: new Date(upload.started).toISOString(),
          size: upload.chunks * CHUNK_SIZE,
        });
      }
    }
    for await (const entry of this.#kv.list<ContentCounts>({ prefix: PREFIX.removing })) {
      const id = entry.key[2];
      if (typeof id === "string") await this.#finishRemoval(id, entry.value);
    }
    // A spool file named by neither a meta nor an upload record was left by a
    // crash between a removal and its unlink. (An upload writes its record
    // before its file, and its commit writes the meta as it deletes the
    // record, so a live message always has one of the two.)
    let orphansRemoved = 0;
    for await (const id of this.#spool.ids()) {
      const [meta, upload] = await retryLocked(() =>
        this.#kv.getMany<[StoredMeta, IncomingRecord]>([KEY.msg(id), KEY.incoming(id)])
      );
      if (meta.value !== null || upload.value !== null) continue;
      await this.#removeSpoolFile(id);
      orphansRemoved++;
    }
    let leasesExpired = 0;
    for await (const entry of this.#kv.list<StoredLease>({ prefix: PREFIX.lease })) {
      const id = entry.key[2];
      if (entry.value.expires <= now) {
        leasesExpired++;
      } else if (typeof id === "string" && isDeadLocalProcess(entry.value)) {
        // Its worker died here (killed, crashed): end the lease now rather
        // than let the message wait out the lease.
        if (await this.#expireLease(id, now)) leasesExpired++;
      }
    }
    this.#logger.log("info", "queue.recovered", undefined, {
      incomplete_removed: incompleteRemoved,
      leases_expired: leasesExpired,
      spool_orphans_removed: orphansRemoved,
    });
    return { incompleteRemoved, leasesExpired, spoolOrphansRemoved: orphansRemoved };
  }

  /** Ends a dead worker's lease at once: the message is due now, and its next claim is `recovered`. */
  async #expireLease(id: string, now: number): Promise<boolean> {
    const [metaEntry, leaseEntry] = await readMetaAndLease(this.#kv, id);
    const meta = metaEntry.value;
    const lease = leaseEntry.value;
    if (meta === null || lease === null || !isDeadLocalProcess(lease)) return false;
    const mutations = [
      set(KEY.lease(id), { ...lease, expires: now } satisfies StoredLease),
      ...rescheduled(id, meta, now),
    ];
    return (await commitOp(this.#kv, [metaEntry, leaseEntry], mutations)) !== null;
  }

  /**
   * Writes a key and reads it back (the admin listener's `/readyz`): throws
   * when the store is closed or does not accept writes (disk full, read-only).
   */
  async probe(): Promise<void> {
    this.#assertOpen();
    const value = Date.now();
    await this.#kv.set(["probe", HOST], value);
    const back = await this.#kv.get<number>(["probe", HOST]);
    if (back.value !== value) throw new Error("the queue store did not return what was written");
  }

  /** Reads a piece of state. See {@linkcode Queue.getState}. */
  async getState(name: string): Promise<string | null> {
    this.#assertOpen();
    return (await this.#kv.get<string>(KEY.state(name))).value;
  }

  /** Sets or removes a piece of state. See {@linkcode Queue.setState}. */
  async setState(name: string, value: string | null): Promise<void> {
    this.#assertOpen();
    checkStateSize(name, value);
    if (value === null) await this.#kv.delete(KEY.state(name));
    else await this.#kv.set(KEY.state(name), value);
  }

  /** Waits for commits in flight, then closes the store. See {@linkcode Queue.close}. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.#committer.drain();
    this.#closed = true;
    this.#kv.close();
  }

  #assertOpen(): void {
    if (this.#closed) throw new QueueUnavailableError("Cannot use the queue: it is closed");
  }

  /** Commits through the group committer; a deferrable write waits to share the next commit. */
  async #submit(
    checks: readonly Deno.AtomicCheck[],
    mutations: readonly Mutation[],
    cost: Cost,
    deferrable: boolean,
  ): Promise<boolean> {
    const versionstamp = deferrable
      ? await this.#committer.submitDeferred(checks, mutations, cost)
      : await this.#committer.submitStamped(checks, mutations, cost);
    return versionstamp !== null;
  }

  /**
   * Writes `bulk` then `final`, each operation checking `checks` (which none
   * of these writes changes). One operation when everything fits. Returns
   * `false` as soon as a check fails.
   */
  async #writeChecked(
    checks: readonly Deno.AtomicCheck[],
    bulk: readonly Mutation[],
    final: readonly Mutation[],
    deferrable = false,
  ): Promise<boolean> {
    const all = [...bulk, ...final];
    const cost = costOf(checks, all);
    if (fitsBudget(cost)) {
      // Attempts recorded at the same moment share one commit (one fsync).
      return await this.#submit(checks, all, cost, deferrable);
    }
    for (const op of splitIntoOps(bulk, costOf(checks, []))) {
      if ((await commitOp(this.#kv, checks, op)) === null) return false;
    }
    return (await commitOp(this.#kv, checks, final)) !== null;
  }

  /**
   * Removes a message's keys: `head` (what makes it visible or claimable)
   * goes first, checked, and the content after. When it all takes more than
   * one operation, the first also writes a `removing` marker, deleted last,
   * so a crash half-way is finished by {@linkcode recover}.
   */
  async #removeAll(
    id: string,
    counts: ContentCounts,
    checks: readonly Deno.AtomicCheck[],
    head: readonly Mutation[],
    deferrable = false,
  ): Promise<boolean> {
    const everything = [...head, ...contentDeletes(id, counts)];
    const cost = costOf(checks, everything);
    if (fitsBudget(cost)) {
      // Removals at the same moment share one commit (one fsync).
      if (!(await this.#submit(checks, everything, cost, deferrable))) return false;
      // The file goes after the keys that name it; a crash in between leaves
      // an orphan that recover() sweeps.
      if (counts.spool) await this.#removeSpoolFile(id);
      return true;
    }
    const marker: ContentCounts = {
      chunks: counts.chunks,
      recipients: counts.recipients,
      pathPages: counts.pathPages,
      ...(counts.spool ? { spool: true } : {}),
    };
    const first = [...head, set(KEY.removing(id), marker)];
    if ((await commitOp(this.#kv, checks, first)) === null) return false;
    await this.#finishRemoval(id, marker);
    return true;
  }

  async #finishRemoval(id: string, counts: ContentCounts): Promise<void> {
    if (counts.spool) await this.#removeSpoolFile(id);
    const deletes = [...contentDeletes(id, counts), del(KEY.removing(id))];
    for (const op of splitIntoOps(deletes, NO_COST)) {
      await commitOp(this.#kv, [], op);
    }
  }

  /** Deletes a spool file; a failure is logged, and recover() tries again at the next start. */
  async #removeSpoolFile(id: string): Promise<void> {
    try {
      await this.#spool.remove(id);
    } catch (error: unknown) {
      this.#logger.log("warn", "queue.error", id, {
        action: "remove spool file",
        error: error instanceof Error ? error.message : String(error),
      });
    }
  }
}
