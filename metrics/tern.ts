/**
 * tern's metrics: one registry for the process, counted where the events
 * are logged (intake, delivery outcomes, server events, refusals) and
 * served by the admin listener (`admin:` in the configuration).
 * docs/monitoring.md lists them all, with their labels.
 *
 * The counters are process-wide, as the log is: a process runs one MTA.
 * Label values come from short fixed lists (listener modes, transports,
 * reply codes tern sends, record types it asks), never from what a client
 * typed, so the number of series stays small.
 *
 * @module
 */

import type { Queue } from "../queue/mod.ts";
import { scanQueue } from "./queue_scan.ts";
import {
  Counter,
  type CounterSeries,
  Gauge,
  type GaugeSeries,
  Histogram,
  type HistogramSeries,
  Registry,
} from "./registry.ts";

/** The registry `/metrics` renders. */
export const registry: Registry = new Registry();

/** The listener modes, and `local` for the submission socket of `tern sendmail`. */
export const LISTENERS = ["mx", "submission", "submissions", "local"] as const;

/** The delivery transports. */
export const TRANSPORTS = ["local", "lmtp", "relay"] as const;

/** Messages accepted (250 after DATA or BDAT LAST, or taken by local submission). */
export const messagesAccepted: Counter = registry.add(
  new Counter("tern_messages_accepted_total", "Messages accepted into the queue."),
);

/** Delivery outcomes, one per recipient and attempt. */
export const deliveries: Counter = registry.add(
  new Counter(
    "tern_deliveries_total",
    "Delivery outcomes, one per recipient and attempt, by transport (local, lmtp, relay) and result (sent, deferred, bounced).",
    ["transport", "result"],
    TRANSPORTS.flatMap((transport) =>
      ["sent", "deferred", "bounced"].map((result) => ({ transport, result }))
    ),
  ),
);

/** SMTP connections accepted, by listener mode. */
export const connections: Counter = registry.add(
  new Counter(
    "tern_smtp_connections_total",
    "SMTP connections accepted, by listener mode (mx, submission, submissions, local).",
    ["listener"],
  ),
);

/** SMTP sessions open now, by listener mode. */
export const sessionsOpen: Gauge = registry.add(
  new Gauge(
    "tern_smtp_sessions",
    "SMTP sessions open now, by listener mode.",
    ["listener"],
  ),
);

/** The command verbs counted by name; anything else is `other`. */
export const VERBS = [
  "EHLO",
  "HELO",
  "MAIL",
  "RCPT",
  "DATA",
  "BDAT",
  "RSET",
  "NOOP",
  "QUIT",
  "AUTH",
  "STARTTLS",
  "VRFY",
  "EXPN",
  "HELP",
] as const;

/** SMTP commands received, by listener and verb. */
export const commands: Counter = registry.add(
  new Counter(
    "tern_smtp_commands_total",
    "SMTP command lines received, by listener mode and verb (other: anything not a known verb).",
    ["listener", "verb"],
  ),
);

/** SMTP replies sent, by listener and code. */
export const replies: Counter = registry.add(
  new Counter(
    "tern_smtp_replies_total",
    "SMTP replies sent, by listener mode and reply code.",
    ["listener", "code"],
  ),
);

/** Replies of 400 or more, by code. */
export const refusals: Counter = registry.add(
  new Counter("tern_smtp_refusals_total", "SMTP replies with a code of 400 or more, by code.", [
    "code",
  ]),
);

/** Senders, recipients and messages refused, by the step and the reason. */
export const messagesRefused: Counter = registry.add(
  new Counter(
    "tern_messages_refused_total",
    "MAIL, RCPT, DATA/BDAT and end of data refused (4yz or 5yz), by step and reason (the class of the enhanced status code, RFC 3463).",
    ["stage", "reason"],
  ),
);

/** What milters decided or asked for, by milter (its address) and action. */
export const milterActions: Counter = registry.add(
  new Counter(
    "tern_milter_actions_total",
    "Milter verdicts and changes (continue, accept, reject, tempfail, reply, discard, quarantine, addheader, chgheader, insheader, chgfrom, addrcpt, delrcpt, replbody, failed), by milter.",
    ["milter", "action"],
  ),
);

/** AUTH attempts that failed (a wrong password, or refused unchecked while locked out). */
export const authFailures: Counter = registry.add(
  new Counter(
    "tern_auth_failures_total",
    "Failed SMTP AUTH attempts, those refused while locked out included.",
  ),
);

/** AUTH attempts refused unchecked: too many failures from the client. */
export const authLockouts: Counter = registry.add(
  new Counter(
    "tern_auth_lockouts_total",
    "SMTP AUTH attempts refused unchecked because the client or account failed too often.",
  ),
);

/** SPF, DKIM and DMARC verdicts of received mail. */
export const authResults: Counter = registry.add(
  new Counter(
    "tern_auth_results_total",
    "Verdicts of the checks of received mail, by method (spf, spf_helo, dkim, dmarc) and result.",
    ["method", "result"],
  ),
);

/** DKIM signatures added to users' mail. */
export const dkimSignatures: Counter = registry.add(
  new Counter(
    "tern_dkim_signatures_total",
    "DKIM-Signature fields added to outgoing mail, by algorithm.",
    ["algorithm"],
  ),
);

/** TLS handshakes done by clients of the listeners. */
export const tlsInbound: Counter = registry.add(
  new Counter(
    "tern_tls_inbound_total",
    "TLS handshakes completed on the listeners (STARTTLS or implicit TLS), by listener mode and TLS version.",
    ["listener", "version"],
  ),
);

/** The TLS of relay deliveries. */
export const tlsOutbound: Counter = registry.add(
  new Counter(
    "tern_tls_outbound_total",
    "Relay delivery outcomes by the TLS of the connection (version, or none) and whether the certificate was verified; one per recipient and attempt.",
    ["version", "verified"],
  ),
);

/** DNS questions sent (answers from the cache are not counted). */
export const dnsQueries: Counter = registry.add(
  new Counter(
    "tern_dns_queries_total",
    "DNS questions sent to the name servers (not those answered from the cache), by record type.",
    ["type"],
  ),
);

/** DNS tries that failed. */
export const dnsFailures: Counter = registry.add(
  new Counter(
    "tern_dns_failures_total",
    "DNS tries that failed, one per server and round, by record type and reason (timeout, servfail, network, ...).",
    ["type", "reason"],
  ),
);

/** Certificate orders (first issuance or renewal) that failed; the old certificate kept serving. */
export const acmeRenewFailures: Counter = registry.add(
  new Counter(
    "tern_acme_renew_failures_total",
    "ACME certificate orders (issuance or renewal) that failed; the certificate in use keeps serving.",
  ),
);

/** From a few milliseconds (local disks) to minutes (a slow fsync, a milter). */
const INTAKE_BUCKETS = [
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
];

/** From instant local deliveries to the days of a retry schedule. */
const DELIVERY_BUCKETS = [
  0.01,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
  30,
  60,
  300,
  900,
  3600,
  14400,
  86400,
  432000,
];

/** How long the end of data took to be answered. */
export const intakeLatency: Histogram = registry.add(
  new Histogram(
    "tern_intake_latency_seconds",
    "Time from the end of a message's data to the reply (checks, signing, the durable commit), by listener mode.",
    ["listener"],
    INTAKE_BUCKETS,
  ),
);

/** How long the store took to make a message durable. */
export const storeCommitLatency: Histogram = registry.add(
  new Histogram(
    "tern_store_commit_latency_seconds",
    "Time the queue store took to make an accepted message durable (before the 250).",
    [],
    INTAKE_BUCKETS,
  ),
);

/** From arrival to the final outcome of each recipient. */
export const deliveryLatency: Histogram = registry.add(
  new Histogram(
    "tern_delivery_latency_seconds",
    "Time from a message's arrival to the final outcome (sent or bounced) of each recipient, by transport.",
    ["transport"],
    DELIVERY_BUCKETS,
    TRANSPORTS.map((transport) => ({ transport })),
  ),
);

/** A transport's series, taken once. */
interface TransportSeries {
  readonly sent: CounterSeries;
  readonly deferred: CounterSeries;
  readonly bounced: CounterSeries;
  readonly latency: HistogramSeries;
}

const transportSeries = new Map<string, TransportSeries>(
  TRANSPORTS.map((t) => [t, {
    sent: deliveries.labels(t, "sent"),
    deferred: deliveries.labels(t, "deferred"),
    bounced: deliveries.labels(t, "bounced"),
    latency: deliveryLatency.labels(t),
  }]),
);

/**
 * Counts one delivery outcome; a final one (sent or bounced) also gives the
 * time since the message arrived.
 *
 * @param transport `local`, `lmtp` or `relay`.
 * @param result The outcome.
 * @param seconds Since the message arrived.
 */
export function countDelivery(
  transport: typeof TRANSPORTS[number],
  result: "sent" | "deferred" | "bounced",
  seconds: number,
): void {
  const series = transportSeries.get(transport)!;
  series[result].inc();
  if (result !== "deferred") series.latency.observe(seconds);
}

/** Queued messages by state, computed when scraped. */
export const queueMessages: Gauge = registry.add(
  new Gauge(
    "tern_queue_messages",
    "Messages in the queue by state: held, deferred (a recipient failed for now), active (waiting for or in delivery).",
    ["state"],
    [{ state: "active" }, { state: "deferred" }, { state: "held" }],
  ),
);

/** The age of the oldest message in the queue, computed when scraped. */
export const queueOldestAge: Gauge = registry.add(
  new Gauge(
    "tern_queue_oldest_message_age_seconds",
    "Age of the oldest message in the queue (any state), in seconds; 0 when the queue is empty.",
  ),
);

/** The series of one listener, taken once so each event is an add. */
export interface ListenerSeries {
  /** Connections accepted. */
  readonly connections: CounterSeries;
  /** Sessions open now. */
  readonly sessions: GaugeSeries;
  /** The end of data to its reply. */
  readonly intake: HistogramSeries;
  /**
   * Counts one command line.
   *
   * @param line The line as received (AUTH payloads are masked).
   */
  command(line: string): void;
  /**
   * Counts one reply.
   *
   * @param code Its code.
   */
  reply(code: number): void;
  /**
   * Counts one TLS handshake.
   *
   * @param version The protocol, as Node names it (`TLSv1.3`).
   */
  tls(version: string): void;
}

/** The TLS versions named as such; anything else is `other`. */
const TLS_VERSIONS = new Set(["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]);

/**
 * The verb of a command line, from {@linkcode VERBS}, case-insensitive,
 * compared in place: no substring, no upper-casing.
 *
 * @param line The command line.
 * @returns The index in VERBS, or -1.
 */
export function verbIndex(line: string): number {
  for (let v = 0; v < VERBS.length; v++) {
    const verb = VERBS[v]!;
    const n = verb.length;
    if (line.length < n) continue;
    // The verb ends the line or is followed by a space (RFC 5321 §4.1.1).
    if (line.length > n && line.charCodeAt(n) !== 0x20) continue;
    let i = 0;
    // ASCII letters: OR-ing 0x20 lower-cases both sides.
    while (i < n && (line.charCodeAt(i) | 0x20) === (verb.charCodeAt(i) | 0x20)) i++;
    if (i === n) return v;
  }
  return -1;
}

const listenerSeries = new Map<string, ListenerSeries>();

/**
 * The series of a listener, made once per listener mode.
 *
 * @param listener The listener mode (or `local`).
 * @returns Its series.
 */
export function seriesOf(listener: string): ListenerSeries {
  const known = listenerSeries.get(listener);
  if (known !== undefined) return known;
  const verbs = VERBS.map((verb) => commands.labels(listener, verb));
  let otherVerb: CounterSeries | null = null;
  // Indexed by code: tern sends three-digit codes only (RFC 5321 §4.2).
  const byCode: (CounterSeries | undefined)[] = [];
  const byVersion = new Map<string, CounterSeries>();
  const series: ListenerSeries = {
    connections: connections.labels(listener),
    sessions: sessionsOpen.labels(listener),
    intake: intakeLatency.labels(listener),
    command(line) {
      // A masked AUTH continuation line is not a command.
      if (line === "****") return;
      const v = verbIndex(line);
      if (v >= 0) verbs[v]!.inc();
      else (otherVerb ??= commands.labels(listener, "other")).inc();
    },
    reply(code) {
      const c = Number.isInteger(code) && code >= 200 && code <= 599 ? code : 0;
      (byCode[c] ??= replies.labels(listener, c === 0 ? "other" : String(c))).inc();
    },
    tls(version) {
      const v = TLS_VERSIONS.has(version) ? version : "other";
      let s = byVersion.get(v);
      if (s === undefined) byVersion.set(v, s = tlsInbound.labels(listener, v));
      s.inc();
    },
  };
  listenerSeries.set(listener, series);
  return series;
}

/** RFC 3463 §3.1–§3.8: the subject of an enhanced status code, by its second number. */
const SUBJECTS = [
  "other", // X.0.Y
  "addressing", // X.1.Y
  "mailbox", // X.2.Y
  "mail_system", // X.3.Y
  "network", // X.4.Y
  "protocol", // X.5.Y
  "content", // X.6.Y
  "policy", // X.7.Y
];

/** The steps of a transaction whose refusals are counted as messages refused. */
const REFUSAL_STAGES = new Set(["mail", "rcpt", "data", "bdat", "end-of-data"]);

/** The index in SUBJECTS of a refusal's reason: 0 (`other`) without a usable enhanced status code. */
function subjectIndex(enhancedStatus: string | undefined): number {
  // "5.1.1": one digit, a dot, the subject, a dot (RFC 3463 §2).
  if (enhancedStatus === undefined || enhancedStatus.charCodeAt(3) !== 0x2e) return 0;
  const subject = enhancedStatus.charCodeAt(2) - 0x30;
  return subject >= 0 && subject < SUBJECTS.length ? subject : 0;
}

/**
 * The reason of a refusal, for `tern_messages_refused_total`: the subject of
 * its enhanced status code (RFC 3463), `other` without one.
 *
 * @param enhancedStatus The enhanced status code, if any.
 * @returns The reason label.
 */
export function refusalReason(enhancedStatus: string | undefined): string {
  return SUBJECTS[subjectIndex(enhancedStatus)]!;
}

/** The series of each step, by subject index, made on first use: a flood of refusals allocates nothing. */
const refusedSeries = new Map<string, (CounterSeries | undefined)[]>();

/**
 * Counts a refused sender, recipient or message (steps outside a transaction are not counted).
 *
 * @param stage The step refused.
 * @param enhancedStatus Its enhanced status code.
 */
export function countRefusal(stage: string | undefined, enhancedStatus: string | undefined): void {
  if (stage === undefined || !REFUSAL_STAGES.has(stage)) return;
  let byReason = refusedSeries.get(stage);
  if (byReason === undefined) refusedSeries.set(stage, byReason = []);
  const i = subjectIndex(enhancedStatus);
  (byReason[i] ??= messagesRefused.labels(stage, SUBJECTS[i]!)).inc();
}

const AUTH_METHODS = new Set(["spf", "spf_helo", "dkim", "dmarc"]);
const AUTH_RESULTS = new Set([
  "pass",
  "fail",
  "softfail",
  "neutral",
  "none",
  "temperror",
  "permerror",
  "policy",
]);

/**
 * Counts the verdicts of a message's checks from its one-line summary
 * (`spf=pass dkim=pass:example.org dmarc=fail:reject`, as logged).
 *
 * @param summary The summary; empty when nothing was checked.
 */
export function countAuthSummary(summary: string): void {
  for (const part of summary.split(" ")) {
    const eq = part.indexOf("=");
    if (eq <= 0) continue;
    const method = part.slice(0, eq);
    if (!AUTH_METHODS.has(method)) continue;
    const colon = part.indexOf(":", eq);
    const result = part.slice(eq + 1, colon < 0 ? undefined : colon);
    authResults.inc({ method, result: AUTH_RESULTS.has(result) ? result : "other" });
  }
}

/**
 * Counts the TLS of one relay delivery outcome.
 *
 * @param version The TLS version, or `none`.
 * @param verified Whether the certificate was verified.
 */
export function countTlsOutbound(version: string, verified: boolean): void {
  const v = version === "none" || TLS_VERSIONS.has(version) ? version : "other";
  tlsOutbound.inc({ version: v, verified: verified ? "yes" : "no" });
}

/** How long a count of the queue by state is reused at least: it reads every message. */
export const QUEUE_SCAN_INTERVAL_MS = 5_000;
/**
 * A count of the queue is reused for this many times as long as it took:
 * reading a million deferred messages takes about a minute, and counting
 * them at every scrape would keep a core busy and slow the intake. The
 * scans then cost at most a twentieth of a core whatever the queue's depth.
 */
const QUEUE_SCAN_REUSE_FACTOR = 20;

/**
 * Keeps `tern_queue_messages` and `tern_queue_oldest_message_age_seconds` up
 * to date from a queue: a full scan of the queue's records (the store has no
 * count by state), at most once per {@linkcode QUEUE_SCAN_INTERVAL_MS}, or
 * per twenty times as long as the last scan took when that is longer, however
 * often it is scraped. The age is computed at each scrape from the oldest
 * arrival found.
 *
 * @param queue The queue.
 * @param clock Epoch ms now (tests pass their own).
 * @returns A function that stops it.
 */
export function watchQueue(
  queue: Pick<Queue, "list">,
  clock: () => number = Date.now,
): () => void {
  let last = -Infinity;
  let reuseMs = QUEUE_SCAN_INTERVAL_MS;
  let oldest: number | null = null;
  return registry.addCollector(async () => {
    const now = clock();
    if (now - last >= reuseMs) {
      last = now;
      try {
        const scan = await scanQueue(queue);
        for (const [state, n] of Object.entries(scan.counts)) queueMessages.set({ state }, n);
        oldest = scan.oldestArrival;
      } catch {
        // The store is closed or failing: /readyz says so; keep the last counts.
      }
      reuseMs = Math.max(QUEUE_SCAN_INTERVAL_MS, QUEUE_SCAN_REUSE_FACTOR * (clock() - now));
    }
    queueOldestAge.set(undefined, oldest === null ? 0 : Math.max(0, (now - oldest) / 1000));
  });
}
