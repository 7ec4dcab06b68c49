/**
 * What the main thread and its SMTP session workers say to each other
 * (session_workers.ts, session_worker.ts). A worker runs SMTP sessions; the
 * main thread owns the store, so every message a worker accepts goes
 * through it. The worker names the message itself (a new queue id, for the
 * `Received:` field) and gathers its content; a message of a few kilobytes
 * then takes one request, its `commit`, which opens it in the store, writes
 * it and commits it. A larger one is opened by its first `write`, each
 * piece awaited before the next. The worker answers `250` only once the
 * main thread has answered the `commit`: the message is then on disk,
 * exactly as when the session runs on the main thread.
 *
 * Everything here passes through `postMessage`, so it is plain data:
 * configuration, envelopes and log lines are copied; content travels in
 * buffers that are transferred, not copied.
 *
 * @module
 */

import type { ListenerConfig } from "../config/schema.ts";
import type { PortableConfig } from "./worker_config.ts";
import type { LogEvent, LogLevel, LogSettings, LogValue } from "../log/logger.ts";
import type { MetricsDelta } from "../metrics/thread_metrics.ts";
import type { ReceiveInit } from "../queue/queue.ts";
import type { FdBudgetShare } from "../smtp/fd_budget.ts";
import { errorCode } from "../fs/error_text.ts";
import {
  type MaildirDeliveryOptions,
  type MaildirDeliveryResult,
  MaildirNameTakenError,
} from "../mda/maildir.ts";

/** What a worker is started with. */
export interface WorkerInit {
  readonly type: "init";
  /** The configuration in force. */
  readonly config: PortableConfig;
  /** The listeners this worker serves, with the ports the main thread bound. */
  readonly listeners: readonly ListenerConfig[];
  /** How many threads serve each of these ports. */
  readonly sharedBy: number;
  /** The process's open-file budget for client sockets, shared by every thread. */
  readonly fdBudget: FdBudgetShare;
  /** Each listener's open connections, shared by every thread of its port (connection_counts.ts). */
  readonly counts: readonly SharedArrayBuffer[];
  /** This worker's number, from 1: it prefixes its session ids in logs. */
  readonly index: number;
  /** tern's version, for the milters' macros. */
  readonly version: string;
  /**
   * Set when the main thread's lines go to standard error: the worker then
   * writes its own there, with these settings (each thread its lines of a
   * turn together, in writes of whole lines), and follows `log` on reload.
   */
  readonly stderr: LogSettings | null;
  /** Otherwise: the least severe level the main thread's logger writes (lines below it are not sent). */
  readonly logLevel: LogLevel | undefined;
}

/** A log line, as `Logger.log`'s arguments. */
export type LogRecord = readonly [
  level: LogLevel,
  event: LogEvent,
  queueId: string | undefined,
  fields: Record<string, LogValue> | undefined,
];

/**
 * A question about the store, answered by a {@linkcode Answer} of the same
 * `id`. The first request of a message carries `open`: what the store's
 * `receive` needs, with the queue id the worker chose.
 */
export type StoreRequest =
  | {
    readonly type: "write";
    readonly id: number;
    readonly handle: number;
    readonly open: ReceiveInit | null;
    readonly chunk: Uint8Array;
  }
  | {
    readonly type: "commit";
    readonly id: number;
    readonly handle: number;
    readonly open: ReceiveInit | null;
    /** Content not sent yet (most messages travel whole with their commit). */
    readonly tail: Uint8Array | null;
    readonly header: Uint8Array | null;
    readonly hold: boolean;
  }
  | { readonly type: "abort"; readonly id: number; readonly handle: number };

/** What a worker sends the main thread. */
export type FromWorker =
  | StoreRequest
  /**
   * Log lines, in order, then the committed messages they logged as
   * accepted, which may be delivered now (after their line: a delivery is
   * never logged before its acceptance). A worker that writes its own lines
   * (`WorkerInit.stderr`) sends no records, and has written the acceptance
   * lines before it sends their messages.
   */
  | {
    readonly type: "logs";
    readonly records: readonly LogRecord[];
    readonly queued: readonly string[];
  }
  /** The metrics' differences since the last (every second, and when asked). */
  | { readonly type: "metrics"; readonly delta: MetricsDelta; readonly asked: boolean }
  /** A Maildir file written, or why not (the error's name, message and system code). */
  | {
    readonly type: "maildir";
    readonly id: number;
    readonly result: MaildirDeliveryResult | null;
    readonly error: ErrorData | null;
  }
  /** Every listener is bound. */
  | { readonly type: "ready" }
  /** The worker could not start (a listener did not bind, the certificate did not load). */
  | { readonly type: "failed"; readonly error: string }
  /** The sessions are over after a `stop`. */
  | { readonly type: "stopped" };

/** The answer to a {@linkcode StoreRequest}. */
export type Answer =
  | { readonly type: "answer"; readonly id: number }
  | {
    readonly type: "answer";
    readonly id: number;
    /** The error, whose class name (`QueueUnavailableError`…) the worker makes again. */
    readonly error: ErrorData;
  };

/** An error as it crosses between threads (an `Error` does not keep its class there). */
export interface ErrorData {
  /** Its class name: `QueueConflictError`, `NotFound`… */
  readonly name: string;
  /** Its message. */
  readonly message: string;
  /** The system's code (`ENOSPC`…), or `""`. */
  readonly code: string;
  /** The file it is about, when it names one ({@linkcode MaildirNameTakenError}). */
  readonly path?: string;
}

/**
 * An error as plain data, to post to the other thread.
 *
 * @param error What was thrown.
 * @returns Its name, message and system code.
 */
export function errorData(error: unknown): ErrorData {
  if (!(error instanceof Error)) return { name: "Error", message: String(error), code: "" };
  const data = { name: error.name, message: error.message, code: errorCode(error) };
  return error instanceof MaildirNameTakenError ? { ...data, path: error.path } : data;
}

/**
 * An error as the other thread threw it: the class callers test for
 * ({@linkcode MaildirNameTakenError}, which a local delivery must not leave
 * to the queue), else an `Error` with the name and the system code
 * (`ENOSPC`…) that decide between a retry and a bounce.
 *
 * @param data The error as it crossed.
 * @returns The error.
 */
export function errorFromData(data: ErrorData): Error {
  if (data.name === "MaildirNameTakenError" && data.path !== undefined) {
    return new MaildirNameTakenError(data.path);
  }
  return Object.assign(new Error(data.message), { name: data.name, code: data.code });
}

/** What the main thread sends a worker. */
export type ToWorker =
  | WorkerInit
  | Answer
  /** A reloaded configuration. */
  | { readonly type: "config"; readonly config: PortableConfig }
  /** Read the certificate files again. */
  | { readonly type: "tls" }
  /** Send the metrics' differences now (`/metrics` is being read). */
  | { readonly type: "metrics" }
  /**
   * Write one Maildir file (a local delivery of the main thread's, whose
   * file system calls are done here): answered by a `maildir` of the same id.
   */
  | {
    readonly type: "maildir";
    readonly id: number;
    readonly dir: string;
    readonly content: Uint8Array;
    readonly options: MaildirDeliveryOptions;
  }
  /** Stop listening; sessions in a transaction may finish within `graceMs`. */
  | { readonly type: "stop"; readonly graceMs: number };
