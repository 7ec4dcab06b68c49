/**
 * One message to one destination: the hosts tried in order, each address of
 * each host in turn, until one server completes the transaction. What that
 * server answered, refusals included, is the outcome; the hosts that could
 * not take the message are listed with why.
 *
 * @module
 */

import { resolveAddresses } from "../dns/mx.ts";
import type { DnsQuerier } from "../dns/resolver.ts";
import type { NextHop } from "../mta/routing.ts";
import { isIpv4, isIpv6 } from "../net/ip.ts";
import {
  type OutgoingMessage,
  SmtpAuthError,
  SmtpClient,
  type SmtpClientOptions,
  SmtpConnectionError,
  TlsHandshakeError,
  type TransactionResult,
} from "../smtp/client.ts";
import type { HostFailure } from "./send_error.ts";

/** How to connect, the same for every host of one send. */
export interface ConnectPolicy {
  /** Our EHLO name. */
  readonly helo: string;
  /** STARTTLS policy. */
  readonly tls: "required" | "opportunistic" | "none";
  /** Start TLS before the greeting (RFC 8314 §3). */
  readonly implicitTls: boolean;
  /** Whether to refuse a certificate that does not verify. */
  readonly verifyCertificate: boolean;
  /** Extra roots to trust. */
  readonly caCerts?: readonly string[];
  /** Credentials for AUTH. */
  readonly auth?: { readonly username: string; readonly password: string };
  /** The bound on each wait, ms. */
  readonly timeoutMs?: number;
}

/** What became of the message at one destination. */
export type DeliveryOutcome =
  /** A server completed the transaction: its answer for each recipient. */
  | { readonly kind: "sent"; readonly result: TransactionResult }
  /** No host took the message. */
  | { readonly kind: "failed"; readonly failures: readonly HostFailure[] };

/** One address to connect to: the host's name (for SNI and messages) and where it is. */
interface Endpoint {
  readonly name: string;
  readonly address: string;
  readonly port: number;
  readonly label: string;
}

/**
 * Sends the message to the first host that takes it.
 *
 * @param hops The hosts, in order.
 * @param message The envelope.
 * @param content The content, CRLF, not dot-stuffed.
 * @param policy TLS, AUTH, timeouts.
 * @param resolver When given, host names are resolved with it (MX delivery); else the system resolves them (smarthost).
 * @returns The transaction's result, or every host's failure.
 */
export async function deliver(
  hops: readonly NextHop[],
  message: OutgoingMessage,
  content: Uint8Array,
  policy: ConnectPolicy,
  resolver?: DnsQuerier,
): Promise<DeliveryOutcome> {
  const failures: HostFailure[] = [];
  for (const hop of hops) {
    const endpoints = await endpointsOf(hop, resolver, failures);
    for (const endpoint of endpoints) {
      try {
        return { kind: "sent", result: await sendVia(endpoint, message, content, policy) };
      } catch (error: unknown) {
        if (!(error instanceof SmtpConnectionError)) throw error;
        failures.push(failureOf(endpoint.label, error));
        // Refused credentials are the same at every host: trying more only locks the account.
        if (error instanceof SmtpAuthError) return { kind: "failed", failures };
      }
    }
  }
  return { kind: "failed", failures };
}

/** The addresses of a host: by tern's resolver for MX hosts, by name for a smarthost. */
async function endpointsOf(
  hop: NextHop,
  resolver: DnsQuerier | undefined,
  failures: HostFailure[],
): Promise<Endpoint[]> {
  const label = (address: string): string => {
    const host = isIpv6(hop.name) ? `[${hop.name}]` : hop.name;
    return address === hop.name ? `${host}:${hop.port}` : `${host}[${address}]:${hop.port}`;
  };
  if (resolver === undefined) {
    return [{ name: hop.name, address: hop.name, port: hop.port, label: label(hop.name) }];
  }
  try {
    const addresses = await resolveAddresses(hop.name, resolver);
    if (addresses.length === 0) {
      failures.push({ host: `${hop.name}:${hop.port}`, reason: "the host has no address" });
    }
    return addresses.map((address) => ({
      name: hop.name,
      address,
      port: hop.port,
      label: label(address),
    }));
  } catch (error: unknown) {
    const why = error instanceof Error ? error.message : String(error);
    failures.push({ host: `${hop.name}:${hop.port}`, reason: `DNS lookup failed: ${why}` });
    return [];
  }
}

/** Connects, sends, says QUIT. */
async function sendVia(
  endpoint: Endpoint,
  message: OutgoingMessage,
  content: Uint8Array,
  policy: ConnectPolicy,
): Promise<TransactionResult> {
  const client = await connect(endpoint, policy);
  try {
    return await client.send(message, () => ReadableStream.from([content]));
  } finally {
    await client.close();
  }
}

/** Connects; opportunistic TLS that fails its handshake goes on in plaintext (RFC 7435). */
async function connect(endpoint: Endpoint, policy: ConnectPolicy): Promise<SmtpClient> {
  const ms = policy.timeoutMs;
  const bare = endpoint.name.replace(/^\[(?:IPv6:)?|\]$/g, "");
  const options: SmtpClientOptions = {
    host: endpoint.address,
    port: endpoint.port,
    helo: policy.helo,
    tls: policy.tls,
    implicitTls: policy.implicitTls,
    verifyCertificate: policy.verifyCertificate,
    // SNI carries a host name, never an address (RFC 6066 §3).
    ...(isIpv4(bare) || isIpv6(bare) ? {} : { servername: endpoint.name }),
    ...(policy.caCerts === undefined ? {} : { caCerts: [...policy.caCerts] }),
    ...(policy.auth === undefined ? {} : { auth: policy.auth }),
    ...(ms === undefined ? {} : {
      connectTimeoutMs: ms,
      commandTimeoutMs: ms,
      dataInitiationTimeoutMs: ms,
      dataBlockTimeoutMs: ms,
      dataTerminationTimeoutMs: ms,
    }),
  };
  try {
    return await SmtpClient.connect(options);
  } catch (error: unknown) {
    if (!(error instanceof TlsHandshakeError) || policy.tls !== "opportunistic") throw error;
    if (policy.implicitTls) throw error;
    return await SmtpClient.connect({ ...options, tls: "none" });
  }
}

function failureOf(host: string, error: SmtpConnectionError): HostFailure {
  return error.reply === null
    ? { host, reason: error.message }
    : { host, reason: error.message, reply: error.reply };
}
