/**
 * The SMTP client's socket adapter: a thin layer that connects
 * {@linkcode ClientSession} to TCP, does the waiting (the per-command
 * timeouts of RFC 5321 §4.5.3.2), makes the TLS upgrade, and streams the
 * content from the caller with bounded memory. It knows nothing of queues,
 * MX records or retries: one connection to one host, and whatever the
 * caller decides about the outcome.
 *
 * ## Why `node:net` and not `Deno.connect`
 *
 * Outbound STARTTLS to MX hosts has to be opportunistic (RFC 7435): many
 * present self-signed or mismatched certificates, and encryption without
 * authentication beats plaintext (docs/smtp-pitfalls.md: opportunistic TLS). `Deno.startTls` checks the
 * certificate and cannot be told not to for one connection, nor does it
 * show the peer certificate. `node:tls` `tls.connect({ socket,
 * rejectUnauthorized: false })` does both, but on Deno 2.9.6 it needs a real
 * `node:net` socket underneath: handed a `Deno.Conn` it throws
 * (`e.pause is not a function`), and handed a `stream.Duplex` wrapped around
 * one, the handshake fails (`received corrupt message of type
 * InvalidContentType`). So the TCP connection is made with `net.connect`
 * too, and the upgrade wraps that socket.
 *
 * ## Timeouts (RFC 5321 §4.5.3.2)
 *
 * Each wait has its own bound, restarted for every reply: 5 minutes for the
 * greeting, EHLO, MAIL, RCPT and the like; 2 for the reply to DATA; 3 for
 * each block of content written and for each reply to a BDAT chunk; 10 for
 * the final reply. A timeout, a reset connection or a server that breaks the
 * protocol rejects with {@linkcode SmtpConnectionError}: the caller treats
 * every recipient of that message as temporarily failed (§4.5.4.1).
 *
 * @module
 */

import type net from "node:net";
import tls from "node:tls";
import {
  type Awaiting,
  type ClientEvent,
  ClientSession,
  type Extensions,
  type OutgoingMessage,
  type TransactionResult,
} from "./client_session.ts";
import { ipVersion } from "../net/ip.ts";
import { formatReply, type Reply } from "./reply.ts";
import { SmtpAuthError, SmtpConnectionError, TlsHandshakeError } from "./client_errors.ts";
import { abandoned, closeSocket, openSocket, Wire } from "./client_wire.ts";

export { SmtpAuthError, SmtpConnectionError, TlsHandshakeError } from "./client_errors.ts";

// The types this module's API speaks in, for callers that import only it.
export type {
  BodyType,
  Extensions,
  OutgoingMessage,
  OutgoingRecipient,
  RecipientResult,
  Reply,
  TransactionResult,
} from "./client_session.ts";

/** Options of {@linkcode SmtpClient.connect}. */
export interface SmtpClientOptions {
  /** The server's host name or IP address. */
  host: string;
  /** The server's port (25 for MX delivery). */
  port: number;
  /** A Unix-domain socket to connect to instead of `host` and `port` (local submission). */
  path?: string;
  /** Our name for EHLO: a fully qualified domain name, or an address literal (RFC 5321 §4.1.3). */
  helo: string;
  /**
   * STARTTLS policy: `"opportunistic"` uses TLS when offered and accepts any
   * certificate; `"required"` fails unless TLS is set up; `"none"` never
   * tries. @default {"opportunistic"}
   */
  tls?: "opportunistic" | "none" | "required";
  /**
   * Start TLS as soon as the TCP connection is up, before the greeting
   * (RFC 8314 §3, port 465): no STARTTLS, and `tls` is then moot. The
   * certificate is verified unless `verifyCertificate` is `false`.
   * @default {false}
   */
  implicitTls?: boolean;
  /** The name sent in SNI and checked against the certificate. @default {host, unless it is an IP address} */
  servername?: string;
  /** Refuse a certificate that does not verify (the handshake then fails). @default {true for "required" or implicitTls, else false} */
  verifyCertificate?: boolean;
  /** PEM certificates to trust instead of the system's roots. */
  caCerts?: string[];
  /**
   * Judges the peer after the handshake, whatever `verifyCertificate` says
   * (DANE, MTA-STS): given the chain in DER, leaf first, and whether it
   * verified against `caCerts` and `servername`, returns why it is refused,
   * or `null` to go on. A refusal fails like a handshake error.
   */
  checkPeer?: (chain: readonly Uint8Array[], authorized: boolean) => string | null;
  /**
   * Log in after EHLO (RFC 4954), with PLAIN or else LOGIN. Only over TLS:
   * without it the connection fails before the password is sent, unless
   * `allowPlaintextAuth` says otherwise. A refusal throws {@linkcode SmtpAuthError}.
   */
  auth?: { readonly username: string; readonly password: string };
  /** Send AUTH over a connection without TLS (the password then crosses in clear). @default {false} */
  allowPlaintextAuth?: boolean;
  /** Wait for the TCP connection, ms. @default {30000} */
  connectTimeoutMs?: number;
  /** Wait for the greeting, EHLO, STARTTLS and its handshake, MAIL, RCPT, RSET replies, ms (RFC 5321 §4.5.3.2.1–3). @default {300000} */
  commandTimeoutMs?: number;
  /** Wait for the reply to DATA, ms (RFC 5321 §4.5.3.2.4). @default {120000} */
  dataInitiationTimeoutMs?: number;
  /** Wait to write each block of content, and for each BDAT chunk's reply, ms (RFC 5321 §4.5.3.2.5). @default {180000} */
  dataBlockTimeoutMs?: number;
  /** Wait for the final reply after the content, ms (RFC 5321 §4.5.3.2.6). @default {600000} */
  dataTerminationTimeoutMs?: number;
  /** Octets per BDAT chunk. @default {65536} */
  chunkSize?: number;
  /** Use BDAT when the server offers CHUNKING. @default {true} */
  useChunking?: boolean;
  /** Pipeline commands when the server offers PIPELINING. @default {true} */
  usePipelining?: boolean;
  /**
   * Speak LMTP (RFC 2033) to a local delivery agent: LHLO, and one reply per
   * accepted recipient after the content. Pass `tls: "none"` with it.
   * @default {false}
   */
  lmtp?: boolean;
  /** Receives the wire trace: `C: ` commands, `S: ` replies, `* ` notes; never content. */
  onTrace?: (line: string) => void;
  /**
   * Abandons {@linkcode SmtpClient.connect} (TCP, greeting, EHLO, STARTTLS)
   * when aborted, so a caller that is stopping does not sit out the 5-minute
   * greeting wait of a server that never speaks. Has no effect once
   * `connect` has returned. @default {none}
   */
  signal?: AbortSignal;
  /** Told our own address once the TCP connection is up (TLS reports name it, RFC 8460 §4.4). @default {none} */
  onConnected?: (localAddress: string) => void;
}

/** The TLS state of a connection. */
export interface TlsInfo {
  /** The protocol version, such as `"TLSv1.3"`. */
  readonly protocol: string;
  /** The cipher suite, such as `"TLS_AES_256_GCM_SHA384"`. */
  readonly cipher: string;
  /** Whether the server's certificate verified against the trusted roots and the server name. */
  readonly isVerified: boolean;
  /** Why it did not verify (such as `"DEPTH_ZERO_SELF_SIGNED_CERT"`), or `null`. */
  readonly verifyError: string | null;
}

/** The peer's certificates in DER, leaf first, as sent (a loop in the chain ends it). */
function peerChain(socket: tls.TLSSocket): Uint8Array[] {
  const chain: Uint8Array[] = [];
  const seen = new Set<string>();
  let cert = socket.getPeerCertificate(true);
  while (cert !== undefined && cert !== null && cert.raw !== undefined) {
    const key = cert.fingerprint256;
    if (seen.has(key) || chain.length >= 16) break;
    seen.add(key);
    chain.push(new Uint8Array(cert.raw));
    cert = cert.issuerCertificate;
  }
  return chain;
}

/** Nothing rides on the 221 to QUIT: the wait for it is short. */
const QUIT_TIMEOUT_MS = 30_000;

/**
 * An SMTP client connection to one server: greeted, perhaps over TLS, ready
 * to send messages one after the other.
 *
 * @example Send one message
 * ```ts ignore
 * import { SmtpClient } from "./client.ts";
 *
 * const client = await SmtpClient.connect({
 *   host: "mx.example.test",
 *   port: 25,
 *   helo: "client.example.test",
 * });
 * const content = new TextEncoder().encode("Subject: hi\r\n\r\nHello\r\n");
 * const result = await client.send(
 *   {
 *     reversePath: "alice@example.test",
 *     recipients: [{ address: "bob@example.test" }],
 *     body: "7BIT",
 *     smtputf8: false,
 *     size: content.length,
 *   },
 *   () => ReadableStream.from([content]),
 * );
 * console.log(result.recipients[0]?.reply.code); // 250
 * await client.close();
 * ```
 */
export class SmtpClient {
  #options: SmtpClientOptions;
  #session: ClientSession;
  #wire: Wire;
  #tls: TlsInfo | null = null;
  #result: TransactionResult | null = null;
  #refusal: Reply | null = null;
  #startTlsRefusal: Reply | null = null;
  #authReply: Reply | null = null;
  #protocolError: string | null = null;
  #busy = false;
  #closed = false;

  private constructor(options: SmtpClientOptions, socket: net.Socket) {
    this.#options = options;
    this.#session = new ClientSession({
      hostname: options.helo,
      ...(options.chunkSize === undefined ? {} : { chunkSize: options.chunkSize }),
      ...(options.useChunking === undefined ? {} : { useChunking: options.useChunking }),
      ...(options.usePipelining === undefined ? {} : { usePipelining: options.usePipelining }),
      ...(options.lmtp === undefined ? {} : { lmtp: options.lmtp }),
    });
    this.#wire = new Wire(socket);
  }

  /**
   * Connects, reads the greeting, says EHLO (or HELO), and upgrades to TLS
   * as the policy says.
   *
   * @param options Where to connect, our name, the TLS policy and the timeouts.
   * @returns A client ready to send.
   * @throws {TlsHandshakeError} When the TLS handshake fails (retry with `tls: "none"` if the policy allows).
   * @throws {SmtpConnectionError} When the connection fails or times out, or the server refuses the session (`reply`).
   *
   * @example Connect with opportunistic TLS
   * ```ts ignore
   * import { SmtpClient } from "./client.ts";
   * const client = await SmtpClient.connect({ host: "mx.example.test", port: 25, helo: "client.example.test" });
   * console.log(client.tls?.protocol, client.extensions?.size);
   * await client.close();
   * ```
   */
  static async connect(options: SmtpClientOptions): Promise<SmtpClient> {
    const { signal } = options;
    const socket = await openSocket(
      options.host,
      options.port,
      options.connectTimeoutMs ?? 30_000,
      signal,
      options.path,
    );
    socket.setNoDelay(true);
    options.onConnected?.(socket.localAddress ?? "");
    const client = new SmtpClient(options, socket);
    // Closing the socket ends whatever wait is under way (greeting, EHLO, handshake).
    const onAbort = (): void => {
      client.#wire.socket.destroy();
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      if (signal?.aborted) throw abandoned(options.host, options.port, signal);
      // RFC 8314 §3: the handshake comes first; the greeting arrives over TLS.
      if (options.implicitTls === true) await client.#handshake();
      await client.#open();
      if (options.auth !== undefined) await client.#login(options.auth);
      return client;
    } catch (error: unknown) {
      await client.#destroy();
      if (signal?.aborted && !(error instanceof TlsHandshakeError)) {
        throw abandoned(options.host, options.port, signal, error);
      }
      throw error;
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }

  /** Whether the client can take another message now: greeted, idle, connection open. */
  get isUsable(): boolean {
    return !this.#closed && !this.#busy && this.#session.state === "ready" &&
      this.#wire.isOpen && !this.#wire.hasInput; // an idle server that speaks is closing (421)
  }

  /** Whether the connection runs over TLS. */
  get isTls(): boolean {
    return this.#tls !== null;
  }

  /** The TLS protocol, cipher and certificate check, or `null` in plaintext. */
  get tls(): TlsInfo | null {
    return this.#tls;
  }

  /** What the server offers (from the last EHLO; none after HELO). */
  get extensions(): Extensions | null {
    return this.#session.extensions;
  }

  /** The server's greeting. */
  get greeting(): Reply | null {
    return this.#session.greeting;
  }

  /** The reply with which the server refused STARTTLS (opportunistic mode then went on in plaintext), or `null`. */
  get startTlsRefusal(): Reply | null {
    return this.#startTlsRefusal;
  }

  /**
   * Sends one message: MAIL, RCPT for each recipient, then the content.
   *
   * @param message The envelope, and what the content needs (SIZE, BODY, SMTPUTF8, DSN).
   * @param content Opens the content; called at most once, only when the server is ready for it. Read as it goes out.
   * @returns Each recipient's reply (the RCPT refusal, or the final reply) and the final reply.
   * @throws {SmtpConnectionError} On a network failure, timeout or protocol error: every recipient failed temporarily; the client is closed.
   *
   * @example Send and read the results
   * ```ts ignore
   * import { SmtpClient } from "./client.ts";
   * const client = await SmtpClient.connect({ host: "127.0.0.1", port: 2525, helo: "client.example.test" });
   * const body = new TextEncoder().encode("Subject: hi\r\n\r\nHello\r\n");
   * const result = await client.send({
   *   reversePath: "",
   *   recipients: [{ address: "bob@example.test" }, { address: "carol@example.test" }],
   *   body: "7BIT",
   *   smtputf8: false,
   *   size: body.length,
   * }, () => ReadableStream.from([body]));
   * for (const r of result.recipients) console.log(r.address, r.reply.code);
   * await client.close();
   * ```
   */
  async send(
    message: OutgoingMessage,
    content: () => ReadableStream<Uint8Array>,
  ): Promise<TransactionResult> {
    if (this.#busy) throw new Error("Cannot send: another message is being sent on this client");
    if (!this.isUsable) {
      throw new SmtpConnectionError(`Cannot send to ${this.#peer}: the connection is not usable`);
    }
    this.#busy = true;
    this.#result = null;
    let reader: ReadableStreamDefaultReader<Uint8Array> | null = null;
    const contentFailure = { failed: false, error: undefined as unknown };
    try {
      await this.#handle(this.#session.startTransaction(message));
      while (this.#result === null) {
        await this.#throwIfFailed();
        if (this.#session.isWantingContent) {
          // Replies that came meanwhile first: a refused BDAT chunk stops the content.
          for (const bytes of this.#wire.take()) await this.#handle(this.#session.receive(bytes));
          if (this.#result !== null || !this.#session.isWantingContent) continue;
          let next: ReadableStreamReadResult<Uint8Array>;
          try {
            reader ??= content().getReader();
            next = await reader.read();
          } catch (error: unknown) {
            contentFailure.failed = true;
            contentFailure.error = error;
            throw error;
          }
          await this.#handle(
            next.done ? this.#session.endContent() : this.#session.content(next.value),
          );
        } else {
          await this.#readReplies();
        }
      }
      return this.#result;
    } catch (error: unknown) {
      // The dialogue is in an unknown state: never finish a half-sent message.
      await this.#destroy();
      if (contentFailure.failed) throw contentFailure.error; // a local failure: not the connection's
      // LMTP: recipients whose own reply was read keep it (RFC 2033 §4.2).
      const partial = this.#options.lmtp === true ? this.#session.abandon() : null;
      if (error instanceof SmtpConnectionError && partial === null) throw error;
      const message = error instanceof SmtpConnectionError
        ? error.message
        : `Cannot send to ${this.#peer}: ${String(error)}`;
      throw new SmtpConnectionError(message, {
        cause: error,
        partial,
        reply: error instanceof SmtpConnectionError ? error.reply : null,
      });
    } finally {
      this.#busy = false;
      if (reader !== null) await reader.cancel().catch(() => {});
    }
  }

  /**
   * Says QUIT, waits briefly for the 221, and closes. Safe to call twice.
   *
   * @returns When the socket is closed.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    if (!this.#busy && this.#session.state === "ready" && this.#wire.isOpen) {
      try {
        await this.#handle(this.#session.quit());
        while (this.#isOpenSession()) await this.#readReplies();
      } catch {
        // The server may be gone already: closing anyway.
      }
    }
    await this.#destroy();
  }

  /**
   * Same as {@linkcode SmtpClient.close}, for `await using`.
   *
   * @returns When the socket is closed.
   */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  // --- internals ------------------------------------------------------------

  get #peer(): string {
    return this.#options.path ?? `${this.#options.host}:${this.#options.port}`;
  }

  /** Greeting, EHLO, and STARTTLS as the policy says. */
  async #open(): Promise<void> {
    while (this.#session.state !== "ready") {
      await this.#throwIfFailed();
      await this.#readReplies();
    }
    const policy = this.#options.tls ?? "opportunistic";
    if (policy === "none" || this.#tls !== null) return;
    if (!this.#session.extensions?.startTls) {
      if (policy === "required") {
        await this.close();
        throw new SmtpConnectionError(`Cannot use TLS with ${this.#peer}: STARTTLS is not offered`);
      }
      return;
    }
    await this.#handle(this.#session.startTls());
    while (this.#session.state !== "ready") {
      await this.#throwIfFailed();
      await this.#readReplies();
    }
    if (this.#tls === null && policy === "required") {
      const reply = this.#startTlsRefusal;
      await this.close();
      throw new SmtpConnectionError(`Cannot use TLS with ${this.#peer}: STARTTLS was refused`, {
        reply,
      });
    }
  }

  /** RFC 4954: AUTH after the (last) EHLO, over TLS unless the caller allows plaintext. */
  async #login(auth: { readonly username: string; readonly password: string }): Promise<void> {
    if (this.#tls === null && this.#options.allowPlaintextAuth !== true) {
      await this.close();
      throw new SmtpAuthError(
        `Will not send a password to ${this.#peer} without TLS (STARTTLS not in use)`,
      );
    }
    if ((this.#session.extensions?.auth ?? []).length === 0) {
      await this.close();
      throw new SmtpAuthError(`Cannot log in to ${this.#peer}: AUTH is not offered`);
    }
    this.#authReply = null;
    try {
      await this.#handle(this.#session.authenticate(auth.username, auth.password));
    } catch (error: unknown) {
      if (error instanceof SmtpConnectionError) throw error;
      await this.close();
      throw new SmtpAuthError(`Cannot log in to ${this.#peer}: ${(error as Error).message}`);
    }
    while (this.#session.state !== "ready") {
      await this.#throwIfFailed();
      await this.#readReplies();
    }
    const reply = this.#authReply as Reply | null;
    if (reply === null || reply.code !== 235) {
      await this.close();
      const text = reply === null
        ? "no answer"
        : formatReply(reply, true).trim().replaceAll("\r\n", " / ");
      throw new SmtpAuthError(`${this.#peer} refused AUTH: ${text}`, { reply });
    }
    this.#trace("* AUTH succeeded");
  }

  /** Waits for the next bytes from the server and feeds them to the session. */
  async #readReplies(): Promise<void> {
    const awaiting = this.#session.awaiting;
    const what = awaiting === null
      ? "the server"
      : awaiting === "greeting"
      ? "the greeting"
      : `the reply to ${awaiting}`;
    const bytes = await this.#wire.read(this.#replyTimeout(awaiting), what);
    if (bytes === null) {
      throw new SmtpConnectionError(`Connection closed by ${this.#peer} while waiting for ${what}`);
    }
    await this.#handle(this.#session.receive(bytes));
  }

  /** RFC 5321 §4.5.3.2: each reply has its own timeout. */
  #replyTimeout(awaiting: Awaiting | null): number {
    const o = this.#options;
    const command = o.commandTimeoutMs ?? 300_000;
    switch (awaiting) {
      case "DATA":
        return o.dataInitiationTimeoutMs ?? 120_000;
      case "BDAT":
        return o.dataBlockTimeoutMs ?? 180_000;
      case "BDAT LAST":
      case ".":
        return o.dataTerminationTimeoutMs ?? 600_000;
      case "QUIT":
        return Math.min(command, QUIT_TIMEOUT_MS);
      default:
        return command;
    }
  }

  /** Throws when the session cannot go on: a refusal (after its QUIT), a protocol error, a close. */
  async #throwIfFailed(): Promise<void> {
    if (this.#protocolError !== null) {
      throw new SmtpConnectionError(`${this.#peer} broke the protocol: ${this.#protocolError}`);
    }
    const refusal = this.#refusal;
    if (refusal !== null) {
      try {
        // RFC 5321 §3.1: after a 554 greeting the server waits for our QUIT.
        while (this.#session.state === "quit") await this.#readReplies();
      } catch {
        // Only courtesy: the refusal is what we report.
      }
      const text = formatReply(refusal, true).trim().replaceAll("\r\n", " / ");
      throw new SmtpConnectionError(`${this.#peer} refused the session: ${text}`, {
        reply: refusal,
      });
    }
    if (this.#session.state === "closed") {
      throw new SmtpConnectionError(`Connection to ${this.#peer} closed`);
    }
  }

  async #handle(events: ClientEvent[]): Promise<void> {
    for (const e of events) {
      switch (e.type) {
        case "send": {
          for (const c of e.commands) this.#trace(`C: ${c}`);
          const state = this.#session.state;
          const isContent = state === "data" || state === "bdat" || state === "final";
          const ms = isContent
            ? this.#options.dataBlockTimeoutMs ?? 180_000
            : this.#options.commandTimeoutMs ?? 300_000;
          await this.#wire.write(e.bytes, ms, isContent ? "content" : e.commands.join(", "));
          break;
        }
        case "reply":
          if (this.#options.onTrace !== undefined) {
            for (const line of formatReply(e.reply, true).split("\r\n")) {
              if (line !== "") this.#trace(`S: ${line}`);
            }
          }
          break;
        case "starttls":
          await this.#upgrade(e.discarded);
          break;
        case "auth":
          this.#authReply = e.reply;
          break;
        case "starttls-refused":
          this.#startTlsRefusal = e.reply;
          this.#trace(`* STARTTLS refused: going on in plaintext`);
          break;
        case "result":
          this.#result = e.result;
          break;
        case "refused":
          this.#refusal = e.reply;
          break;
        case "error":
          this.#protocolError = e.message;
          this.#trace(`* protocol error: ${e.message}`);
          break;
        case "ready":
        case "content":
        case "close":
          break;
      }
    }
  }

  /** RFC 3207: the TLS handshake over the connection, then EHLO again. */
  async #upgrade(discardedBySession: number): Promise<void> {
    const discarded = await this.#handshake();
    // RFC 3207 §4.2; docs/smtp-pitfalls.md: STARTTLS injection: nothing that came in plaintext after the 220 is read.
    const dropped = discardedBySession + discarded;
    if (dropped > 0) this.#trace(`* ${dropped} bytes after the 220 to STARTTLS thrown away`);
    await this.#handle(this.#session.tlsEstablished());
  }

  /**
   * The TLS handshake over the current socket, which the new TLS socket
   * replaces; returns how many unread plaintext bytes were thrown away.
   */
  async #handshake(): Promise<number> {
    const o = this.#options;
    const { socket, discarded } = this.#wire.detach();
    socket.on("error", () => {}); // from now on its failures show on the TLS socket
    const servername = o.servername ?? (ipVersion(o.host) === 0 ? o.host : undefined);
    const verify = o.verifyCertificate ?? (o.tls === "required" || o.implicitTls === true);
    const tlsSocket = tls.connect({
      socket,
      rejectUnauthorized: verify,
      minVersion: "TLSv1.2",
      ...(servername === undefined ? {} : { servername }),
      ...(o.caCerts === undefined ? {} : { ca: o.caCerts }),
    });
    const ms = o.commandTimeoutMs ?? 300_000;
    try {
      await new Promise<void>((resolve, reject) => {
        const done = (error?: Error): void => {
          clearTimeout(timer);
          tlsSocket.off("secureConnect", onSecure);
          tlsSocket.off("error", done);
          tlsSocket.off("close", onClose);
          if (error === undefined) resolve();
          else reject(error);
        };
        const onSecure = (): void => done();
        const onClose = (): void => done(new Error("the connection closed during the handshake"));
        const timer = setTimeout(() => done(new Error(`timed out after ${ms} ms`)), ms);
        tlsSocket.once("secureConnect", onSecure);
        tlsSocket.once("error", done);
        tlsSocket.once("close", onClose);
      });
    } catch (error: unknown) {
      this.#wire = new Wire(tlsSocket); // so #destroy closes it
      await closeSocket(socket);
      const why = error instanceof Error ? error.message : String(error);
      throw new TlsHandshakeError(`TLS handshake with ${this.#peer} failed: ${why}`, {
        cause: error,
      });
    }
    const refused = o.checkPeer?.(peerChain(tlsSocket), tlsSocket.authorized) ?? null;
    if (refused !== null) {
      this.#wire = new Wire(tlsSocket); // so #destroy closes it
      throw new TlsHandshakeError(`TLS with ${this.#peer} refused: ${refused}`);
    }
    const verifyError = tlsSocket.authorizationError;
    this.#tls = {
      protocol: tlsSocket.getProtocol() ?? "unknown",
      cipher: tlsSocket.getCipher()?.name ?? "unknown",
      isVerified: tlsSocket.authorized,
      verifyError: verifyError === undefined || verifyError === null ? null : String(verifyError),
    };
    this.#trace(
      `* TLS ${this.#tls.protocol} ${this.#tls.cipher} verified=${this.#tls.isVerified}` +
        (this.#tls.verifyError === null ? "" : ` (${this.#tls.verifyError})`),
    );
    this.#wire = new Wire(tlsSocket);
    return discarded;
  }

  #isOpenSession(): boolean {
    return this.#session.state !== "closed";
  }

  #trace(line: string): void {
    this.#options.onTrace?.(line);
  }

  async #destroy(): Promise<void> {
    this.#closed = true;
    await this.#wire.destroy();
  }
}
