import assert from "node:assert/strict";
import { BufferedWriter } from "./buffered_writer.ts";

/** Writes `pieces` through a writer with a buffer of `size`, releases it, and reads the file back. */
async function writeThrough(dir: string, name: string, size: number, pieces: Uint8Array[]) {
  const path = `${dir}/${name}`;
  const file = await Deno.open(path, { write: true, createNew: true });
  const out = new BufferedWriter(file, size);
  for (const piece of pieces) await out.write(piece);
  await out.flush();
  out.release();
  file.close();
  return await Deno.readFile(path);
}

Deno.test("BufferedWriter: small pieces gathered, big ones direct, buffers reused clean", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tern-writer-" });
  try {
    const a = [new Uint8Array(10).fill(1), new Uint8Array(7).fill(2), new Uint8Array(40).fill(3)];
    const first = await writeThrough(dir, "a", 16, a);
    assert.deepEqual(first, new Uint8Array([...a[0]!, ...a[1]!, ...a[2]!]));
    // The next writer of that size takes the released buffer: only what it
    // writes may come out, never what the last one left there.
    const b = [new Uint8Array(3).fill(9)];
    assert.deepEqual(await writeThrough(dir, "b", 16, b), new Uint8Array([9, 9, 9]));
    // Released with something still buffered: dropped, as documented.
    const file = await Deno.open(`${dir}/c`, { write: true, createNew: true });
    const out = new BufferedWriter(file, 16);
    await out.write(new Uint8Array(5).fill(4));
    out.release();
    await out.write(new Uint8Array(2).fill(5));
    await out.flush();
    file.close();
    assert.deepEqual(await Deno.readFile(`${dir}/c`), new Uint8Array([5, 5]));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
