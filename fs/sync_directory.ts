/**
 * Durable directory entries. A new name (a created file, a rename) is
 * certain to survive a crash only once the directory holding it is fsynced:
 * the file's own fsync need not cover its name (fsync(2)). Maildir delivery
 * and the queue's spool both need that, many times a second, so the fsyncs
 * are shared.
 *
 * One case is narrower in practice, and the Maildir recovery relies on it:
 * the name of a file just created is durable with the file's own fsync on
 * ext4 (its journal commits the new entry with the inode; without a journal,
 * its fsync syncs the parent directory of a new file itself), and XFS and
 * btrfs log a new name with its inode too. A rename of an existing file is
 * not covered that way: it waits for the directory's fsync.
 *
 * @module
 */

/**
 * Makes a directory's entries durable: a rename or a new directory entry
 * is durable for certain only when the directory holding it is fsynced.
 *
 * Checked on Deno 2.9.6, Linux, ext4: `Deno.open(dir)` opens a directory
 * read-only (O_RDONLY), and `FsFile.sync()` on it issues fsync(2), which
 * succeeds (strace: `openat(... O_RDONLY|O_CLOEXEC)`, then `fsync(fd) = 0`).
 * `syncData()` (fdatasync) works too, and so does node:fs `fsyncSync` on
 * `openSync(dir, "r")`; the Deno call is used.
 */
async function fsyncDirectory(path: string, inline: boolean): Promise<void> {
  const dir = inline ? Deno.openSync(path, { read: true }) : await Deno.open(path, { read: true });
  try {
    await dir.sync();
  } finally {
    dir.close();
  }
}

/** Per directory: the fsync running now, and the one that will run after it. */
const directorySyncs = new Map<
  string,
  { running: Promise<void> | null; next: Promise<void> | null }
>();

/**
 * Makes a directory's entries durable, sharing fsyncs between callers:
 * an fsync that starts after our rename covers it. If one is running, it may
 * have started before our rename, so we wait for the next one, which every
 * delivery that arrives meanwhile shares. Many deliveries into one Maildir (or
 * uploads into one spool) then cost one directory fsync per round instead
 * of one each.
 *
 * @param path The directory.
 * @param inline Open the directory in place, blocking the thread (18 µs on
 *   a local disk, where an async open costs 50–70 µs of CPU in hand-offs);
 *   not for a network file system, where an open can wait for the server.
 *   The fsync itself always runs off the thread.
 * @returns When an fsync of it that started after this call has succeeded.
 */
export function syncDirectory(path: string, inline = false): Promise<void> {
  let state = directorySyncs.get(path);
  if (state === undefined) {
    state = { running: null, next: null };
    directorySyncs.set(path, state);
  }
  const s = state;
  const start = (): Promise<void> => {
    s.running = fsyncDirectory(path, inline).finally(() => {
      s.running = null;
      if (s.next === null) directorySyncs.delete(path);
    });
    return s.running;
  };
  if (s.running === null) return start();
  s.next ??= s.running.catch(() => {}).then(() => {
    s.next = null;
    return start();
  });
  return s.next;
}

/**
 * How long {@linkcode syncDirectorySoon} waits before it starts the fsync, ms.
 *
 * On a journaling file system (ext4, XFS) the metadata changes are
 * committed in order, and an fsync of any file commits every change made
 * before it. So a rename into `new/` usually becomes durable with the next
 * delivery's own fsync, a millisecond later under load; the directory's
 * fsync that follows then finds nothing left to commit, and costs little.
 * Started at once, it would commit the journal by itself, and the next
 * file's fsync would wait behind that commit. Measured on the bench's disk
 * (ext4 on a virtual disk, one SMTP session): 676–890 msg/s with the fsync
 * started at the next turn, 791–958 with 10 ms, 874–936 with 50 ms.
 */
const SOON_MS = 50;

/** Directories asked for by {@linkcode syncDirectorySoon}, until their fsync starts. */
let soon: Map<string, PromiseWithResolvers<void>> | null = null;
/** The timer that starts them. */
let soonTimer: ReturnType<typeof setTimeout> | undefined;

/**
 * Like {@linkcode syncDirectory} (the directory opened in place), but the
 * fsync starts {@linkcode SOON_MS} later, not before this call returns: what
 * the caller does next (answering a client) does not wait for it, every
 * caller until then shares it, and the file system has usually committed the
 * directory's changes by then (see {@linkcode SOON_MS}). Only for renames
 * whose loss in a crash is repaired otherwise (Maildir recovery at start).
 *
 * @param path The directory.
 * @returns When an fsync of it that started after this call has succeeded.
 */
export function syncDirectorySoon(path: string): Promise<void> {
  if (soon === null) {
    soon = new Map();
    soonTimer = setTimeout(startSoon, SOON_MS);
  }
  let waiting = soon.get(path);
  if (waiting === undefined) {
    waiting = Promise.withResolvers<void>();
    soon.set(path, waiting);
  }
  return waiting.promise;
}

/** Starts the fsyncs {@linkcode syncDirectorySoon} gathered. */
function startSoon(): void {
  clearTimeout(soonTimer);
  soonTimer = undefined;
  const batch = soon;
  soon = null;
  for (const [path, waiting] of batch ?? []) {
    syncDirectory(path, true).then(waiting.resolve, waiting.reject);
  }
}

/**
 * Waits for every directory fsync asked for so far, and those they queued
 * behind them: a shutdown calls it so that renames left to be made durable
 * later are durable before the process exits. Failures are not reported
 * here (each caller of {@linkcode syncDirectory} has them).
 *
 * @returns When no fsync asked for before the call is still running.
 */
export async function directorySyncsSettled(): Promise<void> {
  const pending: Promise<void>[] = [];
  // Those still waiting for their moment start now: a shutdown does not wait for it.
  for (const waiting of soon?.values() ?? []) pending.push(waiting.promise);
  startSoon();
  for (const state of directorySyncs.values()) {
    if (state.running !== null) pending.push(state.running);
    if (state.next !== null) pending.push(state.next);
  }
  await Promise.allSettled(pending);
}
