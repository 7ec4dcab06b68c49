/**
 * `tern serve [--config FILE]`: runs the MTA until SIGTERM or SIGINT, then
 * stops accepting, lets transactions in flight finish (bounded grace) and
 * exits 0, within the grace period plus a few seconds whatever state its
 * sockets are in. SIGHUP (or `tern reload`) reads the whole configuration
 * again and puts it in force, or keeps the old one when the new one has
 * problems (a change to the TLS files alone is picked up by itself); a
 * certificate or key that cannot be used at start is a one-line error and
 * exit 1.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { ConfigError } from "../config/errors.ts";
import { loadConfig } from "../config/load.ts";
import { locateConfig } from "./_common.ts";
import { formatProblem } from "../config/errors.ts";
import { ReloadableLogger } from "../mta/live_config.ts";
import { checkConfigFiles } from "./check_config.ts";
import { describeArgsError } from "./_common.ts";
import { ListenError, Mta } from "../mta/mta.ts";
import { TlsContext, TlsError } from "../smtp/tls_context.ts";

/**
 * Reads the configuration file again and puts it in force. A file that does
 * not load, or names files that cannot be used, is refused: one
 * `config.reload_failed` line per problem, and the configuration in force
 * stays. Never throws: a reload must not take the server down.
 */
async function reloadConfig(
  mta: Mta,
  logger: ReloadableLogger,
  file: string | undefined,
): Promise<void> {
  const shownAs = file ?? "tern.yaml";
  try {
    const next = await loadConfig(file === undefined ? {} : { file });
    const files = await checkConfigFiles(next, shownAs);
    if (files.errors.length > 0) throw new ConfigError(files.errors);
    for (const warning of files.warnings) {
      logger.log("warn", "config.warning", undefined, { warning: formatProblem(warning) });
    }
    logger.configure({ level: next.log.level, format: next.log.format });
    await mta.reload(next);
  } catch (error: unknown) {
    const problems = error instanceof ConfigError
      ? error.problems.map(formatProblem)
      : [error instanceof Error ? error.message : String(error)];
    for (const problem of problems) {
      logger.log("error", "config.reload_failed", undefined, { error: problem });
    }
    logger.log("warn", "config.reload_failed", undefined, {
      kept: "the configuration in force",
      problems: problems.length,
    });
  }
}

/** Past the grace period, how long stopping may take before the process exits anyway. */
const STOP_SLACK_MS = 5000;

const SERVE_USAGE = `usage: tern serve [--config FILE] [--trace]
  Run the MTA: listeners, queue and delivery, until SIGTERM or SIGINT.
  SIGHUP reloads the configuration.
  --config FILE   the configuration (default ./tern.yaml, else the defaults)
  --trace         print every session's dialogue, each line with its RFC rule
  -h, --help      this help`;

/**
 * Runs `tern serve`.
 *
 * @param args The arguments after `serve`.
 * @returns The exit code.
 */
export async function serveCommand(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        config: { type: "string" },
        trace: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error: unknown) {
    console.error(`tern serve: ${describeArgsError(error)} (see "tern serve --help")`);
    return 1;
  }
  if (values.help) {
    console.log(SERVE_USAGE);
    return 0;
  }
  let config;
  try {
    // Like every command: --config, else $TERN_CONFIG, ./tern.yaml, /etc/tern/tern.yaml.
    const located = values.config ?? await locateConfig(undefined);
    if (located !== null) values.config = located;
    config = await loadConfig(values.config === undefined ? {} : { file: values.config });
  } catch (error: unknown) {
    if (error instanceof ConfigError) {
      console.error(error.message);
      return 1;
    }
    throw error;
  }
  // Files the schema cannot see: a data_dir that is a file, a key that does not match.
  const shownAs = values.config ?? (config.file === null ? "(defaults)" : "tern.yaml");
  const files = await checkConfigFiles(config, shownAs);
  if (files.errors.length > 0) {
    console.error(files.errors.map(formatProblem).join("\n"));
    return 1;
  }
  // With tls.acme the files are tern's own, made at start when missing.
  if (config.tls !== null && config.tls.acme === undefined) {
    // Check the certificate before anything else starts, so a bad one is the only line printed.
    try {
      (await TlsContext.load(config.tls)).close();
    } catch (error: unknown) {
      if (error instanceof TlsError) {
        console.error(`tern serve: ${error.message}`);
        return 1;
      }
      throw error;
    }
  }
  // log.level and log.format follow a reload.
  const logger = new ReloadableLogger({ level: config.log.level, format: config.log.format });
  // An expired certificate is a warning, not a refusal: see checkConfigFiles.
  for (const warning of files.warnings) {
    logger.log("warn", "config.warning", undefined, { warning: formatProblem(warning) });
  }
  // Signals are taken before anything starts: a SIGTERM while the listeners
  // open (systemd stopping a unit that is still starting) is a clean stop
  // once they are up, not death by the default action.
  const { promise: stopped, resolve } = Promise.withResolvers<string>();
  const onSignal = (name: string) => () => resolve(name);
  // SIGHUP (`tern reload`): read the whole configuration again. One reload
  // at a time; a SIGHUP during one runs another after it, with the file as
  // it is then. One that comes while tern starts is kept for when it has.
  let mta: Mta | null = null;
  let reloading = Promise.resolve();
  let reloadAsked = false;
  const file = values.config;
  const reload = () => {
    if (mta === null) {
      reloadAsked = true;
      return;
    }
    const running = mta;
    reloading = reloading.then(() => reloadConfig(running, logger, file));
  };
  const handlers: [Deno.Signal, () => void][] = [
    ["SIGTERM", onSignal("SIGTERM")],
    ["SIGINT", onSignal("SIGINT")],
    ["SIGHUP", reload],
  ];
  for (const [signal, handler] of handlers) Deno.addSignalListener(signal, handler);
  const removeHandlers = () => {
    for (const [s, handler] of handlers) Deno.removeSignalListener(s, handler);
  };
  try {
    mta = await Mta.start(config, {
      logger,
      // --trace: every session's dialogue on standard output, each line with its RFC rule.
      ...(values.trace ? { trace: (line: string) => console.log(line) } : {}),
    });
  } catch (error: unknown) {
    removeHandlers();
    if (error instanceof ListenError || error instanceof TlsError) {
      console.error(`tern serve: ${error.message}`);
      return 1;
    }
    // Anything else at start (a data_dir owned by another user, a store that
    // cannot be opened) is the operator's to fix: one line, not a stack trace.
    const why = error instanceof Error ? error.message : String(error);
    console.error(`tern serve: cannot start: ${why}`);
    return 1;
  }
  const running: Mta = mta;
  if (reloadAsked) reload();
  const signal = await stopped;
  logger.log("info", "server.stopping", undefined, { signal });
  // The listeners cut every socket after the grace period; this is the
  // backstop for anything else that hangs (a delivery, the store): what was
  // acknowledged is already durable, so exiting loses nothing.
  let timer: ReturnType<typeof setTimeout> | undefined;
  const grace = running.config.limits.shutdownGrace; // as reloaded
  const timedOut = new Promise<true>((resolve) => {
    timer = setTimeout(() => resolve(true), grace + STOP_SLACK_MS);
  });
  const late = await Promise.race([
    running.stop(grace).then(() => false),
    timedOut,
  ]);
  clearTimeout(timer);
  removeHandlers();
  if (late) {
    logger.log("warn", "server.stopped", undefined, { forced: true });
  } else {
    logger.log("info", "server.stopped", undefined, {});
  }
  return 0;
}
