/**
 * A light parse of a received message: its header fields (RFC 5322 §2.2,
 * unfolded), and the text a program usually wants from it (the first
 * text/plain part, decoded). It is deliberately not a full MIME parser: no
 * attachments, no HTML, no address lists. For those, hand
 * {@linkcode ParsedMessage} `raw` content to a MIME library.
 *
 * @module
 */

import {
  decodeBase64,
  decodeCharset,
  decodeEncodedWords,
  decodeQuotedPrintable,
} from "./encoded_words.ts";

/** One header field, as it came (name), unfolded (value). */
export interface HeaderField {
  /** The field name as written, such as `Subject`. */
  readonly name: string;
  /**
   * The value, unfolded (RFC 5322 §2.2.3) and trimmed; for Subject, From,
   * To, Cc and Reply-To, with RFC 2047 encoded-words decoded.
   */
  readonly value: string;
}

/** What {@linkcode parseMessage} finds in a message. */
export interface ParsedMessage {
  /** Every header field, in order. */
  readonly headers: readonly HeaderField[];
  /** The Subject, decoded, or `undefined` without one. */
  readonly subject: string | undefined;
  /** The Message-ID as written (with its angle brackets), or `undefined` without one. */
  readonly messageId: string | undefined;
  /**
   * The text, with line ends as `\n`: the first text/plain part that is not
   * an attachment, decoded from quoted-printable or base64 and from its
   * charset, when the message is MIME; the whole body when it is not.
   * `undefined` when a MIME message has no such part.
   */
  readonly text: string | undefined;
}

/** Fields whose encoded-words are decoded (RFC 2047 §5: unstructured text and phrases). */
const DECODED_FIELDS = new Set(["subject", "from", "to", "cc", "reply-to"]);

/** How deep multipart nesting is followed; real mail stays far below. */
const MAX_DEPTH = 8;

/**
 * Parses a message's header fields and finds its text.
 *
 * @param raw The message content, as received (CRLF line ends).
 * @returns The header fields, subject, Message-ID and text.
 *
 * @example Parse a small MIME message
 * ```ts
 * import { parseMessage } from "./parse_message.ts";
 * const raw = new TextEncoder().encode(
 *   "Subject: =?utf-8?Q?Caf=C3=A9?=\r\nMIME-Version: 1.0\r\n" +
 *     "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n" +
 *     "\r\nOne caf=C3=A9, please.\r\n",
 * );
 * const parsed = parseMessage(raw);
 * console.log(parsed.subject, parsed.text); // "Café" "One café, please.\n"
 * ```
 */
export function parseMessage(raw: Uint8Array): ParsedMessage {
  // RFC 6532: header fields may be UTF-8; other 8-bit octets become U+FFFD.
  const { headers, body } = splitEntity(new TextDecoder().decode(raw));
  const first = (name: string) => headers.find((h) => h.name.toLowerCase() === name)?.value;
  const isMime = first("mime-version") !== undefined || first("content-type") !== undefined;
  const text = isMime ? findText(headers, body, raw, 0) : body.replace(/\r\n/g, "\n");
  return { headers, subject: first("subject"), messageId: first("message-id"), text };
}

/** Splits an entity at its first empty line into unfolded header fields and the body. */
function splitEntity(text: string): { headers: HeaderField[]; body: string } {
  const end = text.search(/\r?\n\r?\n/);
  const head = end < 0 ? text : text.slice(0, end);
  const body = end < 0 ? "" : text.slice(end).replace(/^\r?\n\r?\n/, "");
  const headers: HeaderField[] = [];
  // RFC 5322 §2.2.3: a line starting with whitespace continues the field above.
  for (const field of head.split(/\r?\n(?![ \t])/)) {
    const colon = field.indexOf(":");
    if (colon <= 0) continue; // not a field (RFC 5322 §3.6.8 needs a name and a colon)
    const name = field.slice(0, colon).trim();
    const unfolded = field.slice(colon + 1).replace(/\r?\n(?=[ \t])/g, "").trim();
    const value = DECODED_FIELDS.has(name.toLowerCase()) ? decodeEncodedWords(unfolded) : unfolded;
    headers.push({ name, value });
  }
  return { headers, body };
}

/** A Content-Type (or Content-Disposition) value: `type/subtype; name=value; ...` (RFC 2045 §5.1). */
function parseParameterized(value: string): { type: string; params: Map<string, string> } {
  const parts = value.match(/(?:[^;"]|"(?:[^"\\]|\\.)*")+/g) ?? [""];
  const params = new Map<string, string>();
  for (const part of parts.slice(1)) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    let v = part.slice(eq + 1).trim();
    if (v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1).replace(/\\(.)/g, "$1");
    params.set(part.slice(0, eq).trim().toLowerCase(), v);
  }
  return { type: parts[0]!.trim().toLowerCase(), params };
}

/** The first text/plain, non-attachment part of an entity, decoded; depth-first. */
function findText(
  headers: readonly HeaderField[],
  body: string,
  raw: Uint8Array | null,
  depth: number,
): string | undefined {
  const field = (name: string) => headers.find((h) => h.name.toLowerCase() === name)?.value;
  // RFC 2045 §5.2: no Content-Type means text/plain; charset=us-ascii.
  const { type, params } = parseParameterized(field("content-type") ?? "text/plain");
  const disposition = parseParameterized(field("content-disposition") ?? "inline").type;
  if (type.startsWith("multipart/")) {
    const boundary = params.get("boundary");
    if (boundary === undefined || depth >= MAX_DEPTH) return undefined;
    for (const part of splitMultipart(body, boundary)) {
      const entity = splitEntity(part);
      const found = findText(entity.headers, entity.body, null, depth + 1);
      if (found !== undefined) return found;
    }
    return undefined;
  }
  if (type !== "text/plain" || disposition === "attachment") return undefined;
  const encoding = (field("content-transfer-encoding") ?? "7bit").toLowerCase();
  const charset = params.get("charset") ?? "us-ascii";
  const octets = encoding === "quoted-printable"
    ? decodeQuotedPrintable(body)
    : encoding === "base64"
    ? safeBase64(body)
    : raw !== null
    ? bodyOctets(raw)
    : new TextEncoder().encode(body);
  const text = decodeCharset(charset, octets) ?? new TextDecoder().decode(octets);
  return text.replace(/\r\n/g, "\n");
}

/** The octets after the header section, so an 8-bit single-part body keeps its charset. */
function bodyOctets(raw: Uint8Array): Uint8Array {
  for (let i = 0; i + 3 < raw.length; i++) {
    if (raw[i] === 13 && raw[i + 1] === 10 && raw[i + 2] === 13 && raw[i + 3] === 10) {
      return raw.subarray(i + 4);
    }
  }
  return new Uint8Array();
}

function safeBase64(body: string): Uint8Array {
  try {
    return decodeBase64(body);
  } catch {
    return new TextEncoder().encode(body);
  }
}

/**
 * The body parts of a multipart body (RFC 2046 §5.1.1): between `--boundary`
 * lines, up to `--boundary--`; the preamble and epilogue are dropped. The
 * CRLF before a delimiter belongs to the delimiter.
 */
function splitMultipart(body: string, boundary: string): string[] {
  const lines = body.split(/\r?\n/);
  const parts: string[] = [];
  let current: string[] | null = null;
  for (const line of lines) {
    const trimmed = line.replace(/[ \t]+$/, ""); // §5.1.1: whitespace may follow the boundary
    if (trimmed === `--${boundary}--`) {
      if (current !== null) parts.push(current.join("\r\n"));
      return parts;
    }
    if (trimmed === `--${boundary}`) {
      if (current !== null) parts.push(current.join("\r\n"));
      current = [];
    } else current?.push(line);
  }
  if (current !== null) parts.push(current.join("\r\n")); // no closing delimiter: keep what came
  return parts;
}
