/**
 * Validation of `dnsbl`: the DNS block lists asked about mx clients.
 *
 * @module
 */

import { type Checker, describe, isMapping } from "./checker.ts";
import { DNSBL_KEYS } from "./keys.ts";
import { isDomainName } from "./syntax.ts";
import { isIpv4 } from "../net/ip.ts";
import type { DnsblConfig } from "./types.ts";

const DNSBL_LIST_KEYS = DNSBL_KEYS;

/**
 * Reads `dnsbl`: a list of zones (`zen.spamhaus.org`) or of mappings
 * `{ zone, codes: [127.0.0.2, …] }`.
 *
 * @param c Where problems go.
 * @param value The raw value.
 * @returns The lists; `[]` when the key is left out.
 */
export function checkDnsbl(c: Checker, value: unknown): readonly DnsblConfig[] {
  if (value === undefined || value === null) return [];
  const items = c.list(value, "dnsbl", "a list of block list zones (like zen.spamhaus.org)");
  if (items === undefined) return [];
  const lists: DnsblConfig[] = [];
  items.forEach((item, index) => {
    const list = checkList(c, item, `dnsbl[${index}]`);
    if (list !== null) lists.push(list);
  });
  return lists;
}

function checkList(c: Checker, item: unknown, path: string): DnsblConfig | null {
  if (typeof item === "string") {
    return checkZone(c, item, path) ? { zone: item, codes: null } : null;
  }
  if (!isMapping(item)) {
    c.report(path, `expected a zone or a mapping { zone, codes }, found ${describe(item)}`);
    return null;
  }
  const entry = c.section(item, path, DNSBL_LIST_KEYS);
  if (entry.zone === undefined) {
    c.report(path, "expected a zone (zone: zen.spamhaus.org)");
    return null;
  }
  const zone = c.string(entry.zone, `${path}.zone`, "a block list zone (like zen.spamhaus.org)");
  if (zone === undefined || !checkZone(c, zone, `${path}.zone`)) return null;
  const allow = entry.allow === undefined
    ? false
    : c.boolean(entry.allow, `${path}.allow`) ?? false;
  const flag = allow ? { allow: true } : {};
  if (entry.codes === undefined || entry.codes === null) return { zone, codes: null, ...flag };
  const items = c.list(entry.codes, `${path}.codes`, "a list of answer codes like [127.0.0.2]");
  if (items === undefined) return null;
  const codes: string[] = [];
  items.forEach((code, i) => {
    if (typeof code === "string" && isIpv4(code) && code.startsWith("127.")) codes.push(code);
    else {
      c.report(
        `${path}.codes[${i}]`,
        `expected an answer code in 127.0.0.0/8 (like 127.0.0.2), found ${describe(code)}`,
      );
    }
  });
  if (items.length === 0) c.report(`${path}.codes`, "expected at least one answer code");
  return { zone, codes, ...flag };
}

function checkZone(c: Checker, zone: string, path: string): boolean {
  if (isDomainName(zone.replace(/\.$/, ""))) return true;
  c.report(path, `expected a block list zone (like zen.spamhaus.org), found ${describe(zone)}`);
  return false;
}
