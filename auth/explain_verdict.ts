/**
 * Why a message passed or failed SPF, DKIM and DMARC, step by step, each
 * step with the RFC section that makes the rule: the records fetched, the
 * mechanism that matched, the body hash computed against the one claimed,
 * the alignment of each passing domain with the From: domain. This is what
 * `tern check-auth` prints, for people learning how mail is authenticated
 * and for operators asking why a receiver junked their mail.
 *
 * @module
 */

import type { DnsLookupRecord } from "./dns_adapter.ts";
import type { AuthVerdict, DkimVerdict, DmarcVerdict, SpfVerdict } from "./verify.ts";

/**
 * Explains a verdict.
 *
 * @param verdict What the checks found.
 * @param lookups Every DNS question asked, in order.
 * @returns Lines of text.
 *
 * @example
 * ```ts
 * import { explainVerdict } from "./explain_verdict.ts";
 * const lines = explainVerdict({
 *   spf: [], dkim: [], dmarc: null, dmarcSkipped: "turned off", dmarcRejects: false,
 *   header: "Authentication-Results: mx.example.test; none\r\n", summary: "", queries: 0,
 * }, []);
 * console.log(lines.at(-1)); // "  Authentication-Results: mx.example.test; none"
 * ```
 */
export function explainVerdict(
  verdict: AuthVerdict,
  lookups: readonly DnsLookupRecord[],
): string[] {
  const lines: string[] = [];
  if (verdict.spf.length === 0) {
    lines.push("SPF (RFC 7208): not checked (no client address, or turned off)");
  }
  for (const spf of verdict.spf) lines.push(...explainSpf(spf, lookups), "");
  if (verdict.dkim.length === 0) lines.push("DKIM (RFC 6376): not checked", "");
  verdict.dkim.forEach((dkim, i) => {
    lines.push(...explainDkim(dkim, i, verdict.dkim.length, lookups), "");
  });
  if (verdict.dmarc === null) {
    lines.push(`DMARC (RFC 9989): not evaluated: ${verdict.dmarcSkipped ?? "turned off"}`, "");
  } else {
    lines.push(...explainDmarc(verdict.dmarc, verdict, lookups), "");
  }
  lines.push("What a receiver adds on top of the message (RFC 8601 §2.2):");
  for (const line of verdict.header.replace(/\r\n$/, "").split("\r\n")) lines.push(`  ${line}`);
  return lines;
}

function explainSpf(spf: SpfVerdict, lookups: readonly DnsLookupRecord[]): string[] {
  const identity = spf.identity === "helo"
    ? `the HELO name (RFC 7208 §2.3)`
    : `the MAIL FROM domain (RFC 7208 §2.4)`;
  const out = [`SPF for ${identity}: ${spf.domain}`];
  const record = lookups.find((l) => l.type === "TXT" && l.name === spf.domain.toLowerCase());
  out.push(
    record === undefined
      ? `  record: not fetched`
      : `  TXT ${record.name}: ${record.result}  (the record is the one string starting "v=spf1", §4.5)`,
  );
  const d = spf.detail;
  if (d?.lookups !== undefined) {
    out.push(
      `  DNS-querying terms: ${d.lookups.count} of at most ${d.lookups.limit}, void lookups ${d.lookups.void} of at most 2 (§4.6.4)`,
    );
  }
  out.push(
    `  result: ${spf.result}${spf.comment === "" ? "" : ` (${spf.comment})`}  ${
      SPF_MEANING[spf.result] ?? ""
    }`,
  );
  if (d?.explanation) out.push(`  the domain's explanation (exp=, §6.2): ${d.explanation}`);
  return out;
}

const SPF_MEANING: Readonly<Record<string, string>> = {
  pass: "the client is authorized to send for the domain (§2.6.3)",
  fail: "the domain says this client is not authorized (§2.6.4)",
  softfail: "probably not authorized, a weak fail (§2.6.5)",
  neutral: "the domain makes no assertion (§2.6.2)",
  none: "the domain publishes no SPF record (§2.6.1)",
  temperror: "a DNS failure for now; try again later (§2.6.6)",
  permerror: "the record cannot be interpreted: a syntax error or a limit passed (§2.6.7)",
};

function explainDkim(
  dkim: DkimVerdict,
  index: number,
  count: number,
  lookups: readonly DnsLookupRecord[],
): string[] {
  const d = dkim.detail;
  const out = [
    `DKIM signature ${index + 1} of ${count} (RFC 6376): d=${dkim.domain || "?"} s=${
      dkim.selector || "?"
    } a=${dkim.algorithm || "?"} c=${d.format ?? "?"}`,
  ];
  const keyName = `${dkim.selector}._domainkey.${dkim.domain}`.toLowerCase();
  const key = lookups.find((l) => l.type === "TXT" && l.name === keyName);
  out.push(
    key === undefined
      ? `  key record ${keyName}: not fetched`
      : `  key record TXT ${keyName} (§3.6.2): ${shorten(key.result)}`,
  );
  if (d.modulusLength) {
    out.push(`  key: ${d.modulusLength}-bit RSA (keys under 1024 bits are refused, RFC 8301 §3.2)`);
  }
  if (d.signingHeaders?.keys) {
    out.push(`  signed header fields (h=, §3.5): ${d.signingHeaders.keys}`);
  }
  if (d.bodyHash !== undefined || d.bodyHashExpecting !== undefined) {
    const same = d.bodyHash === d.bodyHashExpecting;
    out.push(
      `  body hash (§3.7): computed ${d.bodyHash ?? "?"}, claimed bh=${
        d.bodyHashExpecting ?? "?"
      }: ${same ? "they match" : "they differ: the body changed on the way"}`,
    );
  }
  if (dkim.unsignedBodyOctets !== null) {
    out.push(
      `  l= tag: ${dkim.unsignedBodyOctets} body octets after the signed length are not covered (§8.2)`,
    );
  }
  if (d.signatureTimeValid === false) {
    out.push(
      `  time: signed ${d.signTime ?? "?"}, expires ${
        d.expiresAfter ?? "?"
      }: not valid now (t=, x=, §3.5)`,
    );
  }
  out.push(`  result: ${dkim.result}${dkim.comment === "" ? "" : ` (${dkim.comment})`}`);
  return out;
}

function explainDmarc(
  dmarc: DmarcVerdict,
  verdict: AuthVerdict,
  lookups: readonly DnsLookupRecord[],
): string[] {
  const d = dmarc.detail;
  const out = [`DMARC (RFC 9989) for the From: domain ${dmarc.fromDomain}`];
  const records = lookups.filter((l) => l.type === "TXT" && l.name.startsWith("_dmarc."));
  for (const r of records) out.push(`  TXT ${r.name} (tree walk, §4.10): ${r.result}`);
  if (d !== null) {
    out.push(`  organizational domain: ${d.domain}; policy from ${d.policyDomain ?? d.domain}`);
    const spfPass = verdict.spf.find((s) => s.identity === "mailfrom" && s.result === "pass");
    out.push(
      `  SPF alignment (${d.alignment.spf.strict ? "strict" : "relaxed"}, §4.4.2): ${
        spfPass === undefined
          ? "no SPF pass to align"
          : d.alignment.spf.result
          ? `${spfPass.domain} aligns`
          : `${spfPass.domain} does not align with ${dmarc.fromDomain}`
      }`,
    );
    const passing = verdict.dkim.filter((k) => k.result === "pass").map((k) => k.domain);
    out.push(
      `  DKIM alignment (${d.alignment.dkim.strict ? "strict" : "relaxed"}, §4.4.1): ${
        passing.length === 0
          ? "no DKIM pass to align"
          : d.alignment.dkim.result
          ? `${d.alignment.dkim.result} aligns`
          : `${passing.join(", ")} do not align with ${dmarc.fromDomain}`
      }`,
    );
  }
  out.push(
    `  result: ${dmarc.result}; policy: ${dmarc.policy || "none"}` +
      (verdict.dmarcRejects ? " (tern refuses this message: 550 5.7.1)" : ""),
  );
  return out;
}

function shorten(text: string): string {
  return text.length > 120 ? `${text.slice(0, 117)}...` : text;
}
