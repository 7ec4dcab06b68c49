/**
 * Validation of `mta_sts_policy`: the MTA-STS policy (RFC 8461 §3.2) tern
 * publishes for its local domains, and the HTTPS listener that serves it.
 *
 * @module
 */

import { type Checker, describe } from "./checker.ts";
import { MTA_STS_LISTEN_KEYS, MTA_STS_POLICY_KEYS } from "./keys.ts";
import { isDomainName } from "./syntax.ts";
import { ipVersion } from "../net/ip.ts";
import type { MtaStsPolicyConfig } from "./types.ts";

/** RFC 8461 §3.2: `max_age` is at most 31557600 seconds. */
const MAX_AGE_MS = 31_557_600_000;
/** One week: RFC 8461 §3.2 suggests weeks, so a policy outlives an attacker's window. */
const DEFAULT_MAX_AGE_MS = 7 * 24 * 3600_000;
const MODES = ["enforce", "testing", "none"] as const;

/**
 * Reads `mta_sts_policy: { mode, mx, max_age, listen: { address, port } }`.
 *
 * @param c Where problems go.
 * @param value The raw value.
 * @param hostname The host name: the default `mx`.
 * @param hasTls Whether `tls` is configured (the listener serves its certificate).
 * @returns The policy, or `null` when left out.
 */
export function checkMtaStsPolicy(
  c: Checker,
  value: unknown,
  hostname: string,
  hasTls: boolean,
): MtaStsPolicyConfig | null {
  if (value === undefined) return null;
  const path = "mta_sts_policy";
  const section = c.section(value, path, MTA_STS_POLICY_KEYS);
  if (!hasTls) {
    c.report(path, "needs tls (the policy is served over HTTPS with the certificate of tls)");
  }
  let mode: MtaStsPolicyConfig["mode"] = "enforce";
  if (section.mode !== undefined) mode = c.oneOf(section.mode, `${path}.mode`, MODES) ?? mode;
  let mx: string[] = [hostname];
  if (section.mx !== undefined) {
    const items = c.list(section.mx, `${path}.mx`, "a list of MX host names") ?? [];
    mx = [];
    items.forEach((item, i) => {
      const name = typeof item === "string" ? item.toLowerCase().replace(/\.$/, "") : "";
      const bare = name.startsWith("*.") ? name.slice(2) : name;
      if (isDomainName(bare)) mx.push(name);
      else {c.report(
          `${path}.mx[${i}]`,
          `expected a host name or *.domain, found ${describe(item)}`,
        );}
    });
    if (items.length === 0 && mode !== "none") {
      c.report(`${path}.mx`, "expected at least one MX host");
    }
  }
  let maxAge = DEFAULT_MAX_AGE_MS;
  if (section.max_age !== undefined) {
    const ms = c.duration(section.max_age, `${path}.max_age`);
    if (ms !== undefined && (ms > MAX_AGE_MS || ms % 1000 !== 0)) {
      c.report(
        `${path}.max_age`,
        `expected whole seconds up to 365.25 days, found ${describe(section.max_age)}`,
      );
    } else if (ms !== undefined) maxAge = ms;
  }
  const listen = c.section(section.listen, `${path}.listen`, MTA_STS_LISTEN_KEYS);
  let address = "0.0.0.0";
  if (listen.address !== undefined) {
    if (typeof listen.address === "string" && ipVersion(listen.address) !== 0) {
      address = listen.address;
    } else {
      c.report(
        `${path}.listen.address`,
        `expected an IP address like 0.0.0.0 or ::, found ${describe(listen.address)}`,
      );
    }
  }
  let port = 443;
  if (listen.port !== undefined) {
    const p = listen.port;
    if (typeof p === "number" && Number.isInteger(p) && p >= 0 && p <= 65535) port = p;
    else {c.report(
        `${path}.listen.port`,
        `expected a port number from 0 to 65535, found ${describe(p)}`,
      );}
  }
  return { mode, mx, maxAge, listen: { address, port } };
}
