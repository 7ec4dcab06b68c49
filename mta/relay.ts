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
import { type DnsQuerier, DnsTemporaryError } from "../dns/resolver.ts";
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
import { clientTracer } from "../smtp/trace.ts";
import { isIpv4, isIpv6 } from "../smtp/path.ts";
import type { Reply } from "../smtp/reply.ts";
import { logOutcome, type RemoteTransport } from "./delivery.ts";
import { srsForward } from "./srs.ts";
import { ConnectionPool, DestinationUnavailable } from "./connection_pool.ts";
import { mxHops, type NextHop, relayRoute } from "./routing.ts";
import { checkDaneChain, type Tlsa } from "../tls_policy/dane.ts";
import {
  type DomainSecurity,
  explainSecurity,
  type HopSecurity,
  HopSecurityPolicy,
  type MessageTls,
  policyName,
  requirement,
} from "../tls_policy/hop_security.ts";
import { MtaStsPolicies, type PolicyStore } from "../tls_policy/mta_sts_cache.ts";
import {
  connectedFailure,
  type FailureKind,
  handshakeFailure,
  refusalFailure,
  reportPolicy,
  stsLookupFailure,
  type TlsRptSink,
} from "../tls_policy/tls_rpt_session.ts";

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
  /**
   * Where the annotated dialogue with each next hop goes, with how the hop
   * is secured and why (`tern serve --trace`). @default {no trace}
   */
  readonly trace?: (line: string) => void;
  /** Where the outcome of each TLS negotiation with an MX host goes (RFC 8460 TLS-RPT). @default {none} */
  readonly tlsReports?: TlsRptSink;
}

/** Reports one TLS negotiation with an endpoint: our address, and the failure or `null`. */
type SessionReport = (
  endpoint: Endpoint,
  localAddress: string,
  failure: FailureKind | null,
) => void;

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
 * Whether a header section has `TLS-Required: No` (RFC 8689 §5): the sender
 * asks that the recipient domain's TLS policies (DANE, MTA-STS) not stop it.
 */
function hasTlsRequiredNo(header: Uint8Array): boolean {
  const text = new TextDecoder("latin1").decode(header);
  return /^TLS-Required:[ \t]*No[ \t]*\r?$/im.test(text);
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
  readonly #security: HopSecurityPolicy;

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
    this.#security = new HopSecurityPolicy({
      resolver: options.resolver,
      sts: this.#sts,
      relay: () => configOf(options.config).relay,
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
    report: SessionReport | null = null,
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
    let localAddress = "";
    const trace = this.#options.trace;
    const base: SmtpClientOptions = {
      ...this.#options.client,
      // `tern serve --trace`: the relay's dialogues too, each line with its hop.
      ...(trace === undefined
        ? {}
        : { onTrace: clientTracer((line) => trace(`${endpointName(endpoint)} ${line}`)) }),
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
      onConnected: (address) => localAddress = address,
      // SNI carries a host name, never an address (RFC 6066 §3).
      ...(endpoint.host.startsWith("[") || isIpv4(endpoint.host) || isIpv6(endpoint.host)
        ? {}
        : { servername: endpoint.host }),
    };
    try {
      const client = await SmtpClient.connect(base);
      report?.(endpoint, localAddress, connectedFailure(security, client.tls));
      return client;
    } catch (error: unknown) {
      if (error instanceof TlsHandshakeError || isStartTlsMissing(error)) {
        report?.(
          endpoint,
          localAddress,
          handshakeFailure(security, error, isStartTlsMissing(error)),
        );
      }
      if (tls === "require" || tls === "verify") {
        // The route, DANE or MTA-STS asks for TLS: no plaintext fallback, the message waits.
        if (error instanceof TlsHandshakeError || isStartTlsMissing(error)) {
          const why = `${requirement(security)}: ${describe(error)}`;
          trace?.(`* ${endpointName(endpoint)}: not used: ${why}`);
          throw new RouteTlsError(why);
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
    const domainSecurity = await this.#security.domainSecurity(domain, found.viaMx);
    hosts: for (const host of found.hosts) {
      const decided = await this.#security.hostSecurity(domain, host, domainSecurity, messageTls);
      if ("refused" in decided) {
        // RFC 7672 §2.2, RFC 8461 §4.2: this MX may not be used; the next may.
        lastFailure = decided.refused;
        lastHop = `${host.name}:${host.port}`;
        lastPolicy = decided.policy;
        const refusal = refusalFailure(
          decided.policy,
          decided.refused.enhancedStatus,
          decided.refused.text,
        );
        if (refusal !== null) {
          const hostEndpoint = { host: host.name, address: "", port: host.port };
          this.#sessionReporter(
            domain,
            host.name,
            { kind: decided.policy },
            domainSecurity,
            messageTls,
          )?.(hostEndpoint, "", refusal);
        }
        this.#options.logger.log("warn", "delivery.error", message.queueId, {
          next_hop: lastHop,
          tls_policy: decided.policy,
          reason: decided.refused.text,
        });
        this.#options.trace?.(`* ${lastHop}: not used: ${decided.refused.text}`);
        continue;
      }
      const security = decided;
      lastPolicy = policyName(security);
      this.#options.trace?.(`* ${host.name}:${host.port}: ${explainSecurity(security)}`);
      const report = this.#sessionReporter(domain, host.name, security, domainSecurity, messageTls);
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
            () => this.#connect(endpoint, signal, host.policy, security, report),
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
   * Where the TLS negotiations with one MX host are reported (RFC 8460), or
   * `null`: not for a configured route (no policy domain), nor for a message
   * that waived the policies with `TLS-Required: No` (RFC 8689 §5; TLS-RPT's
   * own reports carry it, and RFC 8460 §3 asks that their sessions not be
   * reported). A domain that announced an MTA-STS policy tern could not
   * fetch counts each session as that failure (RFC 8460 §4.3.2.2).
   */
  #sessionReporter(
    domain: string,
    mxHost: string,
    security: { readonly kind: string; readonly records?: readonly Tlsa[] },
    d: DomainSecurity,
    messageTls: MessageTls,
  ): SessionReport | null {
    const sink = this.#options.tlsReports;
    if (sink === undefined || !d.viaMx || messageTls.policiesWaived) return null;
    const policy = reportPolicy(security, d.sts, mxHost);
    const stsFailure = security.kind === "dane" ? null : stsLookupFailure(d.sts);
    return (endpoint, localAddress, failure) => {
      const kind = stsFailure ?? failure;
      sink.record({
        domain,
        policy: stsFailure === null ? policy : { type: "sts", strings: [], mxHosts: [] },
        failure: kind === null ? null : {
          ...kind,
          ...(localAddress === "" ? {} : { sendingIp: localAddress }),
          receivingMx: endpoint.host,
          ...(endpoint.address === "" ? {} : { receivingIp: endpoint.address }),
        },
      });
    };
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
