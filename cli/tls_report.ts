/**
 * `tern tls-report [--config FILE] [--day YYYY-MM-DD] [--domain DOMAIN]
 * [--send]`: prints the TLS reports (RFC 8460) of a UTC day, one per
 * recipient domain tern relayed mail to, as the JSON array of the reports
 * that would be sent; with `--send`, sends them to each domain's `rua` as
 * `tern serve` does after midnight (mail through the queue, HTTPS POST).
 *
 * Counts reach the store within a minute of each session (the server
 * flushes them every minute and when it stops).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { StubResolver } from "../dns/resolver.ts";
import { isDomainName } from "../config/syntax.ts";
import { createLogger } from "../log/logger.ts";
import { prepareReports, sendReport, tlsRptSettings } from "../tls_policy/tls_rpt_send.ts";
import { utcDay } from "../tls_policy/tls_rpt.ts";
import { CliError, describeArgsError, openConfig, openQueue, runCommand } from "./_common.ts";

const USAGE = `usage: tern tls-report [--config FILE] [--day YYYY-MM-DD] [--domain DOMAIN] [--send]
  Print the SMTP TLS reports (RFC 8460) of a UTC day as a JSON array: one
  report per domain tern relayed mail to by MX, with its successful and
  failed TLS sessions. Which domains publish a _smtp._tls record (and so get
  their report) is said on standard error.
  --day YYYY-MM-DD  the day (default: yesterday, UTC; today's counts so far work too)
  --domain DOMAIN   only this domain's report
  --send            also send each report to its rua: mailto: through the queue,
                    https: by POST (tern serve does this after each UTC midnight)
  --config FILE     the configuration (default ./tern.yaml, else the defaults)
  -h, --help        this help`;

const HELP_HINT = '(see "tern tls-report --help")';

/**
 * Runs `tern tls-report`.
 *
 * @param args The arguments after `tls-report`.
 * @returns The exit code: 0, or 1 on bad arguments or when a report could not be sent.
 *
 * @example From main.ts
 * ```ts
 * import { tlsReportCommand } from "./tls_report.ts";
 * async function run(): Promise<void> {
 *   Deno.exitCode = await tlsReportCommand(["--day", "2026-01-01"]);
 * }
 * console.log(typeof run); // "function"
 * ```
 */
export function tlsReportCommand(args: string[]): Promise<number> {
  return runCommand("tls-report", async () => {
    let parsed;
    try {
      parsed = parseArgs({
        args,
        options: {
          config: { type: "string" },
          day: { type: "string" },
          domain: { type: "string" },
          send: { type: "boolean" },
          help: { type: "boolean", short: "h" },
        },
        strict: true,
        allowPositionals: false,
      });
    } catch (error: unknown) {
      throw new CliError(`${describeArgsError(error)} ${HELP_HINT}`);
    }
    const o = parsed.values;
    if (o.help === true) {
      console.log(USAGE);
      return 0;
    }
    const day = o.day ?? utcDay(Date.now() - 24 * 3600_000);
    if (!isDay(day)) {
      throw new CliError(`not a day (YYYY-MM-DD): ${JSON.stringify(day)} ${HELP_HINT}`);
    }
    const domain = o.domain?.toLowerCase().replace(/\.$/, "");
    if (domain !== undefined && !isDomainName(domain)) {
      throw new CliError(`not a domain name: ${JSON.stringify(o.domain)}`);
    }
    const config = await openConfig(o.config);
    if (o.send === true && !tlsRptSettings(config).enabled) {
      throw new CliError("relay.tls_rpt is off: nothing is sent (remove --send to print)");
    }
    const queue = await openQueue(config);
    try {
      const logger = createLogger({ level: config.log.level, format: config.log.format });
      const resolver = new StubResolver({ nameservers: config.dns.nameservers, logger });
      const context = { config, queue, resolver, logger };
      const reports = await prepareReports(day, context, domain);
      console.log(JSON.stringify(reports.map((r) => r.report), null, 2));
      let failed = 0;
      for (const r of reports) {
        const where = r.rua === null
          ? r.lookupError === undefined
            ? "no _smtp._tls record: not sent"
            : `_smtp._tls lookup failed (${r.lookupError}): not sent`
          : `rua ${[...r.rua.mailto.map((m) => `mailto:${m}`), ...r.rua.https].join(", ")}`;
        console.error(`${r.domain}: ${where}`);
        if (o.send !== true || r.rua === null) continue;
        for (const result of await sendReport(day, r, context)) {
          if (!result.ok) failed++;
          console.error(
            `${r.domain}: ${result.ok ? "sent to" : "NOT sent to"} ${result.rua}: ${result.detail}`,
          );
        }
      }
      if (reports.length === 0) console.error(`no TLS sessions counted for ${day}`);
      return failed === 0 ? 0 : 1;
    } finally {
      await queue.close();
    }
  });
}

function isDay(text: string): boolean {
  return /^\d{4}-\d{2}-\d{2}$/.test(text) && utcDay(Date.parse(`${text}T00:00:00Z`) || 0) === text;
}
