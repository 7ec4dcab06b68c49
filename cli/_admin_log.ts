/**
 * Log lines for queue administration (`tern queue delete|hold|release|flush`):
 * who did what to which message, written to standard error in the configured
 * format like the server's lines, so a wrapper that sends the CLI's stderr to
 * journald or syslog keeps an audit trail beside the server's log.
 *
 * @module
 */

import type { Config } from "../config/schema.ts";
import { createLogger, type Logger, type LogValue } from "../log/logger.ts";

/** A queue administration action. */
export type AdminAction = "delete" | "hold" | "release" | "flush";

const EVENTS = {
  delete: "queue.deleted",
  hold: "queue.held",
  release: "queue.released",
  flush: "queue.flushed",
} as const;

const encoder = new TextEncoder();

/**
 * Who runs this process: the login name (`USER`, else `LOGNAME`), the
 * numeric uid, and the user behind sudo when there is one. Environment
 * variables can be set by the caller, so the uid is logged too.
 *
 * @returns Fields for a log line.
 */
export function actor(): Record<string, LogValue> {
  const env = (name: string): string | undefined => {
    try {
      const value = Deno.env.get(name);
      return value === undefined || value === "" ? undefined : value;
    } catch {
      return undefined; // no --allow-env: the uid still says who
    }
  };
  let uid: number | null = null;
  try {
    uid = Deno.uid();
  } catch {
    uid = null;
  }
  return {
    user: env("USER") ?? env("LOGNAME") ?? (uid === null ? "unknown" : `uid${uid}`),
    uid: uid ?? undefined,
    sudo_user: env("SUDO_USER"),
  };
}

/**
 * A logger that writes each line at once to standard error (a CLI command
 * exits soon after, and must not lose its line).
 *
 * @param config The `log` settings.
 * @returns The logger.
 */
function adminLogger(config: Pick<Config, "log">): Logger {
  return createLogger({
    level: config.log.level,
    format: config.log.format,
    write: (line) => {
      try {
        Deno.stderr.writeSync(encoder.encode(line + "\n"));
      } catch {
        // A closed stderr must not turn a done action into a failure.
      }
    },
  });
}

/**
 * Logs one queue administration action, at info level: `queue.deleted`,
 * `queue.held`, `queue.released` or `queue.flushed`, with the queue id and
 * who did it (`user`, `uid`, `sudo_user`).
 *
 * @param config The configuration (its `log` level and format).
 * @param action What was done.
 * @param queueId The message, or `undefined` for the whole queue (flush).
 * @param fields More details, such as `count` for a flush.
 * @param logger Where to write; a stderr logger in the configured format by default.
 *
 * @example
 * ```ts ignore
 * import { logAdminAction } from "./_admin_log.ts";
 * logAdminAction(config, "hold", "01JDQ4ZK8M3T7Q");
 * // 2025-01-01T00:00:00.000Z info 01JDQ4ZK8M3T7Q queue.held user=alice uid=1000
 * ```
 */
export function logAdminAction(
  config: Pick<Config, "log">,
  action: AdminAction,
  queueId: string | undefined,
  fields: Record<string, LogValue> = {},
  logger: Logger = adminLogger(config),
): void {
  logger.log("info", EVENTS[action], queueId, { ...fields, ...actor() });
}
