/**
 * What the client writes, and the failures it knows before writing: the
 * EHLO reply read into {@linkcode Extensions}, the `MAIL` and `RCPT` lines
 * with the parameters the server offers, xtext, and the replies the client
 * makes up itself for a message the server cannot take. `client_session.ts`
 * exports what is public here.
 *
 * @module
 */

import type { Extensions, OutgoingMessage, OutgoingRecipient } from "./client_session_types.ts";
import { isNonAscii, parseMailbox, PathSyntaxError } from "./path.ts";
import { parseNotify } from "./dsn_parameters.ts";
import { type Reply, reply } from "./reply.ts";

const encoder = new TextEncoder();

/** The extensions after HELO: none (RFC 5321 §3.2: HELO gets no extended reply). */
export const NO_EXTENSIONS: Extensions = Object.freeze({
  keywords: new Map<string, readonly string[]>(),
  size: null,
  pipelining: false,
  eightBitMime: false,
  smtputf8: false,
  chunking: false,
  binaryMime: false,
  startTls: false,
  dsn: false,
  enhancedStatusCodes: false,
  auth: [],
});

/**
 * Reads the extensions from an EHLO reply (RFC 5321 §4.1.1.1): every line
 * after the first is `keyword *(SP param)`, case-insensitive; the legacy
 * form `AUTH=LOGIN PLAIN` is read as `AUTH LOGIN PLAIN`.
 *
 * @param r The 250 reply to EHLO.
 * @returns What the server offers.
 *
 * @example Keywords in any case, legacy AUTH, SIZE with no value
 * ```ts
 * import { parseEhlo } from "./client_session.ts";
 * const ext = parseEhlo({
 *   code: 250,
 *   lines: ["mx.example.test greets us", "size", "Pipelining", "AUTH=LOGIN", "AUTH PLAIN LOGIN"],
 * });
 * console.log(ext.size, ext.pipelining, ext.auth); // 0 true ["LOGIN", "PLAIN"]
 * ```
 */
export function parseEhlo(r: Reply): Extensions {
  const keywords = new Map<string, string[]>();
  for (const line of r.lines.slice(1)) {
    const m = /^([A-Za-z0-9][A-Za-z0-9-]*)(?:[ =](.*))?$/.exec(line.trim());
    if (m === null) continue; // not a keyword line: ignored, as §4.1.1.1 leaves no other use
    const keyword = m[1]!.toUpperCase();
    const params = (m[2] ?? "").split(/\s+/).filter((p) => p !== "");
    const known = keywords.get(keyword);
    if (known === undefined) keywords.set(keyword, params);
    else for (const p of params) if (!known.includes(p)) known.push(p);
  }
  const sizeParam = keywords.get("SIZE")?.[0];
  return {
    keywords,
    // RFC 1870 §4: SIZE with no value (or 0) means no fixed limit.
    size: keywords.has("SIZE")
      ? (sizeParam !== undefined && /^[0-9]{1,15}$/.test(sizeParam) ? Number(sizeParam) : 0)
      : null,
    pipelining: keywords.has("PIPELINING"),
    eightBitMime: keywords.has("8BITMIME"),
    smtputf8: keywords.has("SMTPUTF8"),
    chunking: keywords.has("CHUNKING"),
    binaryMime: keywords.has("BINARYMIME"),
    startTls: keywords.has("STARTTLS"),
    dsn: keywords.has("DSN"),
    enhancedStatusCodes: keywords.has("ENHANCEDSTATUSCODES"),
    auth: (keywords.get("AUTH") ?? []).map((p) => p.toUpperCase())
      .filter((p, i, all) => all.indexOf(p) === i),
  };
}

/**
 * Encodes text as xtext (RFC 3461 §4): `+` and `=`, controls, space and
 * anything beyond ASCII become `+XX` (hex of each UTF-8 octet).
 *
 * @param value The text.
 * @returns The xtext.
 *
 * @example
 * ```ts
 * import { xtext } from "./client_session.ts";
 * console.log(xtext("bob+tag@example.test")); // "bob+2Btag@example.test"
 * ```
 */
export function xtext(value: string): string {
  let out = "";
  for (const b of encoder.encode(value)) {
    out += b >= 0x21 && b <= 0x7e && b !== 0x2b && b !== 0x3d
      ? String.fromCharCode(b)
      : "+" + b.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

/** Keeps xtext as it is, but escapes what cannot stand in an esmtp-value (RFC 5321 §4.1.2). */
function asEsmtpValue(value: string): string {
  let out = "";
  for (const b of encoder.encode(value)) {
    out += b >= 0x21 && b <= 0x7e && b !== 0x3d
      ? String.fromCharCode(b)
      : "+" + b.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

// Replies the client makes up itself, for failures known before MAIL.
export const LOCAL = {
  tooBig: (size: number, limit: number) =>
    reply(
      552,
      "5.3.4",
      `Message size ${size} exceeds the fixed maximum message size ${limit} of the receiving server (RFC 1870)`,
    ),
  needs8bit: reply(
    554,
    "5.6.3",
    "Message has 8-bit content but the receiving server does not offer 8BITMIME, and it is not converted (RFC 6152)",
  ),
  needsBinary: reply(
    554,
    "5.6.3",
    "Message has binary content but the receiving server does not offer BINARYMIME and CHUNKING (RFC 3030)",
  ),
  needsSmtputf8: reply(
    553,
    "5.6.7",
    "Message needs SMTPUTF8 but the receiving server does not offer it, and there is no downgrade (RFC 6531 §3.2)",
  ),
  badSender: (why: string) => reply(553, "5.1.7", `Cannot send from this reverse-path: ${why}`),
  badRecipient: (why: string) => reply(553, "5.1.3", `Cannot send to this forward-path: ${why}`),
  badParameter: (what: string) => reply(501, "5.5.4", `Cannot send this DSN parameter: ${what}`),
  incomplete: reply(451, "4.4.2", "Transaction did not complete"),
};

/** Base64 of the UTF-8 octets of a string (RFC 4954 §4: SASL responses are base64). */
export function base64(text: string): string {
  let binary = "";
  for (const b of encoder.encode(text)) binary += String.fromCharCode(b);
  return btoa(binary);
}

/** `MAIL FROM:<path>` with the parameters the server offers (RFC 5321 §4.1.1.2). */
export function mailLine(m: OutgoingMessage, ext: Extensions): string {
  let line = `MAIL FROM:<${m.reversePath}>`;
  if (ext.size !== null) line += ` SIZE=${m.size}`; // RFC 1870 §6
  if (m.body === "8BITMIME") line += " BODY=8BITMIME"; // RFC 6152 §2
  if (m.body === "BINARYMIME") line += " BODY=BINARYMIME"; // RFC 3030 §3
  const needsUtf8 = m.smtputf8 || isNonAscii(m.reversePath) ||
    m.recipients.some((r) => isNonAscii(r.address));
  if (needsUtf8) line += " SMTPUTF8"; // RFC 6531 §3.4
  if (m.requireTls === true) line += " REQUIRETLS"; // RFC 8689 §4.1
  if (ext.dsn) {
    // RFC 3461 §4.3, §4.4: only to a server that offers DSN.
    if (m.ret !== undefined) line += ` RET=${m.ret}`;
    if (m.envid !== undefined && m.envid !== "") line += ` ENVID=${asEsmtpValue(m.envid)}`;
  }
  return line;
}

/** `RCPT TO:<path>` with the DSN parameters when offered, or the reply refusing it here. */
export function rcptLine(r: OutgoingRecipient, ext: Extensions): string | Reply {
  if (!/^postmaster$/i.test(r.address)) {
    try {
      parseMailbox(r.address);
    } catch (error: unknown) {
      if (error instanceof PathSyntaxError) return LOCAL.badRecipient(error.message);
      throw error;
    }
  }
  let line = `RCPT TO:<${r.address}>`;
  if (!ext.dsn) return line;
  if (r.notify !== undefined && r.notify.length > 0) {
    // RFC 3461 §4.1: NEVER, or any of SUCCESS, FAILURE, DELAY: the rule the server checks.
    const written = r.notify.join(",").toUpperCase();
    if (parseNotify(written) === null) return LOCAL.badParameter(`NOTIFY=${written}`);
    line += ` NOTIFY=${written}`;
  }
  if (r.orcpt !== undefined && r.orcpt !== "") {
    // RFC 3461 §4.2: ORCPT=addr-type;xtext
    line += ` ORCPT=${r.orcpt.includes(";") ? asEsmtpValue(r.orcpt) : "rfc822;" + xtext(r.orcpt)}`;
  }
  return line;
}

/**
 * The failure known before MAIL, if any (RFC 1870, RFC 6152, RFC 3030, RFC 6531).
 *
 * @param m The message.
 * @param ext What the server offers.
 * @param useChunking Whether this client would send BDAT.
 * @returns The reply to report for every recipient, or `null`.
 */
export function checkMessage(
  m: OutgoingMessage,
  ext: Extensions,
  useChunking: boolean,
): Reply | null {
  if (m.reversePath !== "") {
    try {
      parseMailbox(m.reversePath);
    } catch (error: unknown) {
      if (error instanceof PathSyntaxError) return LOCAL.badSender(error.message);
      throw error;
    }
  }
  const needsUtf8 = m.smtputf8 || isNonAscii(m.reversePath) ||
    m.recipients.some((r) => isNonAscii(r.address));
  if (needsUtf8 && !ext.smtputf8) return LOCAL.needsSmtputf8;
  if (m.body === "8BITMIME" && !ext.eightBitMime) return LOCAL.needs8bit;
  if (m.body === "BINARYMIME" && !(ext.binaryMime && ext.chunking && useChunking)) {
    return LOCAL.needsBinary;
  }
  // RFC 1870 §6: do not send what the server has said it will refuse.
  if (ext.size !== null && ext.size > 0 && m.size > ext.size) {
    return LOCAL.tooBig(m.size, ext.size);
  }
  return null;
}
