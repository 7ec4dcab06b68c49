/**
 * The configuration reference: one entry per key of {@linkcode CONFIG_KEYS},
 * with what it means. `docs/configuration.md` is rendered from it (with
 * the defaults read from the loader itself), and a test checks that every
 * key the loader accepts is described here and that the page is current.
 *
 * Render the page with `deno run -A config/reference.ts > docs/configuration.md`.
 *
 * @module
 */

import { parse } from "yaml";
import { formatConfig } from "./format.ts";
import { CONFIG_KEYS, validateConfig } from "./schema.ts";

/** One key of the configuration. */
export interface ReferenceEntry {
  /** The key's path, as in `tern.yaml` (`limits.max_recipients`, `listeners[].port`). */
  readonly key: string;
  /** What kind of value it takes. */
  readonly type: string;
  /** What it does, in a sentence or two. */
  readonly description: string;
}

/** Every key, in the order of the reference page. */
export const CONFIG_REFERENCE: readonly ReferenceEntry[] = [
  {
    key: "hostname",
    type: "domain name",
    description:
      "This host's name: in the banner, EHLO, Received fields and bounces. Default: the OS host name.",
  },
  {
    key: "data_dir",
    type: "path",
    description:
      "Holds the queue store (`queue.sqlite3`, with the content of messages over 60,000 octets in `queue.sqlite3-spool/`) and, by default, the mail root. Relative paths are relative to the configuration file.",
  },
  {
    key: "listeners",
    type: "list",
    description: "The sockets to listen on. Default: one `mx` listener on 127.0.0.1:2525.",
  },
  { key: "listeners[].address", type: "IP address", description: "The address to bind." },
  { key: "listeners[].port", type: "port", description: "The TCP port; 0 picks a free one." },
  {
    key: "listeners[].mode",
    type: "mx | submission | submissions",
    description:
      "`mx`: MTA to MTA, port 25 rules (STARTTLS offered when `tls` is set). `submission`: users' mail programs, STARTTLS then AUTH before MAIL (RFC 6409). `submissions`: the same with TLS from the first byte (RFC 8314).",
  },
  {
    key: "tls",
    type: "mapping",
    description:
      "Certificate and key for STARTTLS and implicit TLS; needed by submission listeners. Reloaded on SIGHUP and when the files change.",
  },
  { key: "tls.cert", type: "path", description: "The certificate chain, PEM." },
  { key: "tls.key", type: "path", description: "The private key, PEM." },
  {
    key: "local_domains",
    type: "list of domains",
    description: "Domains whose mail is delivered here. Default: `[localhost]`.",
  },
  {
    key: "accounts",
    type: "mapping",
    description:
      "Local mailboxes, by address. With no accounts and no aliases, every local part of a local domain is a mailbox.",
  },
  {
    key: "accounts.*.password",
    type: "hash",
    description:
      "A hash made by `tern hash-password`; without it the account receives mail but cannot log in.",
  },
  {
    key: "aliases",
    type: "mapping",
    description:
      "Addresses that forward to one target or a list of targets, local or remote; nesting is followed, loops are refused. A key `@domain` is a catch-all: it takes every address of that local domain that is neither an account nor another alias (exact address first, as Postfix's virtual_alias_maps).",
  },
  {
    key: "mail_root",
    type: "path",
    description:
      "A mailbox is the Maildir `<mail_root>/<domain>/<local-part>/`. Default: `<data_dir>/mail`.",
  },
  { key: "relay", type: "mapping", description: "Who may relay, and where relayed mail goes." },
  {
    key: "relay.trusted_networks",
    type: "list of networks",
    description:
      "Clients in these networks may relay without AUTH; `[]` means nobody. Default: loopback.",
  },
  {
    key: "relay.routes",
    type: "mapping",
    description:
      'Next hop by recipient domain (`"*"` for the rest): `host:port` or Postfix\'s `[host]:port` (`[host]`: port 25) connects there directly, `mx` looks up the MX records (the default), or a mapping `{ host, tls, auth }` for a smarthost.',
  },
  {
    key: "relay.routes.*.host",
    type: "string",
    description: "The smarthost, `[host]:port` or `host:port`.",
  },
  {
    key: "relay.routes.*.tls",
    type: "string",
    description:
      "`none` (never STARTTLS), `opportunistic` (when offered; the default), `require` (STARTTLS must succeed, any certificate) or `verify` (STARTTLS with a certificate valid for the host name, against the system's roots). When not met, mail is deferred (4.7.0).",
  },
  {
    key: "relay.routes.*.auth",
    type: "mapping",
    description:
      "AUTH (PLAIN, else LOGIN) at the smarthost, only over TLS. A refused login defers the mail (4.7.0): credentials are the operator's to fix.",
  },
  {
    key: "relay.routes.*.auth.username",
    type: "string",
    description: "The user name.",
  },
  {
    key: "relay.routes.*.auth.password_file",
    type: "path",
    description:
      "A file whose first line is the password (never in the YAML), read when the configuration is loaded.",
  },
  {
    key: "relay.routes.*.auth.allow_plaintext",
    type: "boolean",
    description:
      "With `tls: none` only: send the password without TLS anyway. Off by default: AUTH over plaintext is refused.",
  },
  {
    key: "relay.max_connections",
    type: "integer",
    description: "Outgoing connections at once, in total.",
  },
  {
    key: "relay.max_connections_per_destination",
    type: "integer",
    description: "Outgoing connections at once to one host and port.",
  },
  {
    key: "dns",
    type: "mapping",
    description: "How tern's own resolver finds MX and address records.",
  },
  {
    key: "dns.nameservers",
    type: "list of ip[:port]",
    description: "Name servers to ask; default: those of /etc/resolv.conf.",
  },
  {
    key: "dnsbl",
    type: "list of zones or mappings",
    description:
      "DNS block lists (RFC 5782), like `[zen.spamhaus.org]`, asked about mx clients outside `relay.trusted_networks` when they connect (through `dns.nameservers`); a listed client gets `554 5.7.1` naming the list (and its TXT reason) at RCPT, except for mail to postmaster. A list that does not answer is skipped. Default: none.",
  },
  { key: "dnsbl[].zone", type: "string", description: "The list's zone." },
  {
    key: "dnsbl[].codes",
    type: "list of IPv4 addresses",
    description:
      "The answers that mean listed, like `[127.0.0.2, 127.0.0.3]`. Default: any 127.0.0.0/8 answer except 127.255.255.x (the lists' error codes).",
  },
  { key: "queue", type: "mapping", description: "Retries and giving up (RFC 5321 §4.5.4.1)." },
  {
    key: "queue.retry",
    type: "list of durations",
    description: "Waits between delivery attempts; the last one repeats.",
  },
  {
    key: "queue.max_age",
    type: "duration",
    description: "A message still undelivered after this long is bounced to its sender.",
  },
  {
    key: "queue.delay_warning",
    type: "duration",
    description:
      "A message still undelivered after this long brings the sender one 'delayed' report; `0s` never.",
  },
  { key: "limits", type: "mapping", description: "Limits on what clients may do." },
  {
    key: "limits.max_message_size",
    type: "size",
    description: "The largest message, advertised as SIZE (RFC 1870); larger ones get 552 5.3.4.",
  },
  {
    key: "limits.max_recipients",
    type: "integer",
    description: "Recipients per transaction; past it RCPT gets 452 4.5.3.",
  },
  {
    key: "limits.max_connections",
    type: "integer",
    description: "Client connections at once; the next gets 421 4.7.0.",
  },
  {
    key: "limits.max_connections_per_ip",
    type: "integer",
    description: "Client connections at once from one address.",
  },
  {
    key: "limits.command_timeout",
    type: "duration",
    description: "How long to wait for the next command (RFC 5321 §4.5.3.2.7: at least 5 minutes).",
  },
  {
    key: "limits.data_timeout",
    type: "duration",
    description: "How long to wait for more content during DATA or BDAT (RFC 5321 §4.5.3.2.6).",
  },
  {
    key: "limits.tls_handshake_timeout",
    type: "duration",
    description:
      "How long a client may take to complete its TLS handshake (implicit TLS, or after STARTTLS) before the connection is closed.",
  },
  {
    key: "limits.greeting_delay",
    type: "duration",
    description:
      "On mx listeners, for clients outside trusted_networks: wait this long before the banner and refuse a client that talks first; `0s` off.",
  },
  {
    key: "limits.shutdown_grace",
    type: "duration",
    description: "On SIGTERM, how long transactions in flight may take to finish.",
  },
  {
    key: "limits.max_bad_commands",
    type: "integer",
    description: "Commands refused with 5yz in one session before it is closed with 421.",
  },
  {
    key: "limits.max_auth_failures",
    type: "integer",
    description: "Failed AUTH from one client address before it is disconnected and locked out.",
  },
  {
    key: "limits.auth_failure_delay",
    type: "duration",
    description: "The delay after the first failed AUTH; it doubles with each failure.",
  },
  {
    key: "limits.auth_lockout",
    type: "duration",
    description: "How long failed AUTH attempts are remembered.",
  },
  {
    key: "limits.user_messages_per_hour",
    type: "integer",
    description:
      "Messages one authenticated account may submit in the last hour (12 five-minute buckets, counted in memory per process); more get 451 4.7.1 at MAIL. 0: no limit. Local submission (`tern sendmail`) is not limited.",
  },
  {
    key: "limits.user_recipients_per_day",
    type: "integer",
    description:
      "Recipients one authenticated account may submit to in the last day (24 one-hour buckets, counted in memory per process); more get 451 4.7.1 at RCPT. 0: no limit.",
  },
  {
    key: "log",
    type: "mapping",
    description:
      "Logging, one line per event on standard error (the lines of one turn of the event loop in one write; warnings and errors at once).",
  },
  {
    key: "log.level",
    type: "debug | info | warn | error",
    description: "The least severe level written.",
  },
  {
    key: "log.format",
    type: "text | json",
    description: "`text` (key=value) or one JSON object per line.",
  },
  {
    key: "srs",
    type: "mapping",
    description:
      "Sender Rewriting Scheme (SRS0, as postsrsd): mail an alias forwards to another domain gets an SRS0 address of ours as its sender, so SPF passes; bounces to it (hash checked, at most 21 days old) go back to the original sender. Off when absent.",
  },
  {
    key: "srs.secret_file",
    type: "path",
    description:
      "A file whose first line is the HMAC secret, read when the configuration is loaded.",
  },
  {
    key: "srs.domain",
    type: "string",
    description: "The domain of SRS addresses; a local domain. Default: `hostname`.",
  },
  {
    key: "admin",
    type: "mapping",
    description:
      "The admin HTTP listener: `/metrics` (Prometheus text format 0.0.4), `/healthz` (200 while the process runs), `/readyz` (200 while the queue store accepts writes, else 503); other paths 404. No authentication: keep it on loopback or a management network. Off when absent; `admin:` alone listens on 127.0.0.1:9025.",
  },
  {
    key: "admin.address",
    type: "IP address",
    description: "The address to bind. Default: `127.0.0.1`.",
  },
  {
    key: "admin.port",
    type: "integer",
    description: "The TCP port (0: any free port). Default: `9025`.",
  },
  { key: "submission", type: "mapping", description: "Rules for authenticated users." },
  {
    key: "submission.sender_must_match",
    type: "boolean",
    description:
      "An authenticated user may send only as one of their own addresses (the account, its plus forms, an alias that reaches it).",
  },
];

/** Reads a default value out of the effective default configuration. */
function defaultOf(defaults: Record<string, unknown>, key: string): string {
  if (key.includes("[]") || key.includes("*")) return "";
  let value: unknown = defaults;
  for (const part of key.split(".")) {
    if (typeof value !== "object" || value === null) return "";
    value = (value as Record<string, unknown>)[part];
  }
  if (key === "hostname") return "the OS host name";
  if (key === "data_dir") return "`./data`";
  if (key === "mail_root") return "`<data_dir>/mail`";
  if (
    value === undefined || (typeof value === "object" && value !== null && !Array.isArray(value))
  ) return "";
  return "`" + (Array.isArray(value) ? `[${value.map(flowValue).join(", ")}]` : String(value)) +
    "`";
}

/** One item of a default list as YAML flow syntax: a mapping as `{ key: value }`, not `[object Object]`. */
function flowValue(value: unknown): string {
  if (typeof value !== "object" || value === null) return String(value);
  if (Array.isArray(value)) return `[${value.map(flowValue).join(", ")}]`;
  const pairs = Object.entries(value).map(([k, v]) => `${k}: ${flowValue(v)}`);
  return `{ ${pairs.join(", ")} }`;
}

/**
 * Checks the reference against the loader: every key it accepts is described
 * and every key described is accepted.
 *
 * @returns The problems, empty when they agree.
 *
 * @example
 * ```ts
 * import { checkReference } from "./reference.ts";
 * console.log(checkReference()); // []
 * ```
 */
export function checkReference(): string[] {
  const described = new Set(CONFIG_REFERENCE.map((e) => e.key));
  const accepted = new Set<string>();
  for (const [section, keys] of Object.entries(CONFIG_KEYS)) {
    for (const k of keys) accepted.add(section === "" ? k : `${section}.${k}`);
  }
  const problems: string[] = [];
  for (const k of accepted) {
    if (!described.has(k)) problems.push(`${k}: accepted but not described`);
  }
  for (const k of described) {
    if (!accepted.has(k)) problems.push(`${k}: described but not accepted`);
  }
  return problems;
}

/**
 * Renders the reference page.
 *
 * @returns Markdown.
 */
export function renderReference(): string {
  const defaults = parse(
    formatConfig(validateConfig(null, { file: null, baseDir: "/" })),
  ) as Record<string, unknown>;
  let out = "# Configuration reference\n\n" +
    "<!-- Rendered from config/reference.ts by `deno run -A config/reference.ts`; do not edit by hand. -->\n\n" +
    "tern reads `tern.yaml` (or `--config FILE`). Unknown keys are errors. Durations are written " +
    "`30s`, `5m`, `4h`, `5d`; sizes in bytes or with `k`, `M`, `G` (1024-based). " +
    "`tern check-config` prints the effective configuration.\n\n" +
    "| key | value | default | what it does |\n|---|---|---|---|\n";
  for (const e of CONFIG_REFERENCE) {
    out += `| \`${e.key}\` | ${e.type.replaceAll("|", "\\|")} | ${defaultOf(defaults, e.key)} | ${
      e.description.replaceAll("|", "\\|")
    } |\n`;
  }
  return out;
}

if (import.meta.main) {
  const problems = checkReference();
  if (problems.length > 0) {
    console.error(problems.join("\n"));
    Deno.exit(1);
  }
  Deno.stdout.writeSync(new TextEncoder().encode(renderReference()));
}
