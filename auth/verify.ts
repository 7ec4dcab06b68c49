/**
 * Inbound mail authentication for one message on an mx listener: SPF for
 * the MAIL FROM and HELO identities (RFC 7208 §2.3, §2.4), every DKIM
 * signature (RFC 6376 §6, RFC 8463), then DMARC (RFC 9989) from the
 * From: domain and the aligned passes, and the `Authentication-Results`
 * field that reports them (RFC 8601).
 *
 * The work overlaps the transaction: SPF starts as soon as the envelope is
 * known, the DKIM verifier reads the content as it arrives (the body is
 * hashed as it streams), so little is left at the end of the data but the
 * key and policy lookups. Every lookup of the message goes through one
 * resolver with a question budget (dns_adapter.ts), and the whole check has
 * a deadline: what is not known by then is `temperror`, never `pass`, and
 * never a reason to refuse.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { PassThrough } from "node:stream";
import type { DnsQuerier } from "../dns/resolver.ts";
import { isIpv4, isIpv6 } from "../net/ip.ts";
import { createMessageResolver, type DnsLookupRecord } from "./dns_adapter.ts";
import {
  dkimVerify,
  evaluateDmarc,
  type MailauthDkimResult,
  type MailauthDkimVerify,
  type MailauthDmarcResult,
  type MailauthSpfResult,
  spf,
} from "./mailauth.ts";
import { formatAuthenticationResults } from "./results_header.ts";

/** Which checks run, and how. */
export interface VerificationOptions {
  /** The name in `Authentication-Results` (RFC 8601 §2.5). */
  readonly authservId: string;
  /** Check SPF (RFC 7208). @default {true} */
  readonly spf?: boolean;
  /** Verify DKIM signatures (RFC 6376). @default {true} */
  readonly dkim?: boolean;
  /** Evaluate DMARC (RFC 9989). @default {true} */
  readonly dmarc?: boolean;
  /** tern's resolver. */
  readonly resolver: DnsQuerier;
  /** The client's address. */
  readonly clientAddress: string;
  /** What the client said in HELO/EHLO, or `null`. */
  readonly helo: string | null;
  /** The MAIL FROM address; `""` for the null reverse-path. */
  readonly mailFrom: string;
  /**
   * How long the checks may go on after the end of the data, ms; what is
   * not known by then is `temperror`. @default {20000}
   */
  readonly deadlineMs?: number;
  /** Each DNS question and its answer (for `tern check-auth`). */
  readonly onLookup?: (lookup: DnsLookupRecord) => void;
}

/** One SPF verdict. */
export interface SpfVerdict {
  /** `mailfrom` (RFC 7208 §2.4) or `helo` (§2.3). */
  readonly identity: "mailfrom" | "helo";
  /** The result keyword (§2.6). */
  readonly result: string;
  /** The domain checked. */
  readonly domain: string;
  /** What the library said, for people. */
  readonly comment: string;
  /** The full answer, for `tern check-auth`. */
  readonly detail: MailauthSpfResult | null;
}

/** One DKIM signature's verdict. */
export interface DkimVerdict {
  /** The result keyword (RFC 8601 §2.7.1). */
  readonly result: string;
  /** `d=`. */
  readonly domain: string;
  /** `s=`. */
  readonly selector: string;
  /** `a=`. */
  readonly algorithm: string;
  /** Why, for people. */
  readonly comment: string;
  /** Body octets after the `l=` length that the signature does not cover, when it has one. */
  readonly unsignedBodyOctets: number | null;
  /** The full answer, for `tern check-auth`. */
  readonly detail: MailauthDkimResult;
}

/** The DMARC verdict. */
export interface DmarcVerdict {
  /** The result keyword. */
  readonly result: string;
  /** The From: domain (`header.from`). */
  readonly fromDomain: string;
  /** The policy that applies: `none`, `quarantine` or `reject`. */
  readonly policy: string;
  /** The full answer, for `tern check-auth`. */
  readonly detail: MailauthDmarcResult | null;
}

/** Everything one message's checks found. */
export interface AuthVerdict {
  /** SPF of MAIL FROM, then of HELO when that was checked on its own. */
  readonly spf: readonly SpfVerdict[];
  /** One per signature, in the message's order. */
  readonly dkim: readonly DkimVerdict[];
  /** DMARC, or `null` when not evaluated (turned off, or no single From: domain). */
  readonly dmarc: DmarcVerdict | null;
  /** Why DMARC was not evaluated, when it was not. */
  readonly dmarcSkipped: string | null;
  /**
   * DMARC failed definitely and the domain's policy is `reject` (RFC 9989
   * §8.3): the receiver may refuse the message.
   */
  readonly dmarcRejects: boolean;
  /** The `Authentication-Results` field, ending in CRLF. */
  readonly header: string;
  /** One line for the log: `spf=pass dkim=pass:example.org dmarc=pass`. */
  readonly summary: string;
  /** DNS questions the checks asked. */
  readonly queries: number;
}

/**
 * The checks of one message: feed its content with {@linkcode update} as it
 * arrives, then {@linkcode finish}.
 *
 * @example A message from a domain with no records at all
 * ```ts
 * import assert from "node:assert/strict";
 * import { Verification } from "./verify.ts";
 * const resolver = { query: () => Promise.resolve({ kind: "nxdomain" as const }) };
 * const check = Verification.start({
 *   authservId: "mx.example.test",
 *   resolver,
 *   clientAddress: "192.0.2.1",
 *   helo: "client.example.org",
 *   mailFrom: "a@example.org",
 * });
 * check.update(new TextEncoder().encode("From: a@example.org\r\nSubject: hi\r\n\r\nHello\r\n"));
 * const verdict = await check.finish();
 * assert.equal(verdict.spf[0]?.result, "none");
 * assert.equal(verdict.dkim[0]?.result, "none");
 * assert.equal(verdict.dmarc?.result, "none");
 * assert.equal(verdict.dmarcRejects, false);
 * ```
 */
export class Verification {
  readonly #options: VerificationOptions;
  readonly #resolver: ReturnType<typeof createMessageResolver>;
  readonly #stream: PassThrough;
  readonly #spf: Promise<SpfVerdict[]>;
  readonly #dkim: Promise<MailauthDkimVerify | Error>;
  #ended = false;

  private constructor(options: VerificationOptions) {
    this.#options = options;
    this.#resolver = createMessageResolver(options.resolver, {
      ...(options.onLookup === undefined ? {} : { onLookup: options.onLookup }),
    });
    this.#stream = new PassThrough();
    this.#spf = options.spf === false ? Promise.resolve([]) : this.#checkSpf();
    // DKIM verification also reads the From: header that DMARC needs.
    const readsContent = options.dkim !== false || options.dmarc !== false;
    this.#dkim = readsContent
      ? dkimVerify(this.#stream, {
        resolver: this.#resolver.resolve,
        ...(options.mailFrom === "" ? {} : { sender: options.mailFrom }),
        // RFC 8301 §3.2: keys under 1024 bits are not trusted.
        minBitLength: 1024,
      }).catch((error: unknown) => error instanceof Error ? error : new Error(String(error)))
      : Promise.resolve(new Error("not checked"));
    if (!readsContent) this.#stream.resume();
  }

  /**
   * Starts the checks: SPF at once, DKIM as the content comes.
   *
   * @param options The transaction and which checks run.
   * @returns The running checks.
   */
  static start(options: VerificationOptions): Verification {
    return new Verification(options);
  }

  /**
   * Takes the next content octets, as received (after dot-unstuffing).
   *
   * @param chunk Octets; copied, so the caller may reuse its buffer.
   */
  update(chunk: Uint8Array): void {
    if (this.#ended) return;
    this.#stream.write(Buffer.from(chunk));
  }

  /** The transaction was abandoned: stop reading and let the checks end. */
  abort(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#stream.destroy();
  }

  /**
   * The content is complete: waits for the checks (at most the deadline)
   * and makes the verdict.
   *
   * @returns What was found.
   */
  async finish(): Promise<AuthVerdict> {
    if (!this.#ended) {
      this.#ended = true;
      this.#stream.end();
    }
    const options = this.#options;
    const deadline = Date.now() + (options.deadlineMs ?? 20_000);
    const [spfVerdicts, dkimOutcome] = await Promise.all([
      withDeadline(this.#spf, deadline, () => this.#timedOutSpf()),
      withDeadline(this.#dkim, deadline, () => new Error("DKIM verification took too long")),
    ]);
    const dkimVerdicts = options.dkim === false ? [] : toDkimVerdicts(dkimOutcome);
    let dmarc: DmarcVerdict | null = null;
    let dmarcSkipped: string | null = options.dmarc === false ? "turned off" : null;
    if (options.dmarc !== false) {
      if (dkimOutcome instanceof Error) {
        dmarcSkipped = `the message could not be read: ${dkimOutcome.message}`;
      } else {
        const evaluated = await withDeadline(
          this.#evaluateDmarc(dkimOutcome, spfVerdicts, dkimVerdicts),
          deadline + 5_000,
          () => ({ dmarc: null, skipped: "DMARC lookups took too long" }),
        );
        dmarc = evaluated.dmarc;
        dmarcSkipped = evaluated.skipped;
      }
    }
    const results = [
      ...spfVerdicts.map(spfInfo),
      ...(options.dkim === false ? [] : dkimVerdicts.map(dkimInfo)),
      ...(dmarc === null ? [] : [dmarc.detail?.info ?? `dmarc=${dmarc.result}`]),
    ];
    return {
      spf: spfVerdicts,
      dkim: dkimVerdicts,
      dmarc,
      dmarcSkipped,
      dmarcRejects: dmarc !== null && dmarc.result === "fail" && dmarc.policy === "reject",
      header: formatAuthenticationResults(options.authservId, results),
      summary: summarize(spfVerdicts, dkimVerdicts, dmarc),
      queries: this.#resolver.queries(),
    };
  }

  /** SPF of MAIL FROM, and of HELO when it is a name and not already what MAIL FROM checked. */
  #checkSpf(): Promise<SpfVerdict[]> {
    const { clientAddress, mailFrom, authservId } = this.#options;
    const helo = this.#options.helo ?? "";
    const heloIsName = helo !== "" && !helo.startsWith("[") && !isIpv4(helo) && !isIpv6(helo);
    const base = {
      ip: clientAddress,
      helo: helo === "" ? `[${clientAddress}]` : helo,
      mta: authservId,
      resolver: this.#resolver.resolve,
      maxElapsedTime: 20_000,
    };
    const checks: Promise<SpfVerdict>[] = [];
    // RFC 7208 §2.4: with a null reverse-path the identity is postmaster@HELO.
    const sender = mailFrom !== "" ? mailFrom : heloIsName ? `postmaster@${helo}` : "";
    if (sender !== "") {
      checks.push(runSpf("mailfrom", { ...base, sender }));
    }
    if (heloIsName && mailFrom !== "") {
      // RFC 7208 §2.3: the HELO identity, checked on its own.
      checks.push(runSpf("helo", { ...base, sender: `postmaster@${helo}` }));
    }
    return Promise.all(checks);
  }

  #timedOutSpf(): SpfVerdict[] {
    const { mailFrom } = this.#options;
    return [{
      identity: "mailfrom",
      result: "temperror",
      domain: mailFrom.slice(mailFrom.lastIndexOf("@") + 1),
      comment: "SPF lookups took too long",
      detail: null,
    }];
  }

  async #evaluateDmarc(
    dkim: MailauthDkimVerify,
    spfVerdicts: readonly SpfVerdict[],
    dkimVerdicts: readonly DkimVerdict[],
  ): Promise<{ dmarc: DmarcVerdict | null; skipped: string | null }> {
    // RFC 9989 §4.4: SPF counts for the MAIL FROM identity only.
    const spfPass = spfVerdicts.find((v) => v.identity === "mailfrom" && v.result === "pass");
    const { response, reason } = await evaluateDmarc({
      headerFrom: dkim.headerFrom,
      fromFields: dkim.fromFields,
      spfDomains: spfPass === undefined ? [] : [spfPass.domain],
      dkimDomains: dkimVerdicts.filter((v) => v.result === "pass").map((v) => ({
        ...(v.detail.id === undefined ? {} : { id: v.detail.id }),
        domain: v.domain,
        aligned: v.detail.status.aligned ?? false,
        ...(v.detail.status.underSized === undefined
          ? {}
          : { underSized: v.detail.status.underSized }),
      })),
      resolver: this.#resolver.resolve,
    });
    if (response === false) return { dmarc: null, skipped: reason ?? "no single From: domain" };
    const fromDomain = String(response.status.header?.from ?? "");
    return {
      dmarc: {
        result: response.status.result,
        fromDomain,
        policy: response.policy,
        detail: response,
      },
      skipped: null,
    };
  }
}

async function runSpf(
  identity: "mailfrom" | "helo",
  options: Parameters<typeof spf>[0],
): Promise<SpfVerdict> {
  const domain = options.sender.slice(options.sender.lastIndexOf("@") + 1);
  try {
    const detail = await spf(options);
    return {
      identity,
      result: detail.status.result,
      domain: detail.domain ?? domain,
      comment: detail.status.comment ?? "",
      detail,
    };
  } catch (error: unknown) {
    // The library fails only on what it cannot evaluate at all.
    return {
      identity,
      result: "temperror",
      domain,
      comment: error instanceof Error ? error.message : String(error),
      detail: null,
    };
  }
}

function toDkimVerdicts(outcome: MailauthDkimVerify | Error): DkimVerdict[] {
  if (outcome instanceof Error) return [];
  return outcome.results.map((r) => ({
    result: r.status.result,
    domain: r.signingDomain ?? "",
    selector: r.selector ?? "",
    algorithm: r.algo ?? "",
    comment: r.status.comment ?? "",
    // RFC 6376 §8.2: an l= tag leaves the rest of the body unsigned; it is reported.
    unsignedBodyOctets: r.canonBodyLengthLimited
      ? Math.max(0, (r.canonBodyLengthTotal ?? 0) - (r.canonBodyLengthLimit ?? 0))
      : null,
    detail: r,
  }));
}

function spfInfo(verdict: SpfVerdict): string {
  if (verdict.identity === "helo") {
    const comment = verdict.comment === "" ? "" : ` (${verdict.comment})`;
    return `spf=${verdict.result}${comment} smtp.helo=${verdict.domain}`;
  }
  return verdict.detail?.info ?? `spf=${verdict.result} smtp.mailfrom=${verdict.domain}`;
}

function dkimInfo(verdict: DkimVerdict): string {
  let info = verdict.detail.info;
  if (verdict.domain !== "" && !/\bheader\.d=/.test(info)) {
    // RFC 8601 §2.7.1: header.d names the signing domain, what DMARC and readers look at.
    info = info.replace(/^(dkim=\S+(?: \([^)]*\))?)/, `$1 header.d=${verdict.domain}`);
  }
  if (verdict.unsignedBodyOctets === null || verdict.unsignedBodyOctets === 0) return info;
  return `${info} (${verdict.unsignedBodyOctets} body octets not signed: l= tag)`;
}

function summarize(
  spfVerdicts: readonly SpfVerdict[],
  dkimVerdicts: readonly DkimVerdict[],
  dmarc: DmarcVerdict | null,
): string {
  const parts = spfVerdicts.map((v) =>
    v.identity === "helo" ? `spf_helo=${v.result}` : `spf=${v.result}`
  );
  for (const v of dkimVerdicts) {
    parts.push(v.domain === "" ? `dkim=${v.result}` : `dkim=${v.result}:${v.domain}`);
  }
  if (dmarc !== null) {
    parts.push(dmarc.policy ? `dmarc=${dmarc.result}:${dmarc.policy}` : `dmarc=${dmarc.result}`);
  }
  return parts.join(" ");
}

/** Waits for a promise until the deadline (epoch ms), else takes the fallback. */
async function withDeadline<T>(
  promise: Promise<T>,
  deadline: number,
  fallback: () => T,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<T>((resolve) => {
    timer = setTimeout(() => resolve(fallback()), Math.max(0, deadline - Date.now()));
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}
