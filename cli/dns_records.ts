/**
 * `tern dns-records DOMAIN [--config FILE]`: prints, as commented zone-file
 * lines, every DNS record a domain should publish for mail through tern: MX,
 * SPF, the DKIM keys of the configuration, DMARC, MTA-STS (when tern
 * serves a policy) and TLS-RPT.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { type DkimKey, dkimRecordLine, parseDkimKey, txtStrings } from "../auth/dkim_keys.ts";
import type { Config } from "../config/schema.ts";
import { isDomainName } from "../config/syntax.ts";
import { policyId } from "../tls_policy/policy_server.ts";
import { CliError, describeArgsError, openConfig, runCommand } from "./_common.ts";

const USAGE = `usage: tern dns-records DOMAIN [--config FILE]
  Print the DNS records DOMAIN should publish for mail sent and received by
  tern (MX, SPF, DKIM from the configured keys, DMARC, MTA-STS, TLS-RPT), as zone-file lines
  with comments saying what each is for.
  --config FILE   the configuration (default ./tern.yaml, else the defaults)
  -h, --help      this help`;

const HELP_HINT = '(see "tern dns-records --help")';

/**
 * Runs `tern dns-records`.
 *
 * @param args The arguments after `dns-records`.
 * @returns The exit code.
 *
 * @example From main.ts
 * ```ts
 * import { dnsRecordsCommand } from "./dns_records.ts";
 *
 * // What main.ts does for `tern dns-records example.test`:
 * async function run(): Promise<void> {
 *   Deno.exitCode = await dnsRecordsCommand(["example.test"]);
 * }
 * console.log(typeof run); // "function"
 * ```
 */
export function dnsRecordsCommand(args: string[]): Promise<number> {
  return runCommand("dns-records", async () => {
    let parsed;
    try {
      parsed = parseArgs({
        args,
        options: { config: { type: "string" }, help: { type: "boolean", short: "h" } },
        strict: true,
        allowPositionals: true,
      });
    } catch (error: unknown) {
      throw new CliError(
        `${describeArgsError(error, 'option "--config" needs a FILE')} ${HELP_HINT}`,
      );
    }
    if (parsed.values.help === true) {
      console.log(USAGE);
      return 0;
    }
    const [given, extra] = parsed.positionals;
    if (given === undefined) throw new CliError(`which domain? ${HELP_HINT}`);
    if (extra !== undefined) throw new CliError(`unexpected argument ${JSON.stringify(extra)}`);
    const domain = given.replace(/\.$/, "").toLowerCase();
    if (!isDomainName(domain)) throw new CliError(`not a domain name: ${JSON.stringify(given)}`);
    const config = await openConfig(parsed.values.config);
    console.log(await dnsRecords(domain, config));
    return 0;
  });
}

/**
 * The records for a domain, as commented zone-file text.
 *
 * @param domain The domain, lower case.
 * @param config The configuration (its hostname, routes and DKIM keys).
 * @returns Lines, without a final line break.
 */
export async function dnsRecords(domain: string, config: Config): Promise<string> {
  const sections = [
    header(domain, config),
    mxRecord(domain, config),
    spfRecord(domain, config),
    await dkimRecords(domain, config),
    dmarcRecord(domain),
    policyRecords(domain, config),
  ];
  return sections.map((lines) => lines.join("\n")).join("\n\n");
}

function header(domain: string, config: Config): string[] {
  const local = config.localDomains.includes(domain)
    ? ""
    : `\n; (${domain} is not in local_domains: mail to it is not delivered here until it is)`;
  return [`; DNS records for ${domain}, for mail through tern on ${config.hostname}${local}`];
}

function mxRecord(domain: string, config: Config): string[] {
  return [
    `; MX: mail for ${domain} comes to this host (hostname: ${config.hostname}), which needs`,
    "; A/AAAA records of its own, and a PTR for each address that names it back.",
    `${domain}. IN MX 10 ${config.hostname}.`,
  ];
}

function spfRecord(domain: string, config: Config): string[] {
  const smarthost = config.relay.routes["*"];
  const lines = [
    "; SPF (RFC 7208): the hosts named by the MX record may send mail from",
    `; ${domain} (mx covers ${config.hostname}); everything else fails (-all).`,
  ];
  if (smarthost !== undefined && smarthost !== "mx") {
    lines.push(
      `; Mail leaves through ${smarthost} (relay.routes "*"): add what its provider says`,
      "; (an include: or ip4:/ip6: terms) before -all.",
    );
  }
  lines.push(`${domain}. IN TXT "v=spf1 mx -all"`);
  return lines;
}

async function dkimRecords(domain: string, config: Config): Promise<string[]> {
  const configured = (config.dkim?.keys ?? []).filter((k) =>
    domain === k.domain || domain.endsWith(`.${k.domain}`)
  );
  if (configured.length === 0) {
    return [
      `; DKIM (RFC 6376): no key in dkim.keys signs mail from ${domain}. Make one with`,
      `;   tern dkim keygen --domain ${domain} --selector s${
        new Date().getUTCFullYear()
      } --out dkim/${domain}.pem`,
      "; then publish the record it prints and add the key to dkim.keys.",
    ];
  }
  const lines = [
    "; DKIM (RFC 6376, RFC 8463): the public half of each signing key in dkim.keys;",
    "; publish it before the key signs, keep an old selector's record for a week after.",
  ];
  for (const entry of configured) {
    const key = entry.parsed ?? await readKey(entry.key, entry.domain, entry.selector);
    if (typeof key === "string") {
      lines.push(`; ${entry.selector}._domainkey.${entry.domain}: ${key}`);
    } else {
      lines.push(dkimRecordLine(key));
    }
  }
  return lines;
}

/** The key from its file, or why it could not be read (the public half is derived from it). */
async function readKey(file: string, domain: string, selector: string): Promise<DkimKey | string> {
  let pem: string;
  try {
    pem = await Deno.readTextFile(file);
  } catch (error: unknown) {
    const why = error instanceof Deno.errors.PermissionDenied
      ? "permission denied (run as the server's user)"
      : error instanceof Deno.errors.NotFound
      ? "no such file"
      : error instanceof Error
      ? error.message
      : String(error);
    return `cannot read ${file}: ${why}`;
  }
  try {
    return parseDkimKey(pem, domain, selector);
  } catch (error: unknown) {
    return `${file}: ${error instanceof Error ? error.message : String(error)}`;
  }
}

function dmarcRecord(domain: string): string[] {
  return [
    "; DMARC (RFC 7489): mail claiming to be from " + domain + " that passes neither an",
    "; aligned SPF nor an aligned DKIM check goes to the spam folder (quarantine), not",
    "; bounced: a forgotten sender (a web form, a mailing service) loses nothing while",
    "; the daily reports to postmaster show what still fails. Once they show only",
    "; forgeries, change p=quarantine to p=reject.",
    `_dmarc.${domain}. IN TXT ${
      txtStrings(`v=DMARC1; p=quarantine; rua=mailto:postmaster@${domain}`)
    }`,
  ];
}

/**
 * MTA-STS (RFC 8461 §3.1): the `_mta-sts` record with the id of the policy
 * tern serves, and where `mta-sts.<domain>` must point; TLS-RPT (RFC 8460
 * §3): where senders mail their reports about TLS to this domain.
 */
function policyRecords(domain: string, config: Config): string[] {
  const policy = config.mtaStsPolicy;
  const lines: string[] = [];
  if (policy === undefined) {
    lines.push(
      `; MTA-STS (RFC 8461): ${domain} publishes no policy: set mta_sts_policy (mode, mx, max_age)`,
      "; for tern to serve one, then run this again for its records.",
    );
  } else {
    const { address, port } = policy.listen;
    lines.push(
      `; MTA-STS (RFC 8461): senders fetch the policy (mode: ${policy.mode}, mx: ${
        policy.mx.join(", ")
      }) from`,
      `; https://mta-sts.${domain}/.well-known/mta-sts.txt, which tern serves on ${address}:${port}.`,
      `; mta-sts.${domain} must reach this host: a CNAME to ${config.hostname} (or A/AAAA records of its own),`,
      `; and the certificate of tls must name mta-sts.${domain} (with tls.acme, add it to tls.acme.domains).`,
      ...(port === 443 ? [] : [
        `; Senders connect to port 443: forward it to ${port}.`,
      ]),
      "; The id changes whenever the policy does: publish the new record when this prints a new one.",
      `mta-sts.${domain}. IN CNAME ${config.hostname}.`,
      `_mta-sts.${domain}. IN TXT "v=STSv1; id=${policyId(policy)}"`,
    );
  }
  const reports = `tls-reports@${domain}`;
  const hasAddress = Object.keys(config.accounts).length === 0 ||
    reports in config.accounts || reports in config.aliases || `@${domain}` in config.aliases;
  lines.push(
    "",
    "; TLS-RPT (RFC 8460): other servers mail a daily report of their TLS sessions to this",
    `; domain's MX hosts (and failures, such as a certificate they refused) to ${reports}.`,
    ...(hasAddress ? [] : [
      `; ${reports} is neither an account nor an alias yet: add one (an alias to postmaster).`,
    ]),
    `_smtp._tls.${domain}. IN TXT "v=TLSRPTv1; rua=mailto:${reports}"`,
  );
  return lines;
}
