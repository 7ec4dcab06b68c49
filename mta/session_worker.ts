/**
 * An SMTP session worker: a thread of its own that serves the mx listeners'
 * sessions, each port shared with the other workers (SO_REUSEPORT: the
 * kernel spreads connections among them). It does the work of a session —
 * parsing, policy, block lists, the inbound checks, signing, milters — and
 * asks the main thread, which owns the store, to store each message
 * (remote_queue.ts). Its metrics go to the main thread, which serves them
 * with its own; its log lines too, unless they go to standard error: it
 * then writes them there itself.
 *
 * Started by session_workers.ts; speaks worker_protocol.ts.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import type { Config } from "../config/schema.ts";
import {
  flushLogs,
  isWritten,
  type LogEvent,
  type Logger,
  type LogLevel,
  type LogValue,
} from "../log/logger.ts";
import { registry } from "../metrics/tern.ts";
import { countingLogger } from "../metrics/observers.ts";
import { MetricsDiffer } from "../metrics/thread_metrics.ts";
import { AuthLimiter } from "../smtp/auth_limiter.ts";
import { FdBudget } from "../smtp/fd_budget.ts";
import { SharedConnectionCounts } from "../smtp/connection_counts.ts";
import type { SmtpServer } from "../smtp/server.ts";
import { TlsContext } from "../smtp/tls_context.ts";
import { setConnectionIdPrefix } from "../smtp/server_connection.ts";
import { listenerServer, makeResolvers, serverLimits } from "./listener.ts";
import { LiveConfig, ReloadableLogger } from "./live_config.ts";
import { Milters } from "./milter_stage.ts";
import { clientBlock } from "./policy.ts";
import { RemoteQueue } from "./remote_queue.ts";
import { deliverToMaildir } from "../mda/maildir.ts";
import { setQueueIdThread } from "../queue/queue_id.ts";
import { directorySyncsSettled } from "../fs/sync_directory.ts";
import { maildirHostName, recoversMaildirs } from "../queue/maildir_host.ts";
import { DirectDelivery, logNameSyncFailure, oneSessionOn } from "./direct_delivery.ts";
import { SendingLimits } from "./sending_limits.ts";
import {
  errorData,
  type FromWorker,
  type LogRecord,
  type ToWorker,
  type WorkerInit,
} from "./worker_protocol.ts";
import { Outbox } from "./worker_outbox.ts";
import { fromPortable } from "./worker_config.ts";

/** How often the metrics' differences go to the main thread, ms. */
const METRICS_MS = 1000;

/**
 * What goes to the main thread, a batch per turn of the event loop, in
 * order; this thread's own log lines are written first, so that what the
 * main thread logs on receiving the batch comes after them.
 */
const outbox = new Outbox<FromWorker>((batch, transfer) => {
  flushLogs();
  self.postMessage(batch, transfer);
});
/** The least severe level the main thread writes. */
let logLevel: LogLevel | undefined;
/**
 * This thread's own logger, when the main thread's writes to standard error:
 * lines are then written from here, not sent (sending each costs a copy and
 * the main thread's time, which every worker would share).
 */
let ownLogger: ReloadableLogger | null = null;
/** The same, counting the metrics its lines carry (the main thread counts those it is sent). */
let ownWriter: Logger | null = null;

/** Sends a message to the main thread, after everything sent before it. */
function send(message: FromWorker, transfer: ArrayBuffer[] = []): void {
  outbox.send(message, transfer);
}

/** The batch's log lines, added to the last message when it holds log lines already. */
function logEntry(): { records: LogRecord[]; queued: string[] } {
  if (logs !== null && outbox.last === logs) return logs;
  logs = { type: "logs", records: [], queued: [] };
  outbox.send(logs);
  return logs;
}

/** The log lines of the batch being gathered (while it is the outbox's last message). */
let logs: { type: "logs"; records: LogRecord[]; queued: string[] } | null = null;

/** Log lines go to standard error from here, or to the main thread in order with the rest. */
const logger: Logger = {
  log(level: LogLevel, event: LogEvent, queueId: string | undefined, fields) {
    if (ownWriter !== null) return ownWriter.log(level, event, queueId, fields);
    if (!isWritten(level, logLevel)) return;
    logEntry().records.push([
      level,
      event,
      queueId,
      fields as Record<string, LogValue> | undefined,
    ]);
  },
};

const metrics = new MetricsDiffer(registry);

/** Sends the metrics' differences; when asked, even if nothing changed (the answer is awaited). */
function sendMetrics(asked = false): void {
  const delta = metrics.take();
  if (delta !== null || asked) send({ type: "metrics", delta: delta ?? new Map(), asked });
}

/** The running worker. */
interface Running {
  readonly live: LiveConfig;
  readonly servers: SmtpServer[];
  readonly tls: TlsContext | null;
  readonly queue: RemoteQueue;
  readonly timer: ReturnType<typeof setInterval>;
}

let running: Running | null = null;
/** Answers that came before the worker finished starting cannot be, but requests wait for `running`. */
const early: ToWorker[] = [];

async function start(init: WorkerInit): Promise<void> {
  setConnectionIdPrefix(`W${init.index}`);
  // Its own share of queue ids: the main thread and the other workers make them too.
  setQueueIdThread(init.index, init.sharedBy + 1);
  logLevel = init.logLevel;
  if (init.stderr !== null) {
    ownLogger = new ReloadableLogger(init.stderr);
    ownWriter = countingLogger(ownLogger);
  }
  const config = fromPortable(init.config);
  const live = new LiveConfig(config);
  const queue = new RemoteQueue((request, transfer) => send(request, transfer));
  let tls: TlsContext | null = null;
  const servers: SmtpServer[] = [];
  try {
    if (config.tls !== null) {
      tls = await TlsContext.load(config.tls, {
        onReload: (event) => {
          if (event.type === "error") {
            logger.log("error", "tls.error", undefined, { error: event.error.message });
          }
        },
      });
      // The main thread's manager writes renewed files; this thread reads them too.
      tls.watch();
    }
    const { resolver, dnsbl } = makeResolvers(config, logger);
    const deps = {
      live,
      queue,
      logger,
      tls,
      // mx listeners offer no AUTH (RFC 4954 is for submission): no failures to share.
      authLimiter: new AuthLimiter({
        maxFailures: config.limits.maxAuthFailures,
        delayMs: config.limits.authFailureDelay,
        windowMs: config.limits.authLockout,
        keyOf: clientBlock,
      }),
      sendingLimits: new SendingLimits(),
      fdBudget: new FdBudget({ shared: init.fdBudget, thread: init.index }),
      dnsbl,
      resolver,
      milters: new Milters({ logger, version: init.version }),
      dataEnded: new WeakMap<object, number>(),
      trace: null,
      // After the log lines of the same turn: the acceptance's line comes first.
      onQueued: (queueId: string) => logEntry().queued.push(queueId),
      // Written here, in the session's thread, before the 250.
      direct: new DirectDelivery({
        mailRoot: config.mailRoot,
        hostname: maildirHostName(config),
        logger,
        syncNameLater: recoversMaildirs(config),
        alone: oneSessionOn(servers),
      }),
      reusePort: true,
    };
    for (const [i, listener] of init.listeners.entries()) {
      const server = listenerServer(
        listener,
        deps,
        new SharedConnectionCounts({ buffer: init.counts[i]!, thread: init.index }),
      );
      await server.listen();
      servers.push(server);
    }
  } catch (error: unknown) {
    await Promise.all(servers.map((s) => s.close(0)));
    tls?.close();
    send({ type: "failed", error: error instanceof Error ? error.message : String(error) });
    return;
  }
  const timer = setInterval(() => sendMetrics(), METRICS_MS);
  running = { live, servers, tls, queue, timer };
  send({ type: "ready" });
  for (const message of early.splice(0)) handle(message);
}

function reconfigure(config: Config): void {
  if (running === null) return;
  running.live.replace(config);
  ownLogger?.configure({ level: config.log.level, format: config.log.format });
  for (const server of running.servers) {
    server.reconfigure({
      hostname: config.hostname,
      ...serverLimits(config.limits),
    });
  }
}

async function stop(graceMs: number): Promise<void> {
  const r = running;
  if (r !== null) {
    await Promise.all(r.servers.map((s) => s.close(graceMs)));
    clearInterval(r.timer);
    r.tls?.close();
    r.queue.close("the server is stopping");
  }
  // The main thread's deliveries wait for these files: finish them first,
  // and the renames whose fsync ran after the 250.
  await Promise.all(writing);
  await directorySyncsSettled();
  sendMetrics();
  send({ type: "stopped" });
  outbox.flush();
  self.close();
}

/** Maildir files being written: a stop waits for them. */
const writing = new Set<Promise<void>>();

/** Writes a Maildir file for the main thread's local delivery, and answers. */
function writeMaildir(request: Extract<ToWorker, { type: "maildir" }>): void {
  const done = writeMaildirFile(request).finally(() => writing.delete(done));
  writing.add(done);
}

async function writeMaildirFile(request: Extract<ToWorker, { type: "maildir" }>): Promise<void> {
  try {
    const { nameSynced, ...result } = await deliverToMaildir(
      request.dir,
      request.content,
      request.options,
    );
    // A promise cannot cross threads: a failure of the later fsync is logged here.
    nameSynced?.catch((error: unknown) => logNameSyncFailure(logger, result.path, error));
    send({ type: "maildir", id: request.id, result, error: null });
  } catch (e: unknown) {
    send({ type: "maildir", id: request.id, result: null, error: errorData(e) });
  }
}

function handle(message: ToWorker): void {
  if (running === null && message.type !== "init" && message.type !== "stop") {
    early.push(message);
    return;
  }
  switch (message.type) {
    case "init":
      void start(message);
      break;
    case "answer":
      running!.queue.answer(message);
      break;
    case "config":
      reconfigure(fromPortable(message.config));
      break;
    case "tls":
      void running!.tls?.reload();
      break;
    case "metrics":
      sendMetrics(true);
      break;
    case "maildir":
      writeMaildir(message);
      break;
    case "stop":
      void stop(message.graceMs);
      break;
  }
}

self.onmessage = (event: MessageEvent<ToWorker[]>) => {
  for (const message of event.data) handle(message);
};
