/**
 * What `tern status` shows: the listeners of the running server and its
 * queue by state. The admin listener answers it as JSON on `/status`;
 * `tern status` asks there first, and reads the store itself when no server
 * answers.
 *
 * @module
 */

import type { Queue } from "../queue/queue.ts";
import { scanQueue } from "./queue_scan.ts";

/** A listener as the status names it. */
export interface StatusListener {
  /** `mx`, `submission`, `submissions`, or `admin`. */
  readonly mode: string;
  /** The address bound (or configured, when the server does not run). */
  readonly address: string;
  /** The port. */
  readonly port: number;
}

/** The queue as the status shows it. */
export interface StatusQueue {
  /** Messages waiting for or in delivery. */
  readonly active: number;
  /** Messages with a recipient that failed for now. */
  readonly deferred: number;
  /** Messages parked by `tern queue hold`. */
  readonly held: number;
  /** The age of the oldest message, seconds, or `null` when the queue is empty. */
  readonly oldest_age_seconds: number | null;
}

/** The answer of `/status`. */
export interface ServerStatus {
  /** The server's process id. */
  readonly pid: number;
  /** How long it has been running, seconds. */
  readonly uptime_seconds: number;
  /** Its listeners, the admin one last. */
  readonly listeners: readonly StatusListener[];
  /** Its queue. */
  readonly queue: StatusQueue;
}

/**
 * Counts a queue by state and finds the age of its oldest message.
 *
 * @param queue The queue.
 * @param now The current time, epoch ms.
 * @returns The counts and the age.
 */
export async function queueStatus(queue: Pick<Queue, "list">, now: number): Promise<StatusQueue> {
  const scan = await scanQueue(queue);
  return {
    ...scan.counts,
    oldest_age_seconds: scan.oldestArrival === null
      ? null
      : Math.max(0, Math.floor((now - scan.oldestArrival) / 1000)),
  };
}

/**
 * Makes the function that answers `/status` for a running server.
 *
 * @param listeners The listeners as bound.
 * @param queue The server's queue.
 * @param startedAt When the server started, epoch ms.
 * @returns The function.
 */
export function statusOf(
  listeners: () => readonly StatusListener[],
  queue: Pick<Queue, "list">,
  startedAt: number,
): () => Promise<ServerStatus> {
  return async () => {
    const now = Date.now();
    return {
      pid: Deno.pid,
      uptime_seconds: Math.floor((now - startedAt) / 1000),
      listeners: listeners(),
      queue: await queueStatus(queue, now),
    };
  };
}
