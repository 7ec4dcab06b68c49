/**
 * The MTA assembled: the queue store, the SMTP listeners and the delivery
 * loop, started and stopped together. `tern serve` runs one; tests start one
 * in-process with a temporary configuration.
 *
 * @module
 */

import { join } from "node:path";
import type { Config, ListenerConfig, ListenerMode, TlsConfig } from "../config/schema.ts";
import { SessionWorkers, workerCount } from "./session_workers.ts";
import type { Logger } from "../log/logger.ts";
import { LocalDelivery } from "../mda/local_delivery.ts";
import { deliverToMaildir } from "../mda/maildir.ts";
import { recoverMaildirs } from "../mda/maildir_recovery.ts";
import { directorySyncsSettled } from "../fs/sync_directory.ts";
import { LmtpTransport } from "./lmtp_transport.ts";
import { DirectDelivery, oneSessionOn } from "./direct_delivery.ts";
import { setQueueIdThread } from "../queue/queue_id.ts";
import { DeliveryLoop } from "../queue/delivery_loop.ts";
import {
  maildirHostName,
  openConfiguredQueue,
  type OpenedQueue,
  recoversMaildirs,
  watchQueueWork,
} from "../queue/open_queue.ts";
import type { Queue } from "../queue/queue.ts";
import type { SmtpServer } from "../smtp/server.ts";
import { createDeliver } from "./delivery.ts";
import {
  type ListenerDeps,
  listenerServer,
  logServerEvent,
  makeResolvers,
  serverLimits,
} from "./listener.ts";
import { SendingLimits } from "./sending_limits.ts";
import { type AdminServer, startAdminServer } from "../metrics/admin_server.ts";
import { registry, seriesOf, watchQueue } from "../metrics/tern.ts";
import { countingLogger, countServerEvent, timingCommits } from "../metrics/observers.ts";
import { statusOf } from "../metrics/status.ts";
import { RelayTransport } from "./relay.ts";
import { ServerTrace } from "../smtp/trace.ts";
import { AuthLimiter } from "../smtp/auth_limiter.ts";
import { TlsContext } from "../smtp/tls_context.ts";
import { AcmeManager } from "../acme/manager.ts";
import { FdBudget } from "../smtp/fd_budget.ts";
import { clientBlock } from "./policy.ts";
import { Milters } from "./milter_stage.ts";
import denoJson from "../deno.json" with { type: "json" };
import { TlsRptRecorder } from "../tls_policy/tls_rpt_store.ts";
import { sendDailyReports, TlsRptScheduler } from "../tls_policy/tls_rpt_send.ts";
import { type PolicyServer, startPolicyServer } from "../tls_policy/policy_server.ts";
import { applicableConfig, compareConfigs, type ConfigChange, LiveConfig } from "./live_config.ts";
import {
  checkDataDirOwner,
  type DataDirLock,
  lockDataDir,
  prepareDataDir,
  startPickup,
} from "./pickup.ts";

/** The file of the queue store inside `data_dir`. */
export const QUEUE_FILE = "queue.sqlite3";

/**
 * The queue store's path for a configuration.
 *
 * @param config The configuration.
 * @returns `<data_dir>/queue.sqlite3`.
 */
export function queuePath(config: Config): string {
  return join(config.dataDir, QUEUE_FILE);
}

/** A listener that is listening. */
export interface BoundListener {
  /** What it is for. */
  readonly mode: ListenerMode;
  /** The address bound. */
  readonly address: string;
  /** The port bound (the real one when 0 was asked). */
  readonly port: number;
}

/** Options of {@linkcode Mta.start}. */
export interface MtaOptions {
  /** Where log lines go. */
  readonly logger: Logger;
  /**
   * Deliveries at once. Local ones share their fsyncs, so several at once go
   * faster; too many slow the intake down (they share the disk). @default {24}
   */
  readonly concurrency?: number;
  /** How often the store is polled for due work, ms (work written by other processes). @default {500} */
  readonly pollMs?: number;
  /** The port of MX hosts (tests point it at a loopback receiver). @default {25} */
  readonly mxPort?: number;
  /** Where the annotated protocol trace of every session goes (`tern serve --trace`). @default {no trace} */
  readonly trace?: (line: string) => void;
  /**
   * Session workers for the mx listeners, instead of `workers` of the
   * configuration (session_workers.ts); a trace runs without. @default {as configured}
   */
  readonly workers?: number;
}

/** Thrown when a listener cannot bind; the message is one line for the CLI. */
export class ListenError extends Error {
  /**
   * Makes the error.
   *
   * @param message What failed.
   * @param options The cause.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ListenError";
  }
}

/** A running MTA. */
export class Mta {
  /** The listeners, as bound. */
  readonly listeners: readonly BoundListener[];
  /** The queue store. */
  readonly queue: Queue;
  #servers: SmtpServer[];
  #loop: DeliveryLoop;
  #remote: RelayTransport;
  #lmtp: LmtpTransport | null = null;
  #tls: TlsContext | null = null;
  /** Orders and renews the certificate, with `tls.acme`. */
  #acme: AcmeManager | null = null;
  #lock: DataDirLock | null = null;
  /** The configuration in force; a reload swaps it (see {@linkcode Mta.reload}). */
  #live: LiveConfig | null = null;
  /** The SMTP listeners (not the local submission socket), for limits changed by a reload. */
  #listenerServers: SmtpServer[] = [];
  #logger: Logger | null = null;
  /** The admin HTTP listener, when `admin` is configured. */
  #admin: AdminServer | null = null;
  #unwatchQueue: (() => void) | null = null;
  /** Stops the wake-ups of a shared store (work queued by other nodes). */
  #unwatchWork: () => void = () => {};
  /** TLS-RPT (RFC 8460): the session counts, and the daily reports. */
  #tlsRpt: TlsRptRecorder | null = null;
  #tlsRptScheduler: TlsRptScheduler | null = null;
  /** The HTTPS listener of `mta_sts_policy`. */
  #policyServer: PolicyServer | null = null;
  /** The threads that run the mx listeners' sessions, if any. */
  #workers: SessionWorkers | null = null;

  /** The MTA-STS policy listener's address and port as bound, or `null` without `mta_sts_policy`. */
  get policyServer(): { readonly address: string; readonly port: number } | null {
    const s = this.#policyServer;
    return s === null ? null : { address: s.address, port: s.port };
  }

  /**
   * Writes the TLS-RPT counts gathered so far to the store (done every
   * minute and at stop; `tern tls-report` reads them there).
   *
   * @returns When written.
   */
  async flushTlsReports(): Promise<void> {
    await this.#tlsRpt?.flush();
  }

  /** The admin HTTP listener's address and port as bound, or `null` when `admin` is not configured. */
  get admin(): { readonly address: string; readonly port: number } | null {
    return this.#admin === null ? null : { address: this.#admin.address, port: this.#admin.port };
  }

  private constructor(
    listeners: BoundListener[],
    queue: Queue,
    servers: SmtpServer[],
    loop: DeliveryLoop,
    remote: RelayTransport,
  ) {
    this.listeners = listeners;
    this.queue = queue;
    this.#servers = servers;
    this.#loop = loop;
    this.#remote = remote;
  }

  /**
   * Opens the queue, repairs what a crash left, binds every listener and
   * starts delivering.
   *
   * @param config The configuration.
   * @param options Logger and tuning.
   * @returns The running MTA.
   * @throws {ListenError} When a listener cannot bind.
   * @throws {TlsError} When the TLS certificate or key cannot be used.
   */
  static async start(config: Config, options: MtaOptions): Promise<Mta> {
    // Counts what only the log lines know (the checks' verdicts, the relay's TLS).
    const logger = countingLogger(options.logger);
    // Everything that answers per command or per delivery reads the
    // configuration through this, so a reload swaps one reference.
    const live = new LiveConfig(config);
    // The store holds whole messages: data_dir is 0711 whatever the umask
    // (local users pass through to the submission socket, nobody lists it),
    // the store's files owner-only. Checked before anything is written: a
    // file of someone else's there is a start-up error, not 451s later.
    await Deno.mkdir(config.dataDir, { recursive: true, mode: 0o711 });
    await checkDataDirOwner(config);
    await prepareDataDir(config.dataDir);
    const lock = await lockDataDir(config.dataDir);
    const queue = await openConfiguredQueue(config, { logger });
    await queue.recover(Date.now());
    // Before anything delivers: a file being written looks like one a crash cut short.
    if (recoversMaildirs(config)) await recoverMailboxes(config, logger);
    // Set once the session workers run: they then write the Maildir files.
    let fileWriters: SessionWorkers | null = null;
    const writeMaildir: typeof deliverToMaildir = (dir, content, options) =>
      fileWriters === null
        ? deliverToMaildir(dir, content, options)
        : fileWriters.writeMaildir(dir, content, options);
    const local = new LocalDelivery({
      mailRoot: config.mailRoot,
      hostname: maildirHostName(config),
      logger,
      writeMaildir,
    });
    // Connects only while mailbox_transport names an LMTP server (read per delivery).
    const lmtp = new LmtpTransport({
      endpoint: () => live.current.mailboxTransport,
      hostname: config.hostname,
      logger,
    });
    const { resolver, dnsbl } = makeResolvers(config, logger);
    // One conversation per SMTP connection with each milter, opened at its first MAIL.
    const milters = new Milters({ logger, version: denoJson.version });
    // Filled once the listeners are bound: the relay bounces mail that would come back to one of them.
    const ownEndpoints = new Set<string>();
    // RFC 8460: counted while relay.tls_rpt is on (read per session: a reload turns it off).
    const tlsRpt = new TlsRptRecorder({ store: queue, logger });
    const remote = new RelayTransport({
      config: live,
      resolver,
      logger,
      ...(options.mxPort === undefined ? {} : { mxPort: options.mxPort }),
      isOwnEndpoint: (address, port) => ownEndpoints.has(`${address}:${port}`),
      state: queue, // MTA-STS policies outlive restarts (RFC 8461 §5.1)
      ...(options.trace === undefined ? {} : { trace: options.trace }),
      tlsReports: {
        record: (session) => {
          if (live.current.relay.tlsRpt?.enabled !== false) tlsRpt.record(session);
        },
      },
      maxConnections: config.relay.maxConnections,
      maxConnectionsPerDestination: config.relay.maxConnectionsPerDestination,
    });
    const loop = new DeliveryLoop(queue, {
      deliver: createDeliver({ config: live, queue, local, lmtp, remote, logger }),
      concurrency: options.concurrency ?? 24,
      pollMs: options.pollMs ?? 500,
      logger,
    });
    const serverTrace = options.trace ? new ServerTrace(options.trace) : null;
    // The trace follows each session on this thread: with it, no workers.
    const hasMx = config.listeners.some((l) => l.mode === "mx");
    const workerThreads = serverTrace !== null || !hasMx ? 0 : options.workers ??
      workerCount(config.workers ?? "auto", navigator.hardwareConcurrency);
    let workers: SessionWorkers | null = null;
    let listenerServers: SmtpServer[] = [];
    const servers: SmtpServer[] = [];
    const bound: BoundListener[] = [];
    let tls: TlsContext | null = null;
    let acme: AcmeManager | null = null;
    let admin: AdminServer | null = null;
    let policyServer: PolicyServer | null = null;
    try {
      ({ tls, acme } = await loadTls(config, logger));
      // One limiter for every listener: a guesser gains nothing by switching ports.
      const authLimiter = new AuthLimiter({
        maxFailures: config.limits.maxAuthFailures,
        delayMs: config.limits.authFailureDelay,
        windowMs: config.limits.authLockout,
        keyOf: clientBlock,
      });
      // One count per account for every submission listener: switching ports gains nothing.
      const sendingLimits = new SendingLimits();
      // One budget of file descriptors for every listener, below the process's
      // open-file limit: a listener that hits EMFILE may never accept again.
      // One budget for the process: the session workers count in it too, each in its own slot.
      const fdBudget = new FdBudget({ threads: workerThreads + 1 });
      // When each connection's data last ended, for the intake latency.
      const dataEnded = new WeakMap<object, number>();
      const oneSession = oneSessionOn(servers);
      const deps: ListenerDeps = {
        live,
        queue: timingCommits(queue),
        logger,
        tls,
        authLimiter,
        sendingLimits,
        fdBudget,
        dnsbl,
        resolver,
        milters,
        dataEnded,
        trace: serverTrace,
        onQueued: () => loop.wake(),
        handOff: loop,
        direct: new DirectDelivery({
          mailRoot: config.mailRoot,
          hostname: maildirHostName(config),
          logger,
          writeMaildir,
          syncNameLater: recoversMaildirs(config),
          // Not while workers write the files: they serve sessions of their own.
          alone: () => fileWriters === null && oneSession(),
        }),
      };
      const workerListeners: ListenerConfig[] = [];
      for (const listener of config.listeners) {
        if (workerThreads > 0 && listener.mode === "mx") {
          // Bound by the workers, each with SO_REUSEPORT; found free here first.
          const port = freePortOf(listener);
          workerListeners.push({ ...listener, port });
          bound.push({ mode: listener.mode, address: listener.address, port });
          continue;
        }
        const server = listenerServer(listener, deps);
        let address;
        try {
          address = await server.listen();
        } catch (error: unknown) {
          throw listenError(listener.address, listener.port, null, error);
        }
        servers.push(server);
        bound.push({ mode: listener.mode, address: address.address, port: address.port });
        logger.log("info", "server.listening", undefined, {
          address: address.address,
          port: address.port,
          mode: listener.mode,
        });
      }
      listenerServers = servers.slice();
      if (workerListeners.length > 0) {
        // The workers make queue ids too: each thread its own share.
        setQueueIdThread(0, workerThreads + 1);
        try {
          workers = await SessionWorkers.start({
            count: workerThreads,
            config,
            listeners: workerListeners,
            queue: timingCommits(queue),
            handOff: loop,
            onQueued: () => loop.wake(),
            logger,
            version: denoJson.version,
            fdBudget,
          });
        } catch (error: unknown) {
          const first = workerListeners[0]!;
          throw listenError(first.address, first.port, null, error);
        }
        for (const listener of workerListeners) {
          logger.log("info", "server.listening", undefined, {
            address: listener.address,
            port: listener.port,
            mode: listener.mode,
            workers: workerThreads,
          });
        }
      }
      // Local submission (tern sendmail): a socket any local user may reach.
      const pickupSeries = seriesOf("local");
      const pickup = await startPickup({
        config,
        queue,
        logger,
        loop,
        onEvent: (event) => {
          countServerEvent(pickupSeries, event, dataEnded);
          logServerEvent(logger, event);
          serverTrace?.event(event);
        },
      });
      if (pickup !== null) servers.push(pickup);
      admin = await startAdmin(config, queue, logger, bound);
      policyServer = await startMtaStsPolicy(config, tls, live, logger);
    } catch (error: unknown) {
      await admin?.close();
      tls?.close();
      await acme?.close();
      await Promise.all([...servers.map((s) => s.close(0)), workers?.stop(0)]);
      await queue.close();
      lock.release();
      throw error;
    }
    loop.start();
    for (const b of bound) ownEndpoints.add(`${b.address}:${b.port}`);
    const mta = new Mta(bound, queue, servers, loop, remote);
    mta.#unwatchWork = watchQueueWork(queue, () => loop.wake());
    mta.#tls = tls;
    // Ordered once the listeners are up: they serve the certificate on disk meanwhile.
    if (tls !== null) acme?.start(tls);
    mta.#acme = acme;
    mta.#lmtp = lmtp;
    mta.#lock = lock;
    mta.#live = live;
    mta.#listenerServers = listenerServers;
    mta.#logger = logger;
    mta.#admin = admin;
    if (admin !== null) mta.#unwatchQueue = watchQueue(queue);
    mta.#policyServer = policyServer;
    mta.#workers = workers;
    fileWriters = workers;
    tlsRpt.start();
    mta.#tlsRpt = tlsRpt;
    const scheduler = new TlsRptScheduler({
      logger,
      run: async (day) => {
        await tlsRpt.flush();
        const current = live.current;
        if (current.relay.tlsRpt?.enabled === false) return;
        await sendDailyReports(day, {
          config: current,
          queue,
          resolver,
          logger,
          onQueued: () => loop.wake(),
        });
      },
    });
    scheduler.start();
    mta.#tlsRptScheduler = scheduler;
    return mta;
  }

  /**
   * Reads the TLS certificate and key again (`tern serve` does on SIGHUP).
   * On failure the certificate in use stays, and `tls.error` is logged.
   *
   * @returns Whether new files are in force; `false` too when TLS is not configured.
   */
  reloadTls(): Promise<boolean> {
    this.#workers?.reloadTls();
    return this.#tls?.reload() ?? Promise.resolve(false);
  }

  /** The configuration in force (the one given to {@linkcode Mta.start}, or the last reload). */
  get config(): Config {
    return this.#live!.current;
  }

  /**
   * Puts a new configuration in force (`tern serve` does on SIGHUP, after
   * validating the file): accounts, aliases, local domains, relay policy and
   * routes, limits, host name take effect for the next command, session or
   * delivery; the TLS files are read again. What is bound at start
   * (listeners, data_dir, mail_root, dns, the queue's schedule, connection
   * pools, AUTH lockout) keeps its start-up value, and is logged as
   * `config.restart_needed`. Logs `config.reloaded` with the keys changed.
   *
   * Sessions already open answer their next command by the new configuration
   * but keep their size and recipient limits; a message already accepted
   * keeps the recipients it was expanded to.
   *
   * @param next The new configuration, validated (from `loadConfig`).
   * @returns What changed, and what waits for a restart.
   */
  async reload(next: Config): Promise<ConfigChange> {
    const live = this.#live;
    if (live === null) return { changed: [], restartNeeded: [] };
    const old = live.current;
    const change = compareConfigs(old, next);
    const config = applicableConfig(old, next);
    live.replace(config);
    this.#workers?.reload(config);
    const { limits } = config;
    for (const server of this.#listenerServers) {
      server.reconfigure({ hostname: config.hostname, ...serverLimits(limits) });
    }
    // The same files, perhaps renewed: read them again (tls.loaded or tls.error is logged).
    if (config.tls !== null) await this.reloadTls();
    this.#logger?.log("info", "config.reloaded", undefined, {
      file: next.file ?? undefined,
      changed: change.changed.length === 0 ? "none" : change.changed.join(","),
    });
    if (change.restartNeeded.length > 0) {
      this.#logger?.log("warn", "config.restart_needed", undefined, {
        keys: change.restartNeeded.join(","),
      });
    }
    return change;
  }

  /**
   * Stops: listeners first (transactions in flight may finish within
   * `graceMs`), then deliveries in flight, then the store.
   *
   * @param graceMs How long transactions in flight may take.
   */
  async stop(graceMs = 10_000): Promise<void> {
    this.#unwatchQueue?.();
    await this.#admin?.close();
    await this.#policyServer?.close();
    await this.#tlsRptScheduler?.close();
    await Promise.all([
      ...this.#servers.map((s) => s.close(graceMs)),
      this.#workers?.stop(graceMs),
    ]);
    this.#tls?.close();
    await this.#acme?.close();
    this.#unwatchWork();
    await this.#loop.stop();
    // Renames into new/ whose fsync runs after the 250: durable before exit.
    await directorySyncsSettled();
    // After the last delivery: its sessions count too.
    await this.#tlsRpt?.close();
    await this.#remote.close();
    await this.#lmtp?.close();
    await this.queue.close();
    this.#lock?.release();
  }
}

/**
 * Finishes the Maildir deliveries at acceptance whose rename a crash may
 * have undone (`mda/maildir_recovery.ts`), with a line for each file.
 */
async function recoverMailboxes(config: Config, logger: Logger): Promise<void> {
  const started = performance.now();
  const { files, problems, maildirs } = await recoverMaildirs(
    config.mailRoot,
    maildirHostName(config),
  );
  for (const file of files) {
    logger.log(file.action === "delivered" ? "info" : "warn", "maildir.recovered", undefined, {
      action: file.action,
      path: file.to ?? file.from,
      ...(file.action === "delivered" ? { from: file.from } : { reason: file.reason ?? "" }),
    });
  }
  for (const problem of problems) {
    logger.log("warn", "maildir.error", undefined, {
      path: problem.path,
      error: problem.error,
      stage: "recovery",
    });
  }
  if (files.length > 0 || problems.length > 0) {
    logger.log("info", "maildir.recovered", undefined, {
      maildirs,
      delivered: files.filter((f) => f.action === "delivered").length,
      removed: files.filter((f) => f.action === "removed").length,
      problems: problems.length,
      ms: Math.round(performance.now() - started),
    });
  }
}

/**
 * Starts the admin HTTP listener when `admin` is configured; its readiness
 * probe writes to the queue store.
 */
async function startAdmin(
  config: Config,
  queue: OpenedQueue,
  logger: Logger,
  listeners: readonly BoundListener[],
): Promise<AdminServer | null> {
  if (!config.admin) return null;
  const { address, port } = config.admin;
  let admin: AdminServer | null = null;
  // `tern status` asks here: the listeners as bound, the admin one last.
  const status = statusOf(
    () => [
      ...listeners,
      ...(admin === null ? [] : [{ mode: "admin", address: admin.address, port: admin.port }]),
    ],
    queue,
    Date.now(),
  );
  try {
    admin = await startAdminServer({
      address,
      port,
      registry,
      probe: () => queue.probe(),
      status,
      onProbeError: (error) =>
        logger.log("error", "admin.not_ready", undefined, {
          error: error instanceof Error ? error.message : String(error),
        }),
    });
  } catch (error: unknown) {
    throw listenError(address, port, "admin", error);
  }
  logger.log("info", "server.listening", undefined, {
    address: admin.address,
    port: admin.port,
    mode: "admin",
  });
  return admin;
}

/**
 * The port a listener served by session workers will share: the one
 * configured, or a free one for port 0, checked free by binding it (without
 * SO_REUSEPORT, so another process's socket on it is found, as when tern
 * binds it alone).
 */
function freePortOf(listener: ListenerConfig): number {
  let probe: Deno.Listener;
  try {
    probe = Deno.listen({ hostname: listener.address, port: listener.port });
  } catch (error: unknown) {
    throw listenError(listener.address, listener.port, null, error);
  }
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  return port;
}

/** A listener that could not bind, as one line: the address, which listener, and why. */
function listenError(
  address: string,
  port: number,
  what: string | null,
  error: unknown,
): ListenError {
  const inUse = error instanceof Deno.errors.AddrInUse ||
    (error instanceof Error && "code" in error && error.code === "EADDRINUSE");
  const why = inUse
    ? "address already in use"
    : error instanceof Error
    ? error.message
    : String(error);
  const which = what === null ? "" : ` (${what})`;
  return new ListenError(`cannot listen on ${address}:${port}${which}: ${why}`, { cause: error });
}

/**
 * Starts the HTTPS listener of `mta_sts_policy` (RFC 8461 §3.3), serving
 * the certificate of `tls` (reloads and ACME renewals included).
 */
async function startMtaStsPolicy(
  config: Config,
  tls: TlsContext | null,
  live: LiveConfig,
  logger: Logger,
): Promise<PolicyServer | null> {
  const policy = config.mtaStsPolicy;
  if (policy === undefined || tls === null) return null;
  const { address, port } = policy.listen;
  let server: PolicyServer;
  try {
    server = await startPolicyServer({
      address,
      port,
      secureContext: () => tls.secureContext,
      policy: () => live.current.mtaStsPolicy,
      domains: () => live.current.localDomains,
    });
  } catch (error: unknown) {
    throw listenError(address, port, "mta_sts_policy", error);
  }
  logger.log("info", "server.listening", undefined, {
    address: server.address,
    port: server.port,
    mode: "mta-sts",
  });
  return server;
}

/**
 * Loads the certificate when `tls` is configured, and watches its files so a
 * renewed certificate is taken without a restart; with `tls.acme`, prepares
 * the files first (see acme/manager.ts), and the manager reloads them itself.
 */
async function loadTls(
  config: Config,
  logger: Logger,
): Promise<{ tls: TlsContext | null; acme: AcmeManager | null }> {
  if (config.tls === null) return { tls: null, acme: null };
  const { acme: acmeConfig } = config.tls;
  const acme = acmeConfig === undefined
    ? null
    : await AcmeManager.prepare({ ...config.tls, acme: acmeConfig }, { logger });
  let tls: TlsContext;
  try {
    tls = await loadTlsContext(config.tls, logger);
  } catch (error: unknown) {
    await acme?.close();
    throw error;
  }
  if (acme === null) tls.watch();
  return { tls, acme };
}

async function loadTlsContext(files: TlsConfig, logger: Logger): Promise<TlsContext> {
  const tls = await TlsContext.load(files, {
    onReload: (event) => {
      if (event.type === "loaded") {
        logger.log("info", "tls.loaded", undefined, {
          subject: event.subject,
          valid_to: event.validTo,
        });
      } else {
        logger.log("error", "tls.error", undefined, { error: event.error.message });
      }
    },
  });
  logger.log("info", "tls.loaded", undefined, { subject: tls.subject, valid_to: tls.validTo });
  return tls;
}
