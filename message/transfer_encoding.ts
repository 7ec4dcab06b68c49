/**
 * Content-Transfer-Encoding for MIME bodies (RFC 2045 §6): quoted-printable
 * for mostly-ASCII text, base64 for the rest, and 7bit when the data is
 * already short lines of ASCII. Encoded bodies are 7-bit, so a message can
 * go through any SMTP server without the 8BITMIME extension.
 *
 * @module
 */

/** The encodings this module writes. */
export type TransferEncoding = "7bit" | "quoted-printable" | "base64";

/** RFC 2045 §6.7 (5) and §6.8: encoded lines are at most 76 characters. */
export const MAX_ENCODED_LINE = 76;
/** Lines of ASCII up to this length are sent as they are. */
const MAX_7BIT_LINE = 76;

function hex(byte: number): string {
  return "=" + byte.toString(16).toUpperCase().padStart(2, "0");
}

function isHardBreak(data: Uint8Array, i: number): boolean {
  return data[i] === 0x0d && data[i + 1] === 0x0a;
}

/**
 * Encodes data as quoted-printable (RFC 2045 §6.7): CRLF pairs stay line
 * breaks, printable ASCII other than `=` stays literal, a space or tab at
 * the end of a line and every other octet become `=XX`, and soft line breaks
 * (`=` at the end of a line) keep every line within 76 characters.
 *
 * @param data The octets, with CRLF line ends for text.
 * @returns The encoded text, lines separated by CRLF, without a final CRLF
 *   unless the data ended with one.
 *
 * @example
 * ```ts
 * import { encodeQuotedPrintable } from "./transfer_encoding.ts";
 * console.log(encodeQuotedPrintable(new TextEncoder().encode("café = 1 \r\n")));
 * // "caf=C3=A9 =3D 1=20\r\n"
 * ```
 */
export function encodeQuotedPrintable(data: Uint8Array): string {
  const lines: string[] = [];
  let line = "";
  for (let i = 0; i < data.length; i++) {
    if (isHardBreak(data, i)) {
      lines.push(line);
      line = "";
      i++;
      continue;
    }
    const byte = data[i]!;
    let piece: string;
    if (byte >= 33 && byte <= 126 && byte !== 0x3d) piece = String.fromCharCode(byte);
    else if (byte === 0x20 || byte === 0x09) {
      // Rule (3): whitespace at the end of an encoded line would be lost.
      const atEnd = i + 1 === data.length || isHardBreak(data, i + 1);
      piece = atEnd ? hex(byte) : String.fromCharCode(byte);
    } else piece = hex(byte);
    // Rule (5): room for the "=" of a soft break on every broken line.
    if (line.length + piece.length > MAX_ENCODED_LINE - 1) {
      lines.push(line + "=");
      line = "";
    }
    line += piece;
  }
  lines.push(line);
  return lines.join("\r\n");
}

/**
 * Encodes data as base64 in lines of 76 characters (RFC 2045 §6.8).
 *
 * @param data Any octets.
 * @returns The base64 text, lines separated by CRLF, no final CRLF.
 *
 * @example
 * ```ts
 * import { encodeBase64Lines } from "./transfer_encoding.ts";
 * console.log(encodeBase64Lines(new Uint8Array([0, 1, 2, 255]))); // "AAEC/w=="
 * ```
 */
export function encodeBase64Lines(data: Uint8Array): string {
  const octetsPerLine = (MAX_ENCODED_LINE / 4) * 3;
  const lines: string[] = [];
  for (let i = 0; i < data.length; i += octetsPerLine) {
    lines.push(btoa(String.fromCharCode(...data.subarray(i, i + octetsPerLine))));
  }
  return lines.join("\r\n");
}

/** Whether data can go as 7bit: ASCII without NUL, CRLF line ends only, short lines. */
function is7bit(data: Uint8Array): boolean {
  let lineLength = 0;
  for (let i = 0; i < data.length; i++) {
    const byte = data[i]!;
    if (isHardBreak(data, i)) {
      lineLength = 0;
      i++;
      continue;
    }
    // RFC 2045 §2.7: no NUL, no bare CR or LF, no octet above 127; other
    // controls are legal but are mangled often enough to encode them.
    if (byte >= 0x80 || (byte < 0x20 && byte !== 0x09) || byte === 0x7f) return false;
    if (++lineLength > MAX_7BIT_LINE) return false;
  }
  // A final space would be stripped by some transports.
  const last = data[data.length - 1];
  return last !== 0x20 && last !== 0x09;
}

/**
 * Chooses the transfer encoding for a body: `7bit` when it is ASCII in lines
 * of at most 76 characters; quoted-printable when it is mostly ASCII (fewer
 * than a third of its octets need `=XX`), so that it stays readable and at
 * most 25% longer than base64; base64 otherwise.
 *
 * @param data The body's octets, with CRLF line ends for text.
 * @returns The encoding to declare in Content-Transfer-Encoding.
 *
 * @example
 * ```ts
 * import { chooseTransferEncoding } from "./transfer_encoding.ts";
 * const utf8 = (s: string) => new TextEncoder().encode(s);
 * console.log(chooseTransferEncoding(utf8("Hello\r\n"))); // "7bit"
 * console.log(chooseTransferEncoding(utf8("Grüße aus Köln\r\n"))); // "quoted-printable"
 * console.log(chooseTransferEncoding(utf8("日本語のテキスト"))); // "base64"
 * ```
 */
export function chooseTransferEncoding(data: Uint8Array): TransferEncoding {
  if (is7bit(data)) return "7bit";
  let literal = 0;
  let escaped = 0;
  for (let i = 0; i < data.length; i++) {
    const byte = data[i]!;
    if (isHardBreak(data, i)) {
      i++;
      literal += 2;
    } else if ((byte >= 32 && byte <= 126 && byte !== 0x3d) || byte === 0x09) literal++;
    else escaped++;
  }
  return literal >= 2 * escaped ? "quoted-printable" : "base64";
}

/**
 * Encodes data in the given transfer encoding.
 *
 * @param data The octets; for `7bit`, data that {@linkcode chooseTransferEncoding} allowed.
 * @param encoding The encoding.
 * @returns The encoded body text.
 *
 * @example
 * ```ts
 * import { encodeBody } from "./transfer_encoding.ts";
 * console.log(encodeBody(new TextEncoder().encode("é"), "base64")); // "w6k="
 * ```
 */
export function encodeBody(data: Uint8Array, encoding: TransferEncoding): string {
  switch (encoding) {
    case "7bit":
      return new TextDecoder().decode(data);
    case "quoted-printable":
      return encodeQuotedPrintable(data);
    case "base64":
      return encodeBase64Lines(data);
  }
}
