/**
 * Where `sendMail` connects: the smarthost the caller names, or, for direct
 * delivery, the MX hosts of each recipient domain, found with tern's own
 * resolver and judged by the relay's rules (`mta/routing.ts`).
 *
 * @module
 */

import { type DnsQuerier, DnsTemporaryError } from "../dns/resolver.ts";
import { resolveMx } from "../dns/mx.ts";
import { mxHops, type NextHop } from "../mta/routing.ts";
import { parseHostPort } from "../net/host_port.ts";
import { type Reply, reply } from "../smtp/reply.ts";

/** The hosts to try for a domain, or why the domain takes no mail. */
export type DomainHops =
  | { readonly kind: "hosts"; readonly hosts: readonly NextHop[] }
  /** The domain refuses mail for good (null MX, no such domain): the refusal, as a reply. */
  | { readonly kind: "refused"; readonly reply: Reply }
  /** DNS failed for now: nothing to try. */
  | { readonly kind: "unreachable"; readonly reason: string };

/**
 * Reads a smarthost: `host:port`, or `[IPv6]:port`.
 *
 * @param text The smarthost as the caller wrote it.
 * @returns The host and port.
 * @throws {TypeError} When the port is missing or bad.
 */
export function parseSmarthost(text: string): NextHop {
  const parsed = parseHostPort(text.trim());
  if (parsed === null) {
    throw new TypeError(
      `Bad smarthost "${text}": write it as host:port, such as smtp.example.org:587`,
    );
  }
  return { name: parsed.host, port: parsed.port };
}

/**
 * The MX hosts of a domain, in order (RFC 5321 §5.1, through
 * {@linkcode resolveMx} and {@linkcode mxHops}).
 *
 * @param domain The recipient domain.
 * @param resolver What asks DNS.
 * @param hostname Our own name: an MX list that leads back to it is refused.
 * @param port The port to connect to.
 * @returns The hosts, a permanent refusal, or a temporary DNS failure.
 */
export async function mxNextHops(
  domain: string,
  resolver: DnsQuerier,
  hostname: string,
  port: number,
): Promise<DomainHops> {
  try {
    const found = mxHops(hostname, domain, await resolveMx(domain, resolver), port);
    if ("hosts" in found) return { kind: "hosts", hosts: found.hosts };
    const { code, enhancedStatus, text } = found.reply;
    // mxHops leaves the code out (0) where only the status says it: 550 then.
    return { kind: "refused", reply: reply(code === 0 ? 550 : code, enhancedStatus, text) };
  } catch (error: unknown) {
    if (error instanceof DnsTemporaryError) {
      return { kind: "unreachable", reason: `DNS lookup for ${domain} failed: ${error.reason}` };
    }
    if (error instanceof SyntaxError) {
      return { kind: "refused", reply: reply(550, "5.1.2", `Bad destination domain "${domain}"`) };
    }
    throw error;
  }
}
