/**
 * SMTP TLS Reporting (RFC 8460) without I/O: the outcome of one TLS
 * negotiation made while relaying by MX, the daily counts of a policy
 * domain and how two of them merge, the `_smtp._tls` TXT record (§3), and
 * the aggregate report's JSON (§4) with its exact field names.
 *
 * Recording and flushing are in `tls_rpt_store.ts`; building, mailing and
 * posting the reports in `tls_rpt_send.ts`.
 *
 * @module
 */

import type { StsPolicy } from "./mta_sts_policy.ts";
import type { Tlsa } from "./dane.ts";

/** RFC 8460 §4.3: why a session failed. */
export type TlsRptResultType =
  | "starttls-not-supported"
  | "certificate-host-mismatch"
  | "certificate-expired"
  | "certificate-not-trusted"
  | "validation-failure"
  | "tlsa-invalid"
  | "dnssec-invalid"
  | "dane-required"
  | "sts-policy-fetch-error"
  | "sts-policy-invalid"
  | "sts-webpki-invalid";

/** RFC 8460 §4.4: the kind of policy a session was made under. */
export type TlsRptPolicyType = "sts" | "tlsa" | "no-policy-found";

/** The policy a session was made under, as the report names it (§4.4 `policy`). */
export interface TlsRptPolicy {
  /** `sts`, `tlsa` or `no-policy-found`. */
  readonly type: TlsRptPolicyType;
  /** The policy's lines (MTA-STS) or its TLSA records; empty for none. */
  readonly strings: readonly string[];
  /** The MX patterns of an MTA-STS policy, or the MX host of TLSA records; empty for none. */
  readonly mxHosts: readonly string[];
}

/** One failed session, as counted (§4.4 `failure-details`). */
export interface TlsRptFailure {
  /** Why it failed. */
  readonly resultType: TlsRptResultType;
  /** Our address on the connection, when known. */
  readonly sendingIp?: string;
  /** The MX host name. */
  readonly receivingMx?: string;
  /** The MX host's address. */
  readonly receivingIp?: string;
  /** The TLS library's code or a short reason (`failure-reason-code`). */
  readonly reasonCode?: string;
}

/** The outcome of one TLS negotiation with an MX host of a policy domain. */
export interface TlsRptSession {
  /** The recipient domain whose policy applied (the domain the report goes to). */
  readonly domain: string;
  /** The policy in force. */
  readonly policy: TlsRptPolicy;
  /** `null` for a success. */
  readonly failure: TlsRptFailure | null;
}

/** Counts of one policy of a domain on one day. */
export interface PolicyCounts {
  readonly policy: TlsRptPolicy;
  success: number;
  failure: number;
  /** Failure details by {@linkcode failureKey}. */
  details: Record<string, TlsRptFailure & { count: number }>;
}

/** Counts of one domain on one day, by {@linkcode policyKey}; what is stored as `tls-rpt/<day>/<domain>`. */
export interface DomainCounts {
  policies: Record<string, PolicyCounts>;
}

/**
 * The most failure details kept per policy: the store's values are small
 * (60 KB), and a report lists kinds of failure, not every one. Failures past
 * it still count in the summary.
 */
export const MAX_DETAILS = 50;
/** The most policies kept per domain and day (a policy changes a few times a day at most). */
export const MAX_POLICIES = 20;

/**
 * The key of a policy within a domain's counts.
 *
 * @param policy The policy.
 * @returns Its type and strings, joined.
 */
export function policyKey(policy: TlsRptPolicy): string {
  return [policy.type, ...policy.strings, "|", ...policy.mxHosts].join("\n");
}

/**
 * The key of a failure within a policy's details: all its fields.
 *
 * @param f The failure.
 * @returns Its fields, joined.
 */
export function failureKey(f: TlsRptFailure): string {
  return [f.resultType, f.sendingIp, f.receivingMx, f.receivingIp, f.reasonCode]
    .map((v) => v ?? "").join("|");
}

/**
 * Adds one session to a domain's counts.
 *
 * @param counts The domain's counts for the day, changed in place.
 * @param session The session.
 * @param n How many such sessions. @default {1}
 */
export function countSession(counts: DomainCounts, session: TlsRptSession, n = 1): void {
  const key = policyKey(session.policy);
  let entry = counts.policies[key];
  if (entry === undefined) {
    if (Object.keys(counts.policies).length >= MAX_POLICIES) return;
    entry = { policy: session.policy, success: 0, failure: 0, details: {} };
    counts.policies[key] = entry;
  }
  if (session.failure === null) {
    entry.success += n;
    return;
  }
  entry.failure += n;
  const fk = failureKey(session.failure);
  const detail = entry.details[fk];
  if (detail !== undefined) detail.count += n;
  else if (Object.keys(entry.details).length < MAX_DETAILS) {
    entry.details[fk] = { ...session.failure, count: n };
  }
}

/**
 * Merges counts into others (the read-merge-write of a flush): successes
 * and failures add up, details of the same kind add up.
 *
 * @param into The counts read from the store, changed in place.
 * @param from The counts gathered in memory since the last flush.
 */
export function mergeCounts(into: DomainCounts, from: DomainCounts): void {
  for (const [key, entry] of Object.entries(from.policies)) {
    let target = into.policies[key];
    if (target === undefined) {
      if (Object.keys(into.policies).length >= MAX_POLICIES) continue;
      target = { policy: entry.policy, success: 0, failure: 0, details: {} };
      into.policies[key] = target;
    }
    target.success += entry.success;
    target.failure += entry.failure;
    for (const [fk, detail] of Object.entries(entry.details)) {
      const known = target.details[fk];
      if (known !== undefined) known.count += detail.count;
      else if (Object.keys(target.details).length < MAX_DETAILS) {
        target.details[fk] = { ...detail };
      }
    }
  }
}

/**
 * Reads stored counts; anything malformed counts as nothing (a report is
 * worth less than a crash of the reporter).
 *
 * @param text The stored JSON, or `null`.
 * @returns The counts.
 */
export function parseCounts(text: string | null): DomainCounts {
  if (text === null) return { policies: {} };
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value === "object" && value !== null && "policies" in value) {
      const policies = (value as { policies: unknown }).policies;
      if (typeof policies === "object" && policies !== null) {
        return value as DomainCounts;
      }
    }
  } catch {
    // malformed: nothing
  }
  return { policies: {} };
}

/**
 * The UTC day of a time, as `YYYY-MM-DD`: counts are kept per UTC day
 * (RFC 8460 §4.1: a report covers a full UTC day by default).
 *
 * @param ms Epoch ms.
 * @returns The day.
 */
export function utcDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/** The state name of a domain's counts for a day. */
export function countsName(day: string, domain: string): string {
  return `tls-rpt/${day}/${domain}`;
}

/** The state name of the list of domains with counts for a day. */
export function indexName(day: string): string {
  return `tls-rpt/${day}`;
}

/** The state name saying a day's report to a domain went out. */
export function sentName(day: string, domain: string): string {
  return `tls-rpt-sent/${day}/${domain}`;
}

/**
 * An MTA-STS policy as the report's `policy-string` (RFC 8460 §4.4: the
 * policy's lines), rebuilt from the parsed policy.
 *
 * @param policy The policy.
 * @returns Its lines.
 */
export function stsPolicyStrings(policy: StsPolicy): string[] {
  return [
    "version: STSv1",
    `mode: ${policy.mode}`,
    ...policy.mx.map((m) => `mx: ${m}`),
    `max_age: ${policy.maxAge}`,
  ];
}

/**
 * TLSA records in presentation form (`3 1 1 <hex>`), the `policy-string` of a
 * DANE policy.
 *
 * @param records The records.
 * @returns One string per record.
 */
export function tlsaStrings(records: readonly Tlsa[]): string[] {
  return records.map((r) =>
    `${r.usage} ${r.selector} ${r.matchingType} ${
      [...r.data].map((b) => b.toString(16).padStart(2, "0")).join("")
    }`
  );
}

/** The policy entry of a domain without a policy (§4.4 `no-policy-found`). */
export const NO_POLICY: TlsRptPolicy = Object.freeze({
  type: "no-policy-found",
  strings: Object.freeze([]),
  mxHosts: Object.freeze([]),
});

/**
 * Names the result type of a failed TLS handshake from the TLS library's
 * error code (OpenSSL's, as Node reports it) (RFC 8460 §4.3.1).
 *
 * @param code The error's code (`CERT_HAS_EXPIRED`, `ERR_TLS_CERT_ALTNAME_INVALID`, ...) or message.
 * @returns The result type.
 *
 * @example
 * ```ts
 * import { certificateResult } from "./tls_rpt.ts";
 * console.log(certificateResult("CERT_HAS_EXPIRED")); // "certificate-expired"
 * console.log(certificateResult("ERR_TLS_CERT_ALTNAME_INVALID")); // "certificate-host-mismatch"
 * ```
 */
export function certificateResult(code: string): TlsRptResultType {
  if (/ALTNAME|Hostname\/IP does not match|does not name/i.test(code)) {
    return "certificate-host-mismatch";
  }
  if (/EXPIRED|NOT_YET_VALID|out of date/i.test(code)) return "certificate-expired";
  if (
    /SELF_SIGNED|UNABLE_TO_GET_ISSUER|UNABLE_TO_VERIFY|UNTRUSTED|CERT_REJECTED|self[- ]signed|unable to (get|verify)/i
      .test(code)
  ) {
    return "certificate-not-trusted";
  }
  return "validation-failure";
}

/** What a `_smtp._tls` TXT record says (RFC 8460 §3): where reports go. */
export interface TlsRptRecord {
  /** `mailto:` addresses, decoded. */
  readonly mailto: readonly string[];
  /** `https:` URLs. */
  readonly https: readonly string[];
}

/**
 * Reads the TXT records of `_smtp._tls.<domain>` (RFC 8460 §3): exactly one
 * must start with `v=TLSRPTv1`, with a `rua` of comma-separated `mailto:`
 * and `https:` URIs; other schemes are ignored.
 *
 * @param records Each TXT record as its character-strings, which are joined.
 * @returns The record, or `null` when there is none (or more than one, or no usable rua).
 *
 * @example
 * ```ts
 * import { parseTlsRptRecord } from "./tls_rpt.ts";
 * const r = parseTlsRptRecord([["v=TLSRPTv1; rua=mailto:tls@example.net,https://r.example.net/tls"]]);
 * console.log(r?.mailto, r?.https); // ["tls@example.net"] ["https://r.example.net/tls"]
 * ```
 */
export function parseTlsRptRecord(records: readonly (readonly string[])[]): TlsRptRecord | null {
  const found = records.map((r) => r.join("")).filter((t) => /^v=TLSRPTv1\s*(;|$)/.test(t));
  if (found.length !== 1) return null;
  let rua: string | null = null;
  for (const field of found[0]!.split(";")) {
    const m = /^\s*([A-Za-z0-9_-]+)\s*=\s*(.*?)\s*$/.exec(field);
    if (m !== null && m[1] === "rua" && rua === null) rua = m[2]!;
  }
  if (rua === null) return null;
  const mailto: string[] = [];
  const https: string[] = [];
  for (const raw of rua.split(",")) {
    const uri = raw.trim();
    if (/^mailto:/i.test(uri)) {
      const address = decodeUri(uri.slice(7).split("?")[0]!);
      if (address !== null && /^[^\s@<>]+@[^\s@<>]+$/.test(address)) mailto.push(address);
    } else if (/^https:\/\//i.test(uri)) {
      try {
        https.push(new URL(uri).toString());
      } catch {
        // not a URL: ignored
      }
    }
  }
  return mailto.length + https.length === 0 ? null : { mailto, https };
}

function decodeUri(text: string): string | null {
  try {
    return decodeURIComponent(text);
  } catch {
    return null;
  }
}

/** Who reports: the report's `organization-name` and `contact-info`. */
export interface ReportSubmitter {
  /** `organization-name`. */
  readonly organization: string;
  /** `contact-info`: an address or URL. */
  readonly contact: string;
}

/**
 * The aggregate report of one domain for one UTC day (RFC 8460 §4.4), with
 * the RFC's field names.
 *
 * @param day `YYYY-MM-DD`.
 * @param domain The policy domain.
 * @param counts Its counts for the day.
 * @param submitter Who reports.
 * @param reportId A unique id for the report.
 * @returns The report, ready for `JSON.stringify`.
 */
export function buildReport(
  day: string,
  domain: string,
  counts: DomainCounts,
  submitter: ReportSubmitter,
  reportId: string,
): Record<string, unknown> {
  return {
    "organization-name": submitter.organization,
    "date-range": {
      "start-datetime": `${day}T00:00:00Z`,
      "end-datetime": `${day}T23:59:59Z`,
    },
    "contact-info": submitter.contact,
    "report-id": reportId,
    policies: Object.values(counts.policies).map((entry) => ({
      policy: {
        "policy-type": entry.policy.type,
        ...(entry.policy.strings.length === 0 ? {} : { "policy-string": entry.policy.strings }),
        "policy-domain": domain,
        ...(entry.policy.mxHosts.length === 0 ? {} : { "mx-host": entry.policy.mxHosts }),
      },
      summary: {
        "total-successful-session-count": entry.success,
        "total-failure-session-count": entry.failure,
      },
      ...(Object.keys(entry.details).length === 0 ? {} : {
        "failure-details": Object.values(entry.details).map((d) => ({
          "result-type": d.resultType,
          ...(d.sendingIp === undefined ? {} : { "sending-mta-ip": d.sendingIp }),
          ...(d.receivingMx === undefined ? {} : { "receiving-mx-hostname": d.receivingMx }),
          ...(d.receivingIp === undefined ? {} : { "receiving-ip": d.receivingIp }),
          "failed-session-count": d.count,
          ...(d.reasonCode === undefined ? {} : { "failure-reason-code": d.reasonCode }),
        })),
      }),
    })),
  };
}
