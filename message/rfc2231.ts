/**
 * MIME parameter values beyond plain ASCII (RFC 2231): a file name such as
 * `Prüfbericht.pdf` is written `filename*=utf-8''Pr%C3%BCfbericht.pdf`, and
 * a long one is split into numbered continuations (`filename*0*=`,
 * `filename*1*=`...) so that header lines can be folded.
 *
 * @module
 */

/** RFC 2045 §5.1 token characters: no tspecials, spaces or controls. */
const TOKEN = /^[!#$%&'*+\-.^_`{|}~0-9A-Za-z]+$/;
/**
 * RFC 2231 §7 attribute-char: a token character other than `*`, `'` and `%`
 * (the characters that carry meaning in extended values).
 */
const ATTRIBUTE_CHAR = /^[!#$&+\-.^_`{|}~0-9A-Za-z]$/;
/** Longest parameter piece, so that `; ` + piece fits one 78-character line. */
const MAX_PIECE = 70;

const encoder = new TextEncoder();

function percentEncode(char: string): string {
  if (ATTRIBUTE_CHAR.test(char)) return char;
  let out = "";
  for (const byte of encoder.encode(char)) {
    out += "%" + byte.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

function quote(value: string): string {
  return `"${value.replace(/[\\"]/g, (c) => "\\" + c)}"`;
}

/**
 * Formats a MIME parameter, `name="value"` when the value is short printable
 * ASCII, else the RFC 2231 extended form with UTF-8 percent-encoding, in
 * continuations when long (RFC 2231 §3, §4). A continuation never splits a
 * character's octets.
 *
 * @param attribute The parameter name, such as `filename` or `name`.
 * @param value The value, any text without controls.
 * @returns The parameter or its continuations, each to be written after `; `.
 * @throws {TypeError} When the attribute is not a token or the value has a control character.
 *
 * @example
 * ```ts
 * import { formatParameter } from "./rfc2231.ts";
 * console.log(formatParameter("filename", "report.pdf")); // ['filename="report.pdf"']
 * console.log(formatParameter("filename", "résumé.pdf"));
 * // ["filename*=utf-8''r%C3%A9sum%C3%A9.pdf"]
 * ```
 */
export function formatParameter(attribute: string, value: string): string[] {
  if (!TOKEN.test(attribute) || /[*'%]/.test(attribute)) {
    throw new TypeError(`Bad MIME parameter name "${attribute}"`);
  }
  // deno-lint-ignore no-control-regex
  if (/[\x00-\x1f\x7f]/.test(value)) {
    throw new TypeError(`MIME parameter ${attribute} must not contain control characters`);
  }
  const plain = `${attribute}=${quote(value)}`;
  if (/^[\x20-\x7e]*$/.test(value) && plain.length <= MAX_PIECE) return [plain];
  const single = `${attribute}*=utf-8''` + [...value].map(percentEncode).join("");
  if (single.length <= MAX_PIECE) return [single];
  const pieces: string[] = [];
  let current = "utf-8''";
  for (const char of value) {
    const encoded = percentEncode(char);
    const prefix = `${attribute}*${pieces.length}*=`;
    if (prefix.length + current.length + encoded.length > MAX_PIECE && current !== "utf-8''") {
      pieces.push(prefix + current);
      current = "";
    }
    current += encoded;
  }
  pieces.push(`${attribute}*${pieces.length}*=${current}`);
  return pieces;
}
