/**
 * DNS block lists (RFC 5782): is the client's address listed by one of the
 * `dnsbl` zones? The pure parts (the query name, what an answer means, the
 * reason text) and the lookup, started when a client connects and awaited at
 * RCPT, so the session waits for DNS at most once.
 *
 * A listed client is refused at RCPT with `554 5.7.1`, not with a 554
 * greeting (as Postfix's postscreen does): RCPT-time refusal lets mail to
 * `postmaster` through (RFC 5782 §5 suggests it, and RFC 5321 §4.5.1 wants
 * postmaster reachable), so a sender wrongly listed can still reach a person.
 *
 * A list that does not answer (timeout, SERVFAIL) never blocks mail: the
 * client is taken as not listed (fail open), and the failure is logged once
 * until the list answers again.
 *
 * @module
 */

import type { DnsQuerier } from "../dns/resolver.ts";
import type { Logger } from "../log/logger.ts";
import { formatIp, isIpv4Mapped, parseIp } from "../net/ip.ts";
import { type Reply, reply } from "../smtp/reply.ts";

/** One block list: its zone, and the answer codes acted on. */
export interface DnsblList {
  /** The zone, like `zen.spamhaus.org`. */
  readonly zone: string;
  /**
   * The A answers (`127.0.0.2`, …) that mean "listed"; `null` for any
   * `127.0.0.0/8` answer except `127.255.255.x` (the lists' own error codes).
   */
  readonly codes: readonly string[] | null;
  /**
   * An allow list (a DNSWL, such as list.dnswl.org): a client it lists is
   * not refused by any block list. @default {false}
   */
  readonly allow?: boolean;
}

/** How long a list that failed to answer is not asked again, ms. */
export const FAILED_LIST_BACKOFF_MS = 60_000;

/** A client found on a list. */
export interface DnsblHit {
  /** The zone that lists it. */
  readonly zone: string;
  /** The answer code, like `127.0.0.2`. */
  readonly code: string;
  /** The list's TXT reason, cleaned, or `""`. */
  readonly reason: string;
}

/** Longest reason text put in a reply or a log line. */
const MAX_REASON = 200;

/**
 * The name to look up for an address in a zone (RFC 5782 §2.1, §2.4): the
 * IPv4 octets reversed, or the 32 nibbles of an IPv6 address reversed. An
 * IPv4-mapped IPv6 address is looked up as its IPv4 address.
 *
 * @param address The client's IP address.
 * @param zone The list's zone.
 * @returns The query name, or `null` when `address` is not an IP address.
 *
 * @example IPv4 and IPv6
 * ```ts
 * import { dnsblQueryName } from "./dnsbl.ts";
 * console.log(dnsblQueryName("127.0.0.2", "zen.example")); // "2.0.0.127.zen.example"
 * console.log(dnsblQueryName("2001:db8::1", "l.example")?.startsWith("1.0.0.0.")); // true
 * ```
 */
export function dnsblQueryName(address: string, zone: string): string | null {
  const n = parseIp(address);
  if (n === null) return null;
  const bare = zone.replace(/\.$/, "");
  if (isIpv4Mapped(n)) {
    return `${formatIp(n & 0xffffffffn, 4).split(".").reverse().join(".")}.${bare}`;
  }
  const nibbles = n.toString(16).padStart(32, "0").split("").reverse();
  return `${nibbles.join(".")}.${bare}`;
}

/**
 * What a list's A answers mean: the first one that says "listed", or `null`.
 * Without `codes`, any `127.0.0.0/8` answer lists the client except
 * `127.255.255.x`, which lists use to report errors (Spamhaus's
 * `127.255.255.254`: "queried through a public resolver"), and answers
 * outside 127/8, which are no list answers at all (RFC 5782 §2.1).
 *
 * @param answers The A records' addresses.
 * @param codes The codes acted on, or `null` for the default.
 * @returns The code that lists the client, or `null`.
 *
 * @example The default, and a list of codes
 * ```ts
 * import { listedCode } from "./dnsbl.ts";
 * console.log(listedCode(["127.0.0.2"], null)); // "127.0.0.2"
 * console.log(listedCode(["127.255.255.254"], null)); // null
 * console.log(listedCode(["127.0.0.10"], ["127.0.0.2", "127.0.0.3"])); // null
 * ```
 */
export function listedCode(
  answers: readonly string[],
  codes: readonly string[] | null,
): string | null {
  for (const answer of answers) {
    if (codes !== null ? codes.includes(answer) : isListingCode(answer)) return answer;
  }
  return null;
}

/** 127.0.0.0/8 but not 127.255.255.0/24. */
function isListingCode(answer: string): boolean {
  return answer.startsWith("127.") && !answer.startsWith("127.255.255.");
}

/**
 * A list's TXT strings made fit for a reply line: joined, control characters
 * (CR and LF above all, which could end the reply) made spaces, runs of
 * space folded, cut to about 200 characters.
 *
 * @param strings The TXT record's character-strings.
 * @returns The text, or `""`.
 *
 * @example A reason with a line break in it
 * ```ts
 * import { cleanReason } from "./dnsbl.ts";
 * console.log(cleanReason(["Listed\r\n250 ok", " see https://example.test"]));
 * // "Listed 250 ok see https://example.test"
 * ```
 */
export function cleanReason(strings: readonly string[]): string {
  // deno-lint-ignore no-control-regex
  const text = strings.join("").replace(/[\u0000-\u001f\u007f-\u009f]+/g, " ")
    .replace(/\s+/g, " ").trim();
  return text.length <= MAX_REASON ? text : text.slice(0, MAX_REASON - 3) + "...";
}

/**
 * The refusal for a listed client: `554 5.7.1` (RFC 3463 X.7.1, delivery not
 * authorized), naming the list and giving its reason.
 *
 * @param address The client's address.
 * @param hit What the list said.
 * @returns The reply.
 *
 * @example
 * ```ts
 * import { dnsblRefusal } from "./dnsbl.ts";
 * const r = dnsblRefusal("192.0.2.9", { zone: "zen.example", code: "127.0.0.2", reason: "" });
 * console.log(r.code, r.lines[0]); // 554 "Client 192.0.2.9 is listed by zen.example"
 * ```
 */
export function dnsblRefusal(address: string, hit: DnsblHit): Reply {
  const base = `Client ${address} is listed by ${hit.zone}`;
  return reply(554, "5.7.1", hit.reason === "" ? base : `${base}: ${hit.reason}`);
}

/**
 * Whether a forward-path is postmaster (`Postmaster` alone or
 * `postmaster@domain`, any case): taken even from a listed client.
 *
 * @param forwardPath The RCPT TO address.
 * @returns Whether it is postmaster.
 */
export function isPostmaster(forwardPath: string): boolean {
  const at = forwardPath.lastIndexOf("@");
  const local = at < 0 ? forwardPath : forwardPath.slice(0, at);
  return local.toLowerCase() === "postmaster";
}

/** Options of {@linkcode DnsblChecker}. */
export interface DnsblCheckerOptions {
  /** Asks the lists (a `StubResolver` with its own cache, by TTL, bounded). */
  readonly resolver: DnsQuerier;
  /** Where hits and failures go. */
  readonly logger?: Logger;
  /** The clock, epoch ms. @default {Date.now} */
  readonly now?: () => number;
}

/**
 * Looks clients up in block lists, all lists in parallel. Answers are
 * cached by the resolver (positive and negative, by their TTL, bounded);
 * one connection's lookup is started at connect and kept with the
 * connection, so RCPT awaits it instead of asking again.
 */
export class DnsblChecker {
  readonly #resolver: DnsQuerier;
  readonly #logger: Logger | null;
  readonly #started = new WeakMap<object, Promise<DnsblHit | null>>();
  /**
   * Zones that failed, with the time (epoch ms) until which they are not
   * asked: a list that is down would otherwise cost every connection its
   * full timeout. Logged once until the list answers again.
   */
  readonly #failing = new Map<string, number>();
  readonly #now: () => number;

  /**
   * Makes a checker.
   *
   * @param options The resolver and the logger.
   */
  constructor(options: DnsblCheckerOptions) {
    this.#resolver = options.resolver;
    this.#logger = options.logger ?? null;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Starts the lookup for a connection (at connect); later calls with the
   * same connection get the same promise.
   *
   * @param connection The connection (any object kept for the session).
   * @param address The client's address.
   * @param lists The lists to ask.
   * @returns The first list that lists the client, or `null`; never rejects.
   */
  lookup(
    connection: object,
    address: string,
    lists: readonly DnsblList[],
  ): Promise<DnsblHit | null> {
    let promise = this.#started.get(connection);
    if (promise === undefined) {
      promise = this.check(address, lists);
      this.#started.set(connection, promise);
    }
    return promise;
  }

  /**
   * Asks every list at once.
   *
   * @param address The client's address.
   * @param lists The lists.
   * @returns The first list (in configuration order) that lists the client, or `null`.
   */
  async check(address: string, lists: readonly DnsblList[]): Promise<DnsblHit | null> {
    // Allow lists and block lists are asked together: the session waits once.
    const hits = await Promise.all(lists.map((list) => this.#checkOne(address, list)));
    const allowed = hits.find((h, i) => h !== null && lists[i]!.allow === true);
    if (allowed !== undefined) return null;
    return hits.find((h, i) => h !== null && lists[i]!.allow !== true) ?? null;
  }

  async #checkOne(address: string, list: DnsblList): Promise<DnsblHit | null> {
    const name = dnsblQueryName(address, list.zone);
    if (name === null) return null;
    const failingUntil = this.#failing.get(list.zone);
    if (failingUntil !== undefined && this.#now() < failingUntil) return null;
    try {
      const answer = await this.#resolver.query(name, "A");
      this.#failing.delete(list.zone);
      if (answer.kind !== "answer") return null;
      const addresses = answer.records.flatMap((r) => r.type === "A" ? [r.data] : []);
      const code = listedCode(addresses, list.codes);
      if (code === null) return null;
      // An allow list's TXT is of no use to anyone: not asked.
      const reason = list.allow === true ? "" : await this.#reason(name);
      const hit = { zone: list.zone, code, reason };
      this.#logger?.log(
        "info",
        list.allow === true ? "session.dnswl" : "session.dnsbl",
        undefined,
        {
          client: address,
          list: hit.zone,
          code: hit.code,
          reason: hit.reason || undefined,
        },
      );
      return hit;
    } catch (error: unknown) {
      // Fail open: a list that is down must not stop mail, nor slow every connection.
      const isNew = failingUntil === undefined;
      this.#failing.set(list.zone, this.#now() + FAILED_LIST_BACKOFF_MS);
      if (isNew) {
        this.#logger?.log("warn", "session.dnsbl", undefined, {
          client: address,
          list: list.zone,
          error: error instanceof Error ? error.message : String(error),
          retry_in: `${FAILED_LIST_BACKOFF_MS / 1000}s`,
        });
      }
      return null;
    }
  }

  /** The TXT reason, or `""` when the list gives none or does not answer. */
  async #reason(name: string): Promise<string> {
    try {
      const answer = await this.#resolver.query(name, "TXT");
      if (answer.kind !== "answer") return "";
      const txt = answer.records.find((r) => r.type === "TXT");
      return txt?.type === "TXT" ? cleanReason(txt.data) : "";
    } catch {
      return "";
    }
  }
}
