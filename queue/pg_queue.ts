/**
 * The queue in PostgreSQL: one store shared by a fleet of tern nodes, each
 * receiving and delivering, implementing the same {@linkcode Queue} as the
 * Deno KV store and passing the same tests (queue_suite.ts).
 *
 * ## The promises, in PostgreSQL terms
 *
 * - RFC 5321 §6.1: a commit is one transaction (the content's last chunk,
 *   the commit header, the message row), committed with
 *   `synchronous_commit = on`; only then does the server answer `250`.
 *   Content lives in the database (in the message's row when it fits in one
 *   chunk, else in `bytea` chunks), never in node-local files, so any node
 *   can deliver any message.
 * - Round trips: a small message costs two statements, its commit (one
 *   `INSERT`, claimed at commit when the local delivery loop takes it) and
 *   its attempt's record (one `DELETE` or `UPDATE` that checks the lease).
 *   Both go through a batcher (pg_batch.ts): statements that arrive while a
 *   batch is in flight go together in the next, one transaction and one WAL
 *   flush for all (group commit), each answered only after that commit.
 * - A claim is an `UPDATE` of rows picked with `FOR UPDATE SKIP LOCKED`: two
 *   nodes never take one message, and neither waits for the other. A claim
 *   is a lease: the message's `due` becomes the lease's end, so when its
 *   node dies the message comes due again by itself, for any node.
 * - `hold`, `delete` and the recording of an attempt all lock the row, so
 *   they happen one after the other; an attempt recorded on a message held
 *   or deleted meanwhile keeps it held, or writes nothing.
 * - When the database cannot be reached, operations throw
 *   {@linkcode QueueUnavailableError} (the SMTP server answers `451 4.3.0`);
 *   the pool reconnects by itself once it is back.
 *
 * Wake-ups: commits, flushes, releases and given-back claims send a
 * `NOTIFY` in their transaction; {@linkcode PgQueue.watch} `LISTEN`s, so
 * the delivery loop of every node looks for work at once instead of at its
 * next poll. Where `LISTEN` is not available (CockroachDB, YugabyteDB), or
 * while its connection is down, the delivery loop's poll finds the work.
 *
 * The tables are in pg_schema.ts; the upload in pg_upload.ts.
 *
 * @module
 */

import { type Logger, NULL_LOGGER } from "../log/logger.ts";
import type { ClaimedMessage, QueuedMessage, RecipientOutcome, RecipientState } from "./types.ts";
import type { Envelope } from "../smtp/envelope.ts";
import {
  checkStateSize,
  type ClaimOptions,
  type IncomingMessage,
  type Queue,
  type ReceiveInit,
  type RecoverResult,
  type StoreOptions,
} from "./queue.ts";
import { QueueNotFoundError, QueueUnavailableError } from "./errors.ts";
import { newQueueId } from "./queue_id.ts";
import { applyOutcomes, isPending, nextAttemptAt } from "./attempt.ts";
import { HOST, isDeadLocalProcess } from "./kv_keys.ts";
import { bytesOf, guard, openPool, type Sql } from "./pg_sql.ts";
import { isSchemaName, migrate } from "./pg_schema.ts";
import { PgUpload, type PgUploadContext } from "./pg_upload.ts";
import { PgBatcher } from "./pg_batch.ts";

const DEFAULT_LEASE_MS = 60_000;
const DEFAULT_INCOMPLETE_AFTER_MS = 60 * 60_000;
const DEFAULT_KEEP_CONTENT_BUDGET = 64 * 1024 * 1024;
/** Octets per stored chunk: large enough that a typical message is one row. */
const CHUNK_SIZE = 128 * 1024;
/** Chunks read per query when content is streamed. */
const CHUNKS_PER_READ = 4;
/** Messages read per query by `list`. */
const LIST_BATCH = 100;
/** Due messages looked at beyond the limit, for those the caller excludes. */
const EXCLUDE_SLACK = 64;

/** Options of {@linkcode PgQueue.open}: those of every store, and the database's. */
export interface PgQueueOptions extends StoreOptions {
  /** The schema of tern's tables, created if missing. @default {"tern"} */
  readonly schema?: string;
  /** The most connections of the pool. @default {10} */
  readonly maxConnections?: number;
  /** Seconds a connection attempt may take. @default {5} */
  readonly connectTimeout?: number;
}

/** A row of `messages`, as the driver returns it (bigint columns as strings). */
interface MessageRow {
  readonly queue_id: string;
  readonly envelope: Envelope;
  readonly recipients: RecipientState[];
  readonly client_address: string;
  readonly arrival: string;
  readonly size: string;
  readonly next_attempt: string;
  readonly held: boolean;
  readonly due: string | null;
  readonly version: string;
  readonly lease_token: string | null;
  readonly lease_expires: string | null;
}

/** A claimed row with what it held before the claim. */
interface ClaimedRow extends MessageRow {
  readonly prev_token: string | null;
  readonly prev_owner: string | null;
  readonly prev_claimed: string | null;
  readonly prev_due: string;
}

/**
 * The columns of a {@linkcode MessageRow}: every column but `content`, which
 * only a delivery reads (a listing or a claim must not carry every message's
 * octets).
 */
const MESSAGE_COLUMNS: readonly string[] = [
  "queue_id",
  "envelope",
  "recipients",
  "client_address",
  "arrival",
  "size",
  "next_attempt",
  "held",
  "due",
  "version",
  "lease_token",
  "lease_expires",
];

/** {@linkcode MESSAGE_COLUMNS} of the table aliased `m`. */
const M_COLUMNS: readonly string[] = MESSAGE_COLUMNS.map((c) => `m.${c}`);

/** One call of {@linkcode Logger.log}, kept until it is known to have happened. */
type LogCall = Parameters<Logger["log"]>;

/** The record of a row. */
function toMessage(row: MessageRow): QueuedMessage {
  return {
    queueId: row.queue_id,
    envelope: row.envelope,
    recipients: row.recipients,
    size: Number(row.size),
    arrival: Number(row.arrival),
    nextAttempt: Number(row.next_attempt),
    held: row.held,
    clientAddress: row.client_address,
  };
}

/** `host pid` of this process, as leases and uploads record it. */
const OWNER = `${HOST} ${Deno.pid}`;

/** The host and pid of an owner string, for {@linkcode isDeadLocalProcess}. */
function parseOwner(owner: string | null): { host: string; pid: number } | null {
  if (owner === null) return null;
  const space = owner.lastIndexOf(" ");
  const pid = Number(owner.slice(space + 1));
  return space < 0 || !Number.isSafeInteger(pid) ? null : { host: owner.slice(0, space), pid };
}

/**
 * The durable queue of tern in PostgreSQL, shared by every node that opens
 * the same database and schema; see the module documentation.
 */
export class PgQueue implements Queue {
  readonly #sql: Sql;
  readonly #retry: readonly number[];
  readonly #maxAge: number;
  readonly #logger: Logger;
  readonly #leaseMs: number;
  readonly #incompleteAfterMs: number;
  readonly #keepContentBudget: number;
  readonly #channel: string;
  readonly #batcher: PgBatcher;
  #keptOctets = 0;
  /** Commits in flight: close() waits for them. */
  readonly #inFlight = new Set<Promise<unknown>>();
  readonly #unlisten = new Set<() => Promise<void>>();
  #closed = false;

  /** Content that fits in one chunk comes in memory with a claim taken at commit. */
  readonly inMemoryContentLimit: number = CHUNK_SIZE;

  private constructor(sql: Sql, schema: string, options: PgQueueOptions) {
    this.#sql = sql;
    this.#retry = [...options.retry];
    this.#maxAge = options.maxAge;
    this.#logger = options.logger ?? NULL_LOGGER;
    this.#leaseMs = options.leaseMs ?? DEFAULT_LEASE_MS;
    this.#incompleteAfterMs = options.incompleteAfterMs ?? DEFAULT_INCOMPLETE_AFTER_MS;
    this.#keepContentBudget = options.keepContentBudget ?? DEFAULT_KEEP_CONTENT_BUDGET;
    this.#channel = `tern_work_${schema}`;
    this.#batcher = new PgBatcher(sql);
  }

  /**
   * Connects to the database at `url` and creates or upgrades tern's tables
   * in `schema`.
   *
   * @param url A `postgres://` URL; the password from it or `PGPASSWORD`.
   * @param options Retry schedule, give-up time, logger, lease, schema.
   * @returns The open queue; {@linkcode PgQueue.close} it when done.
   * @throws {QueueUnavailableError} When the database cannot be reached or
   *   refuses (a login, a privilege, a schema made by a newer tern).
   */
  static async open(url: string, options: PgQueueOptions): Promise<PgQueue> {
    if (options.retry.length === 0) {
      throw new RangeError("Cannot open the queue: the retry schedule is empty");
    }
    const schema = options.schema ?? "tern";
    if (!isSchemaName(schema)) {
      throw new RangeError(`Cannot open the queue: ${schema} is not a schema name`);
    }
    const sql = openPool(url, {
      schema,
      max: options.maxConnections ?? 10,
      connectTimeout: options.connectTimeout ?? 5,
    });
    try {
      await guard("open the queue", () => migrate(sql, schema));
    } catch (error: unknown) {
      await sql.end({ timeout: 1 }).catch(() => {});
      if (error instanceof QueueUnavailableError) throw error;
      // A refused login, a missing privilege: one line for the operator.
      const why = error instanceof Error ? error.message.replace(/\s+/g, " ") : String(error);
      throw new QueueUnavailableError(`Cannot open the queue: ${why}`, { cause: error });
    }
    return new PgQueue(sql, schema, options);
  }

  /** How long a claim lasts unless renewed, ms (for a deliverer's renewal timer). */
  get leaseMs(): number {
    return this.#leaseMs;
  }

  /**
   * Calls `wake` when another process may have queued due work (a commit, a
   * flush, a release): `LISTEN` on the store's channel. Also called when the
   * listening connection comes back after a loss, since notifications sent
   * meanwhile are gone. When `LISTEN` fails (not supported by the database)
   * it is logged once and the caller's poll does the work.
   *
   * @param wake What to call; it should be cheap (the delivery loop's `wake`).
   * @returns Stops listening.
   */
  watch(wake: () => void): () => void {
    this.#assertOpen();
    let stop: (() => Promise<void>) | null = null;
    let stopped = false;
    const listening = this.#sql.listen(this.#channel, () => wake(), () => wake());
    listening.then((request) => {
      stop = () => request.unlisten();
      if (stopped) void stop().catch(() => {});
      else this.#unlisten.add(stop);
    }, (error: unknown) => {
      this.#logger.log("warn", "queue.error", undefined, {
        action: "listen",
        reason: "no LISTEN: other nodes' mail is found by polling",
        error: error instanceof Error ? error.message : String(error),
      });
    });
    return () => {
      stopped = true;
      if (stop !== null) {
        this.#unlisten.delete(stop);
        void stop().catch(() => {});
      }
    };
  }

  /** Starts receiving a message. See {@linkcode Queue.receive}. */
  receive(init: ReceiveInit): Promise<IncomingMessage> {
    try {
      this.#assertOpen();
      if (init.recipients.length === 0) {
        throw new RangeError("Cannot queue a message with no recipients");
      }
      if (!Number.isFinite(init.now)) throw new RangeError("Cannot queue a message at no time");
      const context: PgUploadContext = {
        sql: this.#sql,
        chunkSize: CHUNK_SIZE,
        inMemoryLimit: CHUNK_SIZE,
        leaseMs: this.#leaseMs,
        owner: OWNER,
        channel: this.#channel,
        assertOpen: () => this.#assertOpen(),
        reserveKept: (octets) => {
          if (this.#keptOctets + octets > this.#keepContentBudget) return false;
          this.#keptOctets += octets;
          return true;
        },
        releaseKept: (octets) => {
          this.#keptOctets -= octets;
        },
        track: (promise) => this.#track(promise),
        batcher: this.#batcher,
      };
      return Promise.resolve(new PgUpload(init.queueId ?? newQueueId(init.now), init, context));
    } catch (error: unknown) {
      return Promise.reject(error);
    }
  }

  /** Claims messages that are due. See {@linkcode Queue.claimDue}. */
  async claimDue(options: ClaimOptions): Promise<ClaimedMessage[]> {
    this.#assertOpen();
    const { now, limit, exclude } = options;
    if (limit <= 0) return [];
    const sql = this.#sql;
    // A plain read first: an idle poll costs one index scan and no write,
    // and it shows which due messages the caller is delivering already.
    const due = await guard(
      "look for due messages",
      () =>
        sql<{ queue_id: string }[]>`SELECT queue_id FROM messages WHERE due <= ${now}
        ORDER BY due, queue_id LIMIT ${limit + EXCLUDE_SLACK}`,
    );
    const skip = due.map((r) => r.queue_id).filter((id) => exclude?.has(id) ?? false);
    if (due.length === skip.length) return [];
    const expires = now + this.#leaseMs;
    const rows = await guard("claim messages", () =>
      sql<ClaimedRow[]>`
        WITH c AS (
          SELECT queue_id, due AS prev_due, lease_token AS prev_token,
            lease_owner AS prev_owner, lease_claimed AS prev_claimed
          FROM messages
          WHERE due <= ${now} AND NOT (queue_id = ANY(${skip}::text[]))
          ORDER BY due, queue_id LIMIT ${limit}
          FOR UPDATE SKIP LOCKED)
        UPDATE messages m SET lease_token = gen_random_uuid()::text, lease_expires = ${expires},
          lease_owner = ${OWNER}, lease_claimed = ${now}, due = ${expires},
          version = m.version + 1
        FROM c WHERE m.queue_id = c.queue_id
        RETURNING ${sql(M_COLUMNS)}, c.prev_due, c.prev_token, c.prev_owner, c.prev_claimed`);
    const sorted = [...rows].sort((a, b) =>
      Number(a.prev_due) - Number(b.prev_due) || (a.queue_id < b.queue_id ? -1 : 1)
    );
    return sorted.map((row) => this.#claimOf(row));
  }

  #claimOf(row: ClaimedRow): ClaimedMessage {
    const recovered = row.prev_token !== null;
    if (recovered) {
      this.#logger.log("warn", "queue.recovered", row.queue_id, {
        reason: "lease expired",
        owner: row.prev_owner ?? undefined,
        claimed: row.prev_claimed === null
          ? undefined
          : new Date(Number(row.prev_claimed)).toISOString(),
      });
    }
    return {
      message: toMessage(row),
      recovered,
      lease: {
        token: row.lease_token ?? "",
        expires: Number(row.lease_expires),
        versionstamp: String(row.version),
      },
    };
  }

  /** Extends a claim. See {@linkcode Queue.renewLease}. */
  async renewLease(claim: ClaimedMessage, now: number): Promise<boolean> {
    this.#assertOpen();
    const expires = now + this.#leaseMs;
    const rows = await guard(
      "renew a claim",
      () =>
        this.#sql`UPDATE messages SET lease_expires = ${expires},
          due = CASE WHEN held THEN NULL ELSE ${expires}::bigint END
        WHERE queue_id = ${claim.message.queueId} AND lease_token = ${claim.lease.token}
        RETURNING queue_id`,
    );
    return rows.length > 0;
  }

  /** Whether a claim still holds the message as claimed. See {@linkcode Queue.isClaimCurrent}. */
  async isClaimCurrent(claim: ClaimedMessage): Promise<boolean> {
    this.#assertOpen();
    const rows = await guard(
      "check a claim",
      () =>
        this.#sql<{ held: boolean; lease_token: string | null; version: string }[]>`
        SELECT held, lease_token, version FROM messages
        WHERE queue_id = ${claim.message.queueId}`,
    );
    const row = rows[0];
    return row !== undefined && !row.held && row.lease_token === claim.lease.token &&
      String(row.version) === claim.lease.versionstamp;
  }

  /** Gives back an unattempted claim. See {@linkcode Queue.unclaim}. */
  async unclaim(claim: ClaimedMessage): Promise<boolean> {
    this.#assertOpen();
    const rows = await guard("give back a claim", () =>
      this.#sql.begin(async (tx) => {
        const rows = await tx`UPDATE messages SET lease_token = NULL, lease_expires = NULL,
            lease_owner = NULL, lease_claimed = NULL,
            due = CASE WHEN held THEN NULL ELSE next_attempt END
          WHERE queue_id = ${claim.message.queueId} AND lease_token = ${claim.lease.token}
          RETURNING queue_id`;
        if (rows.length > 0) await tx`SELECT pg_notify(${this.#channel}, '')`;
        return rows;
      }));
    return rows.length > 0;
  }

  /** Streams a message's content. See {@linkcode Queue.openContent}. */
  openContent(queueId: string): ReadableStream<Uint8Array> {
    this.#assertOpen();
    const sql = this.#sql;
    let size = -1;
    let read = 0;
    let after = -2;
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        if (size < 0) {
          const rows = await guard(
            "read a message",
            () =>
              sql<{ size: string; content: Uint8Array | null }[]>`SELECT size, content
              FROM messages WHERE queue_id = ${queueId}`,
          );
          if (rows[0] === undefined) {
            throw new QueueNotFoundError(
              queueId,
              `Cannot read message ${queueId}: no such message`,
            );
          }
          size = Number(rows[0].size);
          // A message that fits in one chunk has its content in its row.
          const inline = rows[0].content;
          if (inline !== null) {
            controller.enqueue(bytesOf(inline));
            controller.close();
            return;
          }
        }
        const chunks = await guard(
          "read a message",
          () =>
            sql<{ seq: number; data: Uint8Array }[]>`SELECT seq, data FROM chunks
            WHERE queue_id = ${queueId} AND seq > ${after}
            ORDER BY seq LIMIT ${CHUNKS_PER_READ}`,
        );
        for (const chunk of chunks) {
          after = chunk.seq;
          read += chunk.data.length;
          controller.enqueue(bytesOf(chunk.data));
        }
        if (read === size) controller.close();
        else if (chunks.length === 0 || read > size) {
          throw new QueueNotFoundError(
            queueId,
            `Cannot read message ${queueId}: it was removed while being read`,
          );
        }
      },
    }, { highWaterMark: 0 });
  }

  /** Records one delivery attempt. See {@linkcode Queue.recordAttempt}. */
  async recordAttempt(
    claim: ClaimedMessage,
    outcomes: readonly RecipientOutcome[],
    now: number,
  ): Promise<QueuedMessage | null> {
    this.#assertOpen();
    const id = claim.message.queueId;
    // Only the holder of the lease changes a message's recipients, and the
    // row is written only while the claim's lease is on it, so the claim's
    // recipients are the row's: the attempt is applied here and written in
    // one statement (one round trip, one transaction). Expiries it logs wait
    // until the statement has found the lease.
    const logs: LogCall[] = [];
    const { recipients } = applyOutcomes(
      id,
      claim.message.arrival,
      claim.message.recipients,
      outcomes,
      now,
      { maxAge: this.#maxAge, logger: { log: (...call) => logs.push(call) } },
    );
    const result = await guard("record a delivery attempt", async () => {
      const pending = recipients.filter(isPending);
      if (pending.length === 0) {
        const [row] = await this.#deleteClaimed(claim);
        return row === undefined
          ? await this.#lostClaim(id)
          : { final: toMessage({ ...row, recipients }) };
      }
      const nextAttempt = nextAttemptAt(pending, now, this.#retry);
      // A message held during the attempt stays held: due never, until release.
      const [row] = await this.#batcher.run((sql) =>
        sql<MessageRow[]>`UPDATE messages
        SET recipients = ${JSON.stringify(recipients)}::text::jsonb,
          next_attempt = ${nextAttempt},
          due = CASE WHEN held THEN NULL ELSE ${nextAttempt}::bigint END,
          lease_token = NULL, lease_expires = NULL, lease_owner = NULL, lease_claimed = NULL
        WHERE queue_id = ${id} AND lease_token = ${claim.lease.token}
        RETURNING ${sql(MESSAGE_COLUMNS)}`
      );
      return row === undefined ? await this.#lostClaim(id) : { updated: toMessage(row) };
    });
    if ("lost" in result) {
      this.#logger.log("warn", "queue.error", id, {
        reason: result.lost,
        action: "attempt not recorded",
      });
      return null;
    }
    for (const call of logs) this.#logger.log(...call);
    if ("final" in result) {
      const recipients = result.final.recipients;
      this.#logger.log("info", "queue.removed", id, {
        reason: "done",
        sent: recipients.filter((r) => r.status === "sent").length,
        bounced: recipients.filter((r) => r.status === "bounced").length,
      });
      return result.final;
    }
    return result.updated;
  }

  /**
   * Removes a claimed message and its chunks in one statement, while the
   * claim's lease is on it.
   *
   * @returns The removed row, or none when the claim was lost.
   */
  #deleteClaimed(claim: ClaimedMessage): Promise<readonly MessageRow[]> {
    const id = claim.message.queueId;
    return this.#batcher.run((sql) =>
      sql<MessageRow[]>`
      WITH d AS (
        DELETE FROM messages WHERE queue_id = ${id} AND lease_token = ${claim.lease.token}
        RETURNING ${sql(MESSAGE_COLUMNS)}, content IS NULL AS chunked),
      c AS (
        DELETE FROM chunks WHERE queue_id = ${id} AND EXISTS (SELECT 1 FROM d WHERE d.chunked))
      SELECT * FROM d`
    );
  }

  /** Why an attempt found no lease to record under: the message is gone, or another has it. */
  async #lostClaim(id: string): Promise<{ lost: string }> {
    const rows = await this.#sql`SELECT 1 FROM messages WHERE queue_id = ${id}`;
    return { lost: rows.length === 0 ? "message deleted during delivery" : "lease lost" };
  }

  /** Reads one message. See {@linkcode Queue.get}. */
  async get(queueId: string): Promise<QueuedMessage | null> {
    this.#assertOpen();
    const rows = await guard(
      "read a message",
      () =>
        this.#sql<MessageRow[]>`SELECT ${this.#sql(MESSAGE_COLUMNS)} FROM messages
        WHERE queue_id = ${queueId}`,
    );
    return rows[0] === undefined ? null : toMessage(rows[0]);
  }

  /** Lists the queued messages, a batch at a time. See {@linkcode Queue.list}. */
  async *list(): AsyncIterable<QueuedMessage> {
    this.#assertOpen();
    let after = "";
    for (;;) {
      const rows = await guard(
        "list the queue",
        () =>
          this.#sql<MessageRow[]>`SELECT ${this.#sql(MESSAGE_COLUMNS)} FROM messages
          WHERE queue_id > ${after}
          ORDER BY queue_id LIMIT ${LIST_BATCH}`,
      );
      for (const row of rows) yield toMessage(row);
      const last = rows.at(-1);
      if (rows.length < LIST_BATCH || last === undefined) return;
      after = last.queue_id;
    }
  }

  /** Counts the queued messages. See {@linkcode Queue.count}. */
  async count(): Promise<number> {
    this.#assertOpen();
    const rows = await guard(
      "count the queue",
      () => this.#sql<{ n: number }[]>`SELECT count(*)::int AS n FROM messages`,
    );
    return rows[0]?.n ?? 0;
  }

  /** Removes a message for good. See {@linkcode Queue.delete}. */
  async delete(queueId: string): Promise<boolean> {
    this.#assertOpen();
    const removed = await guard("delete a message", () =>
      this.#sql.begin(async (tx) => {
        const rows = await tx`DELETE FROM messages WHERE queue_id = ${queueId} RETURNING queue_id`;
        if (rows.length > 0) await tx`DELETE FROM chunks WHERE queue_id = ${queueId}`;
        return rows.length > 0;
      }));
    if (removed) this.#logger.log("info", "queue.removed", queueId, { reason: "deleted" });
    return removed;
  }

  /** Parks a message. See {@linkcode Queue.hold}. */
  async hold(queueId: string): Promise<boolean> {
    this.#assertOpen();
    const rows = await guard("hold a message", () =>
      this.#sql`UPDATE messages SET due = NULL,
          version = version + CASE WHEN held THEN 0 ELSE 1 END, held = true
        WHERE queue_id = ${queueId} RETURNING queue_id`);
    return rows.length > 0;
  }

  /** Unparks a held message. See {@linkcode Queue.release}. */
  async release(queueId: string): Promise<boolean> {
    this.#assertOpen();
    const rows = await guard("release a message", () =>
      this.#sql.begin(async (tx) => {
        const rows = await tx`UPDATE messages SET
            due = CASE WHEN held THEN GREATEST(next_attempt, COALESCE(lease_expires, 0))
              ELSE due END,
            version = version + CASE WHEN held THEN 1 ELSE 0 END, held = false
          WHERE queue_id = ${queueId} RETURNING queue_id`;
        if (rows.length > 0) await tx`SELECT pg_notify(${this.#channel}, '')`;
        return rows;
      }));
    return rows.length > 0;
  }

  /** Makes every message that is not held due now. See {@linkcode Queue.flush}. */
  async flush(now: number): Promise<number> {
    this.#assertOpen();
    const rows = await guard("flush the queue", () =>
      this.#sql.begin(async (tx) => {
        const rows = await tx<{ n: number }[]>`
          WITH e AS (
            SELECT queue_id, due FROM messages
            WHERE NOT held AND (lease_token IS NULL OR lease_expires <= ${now})
            FOR UPDATE),
          u AS (
            UPDATE messages m SET next_attempt = ${now}, due = ${now}
            FROM e WHERE m.queue_id = e.queue_id AND (e.due IS NULL OR e.due > ${now})
            RETURNING m.queue_id)
          SELECT count(*)::int AS n FROM e`;
        await tx`SELECT pg_notify(${this.#channel}, '')`;
        return rows;
      }));
    return rows[0]?.n ?? 0;
  }

  /** Makes one message due now. See {@linkcode Queue.flushOne}. */
  async flushOne(
    queueId: string,
    now: number,
  ): Promise<"due" | "held" | "delivering" | "unknown"> {
    this.#assertOpen();
    return await guard("flush a message", () =>
      this.#sql.begin(async (tx) => {
        const rows = await tx<MessageRow[]>`SELECT ${tx(MESSAGE_COLUMNS)} FROM messages
          WHERE queue_id = ${queueId} FOR UPDATE`;
        const row = rows[0];
        if (row === undefined) return "unknown" as const;
        if (row.held) return "held" as const;
        if (row.lease_token !== null && Number(row.lease_expires) > now) {
          return "delivering" as const;
        }
        if (row.due === null || Number(row.due) > now) {
          await tx`UPDATE messages SET next_attempt = ${now}, due = ${now}
            WHERE queue_id = ${queueId}`;
          await tx`SELECT pg_notify(${this.#channel}, '')`;
        }
        return "due" as const;
      }));
  }

  /** Cleans up at start. See {@linkcode Queue.recover}. */
  async recover(now: number): Promise<RecoverResult> {
    this.#assertOpen();
    const sql = this.#sql;
    const uploads = await guard(
      "recover the queue",
      () =>
        sql<{ queue_id: string; owner: string; touched: string; started: string }[]>`
        SELECT queue_id, owner, touched, started FROM uploads`,
    );
    let incompleteRemoved = 0;
    for (const upload of uploads) {
      const owner = parseOwner(upload.owner);
      const idle = now - Number(upload.touched) >= this.#incompleteAfterMs;
      if (!idle && !(owner !== null && isDeadLocalProcess(owner))) continue;
      const removed = await guard("recover the queue", () =>
        sql.begin(async (tx) => {
          const rows = await tx`DELETE FROM uploads WHERE queue_id = ${upload.queue_id}
            AND touched = ${upload.touched} RETURNING queue_id`;
          if (rows.length > 0) await tx`DELETE FROM chunks WHERE queue_id = ${upload.queue_id}`;
          return rows.length > 0;
        }));
      if (!removed) continue;
      incompleteRemoved++;
      this.#logger.log("info", "queue.removed", upload.queue_id, {
        reason: "incomplete upload",
        owner: upload.owner,
        started: new Date(Number(upload.started)).toISOString(),
      });
    }
    // Chunks named by neither a message nor an upload cannot be written by
    // this layout (both are written in the chunks' transaction); swept anyway.
    const orphans = await guard("recover the queue", () =>
      sql<{ n: number }[]>`
        WITH d AS (
          DELETE FROM chunks c
          WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.queue_id = c.queue_id)
            AND NOT EXISTS (SELECT 1 FROM uploads u WHERE u.queue_id = c.queue_id)
          RETURNING c.queue_id)
        SELECT count(DISTINCT queue_id)::int AS n FROM d`);
    const leases = await guard(
      "recover the queue",
      () =>
        sql<{ queue_id: string; lease_owner: string | null; lease_expires: string }[]>`
        SELECT queue_id, lease_owner, lease_expires FROM messages
        WHERE lease_token IS NOT NULL`,
    );
    let leasesExpired = 0;
    for (const lease of leases) {
      if (Number(lease.lease_expires) <= now) {
        leasesExpired++;
        continue;
      }
      const owner = parseOwner(lease.lease_owner);
      if (owner === null || !isDeadLocalProcess(owner)) continue;
      // Its worker died on this host (killed, crashed): end the lease now
      // rather than let the message wait it out.
      const ended = await guard(
        "recover the queue",
        () =>
          sql`UPDATE messages SET lease_expires = ${now},
            due = CASE WHEN held THEN NULL ELSE ${now}::bigint END
          WHERE queue_id = ${lease.queue_id} AND lease_owner = ${lease.lease_owner}
            AND lease_token IS NOT NULL RETURNING queue_id`,
      );
      if (ended.length > 0) leasesExpired++;
    }
    const spoolOrphansRemoved = orphans[0]?.n ?? 0;
    this.#logger.log("info", "queue.recovered", undefined, {
      incomplete_removed: incompleteRemoved,
      leases_expired: leasesExpired,
      spool_orphans_removed: spoolOrphansRemoved,
    });
    return { incompleteRemoved, leasesExpired, spoolOrphansRemoved };
  }

  /**
   * Writes a row and reads it back (the admin listener's `/readyz`): throws
   * when the database cannot be reached or does not take writes (a standby).
   */
  async probe(): Promise<void> {
    this.#assertOpen();
    const value = String(Date.now());
    const name = `tern/probe/${HOST}`;
    const rows = await guard(
      "probe the queue store",
      () =>
        this.#sql<{ value: string }[]>`INSERT INTO state (name, value, updated)
        VALUES (${name}, ${value}, ${Date.now()})
        ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated = excluded.updated
        RETURNING value`,
    );
    if (rows[0]?.value !== value) {
      throw new Error("the queue store did not return what was written");
    }
  }

  /** Reads a piece of state. See {@linkcode Queue.getState}. */
  async getState(name: string): Promise<string | null> {
    this.#assertOpen();
    const rows = await guard(
      "read state",
      () => this.#sql<{ value: string }[]>`SELECT value FROM state WHERE name = ${name}`,
    );
    return rows[0]?.value ?? null;
  }

  /** Sets or removes a piece of state. See {@linkcode Queue.setState}. */
  async setState(name: string, value: string | null): Promise<void> {
    this.#assertOpen();
    checkStateSize(name, value);
    await guard("write state", async () => {
      if (value === null) {
        await this.#sql`DELETE FROM state WHERE name = ${name}`;
      } else {
        await this.#sql`INSERT INTO state (name, value, updated)
          VALUES (${name}, ${value}, ${Date.now()})
          ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated = excluded.updated`;
      }
    });
  }

  /** Waits for commits in flight, then closes the pool. See {@linkcode Queue.close}. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
    await Promise.allSettled([...this.#unlisten].map((stop) => stop()));
    await this.#sql.end({ timeout: 5 }).catch(() => {});
  }

  #assertOpen(): void {
    if (this.#closed) throw new QueueUnavailableError("Cannot use the queue: it is closed");
  }

  #track<T>(promise: Promise<T>): Promise<T> {
    this.#inFlight.add(promise);
    const forget = (): void => {
      this.#inFlight.delete(promise);
    };
    promise.then(forget, forget);
    return promise;
  }
}
