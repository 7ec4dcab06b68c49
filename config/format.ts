/**
 * Writes a {@linkcode Config} back as `tern.yaml`: what `tern check-config`
 * prints, so a user sees every setting in force, defaults included.
 *
 * @module
 */

import { Document, isMap, isSeq, Scalar } from "yaml";
import { formatDuration, formatSize } from "./duration.ts";
import type { Config, SocketEndpoint } from "./schema.ts";

/** What is printed instead of a password hash: the hash is a secret too (it allows offline guessing). */
const HIDDEN_PASSWORD = "<hash>";

function hiddenPassword(): Scalar<string> {
  const scalar = new Scalar(HIDDEN_PASSWORD);
  scalar.type = Scalar.QUOTE_DOUBLE;
  return scalar;
}

/** A size as written in the file: a plain number of bytes, or with a 1024-based suffix. */
function sizeValue(bytes: number): string | number {
  const text = formatSize(bytes);
  return /^\d+$/.test(text) ? bytes : text;
}

/** A socket as the configuration writes it after `lmtp:` or `dovecot:`. */
function endpointText(endpoint: SocketEndpoint): string {
  if (endpoint.path !== undefined) return endpoint.path;
  return endpoint.host.includes(":")
    ? `[${endpoint.host}]:${endpoint.port}`
    : `${endpoint.host}:${endpoint.port}`;
}

/** A store URL with its password, if any, hidden. */
function hiddenStorePassword(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password === "") return url;
    parsed.password = "hidden";
    return parsed.toString();
  } catch {
    return url;
  }
}

/** `tls` as written: the files, or with `acme` only the `acme` section (the files are tern's own). */
function tlsYaml(tls: NonNullable<Config["tls"]>): Record<string, unknown> {
  const { acme } = tls;
  if (acme === undefined) return { cert: tls.cert, key: tls.key };
  return {
    acme: {
      directory: acme.directory,
      contact: acme.contact,
      domains: acme.domains,
      challenge: acme.challenge,
      address: acme.address,
      http_port: acme.httpPort,
      tls_port: acme.tlsPort,
      ...(acme.caFile === null ? {} : { ca_file: acme.caFile }),
    },
  };
}

/**
 * Writes the effective configuration as YAML, with the file's snake_case key
 * names, durations and sizes in readable form (`5m`, `25M`) and absolute
 * paths. Password hashes are shown as `"<hash>"`, never themselves. Apart from
 * the passwords, the output reads back to the same configuration.
 *
 * @param config The configuration.
 * @returns YAML text, ending in a line break, opening with a comment that
 * names the file (or says the built-in defaults are in use).
 *
 * @example Print the effective configuration
 * ```ts
 * import { formatConfig } from "./format.ts";
 * import { validateConfig } from "./schema.ts";
 * import assert from "node:assert/strict";
 *
 * const config = validateConfig(
 *   { hostname: "mx.example.test", queue: { max_age: "120h" } },
 *   { file: null, baseDir: "/srv/tern" },
 * );
 * const text = formatConfig(config);
 * assert.match(text, /^hostname: mx\.example\.test$/m);
 * assert.match(text, /^  max_age: 5d$/m);
 * assert.match(text, /^  max_message_size: 25M$/m);
 * ```
 */
export function formatConfig(config: Config): string {
  const aliases: Record<string, string | readonly string[]> = {};
  for (const [address, targets] of Object.entries(config.aliases)) {
    aliases[address] = targets.length === 1 ? targets[0] ?? "" : targets;
  }
  const accounts: Record<string, { password?: Scalar<string> }> = {};
  for (const [address, account] of Object.entries(config.accounts)) {
    accounts[address] = account.password === undefined ? {} : { password: hiddenPassword() };
  }
  const document = new Document({
    hostname: config.hostname,
    data_dir: config.dataDir,
    listeners: config.listeners.map(({ address, port, mode }) => ({ address, port, mode })),
    tls: config.tls === null ? null : tlsYaml(config.tls),
    local_domains: config.localDomains,
    accounts,
    aliases,
    mail_root: config.mailRoot,
    relay: {
      trusted_networks: config.relay.trustedNetworks,
      routes: config.relay.routes,
      max_connections: config.relay.maxConnections,
      max_connections_per_destination: config.relay.maxConnectionsPerDestination,
      mta_sts: config.relay.mtaSts ?? true,
      dane: config.relay.dane ?? true,
      ...(config.relay.caFile === undefined ? {} : { ca_file: config.relay.caFile }),
      ...(config.relay.tlsRpt === undefined ? {} : { tls_rpt: { ...config.relay.tlsRpt } }),
    },
    dns: { nameservers: config.dns.nameservers },
    queue: {
      retry: config.queue.retry.map(formatDuration),
      max_age: formatDuration(config.queue.maxAge),
      delay_warning: config.queue.delayWarning === 0
        ? "0s"
        : formatDuration(config.queue.delayWarning),
      deliver_at_acceptance: config.queue.deliverAtAcceptance,
      ...(config.queue.store === undefined
        ? {}
        : { store: hiddenStorePassword(config.queue.store) }),
      ...(config.queue.lease === undefined ? {} : { lease: formatDuration(config.queue.lease) }),
    },
    limits: {
      max_message_size: sizeValue(config.limits.maxMessageSize),
      max_recipients: config.limits.maxRecipients,
      max_connections: config.limits.maxConnections,
      max_connections_per_ip: config.limits.maxConnectionsPerIp,
      command_timeout: formatDuration(config.limits.commandTimeout),
      data_timeout: formatDuration(config.limits.dataTimeout),
      tls_handshake_timeout: formatDuration(config.limits.tlsHandshakeTimeout),
      greeting_delay: formatDuration(config.limits.greetingDelay),
      shutdown_grace: formatDuration(config.limits.shutdownGrace),
      max_bad_commands: config.limits.maxBadCommands,
      max_auth_failures: config.limits.maxAuthFailures,
      auth_failure_delay: formatDuration(config.limits.authFailureDelay),
      auth_lockout: formatDuration(config.limits.authLockout),
      user_messages_per_hour: config.limits.userMessagesPerHour,
      user_recipients_per_day: config.limits.userRecipientsPerDay,
    },
    log: { level: config.log.level, format: config.log.format },
    submission: {
      sender_must_match: config.submission.senderMustMatch,
      ...(config.submission.dovecotAuth === undefined
        ? {}
        : { auth: `dovecot:${endpointText(config.submission.dovecotAuth)}` }),
    },
    mailbox_transport: config.mailboxTransport === undefined
      ? "maildir"
      : `lmtp:${endpointText(config.mailboxTransport)}`,
    authentication: {
      authserv_id: config.authentication.authservId,
      spf: config.authentication.spf,
      dkim: config.authentication.dkim,
      dmarc: config.authentication.dmarc,
      dmarc_reject: config.authentication.dmarcReject,
    },
    ...(config.dkim === undefined || config.dkim === null ? {} : {
      dkim: {
        keys: config.dkim.keys.map(({ domain, selector, key }) => ({ domain, selector, key })),
      },
    }),
    ...(config.dnsbl === undefined || config.dnsbl.length === 0 ? {} : {
      dnsbl: config.dnsbl.map(({ zone, codes, allow }) =>
        codes === null && allow !== true
          ? zone
          : { zone, ...(codes === null ? {} : { codes }), ...(allow === true ? { allow } : {}) }
      ),
    }),
    ...(config.milters === undefined || config.milters.length === 0 ? {} : {
      milters: config.milters.map((m) => ({
        address: m.address,
        connect_timeout: formatDuration(m.connectTimeout),
        command_timeout: formatDuration(m.commandTimeout),
        eom_timeout: formatDuration(m.eomTimeout),
        default_action: m.defaultAction,
        listeners: [...m.listeners],
      })),
    }),
    ...(config.srs === undefined || config.srs === null
      ? {}
      : { srs: { secret_file: config.srs.secretFile, domain: config.srs.domain } }),
    ...(config.admin === undefined || config.admin === null
      ? {}
      : { admin: { address: config.admin.address, port: config.admin.port } }),
    ...(config.mtaStsPolicy === undefined ? {} : {
      mta_sts_policy: {
        mode: config.mtaStsPolicy.mode,
        mx: config.mtaStsPolicy.mx,
        max_age: formatDuration(config.mtaStsPolicy.maxAge),
        listen: { ...config.mtaStsPolicy.listen },
      },
    }),
  });
  document.commentBefore = config.file === null
    ? " tern: effective configuration (built-in defaults, no file)"
    : ` tern: effective configuration of ${config.file}`;

  // Short lists on one line, one line per listener and per account, as the configuration reference writes them.
  const flowLists = [
    ["local_domains"],
    ["relay", "trusted_networks"],
    ["dns", "nameservers"],
    ["queue", "retry"],
  ];
  for (const path of flowLists) {
    const node = document.getIn(path, true);
    if (isSeq(node)) node.flow = true;
  }
  for (const key of ["listeners", "accounts", "aliases"]) {
    const parent = document.get(key, true);
    const nodes = isSeq(parent)
      ? parent.items
      : isMap(parent)
      ? parent.items.map((p) => p.value)
      : [];
    for (const node of nodes) if (isMap(node) || isSeq(node)) node.flow = true;
  }
  return document.toString({ lineWidth: 0, flowCollectionPadding: false });
}
