/**
 * `tern check-auth [--config FILE] [--client-ip IP] [--helo NAME]
 * [--mail-from ADDR] < message.eml`: runs SPF, DKIM and DMARC on a saved
 * message, as an mx listener would, and explains each step with its RFC
 * section. DNS goes through `dns.nameservers` when the configuration sets
 * them.
 *
 * @module
 */

import { parseArgs } from "node:util";
import type { DnsLookupRecord } from "../auth/dns_adapter.ts";
import { explainVerdict } from "../auth/explain_verdict.ts";
import { Verification } from "../auth/verify.ts";
import { StubResolver } from "../dns/resolver.ts";
import { isIpv4, isIpv6 } from "../net/ip.ts";
import { CliError, describeArgsError, findConfig, runCommand } from "./_common.ts";

const USAGE =
  `usage: tern check-auth [--config FILE] [--client-ip IP] [--helo NAME] [--mail-from ADDR] < message.eml
  Check SPF, DKIM and DMARC of a saved message and explain each step.
  --client-ip IP    the address the message came from (SPF needs it)
  --helo NAME       what the client said in EHLO
  --mail-from ADDR  the envelope sender (default: the Return-Path field, if any)
  -h, --help        this help
  Exit: 0 when DMARC passes or is not published, 1 on a bad argument, 2 when DMARC fails.`;

/**
 * Runs `tern check-auth`.
 *
 * @param args The arguments after `check-auth`.
 * @returns 0, 1 on a usage error, 2 when DMARC fails.
 */
export function checkAuthCommand(args: string[]): Promise<number> {
  return runCommand("check-auth", async () => {
    let values;
    try {
      ({ values } = parseArgs({
        args,
        options: {
          config: { type: "string" },
          "client-ip": { type: "string" },
          helo: { type: "string" },
          "mail-from": { type: "string" },
          help: { type: "boolean", short: "h" },
        },
        allowPositionals: false,
      }));
    } catch (error: unknown) {
      throw new CliError(`${describeArgsError(error)} (see "tern check-auth --help")`);
    }
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const ip = values["client-ip"];
    if (ip !== undefined && !isIpv4(ip) && !isIpv6(ip)) {
      throw new CliError(`--client-ip: not an IP address: "${ip}"`);
    }
    const { config } = await findConfig(values.config);
    const message = new Uint8Array(await new Response(Deno.stdin.readable).arrayBuffer());
    if (message.length === 0) throw new CliError("no message on standard input");
    const mailFrom = values["mail-from"] ?? returnPath(message) ?? "";
    const lookups: DnsLookupRecord[] = [];
    const check = Verification.start({
      authservId: config.authentication.authservId,
      spf: ip !== undefined,
      resolver: new StubResolver({ nameservers: config.dns.nameservers }),
      clientAddress: ip ?? "0.0.0.0",
      helo: values.helo ?? null,
      mailFrom,
      onLookup: (lookup) => lookups.push(lookup),
    });
    check.update(message);
    const verdict = await check.finish();
    console.log(explainVerdict(verdict, lookups).join("\n"));
    return verdict.dmarc?.result === "fail" ? 2 : 0;
  });
}

/** The address in the message's first `Return-Path:` field. */
function returnPath(message: Uint8Array): string | null {
  const head = new TextDecoder().decode(message.subarray(0, 64 * 1024));
  const header = head.split(/\r?\n\r?\n/, 1)[0] ?? "";
  const m = /^Return-Path:\s*<([^>]*)>/im.exec(header);
  return m === null ? null : m[1]!;
}
