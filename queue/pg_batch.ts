/**
 * Group commit for the PostgreSQL store: single-statement writes (a
 * message's commit, an attempt's record) that arrive while another batch is
 * in flight wait for it, then go together in one round trip and one
 * transaction (`sql.batch`: one Sync, so the server commits them at once and
 * flushes its WAL once for all). A burst of commits and deliveries costs a
 * few transactions, socket writes and WAL flushes instead of one each, as the
 * Deno KV store's group committer does for its fsyncs.
 *
 * Every statement keeps its own effect: a batch that fails for any reason
 * but an unavailable database (a taken queue id, a deadlock with another
 * session) is split back into its statements, each run alone, so one
 * statement's failure never fails another. A statement is answered only once
 * the transaction holding it has committed (RFC 5321 §6.1: the `250` of a
 * commit follows its durable commit; the batch commits with
 * `synchronous_commit = on`, as every statement of the pool does).
 *
 * @module
 */

import type postgres from "postgres";
import { isUnavailable, type Sql } from "./pg_sql.ts";

/** A statement to run, built on the pool when its batch goes. */
export type Statement<T extends readonly postgres.MaybeRow[]> = (
  sql: Sql,
) => postgres.PendingQuery<T>;

/** An entry's statement with its row type erased (each entry's caller knows its own). */
type AnyStatement = (sql: Sql) => postgres.PendingQuery<postgres.Row[]>;

interface Entry {
  readonly build: AnyStatement;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
}

/** The most statements in one batch: a bound on one transaction's size and locks. */
const MAX_BATCH = 64;

/**
 * Batches in flight at once. One: the next batch takes everything that came
 * while this one was in flight. With two, measured on the `local-pg` bench,
 * batches were smaller and each message cost more CPU, for no better rate.
 */
const LANES = 1;

/**
 * Runs single statements, sharing one transaction among those that arrive
 * together; see the module documentation.
 */
export class PgBatcher {
  readonly #sql: Sql;
  readonly #pending: Entry[] = [];
  /** Batches in flight. */
  #lanes = 0;

  /**
   * A batcher on a pool; nothing is sent until the first {@linkcode run}.
   *
   * @param sql The pool the batches run on.
   */
  constructor(sql: Sql) {
    this.#sql = sql;
  }

  /**
   * Runs a statement, perhaps in one transaction with others.
   *
   * @param build Builds the statement on the pool (called once, or again
   *   when its batch is split).
   * @returns Its rows, once the transaction holding it has committed.
   */
  run<T extends readonly postgres.MaybeRow[]>(build: Statement<T>): Promise<postgres.RowList<T>> {
    return new Promise<postgres.RowList<T>>((resolve, reject) => {
      this.#pending.push({
        build: build as unknown as AnyStatement,
        resolve: resolve as (value: unknown) => void,
        reject,
      });
      if (this.#lanes < LANES) void this.#drain();
    });
  }

  async #drain(): Promise<void> {
    this.#lanes++;
    try {
      while (this.#pending.length > 0) {
        const batch = this.#pending.splice(0, MAX_BATCH);
        await this.#send(batch);
      }
    } finally {
      this.#lanes--;
    }
  }

  /** Sends one batch; settles each of its entries. */
  async #send(batch: readonly Entry[]): Promise<void> {
    if (batch.length === 1) {
      await this.#alone(batch[0]!);
      return;
    }
    let results: unknown[];
    try {
      const queries = batch.map((e) => e.build(this.#sql));
      const sent = this.#sql.batch(queries);
      // Each statement of a failed batch rejects too (marked skipped); its
      // entry is settled from the batch's outcome instead. After `batch`, a
      // handler no longer sends the query on its own.
      for (const query of queries) query.catch(() => {});
      results = await sent;
    } catch (error: unknown) {
      if (isUnavailable(error)) {
        for (const entry of batch) entry.reject(error);
        return;
      }
      // Nothing of the batch was committed: each statement again, alone,
      // so only the one at fault fails.
      for (const entry of batch) await this.#alone(entry);
      return;
    }
    batch.forEach((entry, i) => entry.resolve(results[i]));
  }

  async #alone(entry: Entry): Promise<void> {
    try {
      entry.resolve(await entry.build(this.#sql));
    } catch (error: unknown) {
      entry.reject(error);
    }
  }
}
