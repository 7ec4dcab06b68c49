/**
 * One SMTP listener of the configuration, made into an {@linkcode SmtpServer}
 * with tern's limits, TLS, AUTH and intake: the same code for a listener the
 * main thread serves and for one a session worker serves (session_worker.ts).
 *
 * @module
 */

import type { Config, ListenerConfig, ListenerMode } from "../config/schema.ts";
import type { Logger } from "../log/logger.ts";
import { countServerEvent } from "../metrics/observers.ts";
import { dnsFailures, dnsQueries, seriesOf } from "../metrics/tern.ts";
import type { AuthLimiter } from "../smtp/auth_limiter.ts";
import type { FdBudget } from "../smtp/fd_budget.ts";
import type { ConnectionCounts } from "../smtp/connection_counts.ts";
import { SASL_MECHANISMS } from "../smtp/sasl.ts";
import { type ConnectionInfo, type ServerLogEvent, SmtpServer } from "../smtp/server.ts";
import type { TlsContext } from "../smtp/tls_context.ts";
import type { ServerTrace } from "../smtp/trace.ts";
import { type DnsQuerier, StubResolver } from "../dns/resolver.ts";
import { DnsblChecker } from "./dnsbl.ts";
import { createIntake, type IntakeOptions } from "./intake.ts";
import type { ConfigSource } from "./live_config.ts";
import type { Milters } from "./milter_stage.ts";
import { clientBlock, isDnsblChecked, isTrustedClient } from "./policy.ts";
import { logRefusal } from "./refusal_log.ts";
import type { SendingLimits } from "./sending_limits.ts";

/** Counts the questions the resolvers send, and their failed tries. */
const DNS_METRICS = {
  onQuery: (qtype: string) => dnsQueries.inc({ type: qtype }),
  onFailure: (qtype: string, reason: string) => dnsFailures.inc({ type: qtype, reason }),
};

/**
 * The resolvers of a thread: one for the inbound checks and the relay, one
 * for the block lists.
 *
 * @param config `dns.nameservers`.
 * @param logger Where failures are logged.
 * @returns The resolver, and the block list checker over its own resolver.
 */
export function makeResolvers(
  config: Config,
  logger: Logger,
): { resolver: StubResolver; dnsbl: DnsblChecker } {
  const resolver = new StubResolver({
    nameservers: config.dns.nameservers,
    logger,
    ...DNS_METRICS,
  });
  // Block lists get their own resolver: a larger cache (one entry per
  // client), and a shorter wait, since a list that does not answer is
  // skipped (fail open) and the client waits at RCPT meanwhile.
  const dnsbl = new DnsblChecker({
    resolver: new StubResolver({
      nameservers: config.dns.nameservers,
      logger,
      timeoutMs: 1500,
      attempts: 2,
      cacheSize: 10_000,
      ...DNS_METRICS,
    }),
    logger,
  });
  return { resolver, dnsbl };
}

/** What every listener of a thread shares. */
export interface ListenerDeps {
  /** The configuration in force. */
  readonly live: ConfigSource;
  /** Where messages go (the store, or the main thread's store from a worker). */
  readonly queue: IntakeOptions["queue"];
  /** Where log lines go. */
  readonly logger: Logger;
  /** The certificate, or `null` without TLS. */
  readonly tls: TlsContext | null;
  /** AUTH failures per client, for every listener (a guesser gains nothing by switching ports). */
  readonly authLimiter: AuthLimiter;
  /** Messages and recipients per account, for every submission listener. */
  readonly sendingLimits: SendingLimits;
  /** The open-file budget of client sockets. */
  readonly fdBudget: FdBudget;
  /** The block lists. */
  readonly dnsbl: DnsblChecker;
  /** The resolver of the inbound checks. */
  readonly resolver: DnsQuerier;
  /** The milters' conversations. */
  readonly milters: Milters;
  /** When each connection's data last ended, for the intake latency. */
  readonly dataEnded: WeakMap<object, number>;
  /** The annotated protocol trace, or `null`. */
  readonly trace: ServerTrace | null;
  /** Called after each commit (the delivery loop's wake-up, or the main thread's). */
  readonly onQueued?: IntakeOptions["onQueued"];
  /** The delivery loop, when messages are handed to it at commit. */
  readonly handOff?: IntakeOptions["handOff"];
  /** Delivery at acceptance into local Maildirs. @default {none: every message is stored} */
  readonly direct?: IntakeOptions["direct"];
  /** Whether other threads listen on the same ports (SO_REUSEPORT). @default {false} */
  readonly reusePort?: boolean;
}

/**
 * The limits of a listener's sessions, from `limits` of the configuration.
 *
 * @param limits `limits` of the configuration.
 * @returns The server's limits.
 */
export function serverLimits(limits: Config["limits"]): {
  readonly maxMessageSize: number;
  readonly maxRecipients: number;
  readonly maxConnections: number;
  readonly maxConnectionsPerIp: number;
  readonly tlsHandshakeTimeout: number;
  readonly commandTimeout: number;
  readonly dataTimeout: number;
  readonly maxErrors: number;
} {
  return {
    maxMessageSize: limits.maxMessageSize,
    maxRecipients: limits.maxRecipients,
    maxConnections: limits.maxConnections,
    maxConnectionsPerIp: limits.maxConnectionsPerIp,
    tlsHandshakeTimeout: limits.tlsHandshakeTimeout,
    commandTimeout: limits.commandTimeout,
    dataTimeout: limits.dataTimeout,
    maxErrors: limits.maxBadCommands,
  };
}

/**
 * Makes the server of one listener; {@linkcode SmtpServer.listen} binds it.
 *
 * @param listener The listener's address, port and mode.
 * @param deps What the thread's listeners share.
 * @param counts The port's open connections, when other threads accept on it too.
 * @returns The server, not yet listening.
 */
export function listenerServer(
  listener: ListenerConfig,
  deps: ListenerDeps,
  counts?: ConnectionCounts,
): SmtpServer {
  const { live, logger, dnsbl, milters } = deps;
  const config = live.current;
  const series = seriesOf(listener.mode);
  const isSubmission = listener.mode !== "mx";
  return new SmtpServer({
    hostname: config.hostname,
    address: listener.address,
    port: listener.port,
    ...serverLimits(config.limits),
    reusePort: deps.reusePort ?? false,
    ...(counts === undefined ? {} : { connectionCounts: counts }),
    // Counted like AUTH failures: an IPv6 client usually holds a whole /64.
    keyOf: clientBlock,
    fdBudget: deps.fdBudget,
    // STARTTLS on mx and submission, implicit TLS on submissions (RFC 8314 §3).
    tls: deps.tls,
    implicitTls: listener.mode === "submissions",
    // AUTH for users' mail programs only, and only under TLS (RFC 4954 §4).
    authMechanisms: isSubmission ? SASL_MECHANISMS : [],
    authLimiter: deps.authLimiter,
    // A webmail on a trusted network speaks for all its users from one
    // address: count its failures per account only, or one user's typos
    // would lock everyone out.
    authAddressExempt: (address) => isTrustedClient(address, live.current.relay.trustedNetworks),
    // Early talkers are bots; other MTAs wait minutes for the banner.
    greetingDelay: (address) =>
      listener.mode === "mx" && !isTrustedClient(address, live.current.relay.trustedNetworks)
        ? live.current.limits.greetingDelay
        : 0,
    handlers: createIntake({
      config: live,
      mode: listener.mode,
      queue: deps.queue,
      logger,
      ...(deps.onQueued === undefined ? {} : { onQueued: deps.onQueued }),
      ...(deps.handOff === undefined ? {} : { handOff: deps.handOff }),
      ...(deps.direct === undefined ? {} : { direct: deps.direct }),
      sendingLimits: deps.sendingLimits,
      dnsbl,
      resolver: deps.resolver,
      milters,
    }),
    onEvent: (event) => {
      // Block lists are asked while the client is greeted: RCPT then waits at most once.
      if (event.type === "connect") {
        startDnsbl(dnsbl, listener.mode, event.connection, live.current);
      }
      if (event.type === "disconnect") milters.close(event.connection);
      if (event.type === "auth" && event.outcome === "succeeded") {
        milters.noteAuth(event.connection, event.mechanism);
      }
      countServerEvent(series, event, deps.dataEnded);
      logServerEvent(logger, event);
      deps.trace?.event(event);
    },
  });
}

/** Starts the block list lookup of a new connection, when its client is one to check. */
function startDnsbl(
  dnsbl: DnsblChecker,
  mode: ListenerMode,
  connection: ConnectionInfo,
  config: Config,
): void {
  const client = { mode, address: connection.remoteAddress, authenticatedAs: null };
  if (!isDnsblChecked(client, config)) return;
  // Never rejects: a failing list counts as not listing the client.
  void dnsbl.lookup(connection, connection.remoteAddress, config.dnsbl ?? []);
}

/**
 * Logs what a server reports: connections, refusals, TLS, AUTH, overloads.
 *
 * @param logger Where the lines go.
 * @param event What happened.
 */
export function logServerEvent(logger: Logger, event: ServerLogEvent): void {
  switch (event.type) {
    case "connect":
      logger.log("debug", "session.connect", undefined, {
        session: event.connection.id,
        client: event.connection.remoteAddress,
        port: event.connection.localPort,
      });
      break;
    case "disconnect":
      logger.log("debug", "session.disconnect", undefined, {
        session: event.connection.id,
        client: event.connection.remoteAddress,
        reason: event.reason,
      });
      break;
    case "refused":
      logger.log("warn", "session.refused", undefined, {
        client: event.remoteAddress,
        reason: event.reason,
      });
      break;
    case "error":
      logger.log("error", "session.error", undefined, {
        session: event.connection.id,
        client: event.connection.remoteAddress,
        error: event.error instanceof Error ? event.error.message : String(event.error),
      });
      break;
    case "overload":
      // Once per burst, not once per connection.
      if (event.state === "began") {
        logger.log("warn", "server.overloaded", undefined, {
          reason: event.reason,
          open: event.open,
        });
      } else {
        logger.log("info", "server.overload_ended", undefined, {
          reason: event.reason,
          refused: event.refused,
          open: event.open,
        });
      }
      break;
    case "relisten":
      logger.log(event.error === null ? "warn" : "error", "server.relisten", undefined, {
        address: event.address,
        port: event.port,
        error: event.error ?? undefined,
      });
      break;
    case "tls":
      logger.log("debug", "session.tls", undefined, {
        session: event.connection.id,
        client: event.connection.remoteAddress,
        protocol: event.protocol,
        cipher: event.cipher,
      });
      break;
    case "auth":
      // Never the password; the user name only once it is known to be an account.
      logger.log(event.outcome === "succeeded" ? "info" : "warn", "session.auth", undefined, {
        session: event.connection.id,
        client: event.connection.remoteAddress,
        mechanism: event.mechanism,
        result: event.outcome,
        user: event.outcome === "succeeded" ? event.connection.authenticatedAs : undefined,
        failures: event.failures,
        account_failures: event.accountFailures,
      });
      break;
    case "reply":
      // One line per refusal, with its context (refusal_log.ts).
      logRefusal(logger, event);
      break;
    case "command":
      break;
  }
}
