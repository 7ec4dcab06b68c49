/**
 * SMTP replies (RFC 5321 §4.2) and the ones tern sends, by name.
 *
 * A reply is a three-digit code, an optional enhanced status code
 * (RFC 2034, values from RFC 3463) and one or more lines of text. The first
 * digit says what the client should do next:
 *
 * - `2yz` done, carry on;
 * - `3yz` go on with the rest (354 after DATA, 334 during AUTH);
 * - `4yz` transient failure, try again later;
 * - `5yz` permanent failure, do not repeat the same command.
 *
 * @module
 */

/** One SMTP reply, as sent by a server (RFC 5321 §4.2). */
export interface Reply {
  /** The three-digit reply code, 200–599. */
  readonly code: number;
  /** The enhanced status code, `"class.subject.detail"` (RFC 3463), when there is one. */
  readonly enhancedStatus?: string;
  /** The text lines; a multi-line reply has more than one (RFC 5321 §4.2.1). */
  readonly lines: readonly string[];
}

/**
 * Builds a reply.
 *
 * @param code The three-digit reply code.
 * @param enhancedStatus The RFC 3463 status, or `undefined` for none.
 * @param lines The text, one string per line.
 * @returns The reply.
 *
 * @example Build a reply
 * ```ts
 * import { reply } from "./reply.ts";
 * const r = reply(250, "2.1.0", "Sender ok");
 * console.log(r.code); // 250
 * ```
 */
export function reply(
  code: number,
  enhancedStatus: string | undefined,
  ...lines: string[]
): Reply {
  const text = lines.length === 0 ? [""] : lines;
  return enhancedStatus === undefined
    ? { code, lines: text }
    : { code, enhancedStatus, lines: text };
}

/**
 * RFC 5321 §4.2.1: a 2yz reply means the command succeeded.
 *
 * @param r The reply.
 * @returns Whether the reply is a positive completion.
 */
export function isPositive(r: Reply): boolean {
  return r.code >= 200 && r.code < 300;
}

/**
 * RFC 5321 §4.2.1: a 4yz reply means "try again later".
 *
 * @param r The reply.
 * @returns Whether the failure is transient.
 */
export function isTransient(r: Reply): boolean {
  return r.code >= 400 && r.code < 500;
}

/**
 * RFC 5321 §4.2.1: a 5yz reply means "do not repeat this as it is".
 *
 * @param r The reply.
 * @returns Whether the failure is permanent.
 */
export function isPermanent(r: Reply): boolean {
  return r.code >= 500 && r.code < 600;
}

/**
 * Formats a reply for the wire: every line but the last is `code-text`, the
 * last `code text` (RFC 5321 §4.2.1). With `enhanced`, each line carries the
 * enhanced status code after the reply code (RFC 2034 §4).
 *
 * @param r The reply.
 * @param enhanced Whether ENHANCEDSTATUSCODES is in force.
 * @returns The reply as CRLF-terminated text.
 *
 * @example A multi-line reply
 * ```ts
 * import { formatReply, reply } from "./reply.ts";
 * console.log(formatReply(reply(250, undefined, "mx.example.test", "PIPELINING"), false));
 * // "250-mx.example.test\r\n250 PIPELINING\r\n"
 * ```
 */
export function formatReply(r: Reply, enhanced: boolean): string {
  const status = enhanced && r.enhancedStatus !== undefined ? r.enhancedStatus + " " : "";
  let out = "";
  r.lines.forEach((line, i) => {
    const sep = i === r.lines.length - 1 ? " " : "-";
    out += `${r.code}${sep}${status}${line}`.trimEnd() + "\r\n";
  });
  return out;
}

/** The reply that reports a message accepted into the queue (CONTRACT: `250 2.0.0 Ok: queued as <ID>`). */
export function queuedReply(queueId: string): Reply {
  return reply(250, "2.0.0", `Ok: queued as ${queueId}`);
}

/** The type of {@linkcode REPLIES}: each reply tern sends, with the rule behind it. */
export interface Replies {
  /** 250 to HELO, never the extended reply (RFC 5321 §4.1.1.1, §3.2). */
  readonly helo: (hostname: string, clientName: string) => Reply;
  /** 221 to QUIT (RFC 5321 §4.1.1.10). */
  readonly bye: Reply;
  /** A plain 250. */
  readonly ok: Reply;
  /** 250 to NOOP (RFC 5321 §4.1.1.9). */
  readonly noop: Reply;
  /** 250 to RSET (RFC 5321 §4.1.1.5). */
  readonly reset: Reply;
  /** 250 2.1.0 to MAIL (RFC 3463 X.1.0: other address status). */
  readonly senderOk: Reply;
  /** 250 2.1.5 to RCPT (RFC 3463 X.1.5: destination address valid). */
  readonly recipientOk: Reply;
  /** 250 to a BDAT chunk that is not the last (RFC 3030 §2). */
  readonly chunkOk: (size: number) => Reply;
  /** 252 to VRFY: we do not verify, but will try to deliver (RFC 5321 §3.5.3). */
  readonly vrfy: Reply;
  /** 214 to HELP (RFC 5321 §4.1.1.8). */
  readonly help: Reply;
  /** 354 to DATA: send the content (RFC 5321 §4.1.1.4). */
  readonly startData: Reply;
  /** 421: the server closes the connection (RFC 5321 §3.8). */
  readonly closing: (why: string) => Reply;
  /** 421 4.3.2 while shutting down (RFC 3463 X.3.2: system not accepting messages). */
  readonly shuttingDown: Reply;
  /** 421 4.7.0 when the connection limits are reached. */
  readonly tooManyConnections: Reply;
  /** 421 4.4.2 when the client is silent too long (RFC 5321 §4.5.3.2). */
  readonly timeout: Reply;
  /** 452 4.5.3: too many recipients is 452, not 552 (RFC 5321 §4.5.3.1.10). */
  readonly tooManyRecipients: Reply;
  /** 451 4.3.0: the store could not take the message; nothing was acknowledged. */
  readonly storageFailed: Reply;
  /** 500 5.5.2 to a verb we do not know (RFC 5321 §4.2.4). */
  readonly unknownCommand: Reply;
  /** 500 5.5.2 to a command line over the limit (RFC 5321 §4.5.3.1.4). */
  readonly lineTooLong: Reply;
  /** 501 5.5.4: bad arguments. */
  readonly syntax: (what: string) => Reply;
  /** 503 5.5.1: a command out of order (RFC 5321 §4.1.4). */
  readonly badSequence: (what: string) => Reply;
  /** 502 5.5.1: recognized, not offered here (RFC 5321 §4.2.4). */
  readonly notImplemented: Reply;
  /** 555 5.5.4: an unknown MAIL/RCPT parameter (RFC 5321 §4.2.3). */
  readonly unknownParameter: (name: string) => Reply;
  /** 550 5.6.11: bare CR or LF in the content, the SMTP smuggling defence (RFC 5321 §2.3.8). */
  readonly bareLineEnding: Reply;
  /** 552 5.3.4: over the SIZE limit (RFC 1870 §6). */
  readonly messageTooBig: Reply;
  /** 550 5.1.1: no such local mailbox (RFC 3463 X.1.1). */
  readonly noSuchUser: Reply;
  /**
   * 550 5.1.3: a local address that can never name a mailbox here, such as a
   * local part too long for a directory name (RFC 3463 X.1.3).
   */
  readonly mailboxNameUnusable: Reply;
  /** 554 5.7.1: we do not relay for this client (RFC 3463 X.7.1). */
  readonly relayDenied: Reply;
  /** 554 5.5.1: DATA or BDAT with no accepted recipient (RFC 5321 §3.3). */
  readonly noValidRecipients: Reply;
  /** 553 5.6.7: a non-ASCII address without SMTPUTF8 (RFC 6531 §3.5). */
  readonly needsSmtputf8: Reply;
  /** 554 5.4.6: too many Received fields, a mail loop (RFC 5321 §6.3). */
  readonly loopDetected: Reply;
  /** 220 2.0.0 to STARTTLS: start the TLS handshake now (RFC 3207 §4). */
  readonly readyForTls: Reply;
  /** 503 5.5.1 to STARTTLS when TLS is already up (RFC 3207 §4.2: it is no longer offered). */
  readonly tlsAlreadyActive: Reply;
  /** 235 2.7.0: AUTH succeeded (RFC 4954 §6). */
  readonly authSucceeded: Reply;
  /** 535 5.7.8: wrong user name or password (RFC 4954 §6). */
  readonly authFailed: Reply;
  /** 538 5.7.11: AUTH only over an encrypted connection (RFC 4954 §6, RFC 8314 §3). */
  readonly encryptionRequired: Reply;
  /** 530 5.7.0: this listener takes mail only after AUTH (RFC 4954 §6, RFC 6409 §4.3). */
  readonly authRequired: Reply;
  /** 503 5.5.1: a second AUTH after a successful one (RFC 4954 §4). */
  readonly alreadyAuthenticated: Reply;
  /** 504 5.5.4: a SASL mechanism we do not offer (RFC 4954 §4). */
  readonly unknownMechanism: Reply;
  /** 501 5.7.0: the client cancelled the exchange with `*` (RFC 4954 §4). */
  readonly authCancelled: Reply;
  /** 501 5.5.2: a response that is not base64 (RFC 4954 §4). */
  readonly authNotBase64: Reply;
  /** 501 5.5.2: base64, but not a message the mechanism understands (RFC 4616 §2). */
  readonly authMalformed: Reply;
  /** 500 5.5.6: an AUTH line over 12,288 octets (RFC 4954 §4). */
  readonly authLineTooLong: Reply;
  /** 454 4.7.0: AUTH could not be checked now (RFC 4954 §6). */
  readonly authUnavailable: Reply;
  /** 421 4.7.0: too many failed AUTH attempts from this address; the connection closes. */
  readonly tooManyAuthFailures: Reply;
  /** 553 5.7.1: an authenticated user sending as an address that is not theirs (RFC 6409 §6.1). */
  readonly senderNotOwned: (user: string) => Reply;
  /** 421 4.7.0: the client talked before the greeting (RFC 5321 §3.1, §4.3.1). */
  readonly earlyTalker: Reply;
}

/**
 * Named replies tern sends. Reply texts are plain and helpful: students read
 * them in transcripts.
 *
 * @example
 * ```ts
 * import { formatReply, REPLIES } from "./reply.ts";
 * console.log(formatReply(REPLIES.noSuchUser, true)); // "550 5.1.1 No such user here\r\n"
 * ```
 */
export const REPLIES: Replies = {
  helo: (hostname, clientName) => reply(250, undefined, `${hostname} greets ${clientName}`),
  bye: reply(221, "2.0.0", "Bye"),
  ok: reply(250, "2.0.0", "Ok"),
  noop: reply(250, "2.0.0", "Ok"),
  reset: reply(250, "2.0.0", "Ok: transaction reset"),
  senderOk: reply(250, "2.1.0", "Ok: sender accepted"),
  recipientOk: reply(250, "2.1.5", "Ok: recipient accepted"),
  chunkOk: (size) => reply(250, "2.0.0", `Ok: ${size} octets received`),
  vrfy: reply(252, "2.5.2", "Cannot VRFY user, but will accept message and attempt delivery"),
  help: reply(
    214,
    "2.0.0",
    "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP VRFY HELP QUIT",
    "See RFC 5321 for what each one does",
  ),
  startData: reply(354, undefined, "End data with <CR><LF>.<CR><LF>"),
  closing: (why) => reply(421, "4.4.2", why),
  shuttingDown: reply(421, "4.3.2", "Service shutting down, try again later"),
  tooManyConnections: reply(421, "4.7.0", "Too many connections, try again later"),
  timeout: reply(421, "4.4.2", "Timeout waiting for input, closing connection"),
  tooManyRecipients: reply(452, "4.5.3", "Too many recipients"),
  storageFailed: reply(
    451,
    "4.3.0",
    "Local error in processing, message not queued, try again later",
  ),
  unknownCommand: reply(500, "5.5.2", "Command not recognized"),
  lineTooLong: reply(500, "5.5.2", "Line too long (see RFC 5321 §4.5.3.1)"),
  syntax: (what) => reply(501, "5.5.4", what),
  badSequence: (what) => reply(503, "5.5.1", what),
  notImplemented: reply(502, "5.5.1", "Command not implemented"),
  unknownParameter: (name) => reply(555, "5.5.4", `Parameter "${name}" not recognized`),
  bareLineEnding: reply(
    550,
    "5.6.11",
    "Message refused: bare CR or LF in the content, lines must end with CRLF (RFC 5321 §2.3.8)",
  ),
  messageTooBig: reply(552, "5.3.4", "Message size exceeds fixed maximum message size"),
  noSuchUser: reply(550, "5.1.1", "No such user here"),
  mailboxNameUnusable: reply(
    550,
    "5.1.3",
    "Bad destination mailbox address: too long to be a mailbox name here",
  ),
  relayDenied: reply(554, "5.7.1", "Relay access denied"),
  noValidRecipients: reply(554, "5.5.1", "No valid recipients"),
  needsSmtputf8: reply(553, "5.6.7", "Non-ASCII address needs the SMTPUTF8 parameter"),
  loopDetected: reply(554, "5.4.6", "Too many Received headers, mail loop suspected"),
  readyForTls: reply(220, "2.0.0", "Ready to start TLS"),
  tlsAlreadyActive: reply(503, "5.5.1", "TLS is already active"),
  authSucceeded: reply(235, "2.7.0", "Authentication successful"),
  authFailed: reply(535, "5.7.8", "Authentication credentials invalid"),
  encryptionRequired: reply(
    538,
    "5.7.11",
    "Encryption required for requested authentication mechanism, use STARTTLS first",
  ),
  authRequired: reply(530, "5.7.0", "Authentication required"),
  alreadyAuthenticated: reply(503, "5.5.1", "Already authenticated"),
  unknownMechanism: reply(504, "5.5.4", "Unrecognized authentication type"),
  authCancelled: reply(501, "5.7.0", "Authentication cancelled"),
  authNotBase64: reply(501, "5.5.2", "Cannot decode the response, base64 expected"),
  authMalformed: reply(501, "5.5.2", "Cannot read the credentials in the response"),
  authLineTooLong: reply(500, "5.5.6", "Authentication exchange line is too long"),
  authUnavailable: reply(454, "4.7.0", "Temporary authentication failure, try again later"),
  tooManyAuthFailures: reply(
    421,
    "4.7.0",
    "Too many failed authentication attempts from your address, try again later",
  ),
  senderNotOwned: (user) => reply(553, "5.7.1", `Sender address not owned by user <${user}>`),
  earlyTalker: reply(
    421,
    "4.7.0",
    "You talked before the greeting (RFC 5321 §4.3.1), closing connection",
  ),
};
