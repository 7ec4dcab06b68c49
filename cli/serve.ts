/**
 * `tern serve [--config FILE]`: runs the MTA until SIGTERM or SIGINT, then
 * stops accepting, lets transactions in flight finish (bounded grace) and
 * exits 0, within the grace period plus a few seconds whatever state its
 * sockets are in. SIGHUP reloads the TLS certificate and key (so does a change to
 * the files); a certificate or key that cannot be used at start is a one-line
 * error and exit 1.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { ConfigError } from "../config/errors.ts";
import { loadConfig } from "../config/load.ts";
import { createLogger } from "../log/logger.ts";
import { ListenError, Mta } from "../mta/mta.ts";
import { TlsContext, TlsError } from "../smtp/tls_context.ts";

/** Past the grace period, how long stopping may take before the process exits anyway. */
const STOP_SLACK_MS = 5000;

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
      options: { config: { type: "string" }, trace: { type: "boolean" } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error: unknown) {
    console.error(`tern serve: ${error instanceof Error ? error.message : String(error)}`);
    return 1;
  }
  let config;
  try {
    config = await loadConfig(values.config === undefined ? {} : { file: values.config });
  } catch (error: unknown) {
    if (error instanceof ConfigError) {
      console.error(error.message);
      return 1;
    }
    throw error;
  }
  if (config.tls !== null) {
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
  const logger = createLogger({ level: config.log.level, format: config.log.format });
  let mta: Mta;
  try {
    mta = await Mta.start(config, {
      logger,
      // --trace: every session's dialogue on standard output, each line with its RFC rule.
      ...(values.trace ? { trace: (line: string) => console.log(line) } : {}),
    });
  } catch (error: unknown) {
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
  const { promise: stopped, resolve } = Promise.withResolvers<string>();
  const onSignal = (name: string) => () => resolve(name);
  const handlers: [Deno.Signal, () => void][] = [["SIGTERM", onSignal("SIGTERM")], [
    "SIGINT",
    onSignal("SIGINT"),
  ]];
  // SIGHUP: take a renewed certificate now (the files are watched too).
  handlers.push(["SIGHUP", () => void mta.reloadTls()]);
  for (const [signal, handler] of handlers) Deno.addSignalListener(signal, handler);
  const signal = await stopped;
  logger.log("info", "server.stopping", undefined, { signal });
  // The listeners cut every socket after the grace period; this is the
  // backstop for anything else that hangs (a delivery, the store): what was
  // acknowledged is already durable, so exiting loses nothing.
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<true>((resolve) => {
    timer = setTimeout(() => resolve(true), config.limits.shutdownGrace + STOP_SLACK_MS);
  });
  const late = await Promise.race([
    mta.stop(config.limits.shutdownGrace).then(() => false),
    timedOut,
  ]);
  clearTimeout(timer);
  for (const [s, handler] of handlers) Deno.removeSignalListener(s, handler);
  if (late) {
    logger.log("warn", "server.stopped", undefined, { forced: true });
  } else {
    logger.log("info", "server.stopped", undefined, {});
  }
  return 0;
}
