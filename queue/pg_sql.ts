/**
 * The PostgreSQL connection of the queue store: the pool's settings, and the
 * line between "the database cannot be reached right now" (a
 * {@linkcode QueueUnavailableError}, which the SMTP server answers with
 * `451 4.3.0`) and every other failure.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import postgres from "postgres";
import { QueueUnavailableError } from "./errors.ts";

/** A pool of connections (the `postgres` driver's). */
export type Sql = postgres.Sql;

/** A transaction of {@linkcode Sql.begin}. */
export type Tx = postgres.TransactionSql;

/** Options of {@linkcode openPool}. */
export interface PoolOptions {
  /** The schema every query runs in (`search_path`). */
  readonly schema: string;
  /** The most connections. */
  readonly max: number;
  /** Seconds a connection attempt may take before the operation fails. */
  readonly connectTimeout: number;
}

/**
 * Opens a pool on `url`. Every connection commits synchronously (RFC 5321
 * §6.1: a `250` must follow a durable commit, whatever the server's default)
 * and runs in `schema`. The password comes from the URL or `PGPASSWORD`
 * (the driver reads both).
 *
 * @param url A `postgres://` or `postgresql://` URL.
 * @param options The schema, pool size and connection timeout.
 * @returns The pool; nothing is connected until the first query.
 */
export function openPool(url: string, options: PoolOptions): Sql {
  return postgres(url, {
    max: options.max,
    connect_timeout: options.connectTimeout,
    idle_timeout: 60,
    onnotice: () => {},
    connection: {
      application_name: "tern",
      search_path: options.schema,
      synchronous_commit: "on",
    },
  });
}

/**
 * SQLSTATE classes and codes that say the database is not there to use
 * (PostgreSQL Appendix A): 08 connection exception, 53 insufficient
 * resources, 57P01-57P05 shutdown, crash and "cannot connect now", 58
 * system error, 25006 a read-only standby.
 */
const UNAVAILABLE_STATES = /^(08|53|57P0|58|25006|3D000)/;

/**
 * Whether an error from the driver means the database cannot be used right
 * now: no connection (refused, closed, timed out) or the server refusing
 * work while it shuts down, starts or is full.
 *
 * @param error What the driver threw.
 * @returns `true` for an unavailable store.
 */
export function isUnavailable(error: unknown): boolean {
  if (error instanceof QueueUnavailableError) return true;
  if (!(error instanceof Error)) return false;
  if (error instanceof postgres.PostgresError) return UNAVAILABLE_STATES.test(error.code);
  const code = (error as { code?: unknown }).code;
  return typeof code === "string" &&
    (/^(CONNECT|CONNECTION_|E[A-Z]+$)/.test(code) || code === "QUEUE_TIMEOUT");
}

/** Whether an error is a unique violation (SQLSTATE 23505): a queue id already taken. */
export function isUniqueViolation(error: unknown): boolean {
  return error instanceof postgres.PostgresError && error.code === "23505";
}

/**
 * Runs a store operation, turning "the database cannot be reached" into a
 * {@linkcode QueueUnavailableError} with one plain line.
 *
 * @param action What is being done, for the message ("commit the message").
 * @param run The operation.
 * @returns What `run` returns.
 */
export async function guard<T>(action: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (error: unknown) {
    if (error instanceof QueueUnavailableError || !isUnavailable(error)) throw error;
    const why = error instanceof Error ? error.message.replace(/\s+/g, " ") : String(error);
    throw new QueueUnavailableError(`Cannot ${action}: the queue store is unavailable (${why})`, {
      cause: error,
    });
  }
}

/** A copy of a `bytea` value the driver read (its buffer may be reused for the next read). */
export function bytesOf(value: Uint8Array): Uint8Array {
  return new Uint8Array(value);
}

/** Octets to write to a `bytea` column, as the driver wants them. */
export function toBytea(value: Uint8Array): Uint8Array {
  return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}
