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
 * Decodes xtext (RFC 3461 §4).
 *
 * @param text The xtext.
 * @returns The decoded text, or `null` when it is not valid xtext.
 *
 * @example
 * ```ts
 * import { decodeXtext } from "./dsn_parameters.ts";
 * console.log(decodeXtext("rfc822;bob+2Btag@example.test")); // "rfc822;bob+tag@example.test"
 * ```
 */
export function decodeXtext(text: string): string | null {
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x2b) {
      const hex = text.slice(i + 1, i + 3);
      if (!/^[0-9A-F]{2}$/.test(hex)) return null;
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else if (c >= 0x21 && c <= 0x7e && c !== 0x3d) {
      bytes.push(c);
    } else if (c >= 0x80) {
      // RFC 6533 §3: with SMTPUTF8, UTF-8 may appear as it is.
      bytes.push(...new TextEncoder().encode(text[i]!));
    } else {
      return null;
    }
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(Uint8Array.from(bytes));
  } catch {
    return null;
  }
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
  const address = decodeXtext(value.slice(semi + 1));
  if (address === null || address === "" || address.length > 500) return null;
  return `${type.toLowerCase()};${address}`;
}
