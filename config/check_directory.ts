/**
 * Validation of the mail directory: `local_domains`, `accounts` and
 * `aliases`, and the alias graph (every target reaches a mailbox, no loops).
 *
 * @module
 */

import { validateAliases } from "../mda/recipient.ts";
import { type Checker, describe, isMapping, suggestKey } from "./checker.ts";
import { ACCOUNT_KEYS } from "./keys.ts";
import { isPasswordHash } from "./password.ts";
import { isDomainName, parseAddress } from "./syntax.ts";
import { type AccountConfig, DEFAULT_LOCAL_DOMAINS } from "./types.ts";

export function checkLocalDomains(c: Checker, value: unknown): string[] {
  if (value === undefined) return [...DEFAULT_LOCAL_DOMAINS];
  const items = c.list(value, "local_domains", "a non-empty list of domain names");
  if (items === undefined) return [];
  if (items.length === 0) {
    c.report("local_domains", "expected a non-empty list of domain names, found an empty list");
  }
  const domains: string[] = [];
  items.forEach((item, index) => {
    const path = `local_domains[${index}]`;
    const domain = c.string(item, path, "a domain name");
    if (domain === undefined) return;
    if (!isDomainName(domain)) c.report(path, `not a domain name: ${describe(domain)}`);
    else if (!domains.includes(domain.toLowerCase())) domains.push(domain.toLowerCase());
  });
  return domains;
}

/**
 * A key of `accounts` or `aliases`: a mailbox address in a local domain,
 * lower-cased; `undefined` after reporting when it is not.
 */
export function checkLocalAddress(
  c: Checker,
  key: string,
  path: string,
  localDomains: readonly string[],
): string | undefined {
  const address = parseAddress(key);
  if (address === null) {
    c.report(path, "not an address (expected local-part@domain)");
    return undefined;
  }
  if (!localDomains.includes(address.domain)) {
    c.report(path, `domain ${JSON.stringify(address.domain)} is not in local_domains`);
    return undefined;
  }
  return `${address.local}@${address.domain}`.toLowerCase();
}

/**
 * A catch-all alias key, `@domain` (as Postfix's virtual_alias_maps): every
 * address of a local domain that is no account and no other alias.
 */
export function checkCatchAll(
  c: Checker,
  key: string,
  path: string,
  localDomains: readonly string[],
): string | undefined {
  const domain = key.slice(1).toLowerCase();
  if (!isDomainName(domain)) {
    c.report(path, "not an address (expected local-part@domain, or @domain for a catch-all)");
    return undefined;
  }
  if (!localDomains.includes(domain)) {
    c.report(path, `domain ${JSON.stringify(domain)} is not in local_domains`);
    return undefined;
  }
  return `@${domain}`;
}

/**
 * Remembers the spelling each lower-cased address was first given in;
 * reports a key that differs from an earlier one only in case.
 */
function isFirstSpelling(
  c: Checker,
  spelled: Map<string, string>,
  address: string | undefined,
  key: string,
  path: string,
): boolean {
  if (address === undefined) return false;
  const first = spelled.get(address);
  if (first === undefined) {
    spelled.set(address, key);
    return true;
  }
  c.report(path, `same address as ${JSON.stringify(first)} (addresses are compared in lower case)`);
  return false;
}

export function checkAccounts(
  c: Checker,
  value: unknown,
  localDomains: readonly string[],
): Record<string, AccountConfig> {
  const accounts: Record<string, AccountConfig> = {};
  if (value === undefined || value === null) return accounts;
  if (!isMapping(value)) {
    c.report("accounts", `expected a mapping of address: { password }, found ${describe(value)}`);
    return accounts;
  }
  const spelled = new Map<string, string>();
  for (const [key, entry] of Object.entries(value)) {
    const path = `accounts.${key}`;
    const address = checkLocalAddress(c, key, path, localDomains);
    let isValid = isFirstSpelling(c, spelled, address, key, path);
    // Never quote an account's value back: it may be a password typed in clear.
    if (entry !== null && !isMapping(entry)) {
      c.report(
        path,
        `expected a mapping like { password: "<hash>" } or {}, found ${
          typeof entry === "string" ? "a string" : describe(entry)
        }`,
      );
      continue;
    }
    const fields = entry ?? {};
    for (const field of Object.keys(fields)) {
      if (ACCOUNT_KEYS.some((known) => known === field)) continue;
      const suggestion = suggestKey(field, ACCOUNT_KEYS);
      const hint = suggestion === undefined ? "" : ` (did you mean ${JSON.stringify(suggestion)}?)`;
      c.report(path, `${field}: unknown key${hint}`);
      isValid = false;
    }
    const password = fields.password;
    if (password !== undefined && !(typeof password === "string" && isPasswordHash(password))) {
      c.report(path, 'password: not a hash made by "tern hash-password"');
      isValid = false;
    }
    if (isValid && address !== undefined) {
      accounts[address] = typeof password === "string" ? { password } : {};
    }
  }
  return accounts;
}

/** An alias's targets: one address or a non-empty list; domains lower-cased, local parts as written. */
function checkTargets(c: Checker, entry: unknown, path: string): string[] | undefined {
  const items = typeof entry === "string" ? [entry] : entry;
  if (!Array.isArray(items) || items.length === 0) {
    c.report(
      path,
      `expected a target address or a non-empty list of them, found ${describe(entry)}`,
    );
    return undefined;
  }
  const targets: string[] = [];
  items.forEach((target: unknown, index) => {
    const targetPath = Array.isArray(entry) ? `${path}[${index}]` : path;
    const parsed = typeof target === "string" ? parseAddress(target) : null;
    if (parsed !== null) {
      // The domain is case-insensitive; the local part belongs to the target's server (RFC 5321 §2.4).
      targets.push(`${parsed.local}@${parsed.domain}`);
    } else if (typeof target === "string") {
      c.report(targetPath, `not an address (expected local-part@domain): ${describe(target)}`);
    } else {
      c.report(targetPath, `expected a target address, found ${describe(target)}`);
    }
  });
  return targets.length === items.length ? targets : undefined;
}

export function checkAliases(
  c: Checker,
  value: unknown,
  localDomains: readonly string[],
  accounts: Readonly<Record<string, AccountConfig>>,
): Record<string, string[]> {
  const aliases: Record<string, string[]> = {};
  if (value === undefined || value === null) return aliases;
  if (!isMapping(value)) {
    c.report("aliases", `expected a mapping of address: target(s), found ${describe(value)}`);
    return aliases;
  }
  const spelled = new Map<string, string>();
  for (const [key, entry] of Object.entries(value)) {
    const path = `aliases.${key}`;
    const address = key.startsWith("@")
      ? checkCatchAll(c, key, path, localDomains)
      : checkLocalAddress(c, key, path, localDomains);
    let isValid = isFirstSpelling(c, spelled, address, key, path);
    if (address !== undefined && address in accounts) {
      c.report(path, "is also in accounts; an address is either a mailbox or an alias");
      isValid = false;
    }
    const targets = checkTargets(c, entry, path);
    if (isValid && address !== undefined && targets !== undefined) aliases[address] = targets;
  }
  return aliases;
}

/**
 * What the aliases do once put together, which no single entry shows: a loop
 * (mail to it could never be delivered), and a target in a local domain that
 * nothing receives (mail to it would be dropped from the alias). A key
 * starting with `@` is a domain's catch-all: it receives for the whole domain.
 */
export function checkAliasGraph(
  c: Checker,
  localDomains: readonly string[],
  accounts: Readonly<Record<string, AccountConfig>>,
  aliases: Readonly<Record<string, readonly string[]>>,
): void {
  for (const cycle of validateAliases({ localDomains, accounts, aliases })) {
    const first = cycle[0] ?? "";
    const how = cycle.length === 2 ? "points to itself" : `loops: ${cycle.join(" -> ")}`;
    c.report(`aliases.${first}`, `alias ${how}`);
  }
  const receives = (address: string): boolean => {
    const at = address.lastIndexOf("@");
    const domain = address.slice(at + 1);
    const local = address.slice(0, at);
    // RFC 5233: `alice+tag` is delivered to alice; RFC 5321 §4.5.1: postmaster always exists.
    const base = local.includes("+") ? local.slice(0, local.indexOf("+")) : local;
    return local === "postmaster" || `@${domain}` in aliases ||
      [local, base].some((l) => `${l}@${domain}` in accounts || `${l}@${domain}` in aliases);
  };
  for (const [alias, targets] of Object.entries(aliases)) {
    for (const target of targets) {
      const address = target.toLowerCase();
      const domain = address.slice(address.lastIndexOf("@") + 1);
      if (!localDomains.includes(domain) || receives(address)) continue;
      c.report(
        `aliases.${alias}`,
        `target ${
          JSON.stringify(target)
        } is in a local domain but is no account, alias or catch-all`,
      );
    }
  }
}
