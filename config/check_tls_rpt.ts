/**
 * Validation of `relay.tls_rpt`: SMTP TLS Reporting (RFC 8460), the daily
 * reports tern sends to the domains it relays mail to.
 *
 * @module
 */

import { type Checker, describe, isMapping } from "./checker.ts";
import { TLS_RPT_KEYS } from "./keys.ts";
import { parseAddress } from "./syntax.ts";
import type { TlsRptConfig } from "./types.ts";

/**
 * Reads `relay.tls_rpt: { enabled, organization, contact, from }`. Other
 * keys of `relay` are left to `checkRelay`.
 *
 * @param c Where problems go.
 * @param relay The raw `relay` value.
 * @returns `{ tlsRpt }` to merge into `relay`, or `{}` when left out.
 */
export function checkTlsRpt(c: Checker, relay: unknown): { tlsRpt?: TlsRptConfig } {
  if (!isMapping(relay) || relay.tls_rpt === undefined) return {};
  const path = "relay.tls_rpt";
  const value = relay.tls_rpt;
  if (typeof value === "boolean") return { tlsRpt: { enabled: value } };
  const section = c.section(value, path, TLS_RPT_KEYS);
  const out: { enabled?: boolean; organization?: string; contact?: string; from?: string } = {};
  if (section.enabled !== undefined) {
    const enabled = c.boolean(section.enabled, `${path}.enabled`);
    if (enabled !== undefined) out.enabled = enabled;
  }
  if (section.organization !== undefined) {
    const name = c.string(section.organization, `${path}.organization`, "an organization name");
    if (name !== undefined && name.trim() !== "" && !/[\r\n]/.test(name)) {
      out.organization = name.trim();
    } else if (name !== undefined) {
      c.report(`${path}.organization`, `expected a name on one line, found ${describe(name)}`);
    }
  }
  if (section.contact !== undefined) {
    const contact = c.string(section.contact, `${path}.contact`, "an address or a URL");
    if (contact !== undefined && contact.trim() !== "" && !/[\r\n]/.test(contact)) {
      out.contact = contact.trim();
    } else if (contact !== undefined) {
      c.report(`${path}.contact`, `expected an address or a URL, found ${describe(contact)}`);
    }
  }
  if (section.from !== undefined) {
    const from = c.string(section.from, `${path}.from`, "a mail address");
    const parsed = from === undefined ? null : parseAddress(from);
    if (parsed !== null) out.from = `${parsed.local}@${parsed.domain}`;
    else if (from !== undefined) {
      c.report(
        `${path}.from`,
        `expected a mail address like postmaster@example.org, found ${describe(from)}`,
      );
    }
  }
  return { tlsRpt: out };
}
