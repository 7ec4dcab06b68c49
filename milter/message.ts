/**
 * The message as milters see it and change it, with no I/O: its header
 * fields (each kept as the octets that came, so a field nobody touched is
 * stored exactly as sent), whether a blank line ended them, and the edits a
 * milter asks for at end of message (SMFIR_ADDHEADER, INSHEADER, CHGHEADER,
 * CHGFROM, ADDRCPT, DELRCPT, REPLBODY) applied in order.
 *
 * @module
 */

import { concatBytes } from "../bytes/concat.ts";
import type { Modification } from "./session.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The most octets of header section read as fields; a longer one continues as body. */
export const MAX_HEADER_SECTION = 1024 * 1024;

/** One header field: its name, and all its octets (name, colon, value, folds, final CRLF). */
export interface HeaderField {
  /** The field name as written. */
  readonly name: string;
  /** The whole field as stored, ending in CRLF. */
  readonly raw: Uint8Array;
}

/** The header section, split from the content as it arrives. */
export interface HeaderSection {
  /** The fields, in order. */
  readonly fields: HeaderField[];
  /** Whether an empty line ended the header section (RFC 5322 §2.1). */
  readonly separated: boolean;
  /** The octets after the header section (and its empty line): the body's start. */
  readonly rest: Uint8Array;
}

/** A field name: printable US-ASCII but colon (RFC 5322 §3.6.8), before the colon. */
const FIELD_NAME = /^([\x21-\x39\x3b-\x7e]+)[ \t]*:/;

/**
 * Splits the header section from the start of the content, chunk by chunk.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { HeaderSplitter } from "./message.ts";
 * const splitter = new HeaderSplitter();
 * assert.equal(splitter.push(new TextEncoder().encode("Subject: a\r\n b\r\n")), null);
 * const section = splitter.push(new TextEncoder().encode("\r\nHi\r\n"))!;
 * assert.equal(section.fields[0]!.name, "Subject");
 * assert.equal(new TextDecoder().decode(section.rest), "Hi\r\n");
 * ```
 */
export class HeaderSplitter {
  #buffer: Uint8Array = new Uint8Array(0);

  /**
   * Takes the next octets.
   *
   * @param chunk Content octets.
   * @returns The header section once it is complete, else `null`.
   */
  push(chunk: Uint8Array): HeaderSection | null {
    const joined = new Uint8Array(this.#buffer.length + chunk.length);
    joined.set(this.#buffer);
    joined.set(chunk, this.#buffer.length);
    this.#buffer = joined;
    return this.#split(false);
  }

  /**
   * The content ended.
   *
   * @returns The header section (the content may have been all header).
   */
  end(): HeaderSection {
    return this.#split(true)!;
  }

  #split(isEnd: boolean): HeaderSection | null {
    const data = this.#buffer;
    const fields: HeaderField[] = [];
    let at = 0;
    let fieldStart = -1;
    let name = "";
    const close = (end: number) => {
      if (fieldStart >= 0) fields.push({ name, raw: data.slice(fieldStart, end) });
      fieldStart = -1;
    };
    while (at < data.length) {
      const lf = data.indexOf(0x0a, at);
      if (lf < 0 && !isEnd && at < MAX_HEADER_SECTION) return null;
      const end = lf < 0 ? data.length : lf + 1;
      const line = data.subarray(at, end);
      if (line[0] === 0x0d && (line[1] === 0x0a || line.length === 1) || line[0] === 0x0a) {
        close(at);
        return { fields, separated: true, rest: data.slice(end) };
      }
      const isFold = (line[0] === 0x20 || line[0] === 0x09) && fieldStart >= 0;
      const match = isFold ? null : FIELD_NAME.exec(decoder.decode(line.subarray(0, 1000)));
      if (!isFold && (match === null || at >= MAX_HEADER_SECTION)) break; // the body starts here
      if (match !== null) {
        close(at);
        fieldStart = at;
        name = match[1]!;
      }
      at = end;
    }
    if (!isEnd && at >= data.length) return null;
    close(at);
    return { fields, separated: false, rest: data.slice(at) };
  }
}

/**
 * A field's value as a milter gets it: unfolded lines joined by LF (as
 * Sendmail sends them), without the CRLF at the end and, unless the milter
 * asked for it (SMFIP_HDR_LEADSPC), without the one space after the colon.
 *
 * @param field The field.
 * @param leadingSpace Whether to keep the leading space.
 */
export function milterValue(field: HeaderField, leadingSpace: boolean): string {
  const text = decoder.decode(field.raw);
  let value = text.slice(text.indexOf(":") + 1).replace(/\r?\n$/, "").replace(/\r\n/g, "\n");
  if (!leadingSpace && value.startsWith(" ")) value = value.slice(1);
  return value;
}

/**
 * Makes a field from a milter's name and value: LF-separated lines become
 * folded lines (each continuation starts with white space, RFC 5322 §2.2.3,
 * so a milter cannot start a new field by accident), ending in CRLF.
 *
 * @param name The field name.
 * @param value The value, lines separated by LF.
 * @param leadingSpace Whether the milter gives the space after the colon itself.
 */
export function makeField(name: string, value: string, leadingSpace: boolean): HeaderField {
  const clean = (s: string) => s.replace(/[\0\r]/g, "");
  const lines = clean(value).split("\n");
  const folded = lines.map((line, i) => i === 0 || /^[ \t]/.test(line) ? line : "\t" + line);
  const text = `${clean(name).replace(/[\s:]/g, "")}:${leadingSpace ? "" : " "}${
    folded.join("\r\n")
  }\r\n`;
  return { name, raw: encoder.encode(text) };
}

/** The envelope as milters may change it. */
export interface MilterEnvelope {
  /** The reverse-path (`""` for `<>`). */
  reversePath: string;
  /** The forward-paths, in order. */
  forwardPaths: string[];
}

/** What the edits of the milters did to a message. */
export interface Edited {
  /** The header fields now. */
  readonly fields: HeaderField[];
  /** Whether the fields differ from what came (a changed or removed field, or one inserted above others). */
  headerRewritten: boolean;
  /** The new body, when a milter replaced it. */
  body: Uint8Array | null;
  /** Whether the sender or the recipients changed. */
  envelopeChanged: boolean;
  /** The quarantine reasons, when a milter asked for it. */
  readonly quarantine: string[];
}

/** Removes the angle brackets a milter may put around an address. */
export function unbracket(address: string): string {
  const trimmed = address.trim();
  return trimmed.startsWith("<") && trimmed.endsWith(">") ? trimmed.slice(1, -1) : trimmed;
}

/**
 * Applies one milter's changes, in the order it sent them.
 *
 * @param edited The message so far (changed in place).
 * @param envelope The envelope so far (changed in place).
 * @param changes The milter's changes.
 * @param leadingSpace Whether the milter gives header values with their leading space.
 */
export function applyChanges(
  edited: Edited,
  envelope: MilterEnvelope,
  changes: readonly Modification[],
  leadingSpace: boolean,
): void {
  let replacing: Uint8Array[] | null = null;
  for (const change of changes) {
    switch (change.type) {
      case "addheader":
        edited.fields.push(makeField(change.name, change.value, leadingSpace));
        break;
      case "insheader": {
        // libmilter: index 0 is the top of the header.
        const at = Math.min(change.index, edited.fields.length);
        edited.fields.splice(at, 0, makeField(change.name, change.value, leadingSpace));
        if (at < edited.fields.length - 1) edited.headerRewritten = true;
        break;
      }
      case "chgheader":
        changeHeader(edited, change.index, change.name, change.value, leadingSpace);
        break;
      case "chgfrom":
        envelope.reversePath = unbracket(change.sender);
        edited.envelopeChanged = true;
        break;
      case "addrcpt": {
        const address = unbracket(change.recipient);
        if (!envelope.forwardPaths.some((p) => p.toLowerCase() === address.toLowerCase())) {
          envelope.forwardPaths.push(address);
        }
        edited.envelopeChanged = true;
        break;
      }
      case "delrcpt": {
        const address = unbracket(change.recipient).toLowerCase();
        envelope.forwardPaths = envelope.forwardPaths.filter((p) => p.toLowerCase() !== address);
        edited.envelopeChanged = true;
        break;
      }
      case "replbody":
        replacing ??= [];
        replacing.push(change.chunk);
        break;
      case "quarantine":
        edited.quarantine.push(change.reason);
        break;
    }
  }
  if (replacing !== null) edited.body = normalizeBody(replacing);
}

/**
 * SMFIR_CHGHEADER: the `index`-th field of that name (1 is the first; 0
 * counts as 1, for Sendmail) gets the value, or goes when the value is
 * empty; when there is no such field, a non-empty value is added.
 */
function changeHeader(
  edited: Edited,
  index: number,
  name: string,
  value: string,
  leadingSpace: boolean,
): void {
  const wanted = Math.max(index, 1);
  let seen = 0;
  const at = edited.fields.findIndex((f) =>
    f.name.toLowerCase() === name.toLowerCase() && ++seen === wanted
  );
  if (at < 0) {
    if (value !== "") edited.fields.push(makeField(name, value, leadingSpace));
    return;
  }
  edited.headerRewritten = true;
  if (value === "") edited.fields.splice(at, 1);
  else edited.fields[at] = makeField(edited.fields[at]!.name, value, leadingSpace);
}

/** A replacement body in CRLF lines, the last one ended too (as Postfix stores it). */
function normalizeBody(chunks: readonly Uint8Array[]): Uint8Array {
  const data = concatBytes(chunks);
  const out: number[] = [];
  data.forEach((octet) => {
    // A bare LF becomes CRLF, and a bare CR is dropped: the line ends of SMTP (RFC 5321 §2.3.8).
    if (octet === 0x0d) return;
    if (octet === 0x0a) out.push(0x0d);
    out.push(octet);
  });
  if (out.length > 0 && out[out.length - 1] !== 0x0a) out.push(0x0d, 0x0a);
  return new Uint8Array(out);
}
