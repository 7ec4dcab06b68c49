import { equal, ok, rejects } from "node:assert/strict";
import { directorySyncsSettled, syncDirectory, syncDirectorySoon } from "./sync_directory.ts";

Deno.test("syncDirectorySoon() starts after the caller's turn, and callers in one turn share it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tern_sync_test_" });
  try {
    const settled: string[] = [];
    const first = syncDirectorySoon(dir).then(() => settled.push("first"));
    const second = syncDirectorySoon(dir).then(() => settled.push("second"));
    // Nothing can settle before the next turn of the event loop.
    await Promise.resolve();
    equal(settled.length, 0);
    await Promise.all([first, second]);
    equal(settled.length, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("syncDirectorySoon() and syncDirectory() reject for a directory that is not there", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tern_sync_test_" });
  await Deno.remove(dir);
  await rejects(syncDirectorySoon(dir), Deno.errors.NotFound);
  await rejects(syncDirectory(dir), Deno.errors.NotFound);
});

Deno.test("directorySyncsSettled() waits for fsyncs not started yet as well as running ones", async () => {
  const dirs = await Promise.all([1, 2].map(() => Deno.makeTempDir({ prefix: "tern_sync_test_" })));
  try {
    let done = 0;
    void syncDirectorySoon(dirs[0]!).then(() => done++);
    void syncDirectory(dirs[1]!).then(() => done++);
    await directorySyncsSettled();
    // Settled means every fsync asked for before the call has finished.
    ok(done === 2, `done: ${done}`);
  } finally {
    for (const dir of dirs) await Deno.remove(dir, { recursive: true });
  }
});
