/**
 * IP addresses as text and as numbers: which family a string is, the one
 * 128-bit number both families compare as (IPv4 as its IPv4-mapped IPv6
 * form), and the canonical way to write one.
 *
 * @module
 */

/** One IPv4 octet in decimal, without leading zeros (as `inet_pton` reads it). */
const V4_OCTET = "(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)";
const IPV4 = new RegExp(`^${V4_OCTET}(?:\\.${V4_OCTET}){3}$`);
/** The characters an IPv6 address can be written with (RFC 4291 §2.2). */
const IPV6_CHARS = /^[0-9A-Fa-f:.]+$/;

/** `::ffff:0:0/96`, where IPv4 addresses live among IPv6 ones (RFC 4291 §2.5.5.2). */
export const IPV4_MAPPED_PREFIX: bigint = 0xffffn << 32n;

/**
 * Whether a string is an IPv4 address in dotted-quad form. Leading zeros are
 * refused: `010.0.0.1` is octal to some readers and decimal to others.
 *
 * @param text The text.
 * @returns Whether it is an IPv4 address.
 *
 * @example
 * ```ts
 * import { isIpv4 } from "./ip.ts";
 * console.log(isIpv4("192.0.2.1")); // true
 * console.log(isIpv4("192.0.2.01")); // false
 * ```
 */
export function isIpv4(text: string): boolean {
  return IPV4.test(text);
}

/**
 * Whether a string is an IPv6 address in one of RFC 4291 §2.2's text forms,
 * without a zone index (`%eth0`): see {@linkcode withoutZone}.
 *
 * @param text The text, without brackets.
 * @returns Whether it is an IPv6 address.
 *
 * @example
 * ```ts
 * import { isIpv6 } from "./ip.ts";
 * console.log(isIpv6("2001:db8::1")); // true
 * console.log(isIpv6("::ffff:192.0.2.1")); // true
 * console.log(isIpv6("2001:db8::1::2")); // false
 * ```
 */
export function isIpv6(text: string): boolean {
  if (!IPV6_CHARS.test(text) || !text.includes(":")) return false;
  try {
    // The URL parser implements RFC 4291's forms exactly (WHATWG "IPv6 parser").
    new URL(`http://[${text}]/`);
    return true;
  } catch {
    return false;
  }
}

/**
 * An IPv6 address without its zone index: `fe80::1%eth0` → `fe80::1`. The
 * zone says which link, not which address (RFC 4007 §11).
 *
 * @param text An address.
 * @returns The address without `%zone`.
 *
 * @example
 * ```ts
 * import { withoutZone } from "./ip.ts";
 * console.log(withoutZone("fe80::1%eth0")); // "fe80::1"
 * ```
 */
export function withoutZone(text: string): string {
  const percent = text.indexOf("%");
  return percent === -1 ? text : text.slice(0, percent);
}

/**
 * Which family an address is: 4, 6 (a zone index allowed), or 0 for neither,
 * as `node:net`'s `isIP` answers.
 *
 * @param text The text.
 * @returns 4, 6 or 0.
 *
 * @example
 * ```ts
 * import { ipVersion } from "./ip.ts";
 * console.log(ipVersion("127.0.0.1"), ipVersion("fe80::1%lo"), ipVersion("localhost")); // 4 6 0
 * ```
 */
export function ipVersion(text: string): 0 | 4 | 6 {
  if (isIpv4(text)) return 4;
  const percent = text.indexOf("%");
  if (percent !== -1 && percent === text.length - 1) return 0; // an empty zone
  return isIpv6(withoutZone(text)) ? 6 : 0;
}

/** A dotted quad as a 32-bit number; the caller has checked it with {@linkcode isIpv4}. */
function ipv4Bits(text: string): bigint {
  return text.split(".").reduce((n, octet) => (n << 8n) | BigInt(Number(octet)), 0n);
}

/** A valid IPv6 address (no zone) as a 128-bit number. */
function ipv6Bits(address: string): bigint {
  let head = address;
  let tail32: bigint | null = null;
  const lastColon = address.lastIndexOf(":");
  if (address.slice(lastColon + 1).includes(".")) {
    // RFC 4291 §2.2: the last 32 bits may be written as an IPv4 address.
    tail32 = ipv4Bits(address.slice(lastColon + 1));
    head = address.slice(0, lastColon + 1) + "0:0";
  }
  const [left = "", right] = head.split("::");
  const leftGroups = left === "" ? [] : left.split(":");
  const rightGroups = right === undefined || right === "" ? [] : right.split(":");
  const groups = right === undefined ? leftGroups : [
    ...leftGroups,
    ...Array<string>(8 - leftGroups.length - rightGroups.length).fill("0"),
    ...rightGroups,
  ];
  const n = groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
  return tail32 === null ? n : (n & ~0xffffffffn) | tail32;
}

/**
 * An IP address as a 128-bit number, an IPv4 address as its IPv4-mapped
 * IPv6 form (`::ffff:a.b.c.d`, RFC 4291 §2.5.5.2), so that one comparison
 * serves both families. A zone index is ignored.
 *
 * @param text An IPv4 or IPv6 address.
 * @returns The number, or `null` when it is not an address.
 *
 * @example The same client, written two ways
 * ```ts
 * import { parseIp } from "./ip.ts";
 * console.log(parseIp("192.0.2.1") === parseIp("::ffff:192.0.2.1")); // true
 * console.log(parseIp("not an address")); // null
 * ```
 */
export function parseIp(text: string): bigint | null {
  if (isIpv4(text)) return IPV4_MAPPED_PREFIX | ipv4Bits(text);
  const address = withoutZone(text);
  return isIpv6(address) ? ipv6Bits(address) : null;
}

/**
 * Whether a number from {@linkcode parseIp} is an IPv4 address (written
 * either way).
 *
 * @param n The address as a number.
 * @returns Whether it lies in `::ffff:0:0/96`.
 *
 * @example
 * ```ts
 * import { isIpv4Mapped, parseIp } from "./ip.ts";
 * console.log(isIpv4Mapped(parseIp("::ffff:10.0.0.1")!)); // true
 * ```
 */
export function isIpv4Mapped(n: bigint): boolean {
  return n >> 32n === 0xffffn;
}

/**
 * Writes a number back as an address: dotted IPv4 (32 bits), or IPv6 in the
 * compressed lower-case form of RFC 5952 (128 bits).
 *
 * @param bits The address as a number.
 * @param version Which family to write.
 * @returns The address.
 *
 * @example
 * ```ts
 * import { formatIp } from "./ip.ts";
 * console.log(formatIp(0xc0000201n, 4)); // "192.0.2.1"
 * console.log(formatIp(0x20010db8000000000000000000000001n, 6)); // "2001:db8::1"
 * ```
 */
export function formatIp(bits: bigint, version: 4 | 6): string {
  if (version === 4) {
    return [24n, 16n, 8n, 0n].map((shift) => String((bits >> shift) & 0xffn)).join(".");
  }
  const groups = [112n, 96n, 80n, 64n, 48n, 32n, 16n, 0n].map((shift) =>
    ((bits >> shift) & 0xffffn).toString(16)
  );
  return canonicalIp(groups.join(":"));
}

/**
 * The same IP address written the same way: IPv6 in RFC 5952 form (URLs
 * write it so), IPv4 and anything else unchanged; an IPv6 address with a
 * zone index is only lower-cased.
 *
 * @param address An address.
 * @returns Its canonical text.
 *
 * @example
 * ```ts
 * import { canonicalIp } from "./ip.ts";
 * console.log(canonicalIp("2001:DB8:0:0::1")); // "2001:db8::1"
 * ```
 */
export function canonicalIp(address: string): string {
  if (!isIpv6(address)) return ipVersion(address) === 6 ? address.toLowerCase() : address;
  return new URL(`http://[${address}]/`).hostname.slice(1, -1);
}

/**
 * An IPv4-mapped IPv6 address as the IPv4 address it carries
 * (`::ffff:127.0.0.1` → `127.0.0.1`, RFC 4291 §2.5.5.2), as a dual-stack
 * socket reports IPv4 clients; any other text unchanged.
 *
 * @param address An address.
 * @returns The IPv4 address, or `address`.
 *
 * @example
 * ```ts
 * import { unmapIpv4 } from "./ip.ts";
 * console.log(unmapIpv4("::ffff:127.0.0.1")); // "127.0.0.1"
 * console.log(unmapIpv4("::1")); // "::1"
 * ```
 */
export function unmapIpv4(address: string): string {
  return address.startsWith("::ffff:") && address.includes(".") ? address.slice(7) : address;
}
