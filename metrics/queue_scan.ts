/**
 * One pass over the queue's records: the count by state and the oldest
 * arrival. The store has no count by state, so this reads every record,
 * streaming (`Queue.list()`): memory stays one record however large the
 * queue. `/metrics`, `/status` and `tern status` use it.
 *
 * @module
 */

import type { Queue } from "../queue/queue.ts";
import type { QueuedMessage } from "../queue/types.ts";

/** The states `tern queue --state` names. */
export type QueueState = "active" | "deferred" | "held";

/** What one pass over the queue found. */
export interface QueueScan {
  /** Messages by state. */
  readonly counts: Record<QueueState, number>;
  /** The earliest arrival, epoch ms, or `null` when the queue is empty. */
  readonly oldestArrival: number | null;
}

/**
 * The state `tern queue --state` names: held, deferred (a recipient failed
 * for now), else active.
 *
 * @param m The message.
 * @returns Its state.
 */
export function stateOf(m: QueuedMessage): QueueState {
  if (m.held) return "held";
  return m.recipients.some((r) => r.status === "deferred") ? "deferred" : "active";
}

/**
 * Counts the queue by state and finds its oldest message, reading the
 * records one at a time.
 *
 * @param queue The queue.
 * @returns The counts and the oldest arrival.
 * @throws What the store throws when it cannot be read.
 */
export async function scanQueue(queue: Pick<Queue, "list">): Promise<QueueScan> {
  const counts = { active: 0, deferred: 0, held: 0 };
  let oldest: number | null = null;
  for await (const m of queue.list()) {
    counts[stateOf(m)]++;
    if (oldest === null || m.arrival < oldest) oldest = m.arrival;
  }
  return { counts, oldestArrival: oldest };
}
