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

Deno.test("BufferedWriter with a buffer that holds it all: pieces joined in order, a reused buffer never leaks an earlier file's octets, more than it holds in several writes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tern-pieces-" });
  const MIB = 1024 * 1024;
  const join = (pieces: Uint8Array[]) => {
    const out = new Uint8Array(pieces.reduce((n, p) => n + p.length, 0));
    let offset = 0;
    for (const p of pieces) out.set(p, (offset += p.length) - p.length);
    return out;
  };
  try {
    const big = [1, 70_000, 65_536, 3, 500_000].map((n, i) => new Uint8Array(n).fill(i + 1));
    assert.deepEqual(await writeThrough(dir, "big", MIB, big), join(big));
    // The same size again, shorter: only its own octets come out.
    const short = [new Uint8Array(100_000).fill(7), new Uint8Array(5).fill(8)];
    assert.deepEqual(await writeThrough(dir, "short", MIB, short), join(short));
    assert.deepEqual(await writeThrough(dir, "none", MIB, []), new Uint8Array());
    const huge = [new Uint8Array(3 * MIB).fill(9), new Uint8Array(MIB + 1).fill(6)];
    assert.deepEqual(await writeThrough(dir, "huge", 4 * MIB, huge), join(huge));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
