/**
 * Validation of `dns`, `queue`, `limits`, `submission` and `log`.
 *
 * @module
 */

import { type Checker, describe } from "./checker.ts";
import {
  DNS_KEYS,
  LIMITS_KEYS,
  LOG_FORMATS,
  LOG_KEYS,
  LOG_LEVELS,
  QUEUE_KEYS,
  SUBMISSION_KEYS,
} from "./keys.ts";
import { parseNameserver } from "./syntax.ts";
import {
  type Config,
  DEFAULT_LIMITS,
  DEFAULT_LOG,
  DEFAULT_QUEUE,
  DEFAULT_SUBMISSION,
} from "./types.ts";

export function checkDns(c: Checker, value: unknown): Config["dns"] {
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

export function checkQueue(c: Checker, value: unknown): Config["queue"] {
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
  const deliverAtAcceptance = queue.deliver_at_acceptance === undefined
    ? DEFAULT_QUEUE.deliverAtAcceptance
    : c.boolean(queue.deliver_at_acceptance, "queue.deliver_at_acceptance");
  return {
    retry,
    maxAge: maxAge ?? DEFAULT_QUEUE.maxAge,
    delayWarning: delayWarning ?? DEFAULT_QUEUE.delayWarning,
    deliverAtAcceptance: deliverAtAcceptance ?? DEFAULT_QUEUE.deliverAtAcceptance,
  };
}

export function checkLimits(c: Checker, value: unknown): Config["limits"] {
  const limits = c.section(value, "limits", LIMITS_KEYS);
  const d = DEFAULT_LIMITS;
  const integer = (key: string, fallback: number): number =>
    limits[key] === undefined
      ? fallback
      : c.positiveInteger(limits[key], `limits.${key}`) ?? fallback;
  // 0 turns a limit off.
  const countOrZero = (key: string, fallback: number): number => {
    const value = limits[key];
    if (value === undefined) return fallback;
    if (typeof value === "number" && Number.isSafeInteger(value) && value >= 0) return value;
    c.report(
      `limits.${key}`,
      `expected 0 (no limit) or a positive integer, found ${describe(value)}`,
    );
    return fallback;
  };
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
    userMessagesPerHour: countOrZero("user_messages_per_hour", d.userMessagesPerHour),
    userRecipientsPerDay: countOrZero("user_recipients_per_day", d.userRecipientsPerDay),
  };
}

export function checkSubmission(c: Checker, value: unknown): Config["submission"] {
  const submission = c.section(value, "submission", SUBMISSION_KEYS);
  const senderMustMatch = submission.sender_must_match === undefined
    ? DEFAULT_SUBMISSION.senderMustMatch
    : c.boolean(submission.sender_must_match, "submission.sender_must_match") ??
      DEFAULT_SUBMISSION.senderMustMatch;
  return { senderMustMatch };
}

export function checkLog(c: Checker, value: unknown): Config["log"] {
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
