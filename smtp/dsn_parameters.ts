/**
 * The parameters of the DSN extension (RFC 3461) on MAIL and RCPT:
 *
 * - `RET=FULL|HDRS` on MAIL (§4.3): what a failure report returns;
 * - `ENVID=<xtext>` on MAIL (§4.4): the sender's id for the transaction;
 * - `NOTIFY=NEVER|SUCCESS,FAILURE,DELAY` on RCPT (§4.1): when to report;
 * - `ORCPT=<addr-type>;<xtext>` on RCPT (§4.2): the original recipient.
 *
 * Values travel as xtext (§4): `+` followed by two upper-case hex digits
 * stands for one octet.
 *
 * @module
 */

import type { DsnNotify } from "./envelope.ts";

/**
 * Decodes xtext (RFC 3461 §4) into printable text.
 *
 * RFC 3461 §4: ENVID and ORCPT values "must consist of printable US-ASCII
 * characters", so a `+XX` that stands for anything else (a CR, a LF, an ESC,
 * an 8-bit octet) is refused rather than decoded: the value goes into the
 * header of every delivery report, where a CR LF would start a forged field.
 *
 * @param text The xtext.
 * @param utf8 Whether UTF-8 written as it is may appear, as in a `utf-8`
 *   ORCPT with SMTPUTF8 (RFC 6533 §3); C1 controls never may.
 * @returns The decoded text, or `null` when it is not valid xtext or does not
 *   decode to printable characters.
 *
 * @example
 * ```ts
 * import { decodeXtext } from "./dsn_parameters.ts";
 * console.log(decodeXtext("rfc822;bob+2Btag@example.test")); // "rfc822;bob+tag@example.test"
 * console.log(decodeXtext("x+0D+0AAction:+20delivered")); // null
 * console.log(decodeXtext("d\u00e9j\u00e0", true)); // "d\u00e9j\u00e0"
 * ```
 */
export function decodeXtext(text: string, utf8 = false): string | null {
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const c = text.codePointAt(i)!;
    if (c === 0x2b) {
      const hex = text.slice(i + 1, i + 3);
      if (!/^[0-9A-F]{2}$/.test(hex)) return null;
      const octet = parseInt(hex, 16);
      if (!isPrintableAscii(octet)) return null;
      out += String.fromCharCode(octet);
      i += 2;
    } else if (c >= 0x21 && c <= 0x7e && c !== 0x3d) {
      out += String.fromCharCode(c);
    } else if (utf8 && c > 0x9f && !(c >= 0xd800 && c <= 0xdfff)) {
      const char = String.fromCodePoint(c);
      out += char;
      i += char.length - 1;
    } else {
      return null; // a control character, a space, "=", 8-bit, a lone surrogate
    }
  }
  return out;
}

/**
 * Parses ENVID (RFC 3461 §4.4): xtext of at most 100 characters, printable
 * US-ASCII once decoded.
 *
 * @param value The parameter value.
 * @returns The decoded envelope id, or `null` when it is not valid.
 *
 * @example
 * ```ts
 * import { parseEnvid } from "./dsn_parameters.ts";
 * console.log(parseEnvid("order+2B42")); // "order+42"
 * console.log(parseEnvid("x+0D+0AAction:+20delivered")); // null
 * ```
 */
export function parseEnvid(value: string): string | null {
  if (value.length > 100) return null;
  return decodeXtext(value);
}

/** RFC 3461 §4: printable US-ASCII, SP included (it is written `+20`). */
function isPrintableAscii(octet: number): boolean {
  return octet >= 0x20 && octet <= 0x7e;
}

/**
 * Parses NOTIFY (RFC 3461 §4.1): NEVER alone, or a list of SUCCESS, FAILURE, DELAY.
 *
 * @param value The parameter value.
 * @returns The keywords, or `null` when the value is not valid.
 *
 * @example
 * ```ts
 * import { parseNotify } from "./dsn_parameters.ts";
 * console.log(parseNotify("success,FAILURE")); // ["SUCCESS", "FAILURE"]
 * console.log(parseNotify("NEVER,DELAY")); // null
 * ```
 */
export function parseNotify(value: string): DsnNotify[] | null {
  const words = value.toUpperCase().split(",");
  const out: DsnNotify[] = [];
  for (const w of words) {
    if (w !== "NEVER" && w !== "SUCCESS" && w !== "FAILURE" && w !== "DELAY") return null;
    if (out.includes(w)) return null;
    out.push(w);
  }
  if (out.includes("NEVER") && out.length > 1) return null; // NEVER is exclusive
  return out;
}

/**
 * Parses ORCPT (RFC 3461 §4.2): `addr-type ";" xtext`.
 *
 * @param value The parameter value.
 * @returns `addr-type;address` decoded, or `null` when malformed.
 *
 * @example
 * ```ts
 * import { parseOrcpt } from "./dsn_parameters.ts";
 * console.log(parseOrcpt("rfc822;alice+2Bx@example.test")); // "rfc822;alice+x@example.test"
 * ```
 */
export function parseOrcpt(value: string): string | null {
  const semi = value.indexOf(";");
  if (semi <= 0) return null;
  const type = value.slice(0, semi);
  if (!/^[A-Za-z0-9-]+$/.test(type)) return null;
  // RFC 6533 §3: only the "utf-8" address type may carry UTF-8 as it is.
  const address = decodeXtext(value.slice(semi + 1), type.toLowerCase() === "utf-8");
  if (address === null || address === "" || address.length > 500) return null;
  return `${type.toLowerCase()};${address}`;
}
