/**
 * One line per event: the queue id first (or `-`), an event name from
 * {@linkcode LOG_EVENTS}, then `key=value` pairs; or the same fields as one
 * JSON object per line. The logger is passed in, never imported as a global,
 * so tests can read what was logged.
 *
 * Never log passwords, AUTH payloads or message content.
 *
 * @module
 */

/** Severity, least to most. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** Field values a log line may carry. */
export type LogValue = string | number | boolean | null | undefined;

/** The event names tern logs, in one list so they stay consistent. */
export const LOG_EVENTS = [
  "server.listening",
  "pickup.unavailable",
  "server.stopping",
  "server.stopped",
  "server.overloaded",
  "server.overload_ended",
  "server.relisten",
  "server.worker_failed",
  "session.connect",
  "session.disconnect",
  "session.refused",
  "session.error",
  "session.trace",
  "session.tls",
  "session.auth",
  "session.dnsbl",
  "session.dnswl",
  "tls.loaded",
  "tls.error",
  "acme.issued",
  "acme.renew_failed",
  "acme.temporary",
  "admin.not_ready",
  "config.reloaded",
  "config.reload_failed",
  "config.restart_needed",
  "config.warning",
  "message.accepted",
  "message.rejected",
  "message.discarded",
  "message.requeued",
  "milter.failed",
  "submission.limited",
  "delivery.sent",
  "delivery.deferred",
  "delivery.bounced",
  "delivery.error",
  "maildir.recovered",
  "maildir.error",
  "dsn.queued",
  "dns.failed",
  "dsn.suppressed",
  "queue.recovered",
  "queue.expired",
  "queue.removed",
  "queue.error",
  "queue.deleted",
  "queue.held",
  "queue.released",
  "queue.flushed",
  "tls_rpt.sent",
  "tls_rpt.error",
] as const;

/** One of {@linkcode LOG_EVENTS}. */
export type LogEvent = typeof LOG_EVENTS[number];

/** Where log lines go. */
export interface Logger {
  /**
   * Writes one event.
   *
   * @param level Its severity.
   * @param event What happened.
   * @param queueId The message it concerns, or `undefined`.
   * @param fields Details; `undefined` values are left out.
   */
  log(
    level: LogLevel,
    event: LogEvent,
    queueId: string | undefined,
    fields?: Record<string, LogValue>,
  ): void;
  /**
   * The least severe level written: a line below it may be dropped before
   * it is made (or sent from another thread). @default {every level is written}
   */
  readonly level?: LogLevel;
  /**
   * Set when the lines go to standard error: the level and format another
   * thread (a session worker) needs to make the same logger and write its
   * lines itself, instead of sending each line to this one.
   */
  readonly stderr?: LogSettings;
}

/** How a logger writes to standard error: which lines, and as what. */
export interface LogSettings {
  /** The least severe level written. */
  readonly level: LogLevel;
  /** `text` or `json`. */
  readonly format: "text" | "json";
}

const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/**
 * Whether a line of some level is written by a logger that writes `least`
 * and above.
 *
 * @param level The line's level.
 * @param least The logger's {@linkcode Logger.level}; `undefined`: every level.
 * @returns Whether it is written.
 */
export function isWritten(level: LogLevel, least: LogLevel | undefined): boolean {
  return least === undefined || RANK[level] >= RANK[least];
}

/** Options of {@linkcode createLogger}. */
export interface LoggerOptions {
  /** The least severe level written. @default {"info"} */
  level?: LogLevel;
  /** `text` or `json`. @default {"text"} */
  format?: "text" | "json";
  /**
   * Where a finished line goes.
   *
   * @default {standard error: the lines of one turn of the event loop in one write, warnings and errors at once}
   */
  write?: (line: string) => void;
  /** The clock, for tests. @default {Date.now} */
  now?: () => number;
}

const encoder = new TextEncoder();

/** Held lines past this many UTF-16 units are written at once. */
const STDERR_BATCH_UNITS = 16 * 1024;

/**
 * Standard error, written in batches: the lines of one turn of the event loop
 * go out together, in writes of up to 4 KiB of whole lines (a busy server
 * logs a few lines per message, and a system call per line costs more than
 * the formatting). A warning or an error goes out at once, after the lines
 * held before it. What is held is also written when the process exits, or an
 * uncaught error is about to end it; only a kill (SIGKILL) can lose the lines
 * of the last few milliseconds.
 */
class StderrBatch {
  #lines: string[] = [];
  #units = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #hooked = false;

  write(line: string, urgent: boolean): void {
    this.#lines.push(line);
    this.#units += line.length + 1;
    if (urgent || this.#units >= STDERR_BATCH_UNITS) {
      this.flush();
    } else if (this.#timer === undefined) {
      this.#hook();
      const timer = setTimeout(() => this.flush(), 0);
      Deno.unrefTimer(timer); // held lines never keep the process alive
      this.#timer = timer;
    }
  }

  flush(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#lines.length === 0) return;
    const text = this.#lines.join("\n") + "\n";
    this.#lines = [];
    this.#units = 0;
    try {
      const bytes = encoder.encode(text);
      let offset = 0;
      while (offset < bytes.length) {
        const end = pieceEnd(bytes, offset);
        while (offset < end) offset += Deno.stderr.writeSync(bytes.subarray(offset, end));
      }
    } catch {
      // A closed stderr must not take the server down.
    }
  }

  #hook(): void {
    if (this.#hooked) return;
    this.#hooked = true;
    const flush = () => this.flush();
    globalThis.addEventListener("unload", flush);
    globalThis.addEventListener("error", flush);
    globalThis.addEventListener("unhandledrejection", flush);
  }
}

/**
 * The most octets one write(2) to standard error carries: PIPE_BUF on Linux.
 * Session workers write their lines beside the main thread's. Deno writes
 * to standard error under one lock per process, and a blocking write to a
 * pipe completes whole; but a standard error left non-blocking by the parent
 * can take part of a write, and the rest would follow another thread's
 * lines. A write of at most PIPE_BUF octets to a pipe is all or nothing
 * (POSIX `write`), so a line is never cut.
 */
const ATOMIC_WRITE_OCTETS = 4096;

/**
 * Where the write starting at `start` ends: after the last line that fits
 * in {@linkcode ATOMIC_WRITE_OCTETS}, or after one longer line alone.
 */
function pieceEnd(bytes: Uint8Array, start: number): number {
  const limit = start + ATOMIC_WRITE_OCTETS;
  if (limit >= bytes.length) return bytes.length;
  const lastNewline = bytes.lastIndexOf(0x0a, limit - 1);
  if (lastNewline >= start) return lastNewline + 1;
  const next = bytes.indexOf(0x0a, limit);
  return next === -1 ? bytes.length : next + 1;
}

const stderrBatch = new StderrBatch();

/**
 * Writes the lines held for standard error now, instead of at the end of the
 * turn: before telling another thread something that makes it log (a worker
 * hands a message it logged as accepted to the main thread, whose delivery
 * line must come after the acceptance line).
 */
export function flushLogs(): void {
  stderrBatch.flush();
}

/** Quotes a text value when it holds spaces, quotes, `=` or control characters. */
function formatValue(value: string | number | boolean | null): string {
  if (typeof value !== "string") return String(value); // digits, a dot, a sign or a word: never quoted
  const s = value;
  // deno-lint-ignore no-control-regex
  return /^[^\s"=\\\x00-\x1f\x7f]+$/.test(s) ? s : JSON.stringify(s);
}

/**
 * Makes a logger.
 *
 * @param options Level, format and destination.
 * @returns The logger.
 *
 * @example Log a delivery as text
 * ```ts
 * import { createLogger } from "./logger.ts";
 * const lines: string[] = [];
 * const log = createLogger({ write: (l) => lines.push(l), now: () => 0 });
 * log.log("info", "delivery.sent", "4F2A9C", { rcpt: "<bob@example.test>", status: "2.0.0" });
 * console.log(lines[0]);
 * // 1970-01-01T00:00:00.000Z info 4F2A9C delivery.sent rcpt=<bob@example.test> status=2.0.0
 * ```
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const min = RANK[options.level ?? "info"];
  const json = options.format === "json";
  const custom = options.write;
  const now = options.now ?? Date.now;
  // A busy server writes several lines in one millisecond: they share its text.
  let stampedAt = Number.NaN;
  let stamp = "";
  const least = options.level ?? "info";
  return {
    level: least,
    ...(custom === undefined ? { stderr: { level: least, format: json ? "json" : "text" } } : {}),
    log(level, event, queueId, fields = {}) {
      if (RANK[level] < min) return;
      const t = now();
      if (t !== stampedAt) {
        stamp = new Date(t).toISOString();
        stampedAt = t;
      }
      const time = stamp;
      let line: string;
      if (json) {
        const record: Record<string, LogValue> = { time, level, queue_id: queueId ?? null, event };
        for (const [k, v] of Object.entries(fields)) if (v !== undefined) record[k] = v;
        line = JSON.stringify(record);
      } else {
        line = `${time} ${level} ${queueId ?? "-"} ${event}`;
        for (const [k, v] of Object.entries(fields)) {
          if (v !== undefined) line += ` ${k}=${formatValue(v)}`;
        }
      }
      if (custom !== undefined) custom(line);
      else stderrBatch.write(line, RANK[level] >= RANK.warn);
    },
  };
}

/** A logger that drops everything. */
export const NULL_LOGGER: Logger = { log() {} };

/** A logger that keeps lines in memory, for tests. */
export class MemoryLogger implements Logger {
  /** The records written, oldest first. */
  readonly records: {
    level: LogLevel;
    event: LogEvent;
    queueId?: string;
    fields: Record<string, LogValue>;
  }[] = [];
  /** Keeps one record. */
  log(
    level: LogLevel,
    event: LogEvent,
    queueId: string | undefined,
    fields: Record<string, LogValue> = {},
  ): void {
    this.records.push(
      queueId === undefined ? { level, event, fields } : { level, event, queueId, fields },
    );
  }
}
