/**
 * `tern reload [--config FILE]`: asks the running `tern serve` to read its
 * configuration again (it sends SIGHUP to the pid in `<data_dir>/tern.pid`).
 * The server validates the file itself and logs `config.reloaded`, or
 * `config.reload_failed` with each problem and keeps the configuration in
 * force; run `tern check-config` first to see the problems here.
 *
 * @module
 */

import { join } from "node:path";
import { parseArgs } from "node:util";
import type { Config } from "../config/schema.ts";
import { PID_FILE } from "../mta/pickup.ts";
import { CliError, describeArgsError, findConfig } from "./_common.ts";

const USAGE = "usage: tern reload [--config FILE]";

/**
 * The pid the running server wrote into `<data_dir>/tern.pid`.
 *
 * @param config The configuration (only `dataDir` is read).
 * @returns The pid.
 * @throws {CliError} When there is no pid file, or it holds no pid.
 */
export async function readServerPid(config: Pick<Config, "dataDir">): Promise<number> {
  const path = join(config.dataDir, PID_FILE);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error: unknown) {
    if (error instanceof Deno.errors.NotFound) {
      throw new CliError(`no tern serve is running on ${config.dataDir} (no ${path})`);
    }
    if (error instanceof Deno.errors.PermissionDenied) {
      throw new CliError(`cannot read ${path}: permission denied (run as the server's user)`);
    }
    throw error;
  }
  const pid = text.trim();
  if (!/^\d+$/.test(pid) || Number(pid) <= 1) {
    throw new CliError(`no tern serve is running on ${config.dataDir} (${path} holds no pid)`);
  }
  return Number(pid);
}

/**
 * Runs `tern reload`.
 *
 * @param args The arguments after `reload`.
 * @returns The exit code: 0 signalled, 1 otherwise.
 */
export async function reloadCommand(args: string[]): Promise<number> {
  try {
    let values;
    try {
      ({ values } = parseArgs({
        args,
        options: { config: { type: "string" }, help: { type: "boolean", short: "h" } },
        strict: true,
        allowPositionals: false,
      }));
    } catch (error: unknown) {
      throw new CliError(`${describeArgsError(error)} (${USAGE})`);
    }
    if (values.help === true) {
      console.log(USAGE);
      return 0;
    }
    const { config } = await findConfig(values.config);
    const pid = await readServerPid(config);
    try {
      Deno.kill(pid, "SIGHUP");
    } catch (error: unknown) {
      // A pid file left by a server that was killed: the lock went with it.
      if (error instanceof Deno.errors.NotFound) {
        throw new CliError(`no tern serve is running on ${config.dataDir} (pid ${pid} is gone)`);
      }
      if (error instanceof Deno.errors.PermissionDenied) {
        throw new CliError(
          `cannot signal pid ${pid}: permission denied (run as the server's user)`,
        );
      }
      throw error;
    }
    console.log(
      `tern reload: asked tern serve (pid ${pid}) to reload; its log says config.reloaded or config.reload_failed`,
    );
    return 0;
  } catch (error: unknown) {
    if (!(error instanceof CliError)) throw error;
    console.error(`tern reload: ${error.message}`);
    return 1;
  }
}
