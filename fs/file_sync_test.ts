import { deepEqual, equal, ok, rejects } from "node:assert/strict";
import { FileSyncer, SLOW_SYNC_PAUSE_MS, type SyncableFile } from "./file_sync.ts";

/**
 * A file whose fsyncs take `ms` of the test's clock and say where they ran;
 * an off-thread one settles when the test releases it.
 */
function timedFile(clock: { t: number }, ms: () => number, where: string[]) {
  const held: (() => void)[] = [];
  const file: SyncableFile = {
    syncSync() {
      clock.t += ms();
      where.push("in place");
    },
    sync() {
      where.push("off");
      return new Promise<void>((resolve) => held.push(resolve));
    },
  };
  return { file, release: () => held.splice(0).forEach((resolve) => resolve()) };
}

Deno.test("FileSyncer runs the fsync in place only when the caller is alone and no fsync is out", async () => {
  const clock = { t: 0 };
  const where: string[] = [];
  const syncer = new FileSyncer({ now: () => clock.t });
  const { file, release } = timedFile(clock, () => 0.3, where);
  await syncer.sync(file, true);
  const out = syncer.sync(file, false);
  equal(syncer.offThread, 1);
  // Quiet, but another fsync is out: it may finish meanwhile, so this one goes off too.
  const second = syncer.sync(file, true);
  release();
  await Promise.all([out, second]);
  equal(syncer.offThread, 0);
  await syncer.sync(file, true);
  deepEqual(where, ["in place", "off", "off", "in place"]);
});

Deno.test("FileSyncer pauses in-place fsyncs after a stall, and resumes after the pause", async () => {
  const clock = { t: 0 };
  const where: string[] = [];
  const syncer = new FileSyncer({ now: () => clock.t });
  let ms = 80;
  const { file, release } = timedFile(clock, () => ms, where);
  await syncer.sync(file, true);
  ok(syncer.paused);
  const during = syncer.sync(file, true);
  release();
  await during;
  clock.t += SLOW_SYNC_PAUSE_MS;
  ms = 0.3;
  await syncer.sync(file, true);
  deepEqual(where, ["in place", "off", "in place"]);
});

Deno.test("FileSyncer: one slow fsync among quick ones does not pause; a slow disk does", async () => {
  const clock = { t: 0 };
  const where: string[] = [];
  const syncer = new FileSyncer({ now: () => clock.t });
  const times = [0.3, 0.3, 4, 0.3, 0.3, 0.4];
  const { file } = timedFile(clock, () => times.shift() ?? 8, where);
  for (let i = 0; i < 6; i++) await syncer.sync(file, true);
  equal(syncer.paused, false);
  // Then 8 ms each, as a spinning disk gives: a few in place, then off.
  let inPlace = 0;
  while (!syncer.paused && inPlace < 10) {
    await syncer.sync(file, true);
    inPlace++;
  }
  ok(syncer.paused, "never paused");
  ok(inPlace <= 4, `in place at 8 ms each: ${inPlace}`);
});

Deno.test("FileSyncer passes on the fsync's error, in place and off the thread", async () => {
  const syncer = new FileSyncer();
  const failing: SyncableFile = {
    syncSync() {
      throw new Deno.errors.PermissionDenied("no");
    },
    sync() {
      return Promise.reject(new Deno.errors.PermissionDenied("no"));
    },
  };
  await rejects(syncer.sync(failing, true), Deno.errors.PermissionDenied);
  await rejects(syncer.sync(failing, false), Deno.errors.PermissionDenied);
  equal(syncer.offThread, 0);
});

Deno.test("FileSyncer syncs a real file both ways", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tern_file_sync_test_" });
  try {
    const syncer = new FileSyncer();
    for (const quiet of [true, false]) {
      const path = `${dir}/${quiet}`;
      const file = await Deno.open(path, { write: true, createNew: true });
      await file.write(new TextEncoder().encode("hello"));
      await syncer.sync(file, quiet);
      file.close();
      equal(await Deno.readTextFile(path), "hello");
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
