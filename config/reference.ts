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
    key: "tls.acme",
    type: "mapping",
    description:
      "Get the certificate from an ACME CA (RFC 8555) and renew it, instead of `cert` and `key` (leave those out). tern keeps the account key and certificate in `<data_dir>/acme/` (mode 0600), serves a temporary self-signed certificate until the first one arrives, renews at two thirds of the lifetime (30 days before expiry for Let's Encrypt's 90 days) and retries with backoff; the old certificate serves until a new one is in. See docs/acme.md.",
  },
  {
    key: "tls.acme.directory",
    type: "URL",
    description:
      "The CA's directory. Default: Let's Encrypt, `https://acme-v02.api.letsencrypt.org/directory` (its staging directory is `https://acme-staging-v02.api.letsencrypt.org/directory`).",
  },
  {
    key: "tls.acme.contact",
    type: "mailto: URL or list",
    description: "Where the CA writes about the account (expiry notices, policy changes).",
  },
  {
    key: "tls.acme.domains",
    type: "list of domains",
    description:
      "The names the certificate covers, the first also its common name; each must lead here (A/AAAA records). Default: `[hostname]`. No wildcards (they need dns-01).",
  },
  {
    key: "tls.acme.challenge",
    type: "http-01 | tls-alpn-01",
    description:
      "How tern proves it holds the names: `http-01` (the default) answers the CA over plain HTTP on `http_port`; `tls-alpn-01` (RFC 8737) answers over TLS on `tls_port`, with `openssl s_server` (the openssl binary must be installed). The port must be reachable from the Internet as 80 or 443.",
  },
  {
    key: "tls.acme.address",
    type: "IP address",
    description: "The address the challenge responder listens on. Default: `0.0.0.0`.",
  },
  {
    key: "tls.acme.http_port",
    type: "port",
    description:
      "The port of the http-01 responder, which stays bound and answers only the CA's requests. Default: 80.",
  },
  {
    key: "tls.acme.tls_port",
    type: "port",
    description: "The port of the tls-alpn-01 responder. Default: 443.",
  },
  {
    key: "tls.acme.ca_file",
    type: "path",
    description:
      "An extra CA certificate (PEM) to trust for the directory's HTTPS: for a test CA such as Pebble. Default: the system's roots only.",
  },
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
  {
    key: "mailbox_transport",
    type: "maildir | lmtp:host:port | lmtp:/path",
    description:
      "How mail for local mailboxes is delivered: `maildir` writes Maildir files under `mail_root`; `lmtp:127.0.0.1:24`, `lmtp:[::1]:24` or `lmtp:/run/dovecot/lmtp` hands it to an LMTP server such as Dovecot (RFC 2033), which then files it and adds `Return-Path:` and `Delivered-To:` itself. Each recipient gets the LMTP server's own reply: 2yz delivered, 4yz (or no answer) retried, 5yz bounced. See docs/dovecot.md. Default: `maildir`.",
  },
  {
    key: "workers",
    type: "integer | auto",
    description:
      "Threads that run the SMTP sessions of the mx listeners, all listening on the same ports (SO_REUSEPORT: the kernel spreads the connections among them), while the main thread keeps the queue store, the deliveries and the submission listeners. Every message is still committed to the one store before its `250`. The workers also write the Maildir files of local deliveries. The connection limits (`limits.max_connections`, `limits.max_connections_per_ip`) hold for each port as a whole: the threads count together. `0` runs everything on the main thread. `tern serve --trace` runs without workers. Default: `auto`: one per core but one when tern may use four cores or more (at most 16), else 0 (on two cores the bench found no gain: see docs/scaling.md).",
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
    key: "relay.ca_file",
    type: "path",
    description:
      "A PEM file of CA certificates trusted, besides the system's, when verifying next hops (`tls: verify`, MTA-STS, DANE-TA is not affected) and when fetching MTA-STS policies over HTTPS. Read at load. Default: the system's CAs only.",
  },
  {
    key: "relay.mta_sts",
    type: "boolean",
    description:
      "Apply MTA-STS (RFC 8461) when relaying by MX: a domain that publishes an `enforce` policy gets mail only from its listed MX hosts over verified TLS, else the mail waits. Default: `true`.",
  },
  {
    key: "relay.dane",
    type: "boolean",
    description:
      "Apply DANE (RFC 7672) when relaying by MX: MX hosts with DNSSEC-signed TLSA records get mail only over TLS with a matching certificate. Needs `dns.nameservers` on a loopback address (a local validating resolver). Default: `true`.",
  },
  {
    key: "relay.tls_rpt",
    type: "mapping, or false",
    description:
      "SMTP TLS Reporting (RFC 8460): tern counts, per recipient domain and UTC day, the TLS sessions it makes when relaying by MX (successes, and failures by result type), and after each UTC midnight sends the previous day's report to every domain that publishes a `_smtp._tls` TXT record, by mail or HTTPS POST. The report names this host's addresses and the MX hosts it reached, which is what the domain asked for. `false` turns counting and sending off. Default: on (`tern tls-report` prints a day's reports).",
  },
  {
    key: "relay.tls_rpt.enabled",
    type: "boolean",
    description: "Count sessions and send the daily reports. Default: `true`.",
  },
  {
    key: "relay.tls_rpt.organization",
    type: "text",
    description: "The report's `organization-name`. Default: `hostname`.",
  },
  {
    key: "relay.tls_rpt.contact",
    type: "address or URL",
    description: "The report's `contact-info`. Default: `relay.tls_rpt.from`.",
  },
  {
    key: "relay.tls_rpt.from",
    type: "address",
    description:
      "The sender of report mail (DKIM-signed when a key of `dkim.keys` matches its domain); its domain is the `TLS-Report-Submitter`. Default: `postmaster@<hostname>`.",
  },
  {
    key: "mta_sts_policy",
    type: "mapping",
    description:
      "Publish an MTA-STS policy (RFC 8461 §3.2) for the local domains: an HTTPS listener answers `GET /.well-known/mta-sts.txt` for the host `mta-sts.<local domain>` with the certificate of `tls` (with `tls.acme`, list every `mta-sts.<domain>` in `tls.acme.domains`). `tern dns-records DOMAIN` prints the `_mta-sts` and `_smtp._tls` records to publish with it. Needs `tls`; read at start (a change needs a restart). Default: none.",
  },
  {
    key: "mta_sts_policy.mode",
    type: "enforce | testing | none",
    description:
      "`enforce`: senders that apply MTA-STS deliver only to the listed MX hosts over verified TLS; `testing`: they deliver anyway and report failures (RFC 8460); `none`: withdraws a policy. Default: `enforce`.",
  },
  {
    key: "mta_sts_policy.mx",
    type: "list of host names",
    description: "The MX hosts (or `*.domain` patterns) senders may use. Default: `[hostname]`.",
  },
  {
    key: "mta_sts_policy.max_age",
    type: "duration",
    description: "How long senders keep the policy (at most 365 days). Default: `7d`.",
  },
  {
    key: "mta_sts_policy.listen",
    type: "mapping",
    description: "The HTTPS listener of the policy. Default: `{ address: 0.0.0.0, port: 443 }`.",
  },
  { key: "mta_sts_policy.listen.address", type: "IP address", description: "The address to bind." },
  {
    key: "mta_sts_policy.listen.port",
    type: "port",
    description: "The TCP port; 0 picks a free one.",
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
    key: "dnsbl[].allow",
    type: "boolean",
    description:
      "An allow list (a DNSWL, like `{ zone: list.dnswl.org, allow: true }`): a client it lists is refused by no block list. Asked with the block lists, in parallel. Default: false.",
  },
  {
    key: "milters",
    type: "list of addresses or mappings",
    description:
      'Milters (the Sendmail/Postfix content filter protocol, version 6), like `["127.0.0.1:11332"]` for rspamd, asked in order about each message: at MAIL and RCPT (their refusals become the SMTP reply), and with the whole message after the data, when they may add, change or remove header fields, change the sender or recipients, replace the body, quarantine (the message is stored held), discard or refuse it. An item is an address (`host:port`, `[ipv6]:port`, `unix:/path`, `/path`) or a mapping. See docs/milters.md. Default: none.',
  },
  {
    key: "milters[].address",
    type: "string",
    description: "Where the milter listens: `host:port`, `[ipv6]:port`, `unix:/path` or `/path`.",
  },
  {
    key: "milters[].connect_timeout",
    type: "duration",
    description: "How long connecting and option negotiation may take. Default: 5s.",
  },
  {
    key: "milters[].command_timeout",
    type: "duration",
    description: "How long the milter may take to answer each command. Default: 30s.",
  },
  {
    key: "milters[].eom_timeout",
    type: "duration",
    description:
      "How long the milter may take to answer the end of the message (its scan). Default: 2m.",
  },
  {
    key: "milters[].default_action",
    type: "tempfail | accept",
    description:
      "What happens when the milter is down, slow or talks nonsense: `tempfail` answers `451 4.7.1` (the client retries later, nothing is lost); `accept` goes on without it. Default: tempfail.",
  },
  {
    key: "milters[].listeners",
    type: "list of listener modes",
    description:
      "Which listeners' mail the milter sees (`mx`, `submission`, `submissions`). Default: all.",
  },
  {
    key: "authentication",
    type: "mapping",
    description:
      "Inbound checks on mx listeners, for clients that are neither authenticated nor in `relay.trusted_networks`: their verdicts go into one `Authentication-Results` header on top (RFC 8601), into the `message.accepted` log line and `tern queue show`. Any `Authentication-Results` already in the message that names our authserv_id is removed first.",
  },
  {
    key: "authentication.authserv_id",
    type: "host name",
    description: "The name in `Authentication-Results`. Default: `hostname`.",
  },
  {
    key: "authentication.spf",
    type: "boolean",
    description: "SPF (RFC 7208) of the MAIL FROM and HELO identities. Default: true.",
  },
  {
    key: "authentication.dkim",
    type: "boolean",
    description:
      "DKIM verification (RFC 6376, RFC 8463) of every signature; keys under 1024 bits fail. Default: true.",
  },
  {
    key: "authentication.dmarc",
    type: "boolean",
    description:
      "DMARC (RFC 9989, the DNS tree walk for the organizational domain). Default: true.",
  },
  {
    key: "authentication.dmarc_reject",
    type: "boolean",
    description:
      "A definite DMARC fail of a domain whose policy is `p=reject` is refused with `550 5.7.1` after the data. An SPF fail alone never rejects; a check that cannot finish (DNS down) never rejects. Default: true.",
  },
  {
    key: "dnsbl[].codes",
    type: "list of IPv4 addresses",
    description:
      "The answers that mean listed, like `[127.0.0.2, 127.0.0.3]`. Default: any 127.0.0.0/8 answer except 127.255.255.x (the lists' error codes).",
  },
  {
    key: "dkim",
    type: "mapping",
    description:
      "DKIM signing (RFC 6376, relaxed/relaxed; Ed25519 as RFC 8463). A message is signed by the key whose `domain` is its From: domain or the nearest parent of it; with an RSA and an Ed25519 key for that domain it gets both signatures. Off when absent. `tern dkim keygen` makes a key and prints its DNS record; `tern dns-records DOMAIN` prints every record to publish. See docs/dkim.md.",
  },
  {
    key: "dkim.keys",
    type: "list of mappings",
    description:
      "The signing keys, like `[{ domain: example.test, selector: s2026, key: ./dkim/example.test.s2026.pem }]`; at most one RSA and one Ed25519 key per domain, each under its own selector.",
  },
  {
    key: "dkim.keys[].domain",
    type: "domain name",
    description: "The signing domain (`d=`): signs mail from this domain and its subdomains.",
  },
  {
    key: "dkim.keys[].selector",
    type: "string",
    description:
      "The selector (`s=`): the public key is published as TXT at `<selector>._domainkey.<domain>`. A new selector per key makes rotation safe.",
  },
  {
    key: "dkim.keys[].key",
    type: "path",
    description:
      "The private key, PEM (PKCS#8 or PKCS#1, not encrypted): RSA of 2048 bits or more, or Ed25519. Read when the configuration is loaded; a key that cannot be read or parsed stops the start. Keep it mode 0600.",
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
  {
    key: "queue.deliver_at_acceptance",
    type: "boolean",
    description:
      "A message whose recipients are all local Maildir mailboxes (at most 10, none asking for a success DSN, not quarantined by a milter, of at most 2 MiB) is written into the mailboxes before the `250`, each file synced to disk, instead of being stored in the queue first: the `250` still comes only once the message is safe on disk, in the mailboxes themselves (the fsync of `new/` that makes each rename durable runs after the `250`; a rename a crash undid is finished at the next start, see docs/message-journey.md). A mailbox that fails (full, unwritable) gets the message through the queue, as usual, retried or bounced there. `false`: every message goes through the queue store first (as Postfix does). See docs/scaling.md.",
  },
  {
    key: "queue.store",
    type: "URL",
    description:
      "A PostgreSQL store shared by several tern nodes, `postgres://user@host:5432/db` (`postgresql://` too; the password from the URL or `PGPASSWORD`). tern creates its tables in the schema `tern`. Default: the Deno KV store in `data_dir`. See docs/scaling.md.",
  },
  {
    key: "queue.lease",
    type: "duration",
    description:
      "How long a node's claim on a message keeps other nodes away unless renewed (a delivery renews it): when a node dies, its messages wait this long before another takes them. Default `60s`.",
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
      "Logging, one line per event on standard error (the lines of one turn of the event loop written together, in writes of whole lines of at most 4 KiB, so that threads writing side by side never cut a line; warnings and errors at once).",
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
      "The admin HTTP listener: `/metrics` (Prometheus text format 0.0.4), `/healthz` (200 while the process runs), `/readyz` (200 while the queue store accepts writes, else 503), `/status` (listeners and queue as JSON, for `tern status`); other paths 404. See docs/monitoring.md. No authentication: keep it on loopback or a management network. Off when absent; `admin:` alone listens on 127.0.0.1:9025.",
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
  {
    key: "submission.auth",
    type: "accounts | dovecot:/path | dovecot:host:port",
    description:
      "Who checks AUTH logins on submission listeners: `accounts` (their passwords), or Dovecot's auth service, as Postfix's `smtpd_sasl_type = dovecot` uses it: `dovecot:/run/dovecot/auth-client` (a Unix socket) or `dovecot:127.0.0.1:12345` (an `inet_listener` of `service auth`). The user Dovecot names is the one logged in, whose addresses `sender_must_match` checks. Dovecot down or silent for 10 seconds: `454 4.7.0`, try again later. See docs/dovecot.md. Default: `accounts`.",
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
