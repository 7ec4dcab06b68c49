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

/** RFC 3464 §2.3.6: the reply as a Diagnostic-Code, on one line. */
function diagnostic(state: RecipientState): string | null {
  const r = state.lastReply;
  if (r === null) return null;
  const text = r.text.replace(/[\r\n]+/g, " ");
  if (r.code === 0) return `X-Tern; ${text}`;
  return `smtp; ${r.code} ${r.enhancedStatus} ${text}`;
}

/** RFC 3464 §2.3.4: Status is a bare x.y.z code. */
function statusOf(state: RecipientState, action: DsnAction): string {
  const s = state.lastReply?.enhancedStatus;
  if (s && /^[245]\.\d{1,3}\.\d{1,3}$/.test(s)) return s;
  return action === "failed" ? "5.0.0" : action === "delayed" ? "4.0.0" : "2.0.0";
}

/** RFC 3461 §4.2 / RFC 3464 §2.3.1: `Original-Recipient: rfc822;addr`. */
function originalRecipient(state: RecipientState): string | null {
  if (state.orcpt) return state.orcpt.replace(/^([^;]+);\s*/, "$1; ");
  // Without ORCPT, the RCPT TO address may stand in (RFC 3464 §2.3.1), and
  // it tells the sender which alias led here.
  if (state.originalRecipient !== state.address) {
    return `${addressType(state.originalRecipient)}; ${state.originalRecipient}`;
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
    const via = r.remoteMta ? `host ${r.remoteMta} said: ` : "";
    lines.push(
      `<${r.state.address}>: ${via}${
        reply ? (reply.code ? `${reply.code} ` : "") + reply.text : r.action
      }`,
    );
  }
  lines.push("", `Queue id: ${message.queueId}`);
  return lines.join("\r\n") + "\r\n";
}

function deliveryStatus(options: DsnOptions): string {
  const { message, recipients, reportingMta, now } = options;
  const fields = [`Reporting-MTA: dns; ${reportingMta}`, `X-Tern-Queue-ID: ${message.queueId}`];
  if (message.envelope.envid !== undefined) {
    fields.push(`Original-Envelope-Id: ${message.envelope.envid}`);
  }
  fields.push(`Arrival-Date: ${formatDate(new Date(message.arrival))}`);
  let text = fields.join("\r\n") + "\r\n";
  for (const r of recipients) {
    const s = r.state;
    const block = [];
    const orcpt = originalRecipient(s);
    if (orcpt !== null) block.push(`Original-Recipient: ${orcpt}`);
    block.push(`Final-Recipient: ${addressType(s.address)}; ${s.address}`);
    block.push(`Action: ${r.action}`);
    block.push(`Status: ${statusOf(s, r.action)}`);
    if (r.remoteMta) block.push(`Remote-MTA: dns; ${r.remoteMta}`);
    const d = diagnostic(s);
    if (d !== null) block.push(`Diagnostic-Code: ${d}`);
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
    `To: <${message.envelope.reversePath}>`,
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
