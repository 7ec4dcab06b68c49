/**
 * The client side of an SMTP dialogue (RFC 5321), as a state machine that
 * does no I/O.
 *
 * ## The dialogue, seen from the client
 *
 * The client opens the connection and then listens first: the server speaks
 * before anyone else, with a `220` greeting (§3.1, §4.3.1). A server that
 * does not want us says so in the same place with `554` and then waits for
 * `QUIT`; that is a refusal to report, not a dropped line (docs/smtp-pitfalls.md: a 554 greeting).
 *
 * The client introduces itself with `EHLO` and learns from the reply what the
 * server offers: one keyword per line after the first (§4.1.1.1), such as
 * `SIZE 10240000`, `PIPELINING`, `8BITMIME`, `STARTTLS`. Keywords are
 * case-insensitive, and old servers write `AUTH=LOGIN` where new ones write
 * `AUTH LOGIN` (docs/smtp-pitfalls.md: multi-line replies). A server that does not know EHLO answers
 * `500` or `502`; the client then says `HELO` and uses no extension at all
 * (§3.2, docs/smtp-pitfalls.md: EHLO, then HELO).
 *
 * If the server offers STARTTLS and the client wants it, the client sends it
 * and, on `220`, hands the connection to TLS. RFC 3207 §4.2 makes both sides
 * forget everything they learned in plaintext; the client also throws away
 * every byte that arrived after the `220` (a server, or someone in the
 * middle, could have put "replies" there to be read as if they had come
 * over TLS; docs/smtp-pitfalls.md: STARTTLS injection) and says `EHLO` again.
 *
 * A mail transaction (§3.3) is what the client is there for:
 *
 * 1. `MAIL FROM:<reverse-path>` with the parameters the server offered:
 *    `SIZE=` (RFC 1870), `BODY=8BITMIME` (RFC 6152), `SMTPUTF8` (RFC 6531),
 *    `RET=` and `ENVID=` (RFC 3461, only when the server offers DSN);
 * 2. `RCPT TO:<forward-path>` once per recipient, each accepted or refused
 *    on its own, with `NOTIFY=` and `ORCPT=` when the server offers DSN;
 * 3. the content: `DATA`, and after `354` the message, every line that
 *    starts with a dot given one more (§4.5.2), ended by `<CRLF>.<CRLF>`; or
 *    with CHUNKING, `BDAT <size>` chunks sent as they are, the last one
 *    marked `LAST` (RFC 3030).
 *
 * The reply to the end of the content is the one that matters: `250` means
 * the server has taken responsibility for the message (§6.1). A recipient
 * refused at RCPT keeps its own reply; every accepted recipient shares the
 * final one.
 *
 * Some messages cannot be sent to a given server at all, and the client
 * knows before MAIL: one larger than the server's SIZE (552 5.3.4), 8-bit
 * content for a server without 8BITMIME (554 5.6.3: tern does not
 * downconvert), an address or header that needs SMTPUTF8 for a server
 * without it (553 5.6.7: RFC 6531 has no downgrade). These are reported as
 * permanent failures of every recipient without a command being sent.
 *
 * With PIPELINING (RFC 2920), the client sends MAIL, every RCPT and DATA in
 * one go and reads the replies in order; the content still waits for the
 * `354` (§3.3, docs/smtp-pitfalls.md: DATA without recipients). Without it, one command at a time, each
 * after the reply to the one before, as strict servers demand (docs/smtp-pitfalls.md: pipelining).
 * A transaction left open on the server (MAIL accepted, then every RCPT or
 * the DATA refused) is closed with `RSET` before the next one, and `QUIT`
 * ends the session.
 *
 * ## States
 *
 * ```
 *  greeting ─220─▶ hello ─250─▶ ready ─MAIL…─▶ envelope ─354─▶ data ─┐
 *                    ▲           │ ▲                 └─CHUNKING─▶ bdat ─┴─▶ final
 *                    │           │ └─────────────── result ◀──────────────────┘
 *                  EHLO      STARTTLS
 *                    │           ▼
 *                handshake ◀─220─ starttls            ready ─QUIT─▶ quit ─▶ closed
 * ```
 *
 * What each awaited reply leads to is one table, `CLIENT_EXPECTATIONS` in
 * `client_expectations.ts`: one entry per command whose reply is awaited,
 * with what follows each class of reply. docs/state-machine.md draws it.
 *
 * ## Events
 *
 * Bytes from the server go in through {@linkcode ClientSession.receive};
 * what to do comes out as {@linkcode ClientEvent}s: bytes to write, a reply
 * read (for traces), the session ready, a TLS upgrade to make, content
 * wanted, a transaction's result, a refusal, close. The adapter
 * (`client.ts`) does the writing, the waiting and its timeouts (§4.5.3.2),
 * and the TLS handshake; {@linkcode ClientSession.awaiting} tells it which
 * reply it is waiting for, and so which timeout applies.
 *
 * @module
 */

import { DataEncoder } from "./data_encoder.ts";
import { isPositive, type Reply } from "./reply.ts";
import { ReplyParser, ReplySyntaxError } from "./_reply_parser.ts";
import {
  base64,
  checkMessage,
  LOCAL,
  mailLine,
  NO_EXTENSIONS,
  rcptLine,
} from "./client_commands.ts";
import {
  CLIENT_EXPECTATIONS,
  type ClientMachine,
  type Expect,
  type Expectation,
  type Transaction,
} from "./client_expectations.ts";

export { NO_EXTENSIONS, parseEhlo, xtext } from "./client_commands.ts";
export type {
  ClientEvent,
  Extensions,
  OutgoingMessage,
  OutgoingRecipient,
  RecipientResult,
  TransactionResult,
} from "./client_session_types.ts";
import type {
  ClientEvent,
  Extensions,
  OutgoingMessage,
  RecipientResult,
  TransactionResult,
} from "./client_session_types.ts";

// The types this module's API speaks in, for callers that import only it.
export type { BodyType } from "./envelope.ts";
export type { Reply } from "./reply.ts";

/** Where the client session stands. */
export type ClientState =
  | "greeting" // connected, waiting for the server's greeting
  | "hello" // EHLO or HELO sent
  | "ready" // greeted, no transaction: send a message, STARTTLS or QUIT
  | "starttls" // STARTTLS sent
  | "auth" // AUTH sent (RFC 4954), waiting for 334 or the outcome
  | "handshake" // 220 to STARTTLS: the adapter upgrades the connection
  | "envelope" // MAIL, RCPT (and with PIPELINING, DATA) sent
  | "data" // 354 received: content goes out, dot-stuffed
  | "bdat" // CHUNKING: content goes out in BDAT chunks
  | "final" // the end of the content is sent: waiting for the final reply
  | "quit" // QUIT sent
  | "closed";

/**
 * The command whose reply the session waits for; `"."` is the end of data.
 * RFC 5321 §4.5.3.2 gives each its own timeout.
 */
export type Awaiting =
  | "greeting"
  | "EHLO"
  | "HELO"
  | "STARTTLS"
  | "AUTH"
  | "RSET"
  | "MAIL"
  | "RCPT"
  | "DATA"
  | "BDAT"
  | "BDAT LAST"
  | "."
  | "QUIT";

/** Options of {@linkcode ClientSession}. */
export interface ClientSessionOptions {
  /** Our name for EHLO and HELO: a fully qualified domain name, or an address literal (RFC 5321 §4.1.3). */
  hostname: string;
  /** Octets per BDAT chunk (RFC 3030). @default {65536} */
  chunkSize?: number;
  /** Use BDAT when the server offers CHUNKING. @default {true} */
  useChunking?: boolean;
  /** Send commands in groups when the server offers PIPELINING. @default {true} */
  usePipelining?: boolean;
  /**
   * Speak LMTP (RFC 2033) instead of SMTP: `LHLO` instead of `EHLO` and no
   * `HELO` fallback (§4.1), the content always after `DATA`, one reply per
   * accepted recipient after it (§4.2), and `RSET` before each transaction
   * after the first. @default {false}
   */
  lmtp?: boolean;
}

const encoder = new TextEncoder();
const CRLF = "\r\n";

/**
 * One SMTP client session. Feed it the server's bytes; write what it says
 * to write; start transactions and feed it their content when it asks.
 *
 * @example A whole dialogue in memory
 * ```ts
 * import { ClientSession, type ClientEvent } from "./client_session.ts";
 *
 * const session = new ClientSession({ hostname: "client.example.test" });
 * const sent: string[] = [];
 * const feed = (events: ClientEvent[]): ClientEvent[] => {
 *   for (const e of events) if (e.type === "send") sent.push(new TextDecoder().decode(e.bytes));
 *   return events;
 * };
 * const server = (text: string) => feed(session.receive(new TextEncoder().encode(text)));
 *
 * server("220 mx.example.test ESMTP\r\n");
 * server("250-mx.example.test greets client.example.test\r\n250 PIPELINING\r\n");
 * feed(session.startTransaction({
 *   reversePath: "alice@example.test",
 *   recipients: [{ address: "bob@example.test" }, { address: "nobody@example.test" }],
 *   body: "7BIT",
 *   smtputf8: false,
 *   size: 20,
 * }));
 * console.log(JSON.stringify(sent.at(-1)));
 * // "MAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nRCPT TO:<nobody@example.test>\r\nDATA\r\n"
 * server("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 No such user\r\n354 Go ahead\r\n");
 * feed(session.content(new TextEncoder().encode("Subject: hi\r\n\r\n.\r\n")));
 * feed(session.endContent());
 * console.log(JSON.stringify(sent.slice(-2))); // ["Subject: hi\r\n\r\n..\r\n", ".\r\n"]
 * const events = server("250 2.0.0 Ok: queued as 4F2A9C\r\n");
 * const result = events.find((e) => e.type === "result");
 * console.log(result?.type === "result" && result.result.recipients.map((r) => r.reply.code)); // [250, 550]
 * ```
 */
export class ClientSession {
  #state: ClientState = "greeting";
  #hostname: string;
  #chunkSize: number;
  #useChunking: boolean;
  #usePipelining: boolean;
  #lmtp: boolean;
  #parser = new ReplyParser();
  #expect: Expect[] = [{ kind: "greeting" }];
  #events: ClientEvent[] = [];
  #extensions: Extensions | null = null;
  #isExtended = false;
  #isTls = false;
  #isAuthenticated = false;
  #credentials: { readonly username: string; readonly password: string } | null = null;
  #needsReset = false;
  #transaction: Transaction | null = null;
  #greeting: Reply | null = null;
  #closeEmitted = false;
  #machine: ClientMachine;

  /**
   * Makes a session for one connection; it waits for the server's greeting.
   *
   * @param options Our name, and how to send content.
   */
  constructor(options: ClientSessionOptions) {
    this.#hostname = options.hostname;
    this.#chunkSize = Math.max(1, options.chunkSize ?? 65536);
    this.#lmtp = options.lmtp ?? false;
    // RFC 2033 §4.2 gives per-recipient replies after DATA; BDAT is not used in LMTP mode.
    this.#useChunking = !this.#lmtp && (options.useChunking ?? true);
    this.#usePipelining = options.usePipelining ?? true;
    this.#machine = this.#makeMachine();
  }

  /** Where the session stands. */
  get state(): ClientState {
    return this.#state;
  }

  /** What the server offers (after EHLO; {@linkcode NO_EXTENSIONS} after HELO), or `null` before. */
  get extensions(): Extensions | null {
    return this.#extensions;
  }

  /** Whether the server took EHLO (so ESMTP applies), rather than only HELO. */
  get isExtended(): boolean {
    return this.#isExtended;
  }

  /** Whether {@linkcode ClientSession.tlsEstablished} was called: the dialogue now runs over TLS. */
  get isTls(): boolean {
    return this.#isTls;
  }

  /** The server's greeting, once read. */
  get greeting(): Reply | null {
    return this.#greeting;
  }

  /** The command whose reply is awaited next, or `null` when no reply is due. */
  get awaiting(): Awaiting | null {
    const e = this.#expect[0];
    if (e === undefined) return null;
    if (e.kind === "BDAT") return e.last ? "BDAT LAST" : "BDAT";
    return e.kind;
  }

  /** Whether the session wants content now ({@linkcode ClientSession.content}, {@linkcode ClientSession.endContent}). */
  get isWantingContent(): boolean {
    const t = this.#transaction;
    if (t === null || t.contentEnded || t.failure !== null) return false;
    if (this.#state === "data") return true;
    return this.#state === "bdat" && t.queued.length === 0;
  }

  /**
   * Takes bytes from the server.
   *
   * @param bytes What arrived.
   * @returns What to do about them.
   */
  receive(bytes: Uint8Array): ClientEvent[] {
    // RFC 3207 §4.2: plaintext after the 220 to STARTTLS is never read.
    if (!this.#isReading()) return [];
    this.#parser.push(bytes);
    while (this.#isReading()) {
      let r: Reply | null;
      try {
        r = this.#parser.next();
      } catch (error: unknown) {
        if (!(error instanceof ReplySyntaxError)) throw error;
        this.#protocolError(error.message);
        break;
      }
      if (r === null) break;
      this.#reply(r);
    }
    return this.#drain();
  }

  /**
   * Asks to upgrade the connection to TLS (RFC 3207). STARTTLS goes alone,
   * so it is the last command of its group (RFC 3207 §4.2).
   *
   * @returns The events: STARTTLS to send.
   */
  startTls(): ClientEvent[] {
    this.#require("ready", "start TLS");
    if (this.#isTls) throw new Error("Cannot start TLS: the connection is already encrypted");
    this.#state = "starttls";
    this.#send(["STARTTLS"], [{ kind: "STARTTLS" }]);
    return this.#drain();
  }

  /**
   * Reports that the TLS handshake has completed: the session forgets what
   * it knew of the server and says EHLO again (RFC 3207 §4.2).
   *
   * @returns The events: EHLO to send.
   */
  tlsEstablished(): ClientEvent[] {
    this.#require("handshake", "go on after TLS");
    this.#isTls = true;
    this.#isAuthenticated = false;
    this.#extensions = null;
    this.#isExtended = false;
    this.#parser.clear();
    this.#state = "hello";
    this.#send([`${this.#lmtp ? "LHLO" : "EHLO"} ${this.#hostname}`], [{ kind: "EHLO" }]);
    return this.#drain();
  }

  /**
   * Logs in (RFC 4954) with PLAIN (RFC 4616, the credentials in the initial
   * response) when the server offers it, else LOGIN. Only after EHLO has
   * advertised AUTH (RFC 4954 §4: no AUTH to a server that did not offer it),
   * and never a second time. The outcome comes as an `auth` event.
   *
   * @param username The authentication identity.
   * @param password The password.
   * @returns The events: the AUTH command to send.
   * @throws {Error} When the session is not ready, already logged in, or the server offers neither PLAIN nor LOGIN.
   */
  authenticate(username: string, password: string): ClientEvent[] {
    this.#require("ready", "authenticate");
    if (this.#isAuthenticated) throw new Error("Cannot authenticate: already authenticated");
    const offered = this.#extensions?.auth ?? [];
    const mechanism = offered.includes("PLAIN")
      ? "PLAIN"
      : offered.includes("LOGIN")
      ? "LOGIN"
      : null;
    if (mechanism === null) {
      throw new Error(
        offered.length === 0
          ? "Cannot authenticate: the server does not offer AUTH"
          : `Cannot authenticate: the server offers only ${offered.join(" ")}, not PLAIN or LOGIN`,
      );
    }
    this.#credentials = { username, password };
    this.#state = "auth";
    // The trace shows the command, never the credentials.
    if (mechanism === "PLAIN") {
      // RFC 4616 §2: authzid NUL authcid NUL passwd; no authzid: act as ourselves.
      const response = base64(`\0${username}\0${password}`);
      this.#expect.push({ kind: "AUTH", mechanism, step: 0 });
      this.#emit({
        type: "send",
        bytes: encoder.encode(`AUTH PLAIN ${response}${CRLF}`),
        commands: ["AUTH PLAIN ****"],
      });
    } else {
      this.#send(["AUTH LOGIN"], [{ kind: "AUTH", mechanism, step: 0 }]);
    }
    return this.#drain();
  }

  /** Whether AUTH has succeeded on this connection. */
  get isAuthenticated(): boolean {
    return this.#isAuthenticated;
  }

  /**
   * Starts a mail transaction (RFC 5321 §3.3). A message the server cannot
   * take (SIZE, 8BITMIME, SMTPUTF8) gets its result at once, before MAIL.
   *
   * @param message The envelope and what the content needs.
   * @returns The events: the commands to send, or the result.
   */
  startTransaction(message: OutgoingMessage): ClientEvent[] {
    this.#require("ready", "start a transaction");
    const ext = this.#extensions ?? NO_EXTENSIONS;
    const refusal = checkMessage(message, ext, this.#useChunking);
    if (refusal !== null) {
      this.#emit({
        type: "result",
        result: {
          recipients: message.recipients.map((r) => ({ address: r.address, reply: refusal })),
          reply: null,
        },
      });
      return this.#drain();
    }
    const rcptLines: string[] = [];
    const early: (Reply | null)[] = [];
    for (const r of message.recipients) {
      const line = rcptLine(r, ext);
      if (typeof line === "string") {
        rcptLines.push(line);
        early.push(null);
      } else {
        rcptLines.push("");
        early.push(line); // refused here: never sent
      }
    }
    if (early.every((r) => r !== null)) {
      this.#emit({
        type: "result",
        result: {
          recipients: message.recipients.map((r, i) => ({ address: r.address, reply: early[i]! })),
          reply: null,
        },
      });
      return this.#drain();
    }
    const mode = message.body === "BINARYMIME"
      ? "binary"
      : this.#useChunking && ext.chunking
      ? "bdat"
      : "data";
    const t: Transaction = {
      message,
      mailLine: mailLine(message, ext),
      rcptLines,
      mode,
      pipelined: this.#usePipelining && ext.pipelining,
      resetPending: this.#needsReset,
      mailSent: false,
      rcptSent: 0,
      dataSent: false,
      mailReply: null,
      rcptReplies: early,
      accepted: 0,
      failure: null,
      final: null,
      contentEnded: false,
      encoder: null,
      chunk: new Uint8Array(0),
      fill: 0,
      queued: [],
      outstanding: 0,
      lmtpReplies: [],
    };
    this.#transaction = t;
    this.#needsReset = false;
    this.#state = "envelope";
    if (t.pipelined) {
      // RFC 2920 §3.1: RSET, MAIL and RCPT may go anywhere in a group, DATA
      // only last; the content waits for the 354 (§3.3, docs/smtp-pitfalls.md: DATA without recipients). BDAT
      // waits for the RCPT replies, so no chunk goes to a server that
      // accepted no recipient.
      const lines: string[] = [];
      const expects: Expect[] = [];
      if (t.resetPending) {
        lines.push("RSET");
        expects.push({ kind: "RSET" });
      }
      lines.push(t.mailLine);
      expects.push({ kind: "MAIL" });
      t.rcptLines.forEach((line, index) => {
        if (line === "") return;
        lines.push(line);
        expects.push({ kind: "RCPT", index });
      });
      if (t.mode === "data") {
        lines.push("DATA");
        expects.push({ kind: "DATA" });
        t.dataSent = true;
      }
      t.resetPending = false;
      t.mailSent = true;
      t.rcptSent = t.rcptLines.length;
      this.#send(lines, expects);
    } else {
      this.#advance(t);
    }
    return this.#drain();
  }

  /**
   * Takes the next piece of content, while {@linkcode ClientSession.isWantingContent}.
   *
   * @param chunk Message octets, in order, any size.
   * @returns The events: bytes to send (dot-stuffed after DATA, in BDAT chunks with CHUNKING).
   */
  content(chunk: Uint8Array): ClientEvent[] {
    const t = this.#transaction;
    if (t === null || t.contentEnded || t.failure !== null) return [];
    if (this.#state === "data") {
      const bytes = t.encoder!.encode(chunk);
      if (bytes.length > 0) this.#emit({ type: "send", bytes, commands: [] });
    } else if (this.#state === "bdat") {
      this.#fillChunks(t, t.encoder === null ? chunk : t.encoder.encode(chunk));
    }
    return this.#drain();
  }

  /**
   * Ends the content: `<CRLF>.<CRLF>` after DATA, or the last chunk as `BDAT n LAST`.
   *
   * @returns The events: the last bytes to send.
   */
  endContent(): ClientEvent[] {
    const t = this.#transaction;
    if (t === null || t.contentEnded || t.failure !== null) return [];
    if (this.#state === "data") {
      t.contentEnded = true;
      this.#state = "final";
      this.#expect.push(...this.#finalExpects(t));
      this.#emit({ type: "send", bytes: t.encoder!.end(), commands: ["."] });
    } else if (this.#state === "bdat") {
      t.contentEnded = true;
      if (t.encoder !== null) this.#fillChunks(t, t.encoder.end());
      t.queued.push({ bytes: t.chunk.subarray(0, t.fill), last: true });
      t.chunk = new Uint8Array(0);
      t.fill = 0;
      this.#sendChunks(t);
    }
    return this.#drain();
  }

  /**
   * The replies due after the end of the content: one, or in LMTP one per
   * accepted recipient, in the order of their RCPT commands (RFC 2033 §4.2).
   */
  #finalExpects(t: Transaction): Expect[] {
    if (!this.#lmtp || t.accepted === 0) return [{ kind: "." }];
    const expects: Expect[] = [];
    t.rcptReplies.forEach((r, index) => {
      if (r !== null && isPositive(r)) expects.push({ kind: ".", index });
    });
    return expects;
  }

  /**
   * The connection is gone: ends the transaction in flight and the session.
   * In LMTP, recipients whose own reply to the content was read keep it
   * (RFC 2033 §4.2); the others get `451 4.4.2`.
   *
   * @returns The transaction's result when some recipient had a reply of its
   *   own to the content, else `null` (nothing is known).
   */
  abandon(): TransactionResult | null {
    const t = this.#transaction;
    const known = t !== null && t.lmtpReplies.some((r) => r != null);
    let result: TransactionResult | null = null;
    if (t !== null && known) {
      t.failure ??= LOCAL.incomplete;
      this.#state = "closed";
      this.#finish(t);
      const event = this.#events.findLast((e) => e.type === "result");
      if (event?.type === "result") result = event.result;
    }
    this.#close();
    this.#drain();
    return result;
  }

  /**
   * Ends the session politely (RFC 5321 §4.1.1.10).
   *
   * @returns The events: QUIT to send.
   */
  quit(): ClientEvent[] {
    this.#require("ready", "quit");
    this.#state = "quit";
    this.#send(["QUIT"], [{ kind: "QUIT" }]);
    return this.#drain();
  }

  // --- replies --------------------------------------------------------------

  #reply(r: Reply): void {
    const e = this.#expect.shift();
    if (e === undefined) {
      if (r.code === 421) {
        // RFC 5321 §3.8: a server may announce it is closing at any time.
        this.#emit({ type: "reply", command: null, reply: r });
        this.#serverClosing(r);
        return;
      }
      this.#protocolError(`Unexpected reply ${r.code} when no command was sent`);
      return;
    }
    const command: Awaiting = e.kind === "BDAT" ? (e.last ? "BDAT LAST" : "BDAT") : e.kind;
    this.#emit({ type: "reply", command, reply: r });
    if (r.code === 421 && e.kind !== "QUIT") {
      this.#serverClosing(r);
      return;
    }
    // The one lookup: what this reply means is the entry of the command it answers.
    const entry = CLIENT_EXPECTATIONS[e.kind] as Expectation<Expect["kind"]>;
    if (!entry.inTransaction) {
      entry.onReply(this.#machine, e, r);
      return;
    }
    const t = this.#transaction;
    if (t === null) {
      this.#protocolError(`Unexpected reply ${r.code} outside a transaction`);
      return;
    }
    entry.onReply(this.#machine, e, r);
    if (this.#expect.length === 0 && this.#state === "envelope") this.#advance(t);
    else if (this.#expect.length === 0 && this.#state === "final") this.#finish(t);
  }

  /** What the table of expectations reads and does: this session's facts and transitions. */
  #makeMachine(): ClientMachine {
    // deno-lint-ignore no-this-alias
    const self = this;
    return {
      get hostname() {
        return self.#hostname;
      },
      get lmtp() {
        return self.#lmtp;
      },
      get state() {
        return self.#state;
      },
      get transaction() {
        return self.#transaction;
      },
      get credentials() {
        return self.#credentials;
      },
      enter: (state) => void (this.#state = state),
      send: (lines, expects, raw) => this.#send(lines, expects, raw),
      sendSecret: (text, expect) => {
        this.#expect.push(expect);
        this.#emit({ type: "send", bytes: encoder.encode(text + CRLF), commands: ["****"] });
      },
      emit: (event) => this.#emit(event),
      greeted: (r) => void (this.#greeting = r),
      ready: (extensions, extended) => {
        if (extended) this.#isExtended = true;
        this.#ready(extensions);
      },
      refuse: (r) => this.#refuse(r),
      clearPlaintext: () => this.#parser.clear(),
      authDone: (r) => {
        this.#credentials = null;
        this.#state = "ready";
        if (r.code === 235) this.#isAuthenticated = true;
        this.#emit({ type: "auth", reply: r });
      },
      protocolError: (message) => this.#protocolError(message),
      close: () => this.#close(),
      needsReset: () => void (this.#needsReset = true),
      sendChunks: (t) => this.#sendChunks(t),
    };
  }

  /** With nothing outstanding, sends the next command of the transaction, or ends it. */
  #advance(t: Transaction): void {
    if (t.resetPending) {
      t.resetPending = false;
      this.#send(["RSET"], [{ kind: "RSET" }]);
      return;
    }
    if (!t.mailSent) {
      t.mailSent = true;
      this.#send([t.mailLine], [{ kind: "MAIL" }]);
      return;
    }
    if (t.mailReply === null || !isPositive(t.mailReply)) return this.#finish(t);
    while (t.rcptSent < t.rcptLines.length) {
      const index = t.rcptSent++;
      const line = t.rcptLines[index]!;
      if (line === "") continue;
      this.#send([line], [{ kind: "RCPT", index }]);
      return;
    }
    if (t.accepted === 0) {
      // MAIL was accepted: the server holds an open transaction (RFC 5321 §4.1.1.5).
      this.#needsReset = true;
      return this.#finish(t);
    }
    if (t.mode === "data") {
      if (t.dataSent) return this.#finish(t); // DATA refused
      t.dataSent = true;
      this.#send(["DATA"], [{ kind: "DATA" }]);
      return;
    }
    // RFC 3030: BDAT needs no go-ahead; content is wanted now.
    this.#state = "bdat";
    t.encoder = t.mode === "binary" ? null : new DataEncoder({ dotStuffing: false });
    t.chunk = new Uint8Array(this.#chunkSize);
    this.#emit({ type: "content" });
  }

  #fillChunks(t: Transaction, bytes: Uint8Array): void {
    let i = 0;
    while (i < bytes.length) {
      if (t.fill === t.chunk.length) {
        // Full, and more is coming: this chunk is not the last.
        t.queued.push({ bytes: t.chunk, last: false });
        t.chunk = new Uint8Array(this.#chunkSize);
        t.fill = 0;
      }
      const n = Math.min(t.chunk.length - t.fill, bytes.length - i);
      t.chunk.set(bytes.subarray(i, i + n), t.fill);
      t.fill += n;
      i += n;
    }
    this.#sendChunks(t);
  }

  /** Sends queued chunks: all of them with PIPELINING (RFC 3030 §4.2), else one per reply. */
  #sendChunks(t: Transaction): void {
    while (t.queued.length > 0 && (t.pipelined || t.outstanding === 0)) {
      const { bytes, last } = t.queued.shift()!;
      const command = `BDAT ${bytes.length}${last ? " LAST" : ""}`;
      const head = encoder.encode(command + CRLF);
      const out = new Uint8Array(head.length + bytes.length);
      out.set(head);
      out.set(bytes, head.length);
      t.outstanding++;
      this.#expect.push({ kind: "BDAT", last });
      this.#emit({ type: "send", bytes: out, commands: [command] });
      if (last) this.#state = "final";
    }
  }

  #finish(t: Transaction): void {
    const mail = t.mailReply;
    const mailRefused = mail !== null && !isPositive(mail);
    // A refused chunk explains more than the "no transaction" its LAST may get.
    const end = t.failure ?? t.final;
    const recipients = t.message.recipients.map((r, i): RecipientResult => {
      const rcpt = t.rcptReplies[i] ?? null;
      let result: Reply;
      if (mailRefused) result = mail; // the RCPT replies after it say only "need MAIL"
      else if (rcpt !== null && !isPositive(rcpt)) result = rcpt;
      // RFC 2033 §4.2: each accepted recipient has a reply of its own, never another's.
      else if (t.lmtpReplies[i] != null) result = t.lmtpReplies[i]!;
      else result = (rcpt === null ? t.failure : end) ?? LOCAL.incomplete;
      return { address: r.address, reply: result };
    });
    this.#transaction = null;
    if (this.#state !== "closed") this.#state = "ready";
    // LMTP: every transaction after the first starts with RSET, a cheap check
    // that the reused connection is still there and in a clean state.
    if (this.#lmtp) this.#needsReset = true;
    this.#emit({
      type: "result",
      result: { recipients, reply: t.accepted > 0 && !mailRefused ? end : null },
    });
  }

  // --- session --------------------------------------------------------------

  #ready(extensions: Extensions): void {
    this.#extensions = extensions;
    this.#state = "ready";
    this.#emit({ type: "ready", extensions });
  }

  /** The server will not have us: report, then QUIT (or, on 421, just close). */
  #refuse(r: Reply): void {
    this.#emit({ type: "refused", reply: r });
    if (r.code === 421) {
      this.#close();
      return;
    }
    this.#state = "quit";
    this.#send(["QUIT"], [{ kind: "QUIT" }]);
  }

  /** RFC 5321 §3.8: 421 means the server is closing; a transaction in flight fails for now. */
  #serverClosing(r: Reply): void {
    const t = this.#transaction;
    if (t !== null) {
      t.failure ??= r;
      t.mailReply ??= r;
      t.message.recipients.forEach((_, i) => (t.rcptReplies[i] ??= r));
      this.#state = "closed";
      this.#finish(t);
    }
    this.#emit({ type: "refused", reply: r });
    this.#close();
  }

  #protocolError(message: string): void {
    this.#emit({ type: "error", message });
    this.#close();
  }

  #close(): void {
    if (this.#closeEmitted) return;
    this.#closeEmitted = true;
    this.#state = "closed";
    this.#expect = [];
    this.#transaction = null;
    this.#parser.clear();
    this.#emit({ type: "close" });
  }

  #isReading(): boolean {
    return this.#state !== "closed" && this.#state !== "handshake";
  }

  #require(state: ClientState, action: string): void {
    if (this.#state !== state) {
      throw new Error(`Cannot ${action}: the session is in state "${this.#state}", not "${state}"`);
    }
  }

  // --- output ---------------------------------------------------------------

  /** Sends command lines (upper-case verbs, RFC 5321 §2.4) and notes the replies due. */
  #send(lines: string[], expects: Expect[], raw?: string): void {
    this.#expect.push(...expects);
    const text = raw === undefined ? lines.map((l) => l + CRLF).join("") : raw + CRLF;
    this.#emit({ type: "send", bytes: encoder.encode(text), commands: lines });
  }

  #emit(event: ClientEvent): void {
    this.#events.push(event);
  }

  #drain(): ClientEvent[] {
    const events = this.#events;
    this.#events = [];
    return events;
  }
}
