/**
 * The types `ServerSession` speaks in: its states, the events it
 * reports, what each reply answers, and its options. `server_session.ts`
 * exports them all; they live here so the command table
 * (`server_commands.ts`) can use them too.
 *
 * @module
 */

import type { Parameters } from "./command.ts";
import type { Envelope } from "./envelope.ts";
import type { Reply } from "./reply.ts";
import type { SaslCredentials, SaslMechanism } from "./sasl.ts";

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
