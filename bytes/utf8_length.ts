/**
 * The length of a string in UTF-8, counted without encoding it. SMTP limits
 * are in octets (RFC 5321 §4.5.3.1) while JavaScript strings count UTF-16
 * units; encoding a string only to measure it costs an allocation on every
 * command and every queue write.
 *
 * @module
 */

/**
 * The number of octets `new TextEncoder().encode(text)` would produce.
 *
 * A surrogate pair is one code point of 4 octets; a lone surrogate is
 * encoded as U+FFFD (3 octets), as TextEncoder does.
 *
 * @param text Any string.
 * @returns Its UTF-8 length in octets.
 *
 * @example
 * ```ts
 * import { utf8Length } from "./utf8_length.ts";
 * console.log(utf8Length("abc")); // 3
 * console.log(utf8Length("é")); // 2
 * console.log(utf8Length("😀")); // 4
 * ```
 */
export function utf8Length(text: string): number {
  let size = text.length;
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit < 0x80) continue;
    if (unit < 0x800) {
      size += 1;
    } else if (
      unit >= 0xd800 && unit <= 0xdbff && i + 1 < text.length &&
      (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00
    ) {
      size += 2; // two units, four octets
      i++;
    } else {
      size += 2;
    }
  }
  return size;
}
