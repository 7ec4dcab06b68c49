/**
 * The server side of an SMTP dialogue (RFC 5321), as a state machine that
 * does no I/O.
 *
 * ## The dialogue
 *
 * A client connects and waits for the greeting, `220 <hostname> ESMTP`
 * (§4.3.1). It introduces itself with `EHLO` (or the older `HELO`), and the
 * server answers with the extensions it supports (§4.1.1.1). A mail
 * transaction (§3.3) is then three steps:
 *
 * 1. `MAIL FROM:<reverse-path>` starts it and says where failures go;
 * 2. `RCPT TO:<forward-path>`, once per recipient, each accepted or refused
 *    on its own;
 * 3. `DATA`, answered `354`, then the content, ended by a line holding a
 *    single dot; or `BDAT <size> [LAST]` chunks (RFC 3030), which need no
 *    end marker because each says how long it is.
 *
 * The reply to the end of the content is the one that matters: `250` means
 * the server has taken responsibility for the message (§6.1). `RSET` drops
 * a transaction, `QUIT` ends the session. With PIPELINING (RFC 2920) a
 * client sends several commands at once; the server answers them in order.
 *
 * ## States
 *
 * ```
 *  greeting ──start()──▶ connected ──EHLO/HELO──▶ ready ──MAIL──▶ mail ──RCPT──▶ rcpt
 *                                                   ▲                              │
 *                                                   │        DATA ──▶ data ────────┤
 *                                                   └─ end of data / RSET ◀─ BDAT ─┘
 * ```
 *
 * Which command is legal in which state lives in {@linkcode SEQUENCE} (§4.1.4).
 *
 * ## STARTTLS and AUTH
 *
 * `STARTTLS` (RFC 3207) is answered `220`, then the caller runs the TLS
 * handshake and the session starts over (§4.2): the client must say EHLO
 * again, and everything learnt before (EHLO name, transaction, AUTH) is
 * forgotten. Plaintext the client pipelined after STARTTLS is thrown away,
 * never read as commands inside TLS: answering it is the command injection
 * of CVE-2011-0411. After TLS, STARTTLS is no longer advertised.
 *
 * `AUTH` (RFC 4954) runs a SASL exchange (`sasl.ts`): `334` challenges and
 * the client's base64 responses, which are never reported as commands. The
 * session does not check passwords: it asks its caller, which may take its
 * time (a growing delay after failures belongs to the caller, not here). AUTH
 * is offered only on an encrypted connection unless told otherwise (RFC 4954
 * §4, RFC 8314 §3), only outside a transaction, and only once.
 *
 * ## Events and questions
 *
 * Bytes go in through {@linkcode ServerSession.receive}; what happened comes
 * out as {@linkcode SessionEvent}s: bytes to send, content to store, and
 * questions only the caller can answer (accept this sender? this recipient?
 * open the store? take this message?). After a question the session stops
 * reading until {@linkcode ServerSession.answer} gives the reply; input that
 * arrives meanwhile is kept, in order (RFC 2920 §3.2: a server must not
 * discard it). Replies are batched and flushed before the session waits for
 * anything (RFC 2920 §3.2).
 *
 * @module
 */

import { type Command, type Parameters, parseCommand } from "./command.ts";
import { DataDecoder } from "./data_decoder.ts";
import type { BodyType, DsnNotify, Envelope, RecipientDsn } from "./envelope.ts";
import { parseEnvid, parseNotify, parseOrcpt } from "./dsn_parameters.ts";
import { formatMailbox, isNonAscii } from "./path.ts";
import { formatReply, isPositive, REPLIES, type Reply, reply } from "./reply.ts";
import { heloNameProblem } from "./helo.ts";
import {
  parseSaslMechanism,
  type SaslCredentials,
  SaslExchange,
  type SaslMechanism,
  type SaslStep,
} from "./sasl.ts";

/** Where the session stands. */
export type SessionState =
  | "greeting" // before the banner
  | "connected" // banner sent, no EHLO/HELO yet
  | "ready" // greeted, no transaction
  | "mail" // MAIL accepted, no recipient yet
  | "rcpt" // at least one recipient accepted
  | "data" // reading content after DATA
  | "bdat" // between or inside BDAT chunks
  | "closed";

/** What the session reports. Questions (`sender`, `recipient`, `open`, `message`, `auth`) wait for {@linkcode ServerSession.answer}. */
export type SessionEvent =
  /**
   * Write these bytes to the client; `replies` are the same, parsed, for
   * traces, and `contexts[i]` says what `replies[i]` answers, for logs.
   */
  | {
    readonly type: "send";
    readonly bytes: Uint8Array;
    readonly replies: readonly Reply[];
    readonly contexts: readonly ReplyContext[];
  }
  /** A command line was read (for traces; AUTH lines are never reported). */
  | { readonly type: "command"; readonly line: string }
  /** Question: accept this reverse-path (`""` is `<>`)? */
  | { readonly type: "sender"; readonly reversePath: string; readonly parameters: Parameters }
  /** Question: accept this forward-path? (`"Postmaster"` alone for RFC 5321 §4.5.1.) */
  | { readonly type: "recipient"; readonly forwardPath: string; readonly parameters: Parameters }
  /** Question: content is about to come; open the store (a positive reply lets it come). */
  | { readonly type: "open"; readonly envelope: Envelope }
  /** Decoded message content, in order; store it. */
  | { readonly type: "content"; readonly chunk: Uint8Array }
  /** Question: the content is complete; take the message? The reply is the final one. */
  | { readonly type: "message"; readonly envelope: Envelope }
  /** Throw away the content stored for this transaction: it will not be committed. */
  | { readonly type: "discard"; readonly reason: string }
  /**
   * Question: are these credentials right? A 2yz answer (`235 2.7.0`)
   * authenticates the session (RFC 4954 §4). Holds a password: never log it.
   */
  | { readonly type: "auth"; readonly credentials: SaslCredentials }
  /**
   * The `220` to STARTTLS is in the `send` before this event: once it is
   * written, run the server side of the TLS handshake, and from then on feed
   * only decrypted bytes (RFC 3207 §4). `discarded` octets of plaintext that
   * followed STARTTLS were thrown away; drop anything more that arrives in
   * plaintext too.
   */
  | { readonly type: "starttls"; readonly discarded: number }
  /** Close the connection (after writing what was sent). */
  | { readonly type: "close" };

/**
 * The step of the dialogue a reply answers: `connect` (the banner), `helo`
 * (EHLO or HELO), `starttls`, `auth` (AUTH and its exchange), `mail`, `rcpt`,
 * `data` (the DATA command), `bdat` (a BDAT chunk), `end-of-data` (the final
 * reply to the content, DATA or BDAT LAST), `command` (any other line, or one
 * that could not be read), `session` (a close from outside: a timeout, a
 * shutdown, an early talker).
 */
export type ReplyStage =
  | "connect"
  | "helo"
  | "starttls"
  | "auth"
  | "mail"
  | "rcpt"
  | "data"
  | "bdat"
  | "end-of-data"
  | "command"
  | "session";

/** What one reply answers, for logs: the step, and the envelope as it stood. */
export interface ReplyContext {
  /** The step answered. */
  readonly stage: ReplyStage;
  /** The EHLO/HELO name given so far, `""` before any. */
  readonly clientName: string;
  /**
   * The reverse-path of the MAIL answered or of the transaction (`""` is
   * `<>`), `null` outside a transaction.
   */
  readonly reversePath: string | null;
  /** The forward-path of the RCPT answered; at DATA, BDAT and the end of data, the accepted ones. */
  readonly forwardPaths: readonly string[];
}

const NO_PATHS: readonly string[] = Object.freeze([]);

/** Options of {@linkcode ServerSession}. */
export interface ServerSessionOptions {
  /** Our name, for the banner and EHLO. */
  hostname: string;
  /** Largest message in octets, advertised as SIZE (RFC 1870); 0 for no limit. @default {26214400} */
  maxMessageSize?: number;
  /** Recipients per transaction (RFC 5321 §4.5.3.1.8: at least 100). @default {100} */
  maxRecipients?: number;
  /**
   * Longest command line, CRLF included. RFC 5321 §4.5.3.1.4 sets 512 and
   * lets extensions raise it; parameters such as SIZE, BODY, SMTPUTF8 and the
   * DSN ones do. @default {2048}
   */
  maxCommandLength?: number;
  /** RFC 5321 §6.3: a message with more `Received:` fields than this is refused as a loop. @default {100} */
  maxReceived?: number;
  /** Errors (5yz replies to commands) after which the session is closed with 421. @default {20} */
  maxErrors?: number;
  /** The banner text after the hostname. @default {"ESMTP"} */
  banner?: string;
  /**
   * Offer STARTTLS (RFC 3207): the caller can upgrade the connection when the
   * session reports `starttls`. @default {false}
   */
  startTls?: boolean;
  /** The connection is encrypted from its start (implicit TLS, RFC 8314 §3). @default {false} */
  implicitTls?: boolean;
  /** SASL mechanisms offered by AUTH (RFC 4954), in order; none: AUTH is not offered. @default {[]} */
  authMechanisms?: readonly SaslMechanism[];
  /** Offer and accept AUTH only on an encrypted connection (RFC 4954 §4, RFC 8314 §3). @default {true} */
  authRequiresTls?: boolean;
  /** Longest AUTH command or response line, CRLF included (RFC 4954 §4: 12,288). @default {12288} */
  maxAuthLineLength?: number;
}

/**
 * RFC 5321 §4.1.4: which states each command is legal in, and the reply
 * otherwise. Commands not listed are legal in every state.
 */
export const SEQUENCE: Partial<
  Record<Command["verb"], { allowed: readonly SessionState[]; otherwise: Reply }>
> = {
  MAIL: {
    allowed: ["ready"],
    otherwise: REPLIES.badSequence("Send EHLO or HELO first, or finish this transaction (RSET)"),
  },
  RCPT: { allowed: ["mail", "rcpt"], otherwise: REPLIES.badSequence("Need MAIL before RCPT") },
  DATA: { allowed: ["rcpt"], otherwise: REPLIES.badSequence("Need RCPT before DATA") },
  BDAT: { allowed: ["rcpt", "bdat"], otherwise: REPLIES.badSequence("Need RCPT before BDAT") },
  // RFC 3207 §4: STARTTLS is an EHLO extension; it resets the session, so not inside a transaction.
  STARTTLS: {
    allowed: ["ready"],
    otherwise: REPLIES.badSequence("STARTTLS needs EHLO first, and no transaction in progress"),
  },
  // RFC 4954 §4: "The AUTH command is not permitted during a mail transaction."
  AUTH: {
    allowed: ["ready"],
    otherwise: REPLIES.badSequence("AUTH needs EHLO first, and no transaction in progress"),
  },
};

const encoder = new TextEncoder();
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** `AUTH PLAIN dGVzdA==` → `AUTH PLAIN ****`: the mechanism stays, the secret goes. */
function maskAuth(line: string): string {
  const parts = line.split(" ").filter((p) => p !== "");
  return parts.length > 2 ? `${parts[0]} ${parts[1]} ****` : parts.join(" ");
}

interface Transaction {
  reversePath: string;
  body: BodyType;
  smtputf8: boolean;
  declaredSize?: number;
  ret?: "FULL" | "HDRS";
  envid?: string;
  forwardPaths: string[];
  /** RFC 3461 parameters of each accepted RCPT, in order. */
  recipientDsn: RecipientDsn[];
  /** Content is being stored (the "open" question was answered yes). */
  opened: boolean;
  decoder?: DataDecoder;
  /** Content was thrown away; the reply at the end is this. */
  refusal?: Reply;
  /** A BDAT transaction whose chunks are all refused with this. */
  failed?: Reply;
}

type Pending =
  | {
    kind: "sender";
    reversePath: string;
    parameters: Parameters;
    body: BodyType;
    smtputf8: boolean;
    size?: number;
    ret?: "FULL" | "HDRS";
    envid?: string;
  }
  | { kind: "recipient"; forwardPath: string; dsn: RecipientDsn }
  | { kind: "open-data" }
  | { kind: "open-bdat"; size: number; last: boolean }
  | { kind: "message" }
  | { kind: "auth"; username: string };

/**
 * One SMTP server session. Feed it the client's bytes; send what it says to
 * send; answer its questions.
 *
 * @example A whole transaction in memory
 * ```ts
 * import { ServerSession } from "./server_session.ts";
 * import { REPLIES, queuedReply } from "./reply.ts";
 *
 * const session = new ServerSession({ hostname: "mx.example.test" });
 * const out: string[] = [];
 * const run = (events: ReturnType<ServerSession["receive"]>): void => {
 *   for (const e of events) {
 *     if (e.type === "send") out.push(new TextDecoder().decode(e.bytes));
 *     else if (e.type === "sender") run(session.answer(REPLIES.senderOk));
 *     else if (e.type === "recipient") run(session.answer(REPLIES.recipientOk));
 *     else if (e.type === "open") run(session.answer(REPLIES.startData));
 *     else if (e.type === "message") run(session.answer(queuedReply("4F2A9C")));
 *   }
 * };
 * run(session.start());
 * run(session.receive(new TextEncoder().encode(
 *   "EHLO client.test\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n",
 * )));
 * run(session.receive(new TextEncoder().encode("Subject: hi\r\n\r\nHello\r\n.\r\nQUIT\r\n")));
 * console.log(out.at(-2)); // "250 2.0.0 Ok: queued as 4F2A9C\r\n"
 * ```
 */
export class ServerSession {
  #state: SessionState = "greeting";
  #hostname: string;
  #maxSize: number;
  #maxRecipients: number;
  #maxLine: number;
  #maxReceived: number;
  #maxErrors: number;
  #banner: string;
  #canStartTls: boolean;
  #isTls: boolean;
  #mechanisms: readonly SaslMechanism[];
  #authRequiresTls: boolean;
  #maxAuthLine: number;
  #authenticatedAs: string | null = null;
  #sasl: SaslExchange | null = null; // an AUTH exchange waiting for the client's response
  #extended = false; // EHLO (not HELO): enhanced status codes in replies (RFC 2034)
  #clientName = "";
  #errors = 0;
  #transaction: Transaction | null = null;
  #pending: Pending | null = null;
  #input: Uint8Array = new Uint8Array(0);
  #offset = 0;
  #discardingLine: "command" | "auth" | null = null; // inside an over-long line
  #skip = 0; // BDAT octets to read and throw away
  #bdat: { remaining: number; last: boolean } | null = null;
  #out: Reply[] = [];
  #outContexts: ReplyContext[] = [];
  /** What the replies queued from now on answer; made on first use after each change. */
  #context: ReplyContext | null = null;
  #stage: ReplyStage = "connect";
  #about: { reversePath: string | null; forwardPaths: readonly string[] } | null = null;
  #outText = "";
  #events: SessionEvent[] = [];
  #stopping = false;

  /**
   * Makes a session for one connection; {@linkcode ServerSession.start} sends the greeting.
   *
   * @param options Limits and our name.
   */
  constructor(options: ServerSessionOptions) {
    this.#hostname = options.hostname;
    this.#maxSize = options.maxMessageSize ?? 26214400;
    this.#maxRecipients = options.maxRecipients ?? 100;
    this.#maxLine = options.maxCommandLength ?? 2048;
    this.#maxReceived = options.maxReceived ?? 100;
    this.#maxErrors = options.maxErrors ?? 20;
    this.#banner = options.banner ?? "ESMTP";
    this.#isTls = options.implicitTls ?? false;
    this.#canStartTls = (options.startTls ?? false) && !this.#isTls;
    this.#mechanisms = options.authMechanisms ?? [];
    this.#authRequiresTls = options.authRequiresTls ?? true;
    this.#maxAuthLine = options.maxAuthLineLength ?? 12288;
  }

  /** Where the session stands. */
  get state(): SessionState {
    return this.#state;
  }

  /** The name the client gave in EHLO or HELO, or `""`. */
  get clientName(): string {
    return this.#clientName;
  }

  /** Whether the client greeted with EHLO (so ESMTP applies). */
  get isExtended(): boolean {
    return this.#extended;
  }

  /** Whether the connection is encrypted (implicit TLS, or after STARTTLS). */
  get isTls(): boolean {
    return this.#isTls;
  }

  /** The user name that AUTH accepted, as the client wrote it, or `null`. */
  get authenticatedAs(): string | null {
    return this.#authenticatedAs;
  }

  /**
   * Octets received and not yet processed. Bounded by the longest line (an
   * over-long line is read past, not kept, so a client dribbling bytes cannot
   * grow it), as long as the caller answers a question before it feeds more
   * bytes, as `SmtpServer` does.
   */
  get bufferedOctets(): number {
    return this.#input.length - this.#offset;
  }

  /** Whether a question waits for {@linkcode ServerSession.answer}. */
  get isWaiting(): boolean {
    return this.#pending !== null;
  }

  /** Whether the session is between transactions and not waiting: a safe point to close. */
  get isIdle(): boolean {
    return this.#pending === null && (this.#state === "connected" || this.#state === "ready");
  }

  /**
   * Sends the greeting (RFC 5321 §4.3.1).
   *
   * @returns The events: the 220 banner.
   */
  start(): SessionEvent[] {
    if (this.#state !== "greeting") return [];
    this.#state = "connected";
    if (this.#stopping) return this.close(REPLIES.shuttingDown);
    this.#reply(reply(220, undefined, `${this.#hostname} ${this.#banner}`));
    return this.#drain();
  }

  /**
   * Takes bytes from the client. Bytes that come before
   * {@linkcode ServerSession.start} come from an early talker: the session
   * closes with `421 4.7.0`.
   *
   * @param bytes What arrived.
   * @returns What to do about them.
   */
  receive(bytes: Uint8Array): SessionEvent[] {
    if (this.#state === "closed" || bytes.length === 0) return [];
    if (this.#state === "greeting") {
      // RFC 5321 §3.1, §4.3.1: a client waits for the greeting. One that talks
      // first is not speaking SMTP (it is often a spam bot that skips waiting).
      this.#state = "connected";
      return this.close(REPLIES.earlyTalker);
    }
    if (this.#offset >= this.#input.length) {
      this.#input = bytes;
    } else {
      const rest = this.#input.subarray(this.#offset);
      const joined = new Uint8Array(rest.length + bytes.length);
      joined.set(rest);
      joined.set(bytes, rest.length);
      this.#input = joined;
    }
    this.#offset = 0;
    this.#run();
    return this.#drain();
  }

  /**
   * Answers the pending question.
   *
   * @param r The reply: positive to accept, or the refusal to send.
   * @returns What to do next.
   */
  answer(r: Reply): SessionEvent[] {
    const pending = this.#pending;
    if (pending === null) throw new Error("Cannot answer: no question is pending");
    this.#pending = null;
    const ok = isPositive(r) || r.code === 354;
    const t = this.#transaction;
    if (r.code === 421) {
      // RFC 5321 §3.8: 421 closes the connection, whatever the question was.
      if (pending.kind === "message" && t) t.opened = false; // the caller dealt with the store
      this.#close(r);
      return this.#drain();
    }
    switch (pending.kind) {
      case "sender":
        if (ok) {
          this.#transaction = {
            reversePath: pending.reversePath,
            body: pending.body,
            smtputf8: pending.smtputf8,
            ...(pending.size === undefined ? {} : { declaredSize: pending.size }),
            ...(pending.ret === undefined ? {} : { ret: pending.ret }),
            ...(pending.envid === undefined ? {} : { envid: pending.envid }),
            forwardPaths: [],
            recipientDsn: [],
            opened: false,
          };
          this.#state = "mail";
        }
        this.#reply(r);
        break;
      case "recipient":
        if (ok && t) {
          t.forwardPaths.push(pending.forwardPath);
          t.recipientDsn.push(pending.dsn);
          this.#state = "rcpt";
        }
        this.#reply(r);
        break;
      case "open-data":
        if (ok && t) {
          t.opened = true;
          t.decoder = new DataDecoder({ dotStuffed: true });
          this.#state = "data";
          this.#reply(REPLIES.startData);
        } else {
          this.#reply(r);
        }
        break;
      case "open-bdat":
        if (ok && t) {
          t.opened = true;
          t.decoder = new DataDecoder({ dotStuffed: false });
        } else if (t) {
          t.failed = r;
        }
        this.#state = "bdat";
        this.#bdat = { remaining: pending.size, last: pending.last };
        break;
      case "message":
        if (t) t.opened = false; // committed or refused by the caller: nothing to discard
        this.#endTransaction();
        this.#reply(r);
        break;
      case "auth":
        if (ok) {
          this.#authenticatedAs = pending.username;
          this.#reply(r);
        } else {
          this.#error(r); // counts toward maxErrors: guessing passwords is an error
        }
        break;
    }
    if (this.#state !== "closed") this.#run();
    return this.#drain();
  }

  /**
   * Closes the session with a reply, such as 421 on a timeout or shutdown
   * (RFC 5321 §3.8: send 421 before closing).
   *
   * @param r The last reply.
   * @returns The events: the reply, a discard if content was being stored, and close.
   */
  close(r: Reply): SessionEvent[] {
    this.#answering("session");
    this.#close(r);
    return this.#drain();
  }

  #close(r: Reply): void {
    if (this.#state === "closed") return;
    this.#discardOpen("connection closed");
    this.#reply(r);
    this.#state = "closed";
    this.#pending = null;
    this.#emit({ type: "close" });
  }

  /**
   * From now on, every command is answered `421 4.3.2` and the session ends
   * (a graceful shutdown). A transaction in its data phase may finish first.
   *
   * @returns The events: if the session is idle, the 421 and a close.
   */
  stop(): SessionEvent[] {
    this.#stopping = true;
    if (this.isIdle && this.#offset >= this.#input.length) return this.close(REPLIES.shuttingDown);
    return [];
  }

  // --- input loop -----------------------------------------------------------

  #run(): void {
    while (
      this.#pending === null && this.#state !== "closed" && this.#offset < this.#input.length
    ) {
      if (this.#skip > 0) {
        const n = Math.min(this.#skip, this.#input.length - this.#offset);
        this.#skip -= n;
        this.#offset += n;
        if (this.#skip === 0 && this.#bdatAfterSkip) {
          this.#reply(this.#bdatAfterSkip);
          this.#bdatAfterSkip = null;
        }
        continue;
      }
      if (this.#state === "data") {
        this.#readData();
        continue;
      }
      if (this.#state === "bdat" && this.#bdat !== null) {
        this.#readChunk();
        continue;
      }
      if (!this.#readLine()) break;
    }
    if (this.#offset >= this.#input.length) {
      this.#input = new Uint8Array(0);
      this.#offset = 0;
    }
  }

  #bdatAfterSkip: Reply | null = null;

  /**
   * Whether the line starting at `start` belongs to AUTH: a response in an
   * exchange, or an AUTH command, which may carry an initial response.
   */
  #isAuthLine(start: number): boolean {
    if (this.#sasl !== null) return true;
    const input = this.#input;
    if (input.length - start < 5 || input[start + 4] !== 0x20) return false;
    let verb = "";
    for (let i = start; i < start + 4; i++) verb += String.fromCharCode(input[i]! | 0x20);
    return verb === "auth";
  }

  /** Reads one command line; false when a whole line has not arrived yet. */
  #readLine(): boolean {
    const input = this.#input;
    const start = this.#offset;
    const lf = input.indexOf(0x0a, start);
    // RFC 5321 §4.5.3.1.4 for commands; RFC 4954 §4 lets AUTH lines reach 12,288 octets.
    const isAuth = this.#discardingLine === "auth" ||
      (this.#discardingLine === null && this.#isAuthLine(start));
    const limit = isAuth ? this.#maxAuthLine : this.#maxLine;
    if (lf < 0) {
      if (input.length - start > limit) {
        // Read past an over-long line, and answer at its end: memory stays bounded.
        this.#discardingLine ??= isAuth ? "auth" : "command";
        this.#offset = input.length;
      }
      return false;
    }
    this.#offset = lf + 1;
    this.#answering(isAuth ? "auth" : "command");
    // A response to a challenge is this exchange's; any failure below ends it.
    const sasl = this.#sasl;
    this.#sasl = null;
    if (this.#discardingLine !== null || lf + 1 - start > limit) {
      this.#discardingLine = null;
      this.#error(isAuth ? REPLIES.authLineTooLong : REPLIES.lineTooLong);
      return true;
    }
    if (lf === start || input[lf - 1] !== 0x0d) {
      // RFC 5321 §2.3.8: only CRLF ends a line. Stricter than many servers: refused.
      this.#error(reply(500, "5.5.2", "Line must end with CRLF (RFC 5321 §2.3.8)"));
      return true;
    }
    let line: string;
    try {
      line = utf8.decode(input.subarray(start, lf - 1));
    } catch {
      this.#error(
        sasl === null
          ? reply(500, "5.5.2", "Command line is not valid UTF-8")
          : REPLIES.authNotBase64,
      );
      return true;
    }
    if (sasl !== null) {
      // It carries credentials: reported masked, for traces.
      this.#events.push({ type: "command", line: "****" });
      if (this.#stopping) this.#close(REPLIES.shuttingDown);
      else this.#saslStep(sasl, sasl.respond(line));
      return true;
    }
    this.#command(line);
    return true;
  }

  #readData(): void {
    const t = this.#transaction!;
    const decoder = t.decoder!;
    const r = decoder.decode(this.#input, this.#offset, this.#input.length);
    this.#offset += r.consumed;
    this.#takeContent(t, r.content);
    if (r.ended) this.#contentComplete(t);
  }

  #readChunk(): void {
    const t = this.#transaction;
    const bdat = this.#bdat!;
    const n = Math.min(bdat.remaining, this.#input.length - this.#offset);
    if (t && t.failed === undefined && t.decoder) {
      const r = t.decoder.decode(this.#input, this.#offset, this.#offset + n);
      this.#takeContent(t, r.content);
    }
    this.#offset += n;
    bdat.remaining -= n;
    if (bdat.remaining > 0) return;
    this.#bdat = null;
    if (!t) return;
    if (t.failed !== undefined) {
      this.#reply(t.failed);
      return;
    }
    if (bdat.last) {
      t.decoder!.finish();
      this.#contentComplete(t);
    } else if (t.refusal?.code === 552) {
      // RFC 3030 §3: a chunk that takes the message over the limit gets 552.
      t.failed = t.refusal;
      this.#reply(t.refusal);
    } else {
      this.#reply(REPLIES.chunkOk(t.decoder!.size));
    }
  }

  /** Passes content on, unless it is being refused. */
  #takeContent(t: Transaction, chunk: Uint8Array): void {
    const decoder = t.decoder!;
    if (t.refusal === undefined) {
      if (this.#maxSize > 0 && decoder.size > this.#maxSize) {
        this.#refuse(t, REPLIES.messageTooBig, "message too big");
      } else if (decoder.hasBareLineEnding) {
        this.#refuse(t, REPLIES.bareLineEnding, "bare CR or LF in content");
      }
    }
    if (t.refusal === undefined && chunk.length > 0) {
      this.#emit({ type: "content", chunk });
    }
  }

  #refuse(t: Transaction, r: Reply, reason: string): void {
    t.refusal = r;
    if (t.opened) this.#emit({ type: "discard", reason });
  }

  /** The end of the content: refuse it, or ask whether to take it. */
  #contentComplete(t: Transaction): void {
    this.#answering("end-of-data", {
      reversePath: t.reversePath,
      forwardPaths: [...t.forwardPaths],
    });
    const decoder = t.decoder!;
    if (t.refusal === undefined && decoder.receivedCount > this.#maxReceived) {
      this.#refuse(t, REPLIES.loopDetected, "too many Received fields");
    }
    if (t.refusal !== undefined) {
      const r = t.refusal;
      this.#endTransaction();
      this.#error(r);
      return;
    }
    this.#ask({ kind: "message" }, { type: "message", envelope: this.#envelope(t) });
  }

  // --- commands -------------------------------------------------------------

  #command(line: string): void {
    const command = parseCommand(line);
    // AUTH is reported with its initial response masked: it carries credentials.
    this.#events.push({ type: "command", line: command.verb === "AUTH" ? maskAuth(line) : line });
    this.#answeringCommand(command);
    if (this.#stopping) {
      this.#close(REPLIES.shuttingDown);
      return;
    }
    if (command.verb === "INVALID") {
      // A BDAT we cannot parse has no size: nothing can be skipped (RFC 3030 §3).
      this.#error(command.reply);
      return;
    }
    if (command.verb === "UNKNOWN") {
      // RFC 5321 §3.8 / §4.2.4: answer 500 and carry on.
      this.#error(REPLIES.unknownCommand);
      return;
    }
    if (
      (command.verb === "STARTTLS" && !this.#canStartTls) ||
      (command.verb === "AUTH" && this.#mechanisms.length === 0)
    ) {
      // RFC 5321 §4.2.4: 502 for a command we recognize but do not offer here.
      this.#error(REPLIES.notImplemented);
      return;
    }
    const rule = SEQUENCE[command.verb];
    if (rule && !rule.allowed.includes(this.#state)) {
      this.#outOfSequence(command, rule.otherwise);
      return;
    }
    switch (command.verb) {
      case "EHLO":
      case "HELO":
        return this.#hello(command.verb, command.domain);
      case "MAIL":
        return this.#mail(
          command.reversePath === null ? "" : formatMailbox(command.reversePath),
          command.parameters,
        );
      case "RCPT":
        return this.#rcpt(
          command.forwardPath === null ? "Postmaster" : formatMailbox(command.forwardPath),
          command.parameters,
        );
      case "DATA":
        // RFC 5321 §4.1.1.4: the content comes only after our 354.
        this.#ask({ kind: "open-data" }, {
          type: "open",
          envelope: this.#envelope(this.#transaction!),
        });
        return;
      case "BDAT":
        return this.#bdatCommand(command.size, command.last);
      case "RSET":
        // RFC 5321 §4.1.1.5
        this.#endTransaction();
        if (this.#state !== "connected") this.#state = "ready";
        this.#reply(REPLIES.reset);
        return;
      case "NOOP":
        this.#reply(REPLIES.noop);
        return;
      case "HELP":
        this.#reply(REPLIES.help);
        return;
      case "VRFY":
        // RFC 5321 §3.5.3: 252 when we will not verify
        this.#reply(REPLIES.vrfy);
        return;
      case "STARTTLS":
        return this.#startTls();
      case "AUTH":
        return this.#auth(command.argument);
      case "EXPN":
        // RFC 5321 §4.2.4: 502 for a command we recognize but do not offer here.
        this.#error(REPLIES.notImplemented);
        return;
      case "QUIT":
        this.#close(REPLIES.bye);
        return;
    }
  }

  #outOfSequence(command: Command, otherwise: Reply): void {
    if (command.verb === "BDAT") {
      // RFC 3030 §3: even a refused BDAT's octets must be read.
      const r = this.#state === "mail" ? REPLIES.noValidRecipients : otherwise;
      this.#skipThenReply(command.size, r);
      this.#errors++;
      return;
    }
    if (command.verb === "DATA" && this.#state === "mail") {
      // RFC 5321 §3.3: DATA with no valid recipient gets 554 (or 503).
      this.#error(REPLIES.noValidRecipients);
      return;
    }
    if (command.verb === "DATA" && this.#state === "bdat") {
      this.#error(REPLIES.badSequence("DATA cannot follow BDAT in one transaction"));
      return;
    }
    if (command.verb === "MAIL" && this.#state !== "connected") {
      this.#error(REPLIES.badSequence("Nested MAIL command: finish or RSET the transaction first"));
      return;
    }
    this.#error(otherwise);
  }

  #skipThenReply(size: number, r: Reply): void {
    if (size === 0) {
      this.#reply(r);
      return;
    }
    this.#skip = size;
    this.#bdatAfterSkip = r;
  }

  /** RFC 5321 §4.1.1.1 (EHLO/HELO); a repeated greeting resets the transaction (§4.1.4). */
  #hello(verb: "EHLO" | "HELO", domain: string): void {
    const problem = heloNameProblem(domain);
    if (problem !== null) {
      // §4.1.4: after a refused EHLO the server stays in the state it was in,
      // so a transaction and an earlier greeting survive. The name is not
      // echoed: it is what was wrong.
      this.#error(REPLIES.syntax(`${verb} ${problem}`));
      return;
    }
    this.#endTransaction();
    this.#clientName = domain;
    this.#extended = verb === "EHLO";
    this.#state = "ready";
    if (verb === "HELO") {
      // §3.2: never the extended reply to HELO.
      this.#reply(REPLIES.helo(this.#hostname, domain));
      return;
    }
    this.#reply(reply(250, undefined, `${this.#hostname} greets ${domain}`, ...this.extensions()));
  }

  /**
   * The EHLO keywords this session offers (RFC 5321 §4.1.1.1).
   *
   * @returns One string per keyword line.
   */
  extensions(): string[] {
    const keywords = [
      "PIPELINING", // RFC 2920
      `SIZE ${this.#maxSize}`, // RFC 1870
      "8BITMIME", // RFC 6152
      "ENHANCEDSTATUSCODES", // RFC 2034
      "SMTPUTF8", // RFC 6531
      "CHUNKING", // RFC 3030
      "DSN", // RFC 3461
    ];
    // RFC 3207 §4.2: once TLS is up, STARTTLS is no longer offered.
    if (this.#canStartTls && !this.#isTls) keywords.push("STARTTLS");
    if (this.#isAuthOffered()) keywords.push(`AUTH ${this.#mechanisms.join(" ")}`); // RFC 4954 §3
    keywords.push("HELP");
    return keywords;
  }

  /** RFC 4954 §4, RFC 8314 §3: AUTH only where passwords cannot be read off the wire. */
  #isAuthOffered(): boolean {
    return this.#mechanisms.length > 0 && (this.#isTls || !this.#authRequiresTls);
  }

  /**
   * RFC 3207 §4: STARTTLS. The 220 goes out in plaintext; the caller then
   * runs the handshake, and the session starts over (§4.2).
   */
  #startTls(): void {
    if (this.#isTls) return this.#error(REPLIES.tlsAlreadyActive);
    this.#reply(REPLIES.readyForTls);
    // RFC 3207 §4.2: "the server MUST discard any knowledge obtained from the
    // client, such as the argument to the EHLO command".
    this.#endTransaction();
    this.#state = "connected";
    this.#clientName = "";
    this.#extended = false;
    this.#authenticatedAs = null;
    this.#isTls = true;
    // Plaintext pipelined after STARTTLS is dropped, never answered inside TLS
    // (CVE-2011-0411): STARTTLS must be the last command of its group.
    const discarded = this.#input.length - this.#offset;
    this.#input = new Uint8Array(0);
    this.#offset = 0;
    this.#emit({ type: "starttls", discarded });
  }

  /** RFC 4954 §4: `AUTH mechanism [initial-response]`. */
  #auth(argument: string): void {
    if (!this.#isTls && this.#authRequiresTls) return this.#error(REPLIES.encryptionRequired);
    if (this.#authenticatedAs !== null) return this.#error(REPLIES.alreadyAuthenticated);
    const parts = argument.trim().split(/ +/);
    const [name = "", initialResponse] = parts;
    if (name === "" || parts.length > 2) {
      return this.#error(REPLIES.syntax("Syntax: AUTH <mechanism> [initial-response]"));
    }
    const mechanism = parseSaslMechanism(name);
    if (mechanism === null || !this.#mechanisms.includes(mechanism)) {
      return this.#error(REPLIES.unknownMechanism);
    }
    const exchange = new SaslExchange(mechanism);
    this.#saslStep(exchange, exchange.start(initialResponse ?? null));
  }

  /** Sends a challenge, reports a failure, or asks whether the credentials are right. */
  #saslStep(exchange: SaslExchange, step: SaslStep): void {
    switch (step.type) {
      case "challenge":
        this.#sasl = exchange;
        this.#reply(reply(334, undefined, step.challenge));
        return;
      case "failed":
        this.#error(step.reply);
        return;
      case "credentials":
        this.#ask(
          { kind: "auth", username: step.credentials.username },
          { type: "auth", credentials: step.credentials },
        );
        return;
    }
  }

  /** RFC 5321 §4.1.1.2 MAIL, with RFC 1870 SIZE, RFC 6152 BODY, RFC 6531 SMTPUTF8. */
  #mail(reversePath: string, parameters: Parameters): void {
    let body: BodyType = "7BIT";
    let smtputf8 = false;
    let size: number | undefined;
    let ret: "FULL" | "HDRS" | undefined;
    let envid: string | undefined;
    for (const [keyword, value] of parameters) {
      switch (keyword) {
        case "RET": {
          // RFC 3461 §4.3
          const v = value?.toUpperCase();
          if (v !== "FULL" && v !== "HDRS") {
            return this.#error(reply(501, "5.5.4", "RET must be FULL or HDRS (RFC 3461 §4.3)"));
          }
          ret = v;
          break;
        }
        case "ENVID": {
          // RFC 3461 §4.4: xtext, at most 100 characters. It goes into the
          // header of every delivery report, so it must decode to printable
          // US-ASCII (§4): a +0D+0A would start a forged field there.
          const decoded = value === null ? null : parseEnvid(value);
          if (decoded === null) {
            return this.#error(
              reply(
                501,
                "5.5.4",
                "ENVID must be xtext of at most 100 characters that decodes to printable US-ASCII (RFC 3461 §4, §4.4)",
              ),
            );
          }
          envid = decoded;
          break;
        }
        case "SIZE":
          if (value === null || !/^[0-9]{1,20}$/.test(value)) {
            return this.#error(REPLIES.syntax("SIZE needs a number of octets (RFC 1870)"));
          }
          size = Number(value);
          if (this.#maxSize > 0 && size > this.#maxSize) return this.#error(REPLIES.messageTooBig);
          break;
        case "BODY": {
          const v = value?.toUpperCase();
          if (v !== "7BIT" && v !== "8BITMIME") {
            return this.#error(reply(501, "5.5.4", "BODY must be 7BIT or 8BITMIME (RFC 6152)"));
          }
          body = v;
          break;
        }
        case "SMTPUTF8":
          if (value !== null) {
            return this.#error(REPLIES.syntax("SMTPUTF8 takes no value (RFC 6531)"));
          }
          smtputf8 = true;
          break;
        default:
          return this.#error(REPLIES.unknownParameter(keyword));
      }
    }
    if (!smtputf8 && isNonAscii(reversePath)) return this.#error(REPLIES.needsSmtputf8);
    const parametersCopy = new Map(parameters);
    this.#ask(
      {
        kind: "sender",
        reversePath,
        parameters: parametersCopy,
        body,
        smtputf8,
        ...(size === undefined ? {} : { size }),
        ...(ret === undefined ? {} : { ret }),
        ...(envid === undefined ? {} : { envid }),
      },
      { type: "sender", reversePath, parameters: parametersCopy },
    );
  }

  /** RFC 5321 §4.1.1.3 RCPT. */
  #rcpt(forwardPath: string, parameters: Parameters): void {
    const t = this.#transaction!;
    const dsn: { notify?: DsnNotify[]; orcpt?: string } = {};
    for (const [keyword, value] of parameters) {
      switch (keyword) {
        case "NOTIFY": {
          // RFC 3461 §4.1
          const notify = value === null ? null : parseNotify(value);
          if (notify === null) {
            return this.#error(
              reply(
                501,
                "5.5.4",
                "NOTIFY must be NEVER, or some of SUCCESS,FAILURE,DELAY (RFC 3461 §4.1)",
              ),
            );
          }
          dsn.notify = notify;
          break;
        }
        case "ORCPT": {
          // RFC 3461 §4.2; like ENVID, it must decode to printable text (§4)
          const orcpt = value === null ? null : parseOrcpt(value);
          if (orcpt === null) {
            return this.#error(
              reply(
                501,
                "5.5.4",
                "ORCPT must be addr-type;xtext that decodes to a printable address (RFC 3461 §4, §4.2)",
              ),
            );
          }
          dsn.orcpt = orcpt;
          break;
        }
        default:
          return this.#error(REPLIES.unknownParameter(keyword));
      }
    }
    if (!t.smtputf8 && isNonAscii(forwardPath)) return this.#error(REPLIES.needsSmtputf8);
    if (t.forwardPaths.length >= this.#maxRecipients) {
      // RFC 5321 §4.5.3.1.10: 452, so the client sends the rest later.
      this.#reply(REPLIES.tooManyRecipients);
      return;
    }
    this.#ask(
      { kind: "recipient", forwardPath, dsn },
      { type: "recipient", forwardPath, parameters: new Map(parameters) },
    );
  }

  /** RFC 3030 §2: BDAT <size> [LAST]. */
  #bdatCommand(size: number, last: boolean): void {
    const t = this.#transaction!;
    if (t.failed !== undefined) {
      this.#skipThenReply(size, t.failed);
      return;
    }
    if (!t.opened) {
      this.#ask({ kind: "open-bdat", size, last }, { type: "open", envelope: this.#envelope(t) });
      return;
    }
    this.#state = "bdat";
    this.#bdat = { remaining: size, last };
  }

  // --- helpers --------------------------------------------------------------

  #envelope(t: Transaction): Envelope {
    return {
      reversePath: t.reversePath,
      forwardPaths: [...t.forwardPaths],
      body: t.body,
      smtputf8: t.smtputf8,
      ...(t.declaredSize === undefined ? {} : { declaredSize: t.declaredSize }),
      ...(t.ret === undefined ? {} : { ret: t.ret }),
      ...(t.envid === undefined ? {} : { envid: t.envid }),
      ...(t.recipientDsn.some((d) => d.notify !== undefined || d.orcpt !== undefined)
        ? { recipientDsn: [...t.recipientDsn] }
        : {}),
    };
  }

  #discardOpen(reason: string): void {
    const t = this.#transaction;
    if (t && t.opened && t.refusal === undefined) this.#emit({ type: "discard", reason });
    if (t) t.opened = false;
  }

  /** Drops the transaction (RSET, EHLO, end of data): RFC 5321 §4.1.1.5. */
  #endTransaction(): void {
    this.#discardOpen("transaction reset");
    this.#transaction = null;
    this.#bdat = null;
    if (this.#state !== "connected" && this.#state !== "greeting" && this.#state !== "closed") {
      this.#state = "ready";
    }
  }

  /**
   * Sets what the next replies answer. `about` defaults to the transaction
   * in progress, read when the first reply is queued.
   */
  #answering(
    stage: ReplyStage,
    about: { reversePath: string | null; forwardPaths: readonly string[] } | null = null,
  ): void {
    this.#stage = stage;
    this.#about = about;
    this.#context = null;
  }

  /** What a command's replies answer: MAIL and RCPT carry their own path. */
  #answeringCommand(command: Command): void {
    const t = this.#transaction;
    const reversePath = t?.reversePath ?? null;
    switch (command.verb) {
      case "EHLO":
      case "HELO":
        return this.#answering("helo");
      case "STARTTLS":
        return this.#answering("starttls");
      case "AUTH":
        return this.#answering("auth");
      case "MAIL":
        return this.#answering("mail", {
          reversePath: command.reversePath === null ? "" : formatMailbox(command.reversePath),
          forwardPaths: NO_PATHS,
        });
      case "RCPT":
        return this.#answering("rcpt", {
          reversePath,
          forwardPaths: [
            command.forwardPath === null ? "Postmaster" : formatMailbox(command.forwardPath),
          ],
        });
      case "DATA":
      case "BDAT":
        return this.#answering(command.verb === "DATA" ? "data" : "bdat", {
          reversePath,
          forwardPaths: t === null ? NO_PATHS : [...t.forwardPaths],
        });
      default:
        return this.#answering("command");
    }
  }

  #makeContext(): ReplyContext {
    const about = this.#about;
    return {
      stage: this.#stage,
      clientName: this.#clientName,
      reversePath: about === null ? this.#transaction?.reversePath ?? null : about.reversePath,
      forwardPaths: about === null ? NO_PATHS : about.forwardPaths,
    };
  }

  #ask(pending: Pending, event: SessionEvent): void {
    this.#pending = pending;
    this.#emit(event);
  }

  /** Queues an event after the replies written so far, keeping their order. */
  #emit(event: SessionEvent): void {
    this.#events.push(...this.#flush(), event);
  }

  /** Queues a reply, formatted now: whether it carries an enhanced code depends on the EHLO before it. */
  #reply(r: Reply): void {
    this.#out.push(r);
    this.#outContexts.push(this.#context ??= this.#makeContext());
    // RFC 4954 §4: `continue-req = "334" SP [base64] CRLF`, the space kept even
    // before an empty challenge, and no enhanced status code in the way.
    this.#outText += r.code === 334
      ? `334 ${r.lines[0] ?? ""}\r\n`
      : formatReply(r, this.#extended);
  }

  #error(r: Reply): void {
    this.#reply(r);
    if (r.code >= 500 && ++this.#errors >= this.#maxErrors) {
      this.#close(reply(421, "4.7.0", "Too many errors, closing connection"));
    }
  }

  #flush(): SessionEvent[] {
    if (this.#out.length === 0) return [];
    const replies = this.#out;
    const contexts = this.#outContexts;
    const text = this.#outText;
    this.#out = [];
    this.#outContexts = [];
    this.#outText = "";
    return [{ type: "send", bytes: encoder.encode(text), replies, contexts }];
  }

  #drain(): SessionEvent[] {
    const events = this.#events;
    events.push(...this.#flush());
    this.#events = [];
    return events;
  }
}
