/**
 * The syntax of configuration values: domain names, mailbox addresses,
 * address literals, `host:port` forms. The address arithmetic itself lives in
 * `net/`; this file decides which forms each key takes.
 *
 * @module
 */

import { parseAddressLiteral } from "../net/address_literal.ts";
import { formatHostPort, parseNameServer, parsePort, splitHostPort } from "../net/host_port.ts";
import { ipVersion, isIpv4 } from "../net/ip.ts";
import { isDomainName } from "../net/domain.ts";

// RFC 1035 §2.3.1 "preferred name syntax" (LDH labels), as RFC 5321 §4.1.2 `Domain` requires.
export { isDomainName };

/**
 * RFC 5321 §4.1.3: `[192.0.2.1]` or `[IPv6:2001:db8::1]`, the address read
 * strictly (no leading zeros, no zone index): it is announced to the world.
 */
export function isAddressLiteral(text: string): boolean {
  return text.startsWith("[") && parseAddressLiteral(text) !== null;
}

/**
 * RFC 5321 §4.1.2 `Dot-string` local part (atext and dots), with UTF-8 allowed
 * as RFC 6531 does. Quoted local parts are refused: they are legal but rare,
 * and nearly always a mistake in a configuration file.
 */
const LOCAL_PART =
  /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\u{10FFFF}]+(?:\.[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\u{10FFFF}]+)*$/u;

/** Splits `local@domain`; `null` when it is not a mailbox address. */
export function parseAddress(text: string): { local: string; domain: string } | null {
  const at = text.lastIndexOf("@");
  if (at <= 0) return null;
  const local = text.slice(0, at);
  const domain = text.slice(at + 1);
  // RFC 5321 §4.5.3.1.1: a local part is at most 64 octets.
  if (new TextEncoder().encode(local).length > 64 || !LOCAL_PART.test(local)) return null;
  if (!isDomainName(domain)) return null;
  return { local, domain: domain.toLowerCase() };
}

/** `host:port`, host a name, an IPv4 address or `[IPv6]`; normalized (host lower case), or `null`. */
export function parseHostPort(text: string): string | null {
  const { host, port, bracketed } = splitHostPort(text);
  const number = port === undefined ? null : parsePort(port);
  if (number === null) return null;
  const fits = bracketed ? ipVersion(host) === 6 : isIpv4(host) || isDomainName(host);
  return fits ? formatHostPort(host, number) : null;
}

/** A name server: `ip`, `ip:port` or `[ipv6]:port`, normalized to `ip:port` / `[ipv6]:port` (port 53 by default). */
export function parseNameserver(text: string): string | null {
  const address = parseNameServer(text);
  return address === null ? null : formatHostPort(address.host, address.port);
}

/** `[host]:port` (Postfix's form), `[host]` (port 25), `host:port`, or `[IPv6]:port`. */
export function parseRouteHost(text: string): string | null {
  const { host, port, bracketed } = splitHostPort(text);
  if (!bracketed) return parseHostPort(text);
  const number = parsePort(port ?? "25");
  if (number === null) return null;
  // Postfix's brackets mean "this host, no MX lookup": what a tern route always does.
  const fits = ipVersion(host) !== 0 || isDomainName(host);
  return fits ? formatHostPort(host, number) : null;
}
