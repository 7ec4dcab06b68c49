import assert from "node:assert/strict";
import { isQueueId, newQueueId, QUEUE_ID_LENGTH } from "./queue_id.ts";

Deno.test("newQueueId() makes 14 characters of upper-case Crockford base32", () => {
  for (let i = 0; i < 200; i++) {
    const id = newQueueId(Date.now());
    assert.equal(id.length, QUEUE_ID_LENGTH);
    assert.match(id, /^[0-9A-HJKMNP-TV-Z]{14}$/);
    assert.ok(isQueueId(id));
  }
});

Deno.test("newQueueId() encodes the time in the first 9 characters", () => {
  assert.equal(newQueueId(0).slice(0, 9), "000000000");
  assert.equal(newQueueId(31).slice(0, 9), "00000000Z");
  assert.equal(newQueueId(32).slice(0, 9), "000000010");
  assert.equal(newQueueId(32 ** 9 - 1).slice(0, 9), "ZZZZZZZZZ");
});

Deno.test("ids sort by arrival time as plain strings", () => {
  const times = [0, 1, 31, 32, 1_000, 1_700_000_000_000, 1_700_000_000_001, 2_000_000_000_000];
  const ids = times.map((t) => newQueueId(t));
  assert.deepEqual([...ids].sort(), ids);
});

Deno.test("ids made in the same millisecond differ", () => {
  const now = Date.now();
  const ids = new Set(Array.from({ length: 1000 }, () => newQueueId(now)));
  assert.ok(ids.size > 990);
});

const badTimes = [-1, Number.NaN, Number.POSITIVE_INFINITY, 32 ** 9];
for (const time of badTimes) {
  Deno.test(`newQueueId() refuses the time ${time}`, () => {
    assert.throws(() => newQueueId(time), RangeError);
  });
}

const notIds = [
  "",
  "01JDQ4ZK8M3T7",
  "01jdq4zk8m3t7q",
  "01JDQ4ZK8M3T7I",
  "01JDQ4ZK8M3T7Q/",
  "../etc/passwd",
];
for (const text of notIds) {
  Deno.test(`isQueueId() rejects ${JSON.stringify(text)}`, () => {
    assert.equal(isQueueId(text), false);
  });
}
