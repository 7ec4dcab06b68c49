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
import { concatBytes } from "./_bytes.ts";
import type { AuthFailure, AuthLimiter } from "./auth_limiter.ts";
import type { Envelope } from "./envelope.ts";
import { countOpenFiles, type FdBudget, readOpenFileLimit } from "./fd_budget.ts";
import type { Parameters } from "./command.ts";
import { isPermanent, isPositive, REPLIES, type Reply } from "./reply.ts";
import type { SaslCredentials, SaslMechanism } from "./sasl.ts";
import {
  type ReplyContext,
  ServerSession,
  type ServerSessionOptions,
  type SessionEvent,
} from "./server_session.ts";

/** What the handlers know about the connection a question comes from. */
export interface ConnectionInfo {
  /** A short id for logs, unique within the process. */
  readonly id: string;
  /** The client's IP address. */
  readonly remoteAddress: string;
  /** The client's port. */
  readonly remotePort: number;
  /** Our IP address the client connected to. */
  readonly localAddress: string;
  /** Our port the client connected to. */
  readonly localPort: number;
  /** The name the client gave in EHLO/HELO. */
  readonly clientName: string;
  /** Whether the client said EHLO (ESMTP) rather than HELO. */
  readonly isExtended: boolean;
  /** The TLS protocol and cipher when the connection is encrypted, else `null`. */
  readonly tls: { readonly protocol: string; readonly cipher: string } | null;
  /** The authenticated user, or `null`. */
  readonly authenticatedAs: string | null;
}

/** Where the content of one message goes while it arrives. */
export interface MessageSink {
  /**
   * Stores the next piece of content.
   *
   * @param chunk Decoded content octets.
   */
  write(chunk: Uint8Array): Promise<void>;
  /**
   * The content is complete: make the message durable.
   *
   * @returns The final reply: `250 2.0.0 Ok: queued as <ID>` only once it is durable, else a refusal.
   */
  commit(): Promise<Reply>;
  /** Throw away what was stored. */
  abort(): Promise<void>;
}

/** The caller's answers to the session's questions. */
export interface ServerHandlers {
  /**
   * Accept this sender? Default: yes.
   *
   * @param reversePath `local@domain`, or `""` for `<>`.
   * @param parameters MAIL FROM parameters.
   * @param connection Who asks.
   * @returns A positive reply to accept, or the refusal.
   */
  sender?(
    reversePath: string,
    parameters: Parameters,
    connection: ConnectionInfo,
  ): Promise<Reply> | Reply;
  /**
   * Accept this recipient?
   *
   * @param forwardPath `local@domain` (or `Postmaster`).
   * @param parameters RCPT TO parameters.
   * @param connection Who asks.
   * @returns A positive reply to accept, or the refusal.
   */
  recipient(
    forwardPath: string,
    parameters: Parameters,
    connection: ConnectionInfo,
  ): Promise<Reply> | Reply;
  /**
   * Content is about to arrive: open a place for it.
   *
   * @param envelope The transaction so far.
   * @param connection Who sends it.
   * @returns The sink, or a refusal (such as `451 4.3.0` when the store is down).
   */
  open(envelope: Envelope, connection: ConnectionInfo): Promise<MessageSink | Reply>;
  /**
   * Are these credentials right? Default: no one can log in. Called only
   * under the session's AUTH rules (RFC 4954 §4: encrypted, outside a
   * transaction, once). Never log or echo `credentials.password`.
   *
   * @param credentials What the client presented.
   * @param connection Who asks.
   * @returns `235 2.7.0` to accept, `535 5.7.8` to refuse (counted as a failure
   *   by the {@linkcode AuthLimiter}), or `454 4.7.0` when it cannot be checked now.
   */
  authenticate?(credentials: SaslCredentials, connection: ConnectionInfo): Promise<Reply> | Reply;
}

/** What the server needs of a certificate: the context for the next handshake (a {@linkcode TlsContext} fits). */
export interface TlsSource {
  /** The `node:tls` secure context to hand to the next handshake. */
  readonly secureContext: tls.SecureContext;
}

/** Options of {@linkcode SmtpServer}. */
export interface SmtpServerOptions extends ServerSessionOptions {
  /** The address to listen on. */
  address: string;
  /** The port; 0 picks a free one. */
  port: number;
  /**
   * A Unix-domain socket to listen on instead of `address` and `port` (local
   * submission); the caller removes a stale file first and sets its mode.
   * Clients then have no address: `remoteAddress` is `""`.
   */
  path?: string;
  /** Answers to the session's questions. */
  handlers: ServerHandlers;
  /** Wait for a command, ms (RFC 5321 §4.5.3.2.7: at least 5 minutes). @default {300000} */
  commandTimeout?: number;
  /** Wait for more content during DATA/BDAT, ms (§4.5.3.2.6: at least 3 minutes). @default {600000} */
  dataTimeout?: number;
  /** Connections at once, in total. @default {1000} */
  maxConnections?: number;
  /** Connections at once from one address (as grouped by `keyOf`). @default {50} */
  maxConnectionsPerIp?: number;
  /**
   * Which addresses count as one client for `maxConnectionsPerIp` (an IPv6
   * client usually holds a whole /64). @default {the address itself}
   */
  keyOf?: (address: string) => string;
  /** Wait for the TLS handshake to complete, ms (implicit TLS and STARTTLS). @default {10000} */
  tlsHandshakeTimeout?: number;
  /**
   * The open-file budget for client sockets; share one between listeners.
   * Without it, only `maxConnections` bounds them.
   */
  fdBudget?: FdBudget;
  /** How often the watchdog checks that the listener still accepts, ms; 0: never. @default {10000} */
  watchdogInterval?: number;
  /** Called for each connection event worth logging. */
  onEvent?: (event: ServerLogEvent) => void;
  /**
   * The certificate. With it, STARTTLS is offered (RFC 3207) unless
   * `startTls` is `false`, or, with `implicitTls`, every connection starts
   * with the TLS handshake (RFC 8314 §3). Without it, neither.
   */
  tls?: TlsSource | null;
  /**
   * Counts failed AUTH per client address; share one between listeners.
   * Without it, failures are only counted per session (`maxErrors`).
   */
  authLimiter?: AuthLimiter;
  /**
   * Clients whose AUTH failures are not counted against their address, only
   * against the account they try (a webmail on the same host: one address
   * for all its users, which must not lock them all out). @default {none}
   */
  authAddressExempt?: (remoteAddress: string) => boolean;
  /**
   * How long to wait before the banner, ms, or a function of the client's
   * address. A client that sends anything meanwhile is refused with
   * `421 4.7.0` (RFC 5321 §4.3.1: the client waits for the greeting). @default {0}
   */
  greetingDelay?: number | ((remoteAddress: string) => number);
}

/** What the adapter reports for logs and traces. */
export type ServerLogEvent =
  | { readonly type: "connect"; readonly connection: ConnectionInfo }
  | { readonly type: "disconnect"; readonly connection: ConnectionInfo; readonly reason: string }
  | { readonly type: "refused"; readonly remoteAddress: string; readonly reason: string }
  /**
   * Connections are being refused for want of room (`began`: the first of a
   * burst, with why; `ended`: no refusal for a few seconds, with how many).
   * Reported once per burst, not once per connection.
   */
  | {
    readonly type: "overload";
    readonly state: "began" | "ended";
    readonly reason: string;
    /** Client sockets open now (all listeners, when a budget is shared). */
    readonly open: number;
    /** Connections refused in the burst so far. */
    readonly refused: number;
  }
  /** The listener stopped accepting (found by the watchdog) and was opened again, or could not be. */
  | {
    readonly type: "relisten";
    readonly address: string;
    readonly port: number;
    readonly error: string | null;
  }
  | { readonly type: "command"; readonly connection: ConnectionInfo; readonly line: string }
  /** The content of a message ended: `octets` of it came (for traces, which never show content). */
  | { readonly type: "data"; readonly connection: ConnectionInfo; readonly octets: number }
  /** A reply sent, and what it answers (the step, and the envelope as it stood). */
  | {
    readonly type: "reply";
    readonly connection: ConnectionInfo;
    readonly reply: Reply;
    /** Set by the server for every reply it sends. */
    readonly context?: ReplyContext;
  }
  | { readonly type: "error"; readonly connection: ConnectionInfo; readonly error: unknown }
  /** The TLS handshake is done (STARTTLS or implicit TLS). */
  | {
    readonly type: "tls";
    readonly connection: ConnectionInfo;
    readonly protocol: string;
    readonly cipher: string;
  }
  /**
   * An AUTH attempt: `succeeded` (the user is in `connection.authenticatedAs`),
   * `failed`, or `locked` (refused unchecked: too many failures from this
   * address). Failed attempts carry no user name: people type passwords there.
   */
  | {
    readonly type: "auth";
    readonly connection: ConnectionInfo;
    readonly mechanism: SaslMechanism;
    readonly outcome: "succeeded" | "failed" | "locked";
    /** Failures remembered for this address (with an AuthLimiter; 0 when the address is exempt). */
    readonly failures?: number;
    /** Failures remembered for the account tried (with an AuthLimiter). */
    readonly accountFailures?: number;
  };

/** The options {@linkcode SmtpServer.reconfigure} may change on a running server. */
export type ServerLimits = Partial<
  Pick<
    SmtpServerOptions,
    | "hostname"
    | "maxMessageSize"
    | "maxRecipients"
    | "maxErrors"
    | "maxConnections"
    | "maxConnectionsPerIp"
    | "commandTimeout"
    | "dataTimeout"
    | "tlsHandshakeTimeout"
  >
>;

let nextConnectionId = 1;

/** RFC 5321 §4.5.3.2.6 times each data block; a block here is this many octets of content. */
const DATA_BLOCK_OCTETS = 4096;

const RESOLVED: Promise<void> = Promise.resolve();

/** Replies held back past this many octets are written without waiting for the batch to end. */
const OUTPUT_FLUSH_OCTETS = 16 * 1024;

/** A refusal that the client does not take within this time is cut. */
const REFUSAL_WRITE_MS = 2000;

/** The watchdog's clock: budget checks, the end of an overload burst. */
const TICK_MS = 1000;

/** An overload burst ends after this long without a refusal. */
const BURST_QUIET_MS = 5000;

/** A probe that the listener does not accept within this time means it stopped accepting. */
const PROBE_MS = 5000;

/** Descriptors that must be free before the watchdog probes. */
const PROBE_ROOM = 16;

/** After the grace period and the 421s, how long closing waits before cutting sockets. */
const CUT_MS = 1000;

/** Per-address refusals are reported once per address in this time. */
const REFUSAL_REPORT_MS = 10_000;

function ignore(): void {}

const digestEncoder = new TextEncoder();

/**
 * SHA-256 of the user name and password, to recognise the same login tried
 * again with another mechanism without keeping the password.
 */
async function credentialsDigest(credentials: SaslCredentials): Promise<string> {
  const bytes = digestEncoder.encode(`${credentials.username}\0${credentials.password}`);
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(hash, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Where a connection's socket came from, read before any TLS wrapping. */
interface Endpoints {
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly localAddress: string;
  readonly localPort: number;
}

/** One client connection: a socket, a session, and the sink of the message in progress. */
class Connection implements ConnectionInfo {
  readonly id: string;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly localAddress: string;
  readonly localPort: number;
  tls: { protocol: string; cipher: string } | null = null;
  readonly session: ServerSession;
  #socket: net.Socket;
  #server: SmtpServer;
  #sink: MessageSink | null = null;
  #sinkFailed: Reply | null = null;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** When `#timer` fires (epoch ms). */
  #timerAt = 0;
  /** Replies not yet written, and their length. */
  #output: Uint8Array[] = [];
  #outputOctets = 0;
  /** When the client's time is up (epoch ms); our own processing time is added back. */
  #deadline = 0;
  #busy = false;
  #progressed = false;
  #contentSinceProgress = 0;
  #contentOctets = 0;
  /** Bumped by STARTTLS: work queued from an older socket is dropped unread. */
  #generation = 0;
  #waits = new Set<{ timer: ReturnType<typeof setTimeout>; resolve: () => void }>();
  #chain: Promise<void> = Promise.resolve();
  #closed = false;
  #handshakeTimer: ReturnType<typeof setTimeout> | undefined;
  readonly done: Promise<void>;
  #resolveDone!: () => void;

  constructor(socket: net.Socket, server: SmtpServer, session: ServerSession, ends: Endpoints) {
    this.id = (nextConnectionId++).toString(36).toUpperCase().padStart(4, "0");
    this.#socket = socket;
    this.#server = server;
    this.session = session;
    this.remoteAddress = ends.remoteAddress;
    this.remotePort = ends.remotePort;
    this.localAddress = ends.localAddress;
    this.localPort = ends.localPort;
    this.done = new Promise((resolve) => (this.#resolveDone = resolve));
  }

  get clientName(): string {
    return this.session.clientName;
  }

  get isExtended(): boolean {
    return this.session.isExtended;
  }

  get authenticatedAs(): string | null {
    return this.session.authenticatedAs;
  }

  /**
   * Starts the dialogue: the banner now, or after `greetingDelay` ms. The
   * socket is read meanwhile, so an early talker is caught.
   */
  start(greetingDelay: number): void {
    this.#attach(this.#socket);
    this.#rearm(true, 0);
    if (greetingDelay > 0) {
      void this.#wait(greetingDelay).then(() => this.#enqueue(() => this.session.start()));
    } else {
      this.#enqueue(() => this.session.start());
    }
  }

  /** Listens to a socket: the plain one, or the TLS one that replaced it. */
  #attach(socket: net.Socket): void {
    const generation = this.#generation;
    socket.on("data", (data: Uint8Array) =>
      this.#enqueue(() => {
        // Plaintext that arrived after STARTTLS is never read (CVE-2011-0411).
        if (generation !== this.#generation) return [];
        if (this.session.state === "greeting") {
          this.#server.report({
            type: "refused",
            remoteAddress: this.remoteAddress,
            reason: "talked before the greeting",
          });
        }
        return this.session.receive(data);
      }));
    // The client may half-close after its last command: answer what it sent, then close.
    // Before the TLS handshake there is nothing to answer: close now, or the
    // socket would wait (half-open, CLOSE-WAIT) for a banner that cannot go out.
    socket.on("end", () => {
      if (generation !== this.#generation) return;
      if (socket instanceof tls.TLSSocket && this.tls === null) {
        socket.destroy();
        this.#finish("client left before the TLS handshake");
        return;
      }
      this.#chain = this.#chain.then(() => this.#finish("client closed the connection"));
    });
    socket.on("close", () => this.#finish("connection closed"));
    socket.on("error", (error: unknown) => {
      this.#server.report({ type: "error", connection: this, error });
      this.#finish(socket instanceof tls.TLSSocket ? "TLS error" : "socket error");
    });
    if (socket instanceof tls.TLSSocket) {
      // RFC 8314 §3 / RFC 3207: the handshake comes first and nothing can be
      // read or written before it, so it has its own, shorter clock.
      clearTimeout(this.#handshakeTimer);
      this.#handshakeTimer = setTimeout(() => {
        if (this.tls !== null || this.#finishing) return;
        socket.destroy();
        this.#finish("TLS handshake timed out");
      }, this.#server.tlsHandshakeTimeout);
      socket.once("secure", () => {
        clearTimeout(this.#handshakeTimer);
        const protocol = socket.getProtocol() ?? "TLS";
        const cipher = socket.getCipher()?.name ?? "unknown";
        this.tls = { protocol, cipher };
        this.#server.report({ type: "tls", connection: this, protocol, cipher });
      });
    }
  }

  /** Graceful stop: 421 to the next command, or at once when idle. */
  stop(): void {
    this.#enqueue(() => this.session.stop());
  }

  /** Ends the connection now, with a 421 if the socket can still take it. */
  abort(r: Reply): void {
    this.#enqueue(() => this.session.close(r));
  }

  /** Cuts the connection without a word: whatever it waits on, it ends now. */
  kill(reason: string): void {
    if (!this.#socket.destroyed) this.#socket.destroy();
    this.#finish(reason);
  }

  /**
   * Sets the clock for the client's next move. After progress (a reply sent,
   * or a block of content), a fresh timeout; otherwise the deadline stands,
   * moved back by the time we spent ourselves: we never time a client out for
   * our own slowness, and a client that sends a byte now and then without
   * finishing a command gains nothing.
   */
  #rearm(progressed: boolean, spentMs: number): void {
    if (this.#closed) {
      clearTimeout(this.#timer);
      return;
    }
    const now = Date.now();
    if (progressed) {
      const state = this.session.state;
      // RFC 5321 §4.5.3.2.6 (data block) and §4.5.3.2.7 (server timeout for the next command).
      const ms = state === "data" || state === "bdat"
        ? this.#server.dataTimeout
        : this.#server.commandTimeout;
      this.#deadline = now + ms;
      this.#contentSinceProgress = 0;
    } else {
      this.#deadline += spentMs;
    }
    // A deadline that moved later keeps the timer: it fires early and sets
    // itself again for the rest (one timer per timeout, not one per command).
    if (this.#timer !== undefined && this.#timerAt <= this.#deadline) return;
    clearTimeout(this.#timer);
    this.#timerAt = Math.max(now, this.#deadline);
    this.#timer = setTimeout(() => this.#onTimer(), this.#timerAt - now);
  }

  #onTimer(): void {
    this.#timer = undefined;
    if (this.#closed || this.#busy) return; // the end of the batch sets the timer again
    const now = Date.now();
    if (now < this.#deadline) {
      this.#timerAt = this.#deadline;
      this.#timer = setTimeout(() => this.#onTimer(), this.#deadline - now);
      return;
    }
    // RFC 5321 §4.5.3.2: the server closes an idle session with 421.
    this.abort(REPLIES.timeout);
  }

  /**
   * Runs session work one batch at a time, in arrival order. The socket is
   * paused while a batch is handled, so a client that sends faster than the
   * store writes cannot grow our memory.
   */
  #enqueue(work: () => SessionEvent[]): void {
    this.#chain = this.#chain.then(async () => {
      if (this.#closed) return;
      this.#socket.pause();
      this.#busy = true;
      this.#progressed = false;
      const began = Date.now();
      try {
        await this.#process(work());
        await this.#flushOutput();
      } catch (error: unknown) {
        this.#server.report({ type: "error", connection: this, error });
        await this.#abortSink();
        this.#socket.destroy();
        this.#finish("internal error");
      }
      this.#busy = false;
      if (!this.#closed) {
        this.#socket.resume();
        this.#rearm(this.#progressed, Date.now() - began);
      }
    });
  }

  async #process(events: SessionEvent[]): Promise<void> {
    for (const event of events) {
      switch (event.type) {
        case "send":
          this.#progressed = true;
          event.replies.forEach((r, i) => {
            const context = event.contexts[i]!;
            this.#server.report({ type: "reply", connection: this, reply: r, context });
          });
          // RFC 2920 §3.1: the replies to a pipelined group may go together;
          // they are written when the batch ends (one write, not one per
          // command), or sooner before STARTTLS, a close, or when many wait.
          this.#output.push(event.bytes);
          this.#outputOctets += event.bytes.length;
          if (this.#outputOctets >= OUTPUT_FLUSH_OCTETS) await this.#flushOutput();
          break;
        case "command":
          this.#server.report({ type: "command", connection: this, line: event.line });
          break;
        case "sender": {
          const h = this.#server.handlers;
          const r = h.sender
            ? await h.sender(event.reversePath, event.parameters, this)
            : REPLIES.senderOk;
          await this.#process(this.session.answer(r));
          break;
        }
        case "recipient": {
          const r = await this.#server.handlers.recipient(
            event.forwardPath,
            event.parameters,
            this,
          );
          await this.#process(this.session.answer(r));
          break;
        }
        case "auth": {
          const { reply: r, isLocked } = await this.#authenticate(event.credentials);
          const next = this.session.answer(r);
          if (isPositive(r)) {
            const mechanism = event.credentials.mechanism;
            this.#server.report({
              type: "auth",
              connection: this,
              mechanism,
              outcome: "succeeded",
            });
          }
          await this.#process(next);
          // Too many failures from this address: say so and hang up.
          if (isLocked) await this.#process(this.session.close(REPLIES.tooManyAuthFailures));
          break;
        }
        case "starttls":
          await this.#flushOutput(); // the 220 goes out in plaintext, before the handshake
          this.#startTls();
          break;
        case "open": {
          let r: Reply = REPLIES.startData;
          try {
            const opened = await this.#server.handlers.open(event.envelope, this);
            if ("commit" in opened) {
              this.#sink = opened;
              this.#sinkFailed = null;
            } else {
              r = opened;
            }
          } catch (error: unknown) {
            this.#server.report({ type: "error", connection: this, error });
            r = REPLIES.storageFailed;
          }
          await this.#process(this.session.answer(r));
          break;
        }
        case "content":
          this.#contentOctets += event.chunk.length;
          this.#contentSinceProgress += event.chunk.length;
          if (this.#contentSinceProgress >= DATA_BLOCK_OCTETS) this.#progressed = true;
          if (this.#sink && this.#sinkFailed === null) {
            try {
              await this.#sink.write(event.chunk);
            } catch (error: unknown) {
              // Keep reading to the end of data, then refuse (never acknowledge half a message).
              this.#server.report({ type: "error", connection: this, error });
              this.#sinkFailed = REPLIES.storageFailed;
            }
          }
          break;
        case "message": {
          this.#server.report({ type: "data", connection: this, octets: this.#contentOctets });
          this.#contentOctets = 0;
          let r: Reply = this.#sinkFailed ?? REPLIES.storageFailed;
          const sink = this.#sink;
          this.#sink = null;
          if (sink && this.#sinkFailed === null) {
            try {
              r = await sink.commit();
            } catch (error: unknown) {
              this.#server.report({ type: "error", connection: this, error });
              r = REPLIES.storageFailed;
              await sink.abort().catch(() => {});
            }
          } else if (sink) {
            await sink.abort().catch(() => {});
          }
          this.#sinkFailed = null;
          await this.#process(this.session.answer(r));
          break;
        }
        case "discard":
          await this.#abortSink();
          break;
        case "close":
          await this.#flushOutput();
          await this.#abortSink();
          this.#closed = true;
          clearTimeout(this.#timer);
          this.#socket.end();
          this.#finish("closed by server");
          break;
      }
    }
  }

  /**
   * The last checked and refused credentials of this session, as a digest
   * (never the password), with what the limiter said of them. Mail programs
   * retry the same login with the next mechanism after a `535` (Python's
   * `smtplib` tries PLAIN, then LOGIN): that is one mistake, not two, so the
   * retry is refused again without being counted or checked. Kept until the
   * next AUTH of the session or its end.
   */
  #lastRefusal: { digest: string; failure: AuthFailure } | null = null;

  /**
   * Checks credentials under the AUTH limiter. The attempt is counted before
   * the check (as a failure until it succeeds), so parallel connections get
   * no more checks than the limit. A locked-out address is refused unchecked
   * and disconnected; a locked account is refused unchecked like a wrong
   * password; a failure is answered after the limiter's delay. Clients the
   * server exempts (`authAddressExempt`) are counted at the account only.
   */
  async #authenticate(
    credentials: SaslCredentials,
  ): Promise<{ reply: Reply; isLocked: boolean }> {
    const limiter = this.#server.authLimiter;
    const mechanism = credentials.mechanism;
    const digest = limiter === undefined ? null : await credentialsDigest(credentials);
    const repeated = this.#lastRefusal;
    this.#lastRefusal = null;
    if (repeated !== null && repeated.digest === digest) {
      // The same user name and password as the refusal just before: the same answer.
      this.#lastRefusal = repeated;
      this.#reportFailure(mechanism, repeated.failure);
      return { reply: REPLIES.authFailed, isLocked: false };
    }
    const address = this.#server.authAddressExempt(this.remoteAddress) ? null : this.remoteAddress;
    const admission = limiter?.begin(address, credentials.username);
    if (admission !== undefined && admission.attempt === null) {
      this.#server.report({ type: "auth", connection: this, mechanism, outcome: "locked" });
      if (admission.locked === "address") {
        return { reply: REPLIES.tooManyAuthFailures, isLocked: false }; // 421: the session closes
      }
      // The account: the same answer, after the same wait, as a wrong password.
      await this.#wait(admission.delayMs);
      return { reply: REPLIES.authFailed, isLocked: false };
    }
    const attempt = admission?.attempt;
    const check = this.#server.handlers.authenticate;
    let r: Reply = REPLIES.authFailed;
    if (check) {
      try {
        r = await check(credentials, this);
      } catch (error: unknown) {
        // The error is reported, never the credentials.
        this.#server.report({ type: "error", connection: this, error });
        r = REPLIES.authUnavailable;
      }
    }
    if (isPositive(r)) {
      attempt?.succeeded();
      return { reply: r, isLocked: false }; // reported once the session took it
    }
    if (!isPermanent(r) || attempt === undefined) {
      attempt?.abandoned(); // not checked (454): it does not count
      this.#server.report({ type: "auth", connection: this, mechanism, outcome: "failed" });
      return { reply: r, isLocked: false };
    }
    const failure = attempt.failed();
    if (digest !== null) this.#lastRefusal = { digest, failure };
    this.#reportFailure(mechanism, failure);
    // A guesser waits longer after each failure; the socket is paused meanwhile.
    await this.#wait(failure.delayMs);
    return { reply: r, isLocked: failure.isLocked };
  }

  #reportFailure(mechanism: SaslMechanism, failure: AuthFailure): void {
    this.#server.report({
      type: "auth",
      connection: this,
      mechanism,
      outcome: "failed",
      failures: failure.failures,
      accountFailures: failure.accountFailures,
    });
  }

  /**
   * RFC 3207: the 220 has been written; swap the plain socket for a TLS one.
   * Plaintext the client sent after STARTTLS is dropped: what the session had
   * buffered (it threw that away itself), what the socket had read but not
   * delivered, and work already queued from the plain socket.
   */
  #startTls(): void {
    const source = this.#server.tls;
    const plain = this.#socket;
    this.#generation++;
    plain.pause();
    while (plain.read() !== null) {
      // discard: the client must wait for our 220 before its handshake
    }
    if (source === null) {
      // Cannot happen: the session offers STARTTLS only with a certificate.
      plain.destroy();
      this.#finish("STARTTLS without a certificate");
      return;
    }
    const secure = new tls.TLSSocket(plain, {
      isServer: true,
      secureContext: source.secureContext,
    });
    this.#socket = secure;
    this.#attach(secure);
  }

  /** Waits, unless the connection ends first. */
  #wait(ms: number): Promise<void> {
    if (ms <= 0 || this.#closed) return Promise.resolve();
    return new Promise((resolve) => {
      const entry = {
        timer: setTimeout(() => {
          this.#waits.delete(entry);
          resolve();
        }, ms),
        resolve,
      };
      this.#waits.add(entry);
    });
  }

  async #abortSink(): Promise<void> {
    const sink = this.#sink;
    this.#sink = null;
    this.#sinkFailed = null;
    if (sink) await sink.abort().catch(() => {});
  }

  /** Writes the replies held back so far, as one write. */
  #flushOutput(): Promise<void> {
    const output = this.#output;
    if (output.length === 0) return RESOLVED;
    this.#output = [];
    this.#outputOctets = 0;
    return this.#write(output.length === 1 && output[0] ? output[0] : concatBytes(output));
  }

  /**
   * Writes and waits until the bytes are handed to the system. A client that
   * does not read its replies fills its window and we would wait forever: it
   * gets the command timeout, then the connection is cut.
   */
  #write(bytes: Uint8Array): Promise<void> {
    const socket = this.#socket;
    if (socket.destroyed || !socket.writable) return RESOLVED;
    let written = false;
    let onWritten: (() => void) | null = null;
    socket.write(bytes, () => {
      written = true;
      onWritten?.();
    });
    // Usually the system takes the reply at once: nothing to wait for.
    if (socket.writableLength === 0) return RESOLVED;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        socket.destroy();
        done();
      }, this.#server.commandTimeout);
      const done = () => {
        clearTimeout(timer);
        socket.off("close", done);
        resolve();
      };
      if (written) return done();
      onWritten = done;
      socket.once("close", done);
    });
  }

  #finishing = false;
  #finish(reason: string): void {
    if (this.#finishing) return;
    this.#finishing = true;
    this.#closed = true;
    clearTimeout(this.#timer);
    clearTimeout(this.#handshakeTimer);
    for (const wait of this.#waits) {
      clearTimeout(wait.timer);
      wait.resolve();
    }
    this.#waits.clear();
    void this.#abortSink().finally(() => {
      if (!this.#socket.destroyed) this.#socket.destroy();
      this.#server.report({ type: "disconnect", connection: this, reason });
      this.#resolveDone();
    });
  }
}

/** `::ffff:127.0.0.1` → `127.0.0.1`. */
function normalizeAddress(address: string): string {
  return address.startsWith("::ffff:") && address.includes(".") ? address.slice(7) : address;
}

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
  #perIp = new Map<string, number>();
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
      if (this.#connections.delete(c)) {
        const key = this.#keyOf(c.remoteAddress);
        const n = (this.#perIp.get(key) ?? 1) - 1;
        if (n <= 0) this.#perIp.delete(key);
        else this.#perIp.set(key, n);
      }
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
    const watchdog = this.#options.watchdogInterval ?? 10_000;
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
        ? { host: this.#options.address, port }
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
    const ip = normalizeAddress(socket.remoteAddress ?? "");
    const key = this.#keyOf(ip);
    const maxTotal = this.#options.maxConnections ?? 1000;
    const maxPerIp = this.#options.maxConnectionsPerIp ?? 50;
    const perIp = this.#perIp.get(key) ?? 0;
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
    if (this.#connections.size >= maxTotal) {
      this.#overloaded("max_connections");
      this.#refuse(socket, null, TOO_MANY);
      return;
    }
    if (perIp >= maxPerIp) {
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
      localAddress: normalizeAddress(socket.localAddress ?? ""),
      localPort: socket.localPort ?? 0,
    };
    const connection = new Connection(this.#secure(socket), this, session, ends);
    this.#connections.add(connection);
    this.#perIp.set(key, perIp + 1);
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

/** Where the watchdog connects to reach a listener bound to `address`. */
function probeHost(address: string): string {
  if (address === "0.0.0.0" || address === "") return "127.0.0.1";
  if (address === "::") return "::1";
  return address;
}

/**
 * One connection the watchdog makes to its own listener. The listener must
 * not take it for a client: an accepted socket from the probe's address is
 * held back until the probe knows its own port, then dropped if it is the
 * probe and admitted otherwise.
 */
class Probe {
  readonly parked: net.Socket[] = [];
  #host: string;
  #socket: net.Socket | null = null;
  #port: number | null = null;
  #timer: ReturnType<typeof setTimeout>;
  #done: (outcome: "connected" | "pending" | "failed") => void;
  #connected = false;
  #over = false;

  constructor(
    host: string,
    port: number,
    done: (outcome: "connected" | "pending" | "failed") => void,
  ) {
    this.#host = normalizeAddress(host);
    this.#done = done;
    this.#timer = setTimeout(() => this.#end(this.#connected ? "connected" : "pending"), PROBE_MS);
    try {
      const socket = net.connect({ host, port });
      this.#socket = socket;
      socket.on("error", () => this.#end("failed"));
      socket.on("connect", () => {
        this.#connected = true;
        this.#port = socket.localPort ?? null;
        const parked = this.parked.splice(0);
        for (const s of parked) {
          if (!this.#isProbe(s)) this.parked.push(s);
        }
      });
    } catch {
      // Out of descriptors, most likely: no verdict this time.
      queueMicrotask(() => this.#end("failed"));
    }
  }

  #isProbe(socket: net.Socket): boolean {
    if (socket.remotePort !== this.#port) return false;
    socket.destroy();
    queueMicrotask(() => this.#end("connected"));
    return true;
  }

  /** Whether an accepted socket is (or may be) the probe; if so the probe keeps it. */
  claims(socket: net.Socket): boolean {
    if (this.#over || normalizeAddress(socket.remoteAddress ?? "") !== this.#host) return false;
    if (this.#port === null) {
      this.parked.push(socket);
      return true;
    }
    return this.#isProbe(socket);
  }

  /** Ends the probe with no verdict (the server is stopping). */
  cancel(): void {
    this.#over = true;
    clearTimeout(this.#timer);
    this.#socket?.destroy();
    for (const s of this.parked.splice(0)) s.destroy();
  }

  #end(outcome: "connected" | "pending" | "failed"): void {
    if (this.#over) return;
    this.#over = true;
    clearTimeout(this.#timer);
    this.#socket?.destroy();
    this.#done(outcome);
  }
}
