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

import { formatAddressLiteral } from "../net/address_literal.ts";

/** What the Received field records. */
export interface ReceivedInfo {
  /** The name the client gave in EHLO/HELO; any text is recorded safely. */
  readonly clientName: string;
  /** The client's IP address (IPv4 or IPv6, without brackets). */
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
 * Characters a greeting name may hold and still be written bare: those of a
 * domain (with the underscores real hosts send) and of an address literal.
 * None of them can end the `from` clause (`;`), open or close a comment, or
 * fold the line.
 */
const BARE_NAME = /^[A-Za-z0-9._:\[\]-]{1,255}$/;

/** The longest odd greeting name recorded, in characters. */
const MAX_ODD_NAME = 100;

/**
 * The client's address as an RFC 5321 §4.1.3 address literal, always
 * present: `[192.0.2.1]` or `[IPv6:2001:db8::1]`.
 */
function addressLiteral(address: string): string {
  return formatAddressLiteral(address) ??
    `[${address.replace(/[^A-Za-z0-9.:]/g, "") || "unknown"}]`;
}

/**
 * Writes a greeting name as RFC 5322 §3.2.2 comment text: backslash before
 * `(`, `)` and `\`, `?` for controls, non-ASCII and `;` (which simple readers
 * take for the start of the date), cut to {@linkcode MAX_ODD_NAME}.
 */
function commentText(text: string): string {
  const cut = text.length > MAX_ODD_NAME ? `${text.slice(0, MAX_ODD_NAME)}...` : text;
  return cut.replace(/[^\x20-\x7e]|;/g, "?").replace(/[()\\]/g, "\\$&");
}

/**
 * RFC 5321 §4.4 `From-domain`: `from <name> (<[address]>)`. The address
 * literal is always there, so the field says who connected whatever the
 * client claimed. A name that is not a plain domain or literal (the server
 * refuses those at EHLO, but this function trusts nobody) is recorded as
 * `from unknown ([address]) (HELO <name>)`, escaped inside a comment, where
 * it cannot change the field's structure.
 */
function fromClause(clientName: string, clientAddress: string): string {
  const address = addressLiteral(clientAddress);
  if (clientName === "") return `from unknown (${address})`;
  if (BARE_NAME.test(clientName)) return `from ${clientName} (${address})`;
  return `from unknown (${address}) (HELO ${commentText(clientName)})`;
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
    `Received: ${fromClause(info.clientName, info.clientAddress)}`,
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

/**
 * The trace field of a message tern makes itself (a bounce, a TLS report):
 * no client, so no `from` clause (RFC 5321 §4.4).
 *
 * @param hostname tern's host name.
 * @param queueId The message's queue id.
 * @param date When it was made.
 * @returns The field, ending in CRLF.
 *
 * @example
 * ```ts
 * import { formatLocalReceived } from "./received.ts";
 * console.log(formatLocalReceived("mx.example.test", "Q1", new Date(0)));
 * // "Received: by mx.example.test (tern) id Q1; Thu, 01 Jan 1970 00:00:00 +0000\r\n"
 * ```
 */
export function formatLocalReceived(hostname: string, queueId: string, date: Date): string {
  return `Received: by ${hostname} (tern) id ${queueId}; ${formatDate(date)}\r\n`;
}
