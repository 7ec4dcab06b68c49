/**
 * One message being received into the KV queue (an {@linkcode IncomingMessage}):
 * content is buffered up to one chunk, then streamed to a spool file, and the
 * commit writes the meta, the commit marker, last (see kv_keys.ts for the
 * layout). A commit may also claim the message for this process
 * (`commitAndClaim`), so its delivery needs no read from the store.
 *
 * @module
 */

import { concatBytes } from "../bytes/concat.ts";
import type { ClaimedMessage, QueueRecipient, RecipientState } from "./types.ts";
import {
  type CommitOptions,
  type IncomingMessage,
  MAX_COMMIT_HEADER,
  type ReceiveInit,
} from "./queue.ts";
import { QueueConflictError } from "./errors.ts";
import {
  costOf,
  del,
  fitsBudget,
  type Mutation,
  set,
  splitIntoOps,
  valueSize,
} from "./kv_atomic.ts";
import type { GroupCommitter } from "./group_committer.ts";
import {
  CHUNK_SIZE,
  type ContentCounts,
  HOST,
  type IncomingRecord,
  KEY,
  type StoredLease,
  type StoredMeta,
  toMessage,
} from "./kv_keys.ts";
import type { Spool, SpoolWriter } from "./spool.ts";

/** A meta value larger than this keeps its forward-paths in `path` pages. */
const MAX_INLINE_META = 48_000;
// With a commit header of MAX_COMMIT_HEADER octets, forward-paths page from 16 KB.
/** Target size of one `path` page. */
const PATH_PAGE_SIZE = 24_000;
/** How often a long upload to a spool file rewrites its `incoming` key, ms. */
const TOUCH_EVERY_MS = 5 * 60_000;

/** What an upload needs from its queue. */
export interface UploadContext {
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

/** An upload into the KV queue; made by `KvQueue.receive`. */
export class Upload implements IncomingMessage {
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

  async commit(options?: CommitOptions): Promise<void> {
    await this.#commitWith(null, options?.header, options?.hold === true);
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

  async commitAndClaim(now: number, options?: CommitOptions): Promise<ClaimedMessage> {
    if (options?.hold === true) throw new RangeError("A held message cannot be claimed at commit");
    const claim = await this.#commitWith(now, options?.header);
    if (claim === null) {
      throw new QueueConflictError(this.queueId, `Cannot claim message ${this.queueId}`);
    }
    return claim;
  }

  /** Commits; with a time, also claims the message from that time on. */
  #commitWith(
    claimAt: number | null,
    header: Uint8Array | undefined,
    hold = false,
  ): Promise<ClaimedMessage | null> {
    return this.#serialize(async () => {
      this.#assertOpen("commit");
      try {
        if (header !== undefined && header.length > MAX_COMMIT_HEADER) {
          throw new RangeError(
            `Cannot commit message ${this.queueId}: its added header is over ${MAX_COMMIT_HEADER} octets`,
          );
        }
        const claim = await this.#commit(claimAt, header?.length ? header.slice() : null, hold);
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
      throw new QueueConflictError(
        this.queueId,
        `Cannot store message ${this.queueId}: its upload was removed (idle too long) or its id is taken`,
      );
    }
    this.#incoming = versionstamp;
    this.#counts = counts;
    this.#lastTouch = performance.now();
  }

  async #commit(
    claimAt: number | null,
    header: Uint8Array | null,
    hold: boolean,
  ): Promise<ClaimedMessage | null> {
    const id = this.queueId;
    const { envelope, recipients, clientAddress, now } = this.#init;
    // The meta holds the header too: together they fit in one value.
    const pathPages = pageForwardPaths(
      envelope.forwardPaths,
      MAX_INLINE_META - (header?.length ?? 0),
    );
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
      size: (header?.length ?? 0) + this.#size,
      ...(header === null ? {} : { header }),
      arrival: now,
      nextAttempt: now,
      held: hold,
      clientAddress,
      // A held message has no due key: no claim finds it until `release`.
      due: hold ? null : due,
      chunks: this.#counts.chunks + lastChunk.length,
      recipients: recipients.length,
      pathPages: pathPages.length,
      ...(this.#spool === null ? {} : { spool: true }),
    };
    // The meta is the commit marker: always in the final operation.
    const marker = [
      ...lastChunk,
      set(KEY.msg(id), meta),
      ...(hold ? [] : [set(KEY.due(due, id), null)]),
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
      throw new QueueConflictError(
        id,
        `Cannot commit message ${id}: its upload was removed (idle too long) or its id is taken`,
      );
    }
    if (lease === null) return null;
    // The whole content is in memory when nothing was stored before, or
    // when a copy of the spooled content was kept; the header goes on top in
    // the same copy.
    const head = header === null ? [] : [header];
    let content: Uint8Array | null = null;
    if (this.#kept !== null) content = concatBytes([...head, ...this.#kept]);
    else if (tail !== null && this.#counts.chunks === 0) {
      content = header === null ? tail : concatBytes([header, tail]);
    }
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
export function queuedState(r: QueueRecipient): RecipientState {
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
function pageForwardPaths(forwardPaths: readonly string[], inlineLimit: number): string[][] {
  if (valueSize(forwardPaths) <= inlineLimit) return [];
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
