import assert from "node:assert/strict";
import { concatBytes } from "./concat.ts";

Deno.test("concatBytes joins in order, and copies", () => {
  const a = new Uint8Array([1, 2]);
  const joined = concatBytes([a, new Uint8Array(0), new Uint8Array([3])]);
  assert.deepEqual([...joined], [1, 2, 3]);
  a[0] = 9;
  assert.equal(joined[0], 1);
  assert.equal(concatBytes([]).length, 0);
});
