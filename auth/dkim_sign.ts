/**
 * DKIM signing (RFC 6376) with rsa-sha256 and ed25519-sha256 (RFC 8463),
 * relaxed/relaxed canonicalisation, as a message streams through: the body
 * is hashed as it arrives and only the header block is kept.
 *
 * Which key signs: the one whose domain is the From: header's domain, or
 * else the nearest parent domain with a key (`example.test` signs for
 * `news.example.test`). With an RSA and an Ed25519 key for that domain, the
 * message gets two signatures, so verifiers that know only RSA still pass
 * it (one good signature is enough, RFC 6376 §4).
 *
 * ```ts
 * import { DkimSigner } from "./dkim_sign.ts";
 * import { parseDkimKey } from "./dkim_keys.ts";
 * import { generateKeyPairSync } from "node:crypto";
 * import assert from "node:assert/strict";
 *
 * const pem = generateKeyPairSync("ed25519").privateKey.export({ type: "pkcs8", format: "pem" });
 * const signer = new DkimSigner([parseDkimKey(pem.toString(), "example.test", "s2026")]);
 * const signing = signer.begin();
 * signing.update(new TextEncoder().encode("From: a@example.test\r\nSubject: hi\r\n\r\nHello\r\n"));
 * const field = signing.finish();
 * assert.match(field, /^DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed\/relaxed; d=example.test;/);
 * assert.equal(signing.fromDomain, "example.test");
 * ```
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createHash, sign } from "node:crypto";
import { domainToASCII } from "node:url";
import { headerName, RelaxedBodyHasher, relaxedHeader, splitHeaderFields } from "./dkim_canon.ts";
import type { DkimKey } from "./dkim_keys.ts";

/**
 * The header fields signed when present, in this order in `h=` (RFC 6376
 * §5.4.1's list, the MIME fields that change how the body reads, and
 * Sender/Resent-*). Received and Return-Path are left out: relays add and
 * rewrite them. From is listed once more than it occurs (see
 * {@linkcode DkimSigning.finish}).
 */
export const SIGNED_HEADERS: readonly string[] = Object.freeze([
  "from",
  "sender",
  "reply-to",
  "subject",
  "date",
  "message-id",
  "to",
  "cc",
  "in-reply-to",
  "references",
  "mime-version",
  "content-type",
  "content-transfer-encoding",
  "content-disposition",
  "content-id",
  "content-description",
  "content-language",
  "resent-date",
  "resent-from",
  "resent-sender",
  "resent-to",
  "resent-cc",
  "resent-message-id",
  "list-id",
  "list-help",
  "list-unsubscribe",
  "list-unsubscribe-post",
  "list-subscribe",
  "list-post",
  "list-owner",
  "list-archive",
]);

/** Lines of the DKIM-Signature field stay within this many characters (RFC 5322 §2.1.1: 78). */
const MAX_LINE = 76;

/** The signing of one message, from {@linkcode DkimSigner.begin}. */
export interface DkimSigning {
  /**
   * Adds a piece of the message (header and body as received, CRLF line ends).
   *
   * @param chunk Octets, split anywhere, even inside a CRLF.
   */
  update(chunk: Uint8Array): void;
  /**
   * Ends the message. `added` is header fields (CRLF-terminated) the MTA puts
   * on top of the message (Message-ID:, Date: added under RFC 6409 §8); they
   * are part of the signed message.
   *
   * @param added Header fields put above the message's own, or `""`.
   * @returns The DKIM-Signature header field(s), folded, each ending in CRLF,
   *   to put on top (above `added`), or `""` when no key applies or the
   *   message has no From.
   */
  finish(added?: string): string;
  /** The From: header's domain as parsed (lower case), or null; valid after finish(). */
  readonly fromDomain: string | null;
}

/** Options of {@linkcode DkimSigner}. */
export interface DkimSignerOptions {
  /** The clock, in milliseconds since the epoch, for `t=`. @default {Date.now} */
  now?: () => number;
  /** Called once for each signature made (for metrics). @default {nothing} */
  onSignature?: (key: DkimKey) => void;
}

/** Signs messages with the configured keys, choosing by the From: domain. */
export class DkimSigner {
  readonly #keys: readonly DkimKey[];
  readonly #now: () => number;
  readonly #onSignature: (key: DkimKey) => void;

  /**
   * Makes a signer.
   *
   * @param keys The keys; several may share a domain (one per algorithm is used).
   * @param options The clock, and who is told of each signature.
   */
  constructor(keys: readonly DkimKey[], options: DkimSignerOptions = {}) {
    this.#keys = [...keys];
    this.#now = options.now ?? Date.now;
    this.#onSignature = options.onSignature ?? (() => {});
  }

  /** Whether any key is configured (the intake skips signing work when not). */
  get hasKeys(): boolean {
    return this.#keys.length > 0;
  }

  /**
   * The keys that sign mail from a domain: those of the domain itself or of
   * its nearest parent that has keys, at most one per algorithm (the first
   * configured).
   *
   * @param fromDomain The From: domain, lower case.
   * @returns The keys, possibly none.
   */
  keysFor(fromDomain: string): DkimKey[] {
    let best: DkimKey[] = [];
    let bestLength = -1;
    for (const key of this.#keys) {
      const applies = fromDomain === key.domain || fromDomain.endsWith(`.${key.domain}`);
      if (!applies || key.domain.length < bestLength) continue;
      if (key.domain.length > bestLength) {
        best = [];
        bestLength = key.domain.length;
      }
      if (!best.some((k) => k.algorithm === key.algorithm)) best.push(key);
    }
    return best;
  }

  /**
   * Starts signing one message.
   *
   * @returns Feed it the message, then call finish().
   */
  begin(): DkimSigning {
    return new MessageSigning(this, this.#now, this.#onSignature);
  }
}

/**
 * A header block (with the blank line that ends it) longer than this is
 * neither kept nor signed: real ones are a few KiB (Postfix refuses over
 * 100 KiB), and a message with no blank line at all (bare LF line ends, say)
 * would otherwise be held whole.
 */
export const MAX_HEADER_BLOCK = 1024 * 1024;

/** The four octets that end the header block, matched across chunks. */
const BLANK_LINE = [0x0d, 0x0a, 0x0d, 0x0a];

class MessageSigning implements DkimSigning {
  readonly #signer: DkimSigner;
  readonly #now: () => number;
  readonly #onSignature: (key: DkimKey) => void;
  readonly #headerChunks: Uint8Array[] = [];
  /** How much of CRLF CRLF has just been seen; 2 at the start, so a message may open with its blank line. */
  #matched = 2;
  #inBody = false;
  #headerLength = 0;
  #oversized = false;
  #body: RelaxedBodyHasher | null = null;
  #headerBlock = "";
  #fromDomain: string | null = null;
  #finished = false;

  constructor(signer: DkimSigner, now: () => number, onSignature: (key: DkimKey) => void) {
    this.#signer = signer;
    this.#now = now;
    this.#onSignature = onSignature;
  }

  get fromDomain(): string | null {
    return this.#fromDomain;
  }

  update(chunk: Uint8Array): void {
    if (this.#finished) throw new Error("DkimSigning: update after finish");
    if (this.#inBody) {
      this.#body?.update(chunk);
      return;
    }
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i]!;
      if (byte === BLANK_LINE[this.#matched]) this.#matched++;
      else this.#matched = byte === 0x0d ? 1 : 0;
      if (this.#matched === 4) {
        if (this.#isOversized(i + 1)) return;
        this.#headerChunks.push(chunk.slice(0, i + 1));
        this.#endHeader(true);
        this.#body?.update(chunk.subarray(i + 1));
        return;
      }
    }
    if (this.#isOversized(chunk.length)) return;
    this.#headerChunks.push(chunk.slice());
  }

  /** Counts header octets; past {@linkcode MAX_HEADER_BLOCK}, the rest is ignored and finish() signs nothing. */
  #isOversized(more: number): boolean {
    this.#headerLength += more;
    if (this.#headerLength <= MAX_HEADER_BLOCK) return false;
    this.#oversized = true;
    this.#inBody = true;
    this.#headerChunks.length = 0;
    return true;
  }

  finish(added = ""): string {
    if (this.#finished) throw new Error("DkimSigning: finish called twice");
    if (!this.#inBody) this.#endHeader(false);
    this.#finished = true;
    if (this.#oversized) return "";
    const fields = [...splitHeaderFields(added), ...splitHeaderFields(this.#headerBlock)];
    // The From: of the message, unless the MTA's own fields bring one (they do not, normally).
    this.#fromDomain = parseFromDomain(fields);
    if (this.#fromDomain === null || this.#body === null) return "";
    const keys = this.#signer.keysFor(this.#fromDomain);
    if (keys.length === 0) return "";
    const bodyHash = this.#body.digest();
    const timestamp = Math.floor(this.#now() / 1000);
    return keys.map((key) => {
      const field = signatureField(key, fields, bodyHash, timestamp);
      this.#onSignature(key);
      return field;
    }).join("");
  }

  #endHeader(hasBody: boolean): void {
    this.#inBody = true;
    // One character per octet (not TextDecoder's "latin1", which is windows-1252).
    let block = Buffer.concat(this.#headerChunks).toString("latin1");
    // The header block ends with the CRLF of its last line; the blank line is not part of it.
    if (hasBody) block = block.slice(0, -2);
    this.#headerBlock = block;
    this.#headerChunks.length = 0;
    // The body is hashed only when a key can sign this From: domain.
    const from = parseFromDomain(splitHeaderFields(block));
    if (from !== null && this.#signer.keysFor(from).length > 0) {
      this.#body = new RelaxedBodyHasher();
    }
  }
}

/**
 * The domain of the From: header field (RFC 5322 §3.6.2), lower case, in
 * ASCII (an internationalised domain in its A-label form), or `null` when
 * there is no From, several From fields, or authors in different domains.
 *
 * @param fields Header fields, top first, as binary strings.
 * @returns The domain, or `null`.
 */
export function parseFromDomain(fields: readonly string[]): string | null {
  const from = fields.filter((f) => headerName(f) === "from");
  if (from.length !== 1) return null;
  const field = from[0]!;
  const value = Buffer.from(field.slice(field.indexOf(":") + 1), "latin1").toString("utf8");
  const domains = new Set(mailboxDomains(value));
  if (domains.size !== 1) return null;
  const [domain] = domains;
  const ascii = domainToASCII(domain!);
  return ascii === "" ? null : ascii.toLowerCase();
}

/**
 * The domain of each mailbox of an address list (RFC 5322 §3.4), comments
 * and quoted strings skipped; `[]` when one has no usable domain.
 */
function mailboxDomains(value: string): string[] {
  const addresses: string[] = [];
  let bare = ""; // the text outside <>, an addr-spec when there is no angle-addr
  let angle: string | null = null; // inside <>, or the last angle-addr once closed
  let inAngle = false;
  let depth = 0;
  let quoted = false;
  const endMailbox = () => {
    addresses.push(angle ?? bare);
    bare = "";
    angle = null;
  };
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c === "\\" && (quoted || depth > 0)) i++;
    else if (quoted) quoted = c !== '"';
    else if (depth > 0) depth += c === "(" ? 1 : c === ")" ? -1 : 0;
    else if (c === '"') quoted = true;
    else if (c === "(") depth = 1;
    else if (c === "<") {
      inAngle = true;
      angle = "";
    } else if (c === ">") inAngle = false;
    else if (inAngle) angle += c;
    else if (c === ",") endMailbox();
    else bare += c;
  }
  endMailbox();
  const domains: string[] = [];
  for (const mailbox of addresses) {
    // A group's name (`team:`) goes; an empty group (`undisclosed:;`) has no mailbox.
    const address = mailbox.replace(/\s+/g, "").replace(/^[^@]*:/, "").replace(/;$/, "");
    if (address === "") continue;
    const at = address.lastIndexOf("@");
    const domain = at < 0 ? "" : address.slice(at + 1).replace(/\.$/, "");
    if (domain === "" || domain.startsWith("[")) return [];
    domains.push(domain);
  }
  return domains;
}

/**
 * The `h=` names for a message: each name of {@linkcode SIGNED_HEADERS} once
 * per occurrence (a verifier takes them bottom-up, RFC 6376 §5.4.2), and
 * From once more, so a From added later breaks the signature (§8.15).
 *
 * @param fields The message's header fields, top first.
 * @returns The names, lower case.
 */
export function signedHeaderNames(fields: readonly string[]): string[] {
  const counts = new Map<string, number>();
  for (const field of fields) {
    const name = headerName(field);
    counts.set(name, (counts.get(name) ?? 0) + 1);
  }
  const names: string[] = [];
  for (const name of SIGNED_HEADERS) {
    const count = (counts.get(name) ?? 0) + (name === "from" ? 1 : 0);
    for (let i = 0; i < count; i++) names.push(name);
  }
  return names;
}

/**
 * The data a signature covers (RFC 6376 §3.7): the fields `h=` names,
 * relaxed, each name taking the next occurrence from the bottom (§5.4.2; a
 * name with no occurrence left adds nothing), then the DKIM-Signature field
 * itself with an empty `b=`, relaxed, without its final CRLF.
 *
 * @param fields The message's header fields, top first.
 * @param names The `h=` names, in order.
 * @param signatureField The DKIM-Signature field with `b=` empty.
 * @returns A binary string.
 */
export function headerHashInput(
  fields: readonly string[],
  names: readonly string[],
  signatureField: string,
): string {
  const byName = new Map<string, string[]>();
  for (const field of fields) {
    const name = headerName(field);
    const list = byName.get(name) ?? [];
    list.push(field);
    byName.set(name, list);
  }
  let data = "";
  for (const name of names) {
    const field = byName.get(name.toLowerCase())?.pop();
    if (field !== undefined) data += relaxedHeader(field);
  }
  return data + relaxedHeader(signatureField).slice(0, -2);
}

/**
 * Signs the header hash input: RSASSA-PKCS1-v1_5 with SHA-256 (RFC 6376
 * §3.3.1), or Ed25519 over the SHA-256 of the data (RFC 8463 §3: the
 * PureEdDSA input is the hash, not the data).
 *
 * @param key The key.
 * @param data What {@linkcode headerHashInput} returned.
 * @returns The signature, base64 (the `b=` value).
 */
export function signHeaderData(key: DkimKey, data: string): string {
  const bytes = Buffer.from(data, "latin1");
  const signature = key.algorithm === "ed25519-sha256"
    ? sign(null, createHash("sha256").update(bytes).digest(), key.privateKey)
    : key.openSsl !== undefined
    ? key.openSsl.sign(createHash("sha256").update(bytes).digest())
    : sign("sha256", bytes, key.privateKey);
  return Buffer.from(signature).toString("base64");
}

/** One DKIM-Signature field for a message, folded, ending in CRLF. */
function signatureField(
  key: DkimKey,
  fields: readonly string[],
  bodyHash: string,
  timestamp: number,
): string {
  const names = signedHeaderNames(fields);
  const tags = [
    "v=1;",
    `a=${key.algorithm};`,
    "c=relaxed/relaxed;",
    `d=${key.domain};`,
    `s=${key.selector};`,
    `t=${timestamp};`,
  ];
  const hParts = names.map((name, i) =>
    (i === 0 ? "h=" : "") + name + (i === names.length - 1 ? ";" : ":")
  );
  const template = foldTags(tags, hParts, `bh=${bodyHash};`);
  const signature = signHeaderData(key, headerHashInput(fields, names, template));
  return `${template}${foldBase64(signature, lastLineLength(template))}\r\n`;
}

/**
 * Writes `DKIM-Signature: ` and the tags, folding between tags (and between
 * `h=` names, after their colons) so lines stay within {@linkcode MAX_LINE},
 * ending with `b=` for the signature to follow.
 */
function foldTags(tags: readonly string[], hParts: readonly string[], bh: string): string {
  let text = "DKIM-Signature:";
  let column = text.length;
  const add = (token: string, glued: boolean) => {
    const separator = glued ? "" : " ";
    if (column + separator.length + token.length > MAX_LINE) {
      text += "\r\n " + token;
      column = 1 + token.length;
    } else {
      text += separator + token;
      column += separator.length + token.length;
    }
  };
  for (const tag of tags) add(tag, false);
  hParts.forEach((part, i) => add(part, i > 0));
  add(bh, false);
  add("b=", false);
  return text;
}

function lastLineLength(text: string): number {
  return text.length - (text.lastIndexOf("\n") + 1);
}

/** The signature after `b=`, folded (FWS may appear anywhere in it, RFC 6376 §3.5). */
function foldBase64(value: string, column: number): string {
  let out = "";
  let rest = value;
  let room = Math.max(MAX_LINE - column, 0);
  while (rest.length > room) {
    out += rest.slice(0, room) + "\r\n ";
    rest = rest.slice(room);
    room = MAX_LINE - 1;
  }
  return out + rest;
}
