/**
 * `tern status [--config FILE] [--json]`: whether `tern serve` runs, its
 * listeners, and the queue by state with the age of its oldest message.
 *
 * With `admin` configured, the running server answers on its admin
 * listener's `/status`. Otherwise (or when nothing answers there) the lock
 * on `<data_dir>/tern.pid` says whether a server runs, and the queue is
 * read from the store, one record at a time (a large queue is counted, not
 * loaded). Exit code 0 when the server runs, 3 when it does not (as
 * `systemctl status`), 1 on an error.
 *
 * @module
 */

import { join } from "node:path";
import { parseArgs } from "node:util";
import type { Config } from "../config/schema.ts";
import { PID_FILE } from "../mta/pickup.ts";
import {
  queueStatus,
  type ServerStatus,
  type StatusListener,
  type StatusQueue,
} from "../metrics/status.ts";
import { CliError, describeArgsError, findConfig, openQueue } from "./_common.ts";

const USAGE = `usage: tern status [--config FILE] [--json]

Whether tern serve runs, its listeners, and the queue by state with the age
of its oldest message. Asks the server's admin listener (/status) when
\`admin\` is configured, else reads <data_dir>/tern.pid and the store.
Exit code: 0 running, 3 not running, 1 error.`;

/** How long the admin listener may take to answer, ms. */
const ADMIN_TIMEOUT_MS = 3_000;

/** What `tern status` found. */
export interface StatusReport {
  /** Whether a `tern serve` runs on this data directory. */
  readonly running: boolean;
  /** Its pid, when known. */
  readonly pid: number | null;
  /** Where the answer came from: the admin listener, or the pid file and the store. */
  readonly source: "admin" | "store";
  /** How long it has been running, seconds, when the admin listener says. */
  readonly uptime_seconds: number | null;
  /** The listeners: as bound when the server answered, else as configured. */
  readonly listeners: readonly StatusListener[];
  /** The queue, or `null` when there is no store yet. */
  readonly queue: StatusQueue | null;
}

/** The host to connect to for a listener bound to an address (the wildcard means loopback). */
function connectHost(address: string): string {
  if (address === "0.0.0.0" || address === "") return "127.0.0.1";
  if (address === "::" || address === "[::]") return "[::1]";
  return address.includes(":") && !address.startsWith("[") ? `[${address}]` : address;
}

/** Whether a value is the JSON `/status` answers (the fields `tern status` reads). */
function isServerStatus(value: unknown): value is ServerStatus {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Record<string, unknown>;
  return typeof v.pid === "number" && Array.isArray(v.listeners) &&
    typeof v.queue === "object" && v.queue !== null;
}

/**
 * Asks the admin listener for `/status`.
 *
 * @returns The answer, or `null` when nothing answers there (the server is
 *   not running, or runs without `admin`).
 * @throws {CliError} When something answers but not with a status.
 */
async function askAdmin(config: Config): Promise<ServerStatus | null> {
  if (!config.admin) return null;
  const url = `http://${connectHost(config.admin.address)}:${config.admin.port}/status`;
  let response: Response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(ADMIN_TIMEOUT_MS) });
  } catch {
    return null; // refused or timed out: read the pid file and the store instead
  }
  const body = await response.text();
  let parsed: unknown = null;
  try {
    parsed = JSON.parse(body);
  } catch {
    // reported below
  }
  if (response.ok && isServerStatus(parsed)) return parsed;
  const why = typeof parsed === "object" && parsed !== null && "error" in parsed
    ? String(parsed.error)
    : `HTTP ${response.status}`;
  throw new CliError(`the admin listener at ${url} does not give the status: ${why}`);
}

/**
 * Whether a server holds the lock on `<data_dir>/tern.pid`, and its pid.
 *
 * @param config The configuration (only `dataDir` is read).
 * @returns Whether it runs, and the pid the file names.
 */
export async function serverLock(
  config: Pick<Config, "dataDir">,
): Promise<{ running: boolean; pid: number | null }> {
  const path = join(config.dataDir, PID_FILE);
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (error: unknown) {
    if (error instanceof Deno.errors.NotFound) return { running: false, pid: null };
    if (error instanceof Deno.errors.PermissionDenied) {
      throw new CliError(`cannot read ${path}: permission denied (run as the server's user)`);
    }
    throw error;
  }
  try {
    const text = new TextDecoder().decode((await Deno.readFile(path)).subarray(0, 32)).trim();
    const pid = /^\d+$/.test(text) ? Number(text) : null;
    // The server holds an exclusive lock while it runs (mta/pickup.ts): a
    // shared one is refused then; a pid file left by a stopped server is free.
    const free = await file.tryLock(false);
    if (free) await file.unlock();
    return { running: !free, pid };
  } finally {
    file.close();
  }
}

/** Whether the store has been made: a file store before the first start has not. */
async function storeExists(config: Config): Promise<boolean> {
  if (config.queue.store !== undefined) return true; // a shared PostgreSQL store
  try {
    await Deno.stat(config.dataDir);
    return true;
  } catch (error: unknown) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/** The pid file and the store, read here: for a server without `admin`, or one that is stopped. */
async function readLocally(config: Config): Promise<StatusReport> {
  const { running, pid } = await serverLock(config);
  let queue: StatusQueue | null = null;
  if (await storeExists(config)) {
    const store = await openQueue(config);
    try {
      queue = await queueStatus(store, Date.now());
    } catch (error: unknown) {
      const why = error instanceof Error ? error.message : String(error);
      throw new CliError(`cannot read the queue in ${config.dataDir}: ${why}`);
    } finally {
      await store.close();
    }
  }
  const listeners: StatusListener[] = config.listeners.map((l) => ({
    mode: l.mode,
    address: l.address,
    port: l.port,
  }));
  if (config.admin) {
    listeners.push({ mode: "admin", address: config.admin.address, port: config.admin.port });
  }
  return { running, pid, source: "store", uptime_seconds: null, listeners, queue };
}

/**
 * Finds the status: from the admin listener when it answers, else from the
 * pid file and the store.
 *
 * @param config The configuration.
 * @returns What was found.
 * @throws {CliError} When the store cannot be read, or the admin listener answers nonsense.
 */
export async function findStatus(config: Config): Promise<StatusReport> {
  const answer = await askAdmin(config);
  if (answer === null) return await readLocally(config);
  return {
    running: true,
    pid: answer.pid,
    source: "admin",
    uptime_seconds: typeof answer.uptime_seconds === "number" ? answer.uptime_seconds : null,
    listeners: answer.listeners,
    queue: answer.queue,
  };
}

/**
 * An age at a glance: the two largest units, `3h 20m`, `2d 1h`, `45s`.
 *
 * @param seconds The age.
 * @returns The text.
 */
export function formatAge(seconds: number): string {
  const units: [string, number][] = [["d", 86_400], ["h", 3_600], ["m", 60], ["s", 1]];
  const parts: string[] = [];
  let left = Math.max(0, Math.floor(seconds));
  for (const [suffix, size] of units) {
    if (left >= size || (suffix === "s" && parts.length === 0)) {
      parts.push(`${Math.floor(left / size)}${suffix}`);
      left %= size;
    }
    if (parts.length === 2) break;
  }
  return parts.join(" ");
}

/**
 * The report as text, one fact per line.
 *
 * @param report What was found.
 * @param dataDir The data directory, named when the server does not run.
 * @returns The lines.
 */
export function formatStatus(report: StatusReport, dataDir: string): string {
  const lines: string[] = [];
  const pid = report.pid === null ? "" : ` (pid ${report.pid})`;
  if (report.running) {
    const up = report.uptime_seconds === null ? "" : `, up ${formatAge(report.uptime_seconds)}`;
    lines.push(`tern serve: running${pid}${up}`);
  } else {
    lines.push(`tern serve: not running on ${dataDir}`);
  }
  lines.push(report.source === "admin" ? "listeners:" : "listeners (configured):");
  const width = Math.max(...report.listeners.map((l) => l.mode.length), 0);
  for (const l of report.listeners) {
    const host = l.address.includes(":") ? `[${l.address}]` : l.address;
    lines.push(`  ${l.mode.padEnd(width)}  ${host}:${l.port}`);
  }
  const q = report.queue;
  if (q === null) {
    lines.push("queue: no store yet (the server has never run here)");
  } else {
    const total = q.active + q.deferred + q.held;
    const oldest = q.oldest_age_seconds === null
      ? ""
      : `, oldest ${formatAge(q.oldest_age_seconds)}`;
    lines.push(
      `queue: ${total} message${
        total === 1 ? "" : "s"
      } (active ${q.active}, deferred ${q.deferred}, held ${q.held})${oldest}`,
    );
  }
  return lines.join("\n");
}

/**
 * Runs `tern status`.
 *
 * @param args The arguments after `status`.
 * @returns The exit code: 0 running, 3 not running, 1 on an error.
 */
export async function statusCommand(args: string[]): Promise<number> {
  try {
    let values;
    try {
      ({ values } = parseArgs({
        args,
        options: {
          config: { type: "string" },
          json: { type: "boolean" },
          help: { type: "boolean", short: "h" },
        },
        strict: true,
        allowPositionals: false,
      }));
    } catch (error: unknown) {
      throw new CliError(`${describeArgsError(error)} (see "tern status --help")`);
    }
    if (values.help === true) {
      console.log(USAGE);
      return 0;
    }
    const { config } = await findConfig(values.config);
    const report = await findStatus(config);
    console.log(
      values.json === true ? JSON.stringify(report) : formatStatus(report, config.dataDir),
    );
    return report.running ? 0 : 3;
  } catch (error: unknown) {
    if (!(error instanceof CliError)) {
      const why = error instanceof Error ? error.message : String(error);
      console.error(`tern status: ${why}`);
      return 1;
    }
    console.error(`tern status: ${error.message}`);
    return 1;
  }
}
