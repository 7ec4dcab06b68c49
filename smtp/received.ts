/**
 * The `Received:` trace field (RFC 5321 §4.4), added on top of every message
 * a server accepts, never changing the ones already there:
 *
 * ```
 * Received: from client.example.test ([192.0.2.1])
 * 	by mx.example.test (tern) with ESMTPS id 0J1Q2W3E4R5T6Y
 * 	(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)
 * 	for <bob@example.test>; Sun, 29 Nov 2026 19:23:18 +0000
 * ```
 *
 * Counting these fields is how loops are found (§6.3).
 *
 * @module
 */

/** What the Received field records. */
export interface ReceivedInfo {
  /** The name the client gave in EHLO/HELO. */
  readonly clientName: string;
  /** The client's IP address. */
  readonly clientAddress: string;
  /** Our host name. */
  readonly hostname: string;
  /** The queue id. */
  readonly queueId: string;
  /** Whether the client used EHLO. */
  readonly isExtended: boolean;
  /** Whether the transaction used SMTPUTF8 (RFC 6531 §3.7.3). */
  readonly smtputf8: boolean;
  /** The TLS protocol and cipher, or `null`. */
  readonly tls: { readonly protocol: string; readonly cipher: string } | null;
  /** Whether the client authenticated (RFC 3848: the `A` in ESMTPA). */
  readonly authenticated: boolean;
  /** The recipient, named only when there is exactly one (RFC 5321 §4.4 `For`; more would leak Bcc). */
  readonly recipient: string | null;
  /** When the message was received. */
  readonly date: Date;
}

const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/**
 * Formats a date as RFC 5322 §3.3 `date-time`, in UTC.
 *
 * @param date The moment.
 * @returns Such as `Sun, 29 Nov 2026 19:23:18 +0000`.
 *
 * @example
 * ```ts
 * import { formatDate } from "./received.ts";
 * console.log(formatDate(new Date(0))); // "Thu, 01 Jan 1970 00:00:00 +0000"
 * ```
 */
export function formatDate(date: Date): string {
  const p = (n: number) => String(n).padStart(2, "0");
  return `${DAYS[date.getUTCDay()]}, ${p(date.getUTCDate())} ${
    MONTHS[date.getUTCMonth()]
  } ${date.getUTCFullYear()} ` +
    `${p(date.getUTCHours())}:${p(date.getUTCMinutes())}:${p(date.getUTCSeconds())} +0000`;
}

/**
 * The `with` protocol name: SMTP or ESMTP, then S for TLS and A for AUTH
 * (RFC 3848), or UTF8SMTP... for SMTPUTF8 (RFC 6531 §3.7.3).
 *
 * @param info The session facts.
 * @returns Such as `ESMTPS`.
 */
export function protocolName(
  info: Pick<ReceivedInfo, "isExtended" | "smtputf8" | "tls" | "authenticated">,
): string {
  const base = info.smtputf8 ? "UTF8SMTP" : info.isExtended ? "ESMTP" : "SMTP";
  if (base === "SMTP") return "SMTP";
  return base + (info.tls ? "S" : "") + (info.authenticated ? "A" : "");
}

/** Keeps header text printable and on one line. */
function clean(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/[\x00-\x1f\x7f]/g, "?");
}

/**
 * Builds the Received field, folded, ending with CRLF.
 *
 * @param info What to record.
 * @returns The header field.
 *
 * @example
 * ```ts
 * import { formatReceived } from "./received.ts";
 * const field = formatReceived({
 *   clientName: "client.test", clientAddress: "127.0.0.1", hostname: "mx.example.test",
 *   queueId: "0J1Q2W3E4R5T6Y", isExtended: true, smtputf8: false, tls: null,
 *   authenticated: false, recipient: "bob@example.test", date: new Date(0),
 * });
 * console.log(field.split("\r\n")[0]); // "Received: from client.test ([127.0.0.1])"
 * ```
 */
export function formatReceived(info: ReceivedInfo): string {
  const lines = [
    `Received: from ${clean(info.clientName) || "unknown"} ([${info.clientAddress}])`,
    `\tby ${info.hostname} (tern) with ${protocolName(info)} id ${info.queueId}`,
  ];
  if (info.tls) {
    lines.push(`\t(using ${clean(info.tls.protocol)} with cipher ${clean(info.tls.cipher)})`);
  }
  const date = formatDate(info.date);
  if (info.recipient !== null) lines.push(`\tfor <${clean(info.recipient)}>; ${date}`);
  else {
    lines[lines.length - 1] += ";";
    lines.push(`\t${date}`);
  }
  return lines.join("\r\n") + "\r\n";
}
