/**
 * tern's metrics: one registry for the process, counted where the events
 * are logged (intake, delivery outcomes, server events, refusals) and
 * served by the admin listener (`admin:` in the configuration).
 *
 * The counters are process-wide, as the log is: a process runs one MTA.
 *
 * @module
 */

import type { Queue } from "../queue/mod.ts";
import type { QueuedMessage } from "../queue/types.ts";
import { Counter, Gauge, Registry } from "./registry.ts";

/** The registry `/metrics` renders. */
export const registry: Registry = new Registry();

/** Messages accepted (250 after DATA or BDAT LAST, or taken by local submission). */
export const messagesAccepted: Counter = registry.add(
  new Counter("tern_messages_accepted_total", "Messages accepted into the queue."),
);

/** Delivery outcomes, one per recipient and attempt. */
export const deliveries: Counter = registry.add(
  new Counter(
    "tern_deliveries_total",
    "Delivery outcomes, one per recipient and attempt, by transport (local, lmtp, relay) and result (sent, deferred, bounced).",
    ["transport", "result"],
    ["local", "lmtp", "relay"].flatMap((transport) =>
      ["sent", "deferred", "bounced"].map((result) => ({ transport, result }))
    ),
  ),
);

/** SMTP connections accepted, by listener mode. */
export const connections: Counter = registry.add(
  new Counter(
    "tern_smtp_connections_total",
    "SMTP connections accepted, by listener mode (mx, submission, submissions, local).",
    ["listener"],
  ),
);

/** Replies of 400 or more, by code. */
export const refusals: Counter = registry.add(
  new Counter("tern_smtp_refusals_total", "SMTP replies with a code of 400 or more, by code.", [
    "code",
  ]),
);

/** AUTH attempts that failed. */
export const authFailures: Counter = registry.add(
  new Counter("tern_auth_failures_total", "Failed SMTP AUTH attempts."),
);

/** Certificate orders (first issuance or renewal) that failed; the old certificate kept serving. */
export const acmeRenewFailures: Counter = registry.add(
  new Counter(
    "tern_acme_renew_failures_total",
    "ACME certificate orders (issuance or renewal) that failed; the certificate in use keeps serving.",
  ),
);

/** Queued messages by state, computed when scraped. */
export const queueMessages: Gauge = registry.add(
  new Gauge(
    "tern_queue_messages",
    "Messages in the queue by state: held, deferred (a recipient failed for now), active (waiting for or in delivery).",
    ["state"],
    [{ state: "active" }, { state: "deferred" }, { state: "held" }],
  ),
);

/** The state `tern queue --state` names. */
function stateOf(m: QueuedMessage): "held" | "deferred" | "active" {
  if (m.held) return "held";
  return m.recipients.some((r) => r.status === "deferred") ? "deferred" : "active";
}

/** How long a count of the queue by state is reused: it reads every message. */
export const QUEUE_SCAN_INTERVAL_MS = 5_000;

/**
 * Keeps `tern_queue_messages` up to date from a queue: a full scan of the
 * queue's records, at most once per {@linkcode QUEUE_SCAN_INTERVAL_MS}
 * however often it is scraped (the store has no count by state).
 *
 * @param queue The queue.
 * @returns A function that stops it.
 */
export function watchQueue(queue: Queue): () => void {
  let last = -Infinity;
  return registry.addCollector(async () => {
    const now = Date.now();
    if (now - last < QUEUE_SCAN_INTERVAL_MS) return;
    last = now;
    const counts = { active: 0, deferred: 0, held: 0 };
    try {
      for await (const m of queue.list()) counts[stateOf(m)]++;
    } catch {
      // The store is closed or failing: /readyz says so; keep the last counts.
      return;
    }
    for (const [state, n] of Object.entries(counts)) queueMessages.set({ state }, n);
  });
}
