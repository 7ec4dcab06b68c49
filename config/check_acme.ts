/**
 * Validation of `tls.acme`: certificates obtained from an ACME CA (RFC
 * 8555) instead of `tls.cert` and `tls.key` files.
 *
 * @module
 */

import { join } from "node:path";
import { type Checker, describe, isMapping } from "./checker.ts";
import { ACME_KEYS } from "./keys.ts";
import { isDomainName } from "./syntax.ts";
import { ipVersion } from "../net/ip.ts";
import type { AcmeChallenge, AcmeConfig, TlsConfig } from "./types.ts";

/** Let's Encrypt's production directory, the default `tls.acme.directory`. */
export const DEFAULT_ACME_DIRECTORY = "https://acme-v02.api.letsencrypt.org/directory";

/** Where the account key and certificates live, under `data_dir`. */
export const ACME_DIR_NAME = "acme";

const CHALLENGES: readonly AcmeChallenge[] = ["http-01", "tls-alpn-01"];

/**
 * Reads `tls` when it holds `acme`: the certificate and key are then tern's
 * own files under `<data_dir>/acme/`, so `cert` and `key` must be left out.
 *
 * @param c Where problems go.
 * @param tls The `tls` mapping, keys already checked.
 * @param baseDir What relative paths are relative to.
 * @param dataDir `data_dir`, absolute.
 * @param hostname The host name, the default domain.
 * @returns The TLS configuration, or `null` when `acme` is wrong.
 */
export function checkAcmeTls(
  c: Checker,
  tls: Record<string, unknown>,
  baseDir: string,
  dataDir: string,
  hostname: string,
): TlsConfig | null {
  for (const key of ["cert", "key"] as const) {
    if (tls[key] !== undefined) {
      c.report(
        `tls.${key}`,
        "leave out cert and key with acme (tern keeps its own under data_dir)",
      );
    }
  }
  const acme = checkAcme(c, tls.acme, baseDir, hostname);
  if (acme === null) return null;
  const dir = join(dataDir, ACME_DIR_NAME);
  return { cert: join(dir, "cert.pem"), key: join(dir, "key.pem"), acme };
}

function checkAcme(
  c: Checker,
  value: unknown,
  baseDir: string,
  hostname: string,
): AcmeConfig | null {
  if (!isMapping(value)) {
    c.report(
      "tls.acme",
      `expected a mapping like { contact: mailto:you@example.test }, found ${describe(value)}`,
    );
    return null;
  }
  const acme = c.section(value, "tls.acme", ACME_KEYS);
  const before = c.problems.length;
  const directory = checkDirectoryUrl(c, acme.directory);
  const contact = checkContact(c, acme.contact);
  const domains = checkDomains(c, acme.domains, hostname);
  const challenge = checkChallenge(c, acme.challenge);
  const address = checkAddress(c, acme.address);
  const httpPort = checkPort(c, acme.http_port, "http_port", 80);
  const tlsPort = checkPort(c, acme.tls_port, "tls_port", 443);
  const caFile = acme.ca_file === undefined || acme.ca_file === null
    ? null
    : c.path(acme.ca_file, "tls.acme.ca_file", baseDir) ?? null;
  if (c.problems.length > before) return null;
  return { directory, contact, domains, challenge, address, httpPort, tlsPort, caFile };
}

function checkDirectoryUrl(c: Checker, value: unknown): string {
  if (value === undefined || value === null) return DEFAULT_ACME_DIRECTORY;
  let url: URL | null = null;
  try {
    url = typeof value === "string" ? new URL(value) : null;
  } catch {
    url = null;
  }
  // RFC 8555 §6.1: ACME runs over HTTPS only.
  if (url === null || url.protocol !== "https:") {
    c.report(
      "tls.acme.directory",
      `expected the https:// URL of an ACME directory, found ${describe(value)}`,
    );
    return DEFAULT_ACME_DIRECTORY;
  }
  return url.href;
}

function checkContact(c: Checker, value: unknown): readonly string[] {
  if (value === undefined || value === null) return [];
  const items = typeof value === "string"
    ? [value]
    : c.list(value, "tls.acme.contact", "mailto: URLs like mailto:postmaster@example.test");
  if (items === undefined) return [];
  const out: string[] = [];
  items.forEach((item, i) => {
    const path = typeof value === "string" ? "tls.acme.contact" : `tls.acme.contact[${i}]`;
    // RFC 8555 §7.3: the CA must support mailto:, and may refuse anything else.
    if (typeof item === "string" && /^mailto:[^@\s,]+@[^@\s,]+$/.test(item)) out.push(item);
    else {c.report(
        path,
        `expected a mailto: URL like mailto:postmaster@example.test, found ${describe(item)}`,
      );}
  });
  return out;
}

function checkDomains(c: Checker, value: unknown, hostname: string): readonly string[] {
  if (value === undefined || value === null) {
    if (isDomainName(hostname) && hostname.includes(".")) return [hostname];
    c.report(
      "tls.acme.domains",
      `missing: hostname ${hostname} is not a public domain name, so list the certificate's names`,
    );
    return [];
  }
  const items = c.list(value, "tls.acme.domains", "a list of domain names");
  if (items === undefined) return [];
  if (items.length === 0) c.report("tls.acme.domains", "expected at least one domain name");
  const out: string[] = [];
  items.forEach((item, i) => {
    const lower = typeof item === "string" ? item.toLowerCase().replace(/\.$/, "") : "";
    // A wildcard needs dns-01 (RFC 8555 §7.1.3), which tern does not answer.
    if (isDomainName(lower) && lower.includes(".") && !lower.includes("*")) {
      if (!out.includes(lower)) out.push(lower);
    } else {
      c.report(
        `tls.acme.domains[${i}]`,
        `expected a domain name like mx.example.test (no wildcard), found ${describe(item)}`,
      );
    }
  });
  return out;
}

function checkChallenge(c: Checker, value: unknown): AcmeChallenge {
  if (value === undefined || value === null) return "http-01";
  if (CHALLENGES.includes(value as AcmeChallenge)) return value as AcmeChallenge;
  c.report("tls.acme.challenge", `expected http-01 or tls-alpn-01, found ${describe(value)}`);
  return "http-01";
}

function checkAddress(c: Checker, value: unknown): string {
  if (value === undefined || value === null) return "0.0.0.0";
  if (typeof value === "string" && ipVersion(value) !== 0) return value;
  c.report("tls.acme.address", `expected an IP address to listen on, found ${describe(value)}`);
  return "0.0.0.0";
}

function checkPort(c: Checker, value: unknown, key: string, fallback: number): number {
  if (value === undefined || value === null) return fallback;
  if (typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= 65535) {
    return value;
  }
  c.report(`tls.acme.${key}`, `expected a port number (0-65535), found ${describe(value)}`);
  return fallback;
}
