/**
 * The parts of the `mailauth` library tern uses, typed as tern reads them:
 * DKIM verification (RFC 6376, RFC 8463), SPF (RFC 7208) and DMARC (RFC 9989,
 * the DNS tree walk of DMARCbis, which replaced RFC 7489's Public Suffix List
 * lookup of the organisational domain). The library is pinned to one exact
 * version in deno.json: its DMARC verdicts changed between major versions.
 *
 * Only the fields read by tern are declared; the library returns more.
 *
 * @module
 */

import type { NodeStyleResolver } from "./dns_adapter.ts";

/**
 * The library, loaded the first time a check runs: commands that never
 * check mail (`tern send`, cron's sendmail line) do not pay for loading it.
 */
let library: Promise<{ dkimVerify: unknown; spf: unknown; evaluateDmarc: unknown }> | undefined;

function load() {
  library ??= Promise.all([
    import("mailauth"),
    // @ts-types="./mailauth_dmarc.d.ts"
    import("mailauth/lib/dmarc/index.js"),
  ]).then(([main, dmarc]) => ({
    dkimVerify: main.dkimVerify,
    spf: main.spf,
    evaluateDmarc: dmarc.evaluateDmarc,
  }));
  return library;
}

/** A check's result keyword (RFC 8601 §2.7). */
export type ResultKeyword =
  | "pass"
  | "fail"
  | "softfail"
  | "neutral"
  | "none"
  | "temperror"
  | "permerror"
  | "policy";

/** The status part of each result. */
export interface MailauthStatus {
  result: ResultKeyword | string;
  comment?: string;
  policy?: Record<string, string | undefined>;
  header?: Record<string, unknown>;
  underSized?: number;
  testing?: boolean;
  aligned?: string | false;
}

/** One DKIM signature's verdict. */
export interface MailauthDkimResult {
  id?: string;
  signingDomain?: string;
  selector?: string;
  algo?: string;
  format?: string;
  bodyHash?: string;
  bodyHashExpecting?: string;
  signingHeaders?: { keys: string; headers: string[] };
  status: MailauthStatus;
  info: string;
  signTime?: string | null;
  expiresAfter?: string | null;
  signatureTimeValid?: boolean;
  canonBodyLengthLimited?: boolean;
  canonBodyLengthLimit?: number;
  canonBodyLengthTotal?: number;
  modulusLength?: number;
  rr?: string;
}

/** DKIM verification of a whole message. */
export interface MailauthDkimVerify {
  headerFrom: string[];
  fromFields: number;
  results: MailauthDkimResult[];
}

/** An SPF verdict. */
export interface MailauthSpfResult {
  domain: string;
  status: MailauthStatus;
  rr?: string;
  info: string;
  header: string;
  lookups?: { limit: number; count: number; void: number };
  explanation?: string;
}

/** A DMARC verdict. */
export interface MailauthDmarcResult {
  domain: string;
  policy: string;
  policyDomain?: string;
  p: string;
  sp: string;
  testMode: boolean;
  rr?: string;
  status: MailauthStatus;
  alignment: {
    spf: { result?: string | false; strict: boolean };
    dkim: { result?: string | false; strict: boolean; underSized?: number };
  };
  info: string;
}

/** What `evaluateDmarc` needs. */
export interface DmarcInput {
  headerFrom: string[];
  fromFields: number;
  spfDomains: string[];
  dkimDomains: { id?: string; domain?: string; aligned?: string | false; underSized?: number }[];
  resolver: NodeStyleResolver;
}

/** What `evaluateDmarc` answers. */
export interface DmarcOutput {
  response: MailauthDmarcResult | false;
  reason?: string;
}

/** Options of {@linkcode dkimVerify}. */
export interface DkimVerifyOptions {
  resolver: NodeStyleResolver;
  sender?: string;
  minBitLength?: number;
}

/** Options of {@linkcode spf}. */
export interface SpfOptions {
  sender: string;
  ip: string;
  helo: string;
  mta: string;
  resolver: NodeStyleResolver;
  maxElapsedTime?: number;
}

/**
 * Verifies every DKIM signature of a message read from a stream.
 *
 * @param input The message (a Node readable stream or a Buffer).
 * @param options Resolver, sender, the least key size.
 * @returns The verdict of each signature, and the From: addresses.
 */
export async function dkimVerify(
  input: unknown,
  options: DkimVerifyOptions,
): Promise<MailauthDkimVerify> {
  const verify = (await load()).dkimVerify as (
    input: unknown,
    options: DkimVerifyOptions,
  ) => Promise<MailauthDkimVerify>;
  return await verify(input, options);
}

/**
 * Evaluates SPF for a sender at a client address.
 *
 * @param options The identity, the address, the resolver.
 * @returns The verdict.
 */
export async function spf(options: SpfOptions): Promise<MailauthSpfResult> {
  const check = (await load()).spf as (options: SpfOptions) => Promise<MailauthSpfResult>;
  return await check(options);
}

/**
 * Evaluates DMARC from the From: domain and the passing SPF and DKIM domains.
 *
 * @param input What the message and its checks gave.
 * @returns The verdict, or why there is none.
 */
export async function evaluateDmarc(input: DmarcInput): Promise<DmarcOutput> {
  const evaluate = (await load()).evaluateDmarc as (input: DmarcInput) => Promise<DmarcOutput>;
  return await evaluate(input);
}
