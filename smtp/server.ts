/**
 * The SMTP server's socket adapter: a thin layer that connects
 * {@linkcode ServerSession} to TCP (`node:net`), does the waiting (timeouts of
 * RFC 5321 §4.5.3.2), enforces connection limits, and hands questions to
 * the caller's {@linkcode ServerHandlers}. It knows nothing of queues or
 * mailboxes: the message store is a parameter.
 *
 * Flow control: while a batch of events is being handled (a reply written, a
 * chunk stored, a question answered) the socket is paused, so a client that
 * sends faster than the store writes cannot grow our memory.
 *
 * `node:net` rather than `Deno.listen` because STARTTLS needs to wrap an
 * accepted socket in a server-side TLS socket, which only `node:tls` can do
 * (see docs/platform.md); the connection keeps its socket in one field so that the
 * upgrade can swap it. Implicit TLS (RFC 8314, port 465) wraps the socket
 * the same way as soon as it is accepted.
 *
 * Abuse limits that need a clock live here, not in the session:
 *
 * - timeouts per command and per data block (RFC 5321 §4.5.3.2), counted
 *   from the last reply (or the last 4 KiB of content), so a client that
 *   dribbles one byte a second cannot hold a connection open forever;
 * - a client that does not read our replies is cut after the command timeout;
 * - the greeting delay: an early talker, which sends before the banner, is
 *   refused (RFC 5321 §4.3.1);
 * - failed AUTH answered after a growing delay, and a disconnect after too
 *   many (an {@linkcode AuthLimiter}, shared by listeners);
 * - the TLS handshake is timed on its own: a socket that never completes it
 *   (or whose peer leaves before it) is closed within seconds, not after the
 *   command timeout;
 * - connections past a limit are closed at once, never kept waiting on a
 *   handshake; client sockets stay within the process's open-file budget
 *   (an {@linkcode FdBudget}, shared by listeners), because a `node:net`
 *   listener under Deno that once fails to accept with EMFILE never accepts
 *   again; a watchdog connects to the listener now and then and opens it
 *   anew if it stopped accepting all the same.
 *
 * @module
 */

import net from "node:net";
import tls from "node:tls";
import type { AuthLimiter } from "./auth_limiter.ts";
import { type ConnectionCounts, LocalConnectionCounts } from "./connection_counts.ts";
import { countOpenFiles, type FdBudget, readOpenFileLimit } from "./fd_budget.ts";
import { REPLIES } from "./reply.ts";
import { ServerSession } from "./server_session.ts";
import { Connection, type Endpoints } from "./server_connection.ts";
import { unmapIpv4 } from "../net/ip.ts";
import { Probe, probeHost } from "./server_probe.ts";
import type {
  ServerHandlers,
  ServerLimits,
  ServerLogEvent,
  SmtpServerOptions,
  TlsSource,
} from "./server_types.ts";

// The public types live beside the server; importers of this module see them all.
export type * from "./server_types.ts";

/** A refusal that the client does not take within this time is cut. */
const REFUSAL_WRITE_MS = 2000;

/** The watchdog's clock: budget checks, the end of an overload burst. */
const TICK_MS = 1000;

/** An overload burst ends after this long without a refusal. */
const BURST_QUIET_MS = 5000;

/** Descriptors that must be free before the watchdog probes. */
const PROBE_ROOM = 16;

/** After the grace period and the 421s, how long closing waits before cutting sockets. */
const CUT_MS = 1000;

/** Per-address refusals are reported once per address in this time. */
const REFUSAL_REPORT_MS = 10_000;

function ignore(): void {}

/**
 * An SMTP server on one TCP listener.
 *
 * @example Accept mail for one domain and print it
 * ```ts ignore
 * import { SmtpServer } from "./server.ts";
 * import { REPLIES, queuedReply } from "./reply.ts";
 *
 * const server = new SmtpServer({
 *   hostname: "mx.example.test",
 *   address: "127.0.0.1",
 *   port: 2525,
 *   handlers: {
 *     recipient: (path) => path.endsWith("@example.test") ? REPLIES.recipientOk : REPLIES.relayDenied,
 *     open: () => {
 *       const parts: Uint8Array[] = [];
 *       return Promise.resolve({
 *         write: (chunk) => { parts.push(chunk.slice()); return Promise.resolve(); },
 *         commit: () => Promise.resolve(queuedReply("1")),
 *         abort: () => Promise.resolve(),
 *       });
 *     },
 *   },
 * });
 * await server.listen();
 * ```
 */
export class SmtpServer {
  /** The handlers given in the options. */
  readonly handlers: ServerHandlers;
  /** Command timeout, ms (see {@linkcode SmtpServer.reconfigure}). */
  commandTimeout: number;
  /** Data timeout, ms (see {@linkcode SmtpServer.reconfigure}). */
  dataTimeout: number;
  /** TLS handshake timeout, ms (see {@linkcode SmtpServer.reconfigure}). */
  tlsHandshakeTimeout: number;
  /** The certificate, or `null` without TLS. */
  readonly tls: TlsSource | null;
  /** The AUTH limiter, if any. */
  readonly authLimiter: AuthLimiter | undefined;
  /** Whether a client's AUTH failures are exempt from the per-address count. */
  readonly authAddressExempt: (remoteAddress: string) => boolean;
  #options: SmtpServerOptions;
  #keyOf: (address: string) => string;
  #budget: FdBudget | null;
  #server: net.Server | null = null;
  /** The port bound, once listening (the real one when 0 was asked). */
  #port = 0;
  #connections = new Set<Connection>();
  /** Every accepted socket not yet closed: sessions, refusals, handshakes in progress. */
  #sockets = new Set<net.Socket>();
  /** Open connections against the limits: this server's own, or shared by the threads of its port. */
  #counts: ConnectionCounts;
  #stopping = false;
  #ticker: ReturnType<typeof setInterval> | undefined;
  #accepted = 0;
  #openFileLimit: number | null = null;
  #nextProbeAt = 0;
  #probe: Probe | null = null;
  #burst: { reason: string; refused: number; lastAt: number } | null = null;
  #refusalReported = new Map<string, number>();

  /**
   * Makes a server; {@linkcode SmtpServer.listen} starts it.
   *
   * @param options Where to listen, the limits and the handlers.
   * @throws {TypeError} When `implicitTls` is asked without `tls`.
   */
  constructor(options: SmtpServerOptions) {
    this.#options = options;
    this.handlers = options.handlers;
    this.commandTimeout = options.commandTimeout ?? 300_000;
    this.dataTimeout = options.dataTimeout ?? 600_000;
    this.tlsHandshakeTimeout = options.tlsHandshakeTimeout ?? 10_000;
    this.tls = options.tls ?? null;
    this.authLimiter = options.authLimiter;
    this.#counts = options.connectionCounts ?? new LocalConnectionCounts();
    this.authAddressExempt = options.authAddressExempt ?? (() => false);
    this.#keyOf = options.keyOf ?? ((address) => address);
    this.#budget = options.fdBudget ?? null;
    if (options.implicitTls && this.tls === null) {
      throw new TypeError("Cannot listen with implicit TLS: no certificate (tls) given");
    }
  }

  /**
   * Changes limits on a running server (a configuration reload). Sessions
   * that start from now on take all of them; sessions already open keep
   * their size, recipient and error limits and host name, and take the new
   * timeouts from their next wait.
   *
   * @param limits The options to change.
   */
  reconfigure(limits: ServerLimits): void {
    this.#options = { ...this.#options, ...limits };
    this.commandTimeout = this.#options.commandTimeout ?? this.commandTimeout;
    this.dataTimeout = this.#options.dataTimeout ?? this.dataTimeout;
    this.tlsHandshakeTimeout = this.#options.tlsHandshakeTimeout ?? this.tlsHandshakeTimeout;
  }

  /** How many clients are connected now. */
  get connectionCount(): number {
    return this.#connections.size;
  }

  /** How many accepted sockets are open now: sessions, and refusals not yet closed. */
  get socketCount(): number {
    return this.#sockets.size;
  }

  /** @internal Reports an event to `onEvent`. */
  report(event: ServerLogEvent): void {
    if (event.type === "disconnect") {
      const c = event.connection as Connection;
      if (this.#connections.delete(c)) this.#counts.release(this.#keyOf(c.remoteAddress));
    }
    this.#options.onEvent?.(event);
  }

  /**
   * Starts listening.
   *
   * @returns The address and port bound (the port is the real one when 0 was asked).
   */
  async listen(): Promise<{ address: string; port: number }> {
    const bound = await this.#bind(this.#options.port);
    this.#port = bound.port;
    this.#openFileLimit = readOpenFileLimit();
    const watchdog = this.#options.reusePort ? 0 : this.#options.watchdogInterval ?? 10_000;
    this.#nextProbeAt = watchdog > 0 ? Date.now() + watchdog : Infinity;
    this.#ticker = setInterval(() => this.#tick(), TICK_MS);
    Deno.unrefTimer(this.#ticker);
    return bound;
  }

  #bind(port: number): Promise<{ address: string; port: number }> {
    const server = net.createServer(
      { pauseOnConnect: true, allowHalfOpen: true },
      (socket) => this.#accept(socket),
    );
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      const where = this.#options.path === undefined
        ? { host: this.#options.address, port, reusePort: this.#options.reusePort ?? false }
        : { path: this.#options.path };
      server.listen(where, () => {
        server.off("error", reject);
        // A listener that fails later is noticed by the watchdog, not here.
        server.on("error", ignore);
        this.#server = server;
        const a = server.address();
        // A Unix-domain socket is named by its path, and has no port.
        const isPath = typeof a === "string" || a === null;
        resolve(isPath ? { address: a ?? "", port: 0 } : { address: a.address, port: a.port });
      });
    });
  }

  /** Wraps a socket for implicit TLS (RFC 8314 §3), or leaves it plain. */
  #secure(socket: net.Socket): net.Socket {
    if (!this.#options.implicitTls || this.tls === null) return socket;
    return new tls.TLSSocket(socket, { isServer: true, secureContext: this.tls.secureContext });
  }

  #accept(socket: net.Socket): void {
    // An error on a socket nobody listens to yet must not bring the process down.
    socket.on("error", ignore);
    this.#accepted++;
    if (this.#probe?.claims(socket)) return;
    this.#admit(socket);
  }

  /** Counts a socket until it closes, and gives its descriptor back to the budget then. */
  #track(socket: net.Socket, counted: boolean): void {
    this.#sockets.add(socket);
    socket.once("close", () => {
      this.#sockets.delete(socket);
      if (counted) this.#budget?.release();
    });
  }

  #admit(socket: net.Socket): void {
    const ip = unmapIpv4(socket.remoteAddress ?? "");
    const key = this.#keyOf(ip);
    const maxTotal = this.#options.maxConnections ?? 1000;
    const maxPerIp = this.#options.maxConnectionsPerIp ?? 50;
    if (this.#stopping) {
      this.#track(socket, false);
      this.#refuse(socket, ip, "421 4.3.2 Service shutting down, try again later");
      return;
    }
    const budget = this.#budget;
    if (budget !== null && !budget.tryAcquire()) {
      // Out of room: refuse, but keep the descriptor no longer than a refusal takes.
      const counted = budget.take();
      if (counted) this.#track(socket, true);
      this.#overloaded(budget.isShort ? "short of file descriptors" : "file descriptor budget");
      this.#refuse(socket, null, counted ? TOO_MANY : null);
      return;
    }
    this.#track(socket, budget !== null);
    const admission = this.#counts.admit(key, maxTotal, maxPerIp);
    if (admission === "total") {
      this.#overloaded("max_connections");
      this.#refuse(socket, null, TOO_MANY);
      return;
    }
    if (admission === "per-client") {
      this.#refuse(socket, this.#shouldReport(key) ? ip : null, TOO_MANY);
      return;
    }
    socket.setNoDelay(true);
    const implicitTls = (this.#options.implicitTls ?? false) && this.tls !== null;
    const session = new ServerSession({
      ...this.#options,
      implicitTls,
      startTls: this.tls !== null && !implicitTls && (this.#options.startTls ?? true),
    });
    const ends: Endpoints = {
      remoteAddress: ip,
      remotePort: socket.remotePort ?? 0,
      localAddress: unmapIpv4(socket.localAddress ?? ""),
      localPort: socket.localPort ?? 0,
    };
    const connection = new Connection(this.#secure(socket), this, session, ends);
    this.#connections.add(connection);
    this.#options.onEvent?.({ type: "connect", connection });
    const delay = this.#options.greetingDelay;
    connection.start(typeof delay === "function" ? delay(ip) : delay ?? 0);
    socket.resume();
  }

  /**
   * Refuses a connection without starting a session (RFC 5321 §3.1: a 421
   * and close). Under implicit TLS it is closed without a word: a reply would
   * have to wait for a handshake, and the client may never make one. A plain
   * refusal that the client does not take at once is cut shortly after.
   *
   * @param reportAs The client's address to report the refusal for, or `null` not to.
   * @param reply The reply line without CRLF, or `null` to close without one.
   */
  #refuse(socket: net.Socket, reportAs: string | null, reply: string | null): void {
    if (reportAs !== null && reply !== null) {
      this.#options.onEvent?.({ type: "refused", remoteAddress: reportAs, reason: reply });
    }
    if (reply === null || this.#options.implicitTls) {
      socket.destroy();
      return;
    }
    const cut = setTimeout(() => socket.destroy(), REFUSAL_WRITE_MS);
    socket.once("close", () => clearTimeout(cut));
    socket.write(`${reply}\r\n`, () => socket.destroy());
    socket.resume();
  }

  /** Per-address refusals: report the first from an address, then at most one per interval. */
  #shouldReport(key: string): boolean {
    const now = Date.now();
    const last = this.#refusalReported.get(key);
    if (last !== undefined && now - last < REFUSAL_REPORT_MS) return false;
    if (this.#refusalReported.size >= 10_000) this.#refusalReported.clear();
    this.#refusalReported.set(key, now);
    return true;
  }

  /** Counts a refusal for want of room; the first of a burst is reported. */
  #overloaded(reason: string): void {
    const now = Date.now();
    if (this.#burst === null) {
      this.#burst = { reason, refused: 1, lastAt: now };
      this.#options.onEvent?.({
        type: "overload",
        state: "began",
        reason,
        open: this.#budget?.open ?? this.#sockets.size,
        refused: 1,
      });
      return;
    }
    this.#burst.refused++;
    this.#burst.lastAt = now;
  }

  /** The watchdog: checks the descriptors, ends a burst, probes the listener when due. */
  #tick(): void {
    if (this.#stopping) return;
    this.#budget?.check();
    const now = Date.now();
    const burst = this.#burst;
    if (burst !== null && now - burst.lastAt >= BURST_QUIET_MS) {
      this.#burst = null;
      this.#options.onEvent?.({
        type: "overload",
        state: "ended",
        reason: burst.reason,
        open: this.#budget?.open ?? this.#sockets.size,
        refused: burst.refused,
      });
      // A burst is when a listener is most likely to have hit EMFILE: look now.
      if (Number.isFinite(this.#nextProbeAt)) this.#nextProbeAt = now;
    }
    for (const [key, at] of this.#refusalReported) {
      if (now - at >= REFUSAL_REPORT_MS) this.#refusalReported.delete(key);
    }
    if (this.#server === null) {
      void this.#relisten(null); // a relisten that failed: try again
      return;
    }
    if (this.#probe === null && now >= this.#nextProbeAt && this.#hasRoomToProbe()) {
      this.#nextProbeAt = now + (this.#options.watchdogInterval ?? 10_000);
      this.#startProbe();
    }
  }

  /**
   * Whether a probe can be made without running the process out of
   * descriptors (Deno itself may fail badly at EMFILE): it waits until the
   * sockets are reaped.
   */
  #hasRoomToProbe(): boolean {
    if (this.#budget?.isShort === true) return false;
    if (this.#openFileLimit === null) return true;
    const open = countOpenFiles();
    return open === null || open + PROBE_ROOM <= this.#openFileLimit;
  }

  /**
   * Connects to the listener: if the connection is made but nothing at all
   * is accepted meanwhile, the listener has stopped accepting.
   */
  #startProbe(): void {
    const acceptedBefore = this.#accepted;
    const probe = new Probe(probeHost(this.#options.address), this.#port, (outcome) => {
      this.#probe = null;
      for (const socket of probe.parked) this.#admit(socket);
      const accepted = this.#accepted > acceptedBefore;
      if (this.#stopping || accepted || outcome === "failed") return;
      void this.#relisten(this.#server);
    });
    this.#probe = probe;
  }

  /** Closes a listener that stopped accepting and listens again on the same port. */
  async #relisten(dead: net.Server | null): Promise<void> {
    if (this.#stopping) return;
    this.#server = null;
    dead?.close(); // its sessions go on; only the listening socket is replaced
    let error: string | null = null;
    try {
      await this.#bind(this.#port);
    } catch (e: unknown) {
      error = e instanceof Error ? e.message : String(e);
    }
    if (this.#stopping) {
      (this.#server as net.Server | null)?.close();
      return;
    }
    if (dead !== null || error === null) {
      this.#options.onEvent?.({
        type: "relisten",
        address: this.#options.address,
        port: this.#port,
        error,
      });
    }
  }

  /**
   * Stops: no new connections; idle sessions get `421 4.3.2` at once, busy
   * ones at their next command; after `graceMs` the rest get a 421 and, a
   * moment later, every socket still open is cut, whatever it waits on (a
   * handshake, a client that reads nothing, a half-closed peer).
   *
   * @param graceMs How long transactions in flight may take to finish.
   */
  async close(graceMs = 10_000): Promise<void> {
    this.#stopping = true;
    clearInterval(this.#ticker);
    this.#probe?.cancel();
    const server = this.#server;
    this.#server = null;
    // Its callback waits for every accepted socket: wait for it only once they are cut.
    const closed = server
      ? new Promise<void>((resolve) => server.close(() => resolve()))
      : Promise.resolve();
    for (const c of this.#connections) c.stop();
    const all = () => Promise.all([...this.#connections].map((c) => c.done)).then(() => true);
    if (!(await within(all(), graceMs))) {
      for (const c of this.#connections) c.abort(REPLIES.shuttingDown);
      await within(all(), CUT_MS);
    }
    for (const c of this.#connections) c.kill("cut at shutdown");
    for (const socket of this.#sockets) socket.destroy();
    await within(all(), CUT_MS);
    await within(closed.then(() => true), CUT_MS);
  }
}

const TOO_MANY = "421 4.7.0 Too many connections, try again later";

/** Resolves `true` when `promise` settles within `ms`, else `false`. */
async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
