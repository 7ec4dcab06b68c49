/**
 * The YAML key names, per mapping: what each section may contain, for
 * unknown-key reports and the generated reference.
 *
 * @module
 */

import type { ListenerMode, LogFormatName, LogLevelName } from "./types.ts";

export const TOP_KEYS = [
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
  "admin",
  "dnsbl",
  "dkim",
  "mailbox_transport",
  "authentication",
  "mta_sts_policy",
  "milters",
  "workers",
] as const;

export const MILTER_KEYS = [
  "address",
  "connect_timeout",
  "command_timeout",
  "eom_timeout",
  "default_action",
  "listeners",
] as const;

export const MILTER_DEFAULT_ACTIONS = ["tempfail", "accept"] as const;

export const TLS_RPT_KEYS = ["enabled", "organization", "contact", "from"] as const;

export const MTA_STS_POLICY_KEYS = ["mode", "mx", "max_age", "listen"] as const;

export const MTA_STS_LISTEN_KEYS = ["address", "port"] as const;

export const AUTHENTICATION_KEYS = ["authserv_id", "spf", "dkim", "dmarc", "dmarc_reject"] as const;

export const ADMIN_KEYS = ["address", "port"] as const;

export const SRS_KEYS = ["secret_file", "domain"] as const;

export const ROUTE_KEYS = ["host", "tls", "auth"] as const;

export const ROUTE_AUTH_KEYS = ["username", "password_file", "allow_plaintext"] as const;

export const ROUTE_TLS = ["none", "opportunistic", "require", "verify"] as const;

export const LISTENER_KEYS = ["address", "port", "mode"] as const;

export const TLS_KEYS = ["cert", "key", "acme"] as const;

export const ACME_KEYS = [
  "directory",
  "contact",
  "domains",
  "challenge",
  "address",
  "http_port",
  "tls_port",
  "ca_file",
] as const;

export const ACCOUNT_KEYS = ["password"] as const;

export const RELAY_KEYS = [
  "trusted_networks",
  "routes",
  "max_connections",
  "max_connections_per_destination",
  "ca_file",
  "mta_sts",
  "dane",
  "tls_rpt",
] as const;

export const DNS_KEYS = ["nameservers"] as const;

export const DNSBL_KEYS = ["zone", "codes", "allow"] as const;

export const DKIM_KEYS = ["keys"] as const;

export const DKIM_KEY_KEYS = ["domain", "selector", "key"] as const;

export const QUEUE_KEYS = [
  "retry",
  "max_age",
  "delay_warning",
  "deliver_at_acceptance",
  "store",
  "lease",
] as const;

export const LIMITS_KEYS = [
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
  "user_messages_per_hour",
  "user_recipients_per_day",
] as const;

export const SUBMISSION_KEYS = ["sender_must_match", "auth"] as const;

export const LOG_KEYS = ["level", "format"] as const;

/**
 * Every key the configuration accepts, by section (`""` is the top level,
 * `listeners[]` a listener, `accounts.*` an account). The reference in
 * docs/configuration.md is checked against this list, so it cannot drift.
 */
export const CONFIG_KEYS: Readonly<Record<string, readonly string[]>> = Object.freeze({
  "": TOP_KEYS,
  "listeners[]": LISTENER_KEYS,
  tls: TLS_KEYS,
  "tls.acme": ACME_KEYS,
  "accounts.*": ACCOUNT_KEYS,
  relay: RELAY_KEYS,
  "relay.routes.*": ROUTE_KEYS,
  "relay.routes.*.auth": ROUTE_AUTH_KEYS,
  "relay.tls_rpt": TLS_RPT_KEYS,
  mta_sts_policy: MTA_STS_POLICY_KEYS,
  "mta_sts_policy.listen": MTA_STS_LISTEN_KEYS,
  srs: SRS_KEYS,
  admin: ADMIN_KEYS,
  "dnsbl[]": DNSBL_KEYS,
  "milters[]": MILTER_KEYS,
  dkim: DKIM_KEYS,
  "dkim.keys[]": DKIM_KEY_KEYS,
  authentication: AUTHENTICATION_KEYS,
  dns: DNS_KEYS,
  queue: QUEUE_KEYS,
  limits: LIMITS_KEYS,
  submission: SUBMISSION_KEYS,
  log: LOG_KEYS,
});

export const LISTENER_MODES: readonly ListenerMode[] = ["mx", "submission", "submissions"];

export const LOG_LEVELS: readonly LogLevelName[] = ["debug", "info", "warn", "error"];

export const LOG_FORMATS: readonly LogFormatName[] = ["text", "json"];
