/**
 * Where a file's fsync runs: in place, blocking the thread, or on one of
 * Deno's blocking threads while this one goes on.
 *
 * An async `FsFile.sync()` hands the fsync to another thread and back: a
 * duplicated descriptor, a wake-up of that thread, and one of this thread
 * when it is done. With many SMTP sessions that pays for itself: the thread
 * reads and answers other clients while the disk works, and their fsyncs
 * overlap (ten sessions delivering 4 KiB messages into Maildirs on an ext4
 * VM disk: every fsync in place cut the rate by a quarter). With one session
 * it buys nothing, since nothing else waits for the thread, and the client
 * waits for both hand-offs on every message: on the same disk, one
 * session's rate rose by 5–20% with the fsync in place.
 *
 * So {@linkcode FileSyncer.sync} runs the fsync in place only when its caller
 * says nothing else on the thread is waiting, no other fsync of its own is
 * out, and the disk has been quick. In-place fsyncs that take
 * {@linkcode SLOW_SYNC_MS} on average (a disk under load, a spinning disk),
 * or one that stalls past {@linkcode STALL_SYNC_MS}, send every fsync off the
 * thread for {@linkcode SLOW_SYNC_PAUSE_MS}, so a slow disk never holds up
 * the thread's timers, listeners and deliveries for long. Either way the
 * file is on disk when the call returns: only the thread that waits differs.
 *
 * @module
 */

/**
 * When the moving average of in-place fsyncs passes this (ms), fsyncs go off
 * the thread for a while. One slow fsync among fast ones moves it little: the
 * VM disk tern is measured on answers 97% of them within 0.5 ms, and about
 * one in two hundred takes 2–4 ms.
 * A spinning disk (5–10 ms each) passes it after three or four.
 */
export const SLOW_SYNC_MS = 2;

/** One in-place fsync longer than this (ms), a stall, is enough to send fsyncs off the thread. */
export const STALL_SYNC_MS = 50;

/** How long (ms) fsyncs stay off the thread once in-place ones were slow. */
export const SLOW_SYNC_PAUSE_MS = 60_000;

/** The weight of the newest fsync in the moving average. */
const AVERAGE_WEIGHT = 1 / 8;

/** What {@linkcode FileSyncer} needs; every field has a default. */
export interface FileSyncerOptions {
  /** The clock, in ms. @default {performance.now} */
  readonly now?: () => number;
  /** See {@linkcode SLOW_SYNC_MS}. */
  readonly slowMs?: number;
  /** See {@linkcode STALL_SYNC_MS}. */
  readonly stallMs?: number;
  /** See {@linkcode SLOW_SYNC_PAUSE_MS}. */
  readonly pauseMs?: number;
}

/** A file as {@linkcode FileSyncer} syncs it: `Deno.FsFile` is one. */
export interface SyncableFile {
  /** fsync(2) in place. */
  syncSync(): void;
  /** fsync(2) on a blocking thread. */
  sync(): Promise<void>;
}

/** Chooses, per fsync, whether it blocks this thread or runs on another. */
export class FileSyncer {
  readonly #now: () => number;
  readonly #slowMs: number;
  readonly #pauseMs: number;
  readonly #stallMs: number;
  #offThread = 0;
  #pausedUntil = -Infinity;
  /** Moving average of in-place fsyncs, ms. */
  #average = 0;

  /**
   * Makes the syncer of one thread.
   *
   * @param options Clock and thresholds.
   */
  constructor(options: FileSyncerOptions = {}) {
    this.#now = options.now ?? (() => performance.now());
    this.#slowMs = options.slowMs ?? SLOW_SYNC_MS;
    this.#stallMs = options.stallMs ?? STALL_SYNC_MS;
    this.#pauseMs = options.pauseMs ?? SLOW_SYNC_PAUSE_MS;
  }

  /** Weighs one in-place fsync into the average; pauses them when slow. */
  #took(ms: number): void {
    this.#average += (ms - this.#average) * AVERAGE_WEIGHT;
    if (ms > this.#stallMs || this.#average > this.#slowMs) {
      this.#pausedUntil = this.#now() + this.#pauseMs;
      // Measured afresh when the pause ends: the disk may be quick again.
      this.#average = 0;
    }
  }

  /** How many of this syncer's fsyncs run on other threads now. */
  get offThread(): number {
    return this.#offThread;
  }

  /** Whether a slow fsync keeps every fsync off the thread now. */
  get paused(): boolean {
    return this.#now() < this.#pausedUntil;
  }

  /**
   * fsyncs a file: in place when `quiet` and nothing argues against it,
   * otherwise on a blocking thread.
   *
   * @param file The file, open.
   * @param quiet The caller's word that nothing else on this thread waits
   *   meanwhile (for example: the one SMTP session it serves is the one
   *   whose message this is).
   * @returns When the file's data and metadata are on disk; rejects with
   *   the fsync's error.
   */
  async sync(file: SyncableFile, quiet: boolean): Promise<void> {
    if (quiet && this.#offThread === 0 && !this.paused) {
      const start = this.#now();
      try {
        file.syncSync();
      } finally {
        this.#took(this.#now() - start);
      }
      return;
    }
    this.#offThread++;
    try {
      await file.sync();
    } finally {
      this.#offThread--;
    }
  }
}
