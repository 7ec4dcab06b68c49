/**
 * `tern check-config [--config FILE]`: validates the configuration and prints
 * it in full, defaults included, or prints every problem and fails.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { ConfigError, formatConfig, loadConfig, type LoadConfigOptions } from "../config/mod.ts";

const USAGE = "usage: tern check-config [--config FILE]";

/**
 * Turns a `parseArgs` failure into one line for the user. Node's messages
 * quote the option (`Unknown option '--x'`); keep just the name.
 */
function describeArgsError(error: unknown): string {
  const code = typeof error === "object" && error !== null && "code" in error
    ? String(error.code)
    : "";
  const message = error instanceof Error ? error.message : String(error);
  const quoted = /'([^']*)'/.exec(message)?.[1] ?? "";
  switch (code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return `unknown option ${JSON.stringify(quoted)}`;
    case "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL":
      return `unexpected argument ${JSON.stringify(quoted)} (${USAGE})`;
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      return `option "--config" needs a FILE (${USAGE})`;
    default:
      return message;
  }
}

/**
 * Runs `tern check-config`: loads the configuration (`--config FILE`, else
 * `./tern.yaml`, else the built-in defaults), prints it as YAML on standard
 * output and returns 0; or prints the problems, one `FILE: key.path: what is
 * wrong` line each, on standard error and returns 1.
 *
 * @param args The arguments after `check-config`.
 * @returns The exit code: 0 valid, 1 invalid (or bad arguments).
 *
 * @example Check the configuration from main.ts
 * ```ts
 * import { checkConfig } from "./check_config.ts";
 *
 * // What main.ts does for `tern check-config --config tern.yaml`:
 * async function run(): Promise<void> {
 *   Deno.exitCode = await checkConfig(["--config", "tern.yaml"]);
 * }
 * console.log(typeof run); // "function"
 * ```
 */
export async function checkConfig(args: string[]): Promise<number> {
  let file: string | undefined;
  try {
    const { values } = parseArgs({
      args,
      options: { config: { type: "string" }, help: { type: "boolean", short: "h" } },
      strict: true,
      allowPositionals: false,
    });
    if (values.help === true) {
      console.log(USAGE);
      return 0;
    }
    file = values.config;
  } catch (error: unknown) {
    console.error(`tern check-config: ${describeArgsError(error)}`);
    return 1;
  }
  const options: LoadConfigOptions = file === undefined ? {} : { file };
  try {
    const config = await loadConfig(options);
    console.log(formatConfig(config).trimEnd());
    return 0;
  } catch (error: unknown) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(error.message);
    return 1;
  }
}
