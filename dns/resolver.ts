/**
 * A stub resolver (RFC 1035 §7): it sends one question to a recursive name
 * server and reads the reply, nothing more. It exists because an MTA must tell
 * "this domain does not exist" (bounce) from "DNS is broken right now" (defer),
 * and `Deno.resolveDns` reports both as `NotFound`.
 *
 * Outcomes of {@linkcode StubResolver.query}:
 *
 * - `{ kind: "answer" }`: records of the asked type (CNAME chains followed);
 * - `{ kind: "nxdomain" }`: RCODE 3, the name does not exist (permanent);
 * - `{ kind: "nodata" }`: the name exists but has no records of that type;
 * - a thrown {@linkcode DnsTemporaryError}: SERVFAIL, REFUSED, any other
 *   RCODE, no reply in time, a network error, or a truncated reply whose TCP
 *   retry failed, on every server in every round (the caller retries later).
 *
 * Transport (RFC 1035 §4.2): UDP first, from a fresh socket (a random source
 * port) with a random 16-bit id; a reply counts only when it comes from the
 * server's address and port and carries our id and our question, and anything
 * else is ignored while the wait goes on (RFC 5452 §9.1, spoofing defence). A
 * reply with TC set is asked again over TCP (RFC 1035 §4.2.2, RFC 7766 §5).
 *
 * @module
 */

import dgram from "node:dgram";
import { parseNameServer } from "../net/host_port.ts";
import type { Logger } from "../log/logger.ts";
import {
  decodeMessage,
  DnsFormatError,
  type DnsMessage,
  type DnsRecord,
  encodeQuery,
  normalizeName,
  RCODES,
  RECORD_CLASSES,
  RECORD_TYPES,
  type RecordType,
  recordTypeCode,
  recordTypeName,
} from "./message.ts";
import { readSystemNameservers } from "./resolv_conf.ts";

/** What a query found. */
export type DnsAnswer =
  | {
    /** Records of the asked type exist. */
    readonly kind: "answer";
    /** The records of the asked type (owned by the end of any CNAME chain). */
    readonly records: readonly DnsRecord[];
    /** Seconds they may be kept: the least TTL of the records and of the CNAMEs leading to them. */
    readonly ttl: number;
    /** See {@linkcode DnsSecurity.authenticated}. */
    readonly authenticated?: boolean;
  }
  | {
    /** RCODE 3: the name does not exist (RFC 1035 §4.1.1), a permanent answer. */
    readonly kind: "nxdomain";
    /** See {@linkcode DnsSecurity.authenticated}. */
    readonly authenticated?: boolean;
  }
  | {
    /** NOERROR without records of that type: the name exists, the type does not (RFC 2308 §2.2). */
    readonly kind: "nodata";
    /** See {@linkcode DnsSecurity.authenticated}. */
    readonly authenticated?: boolean;
  };

/** What an answer says of its DNSSEC validation. */
export interface DnsSecurity {
  /**
   * Whether the answer is DNSSEC-secure: the AD bit was set (RFC 4035
   * §3.2.3) by a name server on a loopback address, the only kind a stub
   * resolver can trust not to be forged on the way (RFC 4035 §4.9.3, RFC
   * 6698 §4.1: a local validating resolver). Left out or `false`: insecure,
   * or not known.
   */
  readonly authenticated?: boolean;
}

/**
 * Whether an answer is DNSSEC-secure (see {@linkcode DnsSecurity}).
 *
 * @param answer An answer of {@linkcode DnsQuerier.query}.
 * @returns `true` only when a trusted validating resolver said so.
 */
export function isAuthenticated(answer: DnsAnswer): boolean {
  return answer.authenticated === true;
}

/**
 * Why a query failed for now:
 * `servfail`, `refused`, `formerr`, `notimp` (the server answered that RCODE),
 * `rcode` (any other RCODE but NOERROR and NXDOMAIN), `timeout` (no matching
 * reply in time), `network` (the socket failed), `truncated` (TC set, and the
 * TCP retry failed), `malformed` (an unusable reply over TCP, or a CNAME loop),
 * `config` (resolv.conf could not be read).
 */
export type DnsFailureReason =
  | "servfail"
  | "refused"
  | "formerr"
  | "notimp"
  | "rcode"
  | "timeout"
  | "network"
  | "truncated"
  | "malformed"
  | "config";

/** One server's failure in one round. */
export interface DnsFailure {
  /** The server, `ip:port`. */
  readonly nameserver: string;
  /** What went wrong. */
  readonly reason: DnsFailureReason;
  /** For people. */
  readonly detail: string;
}

/**
 * No server gave a usable answer: a temporary failure. An MTA defers the
 * message (4.4.3) and tries again later; it never bounces on this.
 *
 * @example Tell a temporary failure apart
 * ```ts
 * import assert from "node:assert/strict";
 * import { DnsTemporaryError } from "./resolver.ts";
 * const error = new DnsTemporaryError({ qname: "example.test", qtype: "MX" }, [
 *   { nameserver: "127.0.0.1:53", reason: "servfail", detail: "answered SERVFAIL" },
 * ]);
 * assert.equal(error.reason, "servfail");
 * assert.equal(error.message, 'Cannot resolve "example.test" MX: 127.0.0.1:53 answered SERVFAIL');
 * ```
 */
export class DnsTemporaryError extends Error {
  /** The name asked about. */
  readonly qname: string;
  /** The type asked for. */
  readonly qtype: RecordType;
  /** The most telling reason: the last one that is not a timeout, else `"timeout"`. */
  readonly reason: DnsFailureReason;
  /** Every failure, in the order they happened. */
  readonly failures: readonly DnsFailure[];

  /**
   * Makes the error from the failures seen.
   *
   * @param question The name asked about and the type asked for.
   * @param failures What happened on each try; at least one.
   * @param options The underlying error, if any.
   */
  constructor(
    question: { readonly qname: string; readonly qtype: RecordType },
    failures: readonly DnsFailure[],
    options?: ErrorOptions,
  ) {
    const { qname, qtype } = question;
    const distinct = [...new Set(failures.map((f) => `${f.nameserver} ${f.detail}`))];
    super(
      `Cannot resolve "${qname}" ${qtype}: ${distinct.join("; ") || "no name server to ask"}`,
      options,
    );
    this.name = "DnsTemporaryError";
    this.qname = qname;
    this.qtype = qtype;
    this.failures = failures;
    this.reason = failures.findLast((f) => f.reason !== "timeout")?.reason ??
      (failures.length > 0 ? "timeout" : "network");
  }
}

/** Anything that can answer a DNS question; {@linkcode StubResolver} is one, a test fake another. */
export interface DnsQuerier {
  /**
   * Asks one question.
   *
   * @param name The name; U-labels are converted to A-labels.
   * @param type The type, `"MX"`, `TYPE<n>` or a number.
   * @returns What was found.
   * @throws {DnsTemporaryError} When no server answered usefully.
   */
  query(name: string, type: RecordType | number): Promise<DnsAnswer>;
}

/** Options of {@linkcode StubResolver}. */
export interface StubResolverOptions {
  /**
   * Servers as `ip:port` or `[ipv6]:port` (a bare address means port 53), as
   * in `Config.dns.nameservers`. `null` or left out: those of `/etc/resolv.conf`.
   * @default {null}
   */
  nameservers?: readonly string[] | null;
  /** How long to wait for one server, per try, in ms. @default {2000} */
  timeoutMs?: number;
  /** Rounds over all servers. @default {2} */
  attempts?: number;
  /** Where failed tries are logged (debug level). @default {no logging} */
  logger?: Logger;
  /** Answers kept in memory for their TTL; 0 turns the cache off. @default {1000} */
  cacheSize?: number;
  /** The clock, for tests of the cache. @default {Date.now} */
  now?: () => number;
  /** The resolv.conf read when `nameservers` is not given. @default {"/etc/resolv.conf"} */
  resolvConfPath?: string;
  /**
   * Send queries with EDNS0 and the DO bit (RFC 3225), so answers can be
   * told DNSSEC-secure; a server that answers FORMERR is asked again
   * without (RFC 6891 §7). @default {true}
   */
  dnssec?: boolean;
  /** Called once per question sent to the servers (not for answers from the cache), with its type. */
  onQuery?: (qtype: string) => void;
  /** Called for each try that failed (one per server and round), with the type and why. */
  onFailure?: (qtype: string, reason: DnsFailureReason) => void;
}

/** A parsed server address. */
interface Nameserver {
  readonly text: string;
  readonly host: string;
  readonly port: number;
  readonly family: 4 | 6;
}

interface Failure {
  readonly ok: false;
  readonly reason: DnsFailureReason;
  readonly detail: string;
}

type Exchange = { readonly ok: true; readonly message: DnsMessage } | Failure;

interface CacheEntry {
  readonly answer: DnsAnswer;
  readonly expiresAt: number;
}

/** A bound on CNAME chains (RFC 1034 §3.6.2), so a long or looping chain cannot hold us; 8 is common. */
const MAX_CNAME_HOPS = 8;

const RCODE_FAILURES: ReadonlyMap<number, [DnsFailureReason, string]> = new Map([
  [RCODES.FORMERR, ["formerr", "answered FORMERR"]],
  [RCODES.SERVFAIL, ["servfail", "answered SERVFAIL"]],
  [RCODES.NOTIMP, ["notimp", "answered NOTIMP"]],
  [RCODES.REFUSED, ["refused", "answered REFUSED"]],
]);

/**
 * Reads a name server address: `ip`, `ip:port` or `[ipv6]:port`.
 *
 * @throws {TypeError} When it is none of these.
 */
function parseNameserver(text: string): Nameserver {
  const address = parseNameServer(text);
  if (address === null) {
    throw new TypeError(`Cannot use name server "${text}": expected ip, ip:port or [ipv6]:port`);
  }
  return address;
}

function randomId(): number {
  return crypto.getRandomValues(new Uint16Array(1))[0]!;
}

function sameAddress(a: string, b: string): boolean {
  if (a === b) return true;
  // A connected IPv6 socket may report "::ffff:127.0.0.1"-style or differently written addresses.
  const strip = (s: string) => s.toLowerCase().replace(/^::ffff:/, "").replace(/%.*$/, "");
  return strip(a) === strip(b);
}

/** RFC 5452 §9.1: accept a reply only for our id and our question (the socket checks address and port). */
function isReplyTo(message: DnsMessage, id: number, qname: string, qtype: number): boolean {
  if (message.id !== id || !message.flags.qr || message.flags.opcode !== 0) return false;
  if (message.questions.length === 0) {
    // Some servers drop the question from an error reply (FORMERR, NOTIMP);
    // such a reply can only make us give up on this server, never give an answer.
    const rcode = message.flags.rcode;
    return rcode !== RCODES.NOERROR && rcode !== RCODES.NXDOMAIN;
  }
  if (message.questions.length !== 1) return false;
  const question = message.questions[0]!;
  try {
    return question.class === RECORD_CLASSES.IN &&
      recordTypeCode(question.type) === qtype &&
      normalizeName(question.name) === qname;
  } catch {
    return false;
  }
}

/** Whether a name server address is a loopback one (127.0.0.0/8, ::1): a validator on this host. */
function isLoopback(host: string): boolean {
  const h = host.toLowerCase().replace(/^::ffff:/, "");
  return h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

function toBytes(buffer: Uint8Array): Uint8Array {
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}

/** One query over UDP to one server, waiting at most `timeoutMs` for a matching reply. */
function exchangeUdp(
  server: Nameserver,
  query: Uint8Array,
  accept: (message: DnsMessage) => boolean,
  timeoutMs: number,
): Promise<Exchange> {
  return new Promise((resolve) => {
    // A fresh socket per query: the kernel picks a random source port (RFC 5452 §9.2).
    const socket = dgram.createSocket({ type: server.family === 6 ? "udp6" : "udp4" });
    const ignored = new Set<string>(); // what was thrown away, for the error message
    let finished = false;
    const finish = (result: Exchange) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      try {
        socket.close(() => resolve(result));
      } catch {
        resolve(result); // already closed after an error
      }
    };
    const timer = setTimeout(() => {
      const also = ignored.size > 0 ? `; ignored ${[...ignored].join(", ")}` : "";
      finish({
        ok: false,
        reason: "timeout",
        detail: `did not reply within ${timeoutMs} ms${also}`,
      });
    }, timeoutMs);
    socket.on("error", (error: Error) => {
      finish({
        ok: false,
        reason: "network",
        detail: `cannot be reached over UDP: ${error.message}`,
      });
    });
    socket.on("message", (data: Uint8Array, remote: { address: string; port: number }) => {
      if (remote.port !== server.port || !sameAddress(remote.address, server.host)) {
        ignored.add("a reply from another address");
        return;
      }
      let message: DnsMessage;
      try {
        message = decodeMessage(toBytes(data));
      } catch (error: unknown) {
        if (!(error instanceof DnsFormatError)) throw error;
        ignored.add("a malformed reply");
        return;
      }
      if (!accept(message)) {
        ignored.add("a reply with another id or question");
        return;
      }
      finish({ ok: true, message });
    });
    const send = () => {
      if (finished) return;
      socket.send(query, (error: Error | null) => {
        if (error) {
          finish({ ok: false, reason: "network", detail: `cannot be sent to: ${error.message}` });
        }
      });
    };
    try {
      // Connected: the kernel drops datagrams from any other address or port.
      socket.connect(server.port, server.host, send);
    } catch (error: unknown) {
      const text = error instanceof Error ? error.message : String(error);
      finish({ ok: false, reason: "network", detail: `cannot be reached over UDP: ${text}` });
    }
  });
}

async function readExactly(conn: Deno.Conn, length: number): Promise<Uint8Array | null> {
  const buffer = new Uint8Array(length);
  let filled = 0;
  while (filled < length) {
    const n = await conn.read(buffer.subarray(filled));
    if (n === null) return null;
    filled += n;
  }
  return buffer;
}

/** One query over TCP (RFC 1035 §4.2.2: each message prefixed by its 2-byte length). */
async function exchangeTcp(
  server: Nameserver,
  query: Uint8Array,
  accept: (message: DnsMessage) => boolean,
  timeoutMs: number,
): Promise<Exchange> {
  const controller = new AbortController();
  let conn: Deno.TcpConn | undefined;
  const close = () => {
    try {
      conn?.close();
    } catch {
      // already closed
    }
    conn = undefined;
  };
  const timer = setTimeout(() => {
    controller.abort();
    close(); // wakes a pending read or write
  }, timeoutMs);
  try {
    conn = await Deno.connect({
      hostname: server.host,
      port: server.port,
      signal: controller.signal,
    });
    if (controller.signal.aborted) throw new Error("timed out");
    const framed = new Uint8Array(2 + query.length);
    new DataView(framed.buffer).setUint16(0, query.length);
    framed.set(query, 2);
    for (let written = 0; written < framed.length;) {
      written += await conn.write(framed.subarray(written));
    }
    const prefix = await readExactly(conn, 2);
    const body = prefix === null ? null : await readExactly(conn, (prefix[0]! << 8) | prefix[1]!);
    if (body === null) {
      return {
        ok: false,
        reason: "truncated",
        detail: "closed the TCP connection before replying",
      };
    }
    const message = decodeMessage(body);
    if (!accept(message)) {
      return {
        ok: false,
        reason: "malformed",
        detail: "replied over TCP with another id or question",
      };
    }
    return { ok: true, message };
  } catch (error: unknown) {
    if (controller.signal.aborted) {
      return {
        ok: false,
        reason: "timeout",
        detail: `did not reply over TCP within ${timeoutMs} ms`,
      };
    }
    if (error instanceof DnsFormatError) {
      return {
        ok: false,
        reason: "malformed",
        detail: `sent a malformed reply over TCP: ${error.message}`,
      };
    }
    const text = error instanceof Error ? error.message : String(error);
    return {
      ok: false,
      reason: "truncated",
      detail: `truncated the UDP reply and TCP failed: ${text}`,
    };
  } finally {
    clearTimeout(timer);
    close();
  }
}

/**
 * Reads a reply with RCODE 0 or 3 as an answer, following CNAMEs in the
 * answer section (RFC 1034 §3.6.2, §5.2.2). Returns the answer and how long it
 * may be cached, or a failure for a CNAME loop.
 */
function interpret(
  message: DnsMessage,
  qname: string,
  qtype: number,
  trusted: boolean,
): { ok: true; answer: DnsAnswer; ttl: number | null } | Failure {
  // Only when true, so answers compare equal to plain ones otherwise.
  const secure = trusted && message.flags.ad ? { authenticated: true } : {};
  const ownerIs = (record: DnsRecord, name: string) => {
    try {
      return record.class === RECORD_CLASSES.IN && normalizeName(record.name) === name;
    } catch {
      return false;
    }
  };
  const seen = new Set([qname]);
  let current = qname;
  let chainTtl = Infinity;
  for (let hops = 0;; hops++) {
    const records = message.answers.filter((r) =>
      ownerIs(r, current) && (qtype === RECORD_TYPES.ANY || recordTypeCode(r.type) === qtype)
    );
    if (records.length > 0) {
      // RFC 2181 §5.2: the TTLs of an RRset should agree; keep the least.
      const ttl = Math.min(chainTtl, ...records.map((r) => r.ttl));
      return { ok: true, answer: { kind: "answer", records, ttl, ...secure }, ttl };
    }
    if (qtype === RECORD_TYPES.CNAME) break;
    const cname = message.answers.find((r) => r.type === "CNAME" && ownerIs(r, current));
    if (cname === undefined || cname.type !== "CNAME") break;
    chainTtl = Math.min(chainTtl, cname.ttl);
    let target: string;
    try {
      target = normalizeName(cname.data);
    } catch {
      return {
        ok: false,
        reason: "malformed",
        detail: `sent a CNAME to an unusable name "${cname.data}"`,
      };
    }
    if (seen.has(target) || hops + 1 >= MAX_CNAME_HOPS) {
      return {
        ok: false,
        reason: "malformed",
        detail: `sent a CNAME loop or a chain of more than ${MAX_CNAME_HOPS}`,
      };
    }
    seen.add(target);
    current = target;
  }
  // RFC 2308 §5: a negative answer may be cached for min(SOA TTL, SOA MINIMUM);
  // without an SOA it must not be cached.
  const soa = message.authorities.find((r) => r.type === "SOA");
  const ttl = soa?.type === "SOA" ? Math.min(soa.ttl, soa.data.minimum, chainTtl) : null;
  // RFC 6604: with a CNAME chain, the RCODE speaks of the chain's last name.
  const answer: DnsAnswer = message.flags.rcode === RCODES.NXDOMAIN
    ? { kind: "nxdomain", ...secure }
    : { kind: "nodata", ...secure };
  return { ok: true, answer, ttl };
}

/**
 * The stub resolver. Each server is tried in turn, `attempts` rounds, each try
 * waiting at most `timeoutMs`: a query that nobody answers fails after
 * `servers × attempts × timeoutMs`. Answers are cached for their TTL (negative
 * answers for the SOA minimum, RFC 2308 §5); failures are never cached, and
 * identical queries in flight share one exchange.
 *
 * @example Ask a server for MX records
 * ```ts ignore
 * import { StubResolver } from "./resolver.ts";
 * const resolver = new StubResolver({ nameservers: ["127.0.0.1:5353"], timeoutMs: 500 });
 * const answer = await resolver.query("example.test", "MX");
 * if (answer.kind === "answer") console.log(answer.records);
 * ```
 */
export class StubResolver implements DnsQuerier {
  readonly #configured: readonly Nameserver[] | null;
  #system: Promise<Nameserver[]> | null = null;
  readonly #timeoutMs: number;
  readonly #attempts: number;
  readonly #logger: Logger | null;
  readonly #cacheSize: number;
  readonly #now: () => number;
  readonly #resolvConfPath: string;
  readonly #dnssec: boolean;
  readonly #cache = new Map<string, CacheEntry>();
  readonly #inFlight = new Map<string, Promise<DnsAnswer>>();
  readonly #onQuery: ((qtype: string) => void) | null;
  readonly #onFailure: ((qtype: string, reason: DnsFailureReason) => void) | null;

  /**
   * Makes a resolver; nothing is sent until the first query.
   *
   * @param options Servers, timeout, rounds, logger, cache size.
   * @throws {TypeError} When a name server address or a number is unusable.
   */
  constructor(options: StubResolverOptions = {}) {
    const { nameservers = null, timeoutMs = 2000, attempts = 2, cacheSize = 1000 } = options;
    if (nameservers !== null && nameservers.length === 0) {
      throw new TypeError("Cannot create a resolver: the list of name servers is empty");
    }
    if (!(timeoutMs > 0 && Number.isFinite(timeoutMs))) {
      throw new TypeError(
        `Cannot create a resolver: timeoutMs ${timeoutMs} is not a positive number`,
      );
    }
    if (!(Number.isInteger(attempts) && attempts >= 1)) {
      throw new TypeError(
        `Cannot create a resolver: attempts ${attempts} is not a positive integer`,
      );
    }
    if (!(Number.isInteger(cacheSize) && cacheSize >= 0)) {
      throw new TypeError(`Cannot create a resolver: cacheSize ${cacheSize} is not a whole number`);
    }
    this.#configured = nameservers === null ? null : nameservers.map(parseNameserver);
    this.#timeoutMs = timeoutMs;
    this.#attempts = attempts;
    this.#logger = options.logger ?? null;
    this.#cacheSize = cacheSize;
    this.#now = options.now ?? Date.now;
    this.#resolvConfPath = options.resolvConfPath ?? "/etc/resolv.conf";
    this.#dnssec = options.dnssec ?? true;
    this.#onQuery = options.onQuery ?? null;
    this.#onFailure = options.onFailure ?? null;
  }

  /**
   * Asks one question of class IN.
   *
   * @param name The name, with or without the trailing dot; U-labels are sent as A-labels.
   * @param type `"A"`, `"AAAA"`, `"MX"`, `"TXT"`, … or a type number.
   * @returns An answer, `nxdomain` or `nodata`.
   * @throws {DnsTemporaryError} When no server answered usefully: try again later.
   * @throws {DnsFormatError} When `name` cannot be a DNS name (a permanent, local problem).
   *
   * @example Find the MX records of a domain
   * ```ts ignore
   * import { StubResolver } from "./resolver.ts";
   * const resolver = new StubResolver({ nameservers: ["127.0.0.1:5353"] });
   * const answer = await resolver.query("example.test", "MX");
   * console.log(answer.kind); // "answer", "nxdomain" or "nodata"
   * ```
   */
  query(name: string, type: RecordType | number): Promise<DnsAnswer> {
    let qname: string;
    let qtype: number;
    try {
      qname = normalizeName(name);
      qtype = recordTypeCode(type);
    } catch (error: unknown) {
      return Promise.reject(error);
    }
    const key = `${qname} ${qtype}`;
    const cached = this.#fromCache(key);
    if (cached !== null) return Promise.resolve(cached);
    const pending = this.#inFlight.get(key);
    if (pending !== undefined) return pending;
    const promise = this.#resolve(qname, qtype, key).finally(() => this.#inFlight.delete(key));
    this.#inFlight.set(key, promise);
    return promise;
  }

  #fromCache(key: string): DnsAnswer | null {
    const entry = this.#cache.get(key);
    if (entry === undefined) return null;
    const left = entry.expiresAt - this.#now();
    if (left <= 0) {
      this.#cache.delete(key);
      return null;
    }
    // Least recently used goes first: move this entry to the end.
    this.#cache.delete(key);
    this.#cache.set(key, entry);
    const answer = entry.answer;
    return answer.kind === "answer" ? { ...answer, ttl: Math.ceil(left / 1000) } : answer;
  }

  #remember(key: string, answer: DnsAnswer, ttl: number | null): void {
    if (this.#cacheSize === 0 || ttl === null || ttl <= 0) return;
    this.#cache.delete(key);
    this.#cache.set(key, { answer, expiresAt: this.#now() + ttl * 1000 });
    while (this.#cache.size > this.#cacheSize) {
      const oldest = this.#cache.keys().next();
      if (oldest.done) break;
      this.#cache.delete(oldest.value);
    }
  }

  async #nameservers(qname: string, qtype: RecordType): Promise<readonly Nameserver[]> {
    if (this.#configured !== null) return this.#configured;
    this.#system ??= readSystemNameservers(this.#resolvConfPath).then((list) =>
      list.map(parseNameserver)
    );
    try {
      return await this.#system;
    } catch (error: unknown) {
      // An unreadable resolv.conf is a local problem that may be fixed: defer, read it again next time.
      this.#system = null;
      const text = error instanceof Error ? error.message : String(error);
      throw new DnsTemporaryError({ qname, qtype }, [
        { nameserver: this.#resolvConfPath, reason: "config", detail: `cannot be read: ${text}` },
      ], { cause: error });
    }
  }

  async #resolve(qname: string, qtype: number, key: string): Promise<DnsAnswer> {
    const typeName = recordTypeName(qtype);
    this.#onQuery?.(typeName);
    const servers = await this.#nameservers(qname, typeName);
    const failures: DnsFailure[] = [];
    const fail = (server: Nameserver, reason: DnsFailureReason, detail: string) => {
      failures.push({ nameserver: server.text, reason, detail });
      this.#onFailure?.(typeName, reason);
      this.#logger?.log("debug", "dns.failed", undefined, {
        dns: "failed",
        nameserver: server.text,
        qname,
        qtype: typeName,
        reason,
        detail,
      });
    };
    for (let round = 0; round < this.#attempts; round++) {
      for (const server of servers) {
        let exchange = await this.#exchange(server, qname, qtype, this.#dnssec);
        if (
          this.#dnssec && exchange.ok && exchange.message.flags.rcode === RCODES.FORMERR
        ) {
          // RFC 6891 §7: a server that does not know EDNS0 is asked again without.
          exchange = await this.#exchange(server, qname, qtype, false);
        }
        if (!exchange.ok) {
          fail(server, exchange.reason, exchange.detail);
          continue;
        }
        const rcode = exchange.message.flags.rcode;
        if (rcode !== RCODES.NOERROR && rcode !== RCODES.NXDOMAIN) {
          const [reason, detail] = RCODE_FAILURES.get(rcode) ??
            ["rcode", `answered RCODE ${rcode}`];
          fail(server, reason, detail);
          continue;
        }
        const result = interpret(exchange.message, qname, qtype, isLoopback(server.host));
        if (!result.ok) {
          fail(server, result.reason, result.detail);
          continue;
        }
        this.#remember(key, result.answer, result.ttl);
        return result.answer;
      }
    }
    throw new DnsTemporaryError({ qname, qtype: typeName }, failures);
  }

  /** One question to one server: UDP, then TCP when the reply is truncated. */
  async #exchange(
    server: Nameserver,
    qname: string,
    qtype: number,
    dnssecOk: boolean,
  ): Promise<Exchange> {
    const id = randomId();
    const query = encodeQuery({ id, name: qname, type: qtype, dnssecOk });
    const accept = (message: DnsMessage) => isReplyTo(message, id, qname, qtype);
    const exchange = await exchangeUdp(server, query, accept, this.#timeoutMs);
    if (exchange.ok && exchange.message.flags.tc) {
      // RFC 1035 §4.2.1 / RFC 7766 §5: a truncated reply is asked again over TCP.
      return await exchangeTcp(server, query, accept, this.#timeoutMs);
    }
    return exchange;
  }
}
