/**
 * The `tern` command line. It parses the command word and hands the rest of
 * the arguments to the command's module in cli/.
 *
 * @module
 */

import { checkConfig } from "./cli/check_config.ts";
import { dkimCommand } from "./cli/dkim.ts";
import { dnsRecordsCommand } from "./cli/dns_records.ts";
import { explainCommand } from "./cli/explain.ts";
import { hashPasswordCommand } from "./cli/hash_password.ts";
import { playgroundCommand } from "./cli/playground.ts";
import { queueCommand } from "./cli/queue.ts";
import { sendCommand } from "./cli/send.ts";
import { checkAuthCommand } from "./cli/check_auth.ts";
import { sendmailCommand } from "./cli/sendmail.ts";
import { serveCommand } from "./cli/serve.ts";
import { statusCommand } from "./cli/status.ts";
import { reloadCommand } from "./cli/reload.ts";
import { versionCommand } from "./cli/version.ts";
import { tlsReportCommand } from "./cli/tls_report.ts";

const USAGE = `Usage: tern <command> [options]

Commands:
  serve [--config FILE] [--trace]
                                run the MTA (listeners, queue, delivery)
  check-config [--config FILE]  validate the configuration and print it
  reload [--config FILE]        make the running server read its configuration again
  status [--config FILE] [--json]
                                whether the server runs, its listeners, the queue by state
  queue list [--json] [SELECTION]
                                the queued messages, their recipients and last errors
  queue show ID                 one message: envelope, state and content
  queue flush [ID...|ALL] [SELECTION]
                                retry messages now (every one not held without ID)
  queue delete|hold|release ID...|ALL [SELECTION]
                                remove, park, unpark messages
      SELECTION: --state held|deferred|active, --domain DOMAIN, --from ADDRESS, --to ADDRESS
  sendmail [-t] [-i] [-f SENDER] [-F NAME] [RCPT...]
                                sendmail's command line: a message on stdin, -bp, -bs
  send ...                      the same as sendmail
  mailq                         the same as queue list (sendmail -bp)
  hash-password                 read a password on stdin, print its hash
  dkim keygen --domain D --selector S [--algorithm rsa|ed25519] --out FILE
                                make a DKIM signing key, print its DNS record
  dns-records DOMAIN            the DNS records DOMAIN should publish (MX, SPF, DKIM, DMARC)
  tls-report [--day YYYY-MM-DD] [--domain DOMAIN] [--send]
                                a day's TLS reports (RFC 8460) as JSON; --send sends them
  check-auth [--client-ip IP] [--helo NAME] [--mail-from ADDR] < message.eml
                                SPF, DKIM and DMARC of a saved message, explained step by step
  version                       print the version
  explain CODE [STATUS]         what a reply code, enhanced status or command means, and its RFC
  playground [--port N]         a web page on 127.0.0.1 to type SMTP to tern's server session
  help                          this list (also --help, -h)

Every command takes --config FILE where it reads the configuration (default ./tern.yaml),
and -h/--help for its own usage: tern <command> --help.
`;

const COMMANDS: Record<string, (args: string[]) => Promise<number> | number> = {
  "serve": serveCommand,
  "check-config": checkConfig,
  "reload": reloadCommand,
  "status": statusCommand,
  "hash-password": hashPasswordCommand,
  "dkim": dkimCommand,
  "dns-records": dnsRecordsCommand,
  "check-auth": checkAuthCommand,
  "queue": queueCommand,
  "send": sendCommand,
  "sendmail": sendmailCommand,
  "mailq": (args) => sendmailCommand(["-bp", ...args]),
  "version": versionCommand,
  "explain": explainCommand,
  "playground": playgroundCommand,
  "tls-report": tlsReportCommand,
};

/**
 * Runs one command.
 *
 * @param args The command line, without the program name.
 * @returns The exit code.
 */
export async function main(args: string[]): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    console.log(USAGE);
    return name === undefined ? 1 : 0;
  }
  if (name === "--version") return versionCommand();
  const command = COMMANDS[name];
  if (!command) {
    console.error(`tern: unknown command "${name}" (try "tern help")`);
    return 1;
  }
  return await command(rest);
}

/**
 * The name the program was started under (argv[0]): a compiled tern linked
 * as /usr/sbin/sendmail or /usr/bin/mailq behaves as that command.
 */
function programName(): string {
  const proc = "/proc/self/cmdline";
  try {
    // Never a permission prompt for this: without read access, no renaming.
    if (Deno.permissions.querySync({ name: "read", path: proc }).state !== "granted") return "";
    // Linux: argv[0] as the caller gave it, before symbolic links are followed.
    return Deno.readTextFileSync(proc).split("\0", 1)[0]!.split("/").pop() ?? "";
  } catch {
    return "";
  }
}

if (import.meta.main) {
  const name = programName().replace(/\.exe$/i, "");
  const args = name === "sendmail" || name === "mailq" ? [name, ...Deno.args] : Deno.args;
  Deno.exit(await main(args));
}
