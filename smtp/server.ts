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
 * (see FACTS.md); the connection keeps its socket in one field so that the
 * upgrade can swap it.
 *
 * @module
 */

import net from "node:net";
import type { Envelope } from "./envelope.ts";
import type { Parameters } from "./command.ts";
import { REPLIES, type Reply } from "./reply.ts";
import { ServerSession, type ServerSessionOptions, type SessionEvent } from "./server_session.ts";

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
}

/** Options of {@linkcode SmtpServer}. */
export interface SmtpServerOptions extends ServerSessionOptions {
  /** The address to listen on. */
  address: string;
  /** The port; 0 picks a free one. */
  port: number;
  /** Answers to the session's questions. */
  handlers: ServerHandlers;
  /** Wait for a command, ms (RFC 5321 §4.5.3.2.7: at least 5 minutes). @default {300000} */
  commandTimeout?: number;
  /** Wait for more content during DATA/BDAT, ms (§4.5.3.2.6: at least 3 minutes). @default {600000} */
  dataTimeout?: number;
  /** Connections at once, in total. @default {1000} */
  maxConnections?: number;
  /** Connections at once from one address. @default {50} */
  maxConnectionsPerIp?: number;
  /** Called for each connection event worth logging. */
  onEvent?: (event: ServerLogEvent) => void;
}

/** What the adapter reports for logs and traces. */
export type ServerLogEvent =
  | { readonly type: "connect"; readonly connection: ConnectionInfo }
  | { readonly type: "disconnect"; readonly connection: ConnectionInfo; readonly reason: string }
  | { readonly type: "refused"; readonly remoteAddress: string; readonly reason: string }
  | { readonly type: "command"; readonly connection: ConnectionInfo; readonly line: string }
  | { readonly type: "reply"; readonly connection: ConnectionInfo; readonly reply: Reply }
  | { readonly type: "error"; readonly connection: ConnectionInfo; readonly error: unknown };

let nextConnectionId = 1;

/** One client connection: a socket, a session, and the sink of the message in progress. */
class Connection implements ConnectionInfo {
  readonly id: string;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly localAddress: string;
  readonly localPort: number;
  tls: { protocol: string; cipher: string } | null = null;
  authenticatedAs: string | null = null;
  readonly session: ServerSession;
  #socket: net.Socket;
  #server: SmtpServer;
  #sink: MessageSink | null = null;
  #sinkFailed: Reply | null = null;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #chain: Promise<void> = Promise.resolve();
  #closed = false;
  readonly done: Promise<void>;
  #resolveDone!: () => void;

  constructor(socket: net.Socket, server: SmtpServer, session: ServerSession) {
    this.id = (nextConnectionId++).toString(36).toUpperCase().padStart(4, "0");
    this.#socket = socket;
    this.#server = server;
    this.session = session;
    this.remoteAddress = normalizeAddress(socket.remoteAddress ?? "");
    this.remotePort = socket.remotePort ?? 0;
    this.localAddress = normalizeAddress(socket.localAddress ?? "");
    this.localPort = socket.localPort ?? 0;
    this.done = new Promise((resolve) => (this.#resolveDone = resolve));
  }

  get clientName(): string {
    return this.session.clientName;
  }

  get isExtended(): boolean {
    return this.session.isExtended;
  }

  start(): void {
    const socket = this.#socket;
    socket.on("data", (data: Uint8Array) => this.#enqueue(() => this.session.receive(data)));
    // The client may half-close after its last command: answer what it sent, then close.
    socket.on("end", () => {
      this.#chain = this.#chain.then(() => this.#finish("client closed the connection"));
    });
    socket.on("close", () => this.#finish("connection closed"));
    socket.on("error", (error: unknown) => {
      this.#server.report({ type: "error", connection: this, error });
      this.#finish("socket error");
    });
    this.#enqueue(() => this.session.start());
  }

  /** Graceful stop: 421 to the next command, or at once when idle. */
  stop(): void {
    this.#enqueue(() => this.session.stop());
  }

  /** Ends the connection now, with a 421 if the socket can still take it. */
  abort(r: Reply): void {
    this.#enqueue(() => this.session.close(r));
  }

  #arm(): void {
    clearTimeout(this.#timer);
    if (this.#closed) return;
    const state = this.session.state;
    const ms = state === "data" || state === "bdat"
      ? this.#server.dataTimeout
      : this.#server.commandTimeout;
    this.#timer = setTimeout(() => {
      // RFC 5321 §4.5.3.2: the server closes an idle session with 421.
      this.abort(REPLIES.timeout);
    }, ms);
  }

  /**
   * Runs session work one batch at a time, in arrival order. The socket is
   * paused while a batch is handled and the timer stopped: we never time a
   * client out for our own slowness.
   */
  #enqueue(work: () => SessionEvent[]): void {
    this.#chain = this.#chain.then(async () => {
      if (this.#closed) return;
      this.#socket.pause();
      clearTimeout(this.#timer);
      try {
        await this.#process(work());
      } catch (error: unknown) {
        this.#server.report({ type: "error", connection: this, error });
        await this.#abortSink();
        this.#socket.destroy();
        this.#finish("internal error");
      }
      if (!this.#closed) {
        this.#socket.resume();
        this.#arm();
      }
    });
  }

  async #process(events: SessionEvent[]): Promise<void> {
    for (const event of events) {
      switch (event.type) {
        case "send":
          for (const r of event.replies) {
            this.#server.report({ type: "reply", connection: this, reply: r });
          }
          await this.#write(event.bytes);
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
          await this.#abortSink();
          this.#closed = true;
          clearTimeout(this.#timer);
          this.#socket.end();
          this.#finish("closed by server");
          break;
      }
    }
  }

  async #abortSink(): Promise<void> {
    const sink = this.#sink;
    this.#sink = null;
    this.#sinkFailed = null;
    if (sink) await sink.abort().catch(() => {});
  }

  #write(bytes: Uint8Array): Promise<void> {
    const socket = this.#socket;
    if (socket.destroyed || !socket.writable) return Promise.resolve();
    return new Promise((resolve) => {
      if (socket.write(bytes)) resolve();
      else socket.once("drain", () => resolve());
      socket.once("close", () => resolve());
    });
  }

  #finishing = false;
  #finish(reason: string): void {
    if (this.#finishing) return;
    this.#finishing = true;
    this.#closed = true;
    clearTimeout(this.#timer);
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
  /** Command timeout, ms. */
  readonly commandTimeout: number;
  /** Data timeout, ms. */
  readonly dataTimeout: number;
  #options: SmtpServerOptions;
  #server: net.Server | null = null;
  #connections = new Set<Connection>();
  #perIp = new Map<string, number>();
  #stopping = false;

  /**
   * Makes a server; {@linkcode SmtpServer.listen} starts it.
   *
   * @param options Where to listen, the limits and the handlers.
   */
  constructor(options: SmtpServerOptions) {
    this.#options = options;
    this.handlers = options.handlers;
    this.commandTimeout = options.commandTimeout ?? 300_000;
    this.dataTimeout = options.dataTimeout ?? 600_000;
  }

  /** How many clients are connected now. */
  get connectionCount(): number {
    return this.#connections.size;
  }

  /** @internal Reports an event to `onEvent`. */
  report(event: ServerLogEvent): void {
    if (event.type === "disconnect") {
      const c = event.connection as Connection;
      if (this.#connections.delete(c)) {
        const n = (this.#perIp.get(c.remoteAddress) ?? 1) - 1;
        if (n <= 0) this.#perIp.delete(c.remoteAddress);
        else this.#perIp.set(c.remoteAddress, n);
      }
    }
    this.#options.onEvent?.(event);
  }

  /**
   * Starts listening.
   *
   * @returns The address and port bound (the port is the real one when 0 was asked).
   */
  listen(): Promise<{ address: string; port: number }> {
    const server = net.createServer(
      { pauseOnConnect: true, allowHalfOpen: true },
      (socket) => this.#accept(socket),
    );
    this.#server = server;
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host: this.#options.address, port: this.#options.port }, () => {
        server.off("error", reject);
        const a = server.address() as net.AddressInfo;
        resolve({ address: a.address, port: a.port });
      });
    });
  }

  #accept(socket: net.Socket): void {
    const ip = normalizeAddress(socket.remoteAddress ?? "");
    const maxTotal = this.#options.maxConnections ?? 1000;
    const maxPerIp = this.#options.maxConnectionsPerIp ?? 50;
    const perIp = this.#perIp.get(ip) ?? 0;
    let refusal: string | null = null;
    if (this.#stopping) refusal = "421 4.3.2 Service shutting down, try again later\r\n";
    else if (this.#connections.size >= maxTotal || perIp >= maxPerIp) {
      refusal = "421 4.7.0 Too many connections, try again later\r\n";
    }
    if (refusal !== null) {
      this.#options.onEvent?.({ type: "refused", remoteAddress: ip, reason: refusal.trim() });
      socket.on("error", () => {});
      // Write the refusal, then close at once (RFC 5321 §3.1: 421 and close).
      socket.write(refusal, () => socket.destroy());
      return;
    }
    socket.setNoDelay(true);
    const session = new ServerSession(this.#options);
    const connection = new Connection(socket, this, session);
    this.#connections.add(connection);
    this.#perIp.set(ip, perIp + 1);
    this.#options.onEvent?.({ type: "connect", connection });
    connection.start();
    socket.resume();
  }

  /**
   * Stops: no new connections; idle sessions get `421 4.3.2` at once, busy
   * ones at their next command; after `graceMs` the rest are cut.
   *
   * @param graceMs How long transactions in flight may take to finish.
   */
  async close(graceMs = 10_000): Promise<void> {
    this.#stopping = true;
    const server = this.#server;
    const closed = server
      ? new Promise<void>((resolve) => server.close(() => resolve()))
      : Promise.resolve();
    for (const c of this.#connections) c.stop();
    const all = Promise.all([...this.#connections].map((c) => c.done));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((
      resolve,
    ) => (timer = setTimeout(() => resolve("timeout"), graceMs)));
    if (await Promise.race([all, timeout]) === "timeout") {
      for (const c of this.#connections) c.abort(REPLIES.shuttingDown);
      await all;
    }
    clearTimeout(timer);
    await closed;
  }
}
