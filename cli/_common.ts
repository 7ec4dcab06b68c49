/**
 * What the CLI commands share: argument errors in one line, and opening the
 * configuration and the queue store.
 *
 * @module
 */

import { ConfigError } from "../config/errors.ts";
import { DEFAULT_CONFIG_FILE, loadConfig } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { openConfiguredQueue } from "../queue/open_queue.ts";
import { QueueUnavailableError } from "../queue/errors.ts";
import type { Queue } from "../queue/queue.ts";
import { userName } from "../mta/pickup.ts";
import { createLogger } from "../log/logger.ts";

/** A failure the CLI reports in one line and exit code 1. */
export class CliError extends Error {
  /**
   * Makes the error.
   *
   * @param message The line to print, without the program name.
   */
  constructor(message: string) {
    super(message);
    this.name = "CliError";
  }
}

/**
 * Turns a `node:util` parseArgs failure into a short sentence.
 *
 * @param error What parseArgs threw.
 * @param missingValue The line for an option given without its value (or a
 *   value for a flag), when the command can say better than Node's message.
 * @returns One line.
 */
export function describeArgsError(error: unknown, missingValue?: string): string {
  const code = typeof error === "object" && error !== null && "code" in error
    ? String(error.code)
    : "";
  const message = error instanceof Error ? error.message : String(error);
  const quoted = /'([^']*)'/.exec(message)?.[1] ?? "";
  switch (code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return `unknown option ${JSON.stringify(quoted)}`;
    case "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL":
      return `unexpected argument ${JSON.stringify(quoted)}`;
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      return missingValue ?? message.replace(/^Option '([^']*)'.*/, 'option "$1" needs a value');
    default:
      return message;
  }
}

/**
 * The arguments of a command that takes none but `--help`: prints the usage
 * for `--help` (or `-h`), and one line for anything else.
 *
 * @param command The command, as in `tern COMMAND`.
 * @param args The arguments after it.
 * @param usage The text `--help` prints.
 * @param note Said before the help hint when an argument is refused, ending in `"; "`, or `""`.
 * @returns The exit code when the command ends here (0 after the help, 1 after
 *   a refusal), or `null` when there were no arguments.
 */
export function refuseArguments(
  command: string,
  args: readonly string[],
  usage: string,
  note = "",
): number | null {
  const [first] = args;
  if (first === "--help" || first === "-h") {
    console.log(usage);
    return 0;
  }
  if (first === undefined) return null;
  const what = first.startsWith("-") ? "unknown option" : "unexpected argument";
  console.error(
    `tern ${command}: ${what} ${JSON.stringify(first)} (${note}see "tern ${command} --help")`,
  );
  return 1;
}

/** The system-wide configuration, read when no other is found. */
export const SYSTEM_CONFIG_FILE = "/etc/tern/tern.yaml";

/**
 * Which configuration file a command reads: `--config FILE`, else
 * `$TERN_CONFIG`, else `./tern.yaml`, else `/etc/tern/tern.yaml` (so cron
 * jobs, which run in the user's home, find the server's file).
 *
 * @param file `--config FILE`, or undefined.
 * @returns The file, or `null` when there is none (the built-in defaults apply).
 */
export async function locateConfig(file: string | undefined): Promise<string | null> {
  if (file !== undefined) return file;
  const fromEnv = Deno.env.get("TERN_CONFIG");
  if (fromEnv !== undefined && fromEnv !== "") return fromEnv;
  for (const candidate of [DEFAULT_CONFIG_FILE, SYSTEM_CONFIG_FILE]) {
    try {
      await Deno.stat(candidate);
      return candidate;
    } catch (error: unknown) {
      if (!(error instanceof Deno.errors.NotFound)) return candidate; // let the load say why
    }
  }
  return null;
}

/**
 * Loads the configuration found by {@linkcode locateConfig}, turning a
 * ConfigError into a CliError of its lines.
 *
 * @param file `--config FILE`, or undefined.
 * @returns The configuration, and the file it came from (`null`: the defaults).
 */
export async function findConfig(
  file: string | undefined,
): Promise<{ config: Config; file: string | null }> {
  const found = await locateConfig(file);
  try {
    return {
      // The CLI's commands hand mail to the server or read the queue: the
      // secrets (smarthost passwords, the SRS key) are the server's alone,
      // and a user who may not read them may still send mail.
      config: await loadConfig(
        found === null ? { readSecrets: false } : { file: found, readSecrets: false },
      ),
      file: found,
    };
  } catch (error: unknown) {
    if (error instanceof ConfigError) throw new CliError(error.message);
    throw error;
  }
}

/**
 * Loads the configuration, turning a ConfigError into a CliError of its lines.
 *
 * @param file `--config FILE`, or undefined (then `$TERN_CONFIG`, `./tern.yaml`, `/etc/tern/tern.yaml`).
 * @returns The configuration.
 */
export async function openConfig(file: string | undefined): Promise<Config> {
  return (await findConfig(file)).config;
}

/**
 * Refuses to open a store that belongs to another user: files this process
 * made there would be its own, and the server could not write them later.
 *
 * @param config The configuration.
 * @throws {CliError} When `data_dir` exists and is someone else's.
 */
export async function checkStoreOwner(config: Config): Promise<void> {
  const uid = Deno.uid();
  if (uid === null) return;
  let owner: number;
  try {
    owner = (await Deno.stat(config.dataDir)).uid ?? uid;
  } catch (error: unknown) {
    if (error instanceof Deno.errors.NotFound) return;
    throw error;
  }
  if (owner !== uid) {
    throw new CliError(
      `the store in ${config.dataDir} belongs to ${userName(owner)}: run this as ${
        userName(owner)
      } (files made as ${userName(uid)} would break the server)`,
    );
  }
}

/**
 * Opens the queue store the server uses, for a command that runs beside it.
 *
 * @param config The configuration.
 * @returns The queue; close it when done.
 */
export async function openQueue(config: Config): Promise<Queue> {
  try {
    const logger = createLogger({ level: "warn", format: config.log.format });
    // A shared PostgreSQL store has no files here: any node's commands see the whole queue.
    if (config.queue.store !== undefined) return await openConfiguredQueue(config, { logger });
    await checkStoreOwner(config);
    // Like the server makes it: the store holds whole messages, only the way through is open.
    await Deno.mkdir(config.dataDir, { recursive: true, mode: 0o711 });
    return await openConfiguredQueue(config, { logger });
  } catch (error: unknown) {
    if (error instanceof Deno.errors.PermissionDenied) {
      throw new CliError(
        `cannot open the store in ${config.dataDir}: permission denied (run this as the server's user)`,
      );
    }
    if (error instanceof QueueUnavailableError) throw new CliError(error.message);
    throw error;
  }
}

/**
 * Runs a command body, printing a CliError as `tern <name>: <message>` and returning 1.
 *
 * @param name The command's name, for the message.
 * @param body The command.
 * @returns The exit code.
 */
export async function runCommand(name: string, body: () => Promise<number>): Promise<number> {
  try {
    return await body();
  } catch (error: unknown) {
    if (error instanceof CliError) {
      for (const line of error.message.split("\n")) {
        // Config problems already name their file; usage lines stand alone.
        const bare = /^(\S+\.ya?ml|\(defaults\)): /.test(line) || /^(usage:|\s)/.test(line);
        console.error(bare ? line : `tern ${name}: ${line}`);
      }
      return 1;
    }
    throw error;
  }
}
