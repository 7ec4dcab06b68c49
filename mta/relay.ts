/**
 * The relay transport: delivers recipients of other domains to the next MTA
 * on the way, found by `relay.routes` (a fixed `host:port`) or by DNS (the
 * MX procedure of RFC 5321 §5.1).
 *
 * For each domain of a message: find the hosts (MX records by preference,
 * or the implicit MX, or the route), then try them in order (RFC 5321
 * §5.1: the next MX on a refused connection or a 4xx greeting), each of its
 * addresses in turn. TLS is opportunistic (RFC 7435): used when offered, and
 * when the handshake fails the same host is tried again in plaintext, with a
 * log line; unless the recipient domain publishes DANE TLSA records (RFC
 * 7672) or an MTA-STS policy in `enforce` mode (RFC 8461), or the message
 * asks for REQUIRETLS (RFC 8689): then the host gets verified TLS or
 * nothing (see `tls_policy/` and docs/transport-security.md). Each recipient gets its own outcome: 2yz sent, 5yz bounced, 4yz
 * or no answer deferred. Connections are kept a few seconds for the next
 * message to the same host, within limits per destination and in total.
 * A message waiting for room to a busy host waits out of the delivery
 * loop's slots; a host that gave no answer is put on an unreachable list for
 * a while (RFC 5321 §4.5.4.1), and one whose connections all wait for their
 * greeting takes no more waiters, so one dead or tarpitting host cannot hold
 * up local mail or other destinations.
 *
 * Loops bounce (RFC 5321 §6.3): a message that has been through more than 50
 * MTAs, or whose best MX is this host.
 *
 * @module
 */

import tls from "node:tls";
import type { Config, RoutePolicy } from "../config/schema.ts";
import { configOf, type ConfigSource } from "./live_config.ts";
import { type DnsQuerier, DnsTemporaryError, isAuthenticated } from "../dns/resolver.ts";
import { resolveAddresses, resolveMx } from "../dns/mx.ts";
import type { Logger, LogValue } from "../log/logger.ts";
import { cleanText, remoteQueueId } from "../log/fields.ts";
import { readHeaderSection } from "../queue/dsn.ts";
import type {
  ClaimedMessage,
  QueuedMessage,
  RecipientOutcome,
  ReplySummary,
} from "../queue/types.ts";
import {
  SmtpAuthError,
  SmtpClient,
  type SmtpClientOptions,
  SmtpConnectionError,
  TlsHandshakeError,
} from "../smtp/client.ts";
import { type OutgoingRecipient, xtext } from "../smtp/client_session.ts";
import { isIpv4, isIpv6 } from "../smtp/path.ts";
import type { Reply } from "../smtp/reply.ts";
import { logOutcome, type RemoteTransport } from "./delivery.ts";
import { srsForward } from "./srs.ts";
import { mxHops, type NextHop, relayRoute } from "./routing.ts";
import { checkDaneChain, isUsableTlsa, parseTlsa, type Tlsa } from "../tls_policy/dane.ts";
import {
  MtaStsPolicies,
  type PolicyLookup,
  type PolicyStore,
} from "../tls_policy/mta_sts_cache.ts";
import { mxMatches } from "../tls_policy/mta_sts_policy.ts";

/** RFC 5321 §6.3 allows rejecting at 100 Received fields; like other MTAs, tern bounces past 50. */
export const MAX_HOPS = 50;

/** Options of {@linkcode RelayTransport}. */
export interface RelayOptions {
  /** Routes, host name; or where to read the configuration in force (each delivery reads it). */
  readonly config: Config | ConfigSource;
  /** The DNS resolver. */
  readonly resolver: DnsQuerier;
  /** Where delivery lines go. */
  readonly logger: Logger;
  /** The port of MX hosts. @default {25} */
  readonly mxPort?: number;
  /** Connections at once, in total. @default {20} */
  readonly maxConnections?: number;
  /** Connections at once to one host and port. @default {4} */
  readonly maxConnectionsPerDestination?: number;
  /** How long an idle connection is kept for the next message, ms. @default {5000} */
  readonly idleMs?: number;
  /**
   * How long a host:port whose connection got no answer (refused, reset, no
   * greeting in time) is left alone: deliveries to it meanwhile are deferred
   * at once without connecting (RFC 5321 §4.5.4.1 suggests keeping such a
   * list of unreachable hosts), ms. @default {60000}
   */
  readonly unreachableMs?: number;
  /**
   * When every connection to a host:port has waited this long for its
   * greeting, further messages to it are deferred at once instead of
   * waiting for one of those connections, ms. @default {30000}
   */
  readonly stallMs?: number;
  /** Client options (timeouts) for every connection. */
  readonly client?: Partial<SmtpClientOptions>;
  /** Whether an address and port are one of our own listeners (loop detection). @default {never} */
  readonly isOwnEndpoint?: (address: string, port: number) => boolean;
  /** The clock. @default {Date.now} */
  readonly now?: () => number;
  /** Where MTA-STS policies are kept across restarts (the queue's store). @default {memory only} */
  readonly state?: PolicyStore;
  /** The HTTPS port of MTA-STS policy hosts. @default {443} */
  readonly mtaStsPort?: number;
}

/**
 * How one hop is secured, as the log line's `tls_policy` says:
 * `none` (a route with `tls: none`), `opportunistic` (RFC 7435),
 * `required` (a route with `tls: require`: TLS, any certificate),
 * `ca` (a route with `tls: verify`: TLS, PKIX), `dane` (RFC 7672),
 * `mta-sts` (RFC 8461 enforce; testing mode is opportunistic).
 */
type HopSecurity =
  | { readonly kind: "none" | "opportunistic" | "required" | "ca" }
  | {
    readonly kind: "dane";
    /** The usable TLSA records; empty: TLS without authentication (none usable, RFC 7672 §2.2). */
    readonly records: readonly Tlsa[];
  }
  | { readonly kind: "mta-sts"; readonly domain: string }
  | { readonly kind: "mta-sts-testing"; readonly domain: string; readonly matches: boolean };

/** The domain's side of the decision: its MTA-STS policy and whether its MX answer is DNSSEC-secure. */
interface DomainSecurity {
  readonly viaMx: boolean;
  readonly mxSecure: boolean;
  readonly sts: PolicyLookup | null;
}

/** The log's name of a hop's security. */
function policyName(security: HopSecurity): string {
  return security.kind === "mta-sts-testing" ? "opportunistic" : security.kind;
}

/** One place to connect to. */
interface Endpoint {
  /** The host name, for logs and SNI. */
  readonly host: string;
  readonly address: string;
  readonly port: number;
}

/** Why a whole domain failed. */
type DomainFailure = { status: "deferred" | "bounced"; reply: ReplySummary };

function summary(r: Reply): ReplySummary {
  const enhanced = r.enhancedStatus ??
    (r.code >= 500 ? "5.0.0" : r.code >= 400 ? "4.0.0" : "2.0.0");
  return { code: r.code, enhancedStatus: enhanced, text: r.lines.join(" ").trim() };
}

function describe(error: unknown): string {
  if (error instanceof Error) return error.message.replace(/\s+/g, " ").slice(0, 500);
  return String(error);
}

function endpointName(e: Endpoint): string {
  return `${e.host}[${e.address}]:${e.port}`;
}

/**
 * Why a destination was not tried: it is on the unreachable list, or its
 * connections are all stuck waiting for a greeting. Becomes a deferral of
 * the recipients (try the next MX first), never a wait in a delivery slot.
 */
class DestinationUnavailable extends Error {
  /**
   * @param message What the deferred recipients' reply says.
   */
  constructor(message: string) {
    super(message);
    this.name = "DestinationUnavailable";
  }
}

/** The waiting was given up because the delivery loop is stopping. */
class WaitAbandoned extends Error {
  constructor() {
    super("Stopped waiting for a connection: shutting down");
    this.name = "WaitAbandoned";
  }
}

/** The most destinations kept on the unreachable list (a bound on its memory). */
const MAX_UNREACHABLE = 10_000;

/** Limits of a {@linkcode ConnectionPool}. */
interface PoolLimits {
  readonly maxTotal: number;
  readonly maxPer: number;
  readonly idleMs: number;
  /** How long a destination that did not answer stays on the unreachable list, ms. */
  readonly unreachableMs: number;
  /** How long every connection to a destination may wait for its greeting before new messages stop queueing behind them, ms. */
  readonly stallMs: number;
  readonly now: () => number;
}

/** A delivery waiting for room: its destination, and how to wake it. */
interface Waiter {
  readonly key: string;
  readonly wake: () => void;
}

/**
 * Connections to reuse, and the limits on how many are open. It also keeps
 * RFC 5321 §4.5.4.1's list of hosts it cannot reach: a destination whose
 * connection failed with no reply (refused, reset, or no greeting before the
 * timeout) is not tried again for `unreachableMs`, so messages queued to a
 * dead or tarpitting host do not each sit out the timeout in turn.
 */
class ConnectionPool {
  readonly #limits: PoolLimits;
  readonly #idle = new Map<
    string,
    { client: SmtpClient; timer: ReturnType<typeof setTimeout> }[]
  >();
  readonly #open = new Map<string, number>(); // per key: connecting + active + idle
  /** Per key, when each connection still waiting for its greeting began. */
  readonly #connecting = new Map<string, number[]>();
  /** The unreachable list: per key, until when, and why. */
  readonly #down = new Map<string, { until: number; since: number; reason: string }>();
  #total = 0;
  #waiters: Waiter[] = [];

  constructor(limits: PoolLimits) {
    this.#limits = limits;
  }

  /**
   * Borrows an idle connection to `key`, or opens one within the limits.
   * When the destination is at its limit it waits (the caller runs outside
   * the delivery loop's slots), unless the destination is unreachable or its
   * connections are all stuck before the greeting: then it throws
   * {@linkcode DestinationUnavailable} at once.
   */
  async acquire(
    key: string,
    connect: () => Promise<SmtpClient>,
    signal?: AbortSignal,
  ): Promise<SmtpClient> {
    while (true) {
      if (signal?.aborted) throw new WaitAbandoned();
      this.#throwIfDown(key);
      const idle = this.#idle.get(key);
      while (idle && idle.length > 0) {
        const entry = idle.pop()!;
        clearTimeout(entry.timer);
        if (entry.client.isUsable) return entry.client;
        this.#forget(key);
        void entry.client.close().catch(() => {});
      }
      const open = this.#open.get(key) ?? 0;
      if (open < this.#limits.maxPer && this.#total >= this.#limits.maxTotal) this.#closeOneIdle();
      if (open < this.#limits.maxPer && this.#total < this.#limits.maxTotal) {
        return await this.#openNew(key, connect, signal);
      }
      const stalledFor = this.#stalledFor(key);
      if (stalledFor >= this.#limits.stallMs) {
        throw new DestinationUnavailable(
          `not tried: ${open} connection(s) have waited ${
            Math.round(stalledFor / 1000)
          }s for its greeting`,
        );
      }
      await this.#wait(key, stalledFor >= 0 ? this.#limits.stallMs - stalledFor : null, signal);
    }
  }

  /** Opens a connection to `key`, counting it while it waits for the greeting. */
  async #openNew(
    key: string,
    connect: () => Promise<SmtpClient>,
    signal?: AbortSignal,
  ): Promise<SmtpClient> {
    this.#open.set(key, (this.#open.get(key) ?? 0) + 1);
    this.#total++;
    const started = this.#limits.now();
    const connecting = this.#connecting.get(key) ?? [];
    connecting.push(started);
    this.#connecting.set(key, connecting);
    try {
      const client = await connect();
      this.#down.delete(key);
      return client;
    } catch (error: unknown) {
      // No reply at all (refused, reset, timed out): the unreachable list.
      // A reply (a 421 or 554 greeting) means the host is there.
      const noAnswer = error instanceof SmtpConnectionError && error.reply === null &&
        !(error instanceof TlsHandshakeError);
      if (noAnswer && !signal?.aborted) {
        const now = this.#limits.now();
        if (this.#down.size >= MAX_UNREACHABLE) this.#sweepDown(now);
        this.#down.set(key, {
          until: now + this.#limits.unreachableMs,
          since: now,
          reason: describe(error),
        });
      }
      this.#forget(key);
      throw error;
    } finally {
      const i = connecting.indexOf(started);
      if (i >= 0) connecting.splice(i, 1);
      if (connecting.length === 0) this.#connecting.delete(key);
      // Waiters of a destination just put on the list leave at once.
      if (this.#down.has(key)) this.#wakeAll(key);
    }
  }

  /** Forgets expired entries of the unreachable list, or the oldest when none has expired. */
  #sweepDown(now: number): void {
    for (const [key, down] of this.#down) if (now >= down.until) this.#down.delete(key);
    if (this.#down.size >= MAX_UNREACHABLE) {
      const oldest = this.#down.keys().next();
      if (!oldest.done) this.#down.delete(oldest.value);
    }
  }

  #throwIfDown(key: string): void {
    const down = this.#down.get(key);
    if (down === undefined) return;
    const now = this.#limits.now();
    if (now >= down.until) {
      this.#down.delete(key);
      return;
    }
    throw new DestinationUnavailable(
      `not tried: it did not answer ${Math.round((now - down.since) / 1000)}s ago (${down.reason})`,
    );
  }

  /**
   * How long every open connection to `key` has been waiting for its
   * greeting (the youngest's wait), or -1 when one of them got through.
   */
  #stalledFor(key: string): number {
    const connecting = this.#connecting.get(key);
    if (connecting === undefined || connecting.length < (this.#open.get(key) ?? 0)) return -1;
    return this.#limits.now() - Math.max(...connecting);
  }

  /** Waits for room, at most `ms` (then the caller looks again), or until `signal`. */
  #wait(key: string, ms: number | null, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      const waiter: Waiter = {
        key,
        wake: () => {
          if (timer !== undefined) clearTimeout(timer);
          signal?.removeEventListener("abort", onAbort);
          const i = this.#waiters.indexOf(waiter);
          if (i >= 0) this.#waiters.splice(i, 1);
          resolve();
        },
      };
      const onAbort = (): void => waiter.wake();
      const timer = ms === null ? undefined : setTimeout(waiter.wake, Math.max(1, ms));
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  /** Gives a connection back: kept for reuse if it can take more, else closed. */
  release(key: string, client: SmtpClient): void {
    if (client.isUsable && this.#limits.idleMs > 0) {
      const list = this.#idle.get(key) ?? [];
      const entry = {
        client,
        timer: setTimeout(() => {
          const i = list.indexOf(entry);
          if (i >= 0) list.splice(i, 1);
          this.#forget(key);
          void client.close().catch(() => {});
        }, this.#limits.idleMs),
      };
      list.push(entry);
      this.#idle.set(key, list);
      this.#wakeOne(key);
      return;
    }
    this.#forget(key);
    void client.close().catch(() => {});
  }

  /** Closes every idle connection. */
  async close(): Promise<void> {
    const closing: Promise<void>[] = [];
    for (const [key, list] of this.#idle) {
      for (const entry of list.splice(0)) {
        clearTimeout(entry.timer);
        this.#forget(key);
        closing.push(entry.client.close().catch(() => {}));
      }
    }
    await Promise.all(closing);
  }

  #closeOneIdle(): void {
    for (const [key, list] of this.#idle) {
      const entry = list.shift();
      if (entry) {
        clearTimeout(entry.timer);
        this.#forget(key);
        void entry.client.close().catch(() => {});
        return;
      }
    }
  }

  #forget(key: string): void {
    const n = (this.#open.get(key) ?? 1) - 1;
    if (n <= 0) this.#open.delete(key);
    else this.#open.set(key, n);
    this.#total--;
    this.#wakeOne(key);
  }

  /**
   * Wakes the first waiter for `key`, else the first waiter for a
   * destination with room; a wake given to a waiter that cannot use it would
   * leave one that can asleep.
   */
  #wakeOne(key: string): void {
    const waiter = this.#waiters.find((w) => w.key === key) ??
      this.#waiters.find((w) => (this.#open.get(w.key) ?? 0) < this.#limits.maxPer);
    waiter?.wake();
  }

  #wakeAll(key: string): void {
    for (const waiter of this.#waiters.filter((w) => w.key === key)) waiter.wake();
  }
}

/**
 * Whether a header section has `TLS-Required: No` (RFC 8689 §5): the sender
 * asks that the recipient domain's TLS policies (DANE, MTA-STS) not stop it.
 */
function hasTlsRequiredNo(header: Uint8Array): boolean {
  const text = new TextDecoder("latin1").decode(header);
  return /^TLS-Required:[ \t]*No[ \t]*\r?$/im.test(text);
}

/** What the message asks of TLS (RFC 8689): every hop verified, or the recipient's policies waived. */
interface MessageTls {
  /** REQUIRETLS on MAIL FROM (§4.1). */
  readonly requireTls: boolean;
  /** `TLS-Required: No`, ignored under REQUIRETLS (§5). */
  readonly policiesWaived: boolean;
}

/** Counts the `Received:` fields of a header section (RFC 5321 §6.3). */
function countReceived(header: Uint8Array): number {
  const text = new TextDecoder("latin1").decode(header);
  return (text.match(/^received:/gim) ?? []).length;
}

/**
 * A route's TLS policy was not met (`tls: require` or `verify`): no STARTTLS,
 * a failed handshake or a certificate that does not verify. The message waits
 * (4.7.0) rather than go in clear or to an impostor.
 */
class RouteTlsError extends Error {
  /**
   * @param message Why, for the deferral's text.
   */
  constructor(message: string) {
    super(message);
    this.name = "RouteTlsError";
  }
}

/**
 * RFC 8689 §4.2.1: a REQUIRETLS message goes only over TLS whose
 * certificate was verified, by DANE, by MTA-STS, or by PKIX against the MX
 * host name when the MX answer was DNSSEC-secure (or a route's `tls:
 * verify`); any other hop is refused with 5.7.30.
 */
function requireTlsSecurity(
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
function requirement(security: HopSecurity): string {
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

/** Whether a connection failed because `tls: required` met a server without STARTTLS. */
function isStartTlsMissing(error: unknown): boolean {
  return error instanceof SmtpConnectionError && !(error instanceof SmtpAuthError) &&
    /^Cannot use TLS with .*: STARTTLS (is not offered|was refused)$/.test(error.message);
}

/**
 * The delivery line's view of the next hop: its reply (code, enhanced
 * status, text), the queue id in its `250`, and the TLS in use.
 */
function remoteFields(
  client: SmtpClient,
  r: Reply,
  security: HopSecurity,
): Record<string, LogValue> {
  const text = cleanText(r.lines.join(" "));
  return {
    code: r.code,
    reply: text,
    remote_id: r.code < 300 ? remoteQueueId(text) : undefined,
    tls: client.tls?.protocol ?? "none",
    cipher: client.tls?.cipher,
    tls_policy: policyName(security),
    // DANE checks the chain itself (checkPeer); PKIX's word does not apply to it.
    verified: security.kind === "dane"
      ? client.tls !== null && security.records.length > 0
      : client.tls?.isVerified,
  };
}

/** Delivers to other MTAs. */
export class RelayTransport implements RemoteTransport {
  readonly #options: RelayOptions;
  readonly #pool: ConnectionPool;
  readonly #now: () => number;
  readonly #sts: MtaStsPolicies;

  /**
   * Makes the transport.
   *
   * @param options Routes, resolver, limits.
   */
  constructor(options: RelayOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#pool = new ConnectionPool({
      maxTotal: options.maxConnections ?? 20,
      maxPer: options.maxConnectionsPerDestination ?? 4,
      idleMs: options.idleMs ?? 5000,
      unreachableMs: options.unreachableMs ?? 60_000,
      stallMs: options.stallMs ?? 30_000,
      now: this.#now,
    });
    this.#sts = new MtaStsPolicies({
      resolver: options.resolver,
      logger: options.logger,
      now: this.#now,
      ca: () => this.#trustedCas(),
      ...(options.state === undefined ? {} : { store: options.state }),
      ...(options.mtaStsPort === undefined ? {} : { port: options.mtaStsPort }),
    });
  }

  /** The CAs trusted for PKIX: the system's plus `relay.ca_file`; `undefined` without a file (Node's own roots). */
  #trustedCas(): string[] | undefined {
    const extra = configOf(this.#options.config).relay.caCerts;
    return extra === undefined ? undefined : [...tls.rootCertificates, ...extra];
  }

  /**
   * Delivers some recipients of a message to their next hops.
   *
   * @param claim The claimed message.
   * @param indices Recipients to deliver (all remote).
   * @param content Opens the content.
   * @param signal When aborted (the delivery loop is stopping), waits for a
   *   connection or a greeting are given up and their recipients left out of
   *   the outcomes: they were not attempted.
   * @returns One outcome per index, except recipients left out on `signal`.
   */
  async deliver(
    claim: ClaimedMessage,
    indices: readonly number[],
    content: () => ReadableStream<Uint8Array>,
    signal?: AbortSignal,
  ): Promise<RecipientOutcome[]> {
    const { message } = claim;
    const outcomes: RecipientOutcome[] = [];
    const header = await readHeaderSection(content());
    const hops = countReceived(header);
    const requireTls = message.envelope.requireTls === true;
    const messageTls: MessageTls = {
      requireTls,
      policiesWaived: !requireTls && hasTlsRequiredNo(header),
    };
    if (hops > MAX_HOPS) {
      return this.#all(message, indices, "bounced", {
        code: 554,
        enhancedStatus: "5.4.6",
        text: `Too many hops (${hops} Received fields): mail loop suspected`,
      }, "none");
    }
    // One transaction per domain and reverse-path: alias-forwarded recipients
    // may carry an SRS sender while others of the same domain do not.
    const byDomain = new Map<string, { domain: string; sender: string; group: number[] }>();
    for (const index of indices) {
      const address = message.recipients[index]!.address;
      const domain = address.slice(address.lastIndexOf("@") + 1).toLowerCase();
      const sender = this.#senderFor(message, index);
      const key = `${domain}\n${sender}`;
      const entry = byDomain.get(key) ?? { domain, sender, group: [] };
      entry.group.push(index);
      byDomain.set(key, entry);
    }
    for (const { domain, sender, group } of byDomain.values()) {
      if (signal?.aborted) break;
      outcomes.push(
        ...await this.#deliverDomain(message, domain, group, content, signal, sender, messageTls),
      );
    }
    return outcomes;
  }

  /**
   * The reverse-path for one recipient: the message's own, or with `srs`
   * set, an SRS0 address of ours when an alias forwards mail of a sender
   * from elsewhere to another domain, so SPF (RFC 7208) at the destination
   * checks our domain, which sent it, rather than the sender's.
   */
  #senderFor(message: QueuedMessage, index: number): string {
    const sender = message.envelope.reversePath;
    const srs = configOf(this.#options.config).srs;
    if (!srs || sender === "") return sender;
    const recipient = message.recipients[index]!;
    if (recipient.originalRecipient === recipient.address) return sender;
    const { localDomains } = configOf(this.#options.config);
    const domainOf = (a: string) => a.slice(a.lastIndexOf("@") + 1).toLowerCase();
    const isLocal = (a: string) => a.includes("@") && localDomains.includes(domainOf(a));
    // Only mail an alias sent on: the original recipient was ours; and only
    // a sender from elsewhere (our own users' domains pass SPF here anyway).
    if (!isLocal(recipient.originalRecipient) || isLocal(sender)) return sender;
    return srsForward(sender, srs, this.#now());
  }

  /** Closes the idle connections. */
  async close(): Promise<void> {
    await this.#pool.close();
  }

  #all(
    message: QueuedMessage,
    indices: readonly number[],
    status: RecipientOutcome["status"],
    reply: ReplySummary,
    nextHop: string,
    extra: Record<string, LogValue> = {},
  ): RecipientOutcome[] {
    return indices.map((index) => {
      const o: RecipientOutcome = { index, status, reply };
      logOutcome(this.#options.logger, message, o, nextHop, this.#now(), extra);
      return o;
    });
  }

  /** The hosts to try for a domain, or why there are none: routing decides, DNS is asked here. */
  async #hosts(
    domain: string,
  ): Promise<{ hosts: NextHop[]; viaMx: boolean } | DomainFailure> {
    const config = configOf(this.#options.config);
    const route = relayRoute(config, domain);
    if (route.kind === "hop") return { hosts: [route.hop], viaMx: false };
    const port = this.#options.mxPort ?? 25;
    try {
      const hops = mxHops(
        config.hostname,
        domain,
        await resolveMx(domain, this.#options.resolver),
        port,
      );
      return "hosts" in hops ? { hosts: hops.hosts, viaMx: true } : hops;
    } catch (error: unknown) {
      if (error instanceof DnsTemporaryError) {
        return {
          status: "deferred",
          reply: {
            code: 0,
            enhancedStatus: "4.4.3",
            text: `DNS lookup for ${domain} failed: ${error.reason}`,
          },
        };
      }
      if (error instanceof SyntaxError) {
        return {
          status: "bounced",
          reply: { code: 0, enhancedStatus: "5.1.2", text: `Bad destination domain "${domain}"` },
        };
      }
      throw error;
    }
  }

  /**
   * Connects: opportunistic TLS (plaintext again if the handshake fails),
   * unless the route's policy says `none`, `require` or `verify`; then AUTH
   * when the route has credentials.
   */
  async #connect(
    endpoint: Endpoint,
    signal: AbortSignal | undefined,
    policy: RoutePolicy | undefined,
    security: HopSecurity,
  ): Promise<SmtpClient> {
    const { logger } = this.#options;
    const config = configOf(this.#options.config);
    const tls = security.kind === "dane" || security.kind === "required"
      ? "require"
      : security.kind === "mta-sts" || security.kind === "ca"
      ? "verify"
      : security.kind === "none"
      ? "none"
      : "opportunistic";
    const auth = policy?.auth ?? null;
    const ca = this.#trustedCas();
    const base: SmtpClientOptions = {
      ...this.#options.client,
      host: endpoint.address,
      port: endpoint.port,
      helo: config.hostname,
      tls: tls === "require" || tls === "verify" ? "required" : tls,
      ...(tls === "require" ? { verifyCertificate: false } : {}),
      ...(tls === "verify" ? { verifyCertificate: true } : {}),
      ...(ca === undefined ? {} : { caCerts: ca }),
      ...(security.kind === "dane" && security.records.length > 0
        ? {
          // RFC 7672 §3.2.2: the MX host name is the reference identifier for DANE-TA.
          checkPeer: (chain: readonly Uint8Array[]) =>
            checkDaneChain(security.records, chain, [endpoint.host], this.#now()),
        }
        : {}),
      ...(auth === null ? {} : {
        auth: { username: auth.username, password: auth.password },
        allowPlaintextAuth: auth.allowPlaintext,
      }),
      ...(signal === undefined ? {} : { signal }),
      // SNI carries a host name, never an address (RFC 6066 §3).
      ...(endpoint.host.startsWith("[") || isIpv4(endpoint.host) || isIpv6(endpoint.host)
        ? {}
        : { servername: endpoint.host }),
    };
    try {
      return await SmtpClient.connect(base);
    } catch (error: unknown) {
      if (tls === "require" || tls === "verify") {
        // The route, DANE or MTA-STS asks for TLS: no plaintext fallback, the message waits.
        if (error instanceof TlsHandshakeError || isStartTlsMissing(error)) {
          throw new RouteTlsError(`${requirement(security)}: ${describe(error)}`);
        }
      }
      if (!(error instanceof TlsHandshakeError)) throw error;
      // RFC 7435 / docs/smtp-pitfalls.md: opportunistic TLS: opportunistic TLS falls back to plaintext.
      logger.log("warn", "delivery.error", undefined, {
        next_hop: endpointName(endpoint),
        reason: "TLS handshake failed, retrying without TLS",
        error: describe(error),
      });
      return await SmtpClient.connect({ ...base, tls: "none" });
    }
  }

  async #deliverDomain(
    message: QueuedMessage,
    domain: string,
    indices: readonly number[],
    content: () => ReadableStream<Uint8Array>,
    signal?: AbortSignal,
    reversePath = message.envelope.reversePath,
    messageTls: MessageTls = { requireTls: false, policiesWaived: false },
  ): Promise<RecipientOutcome[]> {
    const found = await this.#hosts(domain);
    if ("status" in found) {
      return this.#all(message, indices, found.status, found.reply, `${domain}`);
    }
    const pending = new Set(indices);
    const outcomes: RecipientOutcome[] = [];
    let lastFailure: ReplySummary = { code: 0, enhancedStatus: "4.4.1", text: "No host answered" };
    let lastHop = domain;
    let lastPolicy = "opportunistic";
    const domainSecurity = await this.#domainSecurity(domain, found.viaMx);
    hosts: for (const host of found.hosts) {
      const decided = await this.#hostSecurity(domain, host, domainSecurity, messageTls);
      if ("refused" in decided) {
        // RFC 7672 §2.2, RFC 8461 §4.2: this MX may not be used; the next may.
        lastFailure = decided.refused;
        lastHop = `${host.name}:${host.port}`;
        lastPolicy = decided.policy;
        this.#options.logger.log("warn", "delivery.error", message.queueId, {
          next_hop: lastHop,
          tls_policy: decided.policy,
          reason: decided.refused.text,
        });
        continue;
      }
      const security = decided;
      lastPolicy = policyName(security);
      let addresses: string[];
      try {
        addresses = await resolveAddresses(host.name, this.#options.resolver);
      } catch (error: unknown) {
        lastFailure = {
          code: 0,
          enhancedStatus: "4.4.3",
          text: `DNS lookup for ${host.name} failed: ${describe(error)}`,
        };
        continue;
      }
      if (addresses.length === 0) {
        lastFailure = {
          code: 0,
          enhancedStatus: "4.4.3",
          text: `Host ${host.name} has no address`,
        };
        continue;
      }
      for (const address of addresses) {
        const endpoint: Endpoint = { host: host.name, address, port: host.port };
        lastHop = endpointName(endpoint);
        if (this.#options.isOwnEndpoint?.(address, host.port)) {
          return this.#all(message, [...pending], "bounced", {
            code: 0,
            enhancedStatus: "5.4.6",
            text: `Mail for ${domain} loops back to myself (${lastHop})`,
          }, lastHop);
        }
        // Connections made under a route's TLS and AUTH policy are not shared with others.
        // So are those made under DANE or MTA-STS: a plaintext one must not serve them.
        const key = `${address}:${host.port}` +
          (host.policy === undefined
            ? ""
            : `#${host.policy.tls}#${host.policy.auth?.username ?? ""}`) +
          (security.kind === "dane" || security.kind === "mta-sts" ||
              (security.kind === "ca" && host.policy === undefined)
            ? `#${security.kind}#${host.name}`
            : "");
        let client: SmtpClient;
        try {
          client = await this.#pool.acquire(
            key,
            () => this.#connect(endpoint, signal, host.policy, security),
            signal,
          );
        } catch (error: unknown) {
          // Stopping: nothing was attempted, so there is nothing to record.
          if (signal?.aborted) return outcomes;
          if (error instanceof RouteTlsError) {
            lastFailure = {
              code: 0,
              enhancedStatus: "4.7.0",
              text: `TLS required for ${lastHop}, not used: ${error.message}`,
            };
            continue;
          }
          if (error instanceof SmtpAuthError) {
            // Refused credentials are the operator's to fix, not the message's
            // fault: deferred (4.7.0) even on 535 5.7.8, as Postfix's
            // smtp_sasl_auth_soft_bounce does, so nothing bounces meanwhile.
            lastFailure = {
              code: error.reply?.code ?? 0,
              enhancedStatus: "4.7.0",
              text: `AUTH at ${lastHop} failed: ${describe(error)}`,
            };
            continue;
          }
          if (error instanceof DestinationUnavailable) {
            // RFC 5321 §5.1: the next address, the next MX may answer.
            lastFailure = {
              code: 0,
              enhancedStatus: "4.4.1",
              text: `${lastHop} ${error.message}`,
            };
            continue;
          }
          // A refused connection or a 4xx/5xx greeting: the next address, the next MX.
          const reply = error instanceof SmtpConnectionError && error.reply
            ? summary(error.reply)
            : null;
          lastFailure = reply
            ? {
              ...reply,
              code: reply.code,
              enhancedStatus: reply.code >= 500 ? "4.4.0" : reply.enhancedStatus,
              text: `${lastHop} said: ${reply.text}`,
            }
            : {
              code: 0,
              enhancedStatus: "4.4.1",
              // The client's own "Cannot connect to ADDRESS:PORT: " would say it twice.
              text: `Cannot connect to ${lastHop}: ${
                describe(error).replace(/^Cannot connect to \S+: /, "")
              }`,
            };
          continue;
        }
        if (security.kind === "mta-sts-testing") this.#reportTesting(security, client, lastHop);
        if (messageTls.requireTls && client.extensions?.keywords.has("REQUIRETLS") !== true) {
          // RFC 8689 §4.2.1: only to a hop that promises to keep requiring TLS.
          this.#pool.release(key, client);
          lastFailure = {
            code: 0,
            enhancedStatus: "5.7.30",
            text: `REQUIRETLS support required: ${lastHop} does not offer REQUIRETLS (RFC 8689)`,
          };
          continue;
        }
        const recipients = [...pending];
        try {
          const result = await client.send({
            reversePath,
            recipients: recipients.map((i) => this.#outgoing(message, i)),
            body: message.envelope.body,
            smtputf8: message.envelope.smtputf8,
            size: message.size,
            ...(message.envelope.ret === undefined ? {} : { ret: message.envelope.ret }),
            ...(message.envelope.envid === undefined
              ? {}
              : { envid: xtext(message.envelope.envid) }),
            ...(messageTls.requireTls ? { requireTls: true } : {}),
          }, content);
          this.#pool.release(key, client);
          result.recipients.forEach((r, k) => {
            const index = recipients[k]!;
            const reply = summary(r.reply);
            const status = r.reply.code < 300
              ? "sent"
              : r.reply.code >= 500
              ? "bounced"
              : "deferred";
            const o: RecipientOutcome = {
              index,
              status,
              reply,
              remoteMta: host.name,
              remoteDsn: client.extensions?.dsn ?? false,
            };
            const remote = remoteFields(client, r.reply, security);
            logOutcome(this.#options.logger, message, o, lastHop, this.#now(), remote);
            outcomes.push(o);
          });
          return outcomes;
        } catch (error: unknown) {
          this.#pool.release(key, client);
          if (!(error instanceof SmtpConnectionError)) throw error;
          lastFailure = {
            code: 0,
            enhancedStatus: "4.4.2",
            text: `Lost connection with ${lastHop}: ${describe(error)}`,
          };
          continue hosts;
        }
      }
    }
    // RFC 8689 §4.2.1: a REQUIRETLS message no hop could take as asked comes back (5.7.30).
    const status = messageTls.requireTls && lastFailure.enhancedStatus === "5.7.30"
      ? "bounced"
      : "deferred";
    return this.#all(message, [...pending], status, lastFailure, lastHop, {
      tls_policy: lastPolicy,
    });
  }

  /**
   * What the domain says about TLS: its MTA-STS policy, and whether its MX
   * answer is DNSSEC-secure (RFC 7672 §2.2.1: DANE only for a secure MX
   * RRset). Only for MX delivery: a configured route has its own `tls`.
   */
  async #domainSecurity(domain: string, viaMx: boolean): Promise<DomainSecurity> {
    const relay = configOf(this.#options.config).relay;
    if (!viaMx) return { viaMx, mxSecure: false, sts: null };
    let mxSecure = false;
    if (relay.dane !== false) {
      try {
        // Answered from the resolver's cache: resolveMx asked just now.
        mxSecure = isAuthenticated(await this.#options.resolver.query(domain, "MX"));
      } catch {
        mxSecure = false;
      }
    }
    const sts = relay.mtaSts === false ? null : await this.#sts.policyFor(domain);
    return { viaMx, mxSecure, sts };
  }

  /**
   * How one MX host is to be secured, or why it may not be used. DANE
   * first (RFC 8461 §2: DANE takes precedence), then MTA-STS, else
   * opportunistic TLS (RFC 7435).
   */
  async #hostSecurity(
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
        (["A", "AAAA"] as const).map((t) => this.#options.resolver.query(host, t)),
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
      const answer = await this.#options.resolver.query(name, "TLSA");
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

  /** MTA-STS testing mode (RFC 8461 §5): delivered anyway; a hop enforce would refuse is logged. */
  #reportTesting(
    security: { readonly domain: string; readonly matches: boolean },
    client: SmtpClient,
    hop: string,
  ): void {
    const problems = [
      ...(security.matches ? [] : ["MX host not in the policy"]),
      ...(client.tls === null ? ["no TLS"] : []),
      ...(client.tls !== null && !client.tls.isVerified
        ? [`certificate not valid (${client.tls.verifyError ?? "unverified"})`]
        : []),
    ];
    if (problems.length === 0) return;
    this.#options.logger.log("warn", "delivery.error", undefined, {
      next_hop: hop,
      tls_policy: "mta-sts",
      reason: `MTA-STS policy of ${security.domain} in testing mode would refuse this hop: ${
        problems.join(", ")
      }`,
    });
  }

  #outgoing(message: QueuedMessage, index: number): OutgoingRecipient {
    const r = message.recipients[index]!;
    const out: { address: string; notify?: string[]; orcpt?: string } = { address: r.address };
    if (r.notify) out.notify = [...r.notify];
    if (r.orcpt) {
      const semi = r.orcpt.indexOf(";");
      out.orcpt = semi < 0
        ? r.orcpt
        : `${r.orcpt.slice(0, semi)};${xtext(r.orcpt.slice(semi + 1).trim())}`;
    } else if (r.originalRecipient !== r.address) {
      out.orcpt = r.originalRecipient;
    }
    return out;
  }
}
