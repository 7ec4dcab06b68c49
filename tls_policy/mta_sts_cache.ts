/**
 * The MTA-STS policies in force, per domain (RFC 8461 §5.1): discovered
 * through the `_mta-sts` TXT record, fetched over HTTPS, and kept in the
 * queue's store (`mta-sts/<domain>`, JSON) until `max_age`, so they survive
 * restarts, which is what makes MTA-STS hold against an attacker who later
 * hides the TXT record or the policy host (trust on first use). A policy is
 * fetched again when the TXT record's id changes or when it nears its
 * expiry; when that fails, the cached one stays in force.
 *
 * @module
 */

import { type DnsQuerier, DnsTemporaryError } from "../dns/resolver.ts";
import type { Logger } from "../log/logger.ts";
import { fetchStsPolicy, type StsFetchOptions, type StsFetchResult } from "./mta_sts_fetch.ts";
import { parseStsPolicy, parseStsRecord, type StsPolicy } from "./mta_sts_policy.ts";

/** Where policies are kept: the queue's small key/value store, or a map in tests. */
export interface PolicyStore {
  /** Reads a value, `null` when absent. */
  getState(name: string): Promise<string | null>;
  /** Writes a value, or removes it with `null`. */
  setState(name: string, value: string | null): Promise<void>;
}

/** A cached policy as stored. */
interface CachedPolicy {
  readonly id: string;
  readonly policy: StsPolicy;
  /** When it was fetched, ms since the epoch. */
  readonly fetchedAt: number;
  /** When it stops counting (fetchedAt + max_age), ms since the epoch. */
  readonly expiresAt: number;
}

/** The policy for a domain, and where it came from, for the log line. */
export interface PolicyLookup {
  /** The policy in force, or `null` for none. */
  readonly policy: StsPolicy | null;
  /** `fetched` now, `cached` (still fresh, or kept while a refresh failed), or `none`. */
  readonly source: "fetched" | "cached" | "none";
  /** Why a fetch or discovery failed, when one did. */
  readonly error?: string;
}

/** Options of {@linkcode MtaStsPolicies}. */
export interface MtaStsOptions {
  /** Asks for TXT and address records. */
  readonly resolver: DnsQuerier;
  /** Keeps policies; left out: memory only. */
  readonly store?: PolicyStore;
  /** Trusted CAs for the HTTPS fetch, read at each fetch (the configuration may be reloaded); left out or `undefined`: Node's roots. */
  readonly ca?: () => readonly string[] | undefined;
  /** The HTTPS port. @default {443} */
  readonly port?: number;
  /** The fetch's time limit, ms. @default {60000} */
  readonly fetchTimeoutMs?: number;
  /** Where failed fetches are logged. */
  readonly logger?: Logger;
  /** The clock. @default {Date.now} */
  readonly now?: () => number;
}

/** A policy this close to its expiry is fetched again, even with the same id (RFC 8461 §5.1 "proactively refresh"). */
const REFRESH_BEFORE_MS = 24 * 3600_000;
/** After a failed fetch, the domain is not asked again for this long (a dead host must not cost 60 s per message). */
const FAILURE_HOLD_MS = 5 * 60_000;
const MAX_REMEMBERED_FAILURES = 10_000;

/** The MTA-STS policies of recipient domains. */
export class MtaStsPolicies {
  readonly #options: MtaStsOptions;
  readonly #memory = new Map<string, string>();
  readonly #failures = new Map<string, { until: number; error: string; id: string | null }>();
  readonly #inFlight = new Map<string, Promise<PolicyLookup>>();
  readonly #now: () => number;

  /**
   * Makes the cache; nothing is asked until the first lookup.
   *
   * @param options Resolver, store, CAs, clock.
   */
  constructor(options: MtaStsOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /**
   * The policy in force for a domain. Never throws: DNS and fetch failures
   * fall back to the cached policy, else to none.
   *
   * @param domain The recipient domain, lower case.
   * @returns The policy and where it came from.
   */
  policyFor(domain: string): Promise<PolicyLookup> {
    const pending = this.#inFlight.get(domain);
    if (pending !== undefined) return pending;
    const lookup = this.#lookup(domain).finally(() => this.#inFlight.delete(domain));
    this.#inFlight.set(domain, lookup);
    return lookup;
  }

  async #lookup(domain: string): Promise<PolicyLookup> {
    const now = this.#now();
    const cached = await this.#read(domain, now);
    const record = await this.#discover(domain);
    if (record.kind === "none" || record.kind === "failed") {
      // RFC 8461 §5.1: no TXT record (or none now) leaves a cached policy in force.
      return cached === null
        ? {
          policy: null,
          source: "none",
          ...(record.kind === "failed" ? { error: record.error } : {}),
        }
        : { policy: cached.policy, source: "cached" };
    }
    const fresh = cached !== null && cached.id === record.id &&
      cached.expiresAt - now > REFRESH_BEFORE_MS;
    if (fresh) return { policy: cached.policy, source: "cached" };
    const held = this.#failures.get(domain);
    if (held !== undefined && held.until > now && held.id === record.id) {
      return cached === null
        ? { policy: null, source: "none", error: held.error }
        : { policy: cached.policy, source: "cached", error: held.error };
    }
    const fetched = await this.#fetch(domain);
    const parsed = fetched.ok ? parseStsPolicy(fetched.body) : { error: fetched.error };
    if ("error" in parsed) {
      const error = fetched.ok
        ? `the policy of ${domain} is malformed: ${parsed.error}`
        : parsed.error;
      this.#hold(domain, { until: now + FAILURE_HOLD_MS, error, id: record.id });
      this.#options.logger?.log("warn", "delivery.error", undefined, {
        domain,
        reason: "MTA-STS policy fetch failed",
        error,
        policy: cached === null ? "none" : "cached",
      });
      return cached === null
        ? { policy: null, source: "none", error }
        : { policy: cached.policy, source: "cached", error };
    }
    this.#failures.delete(domain);
    const entry: CachedPolicy = {
      id: record.id,
      policy: parsed,
      fetchedAt: now,
      expiresAt: now + parsed.maxAge * 1000,
    };
    await this.#write(domain, entry);
    return { policy: parsed, source: "fetched" };
  }

  #hold(domain: string, failure: { until: number; error: string; id: string | null }): void {
    if (this.#failures.size >= MAX_REMEMBERED_FAILURES) {
      const oldest = this.#failures.keys().next();
      if (!oldest.done) this.#failures.delete(oldest.value);
    }
    this.#failures.set(domain, failure);
  }

  #fetch(domain: string): Promise<StsFetchResult> {
    const o = this.#options;
    const ca = o.ca?.();
    const options: StsFetchOptions = {
      resolver: o.resolver,
      ...(ca === undefined ? {} : { ca }),
      ...(o.port === undefined ? {} : { port: o.port }),
      ...(o.fetchTimeoutMs === undefined ? {} : { timeoutMs: o.fetchTimeoutMs }),
    };
    return fetchStsPolicy(domain, options);
  }

  /** The TXT record of `_mta-sts.<domain>` (RFC 8461 §3.1). */
  async #discover(
    domain: string,
  ): Promise<
    { kind: "record"; id: string } | { kind: "none" } | { kind: "failed"; error: string }
  > {
    try {
      const answer = await this.#options.resolver.query(`_mta-sts.${domain}`, "TXT");
      if (answer.kind !== "answer") return { kind: "none" };
      const texts = answer.records.flatMap((r) => r.type === "TXT" ? [r.data] : []);
      const record = parseStsRecord(texts);
      return record === null ? { kind: "none" } : { kind: "record", id: record.id };
    } catch (error: unknown) {
      if (error instanceof DnsTemporaryError) return { kind: "failed", error: error.message };
      if (error instanceof SyntaxError) return { kind: "none" };
      throw error;
    }
  }

  async #read(domain: string, now: number): Promise<CachedPolicy | null> {
    const name = `mta-sts/${domain}`;
    let text: string | null;
    try {
      text = this.#options.store ? await this.#options.store.getState(name) : null;
    } catch {
      text = null;
    }
    text ??= this.#memory.get(name) ?? null;
    if (text === null) return null;
    try {
      const entry = JSON.parse(text) as CachedPolicy;
      if (typeof entry.expiresAt !== "number" || entry.expiresAt <= now) return null;
      return entry;
    } catch {
      return null;
    }
  }

  async #write(domain: string, entry: CachedPolicy): Promise<void> {
    const name = `mta-sts/${domain}`;
    const text = JSON.stringify(entry);
    this.#memory.set(name, text);
    if (this.#memory.size > MAX_REMEMBERED_FAILURES) {
      const oldest = this.#memory.keys().next();
      if (!oldest.done) this.#memory.delete(oldest.value);
    }
    try {
      await this.#options.store?.setState(name, text);
    } catch (error: unknown) {
      this.#options.logger?.log("warn", "delivery.error", undefined, {
        domain,
        reason: "cannot store the MTA-STS policy",
        error: error instanceof Error ? error.message : String(error),
      });
    }
  }
}
