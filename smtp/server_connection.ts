/**
 * One client connection of the SMTP server: a socket, a
 * {@linkcode ServerSession}, and the sink of the message in progress. It
 * feeds the socket's bytes to the session one batch at a time (the socket
 * paused meanwhile), writes the replies, asks the handlers the session's
 * questions, keeps the clocks of RFC 5321 §4.5.3.2, checks AUTH under the
 * limiter and swaps in TLS for STARTTLS (RFC 3207). The listener that makes
 * connections is {@linkcode SmtpServer} in `smtp/server.ts`.
 *
 * @module
 */

import type net from "node:net";
import tls from "node:tls";
import { concatBytes } from "../bytes/concat.ts";
import { DeadlineSweep } from "./deadline_sweep.ts";
import type { AuthFailure, AuthLimiter } from "./auth_limiter.ts";
import { isPermanent, isPositive, REPLIES, type Reply } from "./reply.ts";
import type { SaslCredentials, SaslMechanism } from "./sasl.ts";
import type { ServerSession, SessionEvent } from "./server_session.ts";
import type {
  ConnectionInfo,
  MessageSink,
  ServerHandlers,
  ServerLogEvent,
  TlsSource,
} from "./server_types.ts";

let nextConnectionId = 1;
/** Put before every session id of this thread (a session worker's number), so ids stay unique in the process. */
let connectionIdPrefix = "";

/**
 * Sets what this thread's session ids start with (a session worker sets
 * its own, so that log lines of two threads never share an id).
 *
 * @param prefix For example `W1`.
 */
export function setConnectionIdPrefix(prefix: string): void {
  connectionIdPrefix = prefix;
}

/** RFC 5321 §4.5.3.2.6 times each data block; a block here is this many octets of content. */
const DATA_BLOCK_OCTETS = 4096;

const RESOLVED: Promise<void> = Promise.resolve();

/** Replies held back past this many octets are written without waiting for the batch to end. */
const OUTPUT_FLUSH_OCTETS = 16 * 1024;

/** A client's timeout may be met this fraction of itself late (a 5-minute one: 1 s, the most). */
const TIMEOUT_SLACK_DIVISOR = 16;

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

/**
 * What a connection needs of the server that accepted it: the handlers, the
 * clocks (read at each wait, so a reload takes effect), the certificate, the
 * AUTH limiter, and where to report events. {@linkcode SmtpServer} is one.
 */
export interface ConnectionHost {
  /** The caller's answers to the session's questions. */
  readonly handlers: ServerHandlers;
  /** Wait for a command, ms. */
  readonly commandTimeout: number;
  /** Wait for more content during DATA/BDAT, ms. */
  readonly dataTimeout: number;
  /** Wait for the TLS handshake, ms. */
  readonly tlsHandshakeTimeout: number;
  /** The certificate for STARTTLS, or `null`. */
  readonly tls: TlsSource | null;
  /** Counts failed AUTH per address and account, if any. */
  readonly authLimiter: AuthLimiter | undefined;
  /** Whether a client's AUTH failures are exempt from the per-address count. */
  readonly authAddressExempt: (remoteAddress: string) => boolean;
  /** Reports an event (a disconnect also frees the connection's place). */
  report(event: ServerLogEvent): void;
}

/** Where a connection's socket came from, read before any TLS wrapping. */
export interface Endpoints {
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly localAddress: string;
  readonly localPort: number;
}

/** Where a socket's shared listeners find the connection it belongs to. */
const OWNER: unique symbol = Symbol("tern.connection");

/** A socket a connection listens to. */
type OwnedSocket = net.Socket & { [OWNER]?: Connection };

/** One client connection: a socket, a session, and the sink of the message in progress. */
export class Connection implements ConnectionInfo {
  readonly id: string;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly localAddress: string;
  readonly localPort: number;
  tls: { protocol: string; cipher: string } | null = null;
  readonly session: ServerSession;
  #socket: net.Socket;
  #server: ConnectionHost;
  #sink: MessageSink | null = null;
  #sinkFailed: Reply | null = null;
  /** Replies not yet written, and their length. */
  #output: Uint8Array[] = [];
  #outputOctets = 0;
  /** When the client's time is up (epoch ms); our own processing time is added back. */
  #deadline = 0;
  #busy = false;
  #progressed = false;
  #contentSinceProgress = 0;
  #contentOctets = 0;
  /** Delays in progress (AUTH, greeting), made on first use: most connections never wait. */
  #waits: Set<{ timer: ReturnType<typeof setTimeout>; resolve: () => void }> | null = null;
  #chain: Promise<void> = RESOLVED;
  /** Batches queued or running. */
  #queued = 0;
  #closed = false;
  #handshakeTimer: ReturnType<typeof setTimeout> | undefined;
  /** Made when first asked for (at shutdown): most connections end unwatched. */
  #done: { promise: Promise<void>; resolve: () => void } | null = null;
  #ended = false;

  constructor(
    socket: net.Socket,
    server: ConnectionHost,
    session: ServerSession,
    ends: Endpoints,
  ) {
    this.id = connectionIdPrefix + (nextConnectionId++).toString(36).toUpperCase().padStart(4, "0");
    this.#socket = socket;
    this.#server = server;
    this.session = session;
    this.remoteAddress = ends.remoteAddress;
    this.remotePort = ends.remotePort;
    this.localAddress = ends.localAddress;
    this.localPort = ends.localPort;
  }

  /** Settles once the connection has ended and its disconnect was reported. */
  get done(): Promise<void> {
    if (this.#ended) return RESOLVED;
    return (this.#done ??= Promise.withResolvers<void>()).promise;
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

  /**
   * Listens to a socket: the plain one, or the TLS one that replaced it. The
   * listeners are shared by every connection (they find theirs on the
   * socket), not closures made anew for each.
   */
  #attach(socket: net.Socket): void {
    (socket as OwnedSocket)[OWNER] = this;
    socket.on("data", Connection.#onData);
    socket.on("end", Connection.#onEnd);
    socket.on("close", Connection.#onClose);
    socket.on("error", Connection.#onError);
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

  static #onData(this: OwnedSocket, data: Uint8Array): void {
    const c = this[OWNER];
    if (c !== undefined) c.#received(this, data);
  }

  /**
   * The client may half-close after its last command: answer what it sent,
   * then close. Before the TLS handshake there is nothing to answer: close
   * now, or the socket would wait (half-open, CLOSE-WAIT) for a banner that
   * cannot go out.
   */
  static #onEnd(this: OwnedSocket): void {
    const c = this[OWNER];
    if (c === undefined || this !== c.#socket) return; // the plain socket under TLS
    if (this instanceof tls.TLSSocket && c.tls === null) {
      this.destroy();
      c.#finish("client left before the TLS handshake");
      return;
    }
    c.#chain = c.#chain.then(() => c.#finish("client closed the connection"));
  }

  static #onClose(this: OwnedSocket): void {
    const c = this[OWNER];
    if (c !== undefined) c.#finish("connection closed");
  }

  static #onError(this: OwnedSocket, error: unknown): void {
    const c = this[OWNER];
    if (c === undefined) return;
    c.#server.report({ type: "error", connection: c, error });
    c.#finish(this instanceof tls.TLSSocket ? "TLS error" : "socket error");
  }

  /** Bytes from a socket, handled in turn with the rest of the session's work. */
  #received(socket: net.Socket, data: Uint8Array): void {
    // Flow control: no more reads until the work already queued is done.
    if (this.#queued > 0) socket.pause();
    this.#enqueue(() => {
      // Plaintext that arrived after STARTTLS is never read (CVE-2011-0411).
      if (socket !== this.#socket) return [];
      if (this.session.state === "greeting") {
        this.#server.report({
          type: "refused",
          remoteAddress: this.remoteAddress,
          reason: "talked before the greeting",
        });
      }
      return this.session.receive(data);
    });
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
   * The clocks of every connection of the process, on one timer: a timer
   * per connection would cost each idle connection a few KiB for nothing.
   * Nested here so that it reads the connection's private deadline.
   */
  static readonly #sweep = new DeadlineSweep<Connection>(
    (c) => c.#busy ? Infinity : c.#deadline, // the end of the batch sets the clock again
    (c) => c.#onDeadline(),
  );

  /**
   * Sets the clock for the client's next move. After progress (a reply sent,
   * or a block of content), a fresh timeout; otherwise the deadline stands,
   * moved back by the time we spent ourselves: we never time a client out for
   * our own slowness, and a client that sends a byte now and then without
   * finishing a command gains nothing.
   */
  #rearm(progressed: boolean, spentMs: number): void {
    if (this.#closed) {
      Connection.#sweep.unwatch(this);
      return;
    }
    const commandTimeout = this.#server.commandTimeout;
    const dataTimeout = this.#server.dataTimeout;
    if (progressed) {
      const state = this.session.state;
      // RFC 5321 §4.5.3.2.6 (data block) and §4.5.3.2.7 (server timeout for the next command).
      const ms = state === "data" || state === "bdat" ? dataTimeout : commandTimeout;
      this.#deadline = Date.now() + ms;
      this.#contentSinceProgress = 0;
    } else {
      this.#deadline += spentMs;
    }
    const slack = Math.min(commandTimeout, dataTimeout) / TIMEOUT_SLACK_DIVISOR;
    Connection.#sweep.watch(this, this.#deadline, slack);
  }

  /** The client's time is up (the sweep says so only when no batch is running). */
  #onDeadline(): void {
    Connection.#sweep.unwatch(this); // until the next batch sets the clock again
    if (this.#closed) return;
    // RFC 5321 §4.5.3.2: the server closes an idle session with 421.
    this.abort(REPLIES.timeout);
  }

  /**
   * Runs session work one batch at a time, in arrival order. Bytes that
   * arrive while work is queued pause the socket until the queue is empty,
   * so a client that sends faster than the store writes cannot grow our
   * memory. A client that waits for each reply (most do) is never paused:
   * pausing and resuming a socket costs more than the reply itself.
   */
  #enqueue(work: () => SessionEvent[]): void {
    this.#queued++;
    this.#chain = this.#chain.then(async () => {
      await this.#runBatch(work);
      if (--this.#queued === 0 && !this.#closed && this.#socket.isPaused()) {
        this.#socket.resume();
      }
    });
  }

  /** One batch of session work: its events handled, its replies written, the clock set again. */
  async #runBatch(work: () => SessionEvent[]): Promise<void> {
    if (this.#closed) return;
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
    if (!this.#closed) this.#rearm(this.#progressed, Date.now() - began);
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
          Connection.#sweep.unwatch(this);
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
    // From here on, work queued from the plain socket is dropped unread.
    this.#socket = secure;
    this.#attach(secure);
  }

  /** Waits, unless the connection ends first. */
  #wait(ms: number): Promise<void> {
    if (ms <= 0 || this.#closed) return Promise.resolve();
    return new Promise((resolve) => {
      const waits = this.#waits ??= new Set();
      const entry = {
        timer: setTimeout(() => {
          waits.delete(entry);
          resolve();
        }, ms),
        resolve,
      };
      waits.add(entry);
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
    Connection.#sweep.unwatch(this);
    clearTimeout(this.#handshakeTimer);
    for (const wait of this.#waits ?? []) {
      clearTimeout(wait.timer);
      wait.resolve();
    }
    this.#waits = null;
    void this.#abortSink().finally(() => {
      if (!this.#socket.destroyed) this.#socket.destroy();
      this.#server.report({ type: "disconnect", connection: this, reason });
      this.#ended = true;
      this.#done?.resolve();
    });
  }
}
