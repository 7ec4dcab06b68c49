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
import type { BodyType } from "./envelope.ts";
import { isNonAscii, parseMailbox, PathSyntaxError } from "./path.ts";
import { isPositive, type Reply, reply } from "./reply.ts";
import { ReplyParser, ReplySyntaxError } from "./_reply_parser.ts";

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

/** What the server offers, from its EHLO reply (RFC 5321 §4.1.1.1). */
export interface Extensions {
  /** Every keyword, upper case, with its parameters as written. */
  readonly keywords: ReadonlyMap<string, readonly string[]>;
  /** RFC 1870: the largest message in octets; `0` when SIZE has no fixed limit; `null` without SIZE. */
  readonly size: number | null;
  /** RFC 2920: commands may be sent in groups. */
  readonly pipelining: boolean;
  /** RFC 6152: 8-bit content may be sent with `BODY=8BITMIME`. */
  readonly eightBitMime: boolean;
  /** RFC 6531: UTF-8 addresses and headers may be sent with `SMTPUTF8`. */
  readonly smtputf8: boolean;
  /** RFC 3030: content may be sent in BDAT chunks. */
  readonly chunking: boolean;
  /** RFC 3030: binary content may be sent with `BODY=BINARYMIME` (and BDAT). */
  readonly binaryMime: boolean;
  /** RFC 3207: the connection may be upgraded to TLS. */
  readonly startTls: boolean;
  /** RFC 3461: NOTIFY, ORCPT, RET and ENVID are understood. */
  readonly dsn: boolean;
  /** RFC 2034: replies carry enhanced status codes. */
  readonly enhancedStatusCodes: boolean;
  /** RFC 4954: the SASL mechanisms offered, upper case (`AUTH` and the legacy `AUTH=` merged). */
  readonly auth: readonly string[];
}

/** One recipient of an {@linkcode OutgoingMessage}. */
export interface OutgoingRecipient {
  /** The forward-path as `local@domain` (or `Postmaster`), without angle brackets. */
  readonly address: string;
  /** RFC 3461 NOTIFY values (`NEVER`, or some of `SUCCESS`, `FAILURE`, `DELAY`), sent only to a DSN server. */
  readonly notify?: readonly string[] | undefined;
  /**
   * RFC 3461 ORCPT, sent only to a DSN server: as received (`rfc822;bob@example.test`,
   * xtext), or a bare address, which is sent as `rfc822;` plus its xtext.
   */
  readonly orcpt?: string | undefined;
}

/** The envelope of a message to send: what MAIL and RCPT say. */
export interface OutgoingMessage {
  /** The reverse-path as `local@domain`, or `""` for `<>` (RFC 5321 §4.5.5). */
  readonly reversePath: string;
  /** The recipients, in order; each gets its own result. */
  readonly recipients: readonly OutgoingRecipient[];
  /** What the content holds (RFC 6152, RFC 3030): decides BODY= and whether the server can take it. */
  readonly body: BodyType;
  /** Whether the message needs SMTPUTF8 (RFC 6531): UTF-8 headers, or a UTF-8 address. */
  readonly smtputf8: boolean;
  /** The content's size in octets, for `SIZE=` (RFC 1870) and the check against the server's limit. */
  readonly size: number;
  /** RFC 3461 RET, sent only to a DSN server. */
  readonly ret?: "FULL" | "HDRS" | undefined;
  /** RFC 3461 ENVID (xtext), sent only to a DSN server. */
  readonly envid?: string | undefined;
}

/** The fate of one recipient. */
export interface RecipientResult {
  /** The address, as given. */
  readonly address: string;
  /** The RCPT reply if it was refused; otherwise the reply that ended the transaction. */
  readonly reply: Reply;
}

/** The outcome of one mail transaction. */
export interface TransactionResult {
  /** One entry per recipient, in the order given. */
  readonly recipients: readonly RecipientResult[];
  /**
   * The reply that ended the transaction for the accepted recipients: the
   * final reply to the content, or the refusal of DATA or BDAT; `null` when
   * no recipient was accepted (so no content was offered).
   */
  readonly reply: Reply | null;
}

/** What the session reports. */
export type ClientEvent =
  /** Write these bytes to the server; `commands` are the command lines among them, for traces. */
  | { readonly type: "send"; readonly bytes: Uint8Array; readonly commands: readonly string[] }
  /** A reply was read, answering `command` (`null`: a reply nobody asked for, such as a 421 while idle). */
  | { readonly type: "reply"; readonly command: Awaiting | null; readonly reply: Reply }
  /** The server has been greeted: a message, STARTTLS or QUIT may follow. */
  | { readonly type: "ready"; readonly extensions: Extensions }
  /** 220 to STARTTLS: upgrade the connection now, then call {@linkcode ClientSession.tlsEstablished}. `discarded` bytes that followed the 220 were thrown away. */
  | { readonly type: "starttls"; readonly discarded: number }
  /** AUTH is over (RFC 4954): `235` logged in, anything else refused; the session is ready again either way. */
  | { readonly type: "auth"; readonly reply: Reply }
  /** STARTTLS was refused (such as 454); the session is ready again, in plaintext. */
  | { readonly type: "starttls-refused"; readonly reply: Reply }
  /** Send content now, with {@linkcode ClientSession.content} and {@linkcode ClientSession.endContent}. */
  | { readonly type: "content" }
  /** The transaction is over. */
  | { readonly type: "result"; readonly result: TransactionResult }
  /** The server refused the session (greeting, EHLO and HELO, or a 421 at any time). */
  | { readonly type: "refused"; readonly reply: Reply }
  /** The server broke the protocol (a malformed or unexpected reply); nothing more can be believed. */
  | { readonly type: "error"; readonly message: string }
  /** Close the connection (after writing what was sent). */
  | { readonly type: "close" };

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
}

/** The extensions after HELO: none (RFC 5321 §3.2: HELO gets no extended reply). */
export const NO_EXTENSIONS: Extensions = Object.freeze({
  keywords: new Map<string, readonly string[]>(),
  size: null,
  pipelining: false,
  eightBitMime: false,
  smtputf8: false,
  chunking: false,
  binaryMime: false,
  startTls: false,
  dsn: false,
  enhancedStatusCodes: false,
  auth: [],
});

/**
 * Reads the extensions from an EHLO reply (RFC 5321 §4.1.1.1): every line
 * after the first is `keyword *(SP param)`, case-insensitive; the legacy
 * form `AUTH=LOGIN PLAIN` is read as `AUTH LOGIN PLAIN`.
 *
 * @param r The 250 reply to EHLO.
 * @returns What the server offers.
 *
 * @example Keywords in any case, legacy AUTH, SIZE with no value
 * ```ts
 * import { parseEhlo } from "./client_session.ts";
 * const ext = parseEhlo({
 *   code: 250,
 *   lines: ["mx.example.test greets us", "size", "Pipelining", "AUTH=LOGIN", "AUTH PLAIN LOGIN"],
 * });
 * console.log(ext.size, ext.pipelining, ext.auth); // 0 true ["LOGIN", "PLAIN"]
 * ```
 */
export function parseEhlo(r: Reply): Extensions {
  const keywords = new Map<string, string[]>();
  for (const line of r.lines.slice(1)) {
    const m = /^([A-Za-z0-9][A-Za-z0-9-]*)(?:[ =](.*))?$/.exec(line.trim());
    if (m === null) continue; // not a keyword line: ignored, as §4.1.1.1 leaves no other use
    const keyword = m[1]!.toUpperCase();
    const params = (m[2] ?? "").split(/\s+/).filter((p) => p !== "");
    const known = keywords.get(keyword);
    if (known === undefined) keywords.set(keyword, params);
    else for (const p of params) if (!known.includes(p)) known.push(p);
  }
  const sizeParam = keywords.get("SIZE")?.[0];
  return {
    keywords,
    // RFC 1870 §4: SIZE with no value (or 0) means no fixed limit.
    size: keywords.has("SIZE")
      ? (sizeParam !== undefined && /^[0-9]{1,15}$/.test(sizeParam) ? Number(sizeParam) : 0)
      : null,
    pipelining: keywords.has("PIPELINING"),
    eightBitMime: keywords.has("8BITMIME"),
    smtputf8: keywords.has("SMTPUTF8"),
    chunking: keywords.has("CHUNKING"),
    binaryMime: keywords.has("BINARYMIME"),
    startTls: keywords.has("STARTTLS"),
    dsn: keywords.has("DSN"),
    enhancedStatusCodes: keywords.has("ENHANCEDSTATUSCODES"),
    auth: (keywords.get("AUTH") ?? []).map((p) => p.toUpperCase())
      .filter((p, i, all) => all.indexOf(p) === i),
  };
}

/**
 * Encodes text as xtext (RFC 3461 §4): `+` and `=`, controls, space and
 * anything beyond ASCII become `+XX` (hex of each UTF-8 octet).
 *
 * @param value The text.
 * @returns The xtext.
 *
 * @example
 * ```ts
 * import { xtext } from "./client_session.ts";
 * console.log(xtext("bob+tag@example.test")); // "bob+2Btag@example.test"
 * ```
 */
export function xtext(value: string): string {
  let out = "";
  for (const b of encoder.encode(value)) {
    out += b >= 0x21 && b <= 0x7e && b !== 0x2b && b !== 0x3d
      ? String.fromCharCode(b)
      : "+" + b.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

/** Keeps xtext as it is, but escapes what cannot stand in an esmtp-value (RFC 5321 §4.1.2). */
function asEsmtpValue(value: string): string {
  let out = "";
  for (const b of encoder.encode(value)) {
    out += b >= 0x21 && b <= 0x7e && b !== 0x3d
      ? String.fromCharCode(b)
      : "+" + b.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

// Replies the client makes up itself, for failures known before MAIL.
const LOCAL = {
  tooBig: (size: number, limit: number) =>
    reply(
      552,
      "5.3.4",
      `Message size ${size} exceeds the fixed maximum message size ${limit} of the receiving server (RFC 1870)`,
    ),
  needs8bit: reply(
    554,
    "5.6.3",
    "Message has 8-bit content but the receiving server does not offer 8BITMIME, and it is not converted (RFC 6152)",
  ),
  needsBinary: reply(
    554,
    "5.6.3",
    "Message has binary content but the receiving server does not offer BINARYMIME and CHUNKING (RFC 3030)",
  ),
  needsSmtputf8: reply(
    553,
    "5.6.7",
    "Message needs SMTPUTF8 but the receiving server does not offer it, and there is no downgrade (RFC 6531 §3.2)",
  ),
  badSender: (why: string) => reply(553, "5.1.7", `Cannot send from this reverse-path: ${why}`),
  badRecipient: (why: string) => reply(553, "5.1.3", `Cannot send to this forward-path: ${why}`),
  badParameter: (what: string) => reply(501, "5.5.4", `Cannot send this DSN parameter: ${what}`),
  incomplete: reply(451, "4.4.2", "Transaction did not complete"),
};

const encoder = new TextEncoder();
const CRLF = "\r\n";

/** The step of an AUTH exchange we cancelled with "*". */
const CANCELLED = -1;

/** Base64 of the UTF-8 octets of a string (RFC 4954 §4: SASL responses are base64). */
function base64(text: string): string {
  let binary = "";
  for (const b of encoder.encode(text)) binary += String.fromCharCode(b);
  return btoa(binary);
}
const NOTIFY_VALUES = new Set(["NEVER", "SUCCESS", "FAILURE", "DELAY"]);

type Expect =
  | { readonly kind: "greeting" | "EHLO" | "HELO" | "STARTTLS" | "RSET" | "MAIL" | "QUIT" }
  | { readonly kind: "AUTH"; readonly mechanism: "PLAIN" | "LOGIN"; readonly step: number }
  | { readonly kind: "RCPT"; readonly index: number }
  | { readonly kind: "DATA" }
  | { readonly kind: "BDAT"; readonly last: boolean }
  | { readonly kind: "." };

interface Transaction {
  readonly message: OutgoingMessage;
  readonly mailLine: string;
  readonly rcptLines: readonly string[];
  readonly mode: "data" | "bdat" | "binary";
  readonly pipelined: boolean;
  resetPending: boolean; // an RSET goes first
  mailSent: boolean;
  rcptSent: number;
  dataSent: boolean;
  mailReply: Reply | null;
  readonly rcptReplies: (Reply | null)[];
  accepted: number;
  /** The refusal of DATA or a BDAT chunk, or a 421. */
  failure: Reply | null;
  /** The reply to the end of the content. */
  final: Reply | null;
  /** The content has been ended by the caller. */
  contentEnded: boolean;
  encoder: DataEncoder | null;
  /** BDAT: the chunk being filled, and complete chunks waiting to go (without PIPELINING). */
  chunk: Uint8Array;
  fill: number;
  readonly queued: { bytes: Uint8Array; last: boolean }[];
  /** BDAT commands sent whose replies have not come. */
  outstanding: number;
}

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

  /**
   * Makes a session for one connection; it waits for the server's greeting.
   *
   * @param options Our name, and how to send content.
   */
  constructor(options: ClientSessionOptions) {
    this.#hostname = options.hostname;
    this.#chunkSize = Math.max(1, options.chunkSize ?? 65536);
    this.#useChunking = options.useChunking ?? true;
    this.#usePipelining = options.usePipelining ?? true;
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
    this.#send([`EHLO ${this.#hostname}`], [{ kind: "EHLO" }]);
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
    const refusal = this.#checkMessage(message, ext);
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
      this.#expect.push({ kind: "." });
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
    switch (e.kind) {
      case "greeting":
        this.#greeting = r;
        if (r.code === 220) {
          this.#state = "hello";
          this.#send([`EHLO ${this.#hostname}`], [{ kind: "EHLO" }]);
        } else {
          // RFC 5321 §3.1: 554 instead of 220 means "not here"; QUIT, then report.
          this.#refuse(r);
        }
        return;
      case "EHLO":
        if (r.code === 250) {
          this.#isExtended = true;
          this.#ready(parseEhlo(r));
        } else if (r.code === 500 || r.code === 502) {
          // RFC 5321 §3.2: a server without EHLO; fall back to HELO (docs/smtp-pitfalls.md: EHLO, then HELO).
          this.#send([`HELO ${this.#hostname}`], [{ kind: "HELO" }]);
        } else {
          this.#refuse(r);
        }
        return;
      case "HELO":
        if (r.code === 250) this.#ready(NO_EXTENSIONS);
        else this.#refuse(r);
        return;
      case "STARTTLS":
        if (r.code === 220) {
          // RFC 3207 §4.2: forget the plaintext, bytes included (response injection).
          this.#state = "handshake";
          this.#emit({ type: "starttls", discarded: this.#parser.clear() });
        } else {
          this.#state = "ready";
          this.#emit({ type: "starttls-refused", reply: r });
        }
        return;
      case "AUTH":
        this.#authReply(e, r);
        return;
      case "QUIT":
        this.#close();
        return;
      default:
        this.#transactionReply(e, r);
    }
  }

  /** RFC 4954 §4: 334 asks for the next response; anything else ends the exchange. */
  #authReply(e: Expect & { kind: "AUTH" }, r: Reply): void {
    const credentials = this.#credentials;
    if (r.code === 334 && credentials !== null) {
      const next = e.mechanism === "LOGIN" && e.step === 0
        ? credentials.username
        : e.mechanism === "LOGIN" && e.step === 1
        ? credentials.password
        : null;
      if (next !== null) {
        this.#expect.push({ kind: "AUTH", mechanism: e.mechanism, step: e.step + 1 });
        this.#emit({
          type: "send",
          bytes: encoder.encode(base64(next) + CRLF),
          commands: ["****"],
        });
        return;
      }
      if (e.step !== CANCELLED) {
        // A challenge we have no answer for: "*" cancels (RFC 4954 §4), the server then says 501.
        this.#send(["*"], [{ kind: "AUTH", mechanism: e.mechanism, step: CANCELLED }]);
        return;
      }
      this.#protocolError("334 after the AUTH exchange was cancelled");
      return;
    }
    this.#credentials = null;
    this.#state = "ready";
    if (r.code === 235) this.#isAuthenticated = true;
    this.#emit({ type: "auth", reply: r });
  }

  #transactionReply(e: Expect, r: Reply): void {
    const t = this.#transaction;
    if (t === null) {
      this.#protocolError(`Unexpected reply ${r.code} outside a transaction`);
      return;
    }
    switch (e.kind) {
      case "RSET":
        // A failed RSET shows in the MAIL reply that follows; nothing else to do.
        break;
      case "MAIL":
        t.mailReply = r;
        break;
      case "RCPT":
        t.rcptReplies[e.index] = r;
        if (isPositive(r)) t.accepted++;
        break;
      case "DATA":
        if (r.code !== 354) {
          t.failure = r;
          if (t.mailReply !== null && isPositive(t.mailReply)) this.#needsReset = true;
        } else if (t.accepted > 0 && t.mailReply !== null && isPositive(t.mailReply)) {
          this.#state = "data";
          t.encoder = new DataEncoder({ dotStuffing: true });
          this.#emit({ type: "content" });
        } else {
          // RFC 2920 §3.1: DATA accepted with no valid recipient; a lone dot ends it.
          this.#state = "final";
          t.contentEnded = true;
          this.#send(["."], [{ kind: "." }], ".");
        }
        break;
      case "BDAT":
        t.outstanding--;
        if (e.last || !isPositive(r)) {
          if (e.last) t.final ??= r;
          if (!isPositive(r)) {
            // RFC 3030 §2: after a refused chunk, send no more; RSET before the next MAIL.
            t.failure ??= r;
            t.queued.length = 0;
            this.#needsReset = true;
            if (this.#state === "bdat") this.#state = "final";
          }
        } else {
          this.#sendChunks(t);
        }
        break;
      case ".":
        t.final = r;
        break;
    }
    if (this.#expect.length === 0 && this.#state === "envelope") this.#advance(t);
    else if (this.#expect.length === 0 && this.#state === "final") this.#finish(t);
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
      else result = (rcpt === null ? t.failure : end) ?? LOCAL.incomplete;
      return { address: r.address, reply: result };
    });
    this.#transaction = null;
    if (this.#state !== "closed") this.#state = "ready";
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

  /** The failure known before MAIL, if any (RFC 1870, RFC 6152, RFC 3030, RFC 6531). */
  #checkMessage(m: OutgoingMessage, ext: Extensions): Reply | null {
    if (m.reversePath !== "") {
      try {
        parseMailbox(m.reversePath);
      } catch (error: unknown) {
        if (error instanceof PathSyntaxError) return LOCAL.badSender(error.message);
        throw error;
      }
    }
    const needsUtf8 = m.smtputf8 || isNonAscii(m.reversePath) ||
      m.recipients.some((r) => isNonAscii(r.address));
    if (needsUtf8 && !ext.smtputf8) return LOCAL.needsSmtputf8;
    if (m.body === "8BITMIME" && !ext.eightBitMime) return LOCAL.needs8bit;
    if (m.body === "BINARYMIME" && !(ext.binaryMime && ext.chunking && this.#useChunking)) {
      return LOCAL.needsBinary;
    }
    // RFC 1870 §6: do not send what the server has said it will refuse.
    if (ext.size !== null && ext.size > 0 && m.size > ext.size) {
      return LOCAL.tooBig(m.size, ext.size);
    }
    return null;
  }
}

/** `MAIL FROM:<path>` with the parameters the server offers (RFC 5321 §4.1.1.2). */
function mailLine(m: OutgoingMessage, ext: Extensions): string {
  let line = `MAIL FROM:<${m.reversePath}>`;
  if (ext.size !== null) line += ` SIZE=${m.size}`; // RFC 1870 §6
  if (m.body === "8BITMIME") line += " BODY=8BITMIME"; // RFC 6152 §2
  if (m.body === "BINARYMIME") line += " BODY=BINARYMIME"; // RFC 3030 §3
  const needsUtf8 = m.smtputf8 || isNonAscii(m.reversePath) ||
    m.recipients.some((r) => isNonAscii(r.address));
  if (needsUtf8) line += " SMTPUTF8"; // RFC 6531 §3.4
  if (ext.dsn) {
    // RFC 3461 §4.3, §4.4: only to a server that offers DSN.
    if (m.ret !== undefined) line += ` RET=${m.ret}`;
    if (m.envid !== undefined && m.envid !== "") line += ` ENVID=${asEsmtpValue(m.envid)}`;
  }
  return line;
}

/** `RCPT TO:<path>` with the DSN parameters when offered, or the reply refusing it here. */
function rcptLine(r: OutgoingRecipient, ext: Extensions): string | Reply {
  if (!/^postmaster$/i.test(r.address)) {
    try {
      parseMailbox(r.address);
    } catch (error: unknown) {
      if (error instanceof PathSyntaxError) return LOCAL.badRecipient(error.message);
      throw error;
    }
  }
  let line = `RCPT TO:<${r.address}>`;
  if (!ext.dsn) return line;
  if (r.notify !== undefined && r.notify.length > 0) {
    // RFC 3461 §4.1: NEVER, or any of SUCCESS, FAILURE, DELAY.
    const values = r.notify.map((v) => v.toUpperCase());
    const valid = values.every((v) => NOTIFY_VALUES.has(v)) &&
      (!values.includes("NEVER") || values.length === 1);
    if (!valid) return LOCAL.badParameter(`NOTIFY=${values.join(",")}`);
    line += ` NOTIFY=${values.join(",")}`;
  }
  if (r.orcpt !== undefined && r.orcpt !== "") {
    // RFC 3461 §4.2: ORCPT=addr-type;xtext
    line += ` ORCPT=${r.orcpt.includes(";") ? asEsmtpValue(r.orcpt) : "rfc822;" + xtext(r.orcpt)}`;
  }
  return line;
}
