/**
 * RFC 2047 encoded-words, the way non-ASCII text is written in a Subject, a
 * display name or another unstructured header field of a message that must
 * stay 7-bit: `=?utf-8?B?...?=` (base64) or `=?utf-8?Q?...?=` (a
 * quoted-printable variant), whichever is shorter for the text.
 *
 * @module
 */

/** RFC 2047 §2: an encoded-word is at most 75 characters long. */
export const MAX_ENCODED_WORD_LENGTH = 75;
/** The wrapper `=?utf-8?B?` + `?=` around the encoded text. */
const WRAPPER_LENGTH = "=?utf-8?B??=".length;
/**
 * Encoded text per word. Words are kept to 68 characters, under the 75 of
 * RFC 2047, so that `Subject: ` or `Reply-To: ` plus the first word still fits
 * the 78-character line of RFC 5322 §2.1.1 (a header's first word cannot be
 * folded away from its name).
 */
const MAX_ENCODED_TEXT = 68 - WRAPPER_LENGTH;
/** Octets whose base64 fits: 4 characters per 3 octets, whole groups only. */
const MAX_B_OCTETS = Math.floor(MAX_ENCODED_TEXT / 4) * 3;
/**
 * RFC 2047 §5 (3): in a phrase (a display name) a Q-encoded word may only
 * hold letters, digits and `!*+-/`; using the strictest set everywhere lets
 * the same words serve in Subject and in names. Space is written `_`.
 */
const Q_LITERAL = /^[A-Za-z0-9!*+\-/]$/;

const encoder = new TextEncoder();

/** The encoding inside an encoded-word: B (base64) or Q (RFC 2047 §4.2). */
export type WordEncoding = "B" | "Q";

/**
 * Whether a word must be written as an encoded-word: it holds non-ASCII or
 * control characters, or something a reader would take for an encoded-word.
 *
 * @param text A word or phrase.
 * @returns `true` when it cannot be written as it is.
 *
 * @example
 * ```ts
 * import { needsEncoding } from "./encoded_word.ts";
 * console.log(needsEncoding("Hello"), needsEncoding("café")); // false true
 * ```
 */
export function needsEncoding(text: string): boolean {
  return /[^\x20-\x7e\t]/.test(text) || text.includes("=?");
}

function qCost(byte: number): number {
  return byte === 0x20 || Q_LITERAL.test(String.fromCharCode(byte)) ? 1 : 3;
}

function qEncode(bytes: Uint8Array): string {
  let out = "";
  for (const byte of bytes) {
    if (byte === 0x20) out += "_";
    else if (Q_LITERAL.test(String.fromCharCode(byte))) out += String.fromCharCode(byte);
    else out += "=" + byte.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

function bEncode(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes));
}

/**
 * Picks B or Q for a text: Q when most of its octets stay literal (mostly
 * ASCII text stays readable in the raw header), B otherwise (it is shorter
 * for text that is mostly non-ASCII).
 *
 * @param text The text to encode.
 * @returns `"Q"` when at least as many octets are literal as escaped in its Q form.
 *
 * @example
 * ```ts
 * import { chooseWordEncoding } from "./encoded_word.ts";
 * console.log(chooseWordEncoding("Café au lait"), chooseWordEncoding("日本語")); // "Q" "B"
 * ```
 */
export function chooseWordEncoding(text: string): WordEncoding {
  let literal = 0;
  let escaped = 0;
  for (const byte of encoder.encode(text)) {
    if (qCost(byte) === 1) literal++;
    else escaped++;
  }
  return literal >= escaped ? "Q" : "B";
}

/**
 * Encodes text as one or more encoded-words of at most 68 characters each
 * (RFC 2047 §2 allows 75), split between characters, never inside one (RFC 2047 §5).
 * Written one after another separated by spaces, they decode to the text
 * again: the space between two encoded-words is not part of the text
 * (RFC 2047 §6.2).
 *
 * @param text Any text.
 * @param encoding B or Q; by default the shorter one.
 * @returns The encoded-words, to be joined with a space (or a fold).
 *
 * @example
 * ```ts
 * import { encodeWords } from "./encoded_word.ts";
 * console.log(encodeWords("Café au lait")); // ["=?utf-8?Q?Caf=C3=A9_au_lait?="]
 * ```
 */
export function encodeWords(
  text: string,
  encoding: WordEncoding = chooseWordEncoding(text),
): string[] {
  const limit = encoding === "B" ? MAX_B_OCTETS : MAX_ENCODED_TEXT;
  const words: string[] = [];
  let chunk: number[] = [];
  let size = 0;
  const flush = () => {
    const bytes = new Uint8Array(chunk);
    words.push(`=?utf-8?${encoding}?${encoding === "B" ? bEncode(bytes) : qEncode(bytes)}?=`);
    chunk = [];
    size = 0;
  };
  for (const char of text) {
    const bytes = encoder.encode(char);
    let cost = bytes.length;
    if (encoding === "Q") cost = bytes.reduce((sum, byte) => sum + qCost(byte), 0);
    if (chunk.length > 0 && size + cost > limit) flush();
    chunk.push(...bytes);
    size += cost;
  }
  if (chunk.length > 0) flush();
  return words;
}

/**
 * Encodes the body of an unstructured field such as Subject (RFC 5322
 * §3.2.5): words that can stay as they are stay; each run of words that
 * cannot (non-ASCII, controls, `=?`, or longer than 76 characters, which
 * could not be folded) becomes encoded-words, the spaces inside the run
 * included, so that decoding gives the exact text back.
 *
 * @param text The field body as the user wrote it.
 * @returns 7-bit text for the header, to be folded at its spaces.
 *
 * @example
 * ```ts
 * import { encodeUnstructured } from "./encoded_word.ts";
 * console.log(encodeUnstructured("Hello world")); // "Hello world"
 * console.log(encodeUnstructured("Report: 日本語")); // "Report: =?utf-8?B?5pel5pys6Kqe?="
 * ```
 */
export function encodeUnstructured(text: string): string {
  const tokens = text.split(/([ \t]+)/);
  const out: string[] = [];
  let run: string[] = [];
  const flushRun = () => {
    if (run.length === 0) return;
    // Spaces after the run's last word stay outside it.
    out.push(encodeWords(run.join("")).join(" "));
    run = [];
  };
  let pendingSpace = "";
  for (const token of tokens) {
    if (token === "") continue;
    if (/^[ \t]+$/.test(token)) {
      pendingSpace += token;
      continue;
    }
    const encode = needsEncoding(token) || token.length > 76;
    if (encode) {
      if (run.length > 0) run.push(pendingSpace);
      else out.push(pendingSpace);
      run.push(token);
    } else {
      flushRun();
      out.push(pendingSpace, token);
    }
    pendingSpace = "";
  }
  flushRun();
  out.push(pendingSpace);
  return out.join("");
}
