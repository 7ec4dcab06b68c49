/**
 * `host:port` as configuration files and routes write it: `mx.example.test:25`,
 * `192.0.2.1:25`, `[2001:db8::1]:25` (an IPv6 address needs brackets, since
 * its colons would read as the port's, RFC 3986 §3.2.2), `[host]` alone.
 *
 * @module
 */

import { ipVersion } from "./ip.ts";

/** The two halves of a `host:port`, as written. */
export interface HostPortParts {
  /** The host, brackets removed. */
  readonly host: string;
  /** The port text, or `undefined` when there was none. */
  readonly port: string | undefined;
  /** Whether the host was written in brackets. */
  readonly bracketed: boolean;
}

/**
 * A TCP port written as digits, 1–65535.
 *
 * @param text The text.
 * @returns The port, or `null`.
 *
 * @example
 * ```ts
 * import { parsePort } from "./host_port.ts";
 * console.log(parsePort("25"), parsePort("0"), parsePort("65536"), parsePort("+25")); // 25 null null null
 * ```
 */
export function parsePort(text: string): number | null {
  if (!/^\d{1,5}$/.test(text)) return null;
  const port = Number(text);
  return port >= 1 && port <= 65535 ? port : null;
}

/**
 * Splits `host:port`, `[host]:port` or `[host]` into host and port text; a
 * text without a colon is all host. Nothing is checked beyond the brackets:
 * the caller decides which hosts and ports it takes.
 *
 * @param text The text.
 * @returns The parts.
 *
 * @example
 * ```ts
 * import { splitHostPort } from "./host_port.ts";
 * console.log(splitHostPort("[2001:db8::1]:2525"));
 * // { host: "2001:db8::1", port: "2525", bracketed: true }
 * console.log(splitHostPort("mx.example.test:25").port); // "25"
 * ```
 */
export function splitHostPort(text: string): HostPortParts {
  const bracketed = /^\[([^\]]+)\](?::(.*))?$/s.exec(text);
  if (bracketed !== null) return { host: bracketed[1] ?? "", port: bracketed[2], bracketed: true };
  const colon = text.lastIndexOf(":");
  if (colon <= 0) return { host: text, port: undefined, bracketed: false };
  return { host: text.slice(0, colon), port: text.slice(colon + 1), bracketed: false };
}

/**
 * Writes a host and port back, the host lower-cased and an IPv6 address in
 * brackets: `[2001:db8::1]:25`.
 *
 * @param host A name or an IP address (without brackets).
 * @param port The port.
 * @returns `host:port`.
 *
 * @example
 * ```ts
 * import { formatHostPort } from "./host_port.ts";
 * console.log(formatHostPort("MX.example.test", 25)); // "mx.example.test:25"
 * console.log(formatHostPort("::1", 53)); // "[::1]:53"
 * ```
 */
export function formatHostPort(host: string, port: number): string {
  const lower = host.toLowerCase();
  return ipVersion(host) === 6 ? `[${lower}]:${port}` : `${lower}:${port}`;
}

/**
 * Reads back what {@linkcode formatHostPort} wrote.
 *
 * @param text `host:port` or `[IPv6]:port`.
 * @returns The host (IPv6 without brackets) and port, or `null` when the port is missing or bad.
 *
 * @example
 * ```ts
 * import { parseHostPort } from "./host_port.ts";
 * console.log(parseHostPort("[::1]:2525")); // { host: "::1", port: 2525 }
 * console.log(parseHostPort("mx.example.test")); // null
 * ```
 */
export function parseHostPort(text: string): { host: string; port: number } | null {
  const { host, port } = splitHostPort(text);
  const number = port === undefined ? null : parsePort(port);
  return number === null || host === "" ? null : { host, port: number };
}

/** A name server's address, read by {@linkcode parseNameServer}. */
export interface NameServerAddress {
  /** The IP address, without brackets (an IPv6 scope such as `%eth0` kept). */
  readonly host: string;
  /** The port: 53 unless one was given. */
  readonly port: number;
  /** The address family. */
  readonly family: 4 | 6;
  /** `ip:port`, or `[ipv6]:port`. */
  readonly text: string;
}

/**
 * Reads a name server's address as `dns.nameservers` and resolv.conf write
 * it: `ip`, `ipv4:port`, or `[ipv6]:port` (port 53 by default). A name is
 * not a name server address: it would need a name server to find.
 *
 * @param text The text.
 * @returns The address, or `null`.
 *
 * @example
 * ```ts
 * import { parseNameServer } from "./host_port.ts";
 * console.log(parseNameServer("127.0.0.1:5353")?.text); // "127.0.0.1:5353"
 * console.log(parseNameServer("::1")?.text); // "[::1]:53"
 * console.log(parseNameServer("ns.example.test")); // null
 * ```
 */
export function parseNameServer(text: string): NameServerAddress | null {
  let host = text;
  let port = 53;
  if (ipVersion(text) === 0) {
    const parts = splitHostPort(text);
    const number = parts.port === undefined ? (parts.bracketed ? 53 : null) : parsePort(parts.port);
    if (number === null) return null;
    // Only an IPv6 address is written in brackets, and only IPv4 takes a bare port.
    const fits = parts.bracketed ? ipVersion(parts.host) === 6 : ipVersion(parts.host) === 4;
    if (!fits) return null;
    host = parts.host;
    port = number;
  }
  const family = ipVersion(host) === 6 ? 6 : 4;
  return { host, port, family, text: family === 6 ? `[${host}]:${port}` : `${host}:${port}` };
}
