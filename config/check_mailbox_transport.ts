/**
 * Validation of `mailbox_transport` (Maildir, or LMTP to a delivery agent
 * such as Dovecot) and `submission.auth` (accounts, or Dovecot's auth
 * service): both name a stream socket, TCP or Unix-domain.
 *
 * @module
 */

import { type Checker, describe, isMapping } from "./checker.ts";
import { parsePort, splitHostPort } from "../net/host_port.ts";
import { ipVersion, isIpv4 } from "../net/ip.ts";
import { isDomainName } from "./syntax.ts";
import type { SocketEndpoint } from "./types.ts";

/**
 * Reads a socket after its scheme: `/absolute/path`, `host:port`,
 * `ipv4:port` or `[ipv6]:port`.
 *
 * @param text What follows `lmtp:` or `dovecot:`.
 * @returns The endpoint, or why not (a phrase).
 *
 * @example
 * ```ts
 * import { parseSocketEndpoint } from "./check_mailbox_transport.ts";
 * console.log(parseSocketEndpoint("[::1]:24")); // { host: "::1", port: 24 }
 * console.log(parseSocketEndpoint("/run/dovecot/lmtp")); // { path: "/run/dovecot/lmtp" }
 * ```
 */
export function parseSocketEndpoint(text: string): SocketEndpoint | string {
  if (text.startsWith("/")) return { path: text };
  if (text === "") return "a host:port or an absolute socket path is missing";
  const { host, port, bracketed } = splitHostPort(text);
  if (!bracketed && host.includes(":")) return "an IPv6 address goes in brackets: [::1]:24";
  const number = port === undefined ? null : parsePort(port);
  if (number === null || number === 0) return "a port (1-65535) is missing or wrong";
  const fits = bracketed ? ipVersion(host) === 6 : isIpv4(host) || isDomainName(host);
  if (!fits) return `${JSON.stringify(host)} is not a host name or an IP address`;
  return { host: host.toLowerCase(), port: number };
}

/** Reads `<scheme>:<socket>`, reporting a problem at `path`; `null` when it is wrong. */
function checkEndpoint(
  c: Checker,
  value: string,
  path: string,
  scheme: string,
  example: string,
): SocketEndpoint | null {
  const endpoint = parseSocketEndpoint(value.slice(scheme.length + 1));
  if (typeof endpoint === "string") {
    c.report(path, `expected ${example}, found ${describe(value)}: ${endpoint}`);
    return null;
  }
  return endpoint;
}

/**
 * Reads `mailbox_transport`: `maildir` (the default), or `lmtp:` and a socket.
 *
 * @param c Where problems go.
 * @param value The raw value.
 * @returns The LMTP server, or `null` for Maildir.
 */
export function checkMailboxTransport(c: Checker, value: unknown): SocketEndpoint | null {
  if (value === undefined || value === null || value === "maildir") return null;
  const expected = "maildir, lmtp:host:port, lmtp:[ipv6]:port or lmtp:/path/to/socket";
  if (typeof value !== "string" || !value.startsWith("lmtp:")) {
    c.report("mailbox_transport", `expected ${expected}, found ${describe(value)}`);
    return null;
  }
  return checkEndpoint(c, value, "mailbox_transport", "lmtp", expected);
}

/**
 * Reads `submission.auth`: `accounts` (the default), or `dovecot:` and the
 * socket of Dovecot's auth service. Unknown keys of `submission` are
 * reported by its own check.
 *
 * @param c Where problems go.
 * @param submission The raw `submission` section.
 * @returns `{ dovecotAuth }`, or `{}` for `accounts`.
 */
export function checkSubmissionAuth(
  c: Checker,
  submission: unknown,
): { dovecotAuth?: SocketEndpoint } {
  if (!isMapping(submission)) return {};
  const value = submission.auth;
  if (value === undefined || value === null || value === "accounts") return {};
  const expected = "accounts, dovecot:/path/to/auth-client or dovecot:host:port";
  if (typeof value !== "string" || !value.startsWith("dovecot:")) {
    c.report("submission.auth", `expected ${expected}, found ${describe(value)}`);
    return {};
  }
  const endpoint = checkEndpoint(c, value, "submission.auth", "dovecot", expected);
  return endpoint === null ? {} : { dovecotAuth: endpoint };
}
