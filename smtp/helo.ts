/**
 * The argument of EHLO and HELO (RFC 5321 §4.1.1.1): the client's name, a
 * `Domain` (§4.1.2), or an `address-literal` (§4.1.3) when it has no name.
 *
 * The check is the one of `path.ts`, with the leniency real MTAs show, since
 * a refused greeting stops all mail from that client:
 *
 * - underscores in labels (Windows hosts send `DESKTOP_1`, which DNS
 *   allows but the §4.1.2 grammar does not);
 * - a single label (`localhost`) and a trailing dot (`mx.example.test.`);
 * - a bare dotted quad (`192.0.2.1`), which is also a (numeric) `Domain`.
 *
 * Refused: anything with spaces, control characters or punctuation such as
 * `<`, `(`, `;` or quotes, empty labels, and address literals other than
 * IPv4 and IPv6 (no general-literal tag is registered; RFC 5321 §4.1.3).
 * Non-ASCII is refused too: EHLO comes before SMTPUTF8 can be negotiated, so
 * an internationalized name goes in its A-label (`xn--`) form.
 *
 * The name is never compared with the client's address: §4.1.4 forbids
 * refusing a greeting for that.
 *
 * @module
 */

import { isAddressLiteral } from "../net/address_literal.ts";
import { isDomain, isNonAscii } from "./path.ts";

/**
 * Checks an EHLO/HELO argument and says what is wrong with it.
 *
 * @param name The argument, trimmed.
 * @returns `null` when it is acceptable, else a short reason for a 501 reply.
 *
 * @example
 * ```ts
 * import { heloNameProblem } from "./helo.ts";
 * console.log(heloNameProblem("mail.example.test")); // null
 * console.log(heloNameProblem("[IPv6:2001:db8::1]")); // null
 * console.log(heloNameProblem("DESKTOP_1")); // null
 * console.log(heloNameProblem("<script>") !== null); // true
 * ```
 */
export function heloNameProblem(name: string): string | null {
  if (name === "") return "needs your host name";
  if (isNonAscii(name)) {
    return "needs an ASCII host name: send an internationalized one in its A-label (xn--) form";
  }
  if (name.startsWith("[")) {
    return isHeloAddressLiteral(name)
      ? null
      : "needs an address literal such as [192.0.2.1] or [IPv6:2001:db8::1]";
  }
  return isLenientDomain(name)
    ? null
    : "needs your host name (such as mail.example.test) or address literal (such as [192.0.2.1])";
}

/** RFC 5321 §4.1.3, restricted to the two literals that name an address (no general literal). */
function isHeloAddressLiteral(literal: string): boolean {
  return isAddressLiteral(literal);
}

/** RFC 5321 §4.1.2 `Domain`, allowing `_` in labels and one trailing dot. */
function isLenientDomain(name: string): boolean {
  const bare = name.endsWith(".") ? name.slice(0, -1) : name;
  // An underscore stands where a letter may: the label rules are otherwise
  // unchanged (no leading or trailing hyphen, at most 63 octets).
  return isDomain(bare.replaceAll("_", "u"), false);
}
