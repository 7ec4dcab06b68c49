/**
 * The configuration of tern: its type, its defaults and its validator, in one
 * place. YAML keys are snake_case (as users write them); the loaded object is
 * camelCase, complete (defaults applied), with durations in milliseconds,
 * sizes in bytes and paths absolute. Nothing outside config/ sees `"5m"`.
 *
 * @module
 */

import { isIP, isIPv4, isIPv6 } from "node:net";
import { basename, join, resolve } from "node:path";
import { parseDuration, parseSize } from "./duration.ts";
import { ConfigError, type ConfigProblem } from "./errors.ts";
import { isPasswordHash } from "./password.ts";
import { validateAliases } from "../mda/recipient.ts";

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
  /** The certificate chain, PEM. */
  readonly cert: string;
  /** The private key, PEM. */
  readonly key: string;
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
  };
  /** SRS for alias-forwarded mail, or absent/`null` when off. */
  readonly srs?: SrsConfig | null;
  /** Mail submission policy (RFC 6409) for authenticated users. */
  readonly submission: {
    /**
     * An authenticated user may send only as one of their own addresses: the
     * account, its `+tag` forms, an alias that leads to it; and not as `<>`.
     */
    readonly senderMustMatch: boolean;
  };
  /** Logging. */
  readonly log: {
    /** The least severe level written. */
    readonly level: "debug" | "info" | "warn" | "error";
    /** `text` (`key=value`) or `json`, one line per event. */
    readonly format: "text" | "json";
  };
}

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

// ---------------------------------------------------------------------------
// Syntax of the values.

/** RFC 1035 §2.3.1 "preferred name syntax" (LDH labels), as RFC 5321 §4.1.2 `Domain` requires. */
function isDomainName(name: string): boolean {
  if (name.length === 0 || name.length > 253) return false;
  return name.split(".").every((label) =>
    /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(label)
  );
}

/** RFC 5321 §4.1.3: `[192.0.2.1]` or `[IPv6:2001:db8::1]`. */
function isAddressLiteral(text: string): boolean {
  const match = /^\[(.*)\]$/.exec(text);
  if (match === null) return false;
  const inner = match[1] ?? "";
  if (/^IPv6:/i.test(inner)) return isIPv6(inner.slice(5));
  return isIPv4(inner);
}

/**
 * RFC 5321 §4.1.2 `Dot-string` local part (atext and dots), with UTF-8 allowed
 * as RFC 6531 does. Quoted local parts are refused: they are legal but rare,
 * and nearly always a mistake in a configuration file.
 */
const LOCAL_PART =
  /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\u{10FFFF}]+(?:\.[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\u{10FFFF}]+)*$/u;

/** Splits `local@domain`; `null` when it is not a mailbox address. */
function parseAddress(text: string): { local: string; domain: string } | null {
  const at = text.lastIndexOf("@");
  if (at <= 0) return null;
  const local = text.slice(0, at);
  const domain = text.slice(at + 1);
  // RFC 5321 §4.5.3.1.1: a local part is at most 64 octets.
  if (new TextEncoder().encode(local).length > 64 || !LOCAL_PART.test(local)) return null;
  if (!isDomainName(domain)) return null;
  return { local, domain: domain.toLowerCase() };
}

/** A port written as digits, 1–65535; `null` otherwise. */
function parsePort(text: string): number | null {
  if (!/^\d{1,5}$/.test(text)) return null;
  const port = Number(text);
  return port >= 1 && port <= 65535 ? port : null;
}

/** `host:port`, host a name, an IPv4 address or `[IPv6]`; normalized (host lower case), or `null`. */
function parseHostPort(text: string): string | null {
  const bracketed = /^\[([^\]]+)\]:(\d+)$/.exec(text);
  if (bracketed !== null) {
    const port = parsePort(bracketed[2] ?? "");
    const host = bracketed[1] ?? "";
    return isIPv6(host) && port !== null ? `[${host.toLowerCase()}]:${port}` : null;
  }
  const colon = text.lastIndexOf(":");
  if (colon <= 0) return null;
  const host = text.slice(0, colon);
  const port = parsePort(text.slice(colon + 1));
  if (port === null || !(isIPv4(host) || isDomainName(host))) return null;
  return `${host.toLowerCase()}:${port}`;
}

/** A name server: `ip`, `ip:port` or `[ipv6]:port`, normalized to `ip:port` / `[ipv6]:port` (port 53 by default). */
function parseNameserver(text: string): string | null {
  if (isIPv4(text)) return `${text}:53`;
  if (isIPv6(text)) return `[${text.toLowerCase()}]:53`;
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (bracketed !== null) {
    const host = bracketed[1] ?? "";
    const port = bracketed[2] === undefined ? 53 : parsePort(bracketed[2]);
    return isIPv6(host) && port !== null ? `[${host.toLowerCase()}]:${port}` : null;
  }
  const colon = text.lastIndexOf(":");
  const host = text.slice(0, colon);
  const port = parsePort(text.slice(colon + 1));
  return colon > 0 && isIPv4(host) && port !== null ? `${host}:${port}` : null;
}

/** A CIDR block, or a bare address meaning /32 or /128; normalized with its prefix length, or `null`. */
function parseNetwork(text: string): string | null {
  const slash = text.indexOf("/");
  const address = slash === -1 ? text : text.slice(0, slash);
  const version = isIP(address);
  if (version === 0) return null;
  const bits = version === 4 ? 32 : 128;
  if (slash === -1) return `${address.toLowerCase()}/${bits}`;
  const prefix = text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(prefix) || Number(prefix) > bits) return null;
  return `${address.toLowerCase()}/${Number(prefix)}`;
}

/** An IPv4 address as a 32-bit number, or an IPv6 address as a 128-bit one. */
function addressBits(address: string, version: 4 | 6): bigint {
  if (version === 4) {
    return address.split(".").reduce((n, octet) => (n << 8n) | BigInt(Number(octet)), 0n);
  }
  // Expand `::` and a trailing dotted IPv4 part into eight groups of 16 bits.
  let text = address.toLowerCase().replace(/%.*$/, "");
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted !== null) {
    const v4 = addressBits(dotted[1] ?? "0.0.0.0", 4);
    text = text.slice(0, dotted.index) +
      `${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const [head = "", tail] = text.split("::");
  const left = head === "" ? [] : head.split(":");
  const right = tail === undefined || tail === "" ? [] : tail.split(":");
  const groups = tail === undefined
    ? left
    : [...left, ...Array<string>(8 - left.length - right.length).fill("0"), ...right];
  return groups.reduce((n, group) => (n << 16n) | BigInt(parseInt(group, 16)), 0n);
}

/** Writes a number back as an address: dotted IPv4, or compressed IPv6 as URLs write it. */
function bitsAddress(bits: bigint, version: 4 | 6): string {
  if (version === 4) {
    return [24n, 16n, 8n, 0n].map((shift) => String((bits >> shift) & 0xffn)).join(".");
  }
  const groups = [112n, 96n, 80n, 64n, 48n, 32n, 16n, 0n].map((shift) =>
    ((bits >> shift) & 0xffffn).toString(16)
  );
  return canonicalIp(groups.join(":")).replace(/^\[(.*)\]$/, "$1");
}

/**
 * The network a CIDR block names when its address has bits set past the
 * prefix (`10.1.2.3/8` → `10.0.0.0/8`), or `null` when it has none. Such a
 * block is usually a typo for a host or for the network, and matching it
 * silently as the network would trust more clients than the writer meant.
 */
function hostBitsFix(network: string): string | null {
  const slash = network.indexOf("/");
  const address = network.slice(0, slash);
  const prefix = BigInt(network.slice(slash + 1));
  const version = isIPv4(address) ? 4 : 6;
  const width = version === 4 ? 32n : 128n;
  const bits = addressBits(address, version);
  const mask = ((1n << width) - 1n) ^ ((1n << (width - prefix)) - 1n);
  if ((bits & mask) === bits) return null;
  return `${bitsAddress(bits & mask, version)}/${prefix}`;
}

/** The same IP address written the same way, for comparing listeners. */
function canonicalIp(address: string): string {
  if (!isIPv6(address)) return address;
  try {
    return new URL(`http://[${address}]/`).hostname;
  } catch {
    return address.toLowerCase(); // a zone index (fe80::1%eth0) is not a URL host
  }
}

// ---------------------------------------------------------------------------
// The YAML names, per mapping.

const TOP_KEYS = [
  "hostname",
  "data_dir",
  "listeners",
  "tls",
  "local_domains",
  "accounts",
  "aliases",
  "mail_root",
  "relay",
  "dns",
  "queue",
  "limits",
  "log",
  "submission",
  "srs",
] as const;
const SRS_KEYS = ["secret_file", "domain"] as const;
const ROUTE_KEYS = ["host", "tls", "auth"] as const;
const ROUTE_AUTH_KEYS = ["username", "password_file", "allow_plaintext"] as const;
const ROUTE_TLS = ["none", "opportunistic", "require", "verify"] as const;
const LISTENER_KEYS = ["address", "port", "mode"] as const;
const TLS_KEYS = ["cert", "key"] as const;
const ACCOUNT_KEYS = ["password"] as const;
const RELAY_KEYS = [
  "trusted_networks",
  "routes",
  "max_connections",
  "max_connections_per_destination",
] as const;
const DNS_KEYS = ["nameservers"] as const;
const QUEUE_KEYS = ["retry", "max_age", "delay_warning"] as const;
const LIMITS_KEYS = [
  "max_message_size",
  "max_recipients",
  "max_connections",
  "max_connections_per_ip",
  "command_timeout",
  "data_timeout",
  "tls_handshake_timeout",
  "greeting_delay",
  "max_bad_commands",
  "shutdown_grace",
  "max_auth_failures",
  "auth_failure_delay",
  "auth_lockout",
] as const;
const SUBMISSION_KEYS = ["sender_must_match"] as const;
const LOG_KEYS = ["level", "format"] as const;

/**
 * Every key the configuration accepts, by section (`""` is the top level,
 * `listeners[]` a listener, `accounts.*` an account). The reference in
 * docs/configuration.md is checked against this list, so it cannot drift.
 */
export const CONFIG_KEYS: Readonly<Record<string, readonly string[]>> = Object.freeze({
  "": TOP_KEYS,
  "listeners[]": LISTENER_KEYS,
  tls: TLS_KEYS,
  "accounts.*": ACCOUNT_KEYS,
  relay: RELAY_KEYS,
  "relay.routes.*": ROUTE_KEYS,
  "relay.routes.*.auth": ROUTE_AUTH_KEYS,
  srs: SRS_KEYS,
  dns: DNS_KEYS,
  queue: QUEUE_KEYS,
  limits: LIMITS_KEYS,
  submission: SUBMISSION_KEYS,
  log: LOG_KEYS,
});

const LISTENER_MODES: readonly ListenerMode[] = ["mx", "submission", "submissions"];
const LOG_LEVELS: readonly LogLevelName[] = ["debug", "info", "warn", "error"];
const LOG_FORMATS: readonly LogFormatName[] = ["text", "json"];

/** Levenshtein distance, for "did you mean". */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current[j] = Math.min(
        (previous[j] ?? 0) + 1,
        (current[j - 1] ?? 0) + 1,
        (previous[j - 1] ?? 0) + cost,
      );
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

/**
 * The known key closest to an unknown one: at edit distance 2 or less, the
 * same words in camelCase or kebab-case, or a known key with letters added.
 */
function suggestKey(key: string, known: readonly string[]): string | undefined {
  const snake = key.replace(/([a-z0-9])([A-Z])/g, "$1_$2").replace(/-/g, "_").toLowerCase();
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of known) {
    // `keyfile` for `key`, `logging` for `log`: a known name with a tail added.
    const isExtended = candidate.length >= 3 && snake.startsWith(candidate);
    const distance = snake === candidate ? 0 : isExtended ? 2 : editDistance(key, candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

/** How a found value is shown in a message: strings quoted, collections by kind. */
function describe(value: unknown): string {
  if (value === null || value === undefined) return "nothing";
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number" || typeof value === "boolean" || typeof value === "bigint") {
    return String(value);
  }
  if (Array.isArray(value)) return value.length === 0 ? "an empty list" : "a list";
  if (value instanceof Date) return "a date";
  if (value instanceof Uint8Array) return "binary data";
  return "a mapping";
}

function isMapping(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const prototype: unknown = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

function child(path: string, key: string): string {
  return path === "" ? key : `${path}.${key}`;
}

/** Collects problems while the validator walks the raw value, so every one is reported. */
class Checker {
  readonly problems: ConfigProblem[] = [];
  readonly #file: string;
  /** Whether secret files are read (see `ValidateConfigOptions.readSecrets`). */
  readSecrets = true;

  constructor(file: string) {
    this.#file = file;
  }

  report(keyPath: string, message: string): void {
    this.problems.push({ file: this.#file, keyPath, message });
  }

  /** Reports keys that are not in `known`, with a suggestion when one is near. */
  unknownKeys(map: Record<string, unknown>, path: string, known: readonly string[]): void {
    for (const key of Object.keys(map)) {
      if (known.includes(key)) continue;
      const suggestion = suggestKey(key, known);
      const hint = suggestion === undefined ? "" : ` (did you mean ${JSON.stringify(suggestion)}?)`;
      this.report(child(path, key), `unknown key${hint}`);
    }
  }

  /**
   * A section (`limits:`): a mapping whose keys are all known. Left empty
   * (`limits:` alone, which YAML reads as null), it means all defaults.
   */
  section(value: unknown, path: string, known: readonly string[]): Record<string, unknown> {
    if (value === undefined || value === null) return {};
    if (!isMapping(value)) {
      this.report(path, `expected a mapping (key: value lines), found ${describe(value)}`);
      return {};
    }
    this.unknownKeys(value, path, known);
    return value;
  }

  /** A value that must be a list; `undefined` after reporting when it is not. */
  list(value: unknown, path: string, expected: string): unknown[] | undefined {
    if (Array.isArray(value)) return value;
    this.report(path, `expected ${expected}, found ${describe(value)}`);
    return undefined;
  }

  /** A value that must be a string; `undefined` after reporting when it is not. */
  string(value: unknown, path: string, expected: string): string | undefined {
    if (typeof value === "string") return value;
    this.report(path, `expected ${expected}, found ${describe(value)}`);
    return undefined;
  }

  oneOf<T extends string>(value: unknown, path: string, choices: readonly T[]): T | undefined {
    const found = choices.find((choice) => choice === value);
    if (found === undefined) {
      this.report(path, `expected one of ${choices.join(", ")}, found ${describe(value)}`);
    }
    return found;
  }

  positiveInteger(value: unknown, path: string): number | undefined {
    if (typeof value === "number" && Number.isSafeInteger(value) && value > 0) return value;
    this.report(path, `expected a positive integer, found ${describe(value)}`);
    return undefined;
  }

  /** A duration longer than zero, in ms. */
  duration(value: unknown, path: string): number | undefined {
    if (typeof value !== "string") {
      this.report(
        path,
        `expected a duration like "30s", "5m", "4h" or "5d", found ${describe(value)}`,
      );
      return undefined;
    }
    let ms: number;
    try {
      ms = parseDuration(value);
    } catch {
      this.report(path, `not a duration: ${describe(value)}`);
      return undefined;
    }
    if (ms > 0) return ms;
    this.report(path, `must be longer than 0, found ${describe(value)}`);
    return undefined;
  }

  /** A duration of zero or more, in ms (`0s` turns a delay off). */
  durationOrZero(value: unknown, path: string): number | undefined {
    if (value === 0 || value === "0") return 0;
    if (typeof value === "string") {
      try {
        return parseDuration(value);
      } catch {
        this.report(path, `not a duration: ${describe(value)}`);
        return undefined;
      }
    }
    this.report(
      path,
      `expected a duration like "500ms", "1s" or "0s", found ${describe(value)}`,
    );
    return undefined;
  }

  /** `true` or `false`. */
  boolean(value: unknown, path: string): boolean | undefined {
    if (typeof value === "boolean") return value;
    this.report(path, `expected true or false, found ${describe(value)}`);
    return undefined;
  }

  /** A size larger than zero, in bytes. */
  size(value: unknown, path: string): number | undefined {
    if (typeof value === "number" || typeof value === "string") {
      try {
        const bytes = parseSize(value);
        if (bytes > 0) return bytes;
      } catch {
        // reported below
      }
    }
    this.report(
      path,
      `expected a size in bytes like 26214400 or "25M" (k, M, G are 1024-based), found ${
        describe(value)
      }`,
    );
    return undefined;
  }

  /** A file or directory path, resolved against `baseDir`. */
  path(
    value: unknown,
    path: string,
    baseDir: string,
    expected = "a file path",
  ): string | undefined {
    if (typeof value === "string" && value !== "") return resolve(baseDir, value);
    this.report(path, `expected ${expected}, found ${describe(value)}`);
    return undefined;
  }
}

// ---------------------------------------------------------------------------
// The sections.

function checkHostname(c: Checker, value: unknown): string {
  if (value === undefined) return defaultHostname();
  const hostname = c.string(value, "hostname", "a domain name or an address literal");
  if (hostname === undefined) return FALLBACK_HOSTNAME;
  if (isDomainName(hostname) || isAddressLiteral(hostname)) return hostname;
  c.report(
    "hostname",
    `not a domain name or an address literal (like mx.example.test or [192.0.2.1]): ${
      describe(hostname)
    }`,
  );
  return FALLBACK_HOSTNAME;
}

function checkTls(c: Checker, value: unknown, baseDir: string): TlsConfig | null {
  if (value === undefined || value === null) return null;
  const tls = c.section(value, "tls", TLS_KEYS);
  if (!isMapping(value)) return null;
  const resolvePart = (key: "cert" | "key"): string | undefined => {
    if (tls[key] !== undefined) return c.path(tls[key], `tls.${key}`, baseDir);
    c.report(`tls.${key}`, "missing (tls needs both cert and key)");
    return undefined;
  };
  const cert = resolvePart("cert");
  const key = resolvePart("key");
  return cert === undefined || key === undefined ? null : { cert, key };
}

function checkListeners(c: Checker, value: unknown, hasTls: boolean): ListenerConfig[] {
  if (value === undefined) return [...DEFAULT_LISTENERS];
  const items = c.list(value, "listeners", "a list of { address, port, mode }");
  if (items === undefined) return [];
  const listeners: ListenerConfig[] = [];
  const seen = new Map<string, number>();
  items.forEach((item, index) => {
    const path = `listeners[${index}]`;
    if (!isMapping(item)) {
      c.report(
        path,
        `expected a mapping like { address: 127.0.0.1, port: 2525, mode: mx }, found ${
          describe(item)
        }`,
      );
      return;
    }
    c.unknownKeys(item, path, LISTENER_KEYS);
    let address: string | undefined;
    if (item.address === undefined) c.report(`${path}.address`, "missing");
    else if (typeof item.address === "string" && isIP(item.address) !== 0) address = item.address;
    else {
      c.report(
        `${path}.address`,
        `expected an IP address like 127.0.0.1 or ::1, found ${describe(item.address)}`,
      );
    }
    let port: number | undefined;
    if (item.port === undefined) c.report(`${path}.port`, "missing");
    else if (
      typeof item.port === "number" && Number.isInteger(item.port) && item.port >= 0 &&
      item.port <= 65535
    ) {
      port = item.port;
    } else {
      c.report(
        `${path}.port`,
        `expected a port number from 0 to 65535, found ${describe(item.port)}`,
      );
    }
    const mode = item.mode === undefined
      ? "mx"
      : c.oneOf(item.mode, `${path}.mode`, LISTENER_MODES);
    if (mode !== undefined && mode !== "mx" && !hasTls) {
      c.report(path, `mode ${JSON.stringify(mode)} needs tls.cert and tls.key`);
    }
    if (address === undefined || port === undefined || mode === undefined) return;
    // Port 0 asks the system for any free port, so two of them never collide.
    if (port !== 0) {
      const socket = `${canonicalIp(address)} ${port}`;
      const first = seen.get(socket);
      if (first !== undefined) c.report(path, `same address and port as listeners[${first}]`);
      else seen.set(socket, index);
    }
    listeners.push({ address, port, mode });
  });
  return listeners;
}

function checkLocalDomains(c: Checker, value: unknown): string[] {
  if (value === undefined) return [...DEFAULT_LOCAL_DOMAINS];
  const items = c.list(value, "local_domains", "a non-empty list of domain names");
  if (items === undefined) return [];
  if (items.length === 0) {
    c.report("local_domains", "expected a non-empty list of domain names, found an empty list");
  }
  const domains: string[] = [];
  items.forEach((item, index) => {
    const path = `local_domains[${index}]`;
    const domain = c.string(item, path, "a domain name");
    if (domain === undefined) return;
    if (!isDomainName(domain)) c.report(path, `not a domain name: ${describe(domain)}`);
    else if (!domains.includes(domain.toLowerCase())) domains.push(domain.toLowerCase());
  });
  return domains;
}

/**
 * A key of `accounts` or `aliases`: a mailbox address in a local domain,
 * lower-cased; `undefined` after reporting when it is not.
 */
function checkLocalAddress(
  c: Checker,
  key: string,
  path: string,
  localDomains: readonly string[],
): string | undefined {
  const address = parseAddress(key);
  if (address === null) {
    c.report(path, "not an address (expected local-part@domain)");
    return undefined;
  }
  if (!localDomains.includes(address.domain)) {
    c.report(path, `domain ${JSON.stringify(address.domain)} is not in local_domains`);
    return undefined;
  }
  return `${address.local}@${address.domain}`.toLowerCase();
}

/**
 * A catch-all alias key, `@domain` (as Postfix's virtual_alias_maps): every
 * address of a local domain that is no account and no other alias.
 */
function checkCatchAll(
  c: Checker,
  key: string,
  path: string,
  localDomains: readonly string[],
): string | undefined {
  const domain = key.slice(1).toLowerCase();
  if (!isDomainName(domain)) {
    c.report(path, "not an address (expected local-part@domain, or @domain for a catch-all)");
    return undefined;
  }
  if (!localDomains.includes(domain)) {
    c.report(path, `domain ${JSON.stringify(domain)} is not in local_domains`);
    return undefined;
  }
  return `@${domain}`;
}

/**
 * Reads the first line of a secret file (a password, a key), so it never has
 * to be written in the YAML; `undefined` after reporting when it cannot be read.
 */
function readSecret(c: Checker, file: string, path: string): string | undefined {
  if (!c.readSecrets) return "";
  let text: string;
  try {
    text = Deno.readTextFileSync(file);
  } catch (error: unknown) {
    const why = error instanceof Error ? error.message.replace(/\s+/g, " ") : String(error);
    c.report(path, `cannot read ${file}: ${why}`);
    return undefined;
  }
  const line = text.split(/\r?\n/, 1)[0] ?? "";
  if (line === "") c.report(path, `${file} is empty: its first line is the secret`);
  return line === "" ? undefined : line;
}

/** `[host]:port` (Postfix's form), `[host]` (port 25), `host:port`, or `[IPv6]:port`. */
function parseRouteHost(text: string): string | null {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (bracketed !== null) {
    const host = bracketed[1] ?? "";
    const port = parsePort(bracketed[2] ?? "25");
    if (port === null) return null;
    if (isIPv6(host)) return `[${host.toLowerCase()}]:${port}`;
    // Postfix's brackets mean "this host, no MX lookup": what a tern route always does.
    return isIPv4(host) || isDomainName(host) ? `${host.toLowerCase()}:${port}` : null;
  }
  return parseHostPort(text);
}

/** A route written as a mapping: `{ host, tls, auth: { username, password_file } }`. */
function checkRoutePolicy(
  c: Checker,
  value: Record<string, unknown>,
  path: string,
  baseDir: string,
): { hop: string; policy: RoutePolicy } | null {
  c.unknownKeys(value, path, ROUTE_KEYS);
  const hop = typeof value.host === "string" ? parseRouteHost(value.host) : null;
  if (hop === null) {
    c.report(
      `${path}.host`,
      `expected [host]:port or host:port (like [smtp.example.net]:587), found ${
        describe(value.host)
      }`,
    );
  }
  const tlsValue = value.tls ?? "opportunistic";
  const tls = ROUTE_TLS.find((t) => t === tlsValue);
  if (tls === undefined) {
    c.report(`${path}.tls`, `expected one of ${ROUTE_TLS.join(", ")}, found ${describe(tlsValue)}`);
  }
  let auth: RoutePolicy["auth"] = null;
  if (value.auth !== undefined && value.auth !== null) {
    const a = c.section(value.auth, `${path}.auth`, ROUTE_AUTH_KEYS);
    const username = c.string(a.username, `${path}.auth.username`, "a user name");
    const file = c.path(a.password_file, `${path}.auth.password_file`, baseDir);
    const password = file === undefined
      ? undefined
      : readSecret(c, file, `${path}.auth.password_file`);
    const allowPlaintext = a.allow_plaintext === true;
    if (a.allow_plaintext !== undefined && typeof a.allow_plaintext !== "boolean") {
      c.report(
        `${path}.auth.allow_plaintext`,
        `expected true or false, found ${describe(a.allow_plaintext)}`,
      );
    }
    // RFC 4954 §4 (and RFC 8314): a password goes only over TLS, unless the operator says both.
    if (tls === "none" && !allowPlaintext) {
      c.report(
        `${path}.auth`,
        "tls: none would send the password in clear; add allow_plaintext: true to accept that",
      );
    } else if (allowPlaintext && tls !== "none") {
      c.report(`${path}.auth.allow_plaintext`, "only meaningful with tls: none");
    }
    if (username !== undefined && file !== undefined && password !== undefined) {
      auth = { username, passwordFile: file, password, allowPlaintext };
    }
  }
  if (hop === null || tls === undefined) return null;
  return { hop, policy: { tls, auth } };
}

/** `srs: { secret_file, domain }`: off when absent. */
function checkSrs(
  c: Checker,
  value: unknown,
  baseDir: string,
  hostname: string,
  localDomains: readonly string[],
): SrsConfig | null {
  if (value === undefined || value === null) return null;
  const srs = c.section(value, "srs", SRS_KEYS);
  const file = c.path(srs.secret_file, "srs.secret_file", baseDir);
  const secret = file === undefined ? undefined : readSecret(c, file, "srs.secret_file");
  const domain =
    (srs.domain === undefined ? hostname : c.string(srs.domain, "srs.domain", "a domain name"))
      ?.toLowerCase();
  if (domain !== undefined && !isDomainName(domain)) {
    c.report("srs.domain", `not a domain name: ${describe(domain)}`);
    return null;
  }
  // Bounces to SRS addresses must come back here, so the domain is one of ours.
  if (domain !== undefined && !localDomains.includes(domain)) {
    c.report(
      srs.domain === undefined ? "srs" : "srs.domain",
      `domain ${JSON.stringify(domain)} (${
        srs.domain === undefined ? "the hostname, the default" : "srs.domain"
      }) is not in local_domains: bounces to SRS addresses would not come back`,
    );
    return null;
  }
  if (file === undefined || secret === undefined || domain === undefined) return null;
  return { secretFile: file, secret, domain };
}

/**
 * Remembers the spelling each lower-cased address was first given in;
 * reports a key that differs from an earlier one only in case.
 */
function isFirstSpelling(
  c: Checker,
  spelled: Map<string, string>,
  address: string | undefined,
  key: string,
  path: string,
): boolean {
  if (address === undefined) return false;
  const first = spelled.get(address);
  if (first === undefined) {
    spelled.set(address, key);
    return true;
  }
  c.report(path, `same address as ${JSON.stringify(first)} (addresses are compared in lower case)`);
  return false;
}

function checkAccounts(
  c: Checker,
  value: unknown,
  localDomains: readonly string[],
): Record<string, AccountConfig> {
  const accounts: Record<string, AccountConfig> = {};
  if (value === undefined || value === null) return accounts;
  if (!isMapping(value)) {
    c.report("accounts", `expected a mapping of address: { password }, found ${describe(value)}`);
    return accounts;
  }
  const spelled = new Map<string, string>();
  for (const [key, entry] of Object.entries(value)) {
    const path = `accounts.${key}`;
    const address = checkLocalAddress(c, key, path, localDomains);
    let isValid = isFirstSpelling(c, spelled, address, key, path);
    // Never quote an account's value back: it may be a password typed in clear.
    if (entry !== null && !isMapping(entry)) {
      c.report(
        path,
        `expected a mapping like { password: "<hash>" } or {}, found ${
          typeof entry === "string" ? "a string" : describe(entry)
        }`,
      );
      continue;
    }
    const fields = entry ?? {};
    for (const field of Object.keys(fields)) {
      if (ACCOUNT_KEYS.some((known) => known === field)) continue;
      const suggestion = suggestKey(field, ACCOUNT_KEYS);
      const hint = suggestion === undefined ? "" : ` (did you mean ${JSON.stringify(suggestion)}?)`;
      c.report(path, `${field}: unknown key${hint}`);
      isValid = false;
    }
    const password = fields.password;
    if (password !== undefined && !(typeof password === "string" && isPasswordHash(password))) {
      c.report(path, 'password: not a hash made by "tern hash-password"');
      isValid = false;
    }
    if (isValid && address !== undefined) {
      accounts[address] = typeof password === "string" ? { password } : {};
    }
  }
  return accounts;
}

/** An alias's targets: one address or a non-empty list; domains lower-cased, local parts as written. */
function checkTargets(c: Checker, entry: unknown, path: string): string[] | undefined {
  const items = typeof entry === "string" ? [entry] : entry;
  if (!Array.isArray(items) || items.length === 0) {
    c.report(
      path,
      `expected a target address or a non-empty list of them, found ${describe(entry)}`,
    );
    return undefined;
  }
  const targets: string[] = [];
  items.forEach((target: unknown, index) => {
    const targetPath = Array.isArray(entry) ? `${path}[${index}]` : path;
    const parsed = typeof target === "string" ? parseAddress(target) : null;
    if (parsed !== null) {
      // The domain is case-insensitive; the local part belongs to the target's server (RFC 5321 §2.4).
      targets.push(`${parsed.local}@${parsed.domain}`);
    } else if (typeof target === "string") {
      c.report(targetPath, `not an address (expected local-part@domain): ${describe(target)}`);
    } else {
      c.report(targetPath, `expected a target address, found ${describe(target)}`);
    }
  });
  return targets.length === items.length ? targets : undefined;
}

function checkAliases(
  c: Checker,
  value: unknown,
  localDomains: readonly string[],
  accounts: Readonly<Record<string, AccountConfig>>,
): Record<string, string[]> {
  const aliases: Record<string, string[]> = {};
  if (value === undefined || value === null) return aliases;
  if (!isMapping(value)) {
    c.report("aliases", `expected a mapping of address: target(s), found ${describe(value)}`);
    return aliases;
  }
  const spelled = new Map<string, string>();
  for (const [key, entry] of Object.entries(value)) {
    const path = `aliases.${key}`;
    const address = key.startsWith("@")
      ? checkCatchAll(c, key, path, localDomains)
      : checkLocalAddress(c, key, path, localDomains);
    let isValid = isFirstSpelling(c, spelled, address, key, path);
    if (address !== undefined && address in accounts) {
      c.report(path, "is also in accounts; an address is either a mailbox or an alias");
      isValid = false;
    }
    const targets = checkTargets(c, entry, path);
    if (isValid && address !== undefined && targets !== undefined) aliases[address] = targets;
  }
  return aliases;
}

function checkRelay(c: Checker, value: unknown, baseDir: string): Config["relay"] {
  const relay = c.section(value, "relay", RELAY_KEYS);
  let trustedNetworks: string[] = [...DEFAULT_TRUSTED_NETWORKS];
  if (relay.trusted_networks !== undefined) {
    const items = c.list(
      relay.trusted_networks,
      "relay.trusted_networks",
      "a list of networks like 192.0.2.0/24 ([] for nobody)",
    ) ?? [];
    trustedNetworks = [];
    items.forEach((item, index) => {
      const path = `relay.trusted_networks[${index}]`;
      const network = typeof item === "string" ? parseNetwork(item) : null;
      if (network === null) {
        c.report(
          path,
          `expected an address or a network like 192.0.2.0/24 or 2001:db8::/32, found ${
            describe(item)
          }`,
        );
      } else if (hostBitsFix(network) !== null) {
        c.report(
          path,
          `host bits set in ${describe(item)}; did you mean ${hostBitsFix(network)}?`,
        );
      } else if (!trustedNetworks.includes(network)) {
        trustedNetworks.push(network);
      }
    });
  }
  const routes: Record<string, string> = {};
  const routePolicies: Record<string, RoutePolicy> = {};
  if (relay.routes !== undefined && relay.routes !== null) {
    if (!isMapping(relay.routes)) {
      c.report(
        "relay.routes",
        `expected a mapping of domain: next hop, found ${describe(relay.routes)}`,
      );
    } else {
      for (const [key, hop] of Object.entries(relay.routes)) {
        const path = `relay.routes.${key}`;
        const domain = key === "*" || isDomainName(key) ? key.toLowerCase() : undefined;
        if (domain === undefined) c.report(path, 'not a domain name or "*"');
        const extended = isMapping(hop) ? checkRoutePolicy(c, hop, path, baseDir) : undefined;
        const nextHop = extended !== undefined
          ? extended?.hop ?? null
          : hop === "mx"
          ? "mx"
          : typeof hop === "string"
          ? parseRouteHost(hop)
          : null;
        if (extended === null) continue; // reported inside
        if (extended !== undefined && domain !== undefined && !(domain in routes)) {
          routePolicies[domain] = extended.policy;
        }
        if (nextHop === null) {
          c.report(
            path,
            `expected "mx", host:port or [host]:port (like 192.0.2.1:25, [smtp.example.net]:587 or [2001:db8::1]:25), or { host, tls, auth }, found ${
              describe(hop)
            }`,
          );
        }
        if (domain === undefined || nextHop === null) continue;
        if (domain in routes) c.report(path, "listed twice (domains are compared in lower case)");
        else routes[domain] = nextHop;
      }
    }
  }
  // The catch-all stays unless the file sets it: a route for one domain must not stop mail to the rest.
  if (!("*" in routes)) routes["*"] = DEFAULT_ROUTES["*"] ?? "mx";
  const maxConnections = relay.max_connections === undefined
    ? DEFAULT_RELAY_LIMITS.maxConnections
    : c.positiveInteger(relay.max_connections, "relay.max_connections");
  const maxConnectionsPerDestination = relay.max_connections_per_destination === undefined
    ? DEFAULT_RELAY_LIMITS.maxConnectionsPerDestination
    : c.positiveInteger(
      relay.max_connections_per_destination,
      "relay.max_connections_per_destination",
    );
  return {
    trustedNetworks,
    routes,
    ...(Object.keys(routePolicies).length === 0 ? {} : { routePolicies }),
    maxConnections: maxConnections ?? DEFAULT_RELAY_LIMITS.maxConnections,
    maxConnectionsPerDestination: maxConnectionsPerDestination ??
      DEFAULT_RELAY_LIMITS.maxConnectionsPerDestination,
  };
}

function checkDns(c: Checker, value: unknown): Config["dns"] {
  const dns = c.section(value, "dns", DNS_KEYS);
  if (dns.nameservers === undefined || dns.nameservers === null) return { nameservers: null };
  const items = c.list(dns.nameservers, "dns.nameservers", "a list of name server addresses");
  if (items === undefined) return { nameservers: null };
  if (items.length === 0) {
    c.report(
      "dns.nameservers",
      "expected at least one name server (leave the key out for the system resolver)",
    );
  }
  const nameservers: string[] = [];
  items.forEach((item, index) => {
    const nameserver = typeof item === "string" ? parseNameserver(item) : null;
    if (nameserver === null) {
      c.report(
        `dns.nameservers[${index}]`,
        `expected an IP address with an optional port (like 192.0.2.1, 192.0.2.1:53 or [2001:db8::1]:53), found ${
          describe(item)
        }`,
      );
    } else {
      nameservers.push(nameserver);
    }
  });
  return { nameservers };
}

function checkQueue(c: Checker, value: unknown): Config["queue"] {
  const queue = c.section(value, "queue", QUEUE_KEYS);
  let retry: number[] = [...DEFAULT_QUEUE.retry];
  if (queue.retry !== undefined) {
    const items =
      c.list(queue.retry, "queue.retry", "a non-empty list of durations like [1m, 5m, 1h]") ?? [];
    if (Array.isArray(queue.retry) && items.length === 0) {
      c.report(
        "queue.retry",
        "expected a non-empty list of durations like [1m, 5m, 1h], found an empty list",
      );
    }
    retry = [];
    items.forEach((item, index) => {
      const ms = c.duration(item, `queue.retry[${index}]`);
      if (ms !== undefined) retry.push(ms);
    });
  }
  const maxAge = queue.max_age === undefined
    ? DEFAULT_QUEUE.maxAge
    : c.duration(queue.max_age, "queue.max_age");
  const delayWarning = queue.delay_warning === undefined
    ? DEFAULT_QUEUE.delayWarning
    : c.durationOrZero(queue.delay_warning, "queue.delay_warning");
  return {
    retry,
    maxAge: maxAge ?? DEFAULT_QUEUE.maxAge,
    delayWarning: delayWarning ?? DEFAULT_QUEUE.delayWarning,
  };
}

function checkLimits(c: Checker, value: unknown): Config["limits"] {
  const limits = c.section(value, "limits", LIMITS_KEYS);
  const d = DEFAULT_LIMITS;
  const integer = (key: string, fallback: number): number =>
    limits[key] === undefined
      ? fallback
      : c.positiveInteger(limits[key], `limits.${key}`) ?? fallback;
  const duration = (key: string, fallback: number): number =>
    limits[key] === undefined ? fallback : c.duration(limits[key], `limits.${key}`) ?? fallback;
  return {
    maxMessageSize: limits.max_message_size === undefined
      ? d.maxMessageSize
      : c.size(limits.max_message_size, "limits.max_message_size") ?? d.maxMessageSize,
    maxRecipients: integer("max_recipients", d.maxRecipients),
    maxConnections: integer("max_connections", d.maxConnections),
    maxConnectionsPerIp: integer("max_connections_per_ip", d.maxConnectionsPerIp),
    commandTimeout: duration("command_timeout", d.commandTimeout),
    dataTimeout: duration("data_timeout", d.dataTimeout),
    tlsHandshakeTimeout: duration("tls_handshake_timeout", d.tlsHandshakeTimeout),
    greetingDelay: limits.greeting_delay === undefined
      ? d.greetingDelay
      : c.durationOrZero(limits.greeting_delay, "limits.greeting_delay") ?? d.greetingDelay,
    maxBadCommands: integer("max_bad_commands", d.maxBadCommands),
    shutdownGrace: limits.shutdown_grace === undefined
      ? d.shutdownGrace
      : c.durationOrZero(limits.shutdown_grace, "limits.shutdown_grace") ?? d.shutdownGrace,
    maxAuthFailures: integer("max_auth_failures", d.maxAuthFailures),
    authFailureDelay: limits.auth_failure_delay === undefined
      ? d.authFailureDelay
      : c.durationOrZero(limits.auth_failure_delay, "limits.auth_failure_delay") ??
        d.authFailureDelay,
    authLockout: duration("auth_lockout", d.authLockout),
  };
}

function checkSubmission(c: Checker, value: unknown): Config["submission"] {
  const submission = c.section(value, "submission", SUBMISSION_KEYS);
  const senderMustMatch = submission.sender_must_match === undefined
    ? DEFAULT_SUBMISSION.senderMustMatch
    : c.boolean(submission.sender_must_match, "submission.sender_must_match") ??
      DEFAULT_SUBMISSION.senderMustMatch;
  return { senderMustMatch };
}

function checkLog(c: Checker, value: unknown): Config["log"] {
  const log = c.section(value, "log", LOG_KEYS);
  return {
    level: log.level === undefined
      ? DEFAULT_LOG.level
      : c.oneOf(log.level, "log.level", LOG_LEVELS) ?? DEFAULT_LOG.level,
    format: log.format === undefined
      ? DEFAULT_LOG.format
      : c.oneOf(log.format, "log.format", LOG_FORMATS) ?? DEFAULT_LOG.format,
  };
}

/**
 * What the aliases do once put together, which no single entry shows: a loop
 * (mail to it could never be delivered), and a target in a local domain that
 * nothing receives (mail to it would be dropped from the alias). A key
 * starting with `@` is a domain's catch-all: it receives for the whole domain.
 */
function checkAliasGraph(
  c: Checker,
  localDomains: readonly string[],
  accounts: Readonly<Record<string, AccountConfig>>,
  aliases: Readonly<Record<string, readonly string[]>>,
): void {
  for (const cycle of validateAliases({ localDomains, accounts, aliases })) {
    const first = cycle[0] ?? "";
    const how = cycle.length === 2 ? "points to itself" : `loops: ${cycle.join(" -> ")}`;
    c.report(`aliases.${first}`, `alias ${how}`);
  }
  const receives = (address: string): boolean => {
    const at = address.lastIndexOf("@");
    const domain = address.slice(at + 1);
    const local = address.slice(0, at);
    // RFC 5233: `alice+tag` is delivered to alice; RFC 5321 §4.5.1: postmaster always exists.
    const base = local.includes("+") ? local.slice(0, local.indexOf("+")) : local;
    return local === "postmaster" || `@${domain}` in aliases ||
      [local, base].some((l) => `${l}@${domain}` in accounts || `${l}@${domain}` in aliases);
  };
  for (const [alias, targets] of Object.entries(aliases)) {
    for (const target of targets) {
      const address = target.toLowerCase();
      const domain = address.slice(address.lastIndexOf("@") + 1);
      if (!localDomains.includes(domain) || receives(address)) continue;
      c.report(
        `aliases.${alias}`,
        `target ${
          JSON.stringify(target)
        } is in a local domain but is no account, alias or catch-all`,
      );
    }
  }
}

/** Freezes an object and everything reachable from it. */
function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const inner of Object.values(value)) deepFreeze(inner);
  }
  return value;
}

/** Options of {@linkcode validateConfig}. */
export interface ValidateConfigOptions {
  /**
   * The config file as the user named it (`tern.yaml`, `../etc/tern.yaml`),
   * used in problem lines; `null` when there is no file (problems then say
   * `(defaults)`). `Config.file` is this name's last part joined to `baseDir`.
   */
  file: string | null;
  /**
   * The directory relative paths are resolved against: the config file's own
   * directory, or the working directory when there is no file. Absolute.
   */
  baseDir: string;
  /**
   * Whether to read secret files (`relay.routes.*.auth.password_file`,
   * `srs.secret_file`). Only the server needs them; a CLI command run by
   * another user, who may not read them, leaves them out (the secrets are
   * then empty strings). @default {true}
   */
  readSecrets?: boolean;
}

/**
 * Checks a configuration as read from YAML and completes it: defaults for what
 * is left out, durations in ms, sizes in bytes, paths absolute, addresses and
 * domains in lower case. Every problem is collected before throwing, so the
 * user sees them all at once.
 *
 * `null` or `undefined` (an empty file) means all defaults. Within the file, a
 * section left empty (`limits:` alone) means that section's defaults, and an
 * account left empty (`bob@example.test:`) means one without a password.
 *
 * @param raw The parsed YAML: plain objects, lists, strings, numbers.
 * @param options Where it came from, for messages and for relative paths.
 * @returns The complete configuration, deeply frozen.
 * @throws {ConfigError} With every problem found.
 *
 * @example Complete a small configuration
 * ```ts
 * import { validateConfig } from "./schema.ts";
 * import assert from "node:assert/strict";
 *
 * const config = validateConfig(
 *   { hostname: "mx.example.test", local_domains: ["Example.test"], limits: { max_message_size: "10M" } },
 *   { file: "tern.yaml", baseDir: "/srv/tern" },
 * );
 * assert.equal(config.file, "/srv/tern/tern.yaml");
 * assert.deepEqual(config.localDomains, ["example.test"]);
 * assert.equal(config.limits.maxMessageSize, 10 * 1024 * 1024);
 * assert.equal(config.queue.maxAge, 5 * 24 * 3600 * 1000);
 * assert.equal(config.mailRoot, "/srv/tern/data/mail");
 * assert.ok(Object.isFrozen(config.limits));
 * ```
 *
 * @example Report every problem
 * ```ts
 * import { validateConfig } from "./schema.ts";
 * import { ConfigError } from "./errors.ts";
 * import assert from "node:assert/strict";
 *
 * try {
 *   validateConfig(
 *     { hostname: "mx.example.test", limits: { max_recipient: 10, max_connections: "lots" } },
 *     { file: "tern.yaml", baseDir: "/srv/tern" },
 *   );
 *   assert.fail("should have thrown");
 * } catch (error: unknown) {
 *   assert.ok(error instanceof ConfigError);
 *   assert.deepEqual(error.message.split("\n"), [
 *     'tern.yaml: limits.max_recipient: unknown key (did you mean "max_recipients"?)',
 *     'tern.yaml: limits.max_connections: expected a positive integer, found "lots"',
 *   ]);
 * }
 * ```
 */
export function validateConfig(raw: unknown, options: ValidateConfigOptions): Config {
  const c = new Checker(options.file ?? "(defaults)");
  c.readSecrets = options.readSecrets ?? true;
  const { baseDir } = options;
  let top: Record<string, unknown> = {};
  if (isMapping(raw)) {
    top = raw;
    c.unknownKeys(top, "", TOP_KEYS);
  } else if (raw !== null && raw !== undefined) {
    c.report("", `expected a mapping of settings (key: value lines), found ${describe(raw)}`);
  }

  const hostname = checkHostname(c, top.hostname);
  const dataDir = top.data_dir === undefined
    ? resolve(baseDir, DEFAULT_DATA_DIR)
    : c.path(top.data_dir, "data_dir", baseDir, "a directory path") ??
      resolve(baseDir, DEFAULT_DATA_DIR);
  const tls = checkTls(c, top.tls, baseDir);
  // When tls is there but broken, that is the problem to report, not the listeners that need it.
  const hasTls = tls !== null || (top.tls !== undefined && top.tls !== null);
  const listeners = checkListeners(c, top.listeners, hasTls);
  const localDomains = checkLocalDomains(c, top.local_domains);
  const accounts = checkAccounts(c, top.accounts, localDomains);
  const aliases = checkAliases(c, top.aliases, localDomains, accounts);
  // Only once every entry is valid: a dropped entry would show up as a dangling target.
  const isDirectoryValid = !c.problems.some((p) =>
    /^(local_domains|accounts|aliases)\b/.test(p.keyPath)
  );
  if (isDirectoryValid) checkAliasGraph(c, localDomains, accounts, aliases);
  const mailRoot = top.mail_root === undefined
    ? join(dataDir, DEFAULT_MAIL_ROOT_NAME)
    : c.path(top.mail_root, "mail_root", baseDir, "a directory path") ??
      join(dataDir, DEFAULT_MAIL_ROOT_NAME);
  const relay = checkRelay(c, top.relay, baseDir);
  const dns = checkDns(c, top.dns);
  const queue = checkQueue(c, top.queue);
  const limits = checkLimits(c, top.limits);
  const log = checkLog(c, top.log);
  const submission = checkSubmission(c, top.submission);
  const srs = checkSrs(c, top.srs, baseDir, hostname, localDomains);

  if (c.problems.length > 0) throw new ConfigError(c.problems);
  const file = options.file === null ? null : resolve(baseDir, basename(options.file));
  const config: Config = {
    file,
    hostname,
    dataDir,
    listeners,
    tls,
    localDomains,
    accounts,
    aliases,
    mailRoot,
    relay,
    dns,
    queue,
    limits,
    log,
    submission,
    ...(srs === null ? {} : { srs }),
  };
  return deepFreeze(config);
}
