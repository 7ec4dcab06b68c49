/**
 * Header field folding (RFC 5322 §2.2.3): a long field body is split into
 * lines by putting CRLF before a space or tab, so that lines stay within 78
 * characters where possible and never exceed 998 octets (RFC 5322 §2.1.1).
 *
 * @module
 */

import { utf8Length } from "../bytes/utf8_length.ts";

/** RFC 5322 §2.1.1: lines SHOULD be at most 78 characters, excluding CRLF. */
export const PREFERRED_LINE_LENGTH = 78;
/** RFC 5322 §2.1.1: lines MUST be at most 998 octets, excluding CRLF. */
export const MAX_LINE_OCTETS = 998;

/**
 * Formats `Name: value`, folded before whitespace so that each line is at
 * most 78 characters where the words allow it.
 *
 * @param name The field name, such as `Subject`.
 * @param value The field body, already encoded (ASCII, or UTF-8 per RFC 6532).
 * @returns The field without its final CRLF; folds are CRLF followed by the
 *   original space or tab, so unfolding gives the value back.
 * @throws {RangeError} When a single word would make a line longer than 998 octets.
 *
 * @example
 * ```ts
 * import { foldHeader } from "./header_fold.ts";
 * const field = foldHeader("Subject", "word ".repeat(30).trim());
 * console.log(field.split("\r\n").every((line) => line.length <= 78)); // true
 * ```
 */
export function foldHeader(name: string, value: string): string {
  // Each token is its leading whitespace plus a word; folding happens only
  // before a token that starts with whitespace (the fold keeps that WSP).
  const tokens = value.match(/[ \t]*[^ \t]+|[ \t]+$/g) ?? [];
  const lines: string[] = [];
  let current = `${name}:`;
  let first = true;
  for (const token of tokens) {
    const piece = first && !/^[ \t]/.test(token) ? ` ${token}` : token;
    first = false;
    const foldable = /^[ \t]/.test(piece) && /[^ \t]/.test(piece) && current.length > 0 &&
      current !== `${name}:`;
    if (foldable && utf8Length(current) + utf8Length(piece) > PREFERRED_LINE_LENGTH) {
      lines.push(current);
      current = piece;
    } else {
      current += piece;
    }
  }
  lines.push(current);
  for (const line of lines) {
    if (utf8Length(line) > MAX_LINE_OCTETS) {
      throw new RangeError(
        `Header ${name} has a word too long to fold (RFC 5322 §2.1.1: 998 octets per line at most)`,
      );
    }
  }
  return lines.join("\r\n");
}
