/**
 * The durable queue: messages accepted by the SMTP server or `tern send`,
 * kept in a Deno KV store until every recipient is delivered or bounced.
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
 * ## Key layout
 *
 * Every key starts with `"queue"`, so the store can hold other things too.
 * `id` is the queue id, `n` a number counting from 0, `t` epoch ms.
 *
 * | key                       | holds                                          | written                                        |
 * | ------------------------- | ---------------------------------------------- | ---------------------------------------------- |
 * | `["queue","incoming",id]` | an upload in progress: pid, start time, last   | with the first chunk (or recipient batch)      |
 * |                           | activity, how many chunks/recipients/path      | stored before the commit, and again with each; |
 * |                           | pages it has stored                            | deleted by the commit                          |
 * | `["queue","chunk",id,n]`  | content of at most 60,000 bytes: one chunk,    | in the commit                                  |
 * |                           | `n` = 0 (stores of older versions: several)    |                                                |
 * | `["queue","rcpt",id,n]`   | one `RecipientState`                           | in the commit, or before it when too many      |
 * | `["queue","path",id,n]`   | a page of forward-paths                        | only when they would not fit in the meta       |
 * | `["queue","msg",id]`      | the meta: envelope, size, arrival, schedule,   | **last**: in the commit operation              |
 * |                           | held, counts. **The commit marker**            |                                                |
 * | `["queue","due",t,id]`    | nothing: the schedule, in time order. `t` is   | always with the meta; absent while held        |
 * |                           | the next attempt, or the lease's end while     |                                                |
 * |                           | leased                                         |                                                |
 * | `["queue","lease",id]`    | token, pid, claim time, expiry                 | by `claimDue`; deleted by `recordAttempt`      |
 * | `["queue","removing",id]` | counts of what is left to delete               | by a removal too big for one operation         |
 *
 * A message that fits in one chunk (with its recipients) writes nothing
 * before its commit: no `incoming` key, one KV commit in all.
 *
 * **Bigger content goes to a spool file**, `<store>-spool/<id>` (spool.ts),
 * not into KV: SQLite would write every octet twice (log, then database) and
 * fsync each operation. When the content outgrows one chunk the upload writes
 * its `incoming` key (marked `spool`), then creates the file; the commit
 * fsyncs the file and its directory before it writes the meta (marked
 * `spool`, no chunks). A removal deletes the keys, then the file; a file that
 * neither a meta nor an `incoming` key names is swept by `recover`.
 *
 * **Why the meta is written last.** Every reader starts from a meta key
 * (`list`, `get`, `count`) or from a due key (`claimDue`), and the due key is
 * only ever written together with its meta. Chunks, recipients and path pages
 * without a meta are therefore invisible. The commit writes the meta in the
 * same atomic operation as the last chunk and the due key, and only after
 * every earlier chunk and recipient operation has committed, so when the meta
 * exists everything it points to exists too. Before it exists, the `incoming`
 * key (written atomically with every earlier write) says what to clean up.
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
import type { Envelope } from "../smtp/envelope.ts";
import { concatBytes } from "../smtp/_bytes.ts";
import { utf8Length } from "../smtp/_utf8.ts";
import { type Logger, NULL_LOGGER } from "../log/logger.ts";
import type {
  QueuedMessage,
  QueueRecipient,
  RecipientOutcome,
  RecipientState,
  ReplySummary,
} from "./types.ts";
import { newQueueId } from "./queue_id.ts";
import { Spool, type SpoolWriter } from "./spool.ts";
import { isExpired, retryDelay } from "./retry.ts";

/** Bytes of content per chunk key: under the 64 KiB value limit, with room to spare. */
export const CHUNK_SIZE = 60_000;

/** Default lease: how long a claim keeps other workers away, unless renewed. */
const DEFAULT_LEASE_MS = 60_000;
const DEFAULT_KEEP_CONTENT_BUDGET = 64 * 1024 * 1024;
/** Default age after which an upload with no activity is taken for dead. */
const DEFAULT_INCOMPLETE_AFTER_MS = 60 * 60_000;
/** Longest reply text kept per recipient, so a recipient always fits in one value. */
const MAX_REPLY_TEXT = 2_000;
/** A meta value larger than this keeps its forward-paths in `path` pages. */
const MAX_INLINE_META = 48_000;
/** Target size of one `path` page. */
const PATH_PAGE_SIZE = 24_000;
/** How often a long upload to a spool file rewrites its `incoming` key, ms. */
const TOUCH_EVERY_MS = 5 * 60_000;
/** How many commits a failing group is retried one by one before giving up. */
const CONFLICT_RETRIES = 8;

// ---------------------------------------------------------------------------
// Keys

const ROOT = "queue";

/** The keys of the layout table above. */
const KEY = {
  incoming: (id: string): Deno.KvKey => [ROOT, "incoming", id],
  chunk: (id: string, n: number): Deno.KvKey => [ROOT, "chunk", id, n],
  rcpt: (id: string, n: number): Deno.KvKey => [ROOT, "rcpt", id, n],
  path: (id: string, n: number): Deno.KvKey => [ROOT, "path", id, n],
  msg: (id: string): Deno.KvKey => [ROOT, "msg", id],
  due: (t: number, id: string): Deno.KvKey => [ROOT, "due", t, id],
  lease: (id: string): Deno.KvKey => [ROOT, "lease", id],
  removing: (id: string): Deno.KvKey => [ROOT, "removing", id],
} as const;

const PREFIX = {
  incoming: [ROOT, "incoming"],
  chunk: (id: string): Deno.KvKey => [ROOT, "chunk", id],
  rcpt: (id: string): Deno.KvKey => [ROOT, "rcpt", id],
  path: (id: string): Deno.KvKey => [ROOT, "path", id],
  msg: [ROOT, "msg"],
  due: [ROOT, "due"],
  lease: [ROOT, "lease"],
  removing: [ROOT, "removing"],
} as const;

// ---------------------------------------------------------------------------
// Stored values (internal: the public shapes are in types.ts)

/** How much content a message has under its id, to delete it without listing. */
interface ContentCounts {
  readonly chunks: number;
  readonly recipients: number;
  readonly pathPages: number;
  /** The content is in the spool file (spool.ts), not in chunks. */
  readonly spool?: boolean;
}

/** `["queue","msg",id]`: the commit marker. */
interface StoredMeta extends ContentCounts {
  /** Layout version, for a future migration. */
  readonly v: 1;
  readonly queueId: string;
  /** The envelope; `forwardPaths` is empty when they live in `path` pages. */
  readonly envelope: Envelope;
  readonly size: number;
  readonly arrival: number;
  readonly nextAttempt: number;
  readonly held: boolean;
  readonly clientAddress: string;
  /** The `t` of this message's due key, or `null` when it has none (held). */
  readonly due: number | null;
}

/** `["queue","incoming",id]`: an upload that has written content but not committed. */
interface IncomingRecord extends ContentCounts {
  readonly pid: number;
  /** The host name of the uploading process (absent in records from older versions). */
  readonly host?: string;
  readonly started: number;
  /** Last write, on the same clock as `started` (the `now` given to `receive`). */
  readonly touched: number;
}

/** `["queue","lease",id]`. */
interface StoredLease {
  readonly token: string;
  readonly pid: number;
  /** The host name of the claiming process (absent in leases from older versions). */
  readonly host?: string;
  readonly claimed: number;
  readonly expires: number;
}

/** This host's name, recorded in leases so a restart here can tell its own dead workers. */
const HOST: string = (() => {
  try {
    return Deno.hostname();
  } catch {
    return "";
  }
})();

/**
 * Whether a lease belongs to a process of this host that no longer runs.
 * Linux only (`/proc`); elsewhere, and for a pid that was reused, the lease
 * simply runs out.
 */
function isDeadLocalProcess(lease: { readonly host?: string; readonly pid: number }): boolean {
  if (lease.host !== HOST || HOST === "" || lease.pid === Deno.pid) return false;
  try {
    Deno.statSync("/proc/self");
  } catch {
    return false; // no /proc: cannot tell
  }
  try {
    Deno.statSync(`/proc/${lease.pid}`);
    return false;
  } catch {
    return true;
  }
}

// ---------------------------------------------------------------------------
// Sizing atomic operations

type Mutation =
  | { readonly kind: "set"; readonly key: Deno.KvKey; readonly value: unknown }
  | { readonly kind: "delete"; readonly key: Deno.KvKey };

/** What an atomic operation uses of each limit. */
interface Cost {
  readonly mutations: number;
  readonly checks: number;
  readonly bytes: number;
  readonly keyBytes: number;
}

const NO_COST: Cost = { mutations: 0, checks: 0, bytes: 0, keyBytes: 0 };

/**
 * What one atomic operation may use. Deno KV refuses more than 1,000
 * mutations, 100 checks, 819,200 bytes of mutated keys and values and 81,920
 * bytes of keys; the byte budgets keep a margin under the last two.
 */
const BUDGET: Cost = { mutations: 1000, checks: 100, bytes: 780_000, keyBytes: 76_000 };

/** A key as text, equal for equal keys: for sets of keys. */
function keyText(key: Deno.KvKey): string {
  let text = "";
  for (const part of key) {
    text += part instanceof Uint8Array
      ? `u${Array.from(part).join(",")}\u0000`
      : `${typeof part}${String(part)}\u0000`;
  }
  return text;
}

/** An upper bound of a key's encoded size. */
function keySize(key: Deno.KvKey): number {
  let size = 0;
  for (const part of key) {
    size += typeof part === "string" ? utf8Length(part) + 2 : 10;
  }
  return size;
}

/**
 * An upper bound of a value's stored size. Bytes are stored as they are;
 * anything else goes through the V8 serializer, which never needs more than
 * two bytes per UTF-16 unit of the JSON text.
 */
function valueSize(value: unknown): number {
  if (value instanceof Uint8Array) return value.byteLength;
  return 2 * (JSON.stringify(value) ?? "").length + 32;
}

function mutationCost(m: Mutation): Cost {
  const k = keySize(m.key);
  return {
    mutations: 1,
    checks: 0,
    bytes: k + (m.kind === "set" ? valueSize(m.value) : 0),
    keyBytes: k,
  };
}

function addCost(a: Cost, b: Cost): Cost {
  return {
    mutations: a.mutations + b.mutations,
    checks: a.checks + b.checks,
    bytes: a.bytes + b.bytes,
    keyBytes: a.keyBytes + b.keyBytes,
  };
}

function costOf(checks: readonly Deno.AtomicCheck[], mutations: readonly Mutation[]): Cost {
  let bytes = 0;
  let keyBytes = 0;
  for (const c of checks) keyBytes += keySize(c.key);
  for (const m of mutations) {
    const k = keySize(m.key);
    keyBytes += k;
    bytes += k + (m.kind === "set" ? valueSize(m.value) : 0);
  }
  return { mutations: mutations.length, checks: checks.length, bytes, keyBytes };
}

function fitsBudget(cost: Cost): boolean {
  return cost.mutations <= BUDGET.mutations && cost.checks <= BUDGET.checks &&
    cost.bytes <= BUDGET.bytes && cost.keyBytes <= BUDGET.keyBytes;
}

/** Splits mutations into groups that each fit in one operation beside `reserved`. */
function splitIntoOps(mutations: readonly Mutation[], reserved: Cost): Mutation[][] {
  const ops: Mutation[][] = [];
  let current: Mutation[] = [];
  let cost = reserved;
  for (const m of mutations) {
    const next = addCost(cost, mutationCost(m));
    if (current.length > 0 && !fitsBudget(next)) {
      ops.push(current);
      current = [];
      cost = addCost(reserved, mutationCost(m));
    } else {
      cost = next;
    }
    current.push(m);
  }
  if (current.length > 0) ops.push(current);
  return ops;
}

function set(key: Deno.KvKey, value: unknown): Mutation {
  return { kind: "set", key, value };
}

function del(key: Deno.KvKey): Mutation {
  return { kind: "delete", key };
}

function buildOp(
  kv: Deno.Kv,
  checks: readonly Deno.AtomicCheck[],
  mutations: readonly Mutation[],
): Deno.AtomicOperation {
  const op = kv.atomic();
  if (checks.length > 0) op.check(...checks);
  for (const m of mutations) {
    if (m.kind === "set") op.set(m.key, m.value);
    else op.delete(m.key);
  }
  return op;
}

/** How long a write waits out other connections' writes before giving up. */
const LOCK_WAIT_MS = 30_000;

function isLocked(error: unknown): boolean {
  return error instanceof Error && /database is (locked|busy)/i.test(error.message);
}

/**
 * Runs a KV call, trying again while SQLite says the database is locked.
 *
 * Deno KV's SQLite store does not wait for a write lock held by another
 * connection: when the server and `tern send` write at the same moment, one
 * of them fails at once with "database is locked" (measured: most commits of
 * three processes writing in a loop). Nothing was written then, so trying
 * again after a short random pause is safe.
 */
async function retryLocked<T>(call: () => Promise<T>): Promise<T> {
  const deadline = performance.now() + LOCK_WAIT_MS;
  let pause = 1;
  for (;;) {
    try {
      return await call();
    } catch (error: unknown) {
      if (!isLocked(error) || performance.now() > deadline) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, Math.random() * pause));
    pause = Math.min(pause * 2, 25);
  }
}

/**
 * Commits one atomic operation (retrying while the file is locked).
 *
 * @returns The versionstamp, or `null` when a check failed.
 */
async function commitOp(
  kv: Deno.Kv,
  checks: readonly Deno.AtomicCheck[],
  mutations: readonly Mutation[],
): Promise<string | null> {
  const result = await retryLocked(() => buildOp(kv, checks, mutations).commit());
  return result.ok ? result.versionstamp : null;
}

/** The deletes that remove a message's content, recipients and path pages. */
/**
 * Moves a message's due key to `due` and records it in the meta; nothing
 * for a held message, which has no due key.
 */
function rescheduled(id: string, meta: StoredMeta, due: number): Mutation[] {
  if (meta.due === null) return [];
  return [
    del(KEY.due(meta.due, id)),
    set(KEY.due(due, id), null),
    set(KEY.msg(id), { ...meta, due } satisfies StoredMeta),
  ];
}

function contentDeletes(id: string, counts: ContentCounts): Mutation[] {
  const out: Mutation[] = [];
  for (let n = 0; n < counts.chunks; n++) out.push(del(KEY.chunk(id, n)));
  for (let n = 0; n < counts.recipients; n++) out.push(del(KEY.rcpt(id, n)));
  for (let n = 0; n < counts.pathPages; n++) out.push(del(KEY.path(id, n)));
  return out;
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

function isPending(r: RecipientState): boolean {
  return r.status === "queued" || r.status === "deferred";
}

// ---------------------------------------------------------------------------
// Group commit

interface CommitEntry {
  readonly checks: readonly Deno.AtomicCheck[];
  readonly mutations: readonly Mutation[];
  readonly cost: Cost;
  /** Set after a shared commit failed: retried alone, to find whose check failed. */
  solo: boolean;
  /** Settles with the versionstamp of the commit that held the entry, or `null` when a check failed. */
  readonly resolve: (versionstamp: string | null) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * Shares one KV commit (one fsync) among the commits that arrive while
 * another is in flight. The first commit on an idle store goes at once;
 * those arriving meanwhile wait for it and then go together, as many as fit
 * in one atomic operation. A caller's promise settles only after the
 * operation holding its entry has committed or failed.
 */
class GroupCommitter {
  readonly #kv: Deno.Kv;
  readonly #pending: CommitEntry[] = [];
  #running: Promise<void> | null = null;

  constructor(kv: Deno.Kv) {
    this.#kv = kv;
  }

  /** Commits checks and mutations, possibly with others; `false` when a check failed. */
  async submit(
    checks: readonly Deno.AtomicCheck[],
    mutations: readonly Mutation[],
    cost?: Cost,
  ): Promise<boolean> {
    return (await this.submitStamped(checks, mutations, cost)) !== null;
  }

  /**
   * Commits checks and mutations, possibly with others.
   *
   * @returns The versionstamp of the shared commit (every key it wrote has it), or `null` when a check failed.
   */
  submitStamped(
    checks: readonly Deno.AtomicCheck[],
    mutations: readonly Mutation[],
    cost: Cost = costOf(checks, mutations),
  ): Promise<string | null> {
    return new Promise((resolve, reject) => {
      this.#pending.push({ checks, mutations, cost, solo: false, resolve, reject });
      this.#running ??= this.#run();
    });
  }

  /** Resolves once nothing is pending or in flight. */
  async drain(): Promise<void> {
    while (this.#running) await this.#running;
  }

  async #run(): Promise<void> {
    try {
      // Commits issued in the same tick share the first operation too.
      await Promise.resolve();
      while (this.#pending.length > 0) await this.#commit(this.#take());
    } finally {
      this.#running = null;
    }
  }

  #take(): CommitEntry[] {
    const first = this.#pending.shift();
    if (first === undefined) return [];
    const batch = [first];
    if (first.solo) return batch;
    let cost = first.cost;
    // Every check of a shared operation is made against the store as it was
    // before the operation. So an entry that checks a key an earlier entry of
    // the batch writes must wait for the next operation: side by side, both
    // checks would pass and the second write would silently replace the
    // first (two uploads that drew the same queue id).
    let written: Set<string> | null = null; // made once a second entry is in view
    while (this.#pending.length > 0) {
      const next = this.#pending[0];
      if (next === undefined || next.solo) break;
      const total = addCost(cost, next.cost);
      if (!fitsBudget(total)) break;
      const seen = written ??= new Set(first.mutations.map((m) => keyText(m.key)));
      if (next.checks.some((c) => seen.has(keyText(c.key)))) break;
      this.#pending.shift();
      batch.push(next);
      for (const m of next.mutations) seen.add(keyText(m.key));
      cost = total;
    }
    return batch;
  }

  async #commit(batch: CommitEntry[]): Promise<void> {
    let versionstamp: string | null = null;
    let failure: unknown = null;
    try {
      const checks = batch.flatMap((entry) => entry.checks);
      const mutations = batch.flatMap((entry) => entry.mutations);
      versionstamp = await commitOp(this.#kv, checks, mutations);
    } catch (error: unknown) {
      failure = error;
    }
    if (versionstamp !== null) {
      for (const entry of batch) entry.resolve(versionstamp);
    } else if (batch.length > 1) {
      // One entry's check (or size) spoiled the shared operation: commit each
      // alone, in the same order, ahead of anything that arrived since.
      for (const entry of batch) entry.solo = true;
      this.#pending.unshift(...batch);
    } else {
      for (const entry of batch) failure === null ? entry.resolve(null) : entry.reject(failure);
    }
  }
}

// ---------------------------------------------------------------------------
// Public types

/** Options of {@linkcode KvQueue.open}. */
export interface KvQueueOptions {
  /** Waits between attempts in ms (`queue.retry`); the last one repeats. RFC 5321 §4.5.4.1. */
  readonly retry: readonly number[];
  /** Give-up time in ms (`queue.max_age`): then pending recipients bounce. RFC 5321 §4.5.4.1. */
  readonly maxAge: number;
  /** Where events go. @default {NULL_LOGGER} */
  readonly logger?: Logger;
  /** How long a claim keeps a message from other workers unless renewed, ms. @default {60000} */
  readonly leaseMs?: number;
  /**
   * How long an upload may stay without activity before {@linkcode KvQueue.recover}
   * takes it for dead and removes it, ms. Long enough that an upload running
   * right now in another process (`tern send`) is not harmed.
   * @default {3600000}
   */
  readonly incompleteAfterMs?: number;
  /**
   * The most content octets that uploads together keep in memory beside
   * their spool files ({@linkcode ReceiveInit.keepContent}); past it, a
   * claim taken at commit reads its content back from the file.
   * @default {67108864} (64 MiB)
   */
  readonly keepContentBudget?: number;
}

/** What {@linkcode KvQueue.receive} needs to start a message. */
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
   * `keepContentBudget`). Content that fits in one chunk is always in memory.
   * @default {0}
   */
  readonly keepContent?: number;
}

/**
 * A message being received: content is streamed in with {@linkcode write},
 * then the message is made durable with {@linkcode commit} or dropped with
 * {@linkcode abort}. At most one chunk of content is held in memory, or up to
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
   * @returns When the commit is on disk.
   * @throws {Error} When it could not be stored; the upload is then removed.
   */
  commit(): Promise<void>;
  /**
   * Makes the message durable, as {@linkcode commit} does, and claims it for
   * delivery by this process in the same KV commit: no other worker takes
   * it, and the delivery needs no read from the store. A message of at most
   * one chunk comes with its content in memory. If this process dies before
   * the attempt is recorded, the lease lapses (or {@linkcode KvQueue.recover}
   * ends it at the next start) and the message is delivered from the store.
   *
   * @param now The current time, epoch ms: the lease runs from it.
   * @returns The claim, as {@linkcode KvQueue.claimDue} would give it.
   * @throws {Error} When it could not be stored; the upload is then removed.
   */
  commitAndClaim(now: number): Promise<ClaimedMessage>;
  /**
   * Drops the message and whatever it has stored. Does nothing after a
   * commit or a second time.
   *
   * @returns When the stored parts are deleted.
   */
  abort(): Promise<void>;
}

/** A claim on one message, taken by {@linkcode KvQueue.claimDue}. */
export interface Lease {
  /** Unique to this claim: a later claim by anyone has another token. */
  readonly token: string;
  /** When the claim lapses unless renewed, epoch ms. */
  readonly expires: number;
  /** The versionstamp of the lease as written by the claim. */
  readonly versionstamp: string;
}

/** A message claimed for delivery. */
export interface ClaimedMessage {
  /** The message, as it was when claimed. */
  readonly message: QueuedMessage;
  /**
   * `true` when the message had an expired lease: a worker died during an
   * attempt, so some recipients may already have received it. The deliverer
   * should look for duplicates (RFC 5321 §6.1 prefers a duplicate to a loss).
   */
  readonly recovered: boolean;
  /** The claim; pass the whole `ClaimedMessage` back to `recordAttempt`. */
  readonly lease: Lease;
  /**
   * The whole content, when the claim was taken at commit
   * ({@linkcode IncomingMessage.commitAndClaim}) and it fits in one chunk or
   * was kept in memory ({@linkcode ReceiveInit.keepContent}); otherwise read
   * it with {@linkcode KvQueue.openContent}.
   */
  readonly content?: Uint8Array;
}

/** Options of {@linkcode KvQueue.claimDue}. */
export interface ClaimOptions {
  /** The current time, epoch ms: messages due at or before it are claimed. */
  readonly now: number;
  /** The most messages to claim. */
  readonly limit: number;
  /** Queue ids not to claim (those this process is delivering). @default {none} */
  readonly exclude?: { has(queueId: string): boolean };
}

/** What {@linkcode KvQueue.recover} found. */
export interface RecoverResult {
  /** Uploads that never committed and were removed. */
  readonly incompleteRemoved: number;
  /** Messages whose lease has expired: their worker died; they are claimable again. */
  readonly leasesExpired: number;
  /** Spool files that no message or upload named (left by a crash during a removal). */
  readonly spoolOrphansRemoved: number;
}

// ---------------------------------------------------------------------------
// The incoming message

/** What an upload needs from its queue. */
interface UploadContext {
  readonly kv: Deno.Kv;
  readonly committer: GroupCommitter;
  readonly leaseMs: number;
  readonly spool: Spool;
  /** Takes octets from the budget for content kept in memory; `false` when it is spent. */
  readonly reserveKept: (octets: number) => boolean;
  /** Gives octets back to that budget. */
  readonly releaseKept: (octets: number) => void;
  /** Keeps what a claim taken at commit knows, so its attempt is recorded without reads. */
  readonly remember: (claim: ClaimedMessage, meta: StoredMeta, versionstamp: string) => void;
  readonly removeUpload: (
    id: string,
    versionstamp: string,
    counts: ContentCounts,
  ) => Promise<boolean>;
}

type UploadState = "open" | "committed" | "aborted";

class Upload implements IncomingMessage {
  readonly queueId: string;
  readonly #context: UploadContext;
  readonly #init: ReceiveInit;
  readonly #started = performance.now();
  #state: UploadState = "open";
  #buffer: Uint8Array | null = null;
  #fill = 0;
  #size = 0;
  #counts: ContentCounts = { chunks: 0, recipients: 0, pathPages: 0 };
  /** The versionstamp of our `incoming` key, or `null` while nothing is stored. */
  #incoming: string | null = null;
  /** The spool file, once the content outgrew one chunk. */
  #spool: SpoolWriter | null = null;
  /** A copy of spooled content, kept for the claim at commit (`keepContent`). */
  #kept: Uint8Array[] | null = null;
  #keptOctets = 0;
  /** When the `incoming` key was last written (performance.now()). */
  #lastTouch = 0;
  /** Serializes write, commit and abort, so none overlaps another. */
  #chain: Promise<unknown> = Promise.resolve();

  constructor(queueId: string, init: ReceiveInit, context: UploadContext) {
    this.queueId = queueId;
    this.#init = init;
    this.#context = context;
  }

  get size(): number {
    return this.#size;
  }

  write(chunk: Uint8Array): Promise<void> {
    return this.#serialize(async () => {
      this.#assertOpen("write to");
      if (this.#spool === null && this.#fill + chunk.byteLength <= CHUNK_SIZE) {
        // Up to one chunk stays in memory: it goes into the commit itself.
        this.#reserve(this.#fill + chunk.byteLength).set(chunk, this.#fill);
        this.#fill += chunk.byteLength;
        this.#size += chunk.byteLength;
        return;
      }
      if (this.#spool === null) {
        // Outgrown one chunk: the content goes to a spool file. The
        // `incoming` key comes first, so a crash from here on leaves a record
        // that recover() follows to the file.
        await this.#store([], { spool: true });
        this.#spool = await this.#context.spool.create(this.queueId);
        const head = this.#buffer?.subarray(0, this.#fill) ?? new Uint8Array();
        if (head.length > 0) await this.#spool.write(head);
        if (this.#keep(head.length)) this.#kept = [head];
        this.#buffer = null;
        this.#fill = 0;
      } else if (performance.now() - this.#lastTouch > TOUCH_EVERY_MS) {
        await this.#store([], {}); // still alive: recover() leaves a busy upload alone
      }
      await this.#spool.write(chunk);
      this.#size += chunk.byteLength;
      if (this.#kept !== null) {
        if (this.#keep(chunk.byteLength)) this.#kept.push(chunk.slice()); // the caller may reuse its buffer
        else this.#dropKept();
      }
    });
  }

  async commit(): Promise<void> {
    await this.#commitWith(null);
  }

  /** Counts `octets` more as kept in memory, if the message's limit and the queue's budget allow. */
  #keep(octets: number): boolean {
    const limit = this.#init.keepContent ?? 0;
    if (limit <= 0 || this.#keptOctets + octets > limit) return false;
    if (!this.#context.reserveKept(octets)) return false;
    this.#keptOctets += octets;
    return true;
  }

  /** Forgets the kept copy and gives its octets back to the budget. */
  #dropKept(): void {
    this.#context.releaseKept(this.#keptOctets);
    this.#kept = null;
    this.#keptOctets = 0;
  }

  /**
   * Grows the in-memory buffer to hold `size` octets (at most one chunk),
   * doubling from 8 KiB: a small message does not pay for a whole chunk.
   */
  #reserve(size: number): Uint8Array {
    const buffer = this.#buffer;
    if (buffer !== null && buffer.length >= size) return buffer;
    let capacity = Math.max(buffer?.length ?? 0, 8192);
    while (capacity < size) capacity *= 2;
    const grown = new Uint8Array(Math.min(capacity, CHUNK_SIZE));
    if (buffer !== null) grown.set(buffer.subarray(0, this.#fill));
    this.#buffer = grown;
    return grown;
  }

  async commitAndClaim(now: number): Promise<ClaimedMessage> {
    const claim = await this.#commitWith(now);
    if (claim === null) throw new Error(`Cannot claim message ${this.queueId}`);
    return claim;
  }

  /** Commits; with a time, also claims the message from that time on. */
  #commitWith(claimAt: number | null): Promise<ClaimedMessage | null> {
    return this.#serialize(async () => {
      this.#assertOpen("commit");
      try {
        const claim = await this.#commit(claimAt);
        this.#state = "committed";
        this.#buffer = null;
        this.#dropKept(); // in the claim now, or of no use: out of the budget either way
        return claim;
      } catch (error: unknown) {
        await this.#discard().catch(() => {});
        throw error;
      }
    });
  }

  abort(): Promise<void> {
    return this.#serialize(() => this.#state === "open" ? this.#discard() : Promise.resolve());
  }

  #serialize<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#chain.then(task);
    this.#chain = result.catch(() => {});
    return result;
  }

  #assertOpen(action: string): void {
    if (this.#state !== "open") {
      throw new Error(`Cannot ${action} message ${this.queueId}: it is already ${this.#state}`);
    }
  }

  /** The checks that prove the upload is still ours (not reaped, id not taken). */
  #checks(): Deno.AtomicCheck[] {
    const id = this.queueId;
    return this.#incoming === null
      ? [{ key: KEY.incoming(id), versionstamp: null }, { key: KEY.msg(id), versionstamp: null }]
      : [{ key: KEY.incoming(id), versionstamp: this.#incoming }];
  }

  /** Writes mutations before the commit, atomically with the `incoming` key. */
  async #store(mutations: readonly Mutation[], added: Partial<ContentCounts>): Promise<void> {
    const counts: ContentCounts = {
      chunks: this.#counts.chunks + (added.chunks ?? 0),
      recipients: this.#counts.recipients + (added.recipients ?? 0),
      pathPages: this.#counts.pathPages + (added.pathPages ?? 0),
      ...(this.#counts.spool || added.spool ? { spool: true } : {}),
    };
    const record: IncomingRecord = {
      pid: Deno.pid,
      host: HOST,
      started: this.#init.now,
      touched: this.#init.now + Math.round(performance.now() - this.#started),
      ...counts,
    };
    // Shared with other commits: this write need only be visible before the
    // spool file exists (a crash before it is durable leaves an orphan file,
    // which recover() sweeps).
    const versionstamp = await this.#context.committer.submitStamped(this.#checks(), [
      ...mutations,
      set(KEY.incoming(this.queueId), record),
    ]);
    if (versionstamp === null) {
      this.#state = "aborted";
      throw new Error(
        `Cannot store message ${this.queueId}: its upload was removed (idle too long) or its id is taken`,
      );
    }
    this.#incoming = versionstamp;
    this.#counts = counts;
    this.#lastTouch = performance.now();
  }

  async #commit(claimAt: number | null): Promise<ClaimedMessage | null> {
    const id = this.queueId;
    const { envelope, recipients, clientAddress, now } = this.#init;
    const pathPages = pageForwardPaths(envelope.forwardPaths);
    const recipientWrites = recipients.map((r, n) => set(KEY.rcpt(id, n), queuedState(r)));
    const pathWrites = pathPages.map((page, n) => set(KEY.path(id, n), page));
    const tail = this.#fill > 0 && this.#buffer !== null ? this.#buffer.slice(0, this.#fill) : null;
    const lastChunk = tail === null ? [] : [set(KEY.chunk(id, this.#counts.chunks), tail)];
    // A claim taken with the commit, as #claim would write it: the lease, and
    // the due time moved to the lease's end.
    const lease: StoredLease | null = claimAt === null ? null : {
      token: crypto.randomUUID(),
      pid: Deno.pid,
      host: HOST,
      claimed: claimAt,
      expires: claimAt + this.#context.leaseMs,
    };
    const due = lease === null ? now : lease.expires;
    const meta: StoredMeta = {
      v: 1,
      queueId: id,
      envelope: pathPages.length > 0 ? { ...envelope, forwardPaths: [] } : envelope,
      size: this.#size,
      arrival: now,
      nextAttempt: now,
      held: false,
      clientAddress,
      due,
      chunks: this.#counts.chunks + lastChunk.length,
      recipients: recipients.length,
      pathPages: pathPages.length,
      ...(this.#spool === null ? {} : { spool: true }),
    };
    // The meta is the commit marker: always in the final operation.
    const marker = [
      ...lastChunk,
      set(KEY.msg(id), meta),
      set(KEY.due(due, id), null),
      ...(lease === null ? [] : [set(KEY.lease(id), lease)]),
      ...(this.#incoming === null ? [] : [del(KEY.incoming(id))]),
    ];
    const inline = [...marker, ...recipientWrites, ...pathWrites];
    const checks = this.#checks();
    const inlineCost = costOf(checks, inline);
    let final = inline;
    if (!fitsBudget(inlineCost)) {
      // Too many recipients for one operation: store them first, each
      // operation with the `incoming` key, so they stay invisible (no meta)
      // and a crash leaves them listed for recover().
      const reserved = costOf(this.#checks(), [set(
        KEY.incoming(id),
        {
          pid: 0,
          started: 0,
          touched: 0,
          chunks: 0,
          recipients: 0,
          pathPages: 0,
        } satisfies IncomingRecord,
      )]);
      for (const op of splitIntoOps([...recipientWrites, ...pathWrites], reserved)) {
        const recipientCount = op.filter((m) => m.key[1] === "rcpt").length;
        await this.#store(op, {
          recipients: recipientCount,
          pathPages: op.length - recipientCount,
        });
      }
      final = [...marker.filter((m) => m.key[1] !== "incoming"), del(KEY.incoming(id))];
    }
    // The file and its name are on disk before the meta that names it.
    await this.#spool?.finish();
    const versionstamp = await this.#context.committer.submitStamped(
      this.#checks(),
      final,
      final === inline ? inlineCost : undefined,
    );
    if (versionstamp === null) {
      throw new Error(
        `Cannot commit message ${id}: its upload was removed (idle too long) or its id is taken`,
      );
    }
    if (lease === null) return null;
    // The whole content is in memory when nothing was stored before, or
    // when a copy of the spooled content was kept.
    let content = tail !== null && this.#counts.chunks === 0 ? tail : null;
    if (this.#kept !== null) content = concatBytes(this.#kept);
    const claim: ClaimedMessage = {
      message: toMessage({ ...meta, envelope }, recipients.map(queuedState)),
      recovered: false,
      lease: { token: lease.token, expires: lease.expires, versionstamp },
      ...(content === null ? {} : { content }),
    };
    this.#context.remember(claim, meta, versionstamp);
    return claim;
  }

  /** Deletes what was stored, if it is still ours. */
  async #discard(): Promise<void> {
    this.#state = "aborted";
    this.#buffer = null;
    this.#dropKept();
    const spool = this.#spool;
    this.#spool = null;
    await spool?.discard();
    if (this.#incoming !== null) {
      await this.#context.removeUpload(this.queueId, this.#incoming, this.#counts);
      this.#incoming = null;
    }
  }
}

/** The state of a recipient that has not been tried yet. */
function queuedState(r: QueueRecipient): RecipientState {
  return {
    address: r.address,
    originalRecipient: r.originalRecipient,
    mailbox: r.mailbox,
    ...(r.notify === undefined ? {} : { notify: r.notify }),
    ...(r.orcpt === undefined ? {} : { orcpt: r.orcpt }),
    status: "queued",
    attempts: 0,
    lastAttempt: null,
    lastReply: null,
  };
}

/** Pages of forward-paths when they would make the meta too large, else none. */
function pageForwardPaths(forwardPaths: readonly string[]): string[][] {
  if (valueSize(forwardPaths) <= MAX_INLINE_META) return [];
  const pages: string[][] = [];
  let page: string[] = [];
  let size = 0;
  for (const path of forwardPaths) {
    const s = valueSize(path);
    if (page.length > 0 && size + s > PATH_PAGE_SIZE) {
      pages.push(page);
      page = [];
      size = 0;
    }
    page.push(path);
    size += s;
  }
  if (page.length > 0) pages.push(page);
  return pages;
}

// ---------------------------------------------------------------------------
// The queue

/**
 * The durable queue of tern in a Deno KV store (see the module doc for the
 * key layout). Several processes may open the same file at once: the server,
 * `tern send` and `tern queue` coordinate through the store alone.
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
export class KvQueue {
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
  /** The millisecond of the last queue id given, and the ids given in it. */
  #idTime = -1;
  readonly #idsThisMs = new Set<string>();
  /**
   * What this process knows of the claims it holds: the stored meta and the
   * versionstamp of the commit that last wrote it and the lease. While the
   * lease is ours nothing else changes them unless the versionstamps move
   * (a `hold`, a `delete`), so an attempt can be recorded with checks
   * instead of reads; when a check fails, the record is read afresh.
   */
  readonly #snapshots = new WeakMap<ClaimedMessage, { meta: StoredMeta; versionstamp: string }>();
  #closed = false;

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
      return Promise.resolve(new Upload(this.#newId(init.now), init, context));
    } catch (error: unknown) {
      return Promise.reject(error);
    }
  }

  /**
   * Claims messages that are due: next attempt at or before `now`, not held,
   * with no live lease. Each claim writes a lease with a versionstamp check,
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
  async claimDue(options: ClaimOptions): Promise<ClaimedMessage[]> {
    this.#assertOpen();
    const { now, limit, exclude } = options;
    const claimed: ClaimedMessage[] = [];
    if (limit <= 0) return claimed;
    const entries = this.#kv.list<null>({ prefix: PREFIX.due }, {
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
    const [metaEntry, leaseEntry] = await this.#readMetaAndLease(id);
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
    const message = await this.#readMessage(meta);
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
  async renewLease(claim: ClaimedMessage, now: number): Promise<boolean> {
    this.#assertOpen();
    const id = claim.message.queueId;
    for (let i = 0; i < CONFLICT_RETRIES; i++) {
      const [metaEntry, leaseEntry] = await this.#readMetaAndLease(id);
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
   * Whether a claim still holds the message as it was claimed: not held,
   * deleted or taken by another worker since. One read; for a claim that
   * waited before its delivery started (a `tern queue hold` or `delete`
   * meanwhile must win).
   *
   * @param claim The claim.
   * @returns `false` when the message changed or the claim is lost.
   */
  async isClaimCurrent(claim: ClaimedMessage): Promise<boolean> {
    this.#assertOpen();
    const id = claim.message.queueId;
    const [metaEntry, leaseEntry] = await this.#readMetaAndLease(id);
    const meta = metaEntry.value;
    if (meta === null || meta.held || leaseEntry.value?.token !== claim.lease.token) return false;
    const snapshot = this.#snapshots.get(claim);
    return snapshot === undefined || metaEntry.versionstamp === snapshot.versionstamp;
  }

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
  async unclaim(claim: ClaimedMessage): Promise<boolean> {
    this.#assertOpen();
    const id = claim.message.queueId;
    this.#snapshots.delete(claim);
    for (let i = 0; i < CONFLICT_RETRIES; i++) {
      const [metaEntry, leaseEntry] = await this.#readMetaAndLease(id);
      const meta = metaEntry.value;
      const lease = leaseEntry.value;
      if (meta === null || lease === null || lease.token !== claim.lease.token) return false;
      const mutations = [del(KEY.lease(id)), ...rescheduled(id, meta, meta.nextAttempt)];
      if (await this.#committer.submit([metaEntry, leaseEntry], mutations)) return true;
    }
    return false;
  }

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
  openContent(queueId: string): ReadableStream<Uint8Array> {
    this.#assertOpen();
    const kv = this.#kv;
    const spool = this.#spool;
    let file: ReadableStreamDefaultReader<Uint8Array> | null = null;
    let chunks: Deno.KvListIterator<Uint8Array> | null = null;
    let expectedSize = 0;
    let expectedChunks = 0;
    let size = 0;
    let next = 0;
    return new ReadableStream<Uint8Array>({
      async start() {
        const meta = (await retryLocked(() => kv.get<StoredMeta>(KEY.msg(queueId)))).value;
        if (meta === null) throw new Error(`Cannot read message ${queueId}: no such message`);
        expectedSize = meta.size;
        expectedChunks = meta.chunks;
        if (meta.spool) {
          file = spool.open(queueId, meta.size).getReader();
        } else {
          chunks = kv.list<Uint8Array>({ prefix: PREFIX.chunk(queueId) }, { batchSize: 4 });
        }
      },
      async pull(controller) {
        if (file !== null) {
          const piece = await file.read();
          if (piece.done) controller.close();
          else controller.enqueue(piece.value);
          return;
        }
        const result = await chunks?.next();
        if (result === undefined || result.done) {
          if (size !== expectedSize || next !== expectedChunks) {
            controller.error(
              new Error(`Cannot read message ${queueId}: its content is gone (removed meanwhile?)`),
            );
          } else {
            controller.close();
          }
          return;
        }
        const { key, value } = result.value;
        if (key[3] !== next) {
          controller.error(new Error(`Cannot read message ${queueId}: chunk ${next} is missing`));
          return;
        }
        next++;
        size += value.byteLength;
        controller.enqueue(value);
      },
      async cancel(reason) {
        await file?.cancel(reason);
      },
    }, { highWaterMark: 0 });
  }

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
        const [metaEntry, leaseEntry] = await this.#readMetaAndLease(id);
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
          : await this.#readRecipients(id, meta.recipients);
        if (current === null) continue;
        ({ recipients, changed } = this.#applyOutcomes(id, meta, current, outcomes, now));
      }
      const states = recipients;
      const pending = states.filter(isPending);
      const envelope = fromSnapshot ? claim.message.envelope : await this.#readEnvelope(meta);
      if (pending.length === 0) {
        const final = toMessage({ ...meta, envelope }, recipients);
        const head = [
          del(KEY.msg(id)),
          del(KEY.lease(id)),
          ...(meta.due === null ? [] : [del(KEY.due(meta.due, id))]),
        ];
        if (!(await this.#removeAll(id, meta, checks, head))) continue;
        this.#logger.log("info", "queue.removed", id, {
          reason: "done",
          sent: recipients.filter((r) => r.status === "sent").length,
          bounced: recipients.filter((r) => r.status === "bounced").length,
        });
        return final;
      }
      const attempts = Math.max(1, ...pending.map((r) => r.attempts));
      const nextAttempt = now + retryDelay(attempts, this.#retry);
      const updated: StoredMeta = { ...meta, nextAttempt, due: meta.held ? null : nextAttempt };
      const writes = changed.map((n) => set(KEY.rcpt(id, n), states[n]));
      const marker = [
        ...(meta.due === null ? [] : [del(KEY.due(meta.due, id))]),
        ...(updated.due === null ? [] : [set(KEY.due(updated.due, id), null)]),
        set(KEY.msg(id), updated),
        del(KEY.lease(id)),
      ];
      if (await this.#writeChecked(checks, writes, marker)) {
        return toMessage({ ...updated, envelope }, recipients);
      }
    }
    throw new Error(`Cannot record the attempt on message ${id}: the store kept changing`);
  }

  /** Applies outcomes to recipients; logs and marks the ones that expire. */
  #applyOutcomes(
    id: string,
    meta: StoredMeta,
    current: RecipientState[],
    outcomes: readonly RecipientOutcome[],
    now: number,
  ): { recipients: RecipientState[]; changed: number[] } {
    const recipients = [...current];
    const changed = new Set<number>();
    const expired = isExpired(meta.arrival, now, this.#maxAge);
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
        const age = formatAge(now - meta.arrival);
        status = "bounced";
        reply = { ...reply, text: `${reply.text} (gave up after ${age})` };
        this.#logger.log("warn", "queue.expired", id, {
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
  async get(queueId: string): Promise<QueuedMessage | null> {
    this.#assertOpen();
    const meta = (await retryLocked(() => this.#kv.get<StoredMeta>(KEY.msg(queueId)))).value;
    return meta === null ? null : await this.#readMessage(meta);
  }

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
  async *list(): AsyncIterable<QueuedMessage> {
    this.#assertOpen();
    for await (
      const entry of this.#kv.list<StoredMeta>({ prefix: PREFIX.msg }, { batchSize: 100 })
    ) {
      const message = await this.#readMessage(entry.value);
      if (message !== null) yield message;
    }
  }

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
  async count(): Promise<number> {
    this.#assertOpen();
    let count = 0;
    for await (const _ of this.#kv.list({ prefix: PREFIX.msg }, { batchSize: 1000 })) count++;
    return count;
  }

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
    throw new Error(`Cannot delete message ${queueId}: the store kept changing`);
  }

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
  hold(queueId: string): Promise<boolean> {
    return this.#updateMeta(
      queueId,
      (meta) => meta.held ? null : { ...meta, held: true, due: null },
    );
  }

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
      const [metaEntry, leaseEntry] = await this.#readMetaAndLease(id);
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
    throw new Error(`Cannot update message ${id}: the store kept changing`);
  }

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
    const [metaEntry, leaseEntry] = await this.#readMetaAndLease(id);
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
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.#committer.drain();
    this.#closed = true;
    this.#kv.close();
  }

  #assertOpen(): void {
    if (this.#closed) throw new Error("Cannot use the queue: it is closed");
  }

  /**
   * A queue id not given before by this queue in the same millisecond. Two
   * ids can only collide within one millisecond (25 random bits, about one
   * chance in 33 million for a pair); a collision with another process, or
   * after a few unlucky draws, is caught when the second upload commits
   * (its checks fail), and that upload is refused with a temporary error.
   */
  #newId(now: number): string {
    const ms = Math.floor(now);
    if (ms !== this.#idTime) {
      this.#idTime = ms;
      this.#idsThisMs.clear();
    }
    let id = newQueueId(now);
    for (let tries = 1; this.#idsThisMs.has(id) && tries < 8; tries++) id = newQueueId(now);
    this.#idsThisMs.add(id);
    return id;
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
  ): Promise<boolean> {
    const all = [...bulk, ...final];
    const cost = costOf(checks, all);
    if (fitsBudget(cost)) {
      // Attempts recorded at the same moment share one commit (one fsync).
      return await this.#committer.submit(checks, all, cost);
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
  ): Promise<boolean> {
    const everything = [...head, ...contentDeletes(id, counts)];
    const cost = costOf(checks, everything);
    if (fitsBudget(cost)) {
      // Removals at the same moment share one commit (one fsync).
      if (!(await this.#committer.submit(checks, everything, cost))) return false;
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

  /** Reads a message's meta and lease in one snapshot. */
  #readMetaAndLease(
    id: string,
  ): Promise<[Deno.KvEntryMaybe<StoredMeta>, Deno.KvEntryMaybe<StoredLease>]> {
    return retryLocked(() =>
      this.#kv.getMany<[StoredMeta, StoredLease]>([KEY.msg(id), KEY.lease(id)])
    );
  }

  /** Reads a message's recipients; `null` when some are missing (removed meanwhile). */
  async #readRecipients(id: string, count: number): Promise<RecipientState[] | null> {
    const recipients: RecipientState[] = [];
    const entries = this.#kv.list<RecipientState>({ prefix: PREFIX.rcpt(id) }, { batchSize: 500 });
    for await (const entry of entries) recipients.push(entry.value);
    return recipients.length === count ? recipients : null;
  }

  /** The envelope with its forward-paths, from the meta or its path pages. */
  async #readEnvelope(meta: StoredMeta): Promise<Envelope> {
    if (meta.pathPages === 0) return meta.envelope;
    const forwardPaths: string[] = [];
    const pages = this.#kv.list<string[]>({ prefix: PREFIX.path(meta.queueId) });
    for await (const page of pages) forwardPaths.push(...page.value);
    return { ...meta.envelope, forwardPaths };
  }

  /** A meta and its recipients as a public record; `null` when removed meanwhile. */
  async #readMessage(meta: StoredMeta): Promise<QueuedMessage | null> {
    const recipients = await this.#readRecipients(meta.queueId, meta.recipients);
    if (recipients === null) return null;
    return toMessage({ ...meta, envelope: await this.#readEnvelope(meta) }, recipients);
  }
}

function toMessage(meta: StoredMeta, recipients: readonly RecipientState[]): QueuedMessage {
  return {
    queueId: meta.queueId,
    envelope: meta.envelope,
    recipients,
    size: meta.size,
    arrival: meta.arrival,
    nextAttempt: meta.nextAttempt,
    held: meta.held,
    clientAddress: meta.clientAddress,
  };
}
