/**
 * Sending TLS-RPT aggregate reports (RFC 8460 §4, §5): for each domain with
 * counts for a UTC day and a `_smtp._tls.<domain>` TXT record, one JSON
 * report, gzipped, mailed to each `mailto:` of its `rua` (through tern's own
 * queue, DKIM-signed like local submissions) and POSTed to each `https:`.
 *
 * `tern tls-report` prints and sends a day's reports; `tern serve` sends the
 * previous day's once a day, a random time within the hour after UTC
 * midnight (RFC 8460 §4.1 asks reporters to spread their load), and each
 * report that went out is marked in the store, so a restart or another node
 * does not send it again (the mark is not atomic: two nodes at the same
 * instant could both send one).
 *
 * @module
 */

import tls from "node:tls";
import { gzipSync } from "node:zlib";
import type { Config } from "../config/schema.ts";
import { resolveAddresses } from "../dns/mx.ts";
import { type DnsQuerier, DnsTemporaryError } from "../dns/resolver.ts";
import type { Logger } from "../log/logger.ts";
import { buildMessage } from "../message/build.ts";
import { signerOf } from "../mta/dkim_signer.ts";
import { routeAddress } from "../mta/routing.ts";
import type { Queue } from "../queue/queue.ts";
import { isIpv4, isIpv6 } from "../smtp/path.ts";
import { formatLocalReceived } from "../smtp/received.ts";
import {
  buildReport,
  countsName,
  indexName,
  parseCounts,
  parseTlsRptRecord,
  type ReportSubmitter,
  sentName,
  type TlsRptRecord,
  utcDay,
} from "./tls_rpt.ts";
import { parseIndex } from "./tls_rpt_store.ts";

/** The longest an HTTPS POST of a report may take, ms. */
const POST_TIMEOUT_MS = 60_000;
/** Counts are kept this many days, then removed by the daily run. */
const KEEP_DAYS = 7;
const DAY_MS = 24 * 3600_000;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** `relay.tls_rpt` with its defaults applied. */
export interface TlsRptSettings extends ReportSubmitter {
  /** Whether sessions are counted and reports sent. */
  readonly enabled: boolean;
  /** The From address of report mail, also the envelope sender. */
  readonly from: string;
  /** The domain of the reporter (`TLS-Report-Submitter`, RFC 8460 §5.3). */
  readonly submitter: string;
}

/**
 * `relay.tls_rpt` completed with its defaults: on; organization the host
 * name; contact and sender `postmaster@<hostname>`.
 *
 * @param config The configuration.
 * @returns The settings.
 */
export function tlsRptSettings(config: Config): TlsRptSettings {
  const t = config.relay.tlsRpt;
  const from = t?.from ?? `postmaster@${config.hostname}`;
  return {
    enabled: t?.enabled ?? true,
    organization: t?.organization ?? config.hostname,
    contact: t?.contact ?? from,
    from,
    submitter: from.slice(from.lastIndexOf("@") + 1).toLowerCase(),
  };
}

/** What a day's reports need. */
export interface TlsReportContext {
  /** The configuration (submitter, DKIM keys, routing of the report mail). */
  readonly config: Config;
  /** Where counts are, and where report mail is queued. */
  readonly queue: Pick<Queue, "getState" | "setState" | "receive">;
  /** Looks up `_smtp._tls` records and the addresses of `https:` report hosts. */
  readonly resolver: DnsQuerier;
  /** Where sent reports and failures are logged. */
  readonly logger?: Logger;
  /** Called when report mail was queued (the server wakes its delivery loop). */
  readonly onQueued?: () => void;
  /** The clock. @default {Date.now} */
  readonly now?: () => number;
}

/** One domain's report for a day, and where it goes. */
export interface PreparedReport {
  /** The policy domain. */
  readonly domain: string;
  /** The report (RFC 8460 §4.4). */
  readonly report: Record<string, unknown>;
  /** The domain's `rua`, or `null` when it publishes none (then nothing is sent). */
  readonly rua: TlsRptRecord | null;
  /** Why the record could not be had, when the lookup failed. */
  readonly lookupError?: string;
}

/**
 * The reports of a day: one per domain with counts.
 *
 * @param day `YYYY-MM-DD` (UTC).
 * @param context Store, resolver, configuration.
 * @param only Only this domain, when given.
 * @returns The reports, by domain name.
 */
export async function prepareReports(
  day: string,
  context: TlsReportContext,
  only?: string,
): Promise<PreparedReport[]> {
  const settings = tlsRptSettings(context.config);
  const domains = parseIndex(await context.queue.getState(indexName(day)))
    .filter((d) => only === undefined || d === only).sort();
  const out: PreparedReport[] = [];
  for (const domain of domains) {
    const counts = parseCounts(await context.queue.getState(countsName(day, domain)));
    if (Object.keys(counts.policies).length === 0) continue;
    const reportId = `${day}T00:00:00Z_${domain}_${settings.submitter}`;
    const report = buildReport(day, domain, counts, settings, reportId);
    const found = await lookupRua(domain, context.resolver);
    out.push({ domain, report, ...found });
  }
  return out;
}

/** The `_smtp._tls` record of a domain (RFC 8460 §3). */
async function lookupRua(
  domain: string,
  resolver: DnsQuerier,
): Promise<{ rua: TlsRptRecord | null; lookupError?: string }> {
  try {
    const answer = await resolver.query(`_smtp._tls.${domain}`, "TXT");
    if (answer.kind !== "answer") return { rua: null };
    const texts = answer.records.flatMap((r) => r.type === "TXT" ? [r.data] : []);
    return { rua: parseTlsRptRecord(texts) };
  } catch (error: unknown) {
    if (error instanceof DnsTemporaryError) return { rua: null, lookupError: error.message };
    if (error instanceof SyntaxError) return { rua: null };
    throw error;
  }
}

/** What became of one destination of a report. */
export interface Delivery {
  /** `mailto:...` or the `https:` URL. */
  readonly rua: string;
  /** Whether it was queued (mail) or accepted (HTTPS). */
  readonly ok: boolean;
  /** The queue id, or why it failed. */
  readonly detail: string;
}

/**
 * Sends one report to every destination of its `rua`.
 *
 * @param day The report's day.
 * @param prepared The report and its destinations.
 * @param context Store, resolver, configuration.
 * @returns One entry per destination.
 */
export async function sendReport(
  day: string,
  prepared: PreparedReport,
  context: TlsReportContext,
): Promise<Delivery[]> {
  const rua = prepared.rua;
  if (rua === null) return [];
  const settings = tlsRptSettings(context.config);
  const gz = new Uint8Array(gzipSync(encoder.encode(JSON.stringify(prepared.report))));
  const start = Date.parse(`${day}T00:00:00Z`) / 1000;
  // RFC 8460 §5.1: submitter!policy-domain!begin!end!unique-id.json.gz
  const filename = `${settings.submitter}!${prepared.domain}!${start}!${
    start + 86399
  }!${day}.json.gz`;
  const results: Delivery[] = [];
  for (const address of rua.mailto) {
    try {
      const id = await queueReportMail(address, prepared, gz, filename, context);
      results.push({ rua: `mailto:${address}`, ok: true, detail: `queued as ${id}` });
    } catch (error: unknown) {
      results.push({ rua: `mailto:${address}`, ok: false, detail: text(error) });
    }
  }
  for (const url of rua.https) {
    const posted = await postReport(url, gz, context);
    results.push({ rua: url, ok: posted === null, detail: posted ?? "accepted" });
  }
  const ok = results.some((r) => r.ok);
  if (ok) await context.queue.setState(sentName(day, prepared.domain), new Date().toISOString());
  for (const r of results) {
    context.logger?.log(
      r.ok ? "info" : "warn",
      r.ok ? "tls_rpt.sent" : "tls_rpt.error",
      undefined,
      {
        day,
        domain: prepared.domain,
        rua: r.rua,
        ...(r.ok ? { result: r.detail } : { error: r.detail }),
      },
    );
  }
  return results;
}

function text(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).replace(/\s+/g, " ");
}

/**
 * The report as mail (RFC 8460 §5.3): `multipart/report;
 * report-type="tlsrpt"`, a text part, then the `application/tlsrpt+gzip`
 * part; `TLS-Report-Domain` and `TLS-Report-Submitter`; and `TLS-Required:
 * No` (RFC 8689 §5), since a report must go out even when TLS to the
 * reporting address fails (RFC 8460 §3).
 *
 * @param to The report address.
 * @param prepared The report.
 * @param gz The gzipped JSON.
 * @param filename The attachment's name (RFC 8460 §5.1).
 * @param settings Who reports.
 * @param hostname For the Message-ID.
 * @returns The message bytes.
 */
export function reportMessage(
  to: string,
  prepared: PreparedReport,
  gz: Uint8Array,
  filename: string,
  settings: TlsRptSettings,
  hostname: string,
): Uint8Array {
  const reportId = String(prepared.report["report-id"]);
  const built = buildMessage({
    from: settings.from,
    to,
    subject:
      `Report Domain: ${prepared.domain} Submitter: ${settings.submitter} Report-ID: <${reportId}>`,
    text: `This is an aggregate TLS report (RFC 8460) from ${settings.organization} about ` +
      `the TLS sessions its mail server made to ${prepared.domain}.\n` +
      `The report is attached as ${filename}.\n`,
    attachments: [{ filename, content: gz, contentType: "application/tlsrpt+gzip" }],
    headers: {
      "TLS-Report-Domain": prepared.domain,
      "TLS-Report-Submitter": settings.submitter,
      "TLS-Required": "No",
      "Auto-Submitted": "auto-generated",
    },
  }, { hostname });
  // The builder makes multipart/mixed for a text and a file; RFC 8460 §5.3 wants
  // multipart/report (RFC 6522) with the same two parts in the same order.
  const message = decoder.decode(built.content);
  const end = message.indexOf("\r\n\r\n");
  const head = message.slice(0, end).replace(
    /^Content-Type: multipart\/mixed;/im,
    'Content-Type: multipart/report; report-type="tlsrpt";',
  );
  return encoder.encode(head + message.slice(end));
}

/** Queues the report mail to one address; returns its queue id. */
async function queueReportMail(
  to: string,
  prepared: PreparedReport,
  gz: Uint8Array,
  filename: string,
  context: TlsReportContext,
): Promise<string> {
  const { config } = context;
  const settings = tlsRptSettings(config);
  const content = reportMessage(to, prepared, gz, filename, settings, config.hostname);
  const recipients = routeAddress(config, to);
  if (recipients.length === 0) throw new Error(`${to} cannot be reached`);
  const now = (context.now ?? Date.now)();
  const incoming = await context.queue.receive({
    envelope: { reversePath: settings.from, forwardPaths: [to], body: "7BIT", smtputf8: false },
    recipients,
    clientAddress: "local",
    now,
  });
  try {
    // RFC 5321 §4.4: a message made here still gets its trace field.
    await incoming.write(
      encoder.encode(formatLocalReceived(config.hostname, incoming.queueId, new Date(now))),
    );
    // Signed as local submissions are (mta/pickup.ts): the report is ours.
    const signing = signerOf(config)?.begin() ?? null;
    signing?.update(content);
    await incoming.write(content);
    const signature = signing?.finish() ?? "";
    await incoming.commit(signature === "" ? {} : { header: encoder.encode(signature) });
  } catch (error: unknown) {
    await incoming.abort().catch(() => {});
    throw error;
  }
  context.onQueued?.();
  return incoming.queueId;
}

/**
 * POSTs the gzipped report (RFC 8460 §5.4: `Content-Type:
 * application/tlsrpt+gzip`). The host is resolved with tern's resolver and
 * its certificate verified (system CAs and `relay.ca_file`), as for MTA-STS.
 *
 * @returns `null` when the server answered 2xx, else why not.
 */
async function postReport(
  url: string,
  body: Uint8Array,
  context: TlsReportContext,
): Promise<string | null> {
  const target = new URL(url);
  const host = target.hostname.replace(/^\[|\]$/g, "");
  const port = target.port === "" ? 443 : Number(target.port);
  let addresses: string[];
  try {
    addresses = isIpv4(host) || isIpv6(host)
      ? [host]
      : await resolveAddresses(host, context.resolver);
  } catch (error: unknown) {
    return `cannot resolve ${host}: ${text(error)}`;
  }
  if (addresses.length === 0) return `${host} has no address`;
  const extra = context.config.relay.caCerts;
  const ca = extra === undefined ? undefined : [...tls.rootCertificates, ...extra];
  const head = `POST ${target.pathname}${target.search} HTTP/1.1\r\nHost: ${target.host}\r\n` +
    "Content-Type: application/tlsrpt+gzip\r\n" +
    `Content-Length: ${body.length}\r\nUser-Agent: tern\r\nConnection: close\r\n\r\n`;
  let last = "";
  for (const address of addresses) {
    const result = await postOnce(address, port, host, encoder.encode(head), body, ca);
    if (result === null) return null;
    last = result;
  }
  return `${url}: ${last}`;
}

function postOnce(
  address: string,
  port: number,
  servername: string,
  head: Uint8Array,
  body: Uint8Array,
  ca: string[] | undefined,
): Promise<string | null> {
  return new Promise((resolve) => {
    let received = "";
    let settled = false;
    const socket = tls.connect({
      host: address,
      port,
      ...(isIpv4(servername) || isIpv6(servername) ? {} : { servername }),
      rejectUnauthorized: true,
      minVersion: "TLSv1.2",
      ALPNProtocols: ["http/1.1"],
      ...(ca === undefined ? {} : { ca }),
    });
    const finish = (result: string | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(
      () => finish(`no answer within ${POST_TIMEOUT_MS} ms`),
      POST_TIMEOUT_MS,
    );
    socket.once("secureConnect", () => {
      socket.write(head);
      socket.write(body);
    });
    socket.on("data", (data: Uint8Array) => {
      received += decoder.decode(data);
      const line = received.indexOf("\r\n");
      if (line < 0) {
        if (received.length > 8192) finish("not an HTTP response");
        return;
      }
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(received.slice(0, line));
      if (status === null) finish("not an HTTP response");
      else if (status[1]!.startsWith("2")) finish(null);
      else finish(`HTTP ${status[1]}`);
    });
    socket.once("error", (error: Error) => finish(text(error)));
    socket.once("close", () => finish("the connection closed before an answer"));
  });
}

/**
 * The daily run: sends the reports of `day` not sent yet, then removes the
 * counts of the day {@linkcode KEEP_DAYS} before.
 *
 * @param day `YYYY-MM-DD`.
 * @param context Store, resolver, configuration.
 * @returns How many reports went out.
 */
export async function sendDailyReports(day: string, context: TlsReportContext): Promise<number> {
  let sent = 0;
  for (const prepared of await prepareReports(day, context)) {
    if (prepared.rua === null) continue;
    if (await context.queue.getState(sentName(day, prepared.domain)) !== null) continue;
    const results = await sendReport(day, prepared, context);
    if (results.some((r) => r.ok)) sent++;
  }
  const old = utcDay(Date.parse(`${day}T00:00:00Z`) - KEEP_DAYS * DAY_MS);
  for (const domain of parseIndex(await context.queue.getState(indexName(old)))) {
    await context.queue.setState(countsName(old, domain), null);
    await context.queue.setState(sentName(old, domain), null);
  }
  await context.queue.setState(indexName(old), null);
  return sent;
}

/** Options of {@linkcode TlsRptScheduler}. */
export interface TlsRptSchedulerOptions {
  /** Sends the reports of a day. */
  readonly run: (day: string) => Promise<unknown>;
  /** Where a failed run is logged. */
  readonly logger?: Logger;
  /** The clock. @default {Date.now} */
  readonly now?: () => number;
  /** 0 to 1. @default {Math.random} */
  readonly random?: () => number;
}

/**
 * Runs the daily reports: a random time within the hour after each UTC
 * midnight, for the day that just ended; and once soon after start, for
 * yesterday, in case the server was down at that time (reports already
 * sent are skipped).
 */
export class TlsRptScheduler {
  readonly #options: TlsRptSchedulerOptions;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #running: Promise<void> = Promise.resolve();
  #closed = false;

  /**
   * Makes the scheduler; nothing runs until {@linkcode start}.
   *
   * @param options What to run, clock.
   */
  constructor(options: TlsRptSchedulerOptions) {
    this.#options = options;
  }

  /** Schedules the first run. */
  start(): void {
    const now = (this.#options.now ?? Date.now)();
    this.#schedule(this.#jitter(), utcDay(now - DAY_MS));
  }

  /**
   * Stops; a run under way is awaited.
   *
   * @returns When stopped.
   */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#running;
  }

  #jitter(): number {
    return Math.floor((this.#options.random ?? Math.random)() * 3600_000);
  }

  #schedule(delay: number, day: string): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#running = this.#options.run(day).then(() => {}, (error: unknown) => {
        this.#options.logger?.log("warn", "tls_rpt.error", undefined, {
          day,
          reason: "the daily TLS reports failed",
          error: text(error),
        });
      }).finally(() => this.#next());
    }, delay);
    Deno.unrefTimer(this.#timer);
  }

  #next(): void {
    const now = (this.#options.now ?? Date.now)();
    const midnight = Date.parse(`${utcDay(now)}T00:00:00Z`) + DAY_MS;
    this.#schedule(midnight - now + this.#jitter(), utcDay(midnight - DAY_MS));
  }
}
