/**
 * Opens the queue store a configuration names: the Deno KV store in
 * `data_dir` by default, or the PostgreSQL store of `queue.store` shared by
 * a fleet of nodes. The server and the `tern` commands open it here, so they
 * always agree on where the queue is.
 *
 * @module
 */

import { join } from "node:path";
import type { Config } from "../config/types.ts";
import type { Logger } from "../log/logger.ts";
import { KvQueue } from "./kv_queue.ts";
import { PgQueue } from "./pg_queue.ts";
import type { Queue } from "./queue.ts";

/** The file of the Deno KV store inside `data_dir`. */
const KV_FILE = "queue.sqlite3";

/** A queue as the server uses it: the {@linkcode Queue}, a readiness probe and wake-ups. */
export interface OpenedQueue extends Queue {
  /** Writes to the store and reads back; throws when it cannot (the admin `/readyz`). */
  probe(): Promise<void>;
}

/** Options of {@linkcode openConfiguredQueue}. */
export interface OpenQueueOptions {
  /** Where the store's events go. */
  readonly logger: Logger;
}

/**
 * Opens the store `config` names (`queue.store`, else Deno KV at
 * `<data_dir>/queue.sqlite3`), with its retry schedule, give-up time and
 * lease.
 *
 * @param config The configuration.
 * @param options The logger.
 * @returns The open queue; close it when done.
 * @throws {QueueUnavailableError} When a PostgreSQL store cannot be reached.
 */
export async function openConfiguredQueue(
  config: Config,
  options: OpenQueueOptions,
): Promise<OpenedQueue> {
  const settings = {
    retry: config.queue.retry,
    maxAge: config.queue.maxAge,
    logger: options.logger,
    ...(config.queue.lease === undefined ? {} : { leaseMs: config.queue.lease }),
  };
  if (config.queue.store !== undefined) return await PgQueue.open(config.queue.store, settings);
  return await KvQueue.open(join(config.dataDir, KV_FILE), settings);
}

/**
 * Calls `wake` when another process of a shared store queued work, where the
 * store can tell (PostgreSQL `LISTEN`); a no-op otherwise, where the delivery
 * loop's poll finds that work.
 *
 * @param queue The open queue.
 * @param wake What to call (the delivery loop's `wake`).
 * @returns Stops the wake-ups.
 */
export function watchQueueWork(queue: Queue, wake: () => void): () => void {
  return queue instanceof PgQueue ? queue.watch(wake) : () => {};
}

export { maildirHostName, recoversMaildirs } from "./maildir_host.ts";
