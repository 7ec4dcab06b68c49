/**
 * Decoding of RFC 2047 encoded-words (`=?utf-8?Q?Gr=C3=BC=C3=9Fe?=`), the
 * way non-ASCII text is written in header fields such as Subject, and of
 * the two content transfer encodings of RFC 2045 §6.7 and §6.8
 * (quoted-printable and base64).
 *
 * @module
 */

/** One encoded-word: `=?charset?encoding?text?=` (RFC 2047 §2). */
const ENCODED_WORD = /=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=/g;

/**
 * Decodes the RFC 2047 encoded-words in an (unfolded) header field value.
 * Whitespace between two adjacent encoded-words is dropped (RFC 2047 §6.2),
 * and adjacent words in the same charset are decoded together, so a
 * multi-octet character split across two words comes out whole. A word in a
 * charset this runtime does not know, or not well formed, is left as it was.
 *
 * This is a light decoder: it decodes encoded-words wherever they appear,
 * also inside quoted strings where RFC 2047 §5 does not allow them.
 *
 * @param value The field value, unfolded.
 * @returns The value with its encoded-words decoded.
 *
 * @example Decode a Subject
 * ```ts
 * import { decodeEncodedWords } from "./encoded_words.ts";
 * console.log(decodeEncodedWords("=?utf-8?Q?Gr=C3=BC=C3=9Fe?= =?utf-8?B?IGF1cyBCZXJsaW4=?="));
 * // "Grüße aus Berlin"
 * ```
 */
export function decodeEncodedWords(value: string): string {
  let out = "";
  let last = 0;
  /** Octets of the run of adjacent encoded-words being collected, and their charset. */
  let run: { charset: string; octets: number[]; source: string } | null = null;
  const flush = (): void => {
    if (run === null) return;
    out += decodeCharset(run.charset, Uint8Array.from(run.octets)) ?? run.source;
    run = null;
  };
  for (const m of value.matchAll(ENCODED_WORD)) {
    const between = value.slice(last, m.index);
    const adjacent = run !== null && /^[ \t]*$/.test(between);
    // RFC 2231 §5: a charset may carry a language, `utf-8*en`; it does not matter here.
    const charset = m[1]!.split("*")[0]!.toLowerCase();
    const octets = m[2]!.toUpperCase() === "B" ? decodeBase64Word(m[3]!) : decodeQWord(m[3]!);
    if (octets === null || decodeCharset(charset, new Uint8Array()) === null) {
      flush();
      out += between + m[0];
    } else if (adjacent && run!.charset === charset) {
      run!.octets.push(...octets);
      run!.source += between + m[0];
    } else {
      if (!adjacent) {
        flush();
        out += between;
      } else flush();
      run = { charset, octets: [...octets], source: m[0] };
    }
    last = m.index + m[0].length;
  }
  flush();
  return out + value.slice(last);
}

/** Decodes octets in a charset, or `null` when the runtime does not know it. */
export function decodeCharset(charset: string, octets: Uint8Array): string | null {
  try {
    return new TextDecoder(charset).decode(octets);
  } catch {
    return null;
  }
}

/** RFC 2047 §4.2: the "Q" encoding, quoted-printable with `_` for a space. */
function decodeQWord(text: string): Uint8Array | null {
  const out: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === "_") out.push(0x20);
    else if (c === "=") {
      const hex = text.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return null;
      out.push(parseInt(hex, 16));
      i += 2;
    } else out.push(c.charCodeAt(0) & 0xff);
  }
  return Uint8Array.from(out);
}

/** RFC 2047 §4.1: the "B" encoding, base64. */
function decodeBase64Word(text: string): Uint8Array | null {
  try {
    return decodeBase64(text);
  } catch {
    return null;
  }
}

/**
 * Decodes base64 content (RFC 2045 §6.8), ignoring line breaks and any other
 * character outside the alphabet, as §6.8 asks of a decoder.
 *
 * @param text The encoded text.
 * @returns The octets.
 * @throws {DOMException} When what is left is not base64 at all.
 */
export function decodeBase64(text: string): Uint8Array {
  const clean = text.replace(/[^A-Za-z0-9+/]/g, "");
  const padded = clean + "=".repeat((4 - clean.length % 4) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

/**
 * Decodes quoted-printable content (RFC 2045 §6.7): `=XX` is an octet, `=` at
 * the end of a line is a soft line break, and trailing whitespace on a line
 * is padding to drop (rule 3). A `=` not followed by two hex digits is kept
 * as it is, as §6.7 suggests for robustness.
 *
 * @param text The encoded text; its characters are taken as octets (it is ASCII).
 * @returns The octets.
 */
export function decodeQuotedPrintable(text: string): Uint8Array {
  const out: number[] = [];
  const lines = text.split(/\r?\n/);
  for (const [n, raw] of lines.entries()) {
    const line = raw.replace(/[ \t]+$/, "");
    let soft = false;
    for (let i = 0; i < line.length; i++) {
      const c = line[i]!;
      if (c !== "=") {
        out.push(c.charCodeAt(0) & 0xff);
        continue;
      }
      if (i === line.length - 1) {
        soft = true;
        break;
      }
      const hex = line.slice(i + 1, i + 3);
      if (/^[0-9A-Fa-f]{2}$/.test(hex)) {
        out.push(parseInt(hex, 16));
        i += 2;
      } else out.push(0x3d);
    }
    if (!soft && n < lines.length - 1) out.push(0x0d, 0x0a);
  }
  return Uint8Array.from(out);
}
