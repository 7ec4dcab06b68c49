/**
 * A message being received into the PostgreSQL store: content is buffered
 * up to one chunk, each full chunk is inserted as it fills (with an
 * `uploads` row that names the upload, in the same transaction, so a crash
 * leaves nothing unnamed), and the commit is one transaction that inserts
 * the last chunk, the header and the message row and deletes the `uploads`
 * row. A message that fits in one chunk (most mail) stores nothing before
 * its commit, which is then a single `INSERT` of its row with the content
 * in it, sent through the queue's batcher (pg_batch.ts), so commits that
 * arrive together share one transaction and one WAL flush. Nothing is
 * visible to readers before that transaction commits, and it commits
 * synchronously (RFC 5321 §6.1).
 *
 * @module
 */

import { concatBytes as concat } from "../bytes/concat.ts";
import type { CommitOptions, IncomingMessage, ReceiveInit } from "./queue.ts";
import { MAX_COMMIT_HEADER } from "./queue.ts";
import type { ClaimedMessage, QueuedMessage, RecipientState } from "./types.ts";
import { QueueConflictError } from "./errors.ts";
import { guard, isUniqueViolation, type Sql, toBytea, type Tx } from "./pg_sql.ts";
import type { PgBatcher } from "./pg_batch.ts";

/** What an upload needs from its queue. */
export interface PgUploadContext {
  /** The pool. */
  readonly sql: Sql;
  /** Octets per stored chunk; also the most an upload buffers. */
  readonly chunkSize: number;
  /** Content up to this size comes in memory with a claim taken at commit. */
  readonly inMemoryLimit: number;
  /** How long a claim taken at commit lasts, ms. */
  readonly leaseMs: number;
  /** Who claims and uploads: `host pid`. */
  readonly owner: string;
  /** The NOTIFY channel that wakes the delivery loops of every node. */
  readonly channel: string;
  /** Throws when the queue is closed. */
  assertOpen(): void;
  /** Reserves memory for content kept past `inMemoryLimit`; `false` when over budget. */
  reserveKept(octets: number): boolean;
  /** Gives back what {@linkcode reserveKept} reserved. */
  releaseKept(octets: number): void;
  /** Keeps a commit's promise until it settles, so `close()` can wait for it. */
  track<T>(promise: Promise<T>): Promise<T>;
  /** Runs one statement, in one transaction with others that come together (pg_batch.ts). */
  readonly batcher: PgBatcher;
}

/** What the `messages` row of a commit holds. */
interface MessageRow {
  readonly id: string;
  readonly init: ReceiveInit;
  readonly recipients: readonly RecipientState[];
  readonly size: number;
  readonly due: number | null;
  readonly hold: boolean;
  readonly lease: { readonly token: string; readonly expires: number } | null;
  readonly owner: string;
  readonly claimAt: number | null;
  /** The channel to `NOTIFY` in the same transaction, or `null`. */
  readonly notify: string | null;
}

/**
 * Inserts a message's row, with its content when it is inline, and sends
 * the wake-up in the same statement (so in the same transaction): one
 * statement text for every case, prepared once per connection.
 */
function insertMessage(q: Sql | Tx, row: MessageRow, content: Uint8Array | null) {
  const { id, init, lease } = row;
  return q`WITH m AS (
      INSERT INTO messages (queue_id, envelope, recipients, client_address, arrival, size,
        next_attempt, held, due, version, lease_token, lease_expires, lease_owner, lease_claimed,
        content)
      VALUES (${id}, ${JSON.stringify(init.envelope)}::text::jsonb,
        ${JSON.stringify(row.recipients)}::text::jsonb, ${init.clientAddress}, ${init.now},
        ${row.size}, ${init.now}, ${row.hold}, ${row.due}, 0, ${lease?.token ?? null},
        ${lease?.expires ?? null}, ${lease === null ? null : row.owner}, ${row.claimAt},
        ${content === null ? null : toBytea(content)})
      RETURNING queue_id)
    SELECT pg_notify(${row.notify ?? ""}, '') FROM m WHERE ${row.notify !== null}::boolean`;
}

/** The recipients of a new message, none tried yet. */
function freshRecipients(init: ReceiveInit): RecipientState[] {
  return init.recipients.map((r) => ({
    ...r,
    status: "queued",
    attempts: 0,
    lastAttempt: null,
    lastReply: null,
  }));
}

/** A message being received; see {@linkcode IncomingMessage}. */
export class PgUpload implements IncomingMessage {
  /** The queue id. */
  readonly queueId: string;
  readonly #init: ReceiveInit;
  readonly #context: PgUploadContext;
  /** Octets not yet stored (less than one chunk). */
  #buffer: Uint8Array[] = [];
  #buffered = 0;
  #size = 0;
  /** The next chunk's number. */
  #seq = 0;
  /** Content kept in memory for a claim at commit, or `null` once too large. */
  #kept: Uint8Array[] | null = [];
  /** Octets reserved from the queue's budget for `#kept`. */
  #reserved = 0;
  #state: "open" | "committing" | "committed" | "aborted" = "open";
  /** The write in progress: writes run one after another. */
  #writing: Promise<void> = Promise.resolve();

  /**
   * Starts an upload.
   *
   * @param queueId The queue id assigned.
   * @param init The envelope, recipients, client and time.
   * @param context The queue's side.
   */
  constructor(queueId: string, init: ReceiveInit, context: PgUploadContext) {
    this.queueId = queueId;
    this.#init = init;
    this.#context = context;
  }

  /** Octets written so far. */
  get size(): number {
    return this.#size;
  }

  /** Appends content; full chunks are stored as they fill. See {@linkcode IncomingMessage.write}. */
  write(chunk: Uint8Array): Promise<void> {
    if (this.#state !== "open") {
      return Promise.reject(new Error(`Cannot write to message ${this.queueId}: ${this.#state}`));
    }
    const copy = chunk.slice();
    this.#size += copy.length;
    this.#keep(copy);
    this.#buffer.push(copy);
    this.#buffered += copy.length;
    const next = this.#writing.then(() => this.#storeFullChunks());
    this.#writing = next.catch(() => {});
    return next;
  }

  /** Keeps a copy for a claim at commit while the content is small enough. */
  #keep(copy: Uint8Array): void {
    if (this.#kept === null) return;
    const limit = Math.max(this.#context.inMemoryLimit, this.#init.keepContent ?? 0);
    const over = Math.max(0, this.#size - this.#context.inMemoryLimit) - this.#reserved;
    if (this.#size > limit || (over > 0 && !this.#context.reserveKept(over))) {
      this.#dropKept();
      return;
    }
    if (over > 0) this.#reserved += over;
    this.#kept.push(copy);
  }

  #dropKept(): void {
    this.#kept = null;
    if (this.#reserved > 0) this.#context.releaseKept(this.#reserved);
    this.#reserved = 0;
  }

  async #storeFullChunks(): Promise<void> {
    const { chunkSize } = this.#context;
    while (this.#buffered >= chunkSize) {
      const all = concat(this.#buffer);
      const data = all.subarray(0, chunkSize);
      this.#buffer = [all.slice(chunkSize)];
      this.#buffered = all.length - chunkSize;
      await this.#storeChunk(data);
    }
  }

  /** Inserts one full chunk; the first one also names the upload in `uploads`. */
  async #storeChunk(data: Uint8Array): Promise<void> {
    this.#context.assertOpen();
    const { sql, owner } = this.#context;
    const seq = this.#seq;
    const id = this.queueId;
    const now = Date.now();
    await guard("store the message's content", () =>
      sql.begin(async (tx) => {
        if (seq === 0) {
          await tx`INSERT INTO uploads (queue_id, owner, started, touched)
            VALUES (${id}, ${owner}, ${now}, ${now})`;
        } else {
          const found = await tx`UPDATE uploads SET touched = ${now}
            WHERE queue_id = ${id} RETURNING queue_id`;
          if (found.length === 0) {
            throw new QueueConflictError(id, `Cannot store message ${id}: its upload was removed`);
          }
        }
        await tx`INSERT INTO chunks (queue_id, seq, data) VALUES (${id}, ${seq}, ${toBytea(data)})`;
      }));
    this.#seq = seq + 1;
  }

  /** Makes the message durable. See {@linkcode IncomingMessage.commit}. */
  async commit(options?: CommitOptions): Promise<void> {
    await this.#commit(null, options);
  }

  /** Makes the message durable and claims it. See {@linkcode IncomingMessage.commitAndClaim}. */
  async commitAndClaim(now: number, options?: CommitOptions): Promise<ClaimedMessage> {
    if (options?.hold === true) throw new RangeError("A held message cannot be claimed at commit");
    const claim = await this.#commit(now, options);
    if (claim === null) throw new Error("unreachable: a claimed commit returned no claim");
    return claim;
  }

  async #commit(claimAt: number | null, options?: CommitOptions): Promise<ClaimedMessage | null> {
    if (this.#state === "aborted") {
      throw new Error(`Cannot commit message ${this.queueId}: already aborted`);
    }
    if (this.#state !== "open") {
      throw new Error(`Cannot commit message ${this.queueId}: already ${this.#state}`);
    }
    const header = options?.header ?? new Uint8Array(0);
    if (header.length > MAX_COMMIT_HEADER) {
      throw new RangeError(
        `Cannot commit message ${this.queueId}: its header is ${header.length} octets, over ${MAX_COMMIT_HEADER}`,
      );
    }
    this.#context.assertOpen();
    this.#state = "committing";
    try {
      await this.#writing;
      const claim = await this.#context.track(
        this.#insert(claimAt, header.slice(), options?.hold === true),
      );
      this.#state = "committed";
      return claim;
    } catch (error: unknown) {
      this.#state = "open"; // the caller may abort, which removes what was stored
      if (isUniqueViolation(error)) {
        throw new QueueConflictError(
          this.queueId,
          `Cannot commit message ${this.queueId}: its queue id is taken`,
          { cause: error },
        );
      }
      throw error;
    } finally {
      if (this.#state === "committed") this.#dropKept();
    }
  }

  /** The commit's transaction; returns the claim when `claimAt` is a time. */
  async #insert(
    claimAt: number | null,
    header: Uint8Array,
    hold: boolean,
  ): Promise<ClaimedMessage | null> {
    const { sql, leaseMs, owner, channel } = this.#context;
    const id = this.queueId;
    const init = this.#init;
    const size = this.#size + header.length;
    const recipients = freshRecipients(init);
    const token = crypto.randomUUID();
    const lease = claimAt === null ? null : { token, expires: claimAt + leaseMs };
    // A held message is due never (as `hold` leaves it) until `release`.
    const due = hold ? null : lease === null ? init.now : lease.expires;
    const seq = this.#seq;
    const row: MessageRow = {
      id,
      init,
      recipients,
      size,
      due,
      hold,
      lease,
      owner,
      claimAt,
      // Wakes the delivery loops of every node at commit; a claimed message needs none.
      notify: lease === null ? channel : null,
    };
    if (seq === 0) {
      // The whole message fits in one chunk: one row, one statement, one round
      // trip, committed (alone or with others that came together) before it
      // answers.
      const content = concat([header, ...this.#buffer]);
      await guard(
        "commit the message",
        () => this.#context.batcher.run((q) => insertMessage(q, row, content)),
      );
    } else {
      await guard("commit the message", () =>
        sql.begin(async (tx: Tx) => {
          const named = await tx`DELETE FROM uploads WHERE queue_id = ${id} RETURNING queue_id`;
          if (named.length === 0) {
            throw new QueueConflictError(
              id,
              `Cannot commit message ${id}: its upload was removed (idle too long)`,
            );
          }
          const rest = concat(this.#buffer);
          if (rest.length > 0) {
            await tx`INSERT INTO chunks (queue_id, seq, data)
              VALUES (${id}, ${seq}, ${toBytea(rest)})`;
          }
          if (header.length > 0) {
            await tx`INSERT INTO chunks (queue_id, seq, data)
              VALUES (${id}, -1, ${toBytea(header)})`;
          }
          await insertMessage(tx, row, null);
        }));
    }
    if (lease === null || claimAt === null) return null;
    const message: QueuedMessage = {
      queueId: id,
      envelope: init.envelope,
      recipients,
      size,
      arrival: init.now,
      nextAttempt: init.now,
      held: false,
      clientAddress: init.clientAddress,
    };
    const kept = this.#kept === null ? null : concat([header, ...this.#kept]);
    return {
      message,
      recovered: false,
      lease: { token: lease.token, expires: lease.expires, versionstamp: "0" },
      ...(kept === null ? {} : { content: kept }),
    };
  }

  /** Drops the message and what it stored. See {@linkcode IncomingMessage.abort}. */
  async abort(): Promise<void> {
    if (this.#state === "committed" || this.#state === "aborted") return;
    this.#state = "aborted";
    this.#dropKept();
    this.#buffer = [];
    await this.#writing;
    if (this.#seq === 0) return;
    const { sql } = this.#context;
    const id = this.queueId;
    // When the store cannot be reached the rows stay; recover() removes them
    // once the upload has been idle long enough.
    await guard("remove the upload", () =>
      sql.begin(async (tx) => {
        // Only while the upload is still named: a commit whose answer was
        // lost may have taken it, and then the chunks are the message's.
        const named = await tx`DELETE FROM uploads WHERE queue_id = ${id} RETURNING queue_id`;
        if (named.length > 0) await tx`DELETE FROM chunks WHERE queue_id = ${id}`;
      })).catch(() => {});
  }
}
