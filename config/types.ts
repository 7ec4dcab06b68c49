/**
 * The configuration's types and its defaults: what a loaded `Config` looks
 * like, and what a file that leaves a key out gets.
 *
 * @module
 */

import { isDomainName } from "./syntax.ts";
import type { DkimKey } from "../auth/dkim_keys.ts";

export type { DkimAlgorithm, DkimKey } from "../auth/dkim_keys.ts";

/** What a listener is for: MTA-to-MTA (`mx`), or users' mail programs (`submission`, `submissions`). */
export type ListenerMode = "mx" | "submission" | "submissions";

/** One listening socket. */
export interface ListenerConfig {
  /** The IP address to bind. */
  readonly address: string;
  /** The TCP port. */
  readonly port: number;
  /** What the listener is for. */
  readonly mode: ListenerMode;
}

/** Certificate and key files (PEM), absolute paths. */
export interface TlsConfig {
  /** The certificate chain, PEM (with `acme`: `<data_dir>/acme/cert.pem`). */
  readonly cert: string;
  /** The private key, PEM (with `acme`: `<data_dir>/acme/key.pem`). */
  readonly key: string;
  /** Certificates obtained and renewed automatically (RFC 8555), when set. */
  readonly acme?: AcmeConfig;
}

/** How to answer the CA's challenges: http-01 (RFC 8555 §8.3) or tls-alpn-01 (RFC 8737). */
export type AcmeChallenge = "http-01" | "tls-alpn-01";

/** `tls.acme`: where and how to get the certificate. */
export interface AcmeConfig {
  /** The CA's directory URL. */
  readonly directory: string;
  /** Contact URLs for the account (`mailto:`). */
  readonly contact: readonly string[];
  /** The names the certificate covers, the first also its common name. */
  readonly domains: readonly string[];
  /** The challenge type answered. */
  readonly challenge: AcmeChallenge;
  /** The address the challenge responder listens on. */
  readonly address: string;
  /** The port of the http-01 responder (plain HTTP). */
  readonly httpPort: number;
  /** The port of the tls-alpn-01 responder (TLS). */
  readonly tlsPort: number;
  /** An extra CA (PEM) trusted for the directory's HTTPS, or `null`. */
  readonly caFile: string | null;
}

/** One local mailbox. */
export interface AccountConfig {
  /** A hash made by `tern hash-password`; absent: the account receives mail but cannot log in. */
  readonly password?: string;
}

/**
 * TLS on a relay route: `none` never tries STARTTLS; `opportunistic` uses it
 * when offered (RFC 7435); `require` fails (defers) unless STARTTLS succeeds,
 * any certificate; `verify` also needs a certificate valid for the host name
 * against the system's roots.
 */
export type RouteTls = "none" | "opportunistic" | "require" | "verify";

/** How tern talks to one route's next hop (a smarthost). */
export interface RoutePolicy {
  /** The STARTTLS policy. */
  readonly tls: RouteTls;
  /** AUTH (RFC 4954) at the smarthost, or `null`. */
  readonly auth: {
    readonly username: string;
    /** Where the password was read from (absolute). */
    readonly passwordFile: string;
    /** The first line of `passwordFile`, read when the configuration is loaded. */
    readonly password: string;
    /** AUTH over a connection without TLS is allowed (only with `tls: none`). */
    readonly allowPlaintext: boolean;
  } | null;
}

/** The admin HTTP listener. */
export interface AdminConfig {
  /** The IP address to bind; loopback unless a management network needs it. */
  readonly address: string;
  /** The TCP port. */
  readonly port: number;
}

/** Default `admin` address and port, when `admin:` is given without them. */
export const DEFAULT_ADMIN: AdminConfig = Object.freeze({ address: "127.0.0.1", port: 9025 });

/** Sender Rewriting Scheme for mail forwarded by an alias to another domain. */
export interface SrsConfig {
  /** Where the secret was read from (absolute). */
  readonly secretFile: string;
  /** The first line of `secretFile`, read when the configuration is loaded. */
  readonly secret: string;
  /** The domain of rewritten addresses (`SRS0=…@domain`), a local domain. */
  readonly domain: string;
}

/** The whole configuration, complete and frozen. */
export interface Config {
  /** The file it was loaded from, absolute, or `null` for the built-in defaults. */
  readonly file: string | null;
  /** Banner, EHLO and Received name. */
  readonly hostname: string;
  /** Holds the queue store and, by default, the mail root. Absolute. */
  readonly dataDir: string;
  /** The listening sockets. */
  readonly listeners: readonly ListenerConfig[];
  /** TLS certificate, or `null` when TLS is not configured. */
  readonly tls: TlsConfig | null;
  /** Domains delivered here, lower case. */
  readonly localDomains: readonly string[];
  /** Local mailboxes by address, the address lower case. */
  readonly accounts: Readonly<Record<string, AccountConfig>>;
  /** Aliases by address (lower case) to one or more target addresses. */
  readonly aliases: Readonly<Record<string, readonly string[]>>;
  /** A mailbox is the Maildir `<mailRoot>/<domain>/<local-part>/`. Absolute. */
  readonly mailRoot: string;
  /** Relay policy and routes. */
  readonly relay: {
    /** CIDR blocks that may relay without AUTH; empty means nobody. */
    readonly trustedNetworks: readonly string[];
    /** Next hop by recipient domain (`"*"` for the rest): `"host:port"` or `"mx"`. */
    readonly routes: Readonly<Record<string, string>>;
    /**
     * TLS and AUTH for the routes written as a mapping (`{ host, tls, auth }`),
     * by the same domain keys as `routes`; a route not listed here uses
     * opportunistic TLS and no AUTH.
     */
    readonly routePolicies?: Readonly<Record<string, RoutePolicy>>;
    /** Outgoing connections at once, in total. */
    readonly maxConnections: number;
    /** Outgoing connections at once to one host and port. */
    readonly maxConnectionsPerDestination: number;
    /** `relay.ca_file`: the file of extra CAs trusted for next hops and MTA-STS policy fetches; absent: the system's only. */
    readonly caFile?: string;
    /** The PEM certificates of `caFile`, read at load. */
    readonly caCerts?: readonly string[];
    /** `relay.mta_sts`: apply MTA-STS (RFC 8461) to MX delivery; absent means `true`. */
    readonly mtaSts?: boolean;
    /** `relay.dane`: apply DANE (RFC 7672) to MX delivery; absent means `true`. */
    readonly dane?: boolean;
    /** `relay.tls_rpt`: TLS reports (RFC 8460) to the domains mail is relayed to; absent: the defaults (on). */
    readonly tlsRpt?: TlsRptConfig;
  };
  /** DNS resolution. */
  readonly dns: {
    /** `host:port` name servers, or `null` for the system resolver (`/etc/resolv.conf`). */
    readonly nameservers: readonly string[] | null;
  };
  /** The queue's retry schedule. */
  readonly queue: {
    /** Waits between attempts in ms; the last one repeats. */
    readonly retry: readonly number[];
    /** Age in ms after which an undelivered message bounces. */
    readonly maxAge: number;
    /** Age in ms after which the sender is told the message is delayed (RFC 3464 "delayed"); 0 = never. */
    readonly delayWarning: number;
    /**
     * Mail for local Maildir mailboxes only is written into them before the
     * `250`, without the store; what fails then goes to the store.
     */
    readonly deliverAtAcceptance: boolean;
    /** A `postgres://` URL of a store shared by several nodes; absent: Deno KV in `data_dir`. */
    readonly store?: string;
    /** How long a claim keeps other workers away unless renewed, ms; absent: the store's default. */
    readonly lease?: number;
  };
  /** Limits on what clients may do. */
  readonly limits: {
    /** Bytes; advertised as SIZE. */
    readonly maxMessageSize: number;
    /** Recipients per transaction. */
    readonly maxRecipients: number;
    /** Connections in total. */
    readonly maxConnections: number;
    /** Connections per client address. */
    readonly maxConnectionsPerIp: number;
    /** Wait for the next command, ms (RFC 5321 §4.5.3.2.7: at least 5 minutes). */
    readonly commandTimeout: number;
    /** Wait for the next data block, ms (RFC 5321 §4.5.3.2.6). */
    readonly dataTimeout: number;
    /** Wait for a client's TLS handshake to complete (implicit TLS or STARTTLS), ms. */
    readonly tlsHandshakeTimeout: number;
    /**
     * Wait before the banner on mx listeners, ms, for clients outside
     * `relay.trustedNetworks`; a client that talks first is refused. 0: no wait.
     */
    readonly greetingDelay: number;
    /** Commands refused with 5yz in one session before it is closed with 421. */
    readonly maxBadCommands: number;
    /** On SIGTERM, how long transactions in flight may take to finish before they are cut, ms. */
    readonly shutdownGrace: number;
    /** Failed AUTH from one client address before it is disconnected and locked out. */
    readonly maxAuthFailures: number;
    /** Delay before answering a failed AUTH, ms; it doubles with each further failure. */
    readonly authFailureDelay: number;
    /** How long failed AUTH attempts are remembered, ms (so how long a lockout lasts). */
    readonly authLockout: number;
    /** Messages one authenticated account may submit per hour (sliding, 5-minute buckets); 0: no limit. */
    readonly userMessagesPerHour: number;
    /** Recipients one authenticated account may submit to per day (sliding, 1-hour buckets); 0: no limit. */
    readonly userRecipientsPerDay: number;
  };
  /** The admin HTTP listener (`/metrics`, `/healthz`, `/readyz`), or absent/`null` when off. */
  readonly admin?: AdminConfig | null;
  /** SRS for alias-forwarded mail, or absent/`null` when off. */
  readonly srs?: SrsConfig | null;
  /** DNS block lists asked about mx clients outside `relay.trusted_networks`; absent or `[]`: none. */
  readonly dnsbl?: readonly DnsblConfig[];
  /** Milters (Sendmail's content filter protocol) asked about each message, in order; absent or `[]`: none. */
  readonly milters?: readonly MilterConfig[];
  /** The inbound checks of mx listeners (SPF, DKIM, DMARC). */
  readonly authentication: AuthenticationConfig;
  /** DKIM signing keys (RFC 6376, RFC 8463), or absent when mail is not signed. */
  readonly dkim?: DkimConfig;
  /** Mail submission policy (RFC 6409) for authenticated users. */
  readonly submission: {
    /**
     * An authenticated user may send only as one of their own addresses: the
     * account, its `+tag` forms, an alias that leads to it; and not as `<>`.
     */
    readonly senderMustMatch: boolean;
    /**
     * Dovecot's auth service (`submission.auth: dovecot:...`), which then
     * checks AUTH logins instead of `accounts`; absent: `accounts`.
     */
    readonly dovecotAuth?: SocketEndpoint;
  };
  /** The LMTP server (RFC 2033) local mailboxes are delivered to; absent: Maildir files under `mail_root`. */
  readonly mailboxTransport?: SocketEndpoint;
  /**
   * `workers`: threads that run the mx listeners' SMTP sessions, sharing
   * their ports (0: every session on the main thread; `auto`: one per core
   * but one from four cores on, else 0). Absent: `auto`.
   */
  readonly workers?: number | "auto";
  /** `mta_sts_policy`: the MTA-STS policy (RFC 8461) tern serves for its local domains; absent: none. */
  readonly mtaStsPolicy?: MtaStsPolicyConfig;
  /** Logging. */
  readonly log: {
    /** The least severe level written. */
    readonly level: "debug" | "info" | "warn" | "error";
    /** `text` (`key=value`) or `json`, one line per event. */
    readonly format: "text" | "json";
  };
}

/** `relay.tls_rpt`: SMTP TLS Reporting (RFC 8460); a field left out takes its default. */
export interface TlsRptConfig {
  /** Count TLS sessions and send the daily reports. Default `true`. */
  readonly enabled?: boolean;
  /** The report's `organization-name`. Default: `hostname`. */
  readonly organization?: string;
  /** The report's `contact-info`. Default: `from`. */
  readonly contact?: string;
  /** The sender of report mail. Default `postmaster@<hostname>`. */
  readonly from?: string;
}

/** `mta_sts_policy`: the policy tern publishes (RFC 8461 §3.2) and where it serves it. */
export interface MtaStsPolicyConfig {
  /** `enforce`, `testing` or `none`. */
  readonly mode: "enforce" | "testing" | "none";
  /** The MX host names (or `*.` patterns) senders may use. */
  readonly mx: readonly string[];
  /** How long senders may cache the policy, ms (whole seconds). */
  readonly maxAge: number;
  /** The HTTPS listener. */
  readonly listen: { readonly address: string; readonly port: number };
}

/** A stream socket to connect to: a TCP host and port, or a Unix-domain socket path. */
export type SocketEndpoint =
  | { readonly host: string; readonly port: number; readonly path?: undefined }
  | { readonly path: string; readonly host?: undefined; readonly port?: undefined };

/** A log level, least severe first. */
export type LogLevelName = Config["log"]["level"];

/** A log format. */
export type LogFormatName = Config["log"]["format"];

// ---------------------------------------------------------------------------
// Defaults: with no file at all, these make a working server on 127.0.0.1:2525.

/** Default `data_dir`, relative to the config file's directory (or the working directory). */
export const DEFAULT_DATA_DIR = "./data";

/** Default `mail_root`, relative to `data_dir`. */
export const DEFAULT_MAIL_ROOT_NAME = "mail";

/** Default `listeners`: one mx listener on 127.0.0.1:2525 (an unprivileged port, loopback only). */
export const DEFAULT_LISTENERS: readonly ListenerConfig[] = Object.freeze([
  Object.freeze({ address: "127.0.0.1", port: 2525, mode: "mx" as const }),
]);

/** Default `local_domains`. */
export const DEFAULT_LOCAL_DOMAINS: readonly string[] = Object.freeze(["localhost"]);

/** Default `relay.trusted_networks`: the loopback networks, IPv4 and IPv6. */
export const DEFAULT_TRUSTED_NETWORKS: readonly string[] = Object.freeze([
  "127.0.0.0/8",
  "::1/128",
]);

/** Default outgoing connection limits: 20 in all, 4 to one host (RFC 5321 §4.5.4.1 asks for restraint). */
export const DEFAULT_RELAY_LIMITS: {
  readonly maxConnections: number;
  readonly maxConnectionsPerDestination: number;
} = Object.freeze({ maxConnections: 20, maxConnectionsPerDestination: 4 });

/** Default `relay.routes`: every domain by DNS MX lookup. A file's routes are added to it. */
export const DEFAULT_ROUTES: Readonly<Record<string, string>> = Object.freeze({ "*": "mx" });

/** Default `queue`: retry after 1m, 5m, 15m, 1h, then every 4h; warn the sender after 4h; bounce after 5 days. */
export const DEFAULT_QUEUE: Config["queue"] = Object.freeze({
  retry: Object.freeze([60_000, 300_000, 900_000, 3_600_000, 14_400_000]),
  maxAge: 432_000_000,
  delayWarning: 14_400_000,
  deliverAtAcceptance: true,
});

/** Default `limits`. */
export const DEFAULT_LIMITS: Config["limits"] = Object.freeze({
  maxMessageSize: 26_214_400, // 25 MiB
  // RFC 5321 §4.5.3.1.8: a server must accept at least 100 recipients.
  maxRecipients: 100,
  maxConnections: 1000,
  maxConnectionsPerIp: 50,
  // RFC 5321 §4.5.3.2.7: wait at least 5 minutes for the next command.
  commandTimeout: 300_000,
  // RFC 5321 §4.5.3.2.6 asks for 3 minutes per data block; 10 is kinder to slow links.
  dataTimeout: 600_000,
  // A real client shakes hands in well under a second; one that does not is holding a socket.
  tlsHandshakeTimeout: 10_000,
  // Long enough to catch bots that do not wait for the banner; real MTAs wait minutes (§4.5.3.2.1).
  greetingDelay: 1000,
  maxBadCommands: 20,
  shutdownGrace: 10_000,
  maxAuthFailures: 5,
  authFailureDelay: 1000,
  authLockout: 900_000,
  // Far above what a person sends; a stolen password meets them within minutes.
  userMessagesPerHour: 500,
  userRecipientsPerDay: 2000,
});

/** Default `submission`: users send only as their own addresses. */
export const DEFAULT_SUBMISSION: Config["submission"] = Object.freeze({ senderMustMatch: true });

/** Default `log`. */
export const DEFAULT_LOG: Config["log"] = Object.freeze({ level: "info", format: "text" });

/** Default `hostname` when the OS host name is not a usable domain name (or cannot be read). */
export const FALLBACK_HOSTNAME = "localhost";

/**
 * The default `hostname`: the OS host name, or {@linkcode FALLBACK_HOSTNAME}
 * when it cannot be read (no `--allow-sys`) or is not a valid domain name.
 *
 * @returns The host name to announce.
 *
 * @example Read the default host name
 * ```ts
 * import { defaultHostname } from "./schema.ts";
 * import assert from "node:assert/strict";
 *
 * assert.ok(defaultHostname().length > 0);
 * ```
 */
export function defaultHostname(): string {
  try {
    const name = Deno.hostname();
    return isDomainName(name) ? name : FALLBACK_HOSTNAME;
  } catch {
    return FALLBACK_HOSTNAME;
  }
}

/** `dkim`: the keys that sign outgoing mail. */
export interface DkimConfig {
  /** The keys, in the file's order. */
  readonly keys: readonly DkimKeyConfig[];
}

/** One entry of `dkim.keys`. */
export interface DkimKeyConfig {
  /** The signing domain (`d=`), lower case: it signs mail whose From: is this domain or below it. */
  readonly domain: string;
  /** The selector (`s=`); the public key is published at `<selector>._domainkey.<domain>`. */
  readonly selector: string;
  /** The private key file (PEM), absolute. */
  readonly key: string;
  /** The key as read when the configuration was loaded; absent when secrets were not read. */
  readonly parsed?: DkimKey;
}

/** `authentication`: what mx listeners check of incoming mail, and how they report it. */
export interface AuthenticationConfig {
  /** The name in `Authentication-Results` (RFC 8601 §2.5); default: the hostname. */
  readonly authservId: string;
  /** SPF, RFC 7208. */
  readonly spf: boolean;
  /** DKIM verification, RFC 6376. */
  readonly dkim: boolean;
  /** DMARC, RFC 9989. */
  readonly dmarc: boolean;
  /** Refuse (550 5.7.1 after the data) a DMARC fail whose policy is `reject`. */
  readonly dmarcReject: boolean;
}

/** One milter of `milters`. */
export interface MilterConfig {
  /** Where it listens: `host:port`, `[v6]:port`, `unix:/path` or `/path`. */
  readonly address: string;
  /** How long connecting and negotiating may take, ms. */
  readonly connectTimeout: number;
  /** How long the answer to each command may take, ms. */
  readonly commandTimeout: number;
  /** How long the answer to the end of the message may take, ms. */
  readonly eomTimeout: number;
  /** What happens when it is down, slow or talks nonsense: `tempfail` (451 4.7.1) or `accept` (go on without it). */
  readonly defaultAction: "tempfail" | "accept";
  /** The listener modes whose mail it sees. */
  readonly listeners: readonly ListenerMode[];
}

/** One DNS block list (RFC 5782) of `dnsbl`. */
export interface DnsblConfig {
  /** The zone, like `zen.spamhaus.org`. */
  readonly zone: string;
  /** The A answers that mean "listed", or `null` for any 127.0.0.0/8 one but 127.255.255.x. */
  readonly codes: readonly string[] | null;
  /** An allow list (DNSWL): a client it lists is refused by no block list. */
  readonly allow?: boolean;
}
