/**
 * Network addresses as text, the one home for them in tern: IP addresses
 * ({@linkcode parseIp}, the 128-bit number both families compare as), CIDR
 * blocks ({@linkcode Cidr}), `host:port` and RFC 5321 address literals.
 * Pure functions, no I/O, and no imports from the rest of tern.
 *
 * @example Is a client inside a trusted network?
 * ```ts
 * import { isInCidr } from "./mod.ts";
 * console.log(isInCidr("::ffff:192.0.2.7", "192.0.2.0/24")); // true
 * ```
 *
 * @module
 */

export {
  canonicalIp,
  formatIp,
  IPV4_MAPPED_PREFIX,
  ipVersion,
  isIpv4,
  isIpv4Mapped,
  isIpv6,
  parseIp,
  unmapIpv4,
  withoutZone,
} from "./ip.ts";
export {
  type Cidr,
  cidrContains,
  cidrNetwork,
  isInCidr,
  normalizeCidr,
  parseCidr,
} from "./cidr.ts";
export {
  formatHostPort,
  type HostPortParts,
  type NameServerAddress,
  parseHostPort,
  parseNameServer,
  parsePort,
  splitHostPort,
} from "./host_port.ts";
export {
  formatAddressLiteral,
  isAddressLiteral,
  isIpv4AddressLiteral,
  parseAddressLiteral,
} from "./address_literal.ts";
export { isDomain, isDomainName } from "./domain.ts";
