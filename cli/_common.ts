/**
 * What the CLI commands share: argument errors in one line, and opening the
 * configuration and the queue store.
 *
 * @module
 */

import { ConfigError } from "../config/errors.ts";
import { loadConfig } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { KvQueue } from "../queue/kv_queue.ts";
import { queuePath } from "../mta/mta.ts";
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
 * @returns One line.
 */
export function describeArgsError(error: unknown): string {
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
      return message.replace(/^Option '([^']*)'.*/, 'option "$1" needs a value');
    default:
      return message;
  }
}

/**
 * Loads the configuration, turning a ConfigError into a CliError of its lines.
 *
 * @param file `--config FILE`, or undefined.
 * @returns The configuration.
 */
export async function openConfig(file: string | undefined): Promise<Config> {
  try {
    return await loadConfig(file === undefined ? {} : { file });
  } catch (error: unknown) {
    if (error instanceof ConfigError) throw new CliError(error.message);
    throw error;
  }
}

/**
 * Opens the queue store the server uses, for a command that runs beside it.
 *
 * @param config The configuration.
 * @returns The queue; close it when done.
 */
export async function openQueue(config: Config): Promise<KvQueue> {
  // Private like the server makes it: the store holds whole messages.
  await Deno.mkdir(config.dataDir, { recursive: true, mode: 0o700 });
  return await KvQueue.open(queuePath(config), {
    retry: config.queue.retry,
    maxAge: config.queue.maxAge,
    logger: createLogger({ level: "warn", format: config.log.format }),
  });
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
