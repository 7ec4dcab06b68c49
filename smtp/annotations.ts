/**
 * What SMTP's codes and commands mean, and where the RFCs define them: one
 * table ({@linkcode ANNOTATIONS}) that `tern explain`, the browser
 * playground, the protocol trace and the docs all read. The notes on the
 * replies tern sends by name are written beside those replies, in
 * `REPLY_TABLE` (`reply.ts`), and gathered into this table from there.
 *
 * A reply carries two codes. The three-digit reply code (RFC 5321 §4.2) says
 * what the client should do next: its first digit is 2 (done), 3 (go on), 4
 * (failed for now, try again later) or 5 (failed, do not repeat as it is).
 * The enhanced status code `class.subject.detail` (RFC 3463, sent once the
 * server advertises ENHANCEDSTATUSCODES, RFC 2034) says what happened in
 * more detail: the class repeats the first digit, the subject names the area
 * (addressing, mailbox, mail system, network, protocol, content, security),
 * and the detail the precise condition.
 *
 * The texts are written for people learning SMTP: `title` is the RFC's own
 * wording, `rule` a few plain words for a one-line annotation, `meaning` a
 * fuller explanation.
 *
 * @example Annotate one step of a dialogue
 * ```ts
 * import { annotateCommand, annotateReply, formatAnnotation } from "./annotations.ts";
 *
 * console.log(formatAnnotation(annotateCommand("MAIL FROM:<alice@example.test>")));
 * // "RFC 5321 §4.1.1.2 MAIL: starts a mail transaction"
 * console.log(formatAnnotation(annotateReply({ code: 452, enhancedStatus: "4.5.3", lines: ["Too many recipients"] })));
 * // "RFC 5321 §4.5.3.1.10 452 4.5.3: too many recipients: send the others in another transaction"
 * ```
 *
 * @module
 */

import { type Reply, REPLY_TABLE } from "./reply.ts";
import { type Note, ref, type RfcReference } from "./rfc_note.ts";

// The types this module's API speaks in, for callers that import only it.
export type { Reply } from "./reply.ts";
export type { Note, RfcReference } from "./rfc_note.ts";

/** A reply code (RFC 5321 §4.2.3 and the extensions that add codes). */
export interface ReplyCodeNote extends Note {
  /** When a server sends it. */
  readonly when: string;
}

/** A command a client sends (RFC 5321 §4.1.1 and the extensions that add commands). */
export interface CommandNote extends Note {
  /** Its syntax, in the RFC's words: `"MAIL FROM:<reverse-path> [parameters]"`. */
  readonly syntax: string;
}

/** The type of {@linkcode ANNOTATIONS}. */
export interface AnnotationTable {
  /** Reply codes by number: `250`, `452`, ... */
  readonly replyCodes: Readonly<Record<number, ReplyCodeNote>>;
  /**
   * Rules behind a particular reply, more precise than its code alone: keyed
   * `"452 4.5.3"` (code and enhanced status), `"354"` (a code sent without
   * an enhanced status), or `"250 after content"` (a code in answer to one
   * command, see {@linkcode AnnotateReplyOptions}).
   */
  readonly replies: Readonly<Record<string, Note>>;
  /** Enhanced status classes (RFC 3463 §2): `"2"`, `"4"`, `"5"`. */
  readonly statusClasses: Readonly<Record<string, Note>>;
  /** Enhanced status subjects (RFC 3463 §2): `"0"` to `"7"`. */
  readonly statusSubjects: Readonly<Record<string, Note>>;
  /** Enhanced status codes by subject and detail, whatever the class: `"X.1.1"`. */
  readonly statusDetails: Readonly<Record<string, Note>>;
  /** Commands by verb: `"MAIL"`, `"STARTTLS"`, ... */
  readonly commands: Readonly<Record<string, CommandNote>>;
  /** EHLO keywords (service extensions) by keyword: `"SIZE"`, `"PIPELINING"`, ... */
  readonly extensions: Readonly<Record<string, Note>>;
  /**
   * MAIL and RCPT parameters, keyed by command and keyword: `"MAIL SIZE"`,
   * `"RCPT NOTIFY"`. The title is the parameter's syntax: `"SIZE=<size in octets>"`.
   */
  readonly parameters: Readonly<Record<string, Note>>;
}

const RFC5321_CODES = ref(5321, "4.2.3");

/**
 * The notes of the named replies, keyed by code and enhanced status as in
 * {@linkcode AnnotationTable.replies}: `"452 4.5.3"`, or `"354"` for a reply
 * without an enhanced status.
 */
function namedReplyNotes(): Record<string, Note> {
  const notes: Record<string, Note> = {};
  for (const entry of Object.values(REPLY_TABLE)) {
    if (entry.note === undefined) continue;
    const status = entry.enhancedStatus;
    notes[status === undefined ? String(entry.code) : `${entry.code} ${status}`] = entry.note;
  }
  return notes;
}

/**
 * The table: reply codes, enhanced status codes, commands, extensions and
 * parameters, each with its meaning and the RFC section that defines it.
 *
 * @example Look up a reply code and an enhanced status code
 * ```ts
 * import { ANNOTATIONS } from "./annotations.ts";
 * console.log(ANNOTATIONS.replyCodes[550]?.title);
 * // "Requested action not taken: mailbox unavailable"
 * console.log(ANNOTATIONS.statusDetails["X.1.1"]?.title); // "Bad destination mailbox address"
 * console.log(ANNOTATIONS.commands["RCPT"]?.reference); // { rfc: 5321, section: "4.1.1.3" }
 * ```
 */
export const ANNOTATIONS: AnnotationTable = {
  replyCodes: {
    211: {
      title: "System status, or system help reply",
      rule: "status information",
      meaning: "Information about the server's state, for people.",
      when: "Rarely: in answer to HELP with an argument, on some servers.",
      reference: RFC5321_CODES,
    },
    214: {
      title: "Help message",
      rule: "help text for people",
      meaning: "Information on how to use the server, useful only to a person reading it.",
      when: "In answer to HELP (RFC 5321 §4.1.1.8).",
      reference: RFC5321_CODES,
    },
    220: {
      title: "<domain> Service ready",
      rule: "service ready",
      meaning: "The server is ready: the client may go on.",
      when: "As the greeting when a connection opens (RFC 5321 §4.3.1), and in answer to " +
        "STARTTLS when the TLS handshake may start (RFC 3207 §4).",
      reference: RFC5321_CODES,
    },
    221: {
      title: "<domain> Service closing transmission channel",
      rule: "goodbye",
      meaning: "The server closes the connection, as asked.",
      when: "In answer to QUIT (RFC 5321 §4.1.1.10).",
      reference: RFC5321_CODES,
    },
    235: {
      title: "Authentication succeeded",
      rule: "logged in",
      meaning: "The AUTH exchange succeeded: the session now acts for the authenticated user.",
      when: "At the end of a successful AUTH exchange.",
      reference: ref(4954, "6"),
    },
    250: {
      title: "Requested mail action okay, completed",
      rule: "done",
      meaning: "The command succeeded. After the end of the content, it means the server has " +
        "taken responsibility for delivering the message (RFC 5321 §6.1).",
      when: "In answer to EHLO, HELO, MAIL, RCPT, RSET, NOOP, a BDAT chunk, and the end of " +
        "the content when the message is accepted.",
      reference: RFC5321_CODES,
    },
    251: {
      title: "User not local; will forward to <forward-path>",
      rule: "accepted, will be forwarded",
      meaning: "The recipient is accepted, but lives elsewhere; the server forwards the message.",
      when: "In answer to RCPT, on servers that forward (RFC 5321 §3.4).",
      reference: RFC5321_CODES,
    },
    252: {
      title: "Cannot VRFY user, but will accept message and attempt delivery",
      rule: "will not verify, but will try to deliver",
      meaning: "The server will not say whether the mailbox exists (that would help spammers " +
        "harvest addresses), but it will take mail for it.",
      when: "In answer to VRFY (RFC 5321 §3.5.3).",
      reference: RFC5321_CODES,
    },
    334: {
      title: "Server challenge",
      rule: "AUTH: send the next response",
      meaning: "An AUTH exchange goes on: the text is a base64 challenge (possibly empty), and " +
        "the client answers with a base64 line, or `*` to cancel.",
      when: "During AUTH (RFC 4954 §4).",
      reference: ref(4954, "4"),
    },
    354: {
      title: "Start mail input; end with <CRLF>.<CRLF>",
      rule: "send the content now",
      meaning: "The server is ready for the content. The client sends the message, then a line " +
        "holding a single dot. A line of content that starts with a dot gets a second dot " +
        "in front (dot-stuffing, RFC 5321 §4.5.2).",
      when: "In answer to DATA, once at least one recipient was accepted (RFC 5321 §4.1.1.4).",
      reference: RFC5321_CODES,
    },
    421: {
      title: "<domain> Service not available, closing transmission channel",
      rule: "closing the connection, try again later",
      meaning: "The server is closing the connection. A transient failure: the client tries " +
        "again later, perhaps at another MX host.",
      when: "To any command when the server must shut down, times out waiting for the client " +
        "(RFC 5321 §4.5.3.2), or has had enough of it (too many errors or connections).",
      reference: RFC5321_CODES,
    },
    432: {
      title: "A password transition is needed",
      rule: "AUTH: a password transition is needed",
      meaning: "The user must log in once with a plain mechanism before this one works.",
      when: "In answer to AUTH.",
      reference: ref(4954, "6"),
    },
    450: {
      title: "Requested mail action not taken: mailbox unavailable",
      rule: "mailbox unavailable for now, try again later",
      meaning: "The mailbox cannot take mail at the moment (busy, or blocked for a while by " +
        "policy). A transient failure: try again later.",
      when: "In answer to RCPT, or at the end of the content. Greylisting servers send it to " +
        "unknown senders on their first try.",
      reference: RFC5321_CODES,
    },
    451: {
      title: "Requested action aborted: local error in processing",
      rule: "server error, try again later",
      meaning: "Something went wrong on the server (a disk, a database, a lookup). Nothing was " +
        "accepted; the client tries again later.",
      when: "Any time the server cannot do what it should, such as when the queue cannot store " +
        "the message at the end of the content.",
      reference: RFC5321_CODES,
    },
    452: {
      title: "Requested action not taken: insufficient system storage",
      rule: "not now: no room, try again later",
      meaning: "A transient failure for lack of room. In answer to RCPT it also means " +
        '"too many recipients": the client sends the others in another transaction ' +
        "(RFC 5321 §4.5.3.1.10).",
      when: "In answer to MAIL or RCPT, or at the end of the content.",
      reference: RFC5321_CODES,
    },
    454: {
      title: "TLS not available due to temporary reason / Temporary authentication failure",
      rule: "not available now, try again later",
      meaning: "STARTTLS (RFC 3207 §4) or AUTH (RFC 4954 §6) cannot be done now; the client may " +
        "try again later.",
      when: "In answer to STARTTLS or AUTH.",
      reference: ref(3207, "4"),
    },
    455: {
      title: "Server unable to accommodate parameters",
      rule: "cannot take these parameters now",
      meaning: "The MAIL or RCPT parameters cannot be honoured at the moment; try again later.",
      when: "In answer to MAIL or RCPT.",
      reference: RFC5321_CODES,
    },
    500: {
      title: "Syntax error, command unrecognized",
      rule: "unknown command, or a line too long",
      meaning: "The server did not understand the command line at all. The session goes on: " +
        "the server does not close on an unknown command (RFC 5321 §3.8).",
      when: "In answer to a verb the server does not know, or a line over the length limit " +
        "(RFC 5321 §4.5.3.1.4).",
      reference: RFC5321_CODES,
    },
    501: {
      title: "Syntax error in parameters or arguments",
      rule: "bad arguments",
      meaning: "The command is known but its arguments are wrong, such as an address without " +
        "its angle brackets.",
      when: "In answer to a known command with bad arguments.",
      reference: RFC5321_CODES,
    },
    502: {
      title: "Command not implemented",
      rule: "known, but not offered here",
      meaning: "The server knows the command but does not offer it. A server must not " +
        "advertise a command it would answer with 502 (RFC 5321 §4.2.4).",
      when: "In answer to EXPN, or STARTTLS or AUTH where they are not offered.",
      reference: RFC5321_CODES,
    },
    503: {
      title: "Bad sequence of commands",
      rule: "not now: commands out of order",
      meaning: "The command is fine but not allowed at this point of the dialogue, such as " +
        "RCPT before MAIL (RFC 5321 §4.1.4).",
      when: "In answer to a command out of order.",
      reference: RFC5321_CODES,
    },
    504: {
      title: "Command parameter not implemented",
      rule: "parameter not offered here",
      meaning: "The command's parameter is known but not offered, such as an AUTH mechanism " +
        "the server does not support.",
      when: "In answer to a command with a parameter the server does not offer.",
      reference: RFC5321_CODES,
    },
    521: {
      title: "Host does not accept mail",
      rule: "this host takes no mail at all",
      meaning: "The server never accepts mail. A permanent failure.",
      when: "As the greeting of a host that takes no mail.",
      reference: ref(7504),
    },
    530: {
      title: "Authentication required",
      rule: "log in first (AUTH)",
      meaning: "This server takes mail only from authenticated users, such as a submission " +
        "server for people's mail programs (RFC 6409 §4.3).",
      when: 'In answer to MAIL before a successful AUTH; or, with the text "Must issue a ' +
        'STARTTLS command first", before STARTTLS (RFC 3207 §4).',
      reference: ref(4954, "6"),
    },
    534: {
      title: "Authentication mechanism is too weak",
      rule: "AUTH: mechanism too weak",
      meaning: "The chosen SASL mechanism is weaker than the server's policy allows for this " +
        "user; the client tries a stronger one.",
      when: "In answer to AUTH.",
      reference: ref(4954, "6"),
    },
    535: {
      title: "Authentication credentials invalid",
      rule: "AUTH: wrong user name or password",
      meaning: "The user name or password is wrong. The client should ask the user again " +
        "rather than retry the same credentials.",
      when: "At the end of a failed AUTH exchange.",
      reference: ref(4954, "6"),
    },
    538: {
      title: "Encryption required for requested authentication mechanism",
      rule: "AUTH: use STARTTLS first",
      meaning: "This mechanism would send the password in clear text: the server wants TLS " +
        "first.",
      when: "In answer to AUTH on an unencrypted connection.",
      reference: ref(4954, "6"),
    },
    550: {
      title: "Requested action not taken: mailbox unavailable",
      rule: "refused: mailbox unavailable or policy",
      meaning: "A permanent refusal: the mailbox does not exist, the client may not send to " +
        "it, or the command was refused for policy reasons. Do not repeat it as it is.",
      when: "In answer to RCPT for an unknown user, to MAIL or RCPT refused by policy, or " +
        "at the end of content that is refused.",
      reference: RFC5321_CODES,
    },
    551: {
      title: "User not local; please try <forward-path>",
      rule: "not here; try the address given",
      meaning: "The recipient is not handled here; the text may say where to send instead " +
        "(RFC 5321 §3.4).",
      when: "In answer to RCPT.",
      reference: RFC5321_CODES,
    },
    552: {
      title: "Requested mail action aborted: exceeded storage allocation",
      rule: "too big, or no room",
      meaning: "The message is larger than the server takes (RFC 1870), or the mailbox is " +
        "full.",
      when: "In answer to MAIL with a SIZE= over the limit, or at the end of content that is " +
        "too large.",
      reference: RFC5321_CODES,
    },
    553: {
      title: "Requested action not taken: mailbox name not allowed",
      rule: "address not allowed",
      meaning: "The address is not acceptable: wrong syntax, non-ASCII without SMTPUTF8, or a " +
        "sender the user may not use.",
      when: "In answer to MAIL or RCPT.",
      reference: RFC5321_CODES,
    },
    554: {
      title: "Transaction failed (or, as a greeting: No SMTP service here)",
      rule: "transaction failed",
      meaning: "A permanent failure of the transaction, often for policy reasons (the server " +
        "does not relay for this client). As a greeting, it means the server will not talk " +
        "to this client; it waits for QUIT (RFC 5321 §3.1).",
      when: "In answer to RCPT, DATA with no accepted recipient, the end of the content, or " +
        "as the greeting.",
      reference: RFC5321_CODES,
    },
    555: {
      title: "MAIL FROM/RCPT TO parameters not recognized or not implemented",
      rule: "unknown MAIL or RCPT parameter",
      meaning: "A parameter after the address is not one the server knows or offers " +
        "(RFC 5321 §4.1.1.11).",
      when: "In answer to MAIL or RCPT.",
      reference: RFC5321_CODES,
    },
    556: {
      title: "Domain does not accept mail",
      rule: "the domain takes no mail",
      meaning: "The recipient's domain says it takes no mail, usually with a null MX record " +
        "(RFC 7505). A permanent failure.",
      when: "In answer to RCPT, or in a bounce, for a domain with a null MX.",
      reference: ref(7504),
    },
  },

  replies: {
    // The named replies' notes live beside their texts, in REPLY_TABLE (reply.ts).
    ...namedReplyNotes(),
    // Replies that are not in REPLY_TABLE: the greeting and the queued-as reply carry
    // a text of the case, AUTH challenges are base64, and a null MX is a relay's answer.
    "220": {
      title: "Greeting",
      rule: "the greeting: the server is ready for EHLO",
      meaning: "The server's first words on a new connection; the client waits for them " +
        "before it says anything (RFC 5321 §4.3.1). A server that refuses the session greets " +
        "with 554 instead.",
      reference: ref(5321, "3.1"),
    },
    "250 after content": {
      title: "Message accepted",
      rule: "the message is accepted: the server is now responsible for delivering it",
      meaning: "The reply to the end of the content is the one that matters. After this 250 " +
        "the server must not lose the message, even if it crashes; tern answers only once " +
        "the message is on disk.",
      reference: ref(5321, "6.1"),
    },
    "334": {
      title: "AUTH challenge",
      rule: "AUTH: answer with a base64 line, or * to cancel",
      meaning: "The SASL exchange goes on.",
      reference: ref(4954, "4"),
    },
    "556 5.1.10": {
      title: "Recipient address has null MX",
      rule: "the domain publishes a null MX: it takes no mail",
      meaning: "`MX 0 .` means the domain receives no mail; the message bounces at once.",
      reference: ref(7505),
    },
  },

  statusClasses: {
    "2": {
      title: "Success",
      rule: "success",
      meaning: "The action succeeded.",
      reference: ref(3463, "2"),
    },
    "4": {
      title: "Persistent Transient Failure",
      rule: "failed for now",
      meaning: "The message as sent is valid, but a temporary condition stopped it; sending " +
        "it again later may succeed.",
      reference: ref(3463, "2"),
    },
    "5": {
      title: "Permanent Failure",
      rule: "failed for good",
      meaning: "Sending it again as it is will not succeed: the message or the destination " +
        "must change.",
      reference: ref(3463, "2"),
    },
  },

  statusSubjects: {
    "0": {
      title: "Other or Undefined Status",
      rule: "other",
      meaning: "No more precise subject is given.",
      reference: ref(3463, "2"),
    },
    "1": {
      title: "Addressing Status",
      rule: "the address",
      meaning: "About the sender's or recipient's address: its syntax or whether it is valid. " +
        "The sender can usually correct these.",
      reference: ref(3463, "2"),
    },
    "2": {
      title: "Mailbox Status",
      rule: "the mailbox",
      meaning: "About the recipient's mailbox: full, disabled, and the like. Under the " +
        "recipient's control.",
      reference: ref(3463, "2"),
    },
    "3": {
      title: "Mail System Status",
      rule: "the mail system",
      meaning: "About the destination mail system: full, shutting down, misconfigured. Under " +
        "its administrator's control.",
      reference: ref(3463, "2"),
    },
    "4": {
      title: "Network and Routing Status",
      rule: "the network or routing",
      meaning: "About reaching the destination: connections, DNS, routing, loops.",
      reference: ref(3463, "2"),
    },
    "5": {
      title: "Mail Delivery Protocol Status",
      rule: "the SMTP dialogue",
      meaning: "About the protocol itself: a command out of order, bad syntax, too many " +
        "recipients.",
      reference: ref(3463, "2"),
    },
    "6": {
      title: "Message Content or Media Status",
      rule: "the message content",
      meaning: "About the content: its format, encoding or conversion.",
      reference: ref(3463, "2"),
    },
    "7": {
      title: "Security or Policy Status",
      rule: "security or policy",
      meaning: "About what is allowed: relaying, authentication, encryption, filtering.",
      reference: ref(3463, "2"),
    },
  },

  statusDetails: {
    "X.0.0": {
      title: "Other undefined Status",
      rule: "other",
      meaning: "Only the class is known: success, transient or permanent failure.",
      reference: ref(3463, "3.1"),
    },
    "X.1.0": {
      title: "Other address status",
      rule: "about an address",
      meaning: "Something about an address; tern uses 2.1.0 to accept MAIL FROM.",
      reference: ref(3463, "3.2"),
    },
    "X.1.1": {
      title: "Bad destination mailbox address",
      rule: "no such mailbox",
      meaning: "The mailbox does not exist: the part left of the @ is wrong.",
      reference: ref(3463, "3.2"),
    },
    "X.1.2": {
      title: "Bad destination system address",
      rule: "bad destination domain",
      meaning: "The part right of the @ does not exist or takes no mail.",
      reference: ref(3463, "3.2"),
    },
    "X.1.3": {
      title: "Bad destination mailbox address syntax",
      rule: "recipient address syntax",
      meaning: "The recipient's address is not written correctly.",
      reference: ref(3463, "3.2"),
    },
    "X.1.4": {
      title: "Destination mailbox address ambiguous",
      rule: "ambiguous address",
      meaning: "The address matches more than one mailbox.",
      reference: ref(3463, "3.2"),
    },
    "X.1.5": {
      title: "Destination address valid",
      rule: "recipient valid",
      meaning: "The recipient is accepted; tern uses 2.1.5 to accept RCPT TO.",
      reference: ref(3463, "3.2"),
    },
    "X.1.6": {
      title: "Destination mailbox has moved, No forwarding address",
      rule: "mailbox moved",
      meaning: "The address was valid once but takes no mail now.",
      reference: ref(3463, "3.2"),
    },
    "X.1.7": {
      title: "Bad sender's mailbox address syntax",
      rule: "sender address syntax",
      meaning: "The sender's address is not written correctly.",
      reference: ref(3463, "3.2"),
    },
    "X.1.8": {
      title: "Bad sender's system address",
      rule: "bad sender domain",
      meaning: "The sender's domain does not exist or cannot take replies.",
      reference: ref(3463, "3.2"),
    },
    "X.1.9": {
      title: "Message relayed to non-compliant mailer",
      rule: "relayed to a system without DSN",
      meaning: "The address was valid, but the next system does not report delivery status.",
      reference: ref(3886),
    },
    "X.1.10": {
      title: "Recipient address has null MX",
      rule: "the domain takes no mail (null MX)",
      meaning: "The recipient's domain publishes `MX 0 .`: it receives no mail.",
      reference: ref(7505),
    },
    "X.2.0": {
      title: "Other or undefined mailbox status",
      rule: "about the mailbox",
      meaning: "The mailbox exists, but something about it stopped the message.",
      reference: ref(3463, "3.3"),
    },
    "X.2.1": {
      title: "Mailbox disabled, not accepting messages",
      rule: "mailbox disabled",
      meaning: "The mailbox exists but does not take messages.",
      reference: ref(3463, "3.3"),
    },
    "X.2.2": {
      title: "Mailbox full",
      rule: "mailbox full",
      meaning: "The recipient is over quota; deleting mail would make room.",
      reference: ref(3463, "3.3"),
    },
    "X.2.3": {
      title: "Message length exceeds administrative limit",
      rule: "too big for this mailbox",
      meaning: "The mailbox has a size limit smaller than the system's.",
      reference: ref(3463, "3.3"),
    },
    "X.2.4": {
      title: "Mailing list expansion problem",
      rule: "list expansion failed",
      meaning: "The address is a mailing list that could not be expanded.",
      reference: ref(3463, "3.3"),
    },
    "X.3.0": {
      title: "Other or undefined mail system status",
      rule: "about the mail system",
      meaning: "The destination system normally takes mail, but something about it stopped " +
        "this message.",
      reference: ref(3463, "3.4"),
    },
    "X.3.1": {
      title: "Mail system full",
      rule: "mail system full",
      meaning: "The system's storage is exhausted.",
      reference: ref(3463, "3.4"),
    },
    "X.3.2": {
      title: "System not accepting network messages",
      rule: "not accepting mail now",
      meaning: "The host is shutting down, overloaded or in maintenance.",
      reference: ref(3463, "3.4"),
    },
    "X.3.3": {
      title: "System not capable of selected features",
      rule: "feature not supported",
      meaning: "The message asks for features the destination does not support.",
      reference: ref(3463, "3.4"),
    },
    "X.3.4": {
      title: "Message too big for system",
      rule: "message too big",
      meaning: "The message is over the system's size limit.",
      reference: ref(3463, "3.4"),
    },
    "X.3.5": {
      title: "System incorrectly configured",
      rule: "misconfigured",
      meaning: "The system is not configured to accept this message.",
      reference: ref(3463, "3.4"),
    },
    "X.3.6": {
      title: "Requested priority was changed",
      rule: "priority changed",
      meaning: "The message was accepted with another priority than asked (MT-PRIORITY).",
      reference: ref(6710),
    },
    "X.4.0": {
      title: "Other or undefined network or routing status",
      rule: "network or routing",
      meaning: "Something went wrong in the network, and nothing more precise is known.",
      reference: ref(3463, "3.5"),
    },
    "X.4.1": {
      title: "No answer from host",
      rule: "no answer from the host",
      meaning: "The connection was not answered: the host is down or busy.",
      reference: ref(3463, "3.5"),
    },
    "X.4.2": {
      title: "Bad connection",
      rule: "bad connection",
      meaning: "The connection was made but could not complete the transaction: a timeout or " +
        "a broken connection.",
      reference: ref(3463, "3.5"),
    },
    "X.4.3": {
      title: "Directory server failure",
      rule: "DNS or directory failure",
      meaning: "A directory server, such as DNS, could not be reached; try again later.",
      reference: ref(3463, "3.5"),
    },
    "X.4.4": {
      title: "Unable to route",
      rule: "no route",
      meaning: "The routing information (such as MX records) needed for the next hop is " +
        "missing.",
      reference: ref(3463, "3.5"),
    },
    "X.4.5": {
      title: "Mail system congestion",
      rule: "congestion",
      meaning: "The mail system is congested; try again later.",
      reference: ref(3463, "3.5"),
    },
    "X.4.6": {
      title: "Routing loop detected",
      rule: "routing loop",
      meaning: "The message was forwarded too many times: a loop.",
      reference: ref(3463, "3.5"),
    },
    "X.4.7": {
      title: "Delivery time expired",
      rule: "too old: gave up",
      meaning: "The message was queued too long without being delivered.",
      reference: ref(3463, "3.5"),
    },
    "X.5.0": {
      title: "Other or undefined protocol status",
      rule: "protocol",
      meaning: "Something in the SMTP dialogue; tern uses 2.0.0 for plain successes.",
      reference: ref(3463, "3.6"),
    },
    "X.5.1": {
      title: "Invalid command",
      rule: "invalid command or out of sequence",
      meaning: "A command out of sequence or not supported.",
      reference: ref(3463, "3.6"),
    },
    "X.5.2": {
      title: "Syntax error",
      rule: "syntax error",
      meaning: "A command that could not be understood.",
      reference: ref(3463, "3.6"),
    },
    "X.5.3": {
      title: "Too many recipients",
      rule: "too many recipients",
      meaning: "More recipients than the server takes in one transaction; the rest go in " +
        "another.",
      reference: ref(3463, "3.6"),
    },
    "X.5.4": {
      title: "Invalid command arguments",
      rule: "invalid arguments",
      meaning: "A valid command with arguments out of range or not supported.",
      reference: ref(3463, "3.6"),
    },
    "X.5.5": {
      title: "Wrong protocol version",
      rule: "protocol version mismatch",
      meaning: "The two sides could not agree on a protocol version.",
      reference: ref(3463, "3.6"),
    },
    "X.5.6": {
      title: "Authentication Exchange line is too long",
      rule: "AUTH line too long",
      meaning: "An AUTH response was longer than the server accepts.",
      reference: ref(4954, "6"),
    },
    "X.6.0": {
      title: "Other or undefined media error",
      rule: "content",
      meaning: "Something about the content made the message undeliverable.",
      reference: ref(3463, "3.7"),
    },
    "X.6.1": {
      title: "Media not supported",
      rule: "media not supported",
      meaning: "The content's media type is not supported on the way.",
      reference: ref(3463, "3.7"),
    },
    "X.6.2": {
      title: "Conversion required and prohibited",
      rule: "conversion prohibited",
      meaning: "The content would have to be converted, and that is not allowed.",
      reference: ref(3463, "3.7"),
    },
    "X.6.3": {
      title: "Conversion required but not supported",
      rule: "conversion not possible",
      meaning: "The content must be converted (such as 8-bit to 7-bit) and cannot be.",
      reference: ref(3463, "3.7"),
    },
    "X.6.4": {
      title: "Conversion with loss performed",
      rule: "converted with loss",
      meaning: "The message was delivered, but a conversion lost some data.",
      reference: ref(3463, "3.7"),
    },
    "X.6.5": {
      title: "Conversion Failed",
      rule: "conversion failed",
      meaning: "A required conversion did not succeed.",
      reference: ref(3463, "3.7"),
    },
    "X.6.6": {
      title: "Message content not available",
      rule: "content not available",
      meaning: "The content could not be fetched from a remote system (BURL).",
      reference: ref(4468),
    },
    "X.6.7": {
      title: "Non-ASCII addresses not permitted for that sender/recipient",
      rule: "non-ASCII address not allowed",
      meaning: "A UTF-8 address without SMTPUTF8, or where it is not allowed.",
      reference: ref(6531),
    },
    "X.6.8": {
      title: "UTF-8 string reply is required, but not permitted by the SMTP client",
      rule: "needs a UTF-8 reply",
      meaning: "The answer would need UTF-8, which the client did not allow.",
      reference: ref(6531),
    },
    "X.6.9": {
      title: "UTF-8 header message cannot be transferred to one or more recipients",
      rule: "UTF-8 message cannot go on",
      meaning: "The next hop cannot take a message with UTF-8 headers.",
      reference: ref(6531),
    },
    "X.6.11": {
      title: "Bare CR or LF in the content (not assigned by an RFC)",
      rule: "bare CR or LF in the content",
      meaning: "Not in RFC 3463 nor in an RFC that extends it: Microsoft Exchange Online " +
        "refuses bare line feeds with 550 5.6.11, and tern does the same. The rule behind it " +
        "is RFC 5321 §2.3.8: lines end with CRLF, and CR and LF do not appear alone.",
      reference: ref(5321, "2.3.8"),
    },
    "X.7.0": {
      title: "Other or undefined security status",
      rule: "security or policy",
      meaning: "Something related to security or policy, not described further (sometimes " +
        "on purpose); also used for AUTH results.",
      reference: ref(3463, "3.8"),
    },
    "X.7.1": {
      title: "Delivery not authorized, message refused",
      rule: "not authorized",
      meaning: "The sender may not send to this destination: relaying refused, or filtered " +
        "per host or per recipient.",
      reference: ref(3463, "3.8"),
    },
    "X.7.2": {
      title: "Mailing list expansion prohibited",
      rule: "may not send to this list",
      meaning: "The sender may not send to this mailing list.",
      reference: ref(3463, "3.8"),
    },
    "X.7.3": {
      title: "Security conversion required but not possible",
      rule: "security conversion impossible",
      meaning: "A conversion between secure messaging protocols was needed and not possible.",
      reference: ref(3463, "3.8"),
    },
    "X.7.4": {
      title: "Security features not supported",
      rule: "security features not supported",
      meaning: "The message uses security features the delivery protocol does not support.",
      reference: ref(3463, "3.8"),
    },
    "X.7.5": {
      title: "Cryptographic failure",
      rule: "cryptographic failure",
      meaning: "A key or other information needed to validate or decrypt was missing. " +
        "tern's relay defers with 4.7.5 an MX host that the recipient domain's MTA-STS " +
        "policy does not list (RFC 8461 §4.1) or whose DANE TLSA lookup failed (RFC 7672 " +
        "§2.2); such hosts, and TLS sessions that failed, are counted in the daily TLS " +
        "reports to that domain (RFC 8460, `tern tls-report`).",
      reference: ref(3463, "3.8"),
    },
    "X.7.6": {
      title: "Cryptographic algorithm not supported",
      rule: "algorithm not supported",
      meaning: "The needed cryptographic algorithm is not supported.",
      reference: ref(3463, "3.8"),
    },
    "X.7.7": {
      title: "Message integrity failure",
      rule: "message altered",
      meaning: "The message was corrupted or altered on the way.",
      reference: ref(3463, "3.8"),
    },
    "X.7.8": {
      title: "Authentication credentials invalid",
      rule: "wrong credentials",
      meaning: "AUTH failed: wrong user name or password.",
      reference: ref(4954, "6"),
    },
    "X.7.9": {
      title: "Authentication mechanism is too weak",
      rule: "mechanism too weak",
      meaning: "The SASL mechanism is weaker than the server allows for this user.",
      reference: ref(4954, "6"),
    },
    "X.7.10": {
      title: "Encryption Needed",
      rule: "encryption needed",
      meaning: "A security layer such as TLS is needed for this mechanism.",
      reference: ref(5248),
    },
    "X.7.11": {
      title: "Encryption required for requested authentication mechanism",
      rule: "use TLS before AUTH",
      meaning: "The mechanism may be used only on an encrypted connection.",
      reference: ref(4954, "6"),
    },
    "X.7.12": {
      title: "A password transition is needed",
      rule: "password transition needed",
      meaning: "Log in once with a plain mechanism first.",
      reference: ref(4954, "6"),
    },
    "X.7.13": {
      title: "User Account Disabled",
      rule: "account disabled",
      meaning: "The account exists but is disabled; the user should contact the administrator.",
      reference: ref(5248),
    },
    "X.7.14": {
      title: "Trust relationship required",
      rule: "trust relationship required",
      meaning: "The server needs a configured trust relationship with a third party.",
      reference: ref(5248),
    },
    "X.7.15": {
      title: "Priority Level is too low",
      rule: "priority too low",
      meaning: "The message's priority is below what the server accepts now.",
      reference: ref(6710),
    },
    "X.7.16": {
      title: "Message is too big for the specified priority",
      rule: "too big for its priority",
      meaning: "Only smaller messages are accepted at this priority.",
      reference: ref(6710),
    },
    "X.7.17": {
      title: "Mailbox owner has changed",
      rule: "mailbox owner changed",
      meaning: "The mailbox changed owner since the date the sender gave (RRVS).",
      reference: ref(7293),
    },
    "X.7.18": {
      title: "Domain owner has changed",
      rule: "domain owner changed",
      meaning: "The domain changed owner since the date the sender gave (RRVS).",
      reference: ref(7293),
    },
    "X.7.19": {
      title: "RRVS test cannot be completed",
      rule: "RRVS check impossible",
      meaning: "The receiver cannot tell whether the mailbox changed owner.",
      reference: ref(7293),
    },
    "X.7.20": {
      title: "No passing DKIM signature found",
      rule: "no passing DKIM signature",
      meaning: "The message carries no DKIM signature that verifies.",
      reference: ref(7372),
    },
    "X.7.21": {
      title: "No acceptable DKIM signature found",
      rule: "no acceptable DKIM signature",
      meaning: "DKIM signatures verify, but none is acceptable to the receiver.",
      reference: ref(7372),
    },
    "X.7.22": {
      title: "No valid author-matched DKIM signature found",
      rule: "no DKIM signature matching the author",
      meaning: "No verifying signature matches the From address's domain.",
      reference: ref(7372),
    },
    "X.7.23": {
      title: "SPF validation failed",
      rule: "SPF failed",
      meaning: "The sending host is not allowed by the sender domain's SPF record.",
      reference: ref(7372),
    },
    "X.7.24": {
      title: "SPF validation error",
      rule: "SPF error",
      meaning: "The SPF check could not be completed.",
      reference: ref(7372),
    },
    "X.7.25": {
      title: "Reverse DNS validation failed",
      rule: "reverse DNS failed",
      meaning: "The client's address does not pass the receiver's reverse DNS check.",
      reference: ref(7372),
    },
    "X.7.26": {
      title: "Multiple authentication checks failed",
      rule: "several checks failed",
      meaning: "More than one authentication check (SPF, DKIM, ...) failed.",
      reference: ref(7372),
    },
    "X.7.27": {
      title: "Sender address has null MX",
      rule: "sender's domain takes no mail",
      meaning: "The sender's domain publishes a null MX, so bounces could not reach it.",
      reference: ref(7505),
    },
    "X.7.30": {
      title: "REQUIRETLS support required",
      rule: "REQUIRETLS needed",
      meaning: "The message requires TLS all the way, and the next hop does not offer " +
        "REQUIRETLS.",
      reference: ref(8689),
    },
  },

  commands: {
    EHLO: {
      title: "Extended HELLO",
      syntax: "EHLO <domain or address literal>",
      rule: "greets the server and asks for its extensions",
      meaning: "The client names itself; the server answers with one extension per line. A " +
        "repeated EHLO drops the transaction in progress (RFC 5321 §4.1.4).",
      reference: ref(5321, "4.1.1.1"),
    },
    HELO: {
      title: "HELLO",
      syntax: "HELO <domain>",
      rule: "greets the server, plain SMTP without extensions",
      meaning: "The old greeting: no extensions, so no enhanced status codes either.",
      reference: ref(5321, "4.1.1.1"),
    },
    MAIL: {
      title: "MAIL",
      syntax: "MAIL FROM:<reverse-path> [parameters]",
      rule: "starts a mail transaction",
      meaning: "Starts a transaction and gives the reverse-path: where failures are reported. " +
        "`MAIL FROM:<>` is the null reverse-path of bounces (RFC 5321 §4.5.5).",
      reference: ref(5321, "4.1.1.2"),
    },
    RCPT: {
      title: "RECIPIENT",
      syntax: "RCPT TO:<forward-path> [parameters]",
      rule: "adds one recipient to the transaction",
      meaning: "Each recipient is accepted or refused on its own; send one RCPT per recipient.",
      reference: ref(5321, "4.1.1.3"),
    },
    DATA: {
      title: "DATA",
      syntax: "DATA",
      rule: "asks to send the content",
      meaning: "After 354 the client sends the message, ended by a line holding only a dot. " +
        "The reply to that end is the one that matters: 250 means the server took the " +
        "message.",
      reference: ref(5321, "4.1.1.4"),
    },
    RSET: {
      title: "RESET",
      syntax: "RSET",
      rule: "drops the transaction in progress",
      meaning: "Forgets the reverse-path, forward-paths and content; the session stays open.",
      reference: ref(5321, "4.1.1.5"),
    },
    VRFY: {
      title: "VERIFY",
      syntax: "VRFY <string>",
      rule: "asks whether a mailbox exists",
      meaning: "Most servers do not say (252), so that addresses cannot be harvested.",
      reference: ref(5321, "4.1.1.6"),
    },
    EXPN: {
      title: "EXPAND",
      syntax: "EXPN <string>",
      rule: "asks for the members of a mailing list",
      meaning: "Rarely offered, for the same reason as VRFY.",
      reference: ref(5321, "4.1.1.7"),
    },
    HELP: {
      title: "HELP",
      syntax: "HELP [<string>]",
      rule: "asks for help text",
      meaning: "The answer (214) is for people.",
      reference: ref(5321, "4.1.1.8"),
    },
    NOOP: {
      title: "NOOP",
      syntax: "NOOP [<string>]",
      rule: "does nothing",
      meaning: "Answered 250; keeps the connection alive or checks the server is there.",
      reference: ref(5321, "4.1.1.9"),
    },
    QUIT: {
      title: "QUIT",
      syntax: "QUIT",
      rule: "ends the session",
      meaning: "The server answers 221 and closes the connection. A transaction not finished " +
        "is dropped.",
      reference: ref(5321, "4.1.1.10"),
    },
    STARTTLS: {
      title: "STARTTLS",
      syntax: "STARTTLS",
      rule: "upgrades the connection to TLS",
      meaning: "After 220 the TLS handshake starts; then both sides forget everything learnt " +
        "before and the client says EHLO again (RFC 3207 §4.2).",
      reference: ref(3207, "4"),
    },
    AUTH: {
      title: "AUTH",
      syntax: "AUTH <mechanism> [initial-response]",
      rule: "logs in with a SASL mechanism",
      meaning: "Runs a SASL exchange (PLAIN, LOGIN, ...): base64 lines until 235 or a " +
        "refusal. Only outside a transaction, and usually only over TLS.",
      reference: ref(4954, "4"),
    },
    BDAT: {
      title: "BINARY DATA",
      syntax: "BDAT <chunk-size> [LAST]",
      rule: "sends a chunk of exactly chunk-size octets of content",
      meaning: "No end marker and no dot-stuffing: each chunk says how long it is, and LAST " +
        "marks the end of the message.",
      reference: ref(3030, "2"),
    },
  },

  extensions: {
    PIPELINING: {
      title: "Command Pipelining",
      rule: "the client may send several commands without waiting",
      meaning: "The server answers them in order. EHLO, DATA, QUIT and the like must end a " +
        "group (RFC 2920 §3.1).",
      reference: ref(2920),
    },
    SIZE: {
      title: "Message Size Declaration",
      rule: "the largest message the server takes, in octets",
      meaning: "The client may declare a message's size with SIZE= on MAIL FROM, so an " +
        "over-size message is refused before it is sent. `SIZE 0` means no fixed limit.",
      reference: ref(1870),
    },
    "8BITMIME": {
      title: "8bit-MIMEtransport",
      rule: "content may contain 8-bit octets (BODY=8BITMIME)",
      meaning: "Lines still end with CRLF and stay under 1000 octets.",
      reference: ref(6152),
    },
    ENHANCEDSTATUSCODES: {
      title: "Enhanced Status Codes",
      rule: "replies carry an x.y.z enhanced status code",
      meaning: "Every reply after EHLO (except the greeting and the EHLO reply) carries a " +
        "code like 5.1.1 (RFC 3463) after the reply code.",
      reference: ref(2034),
    },
    SMTPUTF8: {
      title: "Internationalized Email",
      rule: "addresses and headers may be UTF-8 (SMTPUTF8 on MAIL FROM)",
      meaning: "A message with UTF-8 addresses or headers needs SMTPUTF8 on MAIL FROM.",
      reference: ref(6531),
    },
    CHUNKING: {
      title: "Chunking",
      rule: "the client may send the content with BDAT chunks",
      meaning: "An alternative to DATA: no dot-stuffing, no end marker.",
      reference: ref(3030),
    },
    BINARYMIME: {
      title: "Binary MIME",
      rule: "content may be binary (BODY=BINARYMIME, with BDAT)",
      meaning: "No line structure at all; needs CHUNKING.",
      reference: ref(3030),
    },
    STARTTLS: {
      title: "Secure SMTP over TLS",
      rule: "the client may upgrade to TLS",
      meaning: "Not offered again once TLS is up.",
      reference: ref(3207),
    },
    AUTH: {
      title: "Authentication",
      rule: "the client may log in; the SASL mechanisms offered follow",
      meaning: "Usually offered only over TLS, so passwords are not sent in clear text.",
      reference: ref(4954, "3"),
    },
    DSN: {
      title: "Delivery Status Notification",
      rule: "the client may ask for delivery reports (NOTIFY, RET, ENVID, ORCPT)",
      meaning: "Says when a report should be sent and what it contains.",
      reference: ref(3461),
    },
    HELP: {
      title: "HELP",
      rule: "the server answers HELP",
      meaning: "Not an extension, but often listed.",
      reference: ref(5321, "4.1.1.8"),
    },
    REQUIRETLS: {
      title: "Require TLS",
      rule: "the client may require TLS on every hop (REQUIRETLS on MAIL FROM)",
      meaning: "A message sent with REQUIRETLS bounces rather than travel unencrypted.",
      reference: ref(8689),
    },
    LIMITS: {
      title: "Limits",
      rule: "the server's limits, such as RCPTMAX",
      meaning: "Lets the client adapt, such as sending fewer recipients per transaction.",
      reference: ref(9422),
    },
    VRFY: {
      title: "VRFY",
      rule: "the server answers VRFY",
      meaning: "Not an extension, but sometimes listed.",
      reference: ref(5321, "4.1.1.6"),
    },
    ETRN: {
      title: "Remote Message Queue Starting",
      rule: "the client may ask the server to flush its queue for a domain",
      meaning: "For sites that connect only now and then.",
      reference: ref(1985),
    },
    DELIVERBY: {
      title: "Deliver By",
      rule: "the client may set a delivery deadline (BY= on MAIL FROM)",
      meaning: "The message is returned if it cannot be delivered in time.",
      reference: ref(2852),
    },
    "MT-PRIORITY": {
      title: "Message Transfer Priorities",
      rule: "the client may give the message a priority",
      meaning: "Servers that honour it deliver higher priorities first.",
      reference: ref(6710),
    },
    FUTURERELEASE: {
      title: "Future Message Release",
      rule: "the client may ask for delivery later",
      meaning: "The message is held until the time given.",
      reference: ref(4865),
    },
  },

  parameters: {
    "MAIL SIZE": {
      title: "SIZE=<size in octets>",
      rule: "declares the message size in octets",
      meaning: "A message larger than the server takes is refused at MAIL (552 5.3.4), " +
        "before its content is sent.",
      reference: ref(1870),
    },
    "MAIL BODY": {
      title: "BODY=7BIT|8BITMIME|BINARYMIME",
      rule: "says what the content holds: 7BIT, 8BITMIME or BINARYMIME",
      meaning: "8BITMIME needs the 8BITMIME extension (RFC 6152), BINARYMIME needs BDAT " +
        "(RFC 3030).",
      reference: ref(6152),
    },
    "MAIL SMTPUTF8": {
      title: "SMTPUTF8",
      rule: "the message uses UTF-8 addresses or headers",
      meaning: "Needed before any non-ASCII address in this transaction.",
      reference: ref(6531, "3.4"),
    },
    "MAIL RET": {
      title: "RET=FULL|HDRS",
      rule: "a delivery report returns the whole message (FULL) or its headers (HDRS)",
      meaning: "Part of DSN.",
      reference: ref(3461, "4.3"),
    },
    "MAIL ENVID": {
      title: "ENVID=<xtext>",
      rule: "the sender's own id for this transaction, returned in reports",
      meaning: "Part of DSN; written as xtext.",
      reference: ref(3461, "4.4"),
    },
    "MAIL AUTH": {
      title: "AUTH=<mailbox>",
      rule: "who submitted the message, between trusting servers",
      meaning: "`AUTH=<>` when unknown.",
      reference: ref(4954, "5"),
    },
    "MAIL REQUIRETLS": {
      title: "REQUIRETLS",
      rule: "the message must travel over TLS on every hop",
      meaning: "It bounces rather than go unencrypted.",
      reference: ref(8689),
    },
    "RCPT NOTIFY": {
      title: "NOTIFY=NEVER|SUCCESS,FAILURE,DELAY",
      rule: "when to send a delivery report: NEVER, or SUCCESS, FAILURE, DELAY",
      meaning: "Part of DSN. NEVER stands alone.",
      reference: ref(3461, "4.1"),
    },
    "RCPT ORCPT": {
      title: "ORCPT=rfc822;<address>",
      rule: "the original recipient address, for delivery reports",
      meaning: "Written `rfc822;` then the address in xtext.",
      reference: ref(3461, "4.2"),
    },
  },
};

/** A short annotation of one command or reply, for traces: see {@linkcode formatAnnotation}. */
export interface Annotation {
  /** What is annotated: `"MAIL"`, `"452 4.5.3"`, `"SIZE"`. */
  readonly subject: string;
  /** The rule, in a few plain words. */
  readonly rule: string;
  /** Where the rule is defined. */
  readonly reference: RfcReference;
  /** Finer annotations: a command's parameters, a reply's code and enhanced status, EHLO keywords. */
  readonly details: readonly Annotation[];
}

/**
 * Writes a reference the way the docs and traces do.
 *
 * @param reference The RFC and section.
 * @returns `"RFC 5321 §4.1.1.2"`, or `"RFC 1870"` without a section.
 *
 * @example Format a reference
 * ```ts
 * import { formatReference } from "./annotations.ts";
 * console.log(formatReference({ rfc: 5321, section: "4.1.1.2" })); // "RFC 5321 §4.1.1.2"
 * ```
 */
export function formatReference(reference: RfcReference): string {
  return reference.section === undefined
    ? `RFC ${reference.rfc}`
    : `RFC ${reference.rfc} §${reference.section}`;
}

/**
 * The address where a reference can be read, on the RFC Editor's site.
 *
 * @param reference The RFC and section.
 * @returns The URL, with the section's anchor when there is one.
 *
 * @example Link to a section
 * ```ts
 * import { rfcUrl } from "./annotations.ts";
 * console.log(rfcUrl({ rfc: 3207, section: "4" }));
 * // "https://www.rfc-editor.org/rfc/rfc3207.html#section-4"
 * ```
 */
export function rfcUrl(reference: RfcReference): string {
  const page = `https://www.rfc-editor.org/rfc/rfc${reference.rfc}.html`;
  return reference.section === undefined ? page : `${page}#section-${reference.section}`;
}

/**
 * Writes an annotation on one line: reference, subject, rule.
 *
 * @param annotation From {@linkcode annotateCommand} or {@linkcode annotateReply}.
 * @returns `"RFC 5321 §4.1.1.2 MAIL: starts a mail transaction"`.
 *
 * @example Format a reply's annotation
 * ```ts
 * import { annotateReply, formatAnnotation } from "./annotations.ts";
 * const r = { code: 550, enhancedStatus: "5.1.1", lines: ["No such user here"] };
 * console.log(formatAnnotation(annotateReply(r)));
 * // "RFC 3463 §3.2 550 5.1.1: no such mailbox here"
 * ```
 */
export function formatAnnotation(annotation: Annotation): string {
  return `${formatReference(annotation.reference)} ${annotation.subject}: ${annotation.rule}`;
}

/** The parts of an enhanced status code (RFC 3463 §2). */
export interface EnhancedStatus {
  /** `2`, `4` or `5`. */
  readonly class: number;
  /** 0 to 999. */
  readonly subject: number;
  /** 0 to 999. */
  readonly detail: number;
}

/**
 * Reads an enhanced status code: `class "." subject "." detail`, class 2, 4
 * or 5, subject and detail of one to three digits (RFC 3463 §2).
 *
 * @param text Such as `"5.1.1"`.
 * @returns Its parts, or `null` when it is not one.
 *
 * @example Read 5.7.1
 * ```ts
 * import { parseEnhancedStatus } from "./annotations.ts";
 * console.log(parseEnhancedStatus("5.7.1")); // { class: 5, subject: 7, detail: 1 }
 * console.log(parseEnhancedStatus("3.1.1")); // null
 * ```
 */
export function parseEnhancedStatus(text: string): EnhancedStatus | null {
  const m = /^([245])\.([0-9]{1,3})\.([0-9]{1,3})$/.exec(text);
  if (m === null) return null;
  return { class: Number(m[1]), subject: Number(m[2]), detail: Number(m[3]) };
}

/** An enhanced status code explained part by part. */
export interface StatusDescription {
  /** The code as given, such as `"5.7.1"`. */
  readonly status: string;
  /** Its class: success, transient or permanent failure. */
  readonly class: Note;
  /** Its subject, or `undefined` for a subject no RFC defines. */
  readonly subject: Note | undefined;
  /** The subject and detail together (`X.7.1`), or `undefined` when the table has no entry. */
  readonly detail: Note | undefined;
}

/**
 * Explains an enhanced status code part by part, from {@linkcode ANNOTATIONS}.
 *
 * @param status Such as `"4.5.3"`.
 * @returns The class, subject and detail notes; `null` when `status` is not an enhanced status code.
 *
 * @example Explain 4.5.3
 * ```ts
 * import { describeStatus } from "./annotations.ts";
 * const d = describeStatus("4.5.3");
 * console.log(d?.class.title, "/", d?.subject?.title, "/", d?.detail?.title);
 * // "Persistent Transient Failure / Mail Delivery Protocol Status / Too many recipients"
 * ```
 */
export function describeStatus(status: string): StatusDescription | null {
  const parsed = parseEnhancedStatus(status);
  if (parsed === null) return null;
  const table = ANNOTATIONS;
  const classNote = table.statusClasses[String(parsed.class)];
  if (classNote === undefined) return null;
  return {
    status,
    class: classNote,
    subject: table.statusSubjects[String(parsed.subject)],
    detail: table.statusDetails[`X.${parsed.subject}.${parsed.detail}`],
  };
}

function fromNote(subject: string, note: Note, details: readonly Annotation[] = []): Annotation {
  return { subject, rule: note.rule, reference: note.reference, details };
}

/**
 * Annotates an EHLO keyword line of a reply, such as `"SIZE 26214400"`.
 *
 * @param line One line of the EHLO reply after the first.
 * @returns The extension's annotation, or `null` for a keyword the table does not know.
 *
 * @example Annotate an EHLO line
 * ```ts
 * import { annotateExtension, formatAnnotation } from "./annotations.ts";
 * const a = annotateExtension("SIZE 26214400");
 * console.log(a && formatAnnotation(a));
 * // "RFC 1870 SIZE: the largest message the server takes, in octets"
 * ```
 */
export function annotateExtension(line: string): Annotation | null {
  const keyword = line.trim().split(/[ =]/, 1)[0]?.toUpperCase() ?? "";
  const note = ANNOTATIONS.extensions[keyword];
  return note === undefined ? null : fromNote(keyword, note);
}

const PATH_COMMANDS: Readonly<Record<string, string>> = { MAIL: "FROM:", RCPT: "TO:" };

/** The ESMTP parameters after the path of MAIL or RCPT, as upper-case keywords. */
function parameterKeywords(verb: string, argument: string): string[] {
  const prefix = PATH_COMMANDS[verb];
  if (prefix === undefined) return [];
  const close = argument.indexOf(">");
  if (close < 0) return [];
  return argument.slice(close + 1).split(" ")
    .filter((token) => token !== "")
    .map((token) => token.split("=", 1)[0]!.toUpperCase());
}

/**
 * Annotates a command line a client sent: the command's rule and where it is
 * defined, with the MAIL and RCPT parameters as details. An AUTH line is
 * annotated by its verb alone: nothing of its argument is repeated. Pass
 * command lines only: not content after DATA, nor the base64 responses of an
 * AUTH exchange (a session's `command` events are exactly the lines to pass).
 *
 * @param line The command line, without CRLF.
 * @returns The annotation; for a verb no RFC defines, the rule that it is answered 500.
 *
 * @example Annotate MAIL with a SIZE parameter
 * ```ts
 * import { annotateCommand, formatAnnotation } from "./annotations.ts";
 * const a = annotateCommand("MAIL FROM:<alice@example.test> SIZE=1200");
 * console.log(formatAnnotation(a)); // "RFC 5321 §4.1.1.2 MAIL: starts a mail transaction"
 * console.log(a.details.map(formatAnnotation));
 * // ["RFC 1870 SIZE=: declares the message size in octets"]
 * ```
 */
export function annotateCommand(line: string): Annotation {
  const space = line.indexOf(" ");
  const verb = (space < 0 ? line : line.slice(0, space)).trim().toUpperCase();
  const argument = space < 0 ? "" : line.slice(space + 1);
  const note = ANNOTATIONS.commands[verb];
  if (note === undefined) {
    return {
      subject: verb === "" ? "(empty line)" : verb,
      rule: "not a command this server knows: answered 500, and the session goes on",
      reference: ref(5321, "4.2.4"),
      details: [],
    };
  }
  const details: Annotation[] = [];
  for (const keyword of parameterKeywords(verb, argument)) {
    const parameter = ANNOTATIONS.parameters[`${verb} ${keyword}`];
    if (parameter !== undefined) {
      details.push(fromNote(parameter.title.includes("=") ? `${keyword}=` : keyword, parameter));
    }
  }
  if (verb === "MAIL" && /^FROM:\s*<>/i.test(argument)) {
    details.push({
      subject: "<>",
      rule: "the null reverse-path: a bounce, which never gets a bounce back",
      reference: ref(5321, "4.5.5"),
      details: [],
    });
  }
  return fromNote(verb, note, details);
}

/** Options of {@linkcode annotateReply}. */
export interface AnnotateReplyOptions {
  /**
   * What the reply answers, when the caller knows: a verb (`"MAIL"`), or
   * `"content"` for the reply to the end of the content (after DATA's final
   * dot, or BDAT LAST), whose 250 means the server took the message.
   */
  answers?: string;
}

/**
 * Annotates a reply: the most precise rule the table has for it (in answer
 * to what, when the caller says; else the code and enhanced status together,
 * such as `452 4.5.3`; else the code alone), with the code, the enhanced
 * status and, for an EHLO reply, each extension keyword as details.
 *
 * @param reply The reply, as parsed or as built from `REPLIES`.
 * @param options What the reply answers.
 * @returns The annotation; for a code the table does not know, the rule of its first digit (RFC 5321 §4.2.1).
 *
 * @example Annotate a refusal
 * ```ts
 * import { annotateReply, formatAnnotation } from "./annotations.ts";
 * const a = annotateReply({ code: 554, enhancedStatus: "5.7.1", lines: ["Relay access denied"] });
 * console.log(formatAnnotation(a));
 * // "RFC 3463 §3.8 554 5.7.1: not relayed: this domain is not ours and you are not our user"
 * console.log(a.details.map((d) => d.subject)); // ["554", "5.7.1"]
 * ```
 *
 * @example The 250 that ends a transaction
 * ```ts
 * import { annotateReply, formatAnnotation } from "./annotations.ts";
 * const r = { code: 250, enhancedStatus: "2.0.0", lines: ["Ok: queued as 4F2A9C"] };
 * console.log(formatAnnotation(annotateReply(r, { answers: "content" })));
 * // "RFC 5321 §6.1 250 2.0.0: the message is accepted: the server is now responsible for delivering it"
 * ```
 */
export function annotateReply(reply: Reply, options: AnnotateReplyOptions = {}): Annotation {
  const code = reply.code;
  const status = reply.enhancedStatus;
  const subject = status === undefined ? String(code) : `${code} ${status}`;
  const details: Annotation[] = [];
  const codeNote = ANNOTATIONS.replyCodes[code];
  if (codeNote !== undefined) details.push(fromNote(String(code), codeNote));
  if (status !== undefined) {
    const d = describeStatus(status);
    if (d?.detail !== undefined) details.push(fromNote(status, d.detail));
    else if (d !== null) {
      const rule = d.subject === undefined ? d.class.rule : `${d.class.rule}: ${d.subject.rule}`;
      details.push({ subject: status, rule, reference: ref(3463, "2"), details: [] });
    }
  }
  if (code === 250 && reply.lines.length > 1) {
    // An EHLO reply: one extension keyword per line after the first (RFC 5321 §4.1.1.1).
    for (const line of reply.lines.slice(1)) {
      const a = annotateExtension(line);
      if (a !== null) details.push(a);
    }
    return {
      subject,
      rule: "EHLO accepted: the extensions offered follow, one per line",
      reference: ref(5321, "4.1.1.1"),
      details,
    };
  }
  const answered = options.answers === undefined
    ? undefined
    : ANNOTATIONS.replies[`${code} after ${options.answers}`];
  const precise = answered ?? ANNOTATIONS.replies[subject];
  if (precise !== undefined) return fromNote(subject, precise, details);
  if (codeNote !== undefined) return fromNote(subject, codeNote, details);
  return { subject, rule: replyClassRule(code), reference: ref(5321, "4.2.1"), details };
}

/** RFC 5321 §4.2.1: what the first digit of an unknown code says. */
function replyClassRule(code: number): string {
  switch (Math.floor(code / 100)) {
    case 2:
      return "positive completion: done";
    case 3:
      return "positive intermediate: go on with the rest";
    case 4:
      return "transient negative completion: try again later";
    case 5:
      return "permanent negative completion: do not repeat as it is";
    default:
      return "not a valid reply code";
  }
}
