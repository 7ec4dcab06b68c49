/**
 * Validation of `hostname`, `tls` and `listeners`.
 *
 * @module
 */

import { canonicalIp, ipVersion } from "../net/ip.ts";
import { type Checker, describe, isMapping } from "./checker.ts";
import { LISTENER_KEYS, LISTENER_MODES, TLS_KEYS } from "./keys.ts";
import { checkAcmeTls } from "./check_acme.ts";
import { isAddressLiteral, isDomainName } from "./syntax.ts";
import {
  DEFAULT_LISTENERS,
  defaultHostname,
  FALLBACK_HOSTNAME,
  type ListenerConfig,
  type TlsConfig,
} from "./types.ts";

export function checkHostname(c: Checker, value: unknown): string {
  if (value === undefined) return defaultHostname();
  const hostname = c.string(value, "hostname", "a domain name or an address literal");
  if (hostname === undefined) return FALLBACK_HOSTNAME;
  if (isDomainName(hostname) || isAddressLiteral(hostname)) return hostname;
  c.report(
    "hostname",
    `not a domain name or an address literal (like mx.example.test or [192.0.2.1]): ${
      describe(hostname)
    }`,
  );
  return FALLBACK_HOSTNAME;
}

export function checkTls(
  c: Checker,
  value: unknown,
  baseDir: string,
  acme: { dataDir: string; hostname: string },
): TlsConfig | null {
  if (value === undefined || value === null) return null;
  const tls = c.section(value, "tls", TLS_KEYS);
  if (!isMapping(value)) return null;
  if (tls.acme !== undefined) return checkAcmeTls(c, tls, baseDir, acme.dataDir, acme.hostname);
  const resolvePart = (key: "cert" | "key"): string | undefined => {
    if (tls[key] !== undefined) return c.path(tls[key], `tls.${key}`, baseDir);
    c.report(`tls.${key}`, "missing (tls needs both cert and key)");
    return undefined;
  };
  const cert = resolvePart("cert");
  const key = resolvePart("key");
  return cert === undefined || key === undefined ? null : { cert, key };
}

export function checkListeners(c: Checker, value: unknown, hasTls: boolean): ListenerConfig[] {
  if (value === undefined) return [...DEFAULT_LISTENERS];
  const items = c.list(value, "listeners", "a list of { address, port, mode }");
  if (items === undefined) return [];
  const listeners: ListenerConfig[] = [];
  const seen = new Map<string, number>();
  items.forEach((item, index) => {
    const path = `listeners[${index}]`;
    if (!isMapping(item)) {
      c.report(
        path,
        `expected a mapping like { address: 127.0.0.1, port: 2525, mode: mx }, found ${
          describe(item)
        }`,
      );
      return;
    }
    c.unknownKeys(item, path, LISTENER_KEYS);
    let address: string | undefined;
    if (item.address === undefined) c.report(`${path}.address`, "missing");
    else if (typeof item.address === "string" && ipVersion(item.address) !== 0) {
      address = item.address;
    } else {
      c.report(
        `${path}.address`,
        `expected an IP address like 127.0.0.1 or ::1, found ${describe(item.address)}`,
      );
    }
    let port: number | undefined;
    if (item.port === undefined) c.report(`${path}.port`, "missing");
    else if (
      typeof item.port === "number" && Number.isInteger(item.port) && item.port >= 0 &&
      item.port <= 65535
    ) {
      port = item.port;
    } else {
      c.report(
        `${path}.port`,
        `expected a port number from 0 to 65535, found ${describe(item.port)}`,
      );
    }
    const mode = item.mode === undefined
      ? "mx"
      : c.oneOf(item.mode, `${path}.mode`, LISTENER_MODES);
    if (mode !== undefined && mode !== "mx" && !hasTls) {
      c.report(path, `mode ${JSON.stringify(mode)} needs tls.cert and tls.key`);
    }
    if (address === undefined || port === undefined || mode === undefined) return;
    // Port 0 asks the system for any free port, so two of them never collide.
    if (port !== 0) {
      const socket = `${canonicalIp(address)} ${port}`;
      const first = seen.get(socket);
      if (first !== undefined) c.report(path, `same address and port as listeners[${first}]`);
      else seen.set(socket, index);
    }
    listeners.push({ address, port, mode });
  });
  return listeners;
}
