/**
 * Paths and mailboxes of RFC 5321 §4.1.2, the addresses in `MAIL FROM:<...>`
 * and `RCPT TO:<...>`.
 *
 * ```
 * Path        = "<" [ A-d-l ":" ] Mailbox ">"
 * A-d-l       = At-domain *( "," At-domain )    ; a source route: accepted, ignored
 * Mailbox     = Local-part "@" ( Domain / address-literal )
 * Local-part  = Dot-string / Quoted-string       ; case-sensitive, kept as written
 * ```
 *
 * RFC 6531 (SMTPUTF8) lets atoms, quoted strings and domain labels carry
 * UTF-8; without it they are ASCII only, and a caller that finds non-ASCII in
 * a path without the SMTPUTF8 parameter refuses it (RFC 6531 §3.4).
 *
 * @module
 */

import { utf8Length } from "../bytes/utf8_length.ts";
import { isDomain } from "../net/domain.ts";

export { isDomain };
import {
  isAddressLiteral as isNetAddressLiteral,
  isIpv4AddressLiteral,
} from "../net/address_literal.ts";

/** An address `local-part@domain` split into its parts, both as written. */
export interface Mailbox {
  /** The local part exactly as written, quotes and escapes included (RFC 5321 §2.4: case-sensitive). */
  readonly localPart: string;
  /** The domain or address literal (`[192.0.2.1]`, `[IPv6:2001:db8::1]`) as written. */
  readonly domain: string;
}

/** Why a path did not parse; `message` is a sentence a client can read. */
export class PathSyntaxError extends SyntaxError {
  /**
   * Makes the error.
   *
   * @param message What is wrong, for the 501 reply.
   */
  constructor(message: string) {
    super(message);
    this.name = "PathSyntaxError";
  }
}

/** RFC 5321 §4.5.3.1.3: a path is at most 256 octets, brackets included. */
export const MAX_PATH_OCTETS = 256;

// RFC 5322 §3.2.3 atext, as RFC 5321 §4.1.2 uses it.
const ATEXT = /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]$/;

function isAtext(ch: string, utf8: boolean): boolean {
  return ATEXT.test(ch) || (utf8 && ch.charCodeAt(0) >= 0x80);
}

/**
 * Checks an address literal with its brackets (RFC 5321 §4.1.3):
 * `[192.0.2.1]`, `[IPv6:2001:db8::1]`, or a general literal `[tag:content]`.
 *
 * @param literal The literal, brackets included.
 * @returns Whether it is well formed.
 *
 * @example
 * ```ts
 * import { isAddressLiteral } from "./path.ts";
 * console.log(isAddressLiteral("[IPv6:2001:db8::1]")); // true
 * console.log(isAddressLiteral("[300.1.1.1]")); // false
 * ```
 */
export function isAddressLiteral(literal: string): boolean {
  return isNetAddressLiteral(literal, true);
}

/**
 * Whether a string is a dotted-quad IPv4 address (RFC 5321 §4.1.3 `IPv4-address-literal`).
 *
 * @param s The text.
 * @returns Whether it is an IPv4 address.
 */
export function isIpv4(s: string): boolean {
  return isIpv4AddressLiteral(s);
}

export { isIpv6 } from "../net/ip.ts";

/** Reads a Local-part (RFC 5321 §4.1.2) at `start`; returns its end index. */
function scanLocalPart(s: string, start: number, utf8: boolean): number {
  let i = start;
  if (s[i] === '"') {
    // Quoted-string = DQUOTE *QcontentSMTP DQUOTE
    i++;
    while (i < s.length && s[i] !== '"') {
      const code = s.charCodeAt(i);
      if (s[i] === "\\") {
        const next = s.charCodeAt(i + 1);
        // quoted-pairSMTP = %d92 %d32-126
        if (!(next >= 32 && next <= 126)) {
          throw new PathSyntaxError("Bad escape in quoted local part");
        }
        i += 2;
        continue;
      }
      // qtextSMTP = %d32-33 / %d35-91 / %d93-126 (and UTF-8 with SMTPUTF8)
      if (!((code >= 32 && code <= 126) || (utf8 && code >= 0x80))) {
        throw new PathSyntaxError("Bad character in quoted local part");
      }
      i++;
    }
    if (s[i] !== '"') throw new PathSyntaxError('Quoted local part lacks its closing """');
    return i + 1;
  }
  // Dot-string = Atom *("." Atom)
  let atomLength = 0;
  while (i < s.length) {
    const ch = s[i]!;
    if (ch === ".") {
      if (atomLength === 0) {
        throw new PathSyntaxError("Local part has an empty atom (check the dots)");
      }
      atomLength = 0;
    } else if (isAtext(ch, utf8)) {
      atomLength++;
    } else {
      break;
    }
    i++;
  }
  if (atomLength === 0) {
    throw new PathSyntaxError(i === start ? "Missing local part" : "Local part ends with a dot");
  }
  return i;
}

/**
 * Parses a mailbox `local-part@domain` (RFC 5321 §4.1.2).
 *
 * @param text The mailbox, without angle brackets.
 * @param options `utf8`: allow RFC 6531 UTF-8 in the local part and domain.
 * @returns The parts, as written.
 * @throws {PathSyntaxError} When the text is not a mailbox.
 *
 * @example
 * ```ts
 * import { parseMailbox } from "./path.ts";
 * const m = parseMailbox('"john doe"@example.test');
 * console.log(m.localPart); // "\"john doe\""
 * ```
 */
export function parseMailbox(text: string, options: { utf8?: boolean } = {}): Mailbox {
  const utf8 = options.utf8 ?? true;
  const end = scanLocalPart(text, 0, utf8);
  if (text[end] !== "@") {
    throw new PathSyntaxError(
      end === text.length ? 'Missing "@domain"' : "Bad character in local part",
    );
  }
  const localPart = text.slice(0, end);
  const domain = text.slice(end + 1);
  if (domain.startsWith("[")) {
    if (!isAddressLiteral(domain)) throw new PathSyntaxError(`Bad address literal "${domain}"`);
  } else if (!isDomain(domain, utf8)) {
    throw new PathSyntaxError(domain === "" ? "Missing domain" : `Bad domain "${domain}"`);
  }
  return { localPart, domain };
}

/** The result of {@linkcode parsePath}. */
export interface ParsedPath {
  /** The mailbox, or `null` for the null path `<>`. */
  readonly mailbox: Mailbox | null;
  /** What followed the closing `>`: the ESMTP parameters, unparsed. */
  readonly rest: string;
}

/**
 * Parses a path in angle brackets at the start of `text` (RFC 5321 §4.1.2),
 * skipping a source route (Appendix C: MUST be accepted, SHOULD be ignored).
 *
 * @param text `<local@domain> PARAM=VALUE ...`.
 * @param options `allowNull`: accept `<>` (reverse-paths only); `utf8`: allow UTF-8.
 * @returns The mailbox and what follows the path.
 * @throws {PathSyntaxError} When the path is malformed.
 *
 * @example
 * ```ts
 * import { parsePath } from "./path.ts";
 * const p = parsePath("<@relay.test:bob@example.test> SIZE=100", { allowNull: false });
 * console.log(p.mailbox?.domain, p.rest); // "example.test" "SIZE=100"
 * ```
 */
export function parsePath(
  text: string,
  options: { allowNull?: boolean; utf8?: boolean } = {},
): ParsedPath {
  if (!text.startsWith("<")) throw new PathSyntaxError('Path must be enclosed in "<" and ">"');
  if (text.startsWith("<>")) {
    if (!options.allowNull) throw new PathSyntaxError("Empty path is only allowed as the sender");
    return { mailbox: null, rest: text.slice(2).trim() };
  }
  let i = 1;
  if (text[i] === "@") {
    // A-d-l ":" — source route, skipped
    const colon = text.indexOf(":", i);
    if (colon < 0) throw new PathSyntaxError('Source route lacks its ":"');
    for (const hop of text.slice(i, colon).split(",")) {
      if (
        !hop.startsWith("@") || !(isDomain(hop.slice(1), true) || isAddressLiteral(hop.slice(1)))
      ) {
        throw new PathSyntaxError(`Bad source route "${text.slice(i, colon)}"`);
      }
    }
    i = colon + 1;
  }
  const localEnd = scanLocalPart(text, i, options.utf8 ?? true);
  const close = text.indexOf(">", localEnd);
  if (close < 0) throw new PathSyntaxError('Path lacks its closing ">"');
  if (utf8Length(text.slice(0, close + 1)) > MAX_PATH_OCTETS) {
    throw new PathSyntaxError("Path too long (RFC 5321 §4.5.3.1.3: 256 octets at most)");
  }
  const mailbox = parseMailbox(
    text.slice(i, close),
    options.utf8 === undefined ? {} : { utf8: options.utf8 },
  );
  return { mailbox, rest: text.slice(close + 1).trim() };
}

/**
 * Formats a mailbox as `local-part@domain`.
 *
 * @param m The mailbox.
 * @returns The address.
 */
export function formatMailbox(m: Mailbox): string {
  return `${m.localPart}@${m.domain}`;
}

/**
 * Whether text holds anything but ASCII, which needs SMTPUTF8 (RFC 6531).
 *
 * @param s The text.
 * @returns Whether any character is beyond U+007F.
 */
export function isNonAscii(s: string): boolean {
  // deno-lint-ignore no-control-regex
  return /[^\x00-\x7f]/.test(s);
}
