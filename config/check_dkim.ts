/**
 * Validation of `dkim`: the keys that sign outgoing mail. The key files are
 * read and parsed when secrets are read (the server, `check-config`), so a
 * missing or broken key stops the start instead of failing every message.
 *
 * @module
 */

import { type DkimKey, isSelector, parseDkimKey } from "../auth/dkim_keys.ts";
import { type Checker, describe, isMapping } from "./checker.ts";
import { DKIM_KEY_KEYS, DKIM_KEYS } from "./keys.ts";
import { isDomainName } from "./syntax.ts";
import type { DkimConfig, DkimKeyConfig } from "./types.ts";

/**
 * Reads `dkim: { keys: [{ domain, selector, key }, …] }`.
 *
 * @param c Where problems go.
 * @param value The raw value.
 * @param baseDir What relative key paths are relative to.
 * @returns The keys, or `null` when `dkim` is left out.
 */
export function checkDkim(c: Checker, value: unknown, baseDir: string): DkimConfig | null {
  if (value === undefined || value === null) return null;
  const dkim = c.section(value, "dkim", DKIM_KEYS);
  if (dkim.keys === undefined || dkim.keys === null) return { keys: [] };
  const items = c.list(dkim.keys, "dkim.keys", "a list of { domain, selector, key }");
  if (items === undefined) return null;
  const keys: DkimKeyConfig[] = [];
  items.forEach((item, index) => {
    const key = checkKey(c, item, `dkim.keys[${index}]`, baseDir);
    if (key === null) return;
    if (!isUnique(c, key, keys, `dkim.keys[${index}]`)) return;
    keys.push(key);
  });
  return { keys };
}

function checkKey(
  c: Checker,
  item: unknown,
  path: string,
  baseDir: string,
): DkimKeyConfig | null {
  if (!isMapping(item)) {
    c.report(path, `expected a mapping { domain, selector, key }, found ${describe(item)}`);
    return null;
  }
  const entry = c.section(item, path, DKIM_KEY_KEYS);
  const domain = c.string(entry.domain, `${path}.domain`, "a domain name (like example.test)")
    ?.replace(/\.$/, "").toLowerCase();
  if (domain !== undefined && !isDomainName(domain)) {
    c.report(`${path}.domain`, `not a domain name: ${describe(entry.domain)}`);
    return null;
  }
  const selector = c.string(entry.selector, `${path}.selector`, "a selector (like s2026)")
    ?.toLowerCase();
  if (selector !== undefined && !isSelector(selector)) {
    c.report(
      `${path}.selector`,
      `not a selector: ${describe(entry.selector)} (letters, digits, hyphens and dots)`,
    );
    return null;
  }
  const file = c.path(entry.key, `${path}.key`, baseDir, "the private key file (PEM)");
  if (domain === undefined || selector === undefined || file === undefined) return null;
  if (!c.readSecrets) return { domain, selector, key: file };
  const parsed = readKey(c, file, domain, selector, `${path}.key`);
  return parsed === null ? null : { domain, selector, key: file, parsed };
}

function readKey(
  c: Checker,
  file: string,
  domain: string,
  selector: string,
  path: string,
): DkimKey | null {
  let pem: string;
  try {
    pem = Deno.readTextFileSync(file);
  } catch (error: unknown) {
    c.report(path, `cannot read ${file}: ${describeReadError(error)}`);
    return null;
  }
  try {
    return parseDkimKey(pem, domain, selector);
  } catch (error: unknown) {
    c.report(path, `${file}: ${error instanceof Error ? error.message : String(error)}`);
    return null;
  }
}

/** Why a key file could not be read, in a few plain words. */
function describeReadError(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "no such file";
  if (error instanceof Deno.errors.PermissionDenied) {
    return "permission denied (the server's user must read it)";
  }
  if (error instanceof Deno.errors.IsADirectory) return "is a directory";
  if (error instanceof Deno.errors.NotCapable) return "no read permission (run with --allow-read)";
  if (error instanceof TypeError) return "not a text file";
  return error instanceof Error ? error.message.split("\n")[0] ?? "" : String(error);
}

/**
 * A selector names one key in DNS, and tern signs with one key per
 * algorithm for a domain: a second one would never be used, so it is refused.
 */
function isUnique(
  c: Checker,
  key: DkimKeyConfig,
  earlier: readonly DkimKeyConfig[],
  path: string,
): boolean {
  const sameSelector = earlier.findIndex((k) =>
    k.domain === key.domain && k.selector === key.selector
  );
  if (sameSelector >= 0) {
    c.report(
      `${path}.selector`,
      `${key.selector}._domainkey.${key.domain} is already dkim.keys[${sameSelector}]: a selector publishes one key`,
    );
    return false;
  }
  const algorithm = key.parsed?.algorithm;
  const sameAlgorithm = earlier.findIndex((k) =>
    k.domain === key.domain && algorithm !== undefined && k.parsed?.algorithm === algorithm
  );
  if (sameAlgorithm >= 0) {
    c.report(
      path,
      `a second ${algorithm} key for ${key.domain} (dkim.keys[${sameAlgorithm}] is one): tern signs with one key per algorithm, remove the one not in use`,
    );
    return false;
  }
  return true;
}
