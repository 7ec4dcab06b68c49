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
 * Each command is one entry of the table in `server_commands.ts`: the
 * states where it is legal (§4.1.4; elsewhere, `503 5.5.1`), its check, and
 * its effect, including the question it puts to the caller and what its
 * answer does. This file reads the bytes, looks each verb up there, and
 * keeps the order of replies. docs/state-machine.md draws the table.
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

import { type Command, parseCommand } from "./command.ts";
import type { Envelope } from "./envelope.ts";
import { formatMailbox } from "./path.ts";
import { formatReply, isPositive, REPLIES, type Reply, reply } from "./reply.ts";
import type { SaslExchange, SaslMechanism } from "./sasl.ts";
import type {
  ReplyContext,
  ReplyStage,
  ServerSessionOptions,
  SessionEvent,
  SessionState,
} from "./server_session_types.ts";
import {
  type CommandRule,
  ehloKeywords,
  isRefusal,
  messageAnswered,
  type Question,
  saslStep,
  SERVER_COMMANDS,
  type SessionMachine,
  type Transaction,
} from "./server_commands.ts";

export type {
  ReplyContext,
  ReplyStage,
  ServerSessionOptions,
  SessionEvent,
  SessionState,
} from "./server_session_types.ts";

const NO_PATHS: readonly string[] = Object.freeze([]);

/** The empty input every idle session points at: never written, only replaced. */
const NO_INPUT = new Uint8Array(0);

/**
 * RFC 5321 §4.1.4: which states each command is legal in, and the reply
 * otherwise; commands not listed are legal in every state. Read from
 * {@linkcode SERVER_COMMANDS}, the table in `server_commands.ts`.
 */
export const SEQUENCE: Partial<
  Record<Command["verb"], { allowed: readonly SessionState[]; otherwise: Reply }>
> = Object.fromEntries(
  Object.entries(SERVER_COMMANDS).flatMap(([verb, r]) =>
    r.legal === null ? [] : [[verb, { allowed: r.legal, otherwise: r.otherwise }]]
  ),
);

const encoder = new TextEncoder();
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** `AUTH PLAIN dGVzdA==` → `AUTH PLAIN ****`: the mechanism stays, the secret goes. */
function maskAuth(line: string): string {
  const parts = line.split(" ").filter((p) => p !== "");
  return parts.length > 2 ? `${parts[0]} ${parts[1]} ****` : parts.join(" ");
}

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
  #pending: Question | null = null;
  #input: Uint8Array = NO_INPUT;
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
  #machine: SessionMachine;

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
    this.#machine = new ServerSession.#Machine(this);
  }

  /**
   * What the command table reads and does: this session's facts and
   * transitions. A class nested here (it may read the session's private
   * fields), so each session holds one small object whose getters and
   * methods live on a shared prototype, not a literal of closures and
   * accessors made anew per connection (idle connections add up).
   */
  static readonly #Machine = class Machine implements SessionMachine {
    readonly #s: ServerSession;
    constructor(session: ServerSession) {
      this.#s = session;
    }
    get state(): SessionState {
      return this.#s.#state;
    }
    get hostname(): string {
      return this.#s.#hostname;
    }
    get isTls(): boolean {
      return this.#s.#isTls;
    }
    get canStartTls(): boolean {
      return this.#s.#canStartTls;
    }
    get mechanisms(): readonly SaslMechanism[] {
      return this.#s.#mechanisms;
    }
    get authRequiresTls(): boolean {
      return this.#s.#authRequiresTls;
    }
    get authenticatedAs(): string | null {
      return this.#s.#authenticatedAs;
    }
    get maxMessageSize(): number {
      return this.#s.#maxSize;
    }
    get maxRecipients(): number {
      return this.#s.#maxRecipients;
    }
    get transaction(): Transaction | null {
      return this.#s.#transaction;
    }
    reply(r: Reply): void {
      this.#s.#reply(r);
    }
    error(r: Reply): void {
      this.#s.#error(r);
    }
    countError(): void {
      this.#s.#errors++;
    }
    enter(state: SessionState): void {
      this.#s.#state = state;
    }
    ask(question: Question, event: SessionEvent): void {
      this.#s.#ask(question, event);
    }
    endTransaction(): void {
      this.#s.#endTransaction();
    }
    beginTransaction(t: Transaction): void {
      this.#s.#transaction = t;
    }
    greet(clientName: string, extended: boolean): void {
      this.#s.#clientName = clientName;
      this.#s.#extended = extended;
    }
    restartInTls(): void {
      this.#s.#restartInTls();
    }
    authenticated(username: string): void {
      this.#s.#authenticatedAs = username;
    }
    awaitSasl(exchange: SaslExchange): void {
      this.#s.#sasl = exchange;
    }
    readChunk(size: number, last: boolean): void {
      this.#s.#state = "bdat";
      this.#s.#bdat = { remaining: size, last };
    }
    skipThenReply(size: number, r: Reply): void {
      this.#s.#skipThenReply(size, r);
    }
    close(r: Reply): void {
      this.#s.#close(r);
    }
    envelope(t: Transaction): Envelope {
      return this.#s.#envelope(t);
    }
  };

  /**
   * RFC 3207 §4.2: after the 220 to STARTTLS, "the server MUST discard any
   * knowledge obtained from the client, such as the argument to the EHLO
   * command". Plaintext pipelined after STARTTLS is dropped, never answered
   * inside TLS (CVE-2011-0411): STARTTLS must be the last command of its group.
   */
  #restartInTls(): void {
    this.#endTransaction();
    this.#state = "connected";
    this.#clientName = "";
    this.#extended = false;
    this.#authenticatedAs = null;
    this.#isTls = true;
    const discarded = this.#input.length - this.#offset;
    this.#input = NO_INPUT;
    this.#offset = 0;
    this.#emit({ type: "starttls", discarded });
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
      if (pending.verb === "end-of-data" && t) t.opened = false; // the caller dealt with the store
      this.#close(r);
      return this.#drain();
    }
    if (pending.verb === "end-of-data") {
      messageAnswered(this.#machine, r);
    } else {
      const rule = SERVER_COMMANDS[pending.verb] as CommandRule<typeof pending.verb, unknown>;
      rule.answered!(this.#machine, pending, r, ok);
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
      this.#input = NO_INPUT;
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
      else saslStep(this.#machine, sasl, sasl.respond(line));
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
    this.#ask({ verb: "end-of-data" }, { type: "message", envelope: this.#envelope(t) });
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
    // The one lookup: everything about this verb is its entry in the table.
    const rule = SERVER_COMMANDS[command.verb] as CommandRule<typeof command.verb, unknown>;
    const machine = this.#machine;
    if (rule.offered !== undefined && !rule.offered(machine)) {
      // RFC 5321 §4.2.4: 502 for a command we recognize but do not offer here.
      this.#error(REPLIES.notImplemented);
      return;
    }
    if (rule.legal !== null && !rule.legal.includes(this.#state)) {
      const r = rule.otherwiseIn?.[this.#state] ?? rule.otherwise;
      if (rule.refuseOutOfSequence !== undefined) rule.refuseOutOfSequence(machine, command, r);
      else this.#error(r);
      return;
    }
    const checked = rule.check(command, machine);
    if (isRefusal(checked)) {
      this.#error(checked);
      return;
    }
    rule.effect(machine, command, checked);
  }

  #skipThenReply(size: number, r: Reply): void {
    if (size === 0) {
      this.#reply(r);
      return;
    }
    this.#skip = size;
    this.#bdatAfterSkip = r;
  }

  /**
   * The EHLO keywords this session offers (RFC 5321 §4.1.1.1).
   *
   * @returns One string per keyword line.
   */
  extensions(): string[] {
    return ehloKeywords(this.#machine);
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
      ...(t.requireTls === true ? { requireTls: true } : {}),
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

  #ask(question: Question, event: SessionEvent): void {
    this.#pending = question;
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
