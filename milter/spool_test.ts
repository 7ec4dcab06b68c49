import assert from "node:assert/strict";
import { ContentSpool } from "./spool.ts";

Deno.test("spool: past its memory limit the content moves to a 0600 file, read back from any offset, removed at dispose", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const spool = new ContentSpool(`${dir}/tmp`, 8);
    const enc = new TextEncoder();
    await spool.write(enc.encode("Subject:"));
    assert.equal((await Array.fromAsync(Deno.readDir(dir))).length, 0);
    await spool.write(enc.encode(" x\r\n\r\nbody\r\n"));
    const files = await Array.fromAsync(Deno.readDir(`${dir}/tmp`));
    assert.equal(files.length, 1);
    assert.equal((await Deno.stat(`${dir}/tmp/${files[0]!.name}`)).mode! & 0o777, 0o600);
    const read = async (from: number) =>
      (await Array.fromAsync(spool.read(from))).map((c) => new TextDecoder().decode(c)).join("");
    assert.equal(await read(0), "Subject: x\r\n\r\nbody\r\n");
    assert.equal(await read(14), "body\r\n");
    assert.equal(spool.size, 20);
    await spool.dispose();
    assert.equal((await Array.fromAsync(Deno.readDir(`${dir}/tmp`))).length, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
