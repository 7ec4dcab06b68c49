/**
 * tern's own resolver, shaped as the lookup function mail-authentication code
 * expects (`dns.promises.resolve(name, type)` of Node): TXT as lists of
 * strings, MX as `{ exchange, priority }`, A/AAAA/PTR as strings, and every
 * failure as an error with Node's `code`: `ENOTFOUND` for NXDOMAIN, `ENODATA`
 * for a name without records of that type, `ETIMEOUT`/`ESERVFAIL`/`EREFUSED`
 * for a lookup that failed for now. The checkers tell a definite answer
 * ("none", "permerror") from a temporary one ("temperror", RFC 7208 §2.6.6,
 * RFC 6376 §6.1.2) by those codes alone, so the mapping is the whole point.
 *
 * One adapter serves one message: each question is asked once (the answers
 * are shared by SPF, DKIM and DMARC, and by the lookups started early), and
 * the questions one message may ask are counted, so a message with fifty
 * signatures or an SPF record that fans out cannot make tern a DNS amplifier.
 *
 * @module
 */

import type { DnsAnswer, DnsQuerier } from "../dns/resolver.ts";
import { DnsTemporaryError } from "../dns/resolver.ts";
import type { DnsRecord } from "../dns/types.ts";

/** A Node-style DNS error: what `dns.promises.resolve` throws. */
export class NodeDnsError extends Error {
  /** `ENOTFOUND`, `ENODATA`, `ETIMEOUT`, `ESERVFAIL`, `EREFUSED` or `ELIMIT`. */
  readonly code: string;
  /** The name asked about. */
  readonly hostname: string;

  /**
   * @param code The Node error code.
   * @param hostname The name asked about.
   * @param type The type asked for.
   */
  constructor(code: string, hostname: string, type: string) {
    super(`query${type} ${code} ${hostname}`);
    this.name = "NodeDnsError";
    this.code = code;
    this.hostname = hostname;
  }
}

/** What a lookup of one type returns, as Node gives it. */
export type NodeDnsAnswer =
  | string[]
  | string[][]
  | { exchange: string; priority: number }[];

/** The function mail-authentication code calls for DNS. */
export type NodeStyleResolver = (name: string, type: string) => Promise<NodeDnsAnswer>;

/** One question asked, for `tern check-auth` to show. */
export interface DnsLookupRecord {
  readonly name: string;
  readonly type: string;
  /** What came back: the records as text, or the error code. */
  readonly result: string;
}

/** Options of {@linkcode createMessageResolver}. */
export interface MessageResolverOptions {
  /**
   * The most questions one message may ask; past it each lookup fails as
   * temporary (`ELIMIT`), so the check ends in temperror, never in pass.
   * SPF's own limit is 10 terms plus the record lookups (RFC 7208 §4.6.4);
   * this bounds everything together. @default {64}
   */
  readonly maxQueries?: number;
  /** Called for each question answered (for `tern check-auth`). */
  readonly onLookup?: (lookup: DnsLookupRecord) => void;
}

/** A resolver for one message, with its question count. */
export interface MessageResolver {
  /** The function to hand to the checkers. */
  readonly resolve: NodeStyleResolver;
  /** How many distinct questions were sent. */
  readonly queries: () => number;
}

const SUPPORTED = new Set(["TXT", "MX", "A", "AAAA", "PTR", "CNAME"]);

/**
 * Makes the resolver of one message over tern's own resolver.
 *
 * @param querier tern's resolver (`dns.nameservers` when set).
 * @param options Limits and a lookup observer.
 * @returns The Node-style lookup function and its counter.
 *
 * @example A name that does not exist is `ENOTFOUND`
 * ```ts
 * import assert from "node:assert/strict";
 * import { createMessageResolver } from "./dns_adapter.ts";
 * const querier = { query: () => Promise.resolve({ kind: "nxdomain" as const }) };
 * const { resolve } = createMessageResolver(querier);
 * await assert.rejects(resolve("_dmarc.example.test", "TXT"), { code: "ENOTFOUND" });
 * ```
 */
export function createMessageResolver(
  querier: DnsQuerier,
  options: MessageResolverOptions = {},
): MessageResolver {
  const maxQueries = options.maxQueries ?? 64;
  const asked = new Map<string, Promise<NodeDnsAnswer>>();
  const resolve = (name: string, type: string): Promise<NodeDnsAnswer> => {
    const qtype = type.toUpperCase();
    const qname = name.replace(/\.$/, "").toLowerCase();
    const key = `${qtype} ${qname}`;
    const known = asked.get(key);
    if (known !== undefined) return known;
    let answer: Promise<NodeDnsAnswer>;
    if (!SUPPORTED.has(qtype)) {
      answer = Promise.reject(new NodeDnsError("ENOTIMP", qname, qtype));
    } else if (asked.size >= maxQueries) {
      answer = Promise.reject(new NodeDnsError("ELIMIT", qname, qtype));
    } else {
      answer = ask(querier, qname, qtype);
    }
    if (options.onLookup !== undefined) {
      const report = options.onLookup;
      answer.then(
        (records) => report({ name: qname, type: qtype, result: describeAnswer(records) }),
        (error: unknown) =>
          report({
            name: qname,
            type: qtype,
            result: error instanceof NodeDnsError ? error.code : String(error),
          }),
      );
    }
    answer.catch(() => {}); // asked early and perhaps never awaited
    asked.set(key, answer);
    return answer;
  };
  return { resolve, queries: () => asked.size };
}

async function ask(querier: DnsQuerier, name: string, type: string): Promise<NodeDnsAnswer> {
  let answer: DnsAnswer;
  try {
    answer = await querier.query(name, type as "TXT");
  } catch (error: unknown) {
    if (error instanceof DnsTemporaryError) {
      throw new NodeDnsError(NODE_CODES[error.reason] ?? "ESERVFAIL", name, type);
    }
    if (error instanceof SyntaxError || error instanceof RangeError) {
      // A name that cannot be asked (too long, bad label): nothing is there.
      throw new NodeDnsError("ENOTFOUND", name, type);
    }
    throw new NodeDnsError("ESERVFAIL", name, type);
  }
  if (answer.kind === "nxdomain") throw new NodeDnsError("ENOTFOUND", name, type);
  if (answer.kind === "nodata" || answer.records.length === 0) {
    throw new NodeDnsError("ENODATA", name, type);
  }
  return toNode(answer.records, type);
}

/** Node's codes for tern's reasons of a temporary failure. */
const NODE_CODES: Readonly<Record<string, string>> = {
  timeout: "ETIMEOUT",
  servfail: "ESERVFAIL",
  refused: "EREFUSED",
  network: "ECONNREFUSED",
};

function toNode(records: readonly DnsRecord[], type: string): NodeDnsAnswer {
  switch (type) {
    case "TXT":
      return records.flatMap((r) => r.type === "TXT" ? [[...r.data]] : []);
    case "MX":
      return records.flatMap((r) =>
        r.type === "MX" ? [{ exchange: r.data.exchange, priority: r.data.preference }] : []
      );
    default:
      return records.flatMap((r) => r.type === type && typeof r.data === "string" ? [r.data] : []);
  }
}

function describeAnswer(answer: NodeDnsAnswer): string {
  return answer.map((item) =>
    typeof item === "string"
      ? item
      : Array.isArray(item)
      ? item.map((s) => JSON.stringify(s)).join(" ")
      : `${item.priority} ${item.exchange}`
  ).join(" | ");
}
