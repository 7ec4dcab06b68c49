/**
 * Delivery status notifications (RFC 3464), the "bounces" an MTA sends back
 * to the reverse-path when it cannot deliver (RFC 5321 §4.5.5, §6.2).
 *
 * A DSN is a `multipart/report; report-type=delivery-status` message
 * (RFC 6522) of three parts:
 *
 * 1. a `text/plain` explanation for people;
 * 2. a `message/delivery-status` part for programs: one block of fields about
 *    the message (`Reporting-MTA`, `Arrival-Date`, ...), then one block per
 *    recipient (`Final-Recipient`, `Action`, `Status`, `Diagnostic-Code`, ...);
 * 3. the original message's header section (`text/rfc822-headers`), or the
 *    whole message (`message/rfc822`) when the sender asked for it with
 *    `RET=FULL` (RFC 3461 §4.3).
 *
 * It is sent from the null reverse-path `<>`, so it can never cause another
 * bounce: "MUST NOT send error messages in response to error messages"
 * (RFC 5321 §4.5.5). For a message sent with SMTPUTF8, the parts are
 * `message/global-delivery-status` and `message/global-headers` (RFC 6533).
 *
 * @module
 */

import { isNonAscii } from "../smtp/path.ts";
import { formatDate } from "../smtp/received.ts";
import type { DsnNotify, QueuedMessage, RecipientState } from "./types.ts";

/** RFC 3464 §2.3.3: what happened to a recipient. */
export type DsnAction = "failed" | "delayed" | "delivered" | "relayed" | "expanded";

/** One recipient to report on. */
export interface DsnRecipient {
  /** The recipient and its last reply. */
  readonly state: RecipientState;
  /** What happened. */
  readonly action: DsnAction;
  /** The host that gave the reply, when it came from another MTA (RFC 3464 §2.3.5). */
  readonly remoteMta?: string;
}

/** What {@linkcode dsnStream} needs. */
export interface DsnOptions {
  /** The message reported on. */
  readonly message: QueuedMessage;
  /** The recipients reported on. */
  readonly recipients: readonly DsnRecipient[];
  /** Our host name (`Reporting-MTA`, `From: MAILER-DAEMON@...`). */
  readonly reportingMta: string;
  /** When the report is made. */
  readonly now: Date;
  /** The original content: its header section, or all of it for RET=FULL, is returned. */
  readonly content: () => ReadableStream<Uint8Array>;
  /** The MIME boundary (random by default; fixed in tests). */
  readonly boundary?: string;
}

/**
 * RFC 3461 §4.1: whether the sender asked to hear about this outcome. Without
 * NOTIFY, failures are reported and delays may be.
 *
 * @param notify The recipient's NOTIFY keywords, or `undefined`.
 * @param action The outcome.
 * @returns Whether to include the recipient in a DSN.
 *
 * @example
 * ```ts
 * import { shouldNotify } from "./dsn.ts";
 * console.log(shouldNotify(undefined, "failed")); // true
 * console.log(shouldNotify(["NEVER"], "failed")); // false
 * console.log(shouldNotify(["SUCCESS"], "delivered")); // true
 * ```
 */
export function shouldNotify(notify: readonly DsnNotify[] | undefined, action: DsnAction): boolean {
  const wanted = notify ?? ["FAILURE", "DELAY"];
  if (wanted.includes("NEVER")) return false;
  switch (action) {
    case "failed":
      return wanted.includes("FAILURE");
    case "delayed":
      return wanted.includes("DELAY");
    case "delivered":
    case "relayed":
    case "expanded":
      return wanted.includes("SUCCESS");
  }
}

const encoder = new TextEncoder();
const CRLF_CRLF = [0x0d, 0x0a, 0x0d, 0x0a];

/**
 * Reads a message's header section: everything up to and including the
 * empty line, at most `limit` octets.
 *
 * @param content The message.
 * @param limit The most octets to keep.
 * @returns The header section.
 *
 * @example
 * ```ts
 * import { readHeaderSection } from "./dsn.ts";
 * const stream = new Blob(["Subject: hi\r\n\r\nbody\r\n"]).stream();
 * console.log(new TextDecoder().decode(await readHeaderSection(stream))); // "Subject: hi\r\n\r\n"
 * ```
 */
export async function readHeaderSection(
  content: ReadableStream<Uint8Array>,
  limit = 256 * 1024,
): Promise<Uint8Array> {
  const out = new Uint8Array(limit);
  let length = 0;
  const reader = content.getReader();
  try {
    while (length < limit) {
      const { value, done } = await reader.read();
      if (done) break;
      const take = Math.min(value.length, limit - length);
      out.set(value.subarray(0, take), length);
      const searchFrom = Math.max(0, length - 3);
      length += take;
      for (let i = searchFrom; i + 3 < length; i++) {
        if (
          out[i] === CRLF_CRLF[0] && out[i + 1] === CRLF_CRLF[1] && out[i + 2] === CRLF_CRLF[2] &&
          out[i + 3] === CRLF_CRLF[3]
        ) {
          return out.slice(0, i + 4);
        }
      }
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  return out.slice(0, length);
}

/**
 * RFC 5322 §2.1.1: lines SHOULD be at most 78 characters; fields are folded
 * there (RFC 3464 §2.1.2: the delivery-status fields follow RFC 822 syntax).
 */
const FOLD_AT = 78;
/**
 * A run of characters without a space is cut into pieces of at most this many
 * octets, so that no line can pass the 998 octets RFC 5322 §2.1.1 (and
 * RFC 5321 §4.5.3.1.6) allow: a next hop refuses such a bounce, and as it
 * comes from `<>`, nobody hears of it.
 */
const MAX_WORD = 500;
/** Octets kept of a reply's text in a report; the rest is dropped, marked. */
const MAX_TEXT = 1000;
/** Marks a text cut at {@linkcode MAX_TEXT}. */
const CUT = "...";
/** C0 controls, DEL and the C1 controls (U+0080–U+009F). */
// deno-lint-ignore no-control-regex
const CONTROL = /[\x00-\x1f\x7f-\x9f]/g;
/** Line breaks and tabs: each run becomes one space. */
const BREAKS = /[\r\n\t]+/g;

function octets(text: string): number {
  return encoder.encode(text).length;
}

/**
 * Text from elsewhere (a next hop's reply, an error message), made safe for
 * a header field or a line of the report: no CR, LF or other control
 * character is left (a CR LF would start a forged field, an ESC would reach
 * the reader's terminal), and at most {@linkcode MAX_TEXT} octets remain.
 * Outside an SMTPUTF8 report, non-ASCII becomes `?` too (RFC 3464 §2.1.2:
 * `message/delivery-status` is US-ASCII; RFC 6533 allows UTF-8 only in
 * `message/global-delivery-status`).
 */
function cleanText(text: string, utf8: boolean): string {
  let out = text.replace(BREAKS, " ").replace(CONTROL, "?").toWellFormed();
  if (!utf8) out = out.replace(/[^\x20-\x7e]/gu, "?");
  return truncate(out.trim(), MAX_TEXT);
}

/** Cuts `text` to at most `limit` octets, at a character boundary, marking the cut. */
function truncate(text: string, limit: number): string {
  if (octets(text) <= limit) return text;
  let out = "";
  let size = octets(CUT);
  for (const char of text) {
    size += octets(char);
    if (size > limit) break;
    out += char;
  }
  return out + CUT;
}

/** Cuts a word longer than {@linkcode MAX_WORD} octets into pieces, at character boundaries. */
function splitLongWord(word: string): string[] {
  if (octets(word) <= MAX_WORD) return [word];
  const pieces: string[] = [];
  let piece = "";
  let size = 0;
  for (const char of word) {
    const n = octets(char);
    if (size + n > MAX_WORD) {
      pieces.push(piece);
      piece = "";
      size = 0;
    }
    piece += char;
    size += n;
  }
  pieces.push(piece);
  return pieces;
}

/**
 * Breaks a line of clean text (no CR or LF) at spaces into lines of about
 * `width` characters, each after the first starting with `indent`. A word
 * longer than {@linkcode MAX_WORD} octets is cut, so every line stays well
 * under 998 octets.
 */
function wrap(text: string, width: number, indent: string): string[] {
  const [head = "", ...words] = text.split(" ").flatMap(splitLongWord);
  const lines: string[] = [];
  let line = head;
  // The first line keeps its second word (a field's name stays with its
  // value); a continuation line keeps at least one.
  let room = 1;
  for (const word of words) {
    if (room <= 0 && line.length + 1 + word.length > width) {
      lines.push(line);
      line = indent + word;
      room = 0;
    } else {
      line = `${line} ${word}`;
      room--;
    }
  }
  lines.push(line);
  return lines;
}

/**
 * One header field, folded (RFC 5322 §2.2.3): CRLF and a space before the
 * word that would pass {@linkcode FOLD_AT}, so unfolding gives the value back.
 */
function field(name: string, value: string): string {
  const [first, ...rest] = wrap(`${name}: ${value}`, FOLD_AT, "");
  return [first, ...rest.map((l) => " " + l)].join("\r\n");
}

/**
 * An address or id for a field: kept when it is printable (UTF-8 allowed in
 * an SMTPUTF8 report), else xtext-encoded (RFC 3461 §4) so that no octet
 * of it can break the field. Intake refuses such values; this guards what
 * was stored earlier or made elsewhere.
 */
function safeValue(value: string, utf8: boolean): string {
  // deno-lint-ignore no-control-regex
  const unsafe = utf8 ? /[\x00-\x1f\x7f-\x9f]/ : /[^\x20-\x7e]/;
  if (!unsafe.test(value) && value.toWellFormed() === value) return value;
  let out = "";
  for (const b of encoder.encode(value.toWellFormed())) {
    out += b >= 0x21 && b <= 0x7e && b !== 0x2b && b !== 0x3d
      ? String.fromCharCode(b)
      : "+" + b.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

/** A host name from elsewhere (a next hop's): printable ASCII, no spaces. */
function safeHost(host: string): string {
  return host.replace(/[^\x21-\x7e]/g, "?").slice(0, 255);
}

/** RFC 3464 §2.3.6: the reply as a Diagnostic-Code (folded by {@linkcode field}). */
function diagnostic(state: RecipientState, utf8: boolean): string | null {
  const r = state.lastReply;
  if (r === null) return null;
  const text = cleanText(r.text, utf8);
  if (r.code === 0) return `X-Tern; ${text}`;
  const status = /^[245]\.\d{1,3}\.\d{1,3}$/.test(r.enhancedStatus) ? `${r.enhancedStatus} ` : "";
  return `smtp; ${r.code} ${status}${text}`;
}

/** The class of Status each Action must have (RFC 3464 §2.3.3, §2.3.4; RFC 3463 §3.1). */
const CLASS_OF: Record<DsnAction, "2" | "4" | "5"> = {
  failed: "5",
  delayed: "4",
  delivered: "2",
  relayed: "2",
  expanded: "2",
};

/**
 * RFC 3464 §2.3.4: Status is a bare x.y.z code whose class agrees with the
 * Action: "failed" is 5.x.x, "delayed" 4.x.x, the others 2.x.x. A transient
 * 4.y.z that reached `queue.max_age` is now a permanent failure, so it
 * becomes 5.y.z with the same subject and detail (RFC 3463 §3.1).
 *
 * @param state The recipient, with its last reply.
 * @param action What is reported.
 * @returns The Status.
 *
 * @example
 * ```ts
 * import { dsnStatus } from "./dsn.ts";
 * const state = {
 *   address: "b@example.net", originalRecipient: "b@example.net", mailbox: null, status: "bounced" as const,
 *   attempts: 9, lastAttempt: 0, lastReply: { code: 451, enhancedStatus: "4.3.0", text: "Try later" },
 * };
 * console.log(dsnStatus(state, "failed")); // "5.3.0"
 * ```
 */
export function dsnStatus(state: RecipientState, action: DsnAction): string {
  const wanted = CLASS_OF[action];
  const m = /^([245])\.(\d{1,3})\.(\d{1,3})$/.exec(state.lastReply?.enhancedStatus ?? "");
  if (m === null) return `${wanted}.0.0`;
  if (m[1] === wanted) return m[0];
  // A success reported with a failure's detail would say nothing true.
  if (wanted === "2") return "2.0.0";
  return `${wanted}.${m[2]}.${m[3]}`;
}

/** RFC 3461 §4.2 / RFC 3464 §2.3.1: `Original-Recipient: rfc822;addr`. */
function originalRecipient(state: RecipientState, utf8: boolean): string | null {
  if (state.orcpt) {
    const semi = state.orcpt.indexOf(";");
    const type = state.orcpt.slice(0, Math.max(semi, 0));
    const address = state.orcpt.slice(semi + 1).replace(/^\s+/, "");
    return `${/^[A-Za-z0-9-]+$/.test(type) ? type : "unknown"}; ${safeValue(address, utf8)}`;
  }
  // Without ORCPT, the RCPT TO address may stand in (RFC 3464 §2.3.1), and
  // it tells the sender which alias led here.
  if (state.originalRecipient !== state.address) {
    return `${addressType(state.originalRecipient)}; ${safeValue(state.originalRecipient, utf8)}`;
  }
  return null;
}

function addressType(address: string): string {
  // RFC 6533 §3: "utf-8" address type for internationalized addresses.
  return isNonAscii(address) ? "utf-8" : "rfc822";
}

function humanText(options: DsnOptions): string {
  const { message, recipients, reportingMta } = options;
  const failed = recipients.filter((r) => r.action === "failed");
  const delayed = recipients.filter((r) => r.action === "delayed");
  const lines = [
    `This is the mail system at host ${reportingMta}.`,
    "",
  ];
  if (failed.length > 0) {
    lines.push(
      "Your message could not be delivered to one or more recipients.",
      "It is attached below. This failure is permanent: please do not resend",
      "the message to these addresses without fixing the problem first.",
      "",
    );
  } else if (delayed.length > 0) {
    lines.push(
      "Your message has not yet been delivered to one or more recipients.",
      "The mail system will keep trying; you do not need to resend it.",
      "",
    );
  } else {
    lines.push("Your message was delivered to the recipients below, as you asked to be told.", "");
  }
  for (const r of recipients) {
    const reply = r.state.lastReply;
    const via = r.remoteMta ? `host ${safeHost(r.remoteMta)} said: ` : "";
    // The part is UTF-8 (its Content-Type says so), so only controls go.
    const said = reply
      ? (reply.code ? `${reply.code} ` : "") + cleanText(reply.text, true)
      : r.action;
    lines.push(...wrap(`<${safeValue(r.state.address, true)}>: ${via}${said}`, 76, "    "));
  }
  lines.push("", `Queue id: ${message.queueId}`);
  return lines.join("\r\n") + "\r\n";
}

function deliveryStatus(options: DsnOptions): string {
  const { message, recipients, reportingMta, now } = options;
  const utf8 = message.envelope.smtputf8;
  const fields = [`Reporting-MTA: dns; ${reportingMta}`, `X-Tern-Queue-ID: ${message.queueId}`];
  if (message.envelope.envid !== undefined) {
    // RFC 3464 §2.2.1: the ENVID as given, decoded; printable by intake.
    fields.push(field("Original-Envelope-Id", safeValue(message.envelope.envid, false)));
  }
  fields.push(`Arrival-Date: ${formatDate(new Date(message.arrival))}`);
  let text = fields.join("\r\n") + "\r\n";
  for (const r of recipients) {
    const s = r.state;
    const block = [];
    const orcpt = originalRecipient(s, utf8);
    if (orcpt !== null) block.push(field("Original-Recipient", orcpt));
    block.push(
      field("Final-Recipient", `${addressType(s.address)}; ${safeValue(s.address, utf8)}`),
    );
    block.push(`Action: ${r.action}`);
    block.push(`Status: ${dsnStatus(s, r.action)}`);
    if (r.remoteMta) block.push(`Remote-MTA: dns; ${safeHost(r.remoteMta)}`);
    const d = diagnostic(s, utf8);
    if (d !== null) block.push(field("Diagnostic-Code", d));
    block.push(
      `Last-Attempt-Date: ${formatDate(s.lastAttempt === null ? now : new Date(s.lastAttempt))}`,
    );
    text += "\r\n" + block.join("\r\n") + "\r\n";
  }
  return text;
}

function subject(recipients: readonly DsnRecipient[]): string {
  if (recipients.some((r) => r.action === "failed")) return "Undelivered Mail Returned to Sender";
  if (recipients.some((r) => r.action === "delayed")) return "Delayed Mail (still being retried)";
  return "Successful Mail Delivery Report";
}

/**
 * Builds a DSN as a stream (the original message may be large when RET=FULL).
 *
 * @param options The message, the recipients, who reports, the content.
 * @returns The DSN's content, CRLF line endings throughout.
 *
 * @example A bounce for one recipient
 * ```ts
 * import { dsnStream } from "./dsn.ts";
 * const stream = dsnStream({
 *   message: {
 *     queueId: "Q1", arrival: 0, nextAttempt: 0, held: false, size: 20, clientAddress: "127.0.0.1",
 *     envelope: { reversePath: "a@example.test", forwardPaths: ["b@example.net"], body: "7BIT", smtputf8: false },
 *     recipients: [],
 *   },
 *   recipients: [{
 *     action: "failed",
 *     state: {
 *       address: "b@example.net", originalRecipient: "b@example.net", mailbox: null, status: "bounced",
 *       attempts: 1, lastAttempt: 0, lastReply: { code: 550, enhancedStatus: "5.1.1", text: "No such user" },
 *     },
 *   }],
 *   reportingMta: "mx.example.test",
 *   now: new Date(0),
 *   content: () => new Blob(["Subject: hi\r\n\r\nbody\r\n"]).stream(),
 *   boundary: "B",
 * });
 * const text = await new Response(stream).text();
 * console.log(text.includes("Status: 5.1.1")); // true
 * ```
 */
export function dsnStream(options: DsnOptions): ReadableStream<Uint8Array> {
  const { message, reportingMta, now } = options;
  const boundary = options.boundary ?? `${message.queueId}.${crypto.randomUUID()}/${reportingMta}`;
  const full = message.envelope.ret === "FULL";
  const utf8 = message.envelope.smtputf8;
  const statusType = utf8 ? "message/global-delivery-status" : "message/delivery-status";
  const returnedType = full
    ? (utf8 ? "message/global" : "message/rfc822")
    : (utf8 ? "message/global-headers" : "text/rfc822-headers");
  const head = [
    `From: Mail Delivery System <MAILER-DAEMON@${reportingMta}>`,
    `To: <${safeValue(message.envelope.reversePath, utf8)}>`,
    `Subject: ${subject(options.recipients)}`,
    `Date: ${formatDate(now)}`,
    `Message-ID: <${message.queueId}.${now.getTime()}@${reportingMta}>`,
    // RFC 3834 §5: an automatic reply, so autoresponders stay quiet.
    "Auto-Submitted: auto-replied",
    "MIME-Version: 1.0",
    `Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary="${boundary}"`,
    "",
    "This is a MIME-encapsulated message.",
    "",
    `--${boundary}`,
    "Content-Description: Notification",
    "Content-Type: text/plain; charset=utf-8",
    "Content-Transfer-Encoding: 8bit",
    "",
    humanText(options),
    `--${boundary}`,
    "Content-Description: Delivery report",
    `Content-Type: ${statusType}`,
    "",
    deliveryStatus(options),
    `--${boundary}`,
    `Content-Description: ${full ? "Undelivered message" : "Undelivered message headers"}`,
    `Content-Type: ${returnedType}`,
    ...(full ? ["Content-Transfer-Encoding: 8bit"] : []),
    "",
    "",
  ].join("\r\n");
  const tail = `\r\n--${boundary}--\r\n`;
  let stage = 0;
  let reader: ReadableStreamDefaultReader<Uint8Array> | null = null;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (stage === 0) {
        controller.enqueue(encoder.encode(head));
        stage = 1;
        return;
      }
      if (stage === 1) {
        if (!full) {
          controller.enqueue(await readHeaderSection(options.content()));
          stage = 2;
          return;
        }
        reader ??= options.content().getReader();
        const { value, done } = await reader.read();
        if (!done) {
          controller.enqueue(value);
          return;
        }
        stage = 2;
        return;
      }
      controller.enqueue(encoder.encode(tail));
      controller.close();
    },
    async cancel() {
      await reader?.cancel();
    },
  });
}
