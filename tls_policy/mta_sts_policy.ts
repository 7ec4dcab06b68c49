/**
 * MTA-STS (RFC 8461) without I/O: reading the `_mta-sts` TXT record (§3.1),
 * parsing a policy file (§3.2), and matching MX host names against its `mx`
 * patterns (§4.1). Fetching and caching are in `mta_sts_fetch.ts` and
 * `mta_sts_cache.ts`.
 *
 * @module
 */

/** RFC 8461 §3.2: `max_age` is at most 31557600 seconds (about a year). */
export const MAX_POLICY_AGE = 31_557_600;

/** What a domain's `_mta-sts` TXT record says: the policy's id (RFC 8461 §3.1). */
export interface StsRecord {
  /** Changes whenever the policy does; 1 to 32 letters and digits. */
  readonly id: string;
}

/** A policy's mode (RFC 8461 §5). */
export type StsMode = "enforce" | "testing" | "none";

/** A parsed policy (RFC 8461 §3.2). */
export interface StsPolicy {
  /** What to do with MX hosts that do not match or do not verify. */
  readonly mode: StsMode;
  /** The MX patterns, lower case: `mx.example.com` or `*.example.com`. */
  readonly mx: readonly string[];
  /** How long the policy may be cached, seconds. */
  readonly maxAge: number;
}

/**
 * Reads the TXT records of `_mta-sts.<domain>` (RFC 8461 §3.1): exactly one
 * of them must start with `v=STSv1`, with an `id`; anything else means no
 * policy.
 *
 * @param records Each TXT record as its character-strings, which are joined.
 * @returns The record, or `null` when there is none or more than one.
 *
 * @example One record
 * ```ts
 * import { parseStsRecord } from "./mta_sts_policy.ts";
 * console.log(parseStsRecord([["v=STSv1; id=20260101T000000;"]])); // { id: "20260101T000000" }
 * console.log(parseStsRecord([["v=spf1 -all"]])); // null
 * ```
 */
export function parseStsRecord(records: readonly (readonly string[])[]): StsRecord | null {
  const sts = records.map((r) => r.join("")).filter((t) => /^v=STSv1(;|\s|$)/.test(t));
  if (sts.length !== 1) return null;
  let id: string | null = null;
  for (const field of sts[0]!.split(";")) {
    const m = /^\s*([A-Za-z0-9_.-]+)=(.*?)\s*$/.exec(field);
    if (m === null) continue;
    if (m[1] === "id") id = m[2]!;
  }
  return id !== null && /^[A-Za-z0-9]{1,32}$/.test(id) ? { id } : null;
}

/**
 * Parses a policy file (RFC 8461 §3.2): `key: value` lines, `version:
 * STSv1`, `mode`, `max_age`, and `mx` lines (at least one unless the mode
 * is `none`). Unknown keys are ignored; the first of a repeated single key
 * counts.
 *
 * @param text The body of `https://mta-sts.<domain>/.well-known/mta-sts.txt`.
 * @returns The policy, or why it is not one.
 *
 * @example A policy
 * ```ts
 * import { parseStsPolicy } from "./mta_sts_policy.ts";
 * const policy = parseStsPolicy("version: STSv1\r\nmode: enforce\r\nmx: *.example.net\r\nmax_age: 86400\r\n");
 * console.log("mode" in policy && policy.mode); // "enforce"
 * ```
 */
export function parseStsPolicy(text: string): StsPolicy | { readonly error: string } {
  const fields = new Map<string, string>();
  const mx: string[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === "") continue;
    const colon = line.indexOf(":");
    if (colon <= 0) {
      return { error: `not a "key: value" line: ${JSON.stringify(line.slice(0, 80))}` };
    }
    const key = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (key === "mx") mx.push(value.toLowerCase().replace(/\.$/, ""));
    else if (!fields.has(key)) fields.set(key, value);
  }
  if (fields.get("version") !== "STSv1") return { error: "version is not STSv1" };
  const mode = fields.get("mode");
  if (mode !== "enforce" && mode !== "testing" && mode !== "none") {
    return { error: `mode ${JSON.stringify(mode ?? "")} is not enforce, testing or none` };
  }
  const age = fields.get("max_age") ?? "";
  if (!/^\d{1,10}$/.test(age) || Number(age) > MAX_POLICY_AGE) {
    return {
      error: `max_age ${JSON.stringify(age)} is not a number of seconds up to ${MAX_POLICY_AGE}`,
    };
  }
  const bad = mx.find((p) => !isMxPattern(p));
  if (bad !== undefined) return { error: `mx ${JSON.stringify(bad)} is not a host name pattern` };
  if (mx.length === 0 && mode !== "none") return { error: "no mx line" };
  return { mode, mx, maxAge: Number(age) };
}

/** A host name, or `*.` and a host name (RFC 8461 §3.2: a wildcard only as the whole leftmost label). */
function isMxPattern(pattern: string): boolean {
  const name = pattern.startsWith("*.") ? pattern.slice(2) : pattern;
  return name.length <= 253 && name.split(".").length >= 1 &&
    name.split(".").every((l) => /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/.test(l));
}

/**
 * Whether an MX host is one of the policy's (RFC 8461 §4.1): equal to a
 * pattern, or `*.rest` for a host of exactly one more label in front of
 * `rest`. Case and a trailing dot do not matter.
 *
 * @param policy The policy.
 * @param host The MX host name.
 * @returns Whether it matches one pattern.
 *
 * @example A wildcard covers one label
 * ```ts
 * import { mxMatches } from "./mta_sts_policy.ts";
 * const policy = { mode: "enforce" as const, mx: ["*.example.net"], maxAge: 86400 };
 * console.log(mxMatches(policy, "mx1.example.net")); // true
 * console.log(mxMatches(policy, "a.b.example.net")); // false
 * ```
 */
export function mxMatches(policy: StsPolicy, host: string): boolean {
  const name = host.toLowerCase().replace(/\.$/, "");
  return policy.mx.some((pattern) => {
    if (!pattern.startsWith("*.")) return pattern === name;
    const dot = name.indexOf(".");
    return dot > 0 && name.slice(dot + 1) === pattern.slice(2);
  });
}
