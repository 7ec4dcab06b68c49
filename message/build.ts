/**
 * Builds an Internet message (RFC 5322) with MIME bodies (RFC 2045–2049)
 * from a few options: addresses, subject, text and HTML alternatives,
 * attachments and inline images. The result is ready for SMTP DATA, with the
 * envelope beside it.
 *
 * @module
 */

import { formatDate } from "../smtp/received.ts";
import {
  type Address,
  type AddressInput,
  formatAddress,
  formatAddressList,
  parseAddress,
  parseAddressList,
} from "./address_header.ts";
import { encodeUnstructured } from "./encoded_word.ts";
import { foldHeader, MAX_LINE_OCTETS } from "./header_fold.ts";
import { formatParameter } from "./rfc2231.ts";
import { chooseTransferEncoding, encodeBase64Lines, encodeBody } from "./transfer_encoding.ts";

export type { AddressInput } from "./address_header.ts";

/** A file sent with the message, or an image the HTML shows inline. */
export interface Attachment {
  /** The file name shown to the reader; any Unicode text (RFC 2231). */
  filename: string;
  /** The file's bytes, or text (sent as UTF-8). */
  content: Uint8Array | string;
  /** The media type; by default guessed from the file name's extension. */
  contentType?: string;
  /** A Content-ID: the part is then inline, shown by HTML as `<img src="cid:...">`. */
  cid?: string;
}

/** What {@linkcode buildMessage} builds a message from. */
export interface MailOptions {
  /** The author; also the envelope's reverse-path. */
  from: AddressInput;
  /** Primary recipients. */
  to?: AddressInput | AddressInput[];
  /** Copied recipients. */
  cc?: AddressInput | AddressInput[];
  /** Blind copies: in the envelope, never in the header (RFC 5322 §3.6.3). */
  bcc?: AddressInput | AddressInput[];
  /** Where replies should go. */
  replyTo?: AddressInput | AddressInput[];
  /** The subject; non-ASCII is written as RFC 2047 encoded-words. */
  subject?: string;
  /** The plain-text body. */
  text?: string;
  /** The HTML body; with `text`, the two are alternatives. */
  html?: string;
  /** Files and inline images. */
  attachments?: Attachment[];
  /** More header fields; names and values are checked. */
  headers?: Record<string, string>;
  /** The Date field; by default now. */
  date?: Date;
  /** The Message-ID, with or without angle brackets; by default a random one. */
  messageId?: string;
}

/** What {@linkcode buildMessage} returns. */
export interface BuiltMessage {
  /** The RFC 5322 message, CRLF line ends, ready for DATA (not dot-stuffed). */
  content: Uint8Array;
  /** The envelope: reverse-path and every recipient address (To, Cc and Bcc), deduplicated. */
  envelope: { from: string; to: string[] };
  /** The Message-ID, without angle brackets. */
  messageId: string;
  /** Whether the content has 8-bit octets (send with BODY=8BITMIME). */
  eightBit: boolean;
  /** Whether an address is non-ASCII (send with SMTPUTF8, RFC 6531). */
  smtputf8: boolean;
}

/** Settings of the sending program rather than of one message. */
export interface BuildSettings {
  /** The right-hand side of generated Message-IDs; by default the sender's domain. */
  hostname?: string;
  /** The clock, for the Date field. */
  now?: () => Date;
  /** A source of unique strings, for Message-IDs and MIME boundaries. */
  random?: () => string;
}

/** A MIME entity: header fields (name, value) and an encoded body. */
interface Part {
  headers: [string, string][];
  body: string;
}

// RFC 5322 §3.6.8 ftext: printable US-ASCII except ":".
const FIELD_NAME = /^[\x21-\x39\x3b-\x7e]+$/;
/** Fields the builder writes itself: a custom one would contradict or duplicate it. */
const RESERVED_FIELDS: Record<string, string> = {
  "content-type": "it is set from text, html and attachments",
  "mime-version": "it is always 1.0",
  "content-transfer-encoding": "it is chosen per part",
  "bcc": "blind copies are never written in the header; use the bcc option",
  "from": "use the from option",
  "to": "use the to option",
  "cc": "use the cc option",
  "reply-to": "use the replyTo option",
  "subject": "use the subject option",
  "date": "use the date option",
  "message-id": "use the messageId option",
};
// RFC 2045 §5.1: type "/" subtype, both tokens, then optional parameters.
const MEDIA_TYPE = /^[!#$%&'*+\-.^_`{|}~0-9A-Za-z]+\/[!#$%&'*+\-.^_`{|}~0-9A-Za-z]+(\s*;.*)?$/s;
// RFC 5322 §3.6.4 msg-id, dot-atom-text forms only: no spaces, brackets or "@" inside.
const MSG_ID = /^[^\s<>@"(),;:\\[\]]+@[^\s<>@"(),;:\\[\]]+$/;

const MEDIA_TYPES: Record<string, string> = {
  txt: "text/plain",
  html: "text/html",
  htm: "text/html",
  csv: "text/csv",
  pdf: "application/pdf",
  json: "application/json",
  zip: "application/zip",
  png: "image/png",
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  gif: "image/gif",
  webp: "image/webp",
  svg: "image/svg+xml",
  ics: "text/calendar",
};

const encoder = new TextEncoder();

/** RFC 5322 §2.3 and RFC 2045 §2.10: text lines end with CRLF. */
function toCrlf(text: string): string {
  return text.replace(/\r\n|\r|\n/g, "\r\n");
}

function textPart(text: string, subtype: "plain" | "html"): Part {
  const data = encoder.encode(toCrlf(text));
  const encoding = chooseTransferEncoding(data);
  return {
    headers: [
      ["Content-Type", `text/${subtype}; charset=utf-8`],
      ["Content-Transfer-Encoding", encoding],
    ],
    body: encodeBody(data, encoding),
  };
}

function guessMediaType(filename: string): string {
  const ext = /\.([A-Za-z0-9]+)$/.exec(filename)?.[1]?.toLowerCase() ?? "";
  return MEDIA_TYPES[ext] ?? "application/octet-stream";
}

function attachmentPart(attachment: Attachment): Part {
  const isText = typeof attachment.content === "string";
  let type = attachment.contentType ?? guessMediaType(attachment.filename);
  if (!MEDIA_TYPE.test(type) || /[\r\n]/.test(type)) {
    throw new TypeError(`Bad contentType "${type}" for attachment ${attachment.filename}`);
  }
  if (isText && type.startsWith("text/") && !/;\s*charset=/i.test(type)) {
    type += "; charset=utf-8";
  }
  const data = typeof attachment.content === "string"
    ? encoder.encode(attachment.content)
    : attachment.content;
  const headers: [string, string][] = [
    ["Content-Type", [type, ...formatParameter("name", attachment.filename)].join("; ")],
    // Attachments go as base64 so that their bytes arrive unchanged, line ends included.
    ["Content-Transfer-Encoding", "base64"],
  ];
  const disposition = attachment.cid === undefined ? "attachment" : "inline";
  headers.push([
    "Content-Disposition",
    [disposition, ...formatParameter("filename", attachment.filename)].join("; "),
  ]);
  if (attachment.cid !== undefined) {
    const cid = attachment.cid.replace(/^<|>$/g, "");
    if (!MSG_ID.test(cid) && !/^[!#$%&'*+\-.^_`{|}~0-9A-Za-z]+$/.test(cid)) {
      throw new TypeError(`Bad cid "${attachment.cid}" for attachment ${attachment.filename}`);
    }
    headers.push(["Content-ID", `<${cid}>`]);
  }
  return { headers, body: encodeBase64Lines(data) };
}

function renderPart(part: Part): string {
  const head = part.headers.map(([name, value]) => foldHeader(name, value)).join("\r\n");
  return `${head}\r\n\r\n${part.body}`;
}

/** Makes unique, valid boundaries (RFC 2046 §5.1.1: 1–70 bchars). */
class Boundaries {
  #count = 0;
  constructor(private readonly random: () => string) {}

  /**
   * A boundary that does not occur in the parts it separates: "=_" cannot
   * appear in quoted-printable or base64 text, and the 7bit parts are searched.
   */
  next(inside: string): string {
    for (;;) {
      const token = this.random().replace(/[^0-9A-Za-z]/g, "").slice(0, 40);
      const boundary = `=_tern_${++this.#count}_${token}`;
      if (!inside.includes(boundary)) return boundary;
    }
  }
}

function multipart(subtype: string, parts: Part[], boundaries: Boundaries): Part {
  const rendered = parts.map(renderPart);
  const boundary = boundaries.next(rendered.join("\r\n"));
  const body = rendered.map((p) => `--${boundary}\r\n${p}`).join("\r\n") + `\r\n--${boundary}--`;
  return { headers: [["Content-Type", `multipart/${subtype}; boundary="${boundary}"`]], body };
}

/** RFC 2046 §5.1.4 alternative; RFC 2387 related for inline images; §5.1.3 mixed for files. */
function bodyStructure(options: MailOptions, boundaries: Boundaries): Part {
  const attachments = options.attachments ?? [];
  const inline = options.html === undefined ? [] : attachments.filter((a) => a.cid !== undefined);
  const files = attachments.filter((a) => !inline.includes(a));
  let html: Part | undefined = options.html === undefined
    ? undefined
    : textPart(options.html, "html");
  if (html && inline.length > 0) {
    html = multipart("related", [html, ...inline.map(attachmentPart)], boundaries);
  }
  const text = options.text === undefined ? undefined : textPart(options.text, "plain");
  let body: Part | undefined;
  if (text && html) body = multipart("alternative", [text, html], boundaries);
  else body = text ?? html;
  if (files.length > 0) {
    return multipart("mixed", [...(body ? [body] : []), ...files.map(attachmentPart)], boundaries);
  }
  return body ?? textPart("", "plain");
}

function checkCustomHeaders(headers: Record<string, string>): [string, string][] {
  const out: [string, string][] = [];
  for (const [name, value] of Object.entries(headers)) {
    if (!FIELD_NAME.test(name)) {
      throw new TypeError(
        `Header name "${name}" is not valid (RFC 5322 §3.6.8: printable ASCII except ":")`,
      );
    }
    const reserved = RESERVED_FIELDS[name.toLowerCase()];
    if (reserved !== undefined) throw new TypeError(`Header ${name} cannot be set: ${reserved}`);
    if (/[\r\n]/.test(value)) {
      throw new TypeError(`Header ${name} must not contain CR or LF (it would start a new header)`);
    }
    // deno-lint-ignore no-control-regex
    if (/[\x00-\x08\x0b-\x1f\x7f]/.test(value)) {
      throw new TypeError(`Header ${name} must not contain control characters`);
    }
    out.push([name, encodeUnstructured(value)]);
  }
  return out;
}

function messageIdOf(
  options: MailOptions,
  from: Address,
  settings: BuildSettings,
  random: () => string,
): string {
  if (options.messageId !== undefined) {
    const id = options.messageId.replace(/^<(.*)>$/, "$1");
    if (!MSG_ID.test(id)) {
      throw new TypeError(`Bad messageId "${options.messageId}" (RFC 5322 §3.6.4: left@right)`);
    }
    return id;
  }
  const host = settings.hostname ?? from.address.slice(from.address.lastIndexOf("@") + 1);
  const id = `${random().replace(/[^0-9A-Za-z.\-_]/g, "")}@${host}`;
  if (!MSG_ID.test(id)) throw new TypeError(`Bad hostname "${host}" for a Message-ID`);
  return id;
}

/** Domains compare without case; local parts are kept as written (RFC 5321 §2.4). */
function envelopeKey(address: string): string {
  const at = address.lastIndexOf("@");
  return address.slice(0, at) + "@" + address.slice(at + 1).toLowerCase();
}

function defaultRandom(): string {
  return crypto.randomUUID().replaceAll("-", "");
}

/**
 * Builds a message from addresses, subject, bodies and attachments.
 *
 * Text alone is one text/plain part; text and HTML are multipart/alternative;
 * inline images (attachments with a `cid`) go in multipart/related with the
 * HTML; other attachments make a multipart/mixed around it all. Bodies are
 * 7bit, quoted-printable or base64 as their content needs; non-ASCII in the
 * subject and display names becomes RFC 2047 encoded-words; header lines are
 * folded at 78 characters where possible and never exceed 998 octets. Bcc
 * recipients are only in the envelope.
 *
 * @param options The message.
 * @param settings Hostname for the Message-ID, clock and randomness (for tests).
 * @returns The message bytes, the envelope and the Message-ID.
 * @throws {TypeError} When an address, a header name or value, a media type or
 *   an id is invalid; a header value with CR or LF is refused, not folded.
 *
 * @example
 * ```ts
 * import { buildMessage } from "./build.ts";
 * const built = buildMessage({
 *   from: "Zoë <zoe@example.org>",
 *   to: "you@example.net",
 *   bcc: "archive@example.org",
 *   subject: "Café ☕",
 *   text: "Hello",
 * }, { hostname: "mail.example.org" });
 * console.log(built.envelope); // { from: "zoe@example.org", to: ["you@example.net", "archive@example.org"] }
 * console.log(new TextDecoder().decode(built.content).includes("archive@")); // false
 * ```
 */
export function buildMessage(options: MailOptions, settings: BuildSettings = {}): BuiltMessage {
  const random = settings.random ?? defaultRandom;
  const from = parseAddress(options.from);
  const to = parseAddressList(options.to);
  const cc = parseAddressList(options.cc);
  const bcc = parseAddressList(options.bcc);
  const replyTo = parseAddressList(options.replyTo);
  const custom = checkCustomHeaders(options.headers ?? {});
  const messageId = messageIdOf(options, from, settings, random);
  const date = options.date ?? settings.now?.() ?? new Date();

  const headers: [string, string][] = [
    ["Date", formatDate(date)],
    ["From", formatAddress(from)],
  ];
  if (replyTo.length > 0) headers.push(["Reply-To", formatAddressList(replyTo)]);
  if (to.length > 0) headers.push(["To", formatAddressList(to)]);
  if (cc.length > 0) headers.push(["Cc", formatAddressList(cc)]);
  if (options.subject !== undefined) {
    if (/[\r\n]/.test(options.subject)) {
      throw new TypeError("Subject must not contain CR or LF");
    }
    headers.push(["Subject", encodeUnstructured(options.subject)]);
  }
  headers.push(["Message-ID", `<${messageId}>`], ...custom, ["MIME-Version", "1.0"]);
  const body = bodyStructure(options, new Boundaries(random));
  const text = renderPart({ headers: [...headers, ...body.headers], body: body.body }) + "\r\n";
  for (const line of text.split("\r\n")) {
    if (encoder.encode(line).length > MAX_LINE_OCTETS) {
      throw new RangeError("A message line exceeds 998 octets (RFC 5322 §2.1.1)");
    }
  }
  const content = encoder.encode(text);

  const recipients: string[] = [];
  const seen = new Set<string>();
  for (const { address } of [...to, ...cc, ...bcc]) {
    const key = envelopeKey(address);
    if (seen.has(key)) continue;
    seen.add(key);
    recipients.push(address);
  }
  const smtputf8 = [from, ...to, ...cc, ...bcc, ...replyTo].some((a) => a.smtputf8);
  return {
    content,
    envelope: { from: from.address, to: recipients },
    messageId,
    eightBit: content.some((byte) => byte >= 0x80),
    smtputf8,
  };
}
