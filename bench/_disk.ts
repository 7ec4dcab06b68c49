/**
 * The disk side of the benchmarks: the fsync ceiling, and counting delivered
 * Maildir files.
 *
 * @module
 */

import { join } from "node:path";

/**
 * How many times a second this disk can append 4 KiB to a file and fsync it:
 * the physical ceiling of any MTA that makes every message durable (one
 * fsync per message at least, unless commits are grouped).
 *
 * @param dir A directory on the file system the MTAs use.
 * @param seconds How long to measure.
 * @returns Fsyncs per second.
 */
export async function fsyncsPerSecond(dir: string, seconds = 1): Promise<number> {
  const path = join(dir, "fsync.test");
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  const block = new Uint8Array(4096).fill(120);
  let n = 0;
  const started = performance.now();
  const end = started + seconds * 1000;
  try {
    while (performance.now() < end) {
      await file.write(block);
      await file.sync();
      n++;
    }
  } finally {
    file.close();
    await Deno.remove(path);
  }
  return n / ((performance.now() - started) / 1000);
}

/**
 * How many entries a directory has; 0 when it does not exist yet.
 *
 * @param dir The directory.
 * @returns The number of entries.
 */
export async function countFiles(dir: string): Promise<number> {
  let n = 0;
  try {
    for await (const _ of Deno.readDir(dir)) n++;
  } catch (error: unknown) {
    if (error instanceof Deno.errors.NotFound) return 0;
    throw error;
  }
  return n;
}

/**
 * Waits until `count()` reaches `target`.
 *
 * @param count What to read (a file count, a counter).
 * @param target The number to reach.
 * @param options Polling interval, time limit, and what is waited for (for the error).
 * @returns The time it was reached, `performance.now()` ms.
 * @throws {Error} When the target is not reached in time.
 */
export async function waitForCount(
  count: () => number | Promise<number>,
  target: number,
  options: { intervalMs?: number; timeoutMs?: number; what: string },
): Promise<number> {
  const interval = options.intervalMs ?? 20;
  const timeoutMs = options.timeoutMs ?? 600_000;
  const end = performance.now() + timeoutMs;
  let seen = 0;
  while (performance.now() < end) {
    seen = await count();
    if (seen >= target) return performance.now();
    await new Promise((r) => setTimeout(r, interval));
  }
  throw new Error(`Only ${seen} of ${target} ${options.what} after ${timeoutMs} ms`);
}
