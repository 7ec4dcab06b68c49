import assert from "node:assert/strict";
import { createPrivateFile, makePrivate, makePrivateDirectory } from "./private.ts";
import { errorReason } from "./error_text.ts";

async function modeOf(path: string): Promise<string> {
  return (((await Deno.lstat(path)).mode ?? 0) & 0o777).toString(8);
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "tern-private-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("makePrivateDirectory() makes a new directory 0700 and tightens an existing 0755 one", async () => {
  await withTempDir(async (dir) => {
    await makePrivateDirectory(`${dir}/a/b`);
    assert.equal(await modeOf(`${dir}/a/b`), "700");
    await Deno.mkdir(`${dir}/open`);
    await Deno.chmod(`${dir}/open`, 0o755);
    await makePrivateDirectory(`${dir}/open`);
    assert.equal(await modeOf(`${dir}/open`), "700");
  });
});

Deno.test("createPrivateFile() makes a 0600 file and keeps an existing one's content", async () => {
  await withTempDir(async (dir) => {
    await createPrivateFile(`${dir}/new`);
    assert.equal(await modeOf(`${dir}/new`), "600");
    await Deno.writeTextFile(`${dir}/old`, "kept");
    await Deno.chmod(`${dir}/old`, 0o644);
    await createPrivateFile(`${dir}/old`);
    assert.equal(await modeOf(`${dir}/old`), "600");
    assert.equal(await Deno.readTextFile(`${dir}/old`), "kept");
  });
});

Deno.test("makePrivate() tightens files and directories, skips missing paths and leaves links alone", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/file`, "x");
    await Deno.chmod(`${dir}/file`, 0o644);
    await Deno.mkdir(`${dir}/spool`);
    await Deno.chmod(`${dir}/spool`, 0o755);
    await Deno.writeTextFile(`${dir}/target`, "y");
    await Deno.chmod(`${dir}/target`, 0o644);
    await Deno.symlink(`${dir}/target`, `${dir}/link`);
    await makePrivate([`${dir}/file`, `${dir}/spool`, `${dir}/missing`, `${dir}/link`]);
    assert.equal(await modeOf(`${dir}/file`), "600");
    assert.equal(await modeOf(`${dir}/spool`), "700");
    // What a link points to is not ours to change.
    assert.equal(await modeOf(`${dir}/target`), "644");
  });
});

Deno.test("errorReason() keeps the system's words and drops the path", async () => {
  try {
    await Deno.rename("/no/such/a", "/no/such/b");
    assert.fail("renamed");
  } catch (error: unknown) {
    assert.equal(errorReason(error), "No such file or directory");
  }
  assert.equal(
    errorReason(new Error("its spool file is gone (Is a directory (os error 21): open '/x/y')")),
    "its spool file is gone (Is a directory)",
  );
  assert.equal(errorReason(new Error("cannot use '/srv/tern/mail'")), "cannot use '...'");
});
