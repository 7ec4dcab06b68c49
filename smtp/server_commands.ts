/**
 * The server session's state machine as one table: for each SMTP command,
 * the states where it is legal, its check and its effect (RFC 5321 §4.1.4).
 *
 * Read {@linkcode SERVER_COMMANDS} top to bottom: each entry is one command.
 *
 * - `legal`: the states in which the command may come; anywhere else it is
 *   answered `otherwise` (a `503 5.5.1`), or the reply `otherwiseIn` gives
 *   for that state. `null`: wherever a command line can be read.
 * - `offered`: a command tern knows but does not offer on this connection
 *   is answered `502 5.5.1` (RFC 5321 §4.2.4).
 * - `check`: a pure function of the parsed command and the session's facts.
 *   It returns the refusal to send, or what it learnt for the effect.
 * - `effect`: the transition. A question for the caller (accept this
 *   sender?) goes out as an event; the session stays sans-I/O, and the
 *   caller's reply comes back through `ServerSession.answer`, which hands it
 *   to the entry's `answered`.
 * - `next`: where an accepted command leads, from each state; it is what the
 *   state diagram in docs/state-machine.md and the playground draw.
 *
 * The session (`server_session.ts`) reads lines, looks the verb up here, and
 * does what the entry says through {@linkcode SessionMachine}: one table
 * lookup per command.
 *
 * @module
 */

import type { Command, Verb } from "./command.ts";
import { DataDecoder } from "./data_decoder.ts";
import type { BodyType, DsnNotify, Envelope, RecipientDsn } from "./envelope.ts";
import { parseEnvid, parseNotify, parseOrcpt } from "./dsn_parameters.ts";
import { formatMailbox, isNonAscii } from "./path.ts";
import { REPLIES, type Reply, reply } from "./reply.ts";
import { heloNameProblem } from "./helo.ts";
import { parseSaslMechanism, SaslExchange, type SaslMechanism, type SaslStep } from "./sasl.ts";
import type { SessionEvent, SessionState } from "./server_session_types.ts";

/** The command of one verb, as `parseCommand` gives it. */
export type CommandOf<V extends Verb> = Command & { readonly verb: V };

/** The mail transaction in progress (RFC 5321 §3.3). */
export interface Transaction {
  reversePath: string;
  body: BodyType;
  smtputf8: boolean;
  declaredSize?: number;
  ret?: "FULL" | "HDRS";
  envid?: string;
  /** RFC 8689 REQUIRETLS was on MAIL FROM. */
  requireTls?: boolean;
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

/** A question put to the caller, waiting for `ServerSession.answer`: which entry asked, and what it needs back. */
export type Question =
  | { readonly verb: "MAIL"; readonly transaction: Transaction }
  | { readonly verb: "RCPT"; readonly forwardPath: string; readonly dsn: RecipientDsn }
  | { readonly verb: "DATA" }
  | { readonly verb: "BDAT"; readonly size: number; readonly last: boolean }
  | { readonly verb: "AUTH"; readonly username: string }
  | { readonly verb: "end-of-data" };

/** What a check may read: the session's facts and policy. */
export interface SessionFacts {
  /** Where the session stands. */
  readonly state: SessionState;
  /** Our name, for the EHLO reply. */
  readonly hostname: string;
  /** Whether the connection is encrypted. */
  readonly isTls: boolean;
  /** Whether STARTTLS is offered on this listener. */
  readonly canStartTls: boolean;
  /** The SASL mechanisms offered; none: AUTH is not. */
  readonly mechanisms: readonly SaslMechanism[];
  /** AUTH only on an encrypted connection (RFC 4954 §4, RFC 8314 §3). */
  readonly authRequiresTls: boolean;
  /** Who AUTH accepted, or `null`. */
  readonly authenticatedAs: string | null;
  /** Largest message in octets; 0 for no limit (RFC 1870). */
  readonly maxMessageSize: number;
  /** Recipients per transaction (RFC 5321 §4.5.3.1.8). */
  readonly maxRecipients: number;
  /** The transaction in progress, or `null`. */
  readonly transaction: Transaction | null;
}

/** What an effect may do: the session's transitions. Nothing here does I/O. */
export interface SessionMachine extends SessionFacts {
  /** Queues a reply. */
  reply(r: Reply): void;
  /** Queues a refusal; a 5yz counts toward the limit of errors, which closes with 421. */
  error(r: Reply): void;
  /** Counts an error without closing (a refused BDAT, whose octets are still to be read). */
  countError(): void;
  /** Moves to a state. */
  enter(state: SessionState): void;
  /** Puts a question to the caller; the session reads no more until it is answered. */
  ask(question: Question, event: SessionEvent): void;
  /** Drops the transaction, if any (RFC 5321 §4.1.1.5). */
  endTransaction(): void;
  /** Installs an accepted transaction. */
  beginTransaction(t: Transaction): void;
  /** Records the EHLO/HELO name, and whether ESMTP applies. */
  greet(clientName: string, extended: boolean): void;
  /** Forgets everything learnt in plaintext and reports `starttls` (RFC 3207 §4.2). */
  restartInTls(): void;
  /** Records who AUTH accepted. */
  authenticated(username: string): void;
  /** Waits for the client's response to a SASL challenge. */
  awaitSasl(exchange: SaslExchange): void;
  /** Reads a BDAT chunk of `size` octets next (RFC 3030 §2). */
  readChunk(size: number, last: boolean): void;
  /** Reads `size` octets and throws them away, then queues `r` (RFC 3030 §3). */
  skipThenReply(size: number, r: Reply): void;
  /** Sends a last reply and closes. */
  close(r: Reply): void;
  /** The envelope of a transaction, for the caller. */
  envelope(t: Transaction): Envelope;
}

/** One command's entry: `P` is what its check hands to its effect. */
export interface CommandRule<V extends Verb, P> {
  /** Where the command is defined. */
  readonly rfc: string;
  /** What it does, in a few words (for the docs and the playground). */
  readonly summary: string;
  /** The states where it is legal; `null`: wherever a command line is read. */
  readonly legal: readonly SessionState[] | null;
  /** The reply when it comes out of sequence. */
  readonly otherwise: Reply;
  /** A more telling reply than `otherwise` in some states. */
  readonly otherwiseIn?: Partial<Record<SessionState, Reply>>;
  /** How an out-of-sequence command is refused, when not simply with its reply. */
  refuseOutOfSequence?(s: SessionMachine, command: CommandOf<V>, r: Reply): void;
  /** Whether this connection offers the command; if not, 502 (RFC 5321 §4.2.4). */
  offered?(s: SessionFacts): boolean;
  /** Pure: the refusal, or what the effect needs. */
  check(command: CommandOf<V>, s: SessionFacts): Reply | P;
  /** The transition. */
  effect(s: SessionMachine, command: CommandOf<V>, checked: P): void;
  /** The transition once the caller has answered this entry's question (`ok`: positive or 354). */
  answered?(
    s: SessionMachine,
    question: Extract<Question, { verb: V }>,
    r: Reply,
    ok: boolean,
  ): void;
  /** Where the accepted command leads, from each state it changes (for the diagram). */
  readonly next: Partial<Record<SessionState, SessionState>>;
}

/** Whether a check's result is a refusal (a reply) rather than what it learnt. */
export function isRefusal(v: unknown): v is Reply {
  return typeof v === "object" && v !== null && "code" in v;
}

/** The states where a command line can be read: no content is expected and the session is open. */
export const COMMAND_STATES: readonly SessionState[] = [
  "connected",
  "ready",
  "mail",
  "rcpt",
  "bdat",
];

/** Whatever the command, the check passes. */
function pass(): undefined {
  return undefined;
}

const nestedMail = REPLIES.badSequence(
  "Nested MAIL command: finish or RSET the transaction first",
);

/** What MAIL's check learns from its parameters. */
interface MailFacts {
  readonly reversePath: string;
  readonly body: BodyType;
  readonly smtputf8: boolean;
  readonly size?: number;
  readonly ret?: "FULL" | "HDRS";
  readonly envid?: string;
  readonly requireTls?: boolean;
}

/** RFC 5321 §4.1.1.2 MAIL, with RFC 1870 SIZE, RFC 6152 BODY, RFC 6531 SMTPUTF8, RFC 3461 RET and ENVID. */
export function checkMail(command: CommandOf<"MAIL">, s: SessionFacts): Reply | MailFacts {
  const reversePath = command.reversePath === null ? "" : formatMailbox(command.reversePath);
  let body: BodyType = "7BIT";
  let smtputf8 = false;
  let size: number | undefined;
  let ret: "FULL" | "HDRS" | undefined;
  let envid: string | undefined;
  let requireTls = false;
  for (const [keyword, value] of command.parameters) {
    switch (keyword) {
      case "REQUIRETLS":
        // RFC 8689 §4.1: offered, and taken, only over TLS.
        if (value !== null) return REPLIES.syntax("REQUIRETLS takes no value (RFC 8689)");
        if (!s.isTls) {
          return reply(
            530,
            "5.7.10",
            "REQUIRETLS needs a TLS connection: send STARTTLS first (RFC 8689 §4.1)",
          );
        }
        requireTls = true;
        break;
      case "RET": {
        // RFC 3461 §4.3
        const v = value?.toUpperCase();
        if (v !== "FULL" && v !== "HDRS") {
          return reply(501, "5.5.4", "RET must be FULL or HDRS (RFC 3461 §4.3)");
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
          return reply(
            501,
            "5.5.4",
            "ENVID must be xtext of at most 100 characters that decodes to printable US-ASCII (RFC 3461 §4, §4.4)",
          );
        }
        envid = decoded;
        break;
      }
      case "SIZE":
        if (value === null || !/^[0-9]{1,20}$/.test(value)) {
          return REPLIES.syntax("SIZE needs a number of octets (RFC 1870)");
        }
        size = Number(value);
        if (s.maxMessageSize > 0 && size > s.maxMessageSize) return REPLIES.messageTooBig;
        break;
      case "BODY": {
        const v = value?.toUpperCase();
        if (v !== "7BIT" && v !== "8BITMIME") {
          return reply(501, "5.5.4", "BODY must be 7BIT or 8BITMIME (RFC 6152)");
        }
        body = v;
        break;
      }
      case "SMTPUTF8":
        if (value !== null) return REPLIES.syntax("SMTPUTF8 takes no value (RFC 6531)");
        smtputf8 = true;
        break;
      default:
        return REPLIES.unknownParameter(keyword);
    }
  }
  if (!smtputf8 && isNonAscii(reversePath)) return REPLIES.needsSmtputf8;
  return {
    reversePath,
    body,
    smtputf8,
    ...(size === undefined ? {} : { size }),
    ...(ret === undefined ? {} : { ret }),
    ...(envid === undefined ? {} : { envid }),
    ...(requireTls ? { requireTls } : {}),
  };
}

/** What RCPT's check learns. */
interface RcptFacts {
  readonly forwardPath: string;
  readonly dsn: RecipientDsn;
}

/** RFC 5321 §4.1.1.3 RCPT, with RFC 3461 NOTIFY and ORCPT. */
export function checkRcpt(command: CommandOf<"RCPT">, s: SessionFacts): Reply | RcptFacts {
  const forwardPath = command.forwardPath === null
    ? "Postmaster"
    : formatMailbox(command.forwardPath);
  const dsn: { notify?: DsnNotify[]; orcpt?: string } = {};
  for (const [keyword, value] of command.parameters) {
    switch (keyword) {
      case "NOTIFY": {
        // RFC 3461 §4.1
        const notify = value === null ? null : parseNotify(value);
        if (notify === null) {
          return reply(
            501,
            "5.5.4",
            "NOTIFY must be NEVER, or some of SUCCESS,FAILURE,DELAY (RFC 3461 §4.1)",
          );
        }
        dsn.notify = notify;
        break;
      }
      case "ORCPT": {
        // RFC 3461 §4.2; like ENVID, it must decode to printable text (§4)
        const orcpt = value === null ? null : parseOrcpt(value);
        if (orcpt === null) {
          return reply(
            501,
            "5.5.4",
            "ORCPT must be addr-type;xtext that decodes to a printable address (RFC 3461 §4, §4.2)",
          );
        }
        dsn.orcpt = orcpt;
        break;
      }
      default:
        return REPLIES.unknownParameter(keyword);
    }
  }
  const t = s.transaction!;
  if (!t.smtputf8 && isNonAscii(forwardPath)) return REPLIES.needsSmtputf8;
  // RFC 5321 §4.5.3.1.10: 452, so the client sends the rest later.
  if (t.forwardPaths.length >= s.maxRecipients) return REPLIES.tooManyRecipients;
  return { forwardPath, dsn };
}

/** RFC 4954 §4: `AUTH mechanism [initial-response]`, only where it is allowed. */
export function checkAuth(
  command: CommandOf<"AUTH">,
  s: SessionFacts,
): Reply | { readonly mechanism: SaslMechanism; readonly initialResponse: string | null } {
  if (!s.isTls && s.authRequiresTls) return REPLIES.encryptionRequired;
  if (s.authenticatedAs !== null) return REPLIES.alreadyAuthenticated;
  const parts = command.argument.trim().split(/ +/);
  const [name = "", initialResponse] = parts;
  if (name === "" || parts.length > 2) {
    return REPLIES.syntax("Syntax: AUTH <mechanism> [initial-response]");
  }
  const mechanism = parseSaslMechanism(name);
  if (mechanism === null || !s.mechanisms.includes(mechanism)) return REPLIES.unknownMechanism;
  return { mechanism, initialResponse: initialResponse ?? null };
}

/**
 * One step of an AUTH exchange: a `334` challenge, a failure, or the
 * question whether the credentials are right (RFC 4954 §4).
 *
 * @param s The session.
 * @param exchange The SASL exchange.
 * @param step What the exchange says next.
 */
export function saslStep(s: SessionMachine, exchange: SaslExchange, step: SaslStep): void {
  switch (step.type) {
    case "challenge":
      s.awaitSasl(exchange);
      s.reply(reply(334, undefined, step.challenge));
      return;
    case "failed":
      s.error(step.reply);
      return;
    case "credentials":
      s.ask(
        { verb: "AUTH", username: step.credentials.username },
        { type: "auth", credentials: step.credentials },
      );
      return;
  }
}

/**
 * The EHLO keywords this session offers (RFC 5321 §4.1.1.1).
 *
 * @param s The session's facts.
 * @returns One string per keyword line.
 */
export function ehloKeywords(s: SessionFacts): string[] {
  const keywords = [
    "PIPELINING", // RFC 2920
    `SIZE ${s.maxMessageSize}`, // RFC 1870
    "8BITMIME", // RFC 6152
    "ENHANCEDSTATUSCODES", // RFC 2034
    "SMTPUTF8", // RFC 6531
    "CHUNKING", // RFC 3030
    "DSN", // RFC 3461
  ];
  // RFC 8689 §4.1: REQUIRETLS only once the connection is under TLS.
  if (s.isTls) keywords.push("REQUIRETLS");
  // RFC 3207 §4.2: once TLS is up, STARTTLS is no longer offered.
  if (s.canStartTls && !s.isTls) keywords.push("STARTTLS");
  // RFC 4954 §3, §4, RFC 8314 §3: AUTH only where passwords cannot be read off the wire.
  if (s.mechanisms.length > 0 && (s.isTls || !s.authRequiresTls)) {
    keywords.push(`AUTH ${s.mechanisms.join(" ")}`);
  }
  keywords.push("HELP");
  return keywords;
}

/** Keeps `next` readable: every greeted state goes back to `ready`. */
const TO_READY = { mail: "ready", rcpt: "ready", bdat: "ready" } as const;

/** Makes an entry, typing its check's result into its effect. */
function rule<V extends Verb, P = undefined>(r: CommandRule<V, P>): CommandRule<V, P> {
  return r;
}

/** The name an EHLO or HELO gives. */
function domainOf(c: Command): string {
  return c.verb === "EHLO" || c.verb === "HELO" ? c.domain : "";
}

const always = REPLIES.badSequence("Out of sequence");

/** EHLO and HELO are one entry: RFC 5321 §4.1.1.1; a repeated greeting resets the transaction (§4.1.4). */
const hello = <V extends "EHLO" | "HELO">(verb: V) =>
  rule<V, undefined>({
    rfc: "RFC 5321 §4.1.1.1",
    summary: verb === "EHLO" ? "greets, and asks for the extensions" : "greets, plain SMTP",
    legal: null,
    otherwise: always,
    // §4.1.4: after a refused EHLO the server stays in the state it was in,
    // so a transaction and an earlier greeting survive. The name is not
    // echoed: it is what was wrong.
    check: (c) => {
      const problem = heloNameProblem(domainOf(c));
      return problem === null ? undefined : REPLIES.syntax(`${verb} ${problem}`);
    },
    effect: (s, c) => {
      const domain = domainOf(c);
      s.endTransaction();
      s.greet(domain, verb === "EHLO");
      s.enter("ready");
      // §3.2: never the extended reply to HELO.
      s.reply(
        verb === "HELO"
          ? REPLIES.helo(s.hostname, domain)
          : reply(250, undefined, `${s.hostname} greets ${domain}`, ...ehloKeywords(s)),
      );
    },
    next: { connected: "ready", ...TO_READY },
  });

/**
 * The server's commands, one entry each, in the order of a dialogue
 * (RFC 5321 §4.1.4 for the sequence rules).
 */
export const SERVER_COMMANDS: { readonly [V in Verb]: CommandRule<V, unknown> } = {
  EHLO: hello("EHLO"),
  HELO: hello("HELO"),

  // RFC 3207 §4: an EHLO extension that resets the session, so not inside a transaction.
  STARTTLS: rule<"STARTTLS">({
    rfc: "RFC 3207 §4",
    summary: "upgrades to TLS, then starts over",
    legal: ["ready"],
    otherwise: REPLIES.badSequence("STARTTLS needs EHLO first, and no transaction in progress"),
    offered: (s) => s.canStartTls,
    check: (_, s) => s.isTls ? REPLIES.tlsAlreadyActive : undefined,
    effect: (s) => {
      // The 220 goes out in plaintext; the caller then runs the handshake.
      s.reply(REPLIES.readyForTls);
      s.restartInTls();
    },
    next: { ready: "connected" },
  }),

  // RFC 4954 §4: "The AUTH command is not permitted during a mail transaction."
  AUTH: rule<
    "AUTH",
    { readonly mechanism: SaslMechanism; readonly initialResponse: string | null }
  >(
    {
      rfc: "RFC 4954 §4",
      summary: "logs in with SASL",
      legal: ["ready"],
      otherwise: REPLIES.badSequence("AUTH needs EHLO first, and no transaction in progress"),
      offered: (s) => s.mechanisms.length > 0,
      check: checkAuth,
      effect: (s, _, { mechanism, initialResponse }) => {
        const exchange = new SaslExchange(mechanism);
        saslStep(s, exchange, exchange.start(initialResponse));
      },
      answered: (s, q, r, ok) => {
        if (!ok) return s.error(r); // counts toward maxErrors: guessing passwords is an error
        // A checker may name the user it logged in (an auth service's canonical name).
        const named = "user" in r && typeof r.user === "string" && r.user !== "" ? r.user : null;
        s.authenticated(named ?? q.username);
        s.reply(r);
      },
      next: { ready: "ready" },
    },
  ),

  MAIL: rule<"MAIL", MailFacts>({
    rfc: "RFC 5321 §4.1.1.2",
    summary: "starts a transaction",
    legal: ["ready"],
    otherwise: REPLIES.badSequence("Send EHLO or HELO first, or finish this transaction (RSET)"),
    otherwiseIn: { mail: nestedMail, rcpt: nestedMail, bdat: nestedMail },
    check: checkMail,
    effect: (s, c, m) => {
      const parameters = new Map(c.parameters);
      const transaction: Transaction = {
        reversePath: m.reversePath,
        body: m.body,
        smtputf8: m.smtputf8,
        ...(m.size === undefined ? {} : { declaredSize: m.size }),
        ...(m.ret === undefined ? {} : { ret: m.ret }),
        ...(m.envid === undefined ? {} : { envid: m.envid }),
        ...(m.requireTls === true ? { requireTls: true } : {}),
        forwardPaths: [],
        recipientDsn: [],
        opened: false,
      };
      s.ask(
        { verb: "MAIL", transaction },
        { type: "sender", reversePath: m.reversePath, parameters },
      );
    },
    answered: (s, q, r, ok) => {
      if (ok) {
        s.beginTransaction(q.transaction);
        s.enter("mail");
      }
      s.reply(r);
    },
    next: { ready: "mail" },
  }),

  RCPT: rule<"RCPT", RcptFacts>({
    rfc: "RFC 5321 §4.1.1.3",
    summary: "adds a recipient",
    legal: ["mail", "rcpt"],
    otherwise: REPLIES.badSequence("Need MAIL before RCPT"),
    check: checkRcpt,
    effect: (s, c, { forwardPath, dsn }) =>
      s.ask(
        { verb: "RCPT", forwardPath, dsn },
        { type: "recipient", forwardPath, parameters: new Map(c.parameters) },
      ),
    answered: (s, q, r, ok) => {
      const t = s.transaction;
      if (ok && t) {
        t.forwardPaths.push(q.forwardPath);
        t.recipientDsn.push(q.dsn);
        s.enter("rcpt");
      }
      s.reply(r);
    },
    next: { mail: "rcpt", rcpt: "rcpt" },
  }),

  // RFC 5321 §4.1.1.4: the content comes only after our 354.
  DATA: rule<"DATA">({
    rfc: "RFC 5321 §4.1.1.4",
    summary: "asks to send the content",
    legal: ["rcpt"],
    otherwise: REPLIES.badSequence("Need RCPT before DATA"),
    otherwiseIn: {
      // §3.3: DATA with no valid recipient gets 554 (or 503).
      mail: REPLIES.noValidRecipients,
      bdat: REPLIES.badSequence("DATA cannot follow BDAT in one transaction"),
    },
    check: pass,
    effect: (s) => s.ask({ verb: "DATA" }, { type: "open", envelope: s.envelope(s.transaction!) }),
    answered: (s, _, r, ok) => {
      const t = s.transaction;
      if (!ok || !t) return s.reply(r);
      t.opened = true;
      t.decoder = new DataDecoder({ dotStuffed: true });
      s.enter("data");
      s.reply(REPLIES.startData);
    },
    next: { rcpt: "data" },
  }),

  // RFC 3030 §2: BDAT <size> [LAST]; the chunk's octets follow the line.
  BDAT: rule<"BDAT">({
    rfc: "RFC 3030 §2",
    summary: "sends a chunk of content",
    legal: ["rcpt", "bdat"],
    otherwise: REPLIES.badSequence("Need RCPT before BDAT"),
    otherwiseIn: { mail: REPLIES.noValidRecipients },
    // RFC 3030 §3: even a refused BDAT's octets must be read.
    refuseOutOfSequence: (s, c, r) => {
      s.skipThenReply(c.size, r);
      s.countError();
    },
    check: pass,
    effect: (s, c) => {
      const t = s.transaction!;
      if (t.failed !== undefined) return s.skipThenReply(c.size, t.failed);
      if (t.opened) return s.readChunk(c.size, c.last);
      s.ask({ verb: "BDAT", size: c.size, last: c.last }, {
        type: "open",
        envelope: s.envelope(t),
      });
    },
    answered: (s, q, r, ok) => {
      const t = s.transaction;
      if (ok && t) {
        t.opened = true;
        t.decoder = new DataDecoder({ dotStuffed: false });
      } else if (t) {
        t.failed = r;
      }
      s.readChunk(q.size, q.last);
    },
    next: { rcpt: "bdat", bdat: "bdat" },
  }),

  RSET: rule<"RSET">({
    rfc: "RFC 5321 §4.1.1.5",
    summary: "drops the transaction",
    legal: null,
    otherwise: always,
    check: pass,
    effect: (s) => {
      s.endTransaction();
      if (s.state !== "connected") s.enter("ready");
      s.reply(REPLIES.reset);
    },
    next: TO_READY,
  }),

  NOOP: rule<"NOOP">({
    rfc: "RFC 5321 §4.1.1.9",
    summary: "does nothing",
    legal: null,
    otherwise: always,
    check: pass,
    effect: (s) => s.reply(REPLIES.noop),
    next: {},
  }),

  HELP: rule<"HELP">({
    rfc: "RFC 5321 §4.1.1.8",
    summary: "says where to read more",
    legal: null,
    otherwise: always,
    check: pass,
    effect: (s) => s.reply(REPLIES.help),
    next: {},
  }),

  // RFC 5321 §3.5.3: 252 when we will not verify.
  VRFY: rule<"VRFY">({
    rfc: "RFC 5321 §3.5.3",
    summary: "is not answered: 252",
    legal: null,
    otherwise: always,
    check: pass,
    effect: (s) => s.reply(REPLIES.vrfy),
    next: {},
  }),

  // RFC 5321 §4.2.4: 502 for a command we recognize but do not offer here.
  EXPN: rule<"EXPN">({
    rfc: "RFC 5321 §4.2.4",
    summary: "is not offered: 502",
    legal: null,
    otherwise: always,
    check: () => REPLIES.notImplemented,
    effect: () => {},
    next: {},
  }),

  QUIT: rule<"QUIT">({
    rfc: "RFC 5321 §4.1.1.10",
    summary: "ends the session",
    legal: null,
    otherwise: always,
    check: pass,
    effect: (s) => s.close(REPLIES.bye),
    next: { connected: "closed", ready: "closed", mail: "closed", rcpt: "closed" },
  }),
};

/**
 * The end of the content (a line holding a dot after DATA, or BDAT LAST):
 * once the caller has answered whether it takes the message, the
 * transaction is over, whatever the answer (RFC 5321 §4.1.1.4, §6.1).
 *
 * @param s The session.
 * @param r The caller's reply, sent as the final one.
 */
export function messageAnswered(s: SessionMachine, r: Reply): void {
  const t = s.transaction;
  if (t) t.opened = false; // committed or refused by the caller: nothing to discard
  s.endTransaction();
  s.reply(r);
}

/** What each state means, for the docs and the playground. */
export const SERVER_STATES: Readonly<Record<SessionState, string>> = {
  greeting: "connected, the banner not yet sent",
  connected: "banner sent: the client must say EHLO or HELO",
  ready: "greeted, no transaction: MAIL may start one",
  mail: "MAIL accepted, no recipient yet",
  rcpt: "at least one recipient accepted: more RCPT, or DATA or BDAT",
  data: "reading the content until a line holding a single dot",
  bdat: "reading BDAT chunks, until the one marked LAST",
  closed: "the connection is closing",
};

/** One arrow of the diagram. */
export interface Transition {
  /** The state it leaves. */
  readonly from: SessionState;
  /** The state it enters. */
  readonly to: SessionState;
  /** What causes it: a command, or an event. */
  readonly label: string;
  /** What it does. */
  readonly summary: string;
  /** Where the rule is. */
  readonly rfc: string;
}

/** Transitions that no command causes. */
const EVENTS: readonly Transition[] = [
  {
    from: "greeting",
    to: "connected",
    label: "start()",
    summary: "the 220 banner goes out",
    rfc: "RFC 5321 §4.3.1",
  },
  {
    from: "data",
    to: "ready",
    label: "end of data",
    summary: "a line holding a dot ends the content; the reply is the one that matters",
    rfc: "RFC 5321 §4.1.1.4",
  },
  {
    from: "bdat",
    to: "ready",
    label: "BDAT LAST",
    summary: "the last chunk ends the content",
    rfc: "RFC 3030 §2",
  },
  {
    from: "ready",
    to: "closed",
    label: "421",
    summary: "a timeout, a shutdown or too many errors closes the session",
    rfc: "RFC 5321 §3.8",
  },
];

/**
 * Every arrow of the server's state diagram, from the table: each command's
 * `next`, then the transitions no command causes.
 *
 * @returns The transitions, in the table's order.
 */
export function serverTransitions(): Transition[] {
  const out: Transition[] = [];
  EVENTS.slice(0, 1).forEach((e) => out.push(e));
  for (const [verb, r] of Object.entries(SERVER_COMMANDS)) {
    for (const [from, to] of Object.entries(r.next)) {
      out.push({ from: from as SessionState, to, label: verb, summary: r.summary, rfc: r.rfc });
    }
  }
  EVENTS.slice(1).forEach((e) => out.push(e));
  return out;
}

/** The arrows between two states, with every label that makes one: how the diagrams group them. */
export interface Arrow<S extends string = SessionState> {
  /** The state it leaves. */
  readonly from: S;
  /** The state it enters. */
  readonly to: S;
  /** The commands and events, in the table's order. */
  readonly labels: readonly string[];
}

/**
 * Groups transitions into one arrow per pair of states.
 *
 * @param transitions As {@linkcode serverTransitions} gives them, or the client's.
 * @returns The arrows, in the order their first transition comes.
 */
export function arrowsOf<S extends string>(
  transitions: readonly { readonly from: S; readonly to: S; readonly label: string }[],
): Arrow<S>[] {
  const arrows = new Map<string, { from: S; to: S; labels: string[] }>();
  for (const t of transitions) {
    const key = `${t.from} ${t.to}`;
    const arrow = arrows.get(key) ?? { from: t.from, to: t.to, labels: [] };
    if (!arrow.labels.includes(t.label)) arrow.labels.push(t.label);
    arrows.set(key, arrow);
  }
  return [...arrows.values()];
}
