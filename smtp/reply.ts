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
 * Each named reply is one entry of {@linkcode REPLY_TABLE}: its code,
 * enhanced status and text, and the teaching note that `tern explain`, the
 * trace, the playground and `docs/replies.md` show for it.
 * {@linkcode REPLIES} is that table made into ready replies.
 *
 * @module
 */

import { type Note, ref } from "./rfc_note.ts";

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

/** The reply that reports a message accepted into the queue (`250 2.0.0 Ok: queued as <ID>`). */
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
  /**
   * 550 5.7.1: DMARC failed and the From: domain asks receivers to reject
   * such mail (RFC 9989 §8.3); the text names the domain.
   */
  readonly dmarcRejected: (domain: string) => Reply;
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
  /** 451 4.7.1: the account reached a sending limit; try later (RFC 5321 §4.2.5, RFC 3463 X.7.1). */
  readonly sendingLimited: (what: string) => Reply;
  /** 550 5.7.1: a milter (content filter) rejected the command or the message (SMFIR_REJECT). */
  readonly milterRejected: Reply;
  /**
   * 451 4.7.1: a milter asked to try later (SMFIR_TEMPFAIL), or is down or
   * slow and its `default_action` is `tempfail` (RFC 5321 §4.2.5).
   */
  readonly milterTempfail: Reply;
}

/**
 * A named reply's text: fixed lines for a fixed reply, or a function of the
 * case's details for one whose text varies (such as {@linkcode Replies.helo}).
 */
export type ReplyText<R> = R extends (...args: infer A) => Reply ? (...args: A) => string
  : string | readonly string[];

/** One entry of {@linkcode REPLY_TABLE}: a reply tern sends, and the rule behind it. */
export interface ReplyEntry<R> {
  /** The three-digit reply code. */
  readonly code: number;
  /** The enhanced status code (RFC 3463), when the reply has one. */
  readonly enhancedStatus?: string;
  /** The text. */
  readonly text: ReplyText<R>;
  /**
   * The teaching note for this code and enhanced status together (such as
   * `452 4.5.3`), shown by `tern explain`, the trace and the playground.
   * Replies that share a code and status (`503 5.5.1`) share one note,
   * carried by one of them.
   */
  readonly note?: Note;
}

/** The type of {@linkcode REPLY_TABLE}: one entry per name of {@linkcode Replies}. */
export type ReplyTable = { readonly [K in keyof Replies]: ReplyEntry<Replies[K]> };

/**
 * Every reply tern sends, by name, with its teaching note. Reply texts are
 * plain and helpful: students read them in transcripts.
 *
 * @example Read a reply's note
 * ```ts
 * import { REPLY_TABLE } from "./reply.ts";
 * const entry = REPLY_TABLE.tooManyRecipients;
 * console.log(entry.code, entry.enhancedStatus, entry.note?.rule);
 * // 452 4.5.3 too many recipients: send the others in another transaction
 * ```
 */
export const REPLY_TABLE: ReplyTable = {
  helo: { code: 250, text: (hostname, clientName) => `${hostname} greets ${clientName}` },
  bye: {
    code: 221,
    enhancedStatus: "2.0.0",
    text: "Bye",
    note: {
      title: "Bye",
      rule: "QUIT: the server closes the connection",
      meaning: "The session ends; the server closes the connection.",
      reference: ref(5321, "4.1.1.10"),
    },
  },
  ok: { code: 250, enhancedStatus: "2.0.0", text: "Ok" },
  noop: { code: 250, enhancedStatus: "2.0.0", text: "Ok" },
  reset: { code: 250, enhancedStatus: "2.0.0", text: "Ok: transaction reset" },
  senderOk: {
    code: 250,
    enhancedStatus: "2.1.0",
    text: "Ok: sender accepted",
    note: {
      title: "Sender accepted",
      rule: "MAIL accepted: the transaction has started",
      meaning: "The reverse-path is recorded; now RCPT, once per recipient.",
      reference: ref(5321, "4.1.1.2"),
    },
  },
  recipientOk: {
    code: 250,
    enhancedStatus: "2.1.5",
    text: "Ok: recipient accepted",
    note: {
      title: "Recipient accepted",
      rule: "RCPT accepted: one more forward-path",
      meaning: "The recipient is added to the transaction's forward-paths.",
      reference: ref(5321, "4.1.1.3"),
    },
  },
  chunkOk: { code: 250, enhancedStatus: "2.0.0", text: (size) => `Ok: ${size} octets received` },
  vrfy: {
    code: 252,
    enhancedStatus: "2.5.2",
    text: "Cannot VRFY user, but will accept message and attempt delivery",
    note: {
      title: "Cannot VRFY user",
      rule: "will not verify, but will accept mail for it",
      meaning: "The server does not say which mailboxes exist.",
      reference: ref(5321, "3.5.3"),
    },
  },
  help: {
    code: 214,
    enhancedStatus: "2.0.0",
    text: [
      "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP VRFY HELP QUIT",
      "See RFC 5321 for what each one does",
    ],
  },
  startData: {
    code: 354,
    text: "End data with <CR><LF>.<CR><LF>",
    note: {
      title: "Start mail input",
      rule: "send the content, end it with a line holding only a dot",
      meaning: "Lines of content that start with a dot get a second one (RFC 5321 §4.5.2).",
      reference: ref(5321, "4.1.1.4"),
    },
  },
  closing: { code: 421, enhancedStatus: "4.4.2", text: (why) => why },
  shuttingDown: {
    code: 421,
    enhancedStatus: "4.3.2",
    text: "Service shutting down, try again later",
    note: {
      title: "Shutting down",
      rule: "the server is stopping: try again later",
      meaning: "A server that must shut down answers 421 and closes (RFC 5321 §3.8).",
      reference: ref(5321, "3.8"),
    },
  },
  tooManyConnections: {
    code: 421,
    enhancedStatus: "4.7.0",
    text: "Too many connections, try again later",
  },
  timeout: {
    code: 421,
    enhancedStatus: "4.4.2",
    text: "Timeout waiting for input, closing connection",
    note: {
      title: "Timeout or bad connection",
      rule: "closing: the client was silent too long, or the connection is failing",
      meaning: "Each wait has its own timeout; the server waits at least 5 minutes for a " +
        "command. The client tries again later.",
      reference: ref(5321, "4.5.3.2"),
    },
  },
  tooManyRecipients: {
    code: 452,
    enhancedStatus: "4.5.3",
    text: "Too many recipients",
    note: {
      title: "Too many recipients",
      rule: "too many recipients: send the others in another transaction",
      meaning: '"Too many recipients" is 452, a transient failure, and not 552: the ' +
        "client delivers to the recipients accepted so far, then sends the rest again.",
      reference: ref(5321, "4.5.3.1.10"),
    },
  },
  storageFailed: {
    code: 451,
    enhancedStatus: "4.3.0",
    text: "Local error in processing, message not queued, try again later",
    note: {
      title: "Local error in processing",
      rule: "the message was not stored: try again later",
      meaning: "Nothing was accepted; the client keeps the message and tries again.",
      reference: ref(5321, "4.2.3"),
    },
  },
  unknownCommand: {
    code: 500,
    enhancedStatus: "5.5.2",
    text: "Command not recognized",
    note: {
      title: "Command not recognized",
      rule: "unknown command: the session goes on",
      meaning: "A server answers 500 and carries on; it never closes on an unknown command.",
      reference: ref(5321, "4.2.4"),
    },
  },
  lineTooLong: {
    code: 500,
    enhancedStatus: "5.5.2",
    text: "Line too long (see RFC 5321 §4.5.3.1)",
  },
  syntax: { code: 501, enhancedStatus: "5.5.4", text: (what) => what },
  badSequence: {
    code: 503,
    enhancedStatus: "5.5.1",
    text: (what) => what,
    note: {
      title: "Bad sequence of commands",
      rule: "not now: commands out of order",
      meaning: "Which command is legal when: EHLO first, then MAIL, RCPT, DATA.",
      reference: ref(5321, "4.1.4"),
    },
  },
  notImplemented: {
    code: 502,
    enhancedStatus: "5.5.1",
    text: "Command not implemented",
    note: {
      title: "Command not implemented",
      rule: "known, but not offered here",
      meaning: "A server never advertises a command it answers with 502.",
      reference: ref(5321, "4.2.4"),
    },
  },
  unknownParameter: {
    code: 555,
    enhancedStatus: "5.5.4",
    text: (name) => `Parameter "${name}" not recognized`,
    note: {
      title: "Parameter not recognized",
      rule: "an unknown MAIL or RCPT parameter",
      meaning: "A parameter after the address that the server does not know or offer gets " +
        "555; one it cannot honour just now gets 455.",
      reference: ref(5321, "4.1.1.11"),
    },
  },
  bareLineEnding: {
    code: 550,
    enhancedStatus: "5.6.11",
    text:
      "Message refused: bare CR or LF in the content, lines must end with CRLF (RFC 5321 §2.3.8)",
    note: {
      title: "Bare CR or LF in the content",
      rule: "lines must end with CRLF: bare CR or LF refused (SMTP smuggling)",
      meaning: "Only CRLF ends a line, so only <CRLF>.<CRLF> ends the content. A message with " +
        "a bare CR or LF is refused as a whole, so no server can be tricked into seeing a " +
        "second, forged message inside it.",
      reference: ref(5321, "2.3.8"),
    },
  },
  messageTooBig: {
    code: 552,
    enhancedStatus: "5.3.4",
    text: "Message size exceeds fixed maximum message size",
    note: {
      title: "Message too big",
      rule: "over the size limit advertised as SIZE",
      meaning: "Checked at MAIL when SIZE= declares the size, and again while the content " +
        "arrives.",
      reference: ref(1870),
    },
  },
  noSuchUser: {
    code: 550,
    enhancedStatus: "5.1.1",
    text: "No such user here",
    note: {
      title: "No such user",
      rule: "no such mailbox here",
      meaning: "A permanent failure for this recipient; the others are not affected.",
      reference: ref(3463, "3.2"),
    },
  },
  mailboxNameUnusable: {
    code: 550,
    enhancedStatus: "5.1.3",
    text: "Bad destination mailbox address: too long to be a mailbox name here",
    note: {
      title: "Bad destination mailbox address syntax",
      rule: "this address cannot name a mailbox here",
      meaning: "The local part could never be a mailbox on this server (too long for a " +
        "directory name, say). Refused at RCPT, while the client is there to be told, " +
        "rather than bounced later to a sender who may be forged.",
      reference: ref(3463, "3.2"),
    },
  },
  relayDenied: {
    code: 554,
    enhancedStatus: "5.7.1",
    text: "Relay access denied",
    note: {
      title: "Relay access denied",
      rule: "not relayed: this domain is not ours and you are not our user",
      meaning: "A server takes mail for its own domains from anyone, and for other domains " +
        "only from its own users. Otherwise it would be an open relay.",
      reference: ref(3463, "3.8"),
    },
  },
  noValidRecipients: {
    code: 554,
    enhancedStatus: "5.5.1",
    text: "No valid recipients",
    note: {
      title: "No valid recipients",
      rule: "no recipient was accepted, so no content",
      meaning: "DATA or BDAT with no accepted recipient is refused; the client must not send " +
        "the content.",
      reference: ref(5321, "3.3"),
    },
  },
  dmarcRejected: {
    code: 550,
    enhancedStatus: "5.7.1",
    text: (domain) =>
      `Message rejected: it fails DMARC and the policy of ${domain} is to reject such mail`,
    note: {
      title: "Rejected by policy: DMARC, or a filter",
      rule:
        "refused for what the message is: a DMARC fail of a p=reject domain, or a milter's verdict",
      meaning: "After the data, tern refuses with 550 5.7.1 when the domain in From: " +
        "publishes a DMARC policy of p=reject and neither its SPF nor its DKIM authenticates " +
        "the message (the domain says such mail is forged: sign with DKIM for the From: " +
        "domain, or send from a host its SPF record lists), and when a milter (a spam or " +
        "virus filter) rejects the message; the text says which.",
      reference: ref(9989, "8.3"),
    },
  },
  needsSmtputf8: {
    code: 553,
    enhancedStatus: "5.6.7",
    text: "Non-ASCII address needs the SMTPUTF8 parameter",
    note: {
      title: "Non-ASCII address without SMTPUTF8",
      rule: "a UTF-8 address needs the SMTPUTF8 parameter",
      meaning: "Internationalized addresses need SMTPUTF8 on MAIL FROM.",
      reference: ref(6531, "3.5"),
    },
  },
  loopDetected: {
    code: 554,
    enhancedStatus: "5.4.6",
    text: "Too many Received headers, mail loop suspected",
    note: {
      title: "Mail loop",
      rule: "too many Received fields: a mail loop",
      meaning: "A message that has passed through 100 or more servers is looping.",
      reference: ref(5321, "6.3"),
    },
  },
  readyForTls: {
    code: 220,
    enhancedStatus: "2.0.0",
    text: "Ready to start TLS",
    note: {
      title: "Ready to start TLS",
      rule: "STARTTLS accepted: the TLS handshake starts now",
      meaning: "After the handshake both sides forget what they knew; the client says EHLO " +
        "again (RFC 3207 §4.2).",
      reference: ref(3207, "4"),
    },
  },
  tlsAlreadyActive: { code: 503, enhancedStatus: "5.5.1", text: "TLS is already active" },
  authSucceeded: {
    code: 235,
    enhancedStatus: "2.7.0",
    text: "Authentication successful",
    note: {
      title: "Authentication succeeded",
      rule: "logged in",
      meaning: "The session now acts for the authenticated user.",
      reference: ref(4954, "6"),
    },
  },
  authFailed: {
    code: 535,
    enhancedStatus: "5.7.8",
    text: "Authentication credentials invalid",
    note: {
      title: "Authentication credentials invalid",
      rule: "AUTH: wrong user name or password",
      meaning: "Ask the user again; do not retry the same credentials.",
      reference: ref(4954, "6"),
    },
  },
  encryptionRequired: {
    code: 538,
    enhancedStatus: "5.7.11",
    text: "Encryption required for requested authentication mechanism, use STARTTLS first",
    note: {
      title: "Encryption required for requested authentication mechanism",
      rule: "AUTH: use STARTTLS first",
      meaning: "Passwords are not sent over an unencrypted connection.",
      reference: ref(4954, "6"),
    },
  },
  authRequired: {
    code: 530,
    enhancedStatus: "5.7.0",
    text: "Authentication required",
    note: {
      title: "Authentication required",
      rule: "log in (AUTH) before MAIL",
      meaning: "Submission servers take mail only from their users (RFC 6409 §4.3).",
      reference: ref(4954, "6"),
    },
  },
  alreadyAuthenticated: { code: 503, enhancedStatus: "5.5.1", text: "Already authenticated" },
  unknownMechanism: {
    code: 504,
    enhancedStatus: "5.5.4",
    text: "Unrecognized authentication type",
  },
  authCancelled: { code: 501, enhancedStatus: "5.7.0", text: "Authentication cancelled" },
  authNotBase64: {
    code: 501,
    enhancedStatus: "5.5.2",
    text: "Cannot decode the response, base64 expected",
  },
  authMalformed: {
    code: 501,
    enhancedStatus: "5.5.2",
    text: "Cannot read the credentials in the response",
  },
  authLineTooLong: {
    code: 500,
    enhancedStatus: "5.5.6",
    text: "Authentication exchange line is too long",
    note: {
      title: "Authentication exchange line is too long",
      rule: "AUTH: line too long",
      meaning: "AUTH lines may be up to 12,288 octets (RFC 4954 §4); this one was longer.",
      reference: ref(4954, "6"),
    },
  },
  authUnavailable: {
    code: 454,
    enhancedStatus: "4.7.0",
    text: "Temporary authentication failure, try again later",
    note: {
      title: "Temporary authentication failure",
      rule: "AUTH cannot be checked now: try again later",
      meaning: "The server could not check the credentials at the moment.",
      reference: ref(4954, "6"),
    },
  },
  tooManyAuthFailures: {
    code: 421,
    enhancedStatus: "4.7.0",
    text: "Too many failed authentication attempts from your address, try again later",
  },
  senderNotOwned: {
    code: 553,
    enhancedStatus: "5.7.1",
    text: (user) => `Sender address not owned by user <${user}>`,
    note: {
      title: "Sender address not owned",
      rule: "you may not send as this address",
      meaning: "A submission server checks that users send only as their own addresses " +
        "(RFC 6409 §6.1).",
      reference: ref(6409, "6.1"),
    },
  },
  earlyTalker: {
    code: 421,
    enhancedStatus: "4.7.0",
    text: "You talked before the greeting (RFC 5321 §4.3.1), closing connection",
  },
  sendingLimited: {
    code: 451,
    enhancedStatus: "4.7.1",
    text: (what) => `Sending limit reached: ${what}, try again later`,
    note: {
      title: "Sending limit reached",
      rule: "this account has sent its share for now: try again later",
      meaning: "A submission server limits how much one account may send in an hour or a day, " +
        'so a stolen password cannot send spam without end. X.7.1 is "delivery not ' +
        'authorized" (RFC 3463 §3.8); 451 is temporary (RFC 5321 §4.2.5): the mail program ' +
        "keeps the message and sends it later, so nothing is lost.",
      reference: ref(5321, "4.2.5"),
    },
  },
  // Notes: 550 5.7.1 and 451 4.7.1 carry theirs on dmarcRejected and sendingLimited.
  milterRejected: {
    code: 550,
    enhancedStatus: "5.7.1",
    text: "Rejected by a content filter",
  },
  milterTempfail: {
    code: 451,
    enhancedStatus: "4.7.1",
    text: "The content filter cannot check this now, try again later",
  },
};

/** A reply of the table, or the function that makes it, whatever its arguments. */
type NamedReply = Reply | ((...args: never[]) => Reply);

/** Makes the ready reply of one entry, once, when the module loads. */
function namedReply(entry: ReplyEntry<NamedReply>): NamedReply {
  const { code, enhancedStatus } = entry;
  const text: unknown = entry.text;
  if (typeof text === "function") {
    const make = text as (...args: never[]) => string;
    return (...args: never[]) => reply(code, enhancedStatus, make(...args));
  }
  return reply(code, enhancedStatus, ...(typeof text === "string" ? [text] : text as string[]));
}

/**
 * Named replies tern sends, made from {@linkcode REPLY_TABLE}: each is a
 * ready {@linkcode Reply}, or a function that makes one for the replies
 * whose text varies.
 *
 * @example
 * ```ts
 * import { formatReply, REPLIES } from "./reply.ts";
 * console.log(formatReply(REPLIES.noSuchUser, true)); // "550 5.1.1 No such user here\r\n"
 * ```
 */
export const REPLIES: Replies = Object.fromEntries(
  Object.entries(REPLY_TABLE).map(([name, entry]) => [name, namedReply(entry)]),
) as unknown as Replies;
