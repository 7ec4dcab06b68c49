/**
 * Routing: where mail for an address goes, decided in one place and without
 * I/O. For a recipient: its local mailboxes (aliases followed, plus-addresses
 * folded, through the directory of `mda/recipient.ts`), the sender an SRS
 * address encodes, the address itself for a remote domain, or nowhere. For a
 * remote domain: the configured hop of `relay.routes` with its policy, or an
 * MX lookup (RFC 5321 §5.1), whose answer this module also judges. The DNS
 * itself stays in `relay.ts`, which asks here what to look up.
 *
 * @module
 */

import type { Config, RoutePolicy } from "../config/schema.ts";
import type { MxResult } from "../dns/mx.ts";
import { resolveRecipient } from "../mda/recipient.ts";
import { parseHostPort } from "../net/host_port.ts";
import { ipVersion } from "../net/ip.ts";
import type { QueueRecipient, ReplySummary } from "../queue/types.ts";
import { srsReverse } from "./srs.ts";

/**
 * Where mail to one address goes: its local mailboxes (aliases followed),
 * the address itself for a remote domain, or nowhere (`[]`) for an unknown
 * local address or an alias loop. A bounce to an SRS address goes back to
 * the sender it encodes (relayed); a forged or expired one goes nowhere.
 *
 * @param config The directory (and the SRS secret, if any).
 * @param address The address.
 * @param now The clock, for SRS timestamps.
 * @returns The queue recipients.
 *
 * @example Local, remote and unknown
 * ```ts
 * import { routeAddress } from "./routing.ts";
 * const config = {
 *   localDomains: ["example.test"],
 *   accounts: { "alice@example.test": {} },
 *   aliases: { "team@example.test": ["alice@example.test"] },
 * };
 * console.log(routeAddress(config, "team@example.test").map((r) => r.mailbox)); // ["alice@example.test"]
 * console.log(routeAddress(config, "carol@example.net")[0]?.mailbox); // null
 * console.log(routeAddress(config, "nobody@example.test")); // []
 * ```
 */
export function routeAddress(
  config: Pick<Config, "localDomains" | "accounts" | "aliases"> & Partial<Pick<Config, "srs">>,
  address: string,
  now: number = Date.now(),
): QueueRecipient[] {
  const srs = config.srs ? srsReverse(address, config.srs, now) : null;
  if (srs !== null) {
    return srs.kind === "valid"
      ? [{ address: srs.address, originalRecipient: address, mailbox: null }]
      : [];
  }
  const resolution = resolveRecipient(address, config);
  switch (resolution.kind) {
    case "local":
      return resolution.targets;
    case "remote":
      return [{ address, originalRecipient: address, mailbox: null }];
    default:
      return [];
  }
}

/** One host to connect to. */
export interface NextHop {
  /** A host name, or an address literal (`[192.0.2.1]`, `[IPv6:2001:db8::1]`). */
  readonly name: string;
  /** The TCP port. */
  readonly port: number;
  /** The route's TLS and AUTH policy, for a configured hop that has one. */
  readonly policy?: RoutePolicy;
}

/** How a remote domain is reached: a configured hop, or the MX procedure. */
export type RelayRoute =
  | { readonly kind: "hop"; readonly hop: NextHop }
  | { readonly kind: "mx"; readonly domain: string };

/** Why a whole domain cannot be delivered to now (deferred) or ever (bounced). */
export interface RouteFailure {
  /** Try again later, or give up. */
  readonly status: "deferred" | "bounced";
  /** What the sender is told. */
  readonly reply: ReplySummary;
}

/**
 * Parses a normalized `relay.routes` value: `host:port` or `[IPv6]:port`,
 * an IPv6 host turned into its address literal.
 */
function parseRoute(route: string): { name: string; port: number } {
  const parsed = parseHostPort(route);
  if (parsed === null) throw new Error(`Bad route "${route}"`);
  const { host, port } = parsed;
  return { name: ipVersion(host) === 6 ? `[IPv6:${host}]` : host, port };
}

/**
 * How mail for a remote domain is routed: the route of `relay.routes` for
 * the domain, else the `*` route; `mx` (the default) means an MX lookup.
 *
 * @param config The relay routes.
 * @param domain The recipient domain, lower case.
 * @returns The configured hop (with its policy), or an MX lookup for the domain.
 *
 * @example A smarthost for everything but one domain
 * ```ts
 * import { relayRoute } from "./routing.ts";
 * const relay = { routes: { "*": "smtp.example.net:587", "example.org": "mx" } };
 * console.log(relayRoute({ relay }, "example.com")); // { kind: "hop", hop: { name: "smtp.example.net", port: 587 } }
 * console.log(relayRoute({ relay }, "example.org")); // { kind: "mx", domain: "example.org" }
 * ```
 */
export function relayRoute(
  config: { readonly relay: Pick<Config["relay"], "routes" | "routePolicies"> },
  domain: string,
): RelayRoute {
  const key = domain in config.relay.routes ? domain : "*";
  const route = config.relay.routes[key] ?? "mx";
  if (route === "mx") return { kind: "mx", domain };
  const policy = config.relay.routePolicies?.[key];
  return {
    kind: "hop",
    hop: { ...parseRoute(route), ...(policy === undefined ? {} : { policy }) },
  };
}

/**
 * Judges an MX answer: the hosts to try, or why the domain gets no mail
 * (RFC 7505 null MX, no such domain, no address, or only ourselves).
 *
 * @param hostname This MTA's host name, to find itself among the MX hosts.
 * @param domain The recipient domain.
 * @param mx What the lookup found.
 * @param port The port to connect to.
 * @returns The hosts in order, or the failure.
 *
 * @example Mail that would loop back
 * ```ts
 * import { mxHops } from "./routing.ts";
 * const mx = { kind: "hosts", hosts: [{ name: "mx.example.test", preference: 10, implicit: false }] } as const;
 * console.log(mxHops("mx.example.test", "example.test", mx, 25)); // bounced, 5.4.6
 * ```
 */
export function mxHops(
  hostname: string,
  domain: string,
  mx: MxResult,
  port: number,
): { readonly hosts: NextHop[] } | RouteFailure {
  switch (mx.kind) {
    case "nullmx":
      // RFC 7505 §4.1: a null MX means the domain takes no mail.
      return bounced("5.1.10", `Domain ${domain} does not accept mail (null MX)`, 556);
    case "nxdomain":
      return bounced("5.1.2", `Domain ${domain} does not exist (NXDOMAIN)`);
    case "noaddress":
      return bounced("5.1.2", `Domain ${domain} has no MX and no address records`);
    case "hosts": {
      // RFC 5321 §5.1: if this host is an MX, drop it and every MX of equal or greater preference.
      const self = hostname.toLowerCase();
      const own = mx.hosts.find((h) => h.name.toLowerCase() === self);
      const hosts = own ? mx.hosts.filter((h) => h.preference < own.preference) : mx.hosts;
      if (hosts.length === 0) return bounced("5.4.6", `Mail for ${domain} loops back to myself`);
      return { hosts: hosts.map((h) => ({ name: h.name, port })) };
    }
  }
}

function bounced(enhancedStatus: string, text: string, code = 0): RouteFailure {
  return { status: "bounced", reply: { code, enhancedStatus, text } };
}
