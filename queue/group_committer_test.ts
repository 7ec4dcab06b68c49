import assert from "node:assert/strict";
import { serialize } from "node:v8";
import fc from "fast-check";
import { GroupCommitter } from "./group_committer.ts";
import { set, valueSize } from "./kv_atomic.ts";

async function withKv(run: (kv: Deno.Kv) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  const kv = await Deno.openKv(`${dir}/kv.sqlite3`);
  try {
    await run(kv);
  } finally {
    kv.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a deferred write shares the commit of the next write that goes", async () => {
  await withKv(async (kv) => {
    const committer = new GroupCommitter(kv);
    const deferred = committer.submitDeferred([], [set(["a"], 1)]);
    // Let the deferred write wait a turn: it must not have gone on its own.
    await new Promise((resolve) => setTimeout(resolve, 0));
    const now = await committer.submitStamped([], [set(["b"], 2)]);
    assert.notEqual(now, null);
    assert.equal(await deferred, now);
    const [a, b] = await kv.getMany([["a"], ["b"]]);
    assert.equal(a.versionstamp, b.versionstamp);
    await committer.drain();
  });
});

Deno.test("a deferred write with nothing to join commits on its own, soon", async () => {
  await withKv(async (kv) => {
    const committer = new GroupCommitter(kv);
    const versionstamp = await committer.submitDeferred([], [set(["a"], 1)]);
    assert.notEqual(versionstamp, null);
    assert.equal((await kv.get(["a"])).value, 1);
  });
});

Deno.test("drain() commits deferred writes at once", async () => {
  await withKv(async (kv) => {
    const committer = new GroupCommitter(kv);
    let settled = false;
    const deferred = committer.submitDeferred([], [set(["a"], 1)]).then((v) => {
      settled = true;
      return v;
    });
    await committer.drain();
    await Promise.resolve();
    assert.ok(settled);
    assert.notEqual(await deferred, null);
  });
});

Deno.test("a deferred write whose check fails gets null and spoils no other write", async () => {
  await withKv(async (kv) => {
    await kv.set(["taken"], 0);
    const committer = new GroupCommitter(kv);
    const deferred = committer.submitDeferred(
      [{ key: ["taken"], versionstamp: null }],
      [set(["taken"], 1)],
    );
    const other = committer.submitStamped([], [set(["b"], 2)]);
    assert.equal(await deferred, null);
    assert.notEqual(await other, null);
    assert.equal((await kv.get(["taken"])).value, 0);
    await committer.drain();
  });
});

Deno.test("valueSize() bounds what the V8 serializer writes", () => {
  const leaf = fc.oneof(
    fc.string({ unit: "binary" }),
    fc.double(),
    fc.integer(),
    fc.boolean(),
    fc.constant(null),
    fc.uint8Array({ maxLength: 300 }),
  );
  const value = fc.letrec((tie) => ({
    node: fc.oneof(
      { depthSize: "small" },
      leaf,
      fc.array(tie("node"), { maxLength: 5 }),
      fc.dictionary(fc.string({ unit: "binary" }), tie("node"), { maxKeys: 5 }),
    ),
  })).node;
  // Bytes on their own are stored as they are, not serialized.
  const stored = (v: unknown) => v instanceof Uint8Array ? v.byteLength : serialize(v).length;
  fc.assert(fc.property(value, (v) => valueSize(v) >= stored(v)), { numRuns: 500 });
});

Deno.test("valueSize() of a meta holding a header stays near its stored size", () => {
  // The bound is taken for every value of every commit: a header counted a
  // number per octet (its JSON text) made commits look five times bigger.
  const meta = {
    v: 1,
    queueId: "4F2A9CR0Q",
    envelope: { reversePath: "a@example.test", forwardPaths: ["b@example.test"] },
    size: 4400,
    header: new Uint8Array(300).fill(0x52),
    arrival: 1_700_000_000_000,
    held: false,
  };
  const stored = serialize(meta).length;
  assert.ok(valueSize(meta) >= stored);
  assert.ok(valueSize(meta) < 2 * stored, `${valueSize(meta)} for ${stored} octets`);
});
