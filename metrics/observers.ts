/**
 * Where the metrics tap the MTA without changing the code they watch: a
 * logger that counts some of the lines it passes on, a queue whose commits
 * are timed, and the series of
 * the server events of one listener.
 *
 * @module
 */

import type { Logger, LogLevel, LogValue } from "../log/logger.ts";
import type { IncomingMessage, Queue } from "../queue/queue.ts";
import type { ServerLogEvent } from "../smtp/server.ts";
import {
  authFailures,
  authLockouts,
  countAuthSummary,
  countRefusal,
  countTlsOutbound,
  type ListenerSeries,
  storeCommitLatency,
} from "./tern.ts";

/**
 * A logger that passes every line on, and counts from some of them: the
 * checks' verdicts of `message.accepted` and `message.rejected` (their
 * `auth` summary) and the TLS of relay deliveries (the `tls` and
 * `verified` fields of `delivery.*` lines). These lines are the one place
 * where that is known, so the metrics cannot drift from the log.
 *
 * @param logger Where the lines go.
 * @returns The counting logger.
 */
export function countingLogger(logger: Logger): Logger {
  const counting: Logger = {
    log(level: LogLevel, event, queueId, fields?: Record<string, LogValue>): void {
      if (fields !== undefined) countFromLine(event, fields);
      logger.log(level, event, queueId, fields);
    },
  };
  // Read through, not copied: a reload may change the level and format behind them.
  for (const key of ["level", "stderr"] as const) {
    if (logger[key] !== undefined) {
      Object.defineProperty(counting, key, { get: () => logger[key], enumerable: true });
    }
  }
  return counting;
}

function countFromLine(event: string, fields: Record<string, LogValue>): void {
  switch (event) {
    case "message.accepted":
    case "message.rejected":
      if (typeof fields.auth === "string") countAuthSummary(fields.auth);
      break;
    case "delivery.sent":
    case "delivery.deferred":
    case "delivery.bounced":
      // Only the relay's lines name a TLS version (or "none").
      if (typeof fields.tls === "string") countTlsOutbound(fields.tls, fields.verified === true);
      break;
  }
}

/**
 * Counts one server event of a listener: sessions, commands, replies,
 * refusals, TLS, AUTH failures, and the time from the end of data to its
 * reply.
 *
 * @param series The listener's series.
 * @param event The event.
 * @param dataEnded When each connection's data last ended (performance.now()), kept by the caller.
 */
export function countServerEvent(
  series: ListenerSeries,
  event: ServerLogEvent,
  dataEnded: WeakMap<object, number>,
): void {
  switch (event.type) {
    case "connect":
      series.connections.inc();
      series.sessions.inc();
      break;
    case "disconnect":
      series.sessions.dec();
      break;
    case "command":
      series.command(event.line);
      break;
    case "data":
      dataEnded.set(event.connection, performance.now());
      break;
    case "reply": {
      const { reply, context } = event;
      series.reply(reply.code);
      if (context?.stage === "end-of-data") {
        const began = dataEnded.get(event.connection);
        if (began !== undefined) {
          dataEnded.delete(event.connection);
          series.intake.observe((performance.now() - began) / 1000);
        }
      }
      if (reply.code >= 400) countRefusal(context?.stage, reply.enhancedStatus);
      break;
    }
    case "tls":
      series.tls(event.protocol);
      break;
    case "auth":
      if (event.outcome !== "succeeded") authFailures.inc();
      if (event.outcome === "locked") authLockouts.inc();
      break;
  }
}

/** The one series of the commit latency, taken once. */
const commitSeries = storeCommitLatency.labels();

/** Times the commit of one incoming message into the store. */
function timedIncoming(m: IncomingMessage): IncomingMessage {
  return {
    get queueId() {
      return m.queueId;
    },
    get size() {
      return m.size;
    },
    write: (chunk) => m.write(chunk),
    abort: () => m.abort(),
    async commit(options) {
      const began = performance.now();
      await m.commit(options);
      commitSeries.observe((performance.now() - began) / 1000);
    },
    async commitAndClaim(now, options) {
      const began = performance.now();
      const claim = await m.commitAndClaim(now, options);
      commitSeries.observe((performance.now() - began) / 1000);
      return claim;
    },
  };
}

/**
 * The same queue, whose `receive` gives messages whose commit is timed
 * (`tern_store_commit_latency_seconds`): every other member is the queue's
 * own, bound to it.
 *
 * @param queue The queue.
 * @returns A view of it for the intake.
 */
export function timingCommits<Q extends Queue>(queue: Q): Q {
  const bound = new Map<PropertyKey, unknown>();
  const receive: Queue["receive"] = async (init) => timedIncoming(await queue.receive(init));
  return new Proxy(queue, {
    get(target, property) {
      if (property === "receive") return receive;
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== "function") return value;
      let fn = bound.get(property);
      if (fn === undefined) bound.set(property, fn = value.bind(target));
      return fn;
    },
  });
}
