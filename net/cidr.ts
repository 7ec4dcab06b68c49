/**
 * CIDR blocks (RFC 4632 §3.1, RFC 4291 §2.3): `192.0.2.0/24`,
 * `2001:db8::/32`, or a bare address for itself; parsed once into a base and
 * a mask over the 128-bit numbers of {@linkcode parseIp}, so one comparison
 * tests IPv4 and IPv6 clients alike.
 *
 * @module
 */

import { formatIp, ipVersion, isIpv4, isIpv4Mapped, parseIp } from "./ip.ts";

/** A parsed CIDR block. */
export interface Cidr {
  /** The family the block was written in. */
  readonly version: 4 | 6;
  /** The prefix length as written: at most 32 for IPv4, 128 for IPv6. */
  readonly prefix: number;
  /** The network's first address, as a 128-bit number (IPv4 mapped). */
  readonly base: bigint;
  /** The mask over 128 bits. */
  readonly mask: bigint;
  /**
   * An IPv6 network wider than `::ffff:0:0/96` (`::/0`, `2000::/3`): it covers
   * IPv6 clients only. Stricter than the arithmetic: a wide IPv6 block is not
   * meant to trust every IPv4 client too.
   */
  readonly isIpv6Only: boolean;
  /**
   * Whether the address had bits set past the prefix (`10.1.2.3/8`). Such a
   * block is usually a typo for a host or for the network.
   */
  readonly hasHostBits: boolean;
}

const ALL_BITS = (1n << 128n) - 1n;

/** Splits `address/prefix`; the prefix is `null` when there is no slash, `NaN` when it is not digits. */
function splitCidr(text: string): { address: string; prefix: number | null } {
  const slash = text.indexOf("/");
  if (slash === -1) return { address: text, prefix: null };
  const digits = text.slice(slash + 1);
  return { address: text.slice(0, slash), prefix: /^\d{1,3}$/.test(digits) ? Number(digits) : NaN };
}

/**
 * Parses a CIDR block, or a bare address meaning `/32` or `/128`.
 *
 * @param text The block.
 * @returns The block, or `null` when the address or the prefix cannot be read.
 *
 * @example
 * ```ts
 * import { parseCidr } from "./cidr.ts";
 * console.log(parseCidr("10.0.0.0/8")?.prefix); // 8
 * console.log(parseCidr("10.1.2.3/8")?.hasHostBits); // true
 * console.log(parseCidr("10.0.0.0/33")); // null
 * ```
 */
export function parseCidr(text: string): Cidr | null {
  const { address, prefix: written } = splitCidr(text);
  const n = parseIp(address);
  if (n === null) return null;
  const version = isIpv4(address) ? 4 : 6;
  const bits = version === 4 ? 32 : 128;
  const prefix = written ?? bits;
  if (!Number.isInteger(prefix) || prefix > bits) return null;
  // An IPv4 prefix counts within the IPv4-mapped block: /8 there is /104 of 128.
  const length = version === 4 ? 96 + prefix : prefix;
  const mask = length === 0 ? 0n : (ALL_BITS << BigInt(128 - length)) & ALL_BITS;
  return {
    version,
    prefix,
    base: n & mask,
    mask,
    isIpv6Only: length < 96,
    hasHostBits: (n & mask) !== n,
  };
}

/**
 * Whether an address (a number from {@linkcode parseIp}) is inside a block.
 *
 * @param block The block.
 * @param n The address.
 * @returns Whether it is inside.
 *
 * @example
 * ```ts
 * import { cidrContains, parseCidr } from "./cidr.ts";
 * import { parseIp } from "./ip.ts";
 * console.log(cidrContains(parseCidr("10.0.0.0/8")!, parseIp("::ffff:10.1.2.3")!)); // true
 * ```
 */
export function cidrContains(block: Cidr, n: bigint): boolean {
  if (block.isIpv6Only && isIpv4Mapped(n)) return false;
  return (n & block.mask) === block.base;
}

/**
 * Whether an address is inside a network written in CIDR notation.
 *
 * @param address The address.
 * @param network The network.
 * @returns Whether it is inside; `false` when either cannot be read.
 *
 * @example IPv4, IPv6 and IPv4-mapped IPv6
 * ```ts
 * import { isInCidr } from "./cidr.ts";
 * console.log(isInCidr("::ffff:10.1.2.3", "10.0.0.0/8")); // true
 * console.log(isInCidr("11.0.0.1", "10.0.0.0/8")); // false
 * ```
 */
export function isInCidr(address: string, network: string): boolean {
  const n = parseIp(address);
  const block = parseCidr(network);
  return n !== null && block !== null && cidrContains(block, n);
}

/**
 * A CIDR block written with its prefix length always present and the address
 * lower-cased (`::1` → `::1/128`); the address is otherwise kept as written.
 *
 * @param text The block, or a bare address.
 * @returns The block text, or `null` when it is not one.
 *
 * @example
 * ```ts
 * import { normalizeCidr } from "./cidr.ts";
 * console.log(normalizeCidr("127.0.0.1")); // "127.0.0.1/32"
 * console.log(normalizeCidr("2001:DB8::/032")); // "2001:db8::/32"
 * ```
 */
export function normalizeCidr(text: string): string | null {
  const { address, prefix } = splitCidr(text);
  const version = ipVersion(address);
  if (version === 0) return null;
  const bits = version === 4 ? 32 : 128;
  if (prefix === null) return `${address.toLowerCase()}/${bits}`;
  if (Number.isNaN(prefix) || prefix > bits) return null;
  return `${address.toLowerCase()}/${prefix}`;
}

/**
 * The network a CIDR block names when its address has bits set past the
 * prefix (`10.1.2.3/8` → `10.0.0.0/8`), or `null` when it has none.
 *
 * @param text A block.
 * @returns The network with those bits cleared, or `null`.
 *
 * @example
 * ```ts
 * import { cidrNetwork } from "./cidr.ts";
 * console.log(cidrNetwork("10.1.2.3/8")); // "10.0.0.0/8"
 * console.log(cidrNetwork("2001:db8::1/32")); // "2001:db8::/32"
 * console.log(cidrNetwork("10.0.0.0/8")); // null
 * ```
 */
export function cidrNetwork(text: string): string | null {
  const block = parseCidr(text);
  if (block === null || !block.hasHostBits) return null;
  const bits = block.version === 4 ? block.base & 0xffffffffn : block.base;
  return `${formatIp(bits, block.version)}/${block.prefix}`;
}
