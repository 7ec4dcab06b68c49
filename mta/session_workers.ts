/**
 * More than one core: the mx listeners' SMTP sessions run in worker threads
 * (session_worker.ts), each listening on the same ports (SO_REUSEPORT, the
 * kernel spreads the connections), while the main thread keeps what must
 * be one: the store and its commits, the delivery loop, the submission
 * listeners (their AUTH lockout and sending limits count per process), the
 * admin listener. A session's CPU work (parsing, policy, DNS, inbound
 * checks, signing, milters) is spread over the cores; every message still
 * becomes durable in the one store, through the main thread, before its
 * `250`.
 *
 * A worker that dies is started again; the messages it had not committed
 * are dropped (their clients got no `250`), those it had are delivered.
 *
 * @module
 */

import type { Config, ListenerConfig } from "../config/schema.ts";
import type { Logger } from "../log/logger.ts";
import { registry } from "../metrics/tern.ts";
import type { DeliveryLoop } from "../queue/delivery_loop.ts";
import type { Queue } from "../queue/queue.ts";
import { QueueBridge } from "./queue_bridge.ts";
import { Outbox } from "./worker_outbox.ts";
import { toPortable } from "./worker_config.ts";
import type { FdBudget } from "../smtp/fd_budget.ts";
import {
  deliverToMaildir,
  type MaildirContent,
  type MaildirDeliveryOptions,
  type MaildirDeliveryResult,
} from "../mda/maildir.ts";
import { SharedConnectionCounts } from "../smtp/connection_counts.ts";
import {
  errorFromData,
  type FromWorker,
  type ToWorker,
  type WorkerInit,
} from "./worker_protocol.ts";

/** A worker that died is started again after this long, ms. */
const RESTART_MS = 1000;

/** How long `/metrics` waits for a worker's latest figures, ms. */
const METRICS_WAIT_MS = 1000;

/** Past the grace period, how long a stopping worker has to finish before it is ended, ms. */
const STOP_SLACK_MS = 2000;

/**
 * How many session workers to run for `workers` in the configuration:
 * `auto` is one per core but one (the main thread's) from four cores on, at
 * most 16; none below four. On two cores a worker bought nothing in the
 * bench (`local`, `relay`, `sign`: the same rate within the noise, 10–60%
 * more CPU per message for passing each message between threads), since
 * Deno's I/O threads and SQLite's already use the second core and the
 * store's commits, not the CPU, set the pace there.
 *
 * @param workers The configured value.
 * @param cores The cores this process may run on.
 * @returns The count; 0 runs every session on the main thread.
 */
export function workerCount(workers: number | "auto", cores: number): number {
  if (workers !== "auto") return workers;
  return cores >= 4 ? Math.min(cores - 1, 16) : 0;
}

/** What {@linkcode SessionWorkers.start} needs. */
export interface SessionWorkersOptions {
  /** How many workers. */
  readonly count: number;
  /** The configuration in force. */
  readonly config: Config;
  /** The listeners the workers serve, with the ports to share (bound ports, not 0). */
  readonly listeners: readonly ListenerConfig[];
  /** The store. */
  readonly queue: Pick<Queue, "receive">;
  /** The delivery loop, which takes messages claimed at commit. */
  readonly handOff?: Pick<DeliveryLoop, "acceptsHandOff" | "handOff">;
  /** Wakes the delivery loop for a message committed without a claim. */
  readonly onQueued: () => void;
  /** Where the workers' log lines go. */
  readonly logger: Logger;
  /** tern's version, for the milters' macros. */
  readonly version: string;
  /** The main thread's open-file budget, made for `count + 1` threads; the workers' sockets count in it too. */
  readonly fdBudget: FdBudget;
}

/** One worker thread and the bridge to the store that serves it. */
class SessionWorker {
  readonly #options: SessionWorkersOptions;
  readonly #index: number;
  /** The listeners' shared connection counts. */
  readonly #counts: readonly SharedConnectionCounts[];
  #config: Config;
  #worker: Worker | null = null;
  /** What goes to the thread, a batch per turn. */
  #outbox: Outbox<ToWorker> | null = null;
  #bridge: QueueBridge | null = null;
  #stopping = false;
  #stopped: (() => void) | null = null;
  #restartTimer: ReturnType<typeof setTimeout> | null = null;
  /** Waiting for the worker's metrics. */
  #metricsWaiting: (() => void)[] = [];
  /** Maildir files the worker is writing, by request id. */
  readonly #maildirWaiting = new Map<
    number,
    { resolve: (r: MaildirDeliveryResult) => void; reject: (e: Error) => void }
  >();
  #nextMaildirId = 1;

  constructor(
    options: SessionWorkersOptions,
    index: number,
    counts: readonly SharedConnectionCounts[],
  ) {
    this.#options = options;
    this.#counts = counts;
    this.#index = index;
    this.#config = options.config;
  }

  /** Starts the thread; resolves once its listeners are bound, rejects with why they are not. */
  start(): Promise<void> {
    const options = this.#options;
    const worker = new Worker(new URL("./session_worker.ts", import.meta.url).href, {
      type: "module",
    });
    const bridge = new QueueBridge({
      queue: options.queue,
      ...(options.handOff === undefined ? {} : { handOff: options.handOff }),
      onQueued: options.onQueued,
    });
    this.#worker = worker;
    this.#bridge = bridge;
    const outbox = new Outbox<ToWorker>((batch, transfer) => worker.postMessage(batch, transfer));
    this.#outbox = outbox;
    const post = (message: ToWorker) => outbox.send(message);
    return new Promise((resolve, reject) => {
      let started = false;
      const receive = (message: FromWorker) => {
        switch (message.type) {
          case "write":
          case "commit":
          case "abort":
            bridge.handle(message, post);
            break;
          case "logs":
            for (const [level, name, queueId, fields] of message.records) {
              options.logger.log(level, name, queueId, fields);
            }
            for (const queueId of message.queued) bridge.queued(queueId);
            break;
          case "metrics":
            registry.addSeries(message.delta);
            if (message.asked) this.#metricsWaiting.shift()?.();
            break;
          case "ready":
            started = true;
            resolve();
            break;
          case "failed":
            worker.terminate();
            reject(new Error(message.error));
            break;
          case "stopped":
            this.#stopped?.();
            break;
          case "maildir": {
            const waiting = this.#maildirWaiting.get(message.id);
            this.#maildirWaiting.delete(message.id);
            if (message.error === null) waiting?.resolve(message.result!);
            else waiting?.reject(errorFromData(message.error));
            break;
          }
        }
      };
      worker.onmessage = (event: MessageEvent<FromWorker[]>) => {
        for (const message of event.data) receive(message);
      };
      worker.onerror = (event: ErrorEvent) => {
        // Not the process's end: this thread's sessions are lost, the others go on.
        event.preventDefault();
        options.logger.log("error", "server.worker_failed", undefined, {
          worker: this.#index,
          error: event.message,
        });
        void this.#lost();
        if (!started) reject(new Error(event.message));
      };
      const init: WorkerInit = {
        type: "init",
        config: toPortable(this.#config),
        listeners: options.listeners,
        sharedBy: options.count,
        counts: this.#counts.map((c) => c.buffer),
        fdBudget: options.fdBudget.shared,
        index: this.#index,
        version: options.version,
        stderr: options.logger.stderr ?? null,
        logLevel: options.logger.level,
      };
      post(init);
    });
  }

  /** The thread died: its uncommitted messages are dropped, and it is started again. */
  async #lost(): Promise<void> {
    this.#worker?.terminate();
    this.#worker = null;
    this.#failMaildir();
    // Its connections died with it: they count no more.
    for (const counts of this.#counts) counts.clear(this.#index);
    this.#options.fdBudget.clear(this.#index);
    await this.#bridge?.close();
    this.#bridge = null;
    if (this.#stopping) {
      this.#stopped?.();
      return;
    }
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = null;
      if (this.#stopping) return;
      this.start().catch((error: unknown) => {
        this.#options.logger.log("error", "server.worker_failed", undefined, {
          worker: this.#index,
          error: error instanceof Error ? error.message : String(error),
        });
        void this.#lost();
      });
    }, RESTART_MS);
  }

  /** Asks for the worker's latest metrics; resolves when they are added (or after a second). */
  async refreshMetrics(): Promise<void> {
    const worker = this.#worker;
    if (worker === null) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const answered = new Promise<void>((resolve) => this.#metricsWaiting.push(resolve));
    const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, METRICS_WAIT_MS)));
    this.#outbox?.send({ type: "metrics" });
    await Promise.race([answered, late]);
    clearTimeout(timer);
  }

  /** Whether the thread runs (and may be asked to write files). */
  get isRunning(): boolean {
    return this.#worker !== null && !this.#stopping;
  }

  /**
   * Has the thread write one Maildir file.
   *
   * @param dir The Maildir.
   * @param content The message (copied to the thread).
   * @param options As for {@linkcode deliverToMaildir}.
   * @returns Where it was written.
   */
  writeMaildir(
    dir: string,
    content: Uint8Array,
    options: MaildirDeliveryOptions,
  ): Promise<MaildirDeliveryResult> {
    const worker = this.#worker;
    if (worker === null) return deliverToMaildir(dir, content, options);
    const id = this.#nextMaildirId++;
    const copy = content.slice();
    return new Promise((resolve, reject) => {
      this.#maildirWaiting.set(id, { resolve, reject });
      this.#outbox!.send({ type: "maildir", id, dir, content: copy, options }, [copy.buffer]);
    });
  }

  /** Fails the Maildir writes still waiting: the thread is gone (they are retried later). */
  #failMaildir(): void {
    for (const waiting of this.#maildirWaiting.values()) {
      waiting.reject(new Error("the session worker writing the file stopped"));
    }
    this.#maildirWaiting.clear();
  }

  /** Sends a reloaded configuration. */
  reload(config: Config): void {
    this.#config = config;
    this.#outbox?.send({ type: "config", config: toPortable(config) });
  }

  /** Makes the thread read its certificate again. */
  reloadTls(): void {
    this.#outbox?.send({ type: "tls" });
  }

  /** Stops the thread's listeners and sessions (within `graceMs`), then the thread. */
  async stop(graceMs: number): Promise<void> {
    this.#stopping = true;
    if (this.#restartTimer !== null) clearTimeout(this.#restartTimer);
    const worker = this.#worker;
    if (worker === null) return;
    const stopped = new Promise<void>((resolve) => (this.#stopped = resolve));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, graceMs + STOP_SLACK_MS);
    });
    this.#outbox?.send({ type: "stop", graceMs });
    await Promise.race([stopped, late]);
    clearTimeout(timer);
    worker.terminate();
    this.#worker = null;
    this.#failMaildir();
    await this.#bridge?.close();
    this.#bridge = null;
  }
}

/** The session workers of a running MTA. */
export class SessionWorkers {
  readonly #workers: SessionWorker[];
  /** The worker that writes the next Maildir file. */
  #next = 0;
  /** Removes the collector that fetches the workers' metrics before each `/metrics`. */
  readonly #uncollect: () => void;

  private constructor(workers: SessionWorker[]) {
    this.#workers = workers;
    this.#uncollect = registry.addCollector(() =>
      Promise.all(workers.map((w) => w.refreshMetrics())).then(() => {})
    );
  }

  /**
   * Starts the workers; resolves once every one listens.
   *
   * @param options How many, what they serve, and the store.
   * @returns The running workers.
   * @throws {Error} When one cannot start (its listener did not bind): the others are stopped.
   */
  static async start(options: SessionWorkersOptions): Promise<SessionWorkers> {
    // One count of open connections per port, for every thread of it.
    const counts = options.listeners.map(() =>
      new SharedConnectionCounts({ threads: options.count + 1, thread: 0 })
    );
    const workers = Array.from(
      { length: options.count },
      (_, i) => new SessionWorker(options, i + 1, counts),
    );
    const started = await Promise.allSettled(workers.map((w) => w.start()));
    const failed = started.find((s) => s.status === "rejected");
    if (failed !== undefined) {
      await Promise.all(workers.map((w) => w.stop(0)));
      throw (failed as PromiseRejectedResult).reason;
    }
    return new SessionWorkers(workers);
  }

  /** How many workers run. */
  get count(): number {
    return this.#workers.length;
  }

  /**
   * Puts a reloaded configuration in force in every worker.
   *
   * @param config The configuration.
   */
  reload(config: Config): void {
    for (const w of this.#workers) w.reload(config);
  }

  /**
   * Writes one Maildir file in a worker (round robin), so that the main
   * thread, which commits and delivers every message, does not spend its
   * time in file system calls; content that is not in memory (a stream from
   * the store) is written here.
   *
   * @param dir The Maildir.
   * @param content The message.
   * @param options As for {@linkcode deliverToMaildir}.
   * @returns Where it was written.
   */
  writeMaildir(
    dir: string,
    content: MaildirContent,
    options: MaildirDeliveryOptions,
  ): Promise<MaildirDeliveryResult> {
    const n = this.#workers.length;
    for (let i = 0; i < n && content instanceof Uint8Array; i++) {
      const worker = this.#workers[this.#next++ % n]!;
      if (worker.isRunning) return worker.writeMaildir(dir, content, options);
    }
    return deliverToMaildir(dir, content, options);
  }

  /** Makes every worker read the certificate files again. */
  reloadTls(): void {
    for (const w of this.#workers) w.reloadTls();
  }

  /**
   * Stops every worker: no new connections, transactions in flight may
   * finish within `graceMs`, and their commits are answered meanwhile.
   *
   * @param graceMs How long transactions in flight may take.
   */
  async stop(graceMs: number): Promise<void> {
    this.#uncollect();
    await Promise.all(this.#workers.map((w) => w.stop(graceMs)));
  }
}
