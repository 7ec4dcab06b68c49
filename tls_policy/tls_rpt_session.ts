/**
 * How the relay's view of one TLS negotiation becomes a TLS-RPT session
 * (RFC 8460 §4.3, §4.4): which policy it was made under, and which result
 * type a failure is. No I/O; `mta/relay.ts` calls these where a hop's
 * security is decided and where its connection succeeds or fails.
 *
 * @module
 */

import type { PolicyLookup } from "./mta_sts_cache.ts";
import type { Tlsa } from "./dane.ts";
import {
  certificateResult,
  NO_POLICY,
  stsPolicyStrings,
  tlsaStrings,
  type TlsRptFailure,
  type TlsRptPolicy,
  type TlsRptResultType,
  type TlsRptSession,
} from "./tls_rpt.ts";

/** Where sessions go: a {@linkcode TlsRptRecorder} (`tls_rpt_store.ts`), or a list in tests. */
export interface TlsRptSink {
  /** Counts one session. */
  record(session: TlsRptSession): void;
}

/** The relay's security of a hop, as far as reports care. */
export interface HopView {
  /** `dane`, `mta-sts`, `mta-sts-testing`, `opportunistic`, `ca`, ... */
  readonly kind: string;
  /** The usable TLSA records, for `dane`. */
  readonly records?: readonly Tlsa[];
  /** Whether the MX host is listed in the policy, for `mta-sts-testing`. */
  readonly matches?: boolean;
}

/** A failure without where it happened (the relay adds the host and addresses). */
export type FailureKind = Pick<TlsRptFailure, "resultType" | "reasonCode">;

/** The most characters of a reason code kept (a report is read by people). */
const MAX_REASON = 200;

function reason(text: string): string {
  return text.replace(/\s+/g, " ").trim().slice(0, MAX_REASON);
}

/**
 * The policy a session to an MX host is made under: TLSA records (DANE takes
 * precedence, RFC 8461 §2), else the domain's MTA-STS policy, else none.
 *
 * @param hop The hop's security.
 * @param sts The domain's MTA-STS lookup.
 * @param mxHost The MX host name.
 * @returns The policy for the report.
 */
export function reportPolicy(
  hop: HopView,
  sts: PolicyLookup | null,
  mxHost: string,
): TlsRptPolicy {
  if (hop.kind === "dane") {
    return { type: "tlsa", strings: tlsaStrings(hop.records ?? []), mxHosts: [mxHost] };
  }
  const policy = sts?.policy ?? null;
  if (policy === null) return NO_POLICY;
  return { type: "sts", strings: stsPolicyStrings(policy), mxHosts: [...policy.mx] };
}

/**
 * Why a domain has no MTA-STS policy when it announced one (RFC 8460
 * §4.3.2.2): the fetch failed, the policy was malformed, or the policy
 * host's certificate did not verify. `null` when there was no failure, or
 * a cached policy is in force.
 *
 * @param sts The domain's lookup.
 * @returns The failure.
 */
export function stsLookupFailure(sts: PolicyLookup | null): FailureKind | null {
  if (sts === null || sts.policy !== null || sts.error === undefined) return null;
  const error = sts.error;
  const resultType: TlsRptResultType = /is malformed/.test(error)
    ? "sts-policy-invalid"
    : /certificate|self[- ]signed|unable to (get|verify)|altnames|CERT_/i.test(error)
    ? "sts-webpki-invalid"
    : "sts-policy-fetch-error";
  return { resultType, reasonCode: reason(error) };
}

/**
 * A session that connected: a failure only when no TLS was negotiated, or
 * when an MTA-STS policy in testing mode would have refused it (RFC 8461
 * §5: testing mode reports what enforce would refuse).
 *
 * @param hop The hop's security.
 * @param tls The connection's TLS, or `null` in plaintext.
 * @returns The failure, or `null` for a success.
 */
export function connectedFailure(
  hop: HopView,
  tls: { readonly isVerified: boolean; readonly verifyError: string | null } | null,
): FailureKind | null {
  if (tls === null) return { resultType: "starttls-not-supported" };
  if (hop.kind !== "mta-sts-testing") return null;
  if (!tls.isVerified) {
    const code = tls.verifyError ?? "unverified";
    return { resultType: certificateResult(code), reasonCode: reason(code) };
  }
  if (hop.matches === false) {
    return { resultType: "validation-failure", reasonCode: "MX host not listed in the policy" };
  }
  return null;
}

/**
 * A session whose TLS failed: STARTTLS missing or refused, or a handshake
 * or certificate check that failed (RFC 8460 §4.3.1); under DANE, a
 * certificate no TLSA record matches is `tlsa-invalid` (§4.3.2.1).
 *
 * @param hop The hop's security.
 * @param error What the connection threw.
 * @param startTlsMissing Whether STARTTLS was not offered or was refused.
 * @returns The failure.
 */
export function handshakeFailure(
  hop: HopView,
  error: unknown,
  startTlsMissing: boolean,
): FailureKind {
  const message = error instanceof Error ? error.message : String(error);
  if (startTlsMissing) return { resultType: "starttls-not-supported", reasonCode: reason(message) };
  const cause = error instanceof Error ? error.cause : undefined;
  const code = typeof cause === "object" && cause !== null && "code" in cause
    ? String(cause.code)
    : "";
  const why = message.replace(/^TLS (handshake )?with \S+ (failed|refused): /, "");
  let resultType = certificateResult(`${code} ${why}`);
  if (hop.kind === "dane" && resultType === "validation-failure") resultType = "tlsa-invalid";
  return { resultType, reasonCode: reason(code === "" ? why : `${code}: ${why}`) };
}

/**
 * An MX host the policy did not allow, before any connection: not listed in
 * an enforced MTA-STS policy (`validation-failure`), or whose TLSA lookup
 * failed, which with a validating resolver is a bogus DNSSEC answer
 * (`dnssec-invalid`). Other refusals (REQUIRETLS) are not TLS-RPT's.
 *
 * @param policy The relay's name of the policy that refused (`mta-sts`, `dane`).
 * @param enhancedStatus The refusal's status.
 * @param text The refusal's text.
 * @returns The failure, or `null` when it is not one to report.
 */
export function refusalFailure(
  policy: string,
  enhancedStatus: string,
  text: string,
): FailureKind | null {
  if (enhancedStatus === "5.7.30") return null;
  if (policy === "mta-sts") {
    return { resultType: "validation-failure", reasonCode: "MX host not listed in the policy" };
  }
  if (policy === "dane") return { resultType: "dnssec-invalid", reasonCode: reason(text) };
  return null;
}
