/**
 * Domain names as SMTP and DNS write them: labels of letters, digits and
 * hyphens, joined by dots (RFC 5321 §4.1.2 `Domain`, RFC 1035 §2.3.1). The
 * one home of this rule in tern: the SMTP parsers and the configuration
 * both ask here.
 *
 * @module
 */

import { utf8Length } from "../bytes/utf8_length.ts";

/** Letters, digits and hyphens (RFC 5321 §4.1.2 `sub-domain`). */
const ASCII_LABEL = /^[A-Za-z0-9-]+$/;
/** The same, plus any non-ASCII character (RFC 6531 §3.3 `U-label`). */
const UTF8_LABEL = /^[A-Za-z0-9\-\u0080-\uffff]+$/;

/**
 * Checks a domain name: labels of letters, digits and hyphens, not starting
 * or ending with a hyphen (RFC 5321 §4.1.2 `sub-domain`), each at most 63
 * octets, the whole at most 255 (§4.5.3.1.2). With `utf8`, U-labels
 * (RFC 6531 §3.3) are allowed.
 *
 * @param domain The domain, without a trailing dot.
 * @param utf8 Whether non-ASCII labels are allowed.
 * @returns Whether it is a valid domain.
 *
 * @example
 * ```ts
 * import { isDomain } from "./domain.ts";
 * console.log(isDomain("mx.example.test", false)); // true
 * console.log(isDomain("-bad.example", false)); // false
 * console.log(isDomain("bücher.example", true)); // true
 * ```
 */
export function isDomain(domain: string, utf8: boolean): boolean {
  if (domain.length === 0 || utf8Length(domain) > 255) return false;
  const labelSyntax = utf8 ? UTF8_LABEL : ASCII_LABEL;
  for (const label of domain.split(".")) {
    if (!labelSyntax.test(label) || utf8Length(label) > 63) return false;
    if (label.startsWith("-") || label.endsWith("-")) return false;
  }
  return true;
}

/**
 * Checks a name tern looks up in DNS or announces (host names, local
 * domains, routes): ASCII labels as {@linkcode isDomain} reads them, and at
 * most 253 characters, the longest name that fits DNS's 255 octets on the
 * wire (RFC 1035 §2.3.4: each label costs its length octet, and the root one).
 *
 * @param name The name, without a trailing dot.
 * @returns Whether it is a valid DNS name.
 *
 * @example
 * ```ts
 * import { isDomainName } from "./domain.ts";
 * console.log(isDomainName("mx.example.test")); // true
 * console.log(isDomainName("bücher.example")); // false: write it as xn--bcher-kva.example
 * ```
 */
export function isDomainName(name: string): boolean {
  return name.length <= 253 && isDomain(name, false);
}
