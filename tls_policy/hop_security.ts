/**
 * How a hop of the relay is to be secured: the recipient domain's DANE TLSA
 * records (RFC 7672), its MTA-STS policy (RFC 8461), a route's own `tls`,
 * and what the message itself asks (REQUIRETLS, RFC 8689; `TLS-Required:
 * No`). The relay asks {@linkcode HopSecurityPolicy} once per domain and
 * once per host, then connects as the answer says (`mta/relay.ts`).
 *
 * @module
 */

import type { Config } from "../config/schema.ts";
import { type DnsQuerier, DnsTemporaryError, isAuthenticated } from "../dns/resolver.ts";
import type { NextHop } from "../mta/routing.ts";
import type { ReplySummary } from "../queue/types.ts";
import { isUsableTlsa, parseTlsa, type Tlsa } from "./dane.ts";
import type { MtaStsPolicies, PolicyLookup } from "./mta_sts_cache.ts";
import { mxMatches } from "./mta_sts_policy.ts";

/**
 * How one hop is secured, as the log line's `tls_policy` says:
 * `none` (a route with `tls: none`), `opportunistic` (RFC 7435),
 * `required` (a route with `tls: require`: TLS, any certificate),
 * `ca` (a route with `tls: verify`: TLS, PKIX), `dane` (RFC 7672),
 * `mta-sts` (RFC 8461 enforce; testing mode is opportunistic).
 */
export type HopSecurity =
  | { readonly kind: "none" | "opportunistic" | "required" | "ca" }
  | {
    readonly kind: "dane";
    /** The usable TLSA records; empty: TLS without authentication (none usable, RFC 7672 §2.2). */
    readonly records: readonly Tlsa[];
  }
  | { readonly kind: "mta-sts"; readonly domain: string }
  | { readonly kind: "mta-sts-testing"; readonly domain: string; readonly matches: boolean };

/** The domain's side of the decision: its MTA-STS policy and whether its MX answer is DNSSEC-secure. */
export interface DomainSecurity {
  readonly viaMx: boolean;
  readonly mxSecure: boolean;
  readonly sts: PolicyLookup | null;
}

/** The log's name of a hop's security. */
export function policyName(security: HopSecurity): string {
  return security.kind === "mta-sts-testing" ? "opportunistic" : security.kind;
}

/** What the message asks of TLS (RFC 8689): every hop verified, or the recipient's policies waived. */
export interface MessageTls {
  /** REQUIRETLS on MAIL FROM (§4.1). */
  readonly requireTls: boolean;
  /** `TLS-Required: No`, ignored under REQUIRETLS (§5). */
  readonly policiesWaived: boolean;
}

/**
 * A hop's security in words, with the rule behind it, for the trace of
 * `tern serve --trace`.
 *
 * @param security The decision.
 * @returns One line.
 */
export function explainSecurity(security: HopSecurity): string {
  switch (security.kind) {
    case "none":
      return "a route with tls: none: plaintext";
    case "opportunistic":
      return "no DANE or MTA-STS policy: STARTTLS when offered, any certificate, " +
        "plaintext if the handshake fails (RFC 7435)";
    case "mta-sts-testing":
      return `the MTA-STS policy of ${security.domain} is in testing mode: delivered as ` +
        `opportunistic, what enforce would refuse is logged and reported (RFC 8461 §5)`;
    case "required":
      return "a route with tls: require: TLS, any certificate";
    case "ca":
      return "TLS with a certificate valid for the host name (PKIX, RFC 6125), or nothing";
    default:
      return `${requirement(security)}, or nothing`;
  }
}

/** A hop's security, or why the hop may not be used (and under which policy). */
export type HopDecision = HopSecurity | { refused: ReplySummary; policy: string };

/**
 * RFC 8689 §4.2.1: a REQUIRETLS message goes only over TLS whose
 * certificate was verified, by DANE, by MTA-STS, or by PKIX against the MX
 * host name when the MX answer was DNSSEC-secure (or a route's `tls:
 * verify`); any other hop is refused with 5.7.30.
 */
export function requireTlsSecurity(
  security: HopSecurity,
  host: NextHop,
  d: DomainSecurity,
): HopSecurity | { refused: ReplySummary; policy: string } {
  if (security.kind === "dane" && security.records.length > 0) return security;
  if (security.kind === "mta-sts" || security.kind === "ca") return security;
  if (d.viaMx && d.mxSecure && security.kind !== "dane") return { kind: "ca" };
  const why = !d.viaMx
    ? `the route to ${host.name}:${host.port} does not verify its certificate (tls: verify)`
    : security.kind === "dane"
    ? `${host.name} has no usable TLSA record`
    : `the MX of ${host.name} is neither DNSSEC-secure nor listed in an MTA-STS policy`;
  return {
    policy: policyName(security),
    refused: {
      code: 0,
      enhancedStatus: "5.7.30",
      text: `REQUIRETLS support required: ${why} (RFC 8689 §4.2.1)`,
    },
  };
}

/** What asked for TLS, for the deferral's text. */
export function requirement(security: HopSecurity): string {
  switch (security.kind) {
    case "dane":
      return security.records.length > 0
        ? "DANE (RFC 7672): TLSA records require TLS with a matching certificate"
        : "DANE (RFC 7672): TLSA records (none usable) require TLS";
    case "mta-sts":
      return `the MTA-STS policy of ${security.domain} (RFC 8461, enforce) requires TLS with a certificate valid for the MX host`;
    case "ca":
      return "tls: verify";
    default:
      return "tls: require";
  }
}

/** What {@linkcode HopSecurityPolicy} needs. */
export interface HopSecurityOptions {
  /** tern's resolver: DNSSEC-secure answers only from a loopback validating resolver. */
  readonly resolver: DnsQuerier;
  /** The MTA-STS policies, cached in the store. */
  readonly sts: MtaStsPolicies;
  /** The relay settings in force (`relay.dane`, `relay.mta_sts`). */
  readonly relay: () => Config["relay"];
}

/** Decides how each hop is secured. */
export class HopSecurityPolicy {
  readonly #resolver: DnsQuerier;
  readonly #sts: MtaStsPolicies;
  readonly #relay: () => Config["relay"];

  /** @param options The resolver, the policy cache, the settings. */
  constructor(options: HopSecurityOptions) {
    this.#resolver = options.resolver;
    this.#sts = options.sts;
    this.#relay = options.relay;
  }

  /**
   * What the domain says about TLS: its MTA-STS policy, and whether its MX
   * answer is DNSSEC-secure (RFC 7672 §2.2.1: DANE only for a secure MX
   * RRset). Only for MX delivery: a configured route has its own `tls`.
   */
  async domainSecurity(domain: string, viaMx: boolean): Promise<DomainSecurity> {
    const relay = this.#relay();
    if (!viaMx) return { viaMx, mxSecure: false, sts: null };
    let mxSecure = false;
    if (relay.dane !== false) {
      try {
        // Answered from the resolver's cache: resolveMx asked just now.
        mxSecure = isAuthenticated(await this.#resolver.query(domain, "MX"));
      } catch {
        mxSecure = false;
      }
    }
    const sts = relay.mtaSts === false ? null : await this.#sts.policyFor(domain);
    return { viaMx, mxSecure, sts };
  }

  /**
   * How one host is to be secured, or why it may not be used. DANE
   * first (RFC 8461 §2: DANE takes precedence), then MTA-STS, else
   * opportunistic TLS (RFC 7435).
   */
  async hostSecurity(
    domain: string,
    host: NextHop,
    d: DomainSecurity,
    messageTls: MessageTls,
  ): Promise<HopSecurity | { refused: ReplySummary; policy: string }> {
    const decided = messageTls.policiesWaived
      ? { kind: "opportunistic" as const }
      : await this.#policySecurity(domain, host, d);
    if (!messageTls.requireTls || "refused" in decided) return decided;
    return requireTlsSecurity(decided, host, d);
  }

  /** The recipient domain's policies for one host: DANE, MTA-STS, or opportunistic. */
  async #policySecurity(
    domain: string,
    host: NextHop,
    d: DomainSecurity,
  ): Promise<HopSecurity | { refused: ReplySummary; policy: string }> {
    if (!d.viaMx) {
      const t = host.policy?.tls ?? "opportunistic";
      return { kind: t === "verify" ? "ca" : t === "require" ? "required" : t };
    }
    if (d.mxSecure && !host.name.startsWith("[") && await this.#addressesSecure(host.name)) {
      const dane = await this.#tlsa(host);
      if ("refused" in dane) return dane;
      if (dane.records !== null) return { kind: "dane", records: dane.records };
    }
    const policy = d.sts?.policy ?? null;
    if (policy === null || policy.mode === "none") return { kind: "opportunistic" };
    const matches = mxMatches(policy, host.name);
    if (policy.mode === "testing") return { kind: "mta-sts-testing", domain, matches };
    if (!matches) {
      return {
        policy: "mta-sts",
        refused: {
          code: 0,
          enhancedStatus: "4.7.5",
          text: `MX host ${host.name} is not listed in the MTA-STS policy of ${domain} ` +
            `(RFC 8461, enforce: mx ${policy.mx.join(", ")}), not used`,
        },
      };
    }
    return { kind: "mta-sts", domain };
  }

  /**
   * Whether the address records of an MX host are DNSSEC-secure (RFC 7672
   * §2.2.2: only then is its TLSA record looked up). A failure counts as
   * insecure here; the address lookup that follows reports it.
   */
  async #addressesSecure(host: string): Promise<boolean> {
    try {
      const answers = await Promise.all(
        (["A", "AAAA"] as const).map((t) => this.#resolver.query(host, t)),
      );
      return answers.some((a) => a.kind === "answer") && answers.every(isAuthenticated);
    } catch {
      return false;
    }
  }

  /**
   * The usable TLSA records of a host (RFC 7672 §2.2): `records: null` when
   * DANE does not apply (no records, or not DNSSEC-secure); `[]` when it
   * applies but no record is usable (TLS required, not authenticated);
   * refused when the lookup failed, which with a validating resolver is
   * how a bogus answer shows (SERVFAIL): that host is not used.
   */
  async #tlsa(
    host: NextHop,
  ): Promise<{ records: Tlsa[] | null } | { refused: ReplySummary; policy: string }> {
    const name = `_${host.port}._tcp.${host.name}`;
    try {
      const answer = await this.#resolver.query(name, "TLSA");
      if (answer.kind !== "answer" || !isAuthenticated(answer)) return { records: null };
      const all = answer.records.flatMap((r) =>
        r.data instanceof Uint8Array ? [parseTlsa(r.data)] : []
      );
      return { records: all.filter((t): t is Tlsa => t !== null && isUsableTlsa(t)) };
    } catch (error: unknown) {
      if (error instanceof SyntaxError) return { records: null };
      return {
        policy: "dane",
        refused: {
          code: 0,
          enhancedStatus: "4.7.5",
          text: `DANE: the TLSA lookup of ${name} failed (${
            error instanceof DnsTemporaryError ? error.reason : describe(error)
          }), ${host.name} not used`,
        },
      };
    }
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message.replace(/\s+/g, " ").slice(0, 500) : String(error);
}
