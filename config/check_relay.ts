/**
 * Validation of `relay` (trusted networks, routes and their policies,
 * connection limits) and `srs`, which read secret files.
 *
 * @module
 */

import { cidrNetwork, normalizeCidr } from "../net/cidr.ts";
import { type Checker, describe, isMapping } from "./checker.ts";
import { RELAY_KEYS, ROUTE_AUTH_KEYS, ROUTE_KEYS, ROUTE_TLS, SRS_KEYS } from "./keys.ts";
import { isDomainName, parseRouteHost } from "./syntax.ts";
import {
  type Config,
  DEFAULT_RELAY_LIMITS,
  DEFAULT_ROUTES,
  DEFAULT_TRUSTED_NETWORKS,
  type RoutePolicy,
  type SrsConfig,
} from "./types.ts";

/**
 * Reads the first line of a secret file (a password, a key), so it never has
 * to be written in the YAML; `undefined` after reporting when it cannot be read.
 */
function readSecret(c: Checker, file: string, path: string): string | undefined {
  if (!c.readSecrets) return "";
  let text: string;
  try {
    text = Deno.readTextFileSync(file);
  } catch (error: unknown) {
    const why = error instanceof Error ? error.message.replace(/\s+/g, " ") : String(error);
    c.report(path, `cannot read ${file}: ${why}`);
    return undefined;
  }
  const line = text.split(/\r?\n/, 1)[0] ?? "";
  if (line === "") c.report(path, `${file} is empty: its first line is the secret`);
  return line === "" ? undefined : line;
}

function checkRoutePolicy(
  c: Checker,
  value: Record<string, unknown>,
  path: string,
  baseDir: string,
): { hop: string; policy: RoutePolicy } | null {
  c.unknownKeys(value, path, ROUTE_KEYS);
  const hop = typeof value.host === "string" ? parseRouteHost(value.host) : null;
  if (hop === null) {
    c.report(
      `${path}.host`,
      `expected [host]:port or host:port (like [smtp.example.net]:587), found ${
        describe(value.host)
      }`,
    );
  }
  const tlsValue = value.tls ?? "opportunistic";
  const tls = ROUTE_TLS.find((t) => t === tlsValue);
  if (tls === undefined) {
    c.report(`${path}.tls`, `expected one of ${ROUTE_TLS.join(", ")}, found ${describe(tlsValue)}`);
  }
  let auth: RoutePolicy["auth"] = null;
  if (value.auth !== undefined && value.auth !== null) {
    const a = c.section(value.auth, `${path}.auth`, ROUTE_AUTH_KEYS);
    const username = c.string(a.username, `${path}.auth.username`, "a user name");
    const file = c.path(a.password_file, `${path}.auth.password_file`, baseDir);
    const password = file === undefined
      ? undefined
      : readSecret(c, file, `${path}.auth.password_file`);
    const allowPlaintext = a.allow_plaintext === true;
    if (a.allow_plaintext !== undefined && typeof a.allow_plaintext !== "boolean") {
      c.report(
        `${path}.auth.allow_plaintext`,
        `expected true or false, found ${describe(a.allow_plaintext)}`,
      );
    }
    // RFC 4954 §4 (and RFC 8314): a password goes only over TLS, unless the operator says both.
    if (tls === "none" && !allowPlaintext) {
      c.report(
        `${path}.auth`,
        "tls: none would send the password in clear; add allow_plaintext: true to accept that",
      );
    } else if (allowPlaintext && tls !== "none") {
      c.report(`${path}.auth.allow_plaintext`, "only meaningful with tls: none");
    }
    if (username !== undefined && file !== undefined && password !== undefined) {
      auth = { username, passwordFile: file, password, allowPlaintext };
    }
  }
  if (hop === null || tls === undefined) return null;
  return { hop, policy: { tls, auth } };
}

export function checkRelay(c: Checker, value: unknown, baseDir: string): Config["relay"] {
  const relay = c.section(value, "relay", RELAY_KEYS);
  let trustedNetworks: string[] = [...DEFAULT_TRUSTED_NETWORKS];
  if (relay.trusted_networks !== undefined) {
    const items = c.list(
      relay.trusted_networks,
      "relay.trusted_networks",
      "a list of networks like 192.0.2.0/24 ([] for nobody)",
    ) ?? [];
    trustedNetworks = [];
    items.forEach((item, index) => {
      const path = `relay.trusted_networks[${index}]`;
      const network = typeof item === "string" ? normalizeCidr(item) : null;
      if (network === null) {
        c.report(
          path,
          `expected an address or a network like 192.0.2.0/24 or 2001:db8::/32, found ${
            describe(item)
          }`,
        );
      } else if (cidrNetwork(network) !== null) {
        c.report(
          path,
          `host bits set in ${describe(item)}; did you mean ${cidrNetwork(network)}?`,
        );
      } else if (!trustedNetworks.includes(network)) {
        trustedNetworks.push(network);
      }
    });
  }
  const routes: Record<string, string> = {};
  const routePolicies: Record<string, RoutePolicy> = {};
  if (relay.routes !== undefined && relay.routes !== null) {
    if (!isMapping(relay.routes)) {
      c.report(
        "relay.routes",
        `expected a mapping of domain: next hop, found ${describe(relay.routes)}`,
      );
    } else {
      for (const [key, hop] of Object.entries(relay.routes)) {
        const path = `relay.routes.${key}`;
        const domain = key === "*" || isDomainName(key) ? key.toLowerCase() : undefined;
        if (domain === undefined) c.report(path, 'not a domain name or "*"');
        const extended = isMapping(hop) ? checkRoutePolicy(c, hop, path, baseDir) : undefined;
        const nextHop = extended !== undefined
          ? extended?.hop ?? null
          : hop === "mx"
          ? "mx"
          : typeof hop === "string"
          ? parseRouteHost(hop)
          : null;
        if (extended === null) continue; // reported inside
        if (extended !== undefined && domain !== undefined && !(domain in routes)) {
          routePolicies[domain] = extended.policy;
        }
        if (nextHop === null) {
          c.report(
            path,
            `expected "mx", host:port or [host]:port (like 192.0.2.1:25, [smtp.example.net]:587 or [2001:db8::1]:25), or { host, tls, auth }, found ${
              describe(hop)
            }`,
          );
        }
        if (domain === undefined || nextHop === null) continue;
        if (domain in routes) c.report(path, "listed twice (domains are compared in lower case)");
        else routes[domain] = nextHop;
      }
    }
  }
  // The catch-all stays unless the file sets it: a route for one domain must not stop mail to the rest.
  if (!("*" in routes)) routes["*"] = DEFAULT_ROUTES["*"] ?? "mx";
  const maxConnections = relay.max_connections === undefined
    ? DEFAULT_RELAY_LIMITS.maxConnections
    : c.positiveInteger(relay.max_connections, "relay.max_connections");
  const maxConnectionsPerDestination = relay.max_connections_per_destination === undefined
    ? DEFAULT_RELAY_LIMITS.maxConnectionsPerDestination
    : c.positiveInteger(
      relay.max_connections_per_destination,
      "relay.max_connections_per_destination",
    );
  return {
    trustedNetworks,
    routes,
    ...(Object.keys(routePolicies).length === 0 ? {} : { routePolicies }),
    maxConnections: maxConnections ?? DEFAULT_RELAY_LIMITS.maxConnections,
    maxConnectionsPerDestination: maxConnectionsPerDestination ??
      DEFAULT_RELAY_LIMITS.maxConnectionsPerDestination,
  };
}

/** `srs: { secret_file, domain }`: off when absent. */
export function checkSrs(
  c: Checker,
  value: unknown,
  baseDir: string,
  hostname: string,
  localDomains: readonly string[],
): SrsConfig | null {
  if (value === undefined || value === null) return null;
  const srs = c.section(value, "srs", SRS_KEYS);
  const file = c.path(srs.secret_file, "srs.secret_file", baseDir);
  const secret = file === undefined ? undefined : readSecret(c, file, "srs.secret_file");
  const domain =
    (srs.domain === undefined ? hostname : c.string(srs.domain, "srs.domain", "a domain name"))
      ?.toLowerCase();
  if (domain !== undefined && !isDomainName(domain)) {
    c.report("srs.domain", `not a domain name: ${describe(domain)}`);
    return null;
  }
  // Bounces to SRS addresses must come back here, so the domain is one of ours.
  if (domain !== undefined && !localDomains.includes(domain)) {
    c.report(
      srs.domain === undefined ? "srs" : "srs.domain",
      `domain ${JSON.stringify(domain)} (${
        srs.domain === undefined ? "the hostname, the default" : "srs.domain"
      }) is not in local_domains: bounces to SRS addresses would not come back`,
    );
    return null;
  }
  if (file === undefined || secret === undefined || domain === undefined) return null;
  return { secretFile: file, secret, domain };
}
