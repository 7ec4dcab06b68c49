import { equal, ok, rejects } from "node:assert/strict";
import { directorySyncsSettled, syncDirectory, syncDirectorySoon } from "./sync_directory.ts";

Deno.test("syncDirectorySoon() starts later, and callers until then share it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tern_sync_test_" });
  try {
    const settled: string[] = [];
    const first = syncDirectorySoon(dir).then(() => settled.push("first"));
    const second = syncDirectorySoon(dir).then(() => settled.push("second"));
    // Nothing settles in this turn, nor in the next ones before the fsync starts.
    await Promise.resolve();
    await new Promise((resolve) => setTimeout(resolve, 0));
    equal(settled.length, 0);
    const third = syncDirectorySoon(dir).then(() => settled.push("third"));
    await Promise.all([first, second, third]);
    equal(settled.length, 3);
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
    // Settled means every fsync asked for before the call has finished, the
    // one still waiting for its moment included (started then).
    ok(done === 2, `done: ${done}`);
  } finally {
    for (const dir of dirs) await Deno.remove(dir, { recursive: true });
  }
});
