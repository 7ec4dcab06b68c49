/**
 * The client session's state machine as one table: for each command the
 * client has sent, the reply it awaits and what follows each class of reply
 * (RFC 5321 §4.2: 2yz done, 3yz go on, 4yz try later, 5yz refused).
 *
 * Read {@linkcode CLIENT_EXPECTATIONS} top to bottom: one entry per command
 * whose reply is awaited, in the order of a dialogue. The session
 * (`client_session.ts`) keeps a queue of these expectations, one per command
 * sent (several at once with PIPELINING, RFC 2920), takes the first when a
 * reply comes, and does what its entry says through
 * {@linkcode ClientMachine}. A `421` from any of them closes the session
 * before the table is read (RFC 5321 §3.8).
 *
 * @module
 */

import type { ClientState } from "./client_session.ts";
import type { ClientEvent, Extensions, OutgoingMessage } from "./client_session_types.ts";
import { base64, NO_EXTENSIONS, parseEhlo } from "./client_commands.ts";
import { DataEncoder } from "./data_encoder.ts";
import { isPositive, type Reply } from "./reply.ts";

/** A reply the client awaits: the command it answers, and what it needs to read it. */
export type Expect =
  | { readonly kind: "greeting" | "EHLO" | "HELO" | "STARTTLS" | "RSET" | "MAIL" | "QUIT" }
  | { readonly kind: "AUTH"; readonly mechanism: "PLAIN" | "LOGIN"; readonly step: number }
  | { readonly kind: "RCPT"; readonly index: number }
  | { readonly kind: "DATA" }
  | { readonly kind: "BDAT"; readonly last: boolean }
  /** The end of the content; in LMTP, `index` is the accepted recipient this reply is for (RFC 2033 §4.2). */
  | { readonly kind: "."; readonly index?: number };

/** The mail transaction in flight (RFC 5321 §3.3). */
export interface Transaction {
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
  /** The reply to the end of the content (in LMTP, the last one). */
  final: Reply | null;
  /** LMTP: each accepted recipient's own reply to the end of the content, by recipient index (RFC 2033 §4.2). */
  readonly lmtpReplies: (Reply | null)[];
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

/** What an entry may read and do: the client session's facts and transitions. No I/O. */
export interface ClientMachine {
  /** Our name for EHLO and HELO. */
  readonly hostname: string;
  /** Whether the session speaks LMTP (RFC 2033): LHLO, and no HELO fallback. */
  readonly lmtp: boolean;
  /** Where the session stands. */
  readonly state: ClientState;
  /** The transaction in flight, or `null`. */
  readonly transaction: Transaction | null;
  /** The credentials of an AUTH exchange in progress, or `null`. */
  readonly credentials: { readonly username: string; readonly password: string } | null;
  /** Moves to a state. */
  enter(state: ClientState): void;
  /** Sends command lines and notes the replies due (`raw`: the bytes, when not the lines). */
  send(lines: string[], expects: Expect[], raw?: string): void;
  /** Sends a SASL response, shown as `****` in traces, and notes the reply due. */
  sendSecret(text: string, expect: Expect): void;
  /** Reports an event. */
  emit(event: ClientEvent): void;
  /** Keeps the server's greeting. */
  greeted(r: Reply): void;
  /** The server is greeted: ESMTP (`extended`) or not. */
  ready(extensions: Extensions, extended: boolean): void;
  /** The server will not have us: report, then QUIT. */
  refuse(r: Reply): void;
  /** Forgets the plaintext read so far (RFC 3207 §4.2); returns how many octets. */
  clearPlaintext(): number;
  /** AUTH is over: `235` logged in, anything else refused. */
  authDone(r: Reply): void;
  /** The server broke the protocol. */
  protocolError(message: string): void;
  /** Closes the session. */
  close(): void;
  /** The server holds an open transaction: RSET before the next MAIL. */
  needsReset(): void;
  /** Sends the BDAT chunks that may go now. */
  sendChunks(t: Transaction): void;
}

/** One arrow of the client's diagram. */
export interface ClientTransition {
  /** The state it leaves. */
  readonly from: ClientState;
  /** The state it enters. */
  readonly to: ClientState;
  /** What causes it: a reply (`250`, `5yz`…) or a call. */
  readonly label: string;
}

/** One awaited reply's entry. */
export interface Expectation<K extends Expect["kind"]> {
  /** What the client waits for, in a few words. */
  readonly awaits: string;
  /** Where the rule is. */
  readonly rfc: string;
  /** The reply belongs to a mail transaction: the session moves it on once nothing is outstanding. */
  readonly inTransaction: boolean;
  /** The transition on a reply. */
  onReply(s: ClientMachine, e: Extract<Expect, { kind: K }>, r: Reply): void;
  /** Where each class of reply leads (for the diagram). */
  readonly next: readonly ClientTransition[];
}

/** The step of an AUTH exchange we cancelled with "*". */
export const CANCELLED = -1;

/** RFC 4954 §4: 334 asks for the next response; anything else ends the exchange. */
function authReply(s: ClientMachine, e: Extract<Expect, { kind: "AUTH" }>, r: Reply): void {
  const credentials = s.credentials;
  if (r.code !== 334 || credentials === null) return s.authDone(r);
  const next = e.mechanism === "LOGIN" && e.step === 0
    ? credentials.username
    : e.mechanism === "LOGIN" && e.step === 1
    ? credentials.password
    : null;
  if (next !== null) {
    return s.sendSecret(base64(next), { kind: "AUTH", mechanism: e.mechanism, step: e.step + 1 });
  }
  if (e.step !== CANCELLED) {
    // A challenge we have no answer for: "*" cancels (RFC 4954 §4), the server then says 501.
    return s.send(["*"], [{ kind: "AUTH", mechanism: e.mechanism, step: CANCELLED }]);
  }
  s.protocolError("334 after the AUTH exchange was cancelled");
}

/** The client's expectations, one entry per command whose reply it awaits. */
export const CLIENT_EXPECTATIONS: { readonly [K in Expect["kind"]]: Expectation<K> } = {
  greeting: {
    awaits: "220 greeting",
    rfc: "RFC 5321 §4.3.1",
    inTransaction: false,
    onReply: (s, _, r) => {
      s.greeted(r);
      if (r.code !== 220) return s.refuse(r); // §3.1: 554 instead of 220 means "not here"
      s.enter("hello");
      // RFC 2033 §4.1: LMTP says LHLO, whose reply reads as EHLO's.
      s.send([`${s.lmtp ? "LHLO" : "EHLO"} ${s.hostname}`], [{ kind: "EHLO" }]);
    },
    next: [{ from: "greeting", to: "hello", label: "220" }, {
      from: "greeting",
      to: "quit",
      label: "554",
    }],
  },
  EHLO: {
    awaits: "250 and the extensions",
    rfc: "RFC 5321 §4.1.1.1",
    inTransaction: false,
    onReply: (s, _, r) => {
      if (r.code === 250) return s.ready(parseEhlo(r), true);
      // §3.2: a server without EHLO; fall back to HELO (docs/smtp-pitfalls.md: EHLO, then HELO).
      // RFC 2033 §4.1: an LMTP server has no HELO to fall back to.
      if ((r.code === 500 || r.code === 502) && !s.lmtp) {
        return s.send([`HELO ${s.hostname}`], [{ kind: "HELO" }]);
      }
      s.refuse(r);
    },
    next: [{ from: "hello", to: "ready", label: "250" }, {
      from: "hello",
      to: "quit",
      label: "4yz/5yz",
    }],
  },
  HELO: {
    awaits: "250, no extensions",
    rfc: "RFC 5321 §3.2",
    inTransaction: false,
    onReply: (s, _, r) => r.code === 250 ? s.ready(NO_EXTENSIONS, false) : s.refuse(r),
    next: [],
  },
  STARTTLS: {
    awaits: "220: go ahead with TLS",
    rfc: "RFC 3207 §4",
    inTransaction: false,
    onReply: (s, _, r) => {
      if (r.code !== 220) {
        s.enter("ready");
        return s.emit({ type: "starttls-refused", reply: r });
      }
      // RFC 3207 §4.2: forget the plaintext, bytes included (response injection).
      s.enter("handshake");
      s.emit({ type: "starttls", discarded: s.clearPlaintext() });
    },
    next: [{ from: "starttls", to: "handshake", label: "220" }, {
      from: "starttls",
      to: "ready",
      label: "4yz/5yz",
    }],
  },
  AUTH: {
    awaits: "334 challenge, then 235",
    rfc: "RFC 4954 §4",
    inTransaction: false,
    onReply: authReply,
    next: [{ from: "auth", to: "ready", label: "235, 4yz/5yz" }],
  },
  RSET: {
    awaits: "250",
    rfc: "RFC 5321 §4.1.1.5",
    inTransaction: true,
    // A failed RSET shows in the MAIL reply that follows; nothing else to do.
    onReply: () => {},
    next: [],
  },
  MAIL: {
    awaits: "250: sender accepted",
    rfc: "RFC 5321 §4.1.1.2",
    inTransaction: true,
    onReply: (s, _, r) => void (s.transaction!.mailReply = r),
    next: [{ from: "envelope", to: "ready", label: "MAIL 4yz/5yz" }],
  },
  RCPT: {
    awaits: "250 or 251, per recipient",
    rfc: "RFC 5321 §4.1.1.3",
    inTransaction: true,
    onReply: (s, e, r) => {
      const t = s.transaction!;
      t.rcptReplies[e.index] = r;
      if (isPositive(r)) t.accepted++;
    },
    next: [{ from: "envelope", to: "bdat", label: "RCPT 250 (CHUNKING)" }],
  },
  DATA: {
    awaits: "354: send the content",
    rfc: "RFC 5321 §4.1.1.4",
    inTransaction: true,
    onReply: (s, _, r) => {
      const t = s.transaction!;
      const mailOk = t.mailReply !== null && isPositive(t.mailReply);
      if (r.code !== 354) {
        t.failure = r;
        if (mailOk) s.needsReset();
      } else if (t.accepted > 0 && mailOk) {
        s.enter("data");
        t.encoder = new DataEncoder({ dotStuffing: true });
        s.emit({ type: "content" });
      } else {
        // RFC 2920 §3.1: DATA accepted with no valid recipient; a lone dot ends it.
        s.enter("final");
        t.contentEnded = true;
        s.send(["."], [{ kind: "." }], ".");
      }
    },
    next: [{ from: "envelope", to: "data", label: "354" }, {
      from: "envelope",
      to: "ready",
      label: "DATA 4yz/5yz",
    }],
  },
  BDAT: {
    awaits: "250 per chunk",
    rfc: "RFC 3030 §2",
    inTransaction: true,
    onReply: (s, e, r) => {
      const t = s.transaction!;
      t.outstanding--;
      if (isPositive(r) && !e.last) return s.sendChunks(t);
      if (e.last) t.final ??= r;
      if (isPositive(r)) return;
      // RFC 3030 §2: after a refused chunk, send no more; RSET before the next MAIL.
      t.failure ??= r;
      t.queued.length = 0;
      s.needsReset();
      if (s.state === "bdat") s.enter("final");
    },
    next: [{ from: "bdat", to: "final", label: "BDAT 5yz" }, {
      from: "final",
      to: "ready",
      label: "BDAT LAST 250",
    }],
  },
  ".": {
    awaits: "250: the message is taken",
    rfc: "RFC 5321 §4.1.1.4, §6.1",
    inTransaction: true,
    onReply: (s, e, r) => {
      const t = s.transaction!;
      t.final = r;
      // RFC 2033 §4.2: one reply per accepted recipient, in RCPT order.
      if (e.index !== undefined) t.lmtpReplies[e.index] = r;
    },
    next: [{ from: "final", to: "ready", label: ". 250, 4yz/5yz" }],
  },
  QUIT: {
    awaits: "221",
    rfc: "RFC 5321 §4.1.1.10",
    inTransaction: false,
    onReply: (s) => s.close(),
    next: [{ from: "quit", to: "closed", label: "221" }],
  },
};

/** What each client state means, for the docs. */
export const CLIENT_STATES: Readonly<Record<ClientState, string>> = {
  greeting: "connected, waiting for the server's greeting",
  hello: "EHLO (or HELO) sent",
  ready: "greeted, no transaction: send a message, STARTTLS, AUTH or QUIT",
  starttls: "STARTTLS sent",
  auth: "AUTH sent, waiting for 334 or the outcome",
  handshake: "220 to STARTTLS: the adapter upgrades the connection",
  envelope: "MAIL, RCPT (and with PIPELINING, DATA) sent",
  data: "354 received: the content goes out, dot-stuffed",
  bdat: "CHUNKING: the content goes out in BDAT chunks",
  final: "the end of the content is sent: waiting for the final reply",
  quit: "QUIT sent",
  closed: "the connection is closed",
};

/** Transitions the caller makes, by calling the session. */
const CALLS: readonly ClientTransition[] = [
  { from: "ready", to: "envelope", label: "startTransaction()" },
  { from: "ready", to: "starttls", label: "startTls()" },
  { from: "ready", to: "auth", label: "authenticate()" },
  { from: "handshake", to: "hello", label: "tlsEstablished()" },
  { from: "data", to: "final", label: "endContent()" },
  { from: "bdat", to: "final", label: "endContent()" },
  { from: "ready", to: "quit", label: "quit()" },
];

/**
 * Every arrow of the client's state diagram: the calls, then each entry's `next`.
 *
 * @returns The transitions.
 */
export function clientTransitions(): ClientTransition[] {
  return [...CALLS, ...Object.values(CLIENT_EXPECTATIONS).flatMap((e) => e.next)];
}
