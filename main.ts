/**
 * The `tern` command line. It parses the command word and hands the rest of
 * the arguments to the command's module in cli/.
 *
 * @module
 */

import { checkConfig } from "./cli/check_config.ts";
import { explainCommand } from "./cli/explain.ts";
import { hashPasswordCommand } from "./cli/hash_password.ts";
import { playgroundCommand } from "./cli/playground.ts";
import { queueCommand } from "./cli/queue.ts";
import { sendCommand } from "./cli/send.ts";
import { serveCommand } from "./cli/serve.ts";
import { versionCommand } from "./cli/version.ts";

const USAGE = `Usage: tern <command> [options]

Commands:
  serve [--config FILE]         run the MTA (listeners, queue, delivery)
  check-config [--config FILE]  validate the configuration and print it
  queue list [--json]           the queued messages, their recipients and last errors
  queue show ID                 one message: envelope, state and content
  queue flush                   retry every queued message now
  queue delete|hold|release ID  remove, park, unpark a message
  send [-f SENDER] [-t] [-i] [RCPT...]
                                sendmail-style submission of a message on stdin
  hash-password                 read a password on stdin, print its hash
  version                       print the version
  explain CODE [STATUS]         what a reply code, enhanced status or command means, and its RFC
  playground [--port N]         a web page on 127.0.0.1 to type SMTP to tern's server session
`;

const COMMANDS: Record<string, (args: string[]) => Promise<number> | number> = {
  "serve": serveCommand,
  "check-config": checkConfig,
  "hash-password": hashPasswordCommand,
  "queue": queueCommand,
  "send": sendCommand,
  "version": versionCommand,
  "explain": explainCommand,
  "playground": playgroundCommand,
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

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
