/**
 * Where to deliver mail for a domain: the procedure of RFC 5321 §5.1, with
 * the null MX of RFC 7505.
 *
 * 1. Ask for the domain's MX records.
 * 2. NXDOMAIN: the domain does not exist. Permanent: bounce.
 * 3. MX records: use them, lowest preference first, in random order among
 *    equal preferences (§5.1: "randomize them to spread the load"). Never
 *    fall back to the domain's own address records once MX records exist.
 *    A single `MX 0 .` is a null MX (RFC 7505): the domain takes no mail,
 *    bounce at once with 556 5.1.10.
 * 4. No MX records (NODATA): the domain itself is the "implicit MX" with
 *    preference 0, if it has an A or AAAA record; if it has neither, there is
 *    nowhere to deliver (permanent).
 * 5. Any temporary DNS failure is thrown as a {@linkcode DnsTemporaryError}:
 *    the caller defers the message (4.4.3) and retries later.
 *
 * Then {@linkcode resolveAddresses} turns each host into IP addresses.
 *
 * @module
 */

import { isIPv4, isIPv6 } from "node:net";
import { canonicalIpv6, normalizeName } from "./message.ts";
import { type DnsAnswer, type DnsQuerier, DnsTemporaryError } from "./resolver.ts";

/** One host to try, in order. */
export interface MxHost {
  /** The host name, normalized (A-labels, lower case), or an address literal such as `[192.0.2.1]`. */
  readonly name: string;
  /** The MX preference; 0 for the implicit MX. */
  readonly preference: number;
  /** True when the domain had no MX records and the domain itself is used (RFC 5321 §5.1). */
  readonly implicit: boolean;
}

/** What {@linkcode resolveMx} found. */
export type MxResult =
  | {
    /** Hosts to try. */
    readonly kind: "hosts";
    /** Lowest preference first; equal preferences in random order. Never empty. */
    readonly hosts: readonly MxHost[];
  }
  | {
    /** RFC 7505 null MX: the domain accepts no mail. Bounce with 556 5.1.10. */
    readonly kind: "nullmx";
  }
  | {
    /** The domain does not exist (NXDOMAIN). Bounce (5.1.2). */
    readonly kind: "nxdomain";
  }
  | {
    /** The domain exists but has neither MX nor A/AAAA records. Bounce (5.1.2). */
    readonly kind: "noaddress";
  };

/** Options of {@linkcode resolveMx}. */
export interface ResolveMxOptions {
  /** Random numbers in [0, 1) for shuffling equal preferences; tests pass a fixed sequence. @default {Math.random} */
  random?: () => number;
}

/**
 * Reads an address literal (RFC 5321 §4.1.3): `[192.0.2.1]` or
 * `[IPv6:2001:db8::1]`; a bare IP address is accepted too.
 *
 * @param text A domain or literal as found in an address or route.
 * @returns The IP address (IPv6 in canonical form), or `null` when `text` is
 *   not an address.
 *
 * @example Read address literals
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseAddressLiteral } from "./mx.ts";
 * assert.equal(parseAddressLiteral("[192.0.2.1]"), "192.0.2.1");
 * assert.equal(parseAddressLiteral("[IPv6:2001:DB8:0::1]"), "2001:db8::1");
 * assert.equal(parseAddressLiteral("example.test"), null);
 * ```
 */
export function parseAddressLiteral(text: string): string | null {
  if (isIPv4(text)) return text;
  if (isIPv6(text)) return canonicalIpv6(text);
  const literal = /^\[(.*)\]$/.exec(text)?.[1];
  if (literal === undefined) return null;
  if (isIPv4(literal)) return literal;
  // RFC 5321 §4.1.3: "IPv6:" is a case-insensitive tag.
  const v6 = /^ipv6:(.*)$/i.exec(literal)?.[1];
  return v6 !== undefined && isIPv6(v6) ? canonicalIpv6(v6) : null;
}

/** Sorts by preference and shuffles each run of equal preferences (Fisher-Yates). */
function orderHosts(hosts: MxHost[], random: () => number): MxHost[] {
  hosts.sort((a, b) => a.preference - b.preference);
  for (let start = 0; start < hosts.length;) {
    let end = start;
    while (end < hosts.length && hosts[end]!.preference === hosts[start]!.preference) end++;
    for (let i = end - 1; i > start; i--) {
      const j = start + Math.min(i - start, Math.floor(random() * (i - start + 1)));
      [hosts[i], hosts[j]] = [hosts[j]!, hosts[i]!];
    }
    start = end;
  }
  return hosts;
}

/** The A and AAAA answers of one name, both asked at once. */
async function queryAddresses(
  host: string,
  resolver: DnsQuerier,
): Promise<{ v6: PromiseSettledResult<DnsAnswer>; v4: PromiseSettledResult<DnsAnswer> }> {
  const [v6, v4] = await Promise.allSettled([
    resolver.query(host, "AAAA"),
    resolver.query(host, "A"),
  ]);
  return { v6, v4 };
}

function addressesOf(result: PromiseSettledResult<DnsAnswer>): string[] {
  if (result.status !== "fulfilled" || result.value.kind !== "answer") return [];
  return result.value.records.flatMap((r) => (r.type === "A" || r.type === "AAAA" ? [r.data] : []));
}

/** Rethrows a failure that is not a temporary DNS error (a bug or a bad name). */
function rethrowUnexpected(...results: PromiseSettledResult<DnsAnswer>[]): void {
  for (const r of results) {
    if (r.status === "rejected" && !(r.reason instanceof DnsTemporaryError)) throw r.reason;
  }
}

function firstTemporary(...results: PromiseSettledResult<DnsAnswer>[]): DnsTemporaryError | null {
  for (const r of results) {
    if (r.status === "rejected" && r.reason instanceof DnsTemporaryError) return r.reason;
  }
  return null;
}

/**
 * Finds the hosts that receive mail for a domain (RFC 5321 §5.1, RFC 7505).
 *
 * @param domain The domain of a recipient address; U-labels allowed. An
 *   address literal (`[192.0.2.1]`) is returned as the only host, without DNS.
 * @param resolver What asks the questions, usually a {@linkcode StubResolver}.
 * @param options An injectable random source for the shuffle.
 * @returns Hosts to try in order, or why there are none.
 * @throws {DnsTemporaryError} When DNS failed for now: defer, do not bounce.
 * @throws {DnsFormatError} When `domain` cannot be a DNS name (permanent).
 *
 * @example Order MX hosts with a fake resolver
 * ```ts
 * import assert from "node:assert/strict";
 * import { resolveMx } from "./mx.ts";
 * import type { DnsAnswer, DnsQuerier } from "./resolver.ts";
 * const mx = (preference: number, exchange: string) => ({
 *   name: "example.test", type: "MX" as const, class: 1, ttl: 60, data: { preference, exchange },
 * });
 * const resolver: DnsQuerier = {
 *   query: (): Promise<DnsAnswer> =>
 *     Promise.resolve({ kind: "answer", ttl: 60, records: [mx(20, "b.example.test"), mx(10, "a.example.test")] }),
 * };
 * const result = await resolveMx("example.test", resolver);
 * assert.deepEqual(result, {
 *   kind: "hosts",
 *   hosts: [
 *     { name: "a.example.test", preference: 10, implicit: false },
 *     { name: "b.example.test", preference: 20, implicit: false },
 *   ],
 * });
 * ```
 *
 * @example Recognize a null MX
 * ```ts
 * import assert from "node:assert/strict";
 * import { resolveMx } from "./mx.ts";
 * const resolver = {
 *   query: () =>
 *     Promise.resolve({
 *       kind: "answer" as const, ttl: 60,
 *       records: [{ name: "example.test", type: "MX" as const, class: 1, ttl: 60, data: { preference: 0, exchange: "." } }],
 *     }),
 * };
 * assert.deepEqual(await resolveMx("example.test", resolver), { kind: "nullmx" });
 * ```
 */
export async function resolveMx(
  domain: string,
  resolver: DnsQuerier,
  options: ResolveMxOptions = {},
): Promise<MxResult> {
  const random = options.random ?? Math.random;
  if (domain.startsWith("[")) {
    // RFC 5321 §5.1: an address literal is used as is, no MX lookup.
    const address = parseAddressLiteral(domain);
    return address === null
      ? { kind: "noaddress" }
      : { kind: "hosts", hosts: [{ name: domain, preference: 0, implicit: true }] };
  }
  const name = normalizeName(domain);
  const answer = await resolver.query(name, "MX");
  if (answer.kind === "nxdomain") return { kind: "nxdomain" };
  if (answer.kind === "answer") {
    const mxs = answer.records.flatMap((r) => (r.type === "MX" ? [r.data] : []));
    // RFC 7505 §3: a null MX is the only MX of its domain, preference 0, exchange ".".
    if (mxs.length === 1 && mxs[0]!.preference === 0 && mxs[0]!.exchange === ".") {
      return { kind: "nullmx" };
    }
    const best = new Map<string, number>();
    for (const mx of mxs) {
      // "." is no host (RFC 7505 §3); a null MX mixed with real ones is ignored.
      if (mx.exchange === ".") continue;
      const exchange = normalizeName(mx.exchange);
      best.set(exchange, Math.min(best.get(exchange) ?? Infinity, mx.preference));
    }
    // Every MX was "." (say `MX 10 .`): no host to try, and §5.1 forbids the A fallback.
    if (best.size === 0) return { kind: "nullmx" };
    const hosts = [...best].map(([host, preference]) => ({
      name: host,
      preference,
      implicit: false,
    }));
    return { kind: "hosts", hosts: orderHosts(hosts, random) };
  }
  // RFC 5321 §5.1: no MX records, so the domain itself is the implicit MX,
  // provided it has an address record.
  const { v6, v4 } = await queryAddresses(name, resolver);
  rethrowUnexpected(v6, v4);
  if (addressesOf(v6).length + addressesOf(v4).length > 0) {
    return { kind: "hosts", hosts: [{ name, preference: 0, implicit: true }] };
  }
  const temporary = firstTemporary(v6, v4);
  if (temporary !== null) throw temporary;
  const bothNxdomain = v6.status === "fulfilled" && v6.value.kind === "nxdomain" &&
    v4.status === "fulfilled" && v4.value.kind === "nxdomain";
  return bothNxdomain ? { kind: "nxdomain" } : { kind: "noaddress" };
}

/**
 * The IP addresses of one host: its AAAA then its A records (IPv6 first, then
 * IPv4, each in the server's order, duplicates removed), both asked at once.
 * An address literal or a bare IP address is returned as is, without DNS.
 *
 * When one family fails temporarily and the other gives addresses, those
 * addresses are returned (a broken AAAA lookup must not hold up IPv4
 * delivery); when no address was found and a lookup failed temporarily, the
 * failure is thrown.
 *
 * @param host A host name from {@linkcode resolveMx}, or an address literal.
 * @param resolver What asks the questions.
 * @returns The addresses; empty for NXDOMAIN, NODATA or an invalid literal.
 * @throws {DnsTemporaryError} When no address was found and DNS failed for now.
 * @throws {DnsFormatError} When `host` cannot be a DNS name.
 *
 * @example Address literals need no DNS
 * ```ts
 * import assert from "node:assert/strict";
 * import { resolveAddresses } from "./mx.ts";
 * const resolver = { query: () => Promise.reject(new Error("not asked")) };
 * assert.deepEqual(await resolveAddresses("[192.0.2.1]", resolver), ["192.0.2.1"]);
 * assert.deepEqual(await resolveAddresses("[IPv6:2001:db8::1]", resolver), ["2001:db8::1"]);
 * ```
 */
export async function resolveAddresses(host: string, resolver: DnsQuerier): Promise<string[]> {
  const literal = parseAddressLiteral(host);
  if (literal !== null) return [literal];
  if (host.startsWith("[")) return []; // RFC 5321 §4.1.3: not a valid address literal
  const { v6, v4 } = await queryAddresses(normalizeName(host), resolver);
  rethrowUnexpected(v6, v4);
  const addresses = [...new Set([...addressesOf(v6), ...addressesOf(v4)])];
  if (addresses.length > 0) return addresses;
  const temporary = firstTemporary(v6, v4);
  if (temporary !== null) throw temporary;
  return [];
}
