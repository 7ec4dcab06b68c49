/**
 * Address literals (RFC 5321 §4.1.3): a host written as its address in an
 * SMTP path or greeting, `[192.0.2.1]` or `[IPv6:2001:db8::1]`, or the
 * general form `[tag:content]`.
 *
 * @module
 */

import { canonicalIp, isIpv4, isIpv6 } from "./ip.ts";

/**
 * RFC 5321 §4.1.3 `IPv4-address-literal`: four `Snum`s of 1–3 digits, each
 * at most 255. Unlike {@linkcode isIpv4}, leading zeros are allowed, because
 * the grammar allows them.
 *
 * @param text The text inside the brackets.
 * @returns Whether it matches.
 *
 * @example
 * ```ts
 * import { isIpv4AddressLiteral } from "./address_literal.ts";
 * console.log(isIpv4AddressLiteral("192.0.2.01")); // true
 * console.log(isIpv4AddressLiteral("192.0.2.256")); // false
 * ```
 */
export function isIpv4AddressLiteral(text: string): boolean {
  const parts = text.split(".");
  return parts.length === 4 && parts.every((p) => /^[0-9]{1,3}$/.test(p) && Number(p) <= 255);
}

/**
 * Checks an address literal with its brackets: `[192.0.2.1]`,
 * `[IPv6:2001:db8::1]` (the tag in any case), and, with `general`, a
 * `General-address-literal` `[tag:content]`.
 *
 * @param literal The literal, brackets included.
 * @param general Whether to accept general literals too (the `Mailbox` grammar does).
 * @returns Whether it is well formed.
 *
 * @example
 * ```ts
 * import { isAddressLiteral } from "./address_literal.ts";
 * console.log(isAddressLiteral("[IPv6:2001:db8::1]")); // true
 * console.log(isAddressLiteral("[300.1.1.1]")); // false
 * console.log(isAddressLiteral("[x-tag:abc]", true)); // true
 * ```
 */
export function isAddressLiteral(literal: string, general = false): boolean {
  if (!literal.startsWith("[") || !literal.endsWith("]")) return false;
  const inner = literal.slice(1, -1);
  if (isIpv4AddressLiteral(inner)) return true;
  const colon = inner.indexOf(":");
  if (colon <= 0) return false;
  const tag = inner.slice(0, colon);
  const content = inner.slice(colon + 1);
  if (tag.toLowerCase() === "ipv6") return isIpv6(content);
  // General-address-literal: Standardized-tag ":" 1*dcontent (%d33-90 / %d94-126)
  return general && /^[A-Za-z0-9-]*[A-Za-z0-9]$/.test(tag) &&
    /^[\x21-\x5a\x5e-\x7e]+$/.test(content);
}

/**
 * Writes an IP address as an address literal: `[192.0.2.1]`,
 * `[IPv6:2001:db8::1]`; `null` for anything else.
 *
 * @param address An IP address.
 * @returns The literal, or `null`.
 *
 * @example
 * ```ts
 * import { formatAddressLiteral } from "./address_literal.ts";
 * console.log(formatAddressLiteral("::1")); // "[IPv6:::1]"
 * ```
 */
export function formatAddressLiteral(address: string): string | null {
  if (isIpv4(address)) return `[${address}]`;
  if (isIpv6(address)) return `[IPv6:${address}]`;
  return null;
}

/**
 * Reads an address literal, or a bare IP address, as the address it names.
 *
 * @param text A domain or literal as found in an address or route.
 * @returns The IP address (IPv6 in canonical form), or `null` when `text` is not an address.
 *
 * @example
 * ```ts
 * import { parseAddressLiteral } from "./address_literal.ts";
 * console.log(parseAddressLiteral("[IPv6:2001:DB8:0::1]")); // "2001:db8::1"
 * console.log(parseAddressLiteral("example.test")); // null
 * ```
 */
export function parseAddressLiteral(text: string): string | null {
  if (isIpv4(text)) return text;
  if (isIpv6(text)) return canonicalIp(text);
  const literal = /^\[(.*)\]$/s.exec(text)?.[1];
  if (literal === undefined) return null;
  if (isIpv4(literal)) return literal;
  const v6 = /^ipv6:(.*)$/is.exec(literal)?.[1];
  return v6 !== undefined && isIpv6(v6) ? canonicalIp(v6) : null;
}
