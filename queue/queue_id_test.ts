import assert from "node:assert/strict";
import { isQueueId, newQueueId, QUEUE_ID_LENGTH, setQueueIdThread } from "./queue_id.ts";

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

Deno.test("ids made in the same millisecond never repeat, nor do those of an earlier one asked again", () => {
  const now = Date.now();
  const first = Array.from({ length: 100_000 }, () => newQueueId(now));
  assert.equal(new Set(first).size, first.length);
  assert.ok(first.every((id) => id.slice(0, 9) === first[0]!.slice(0, 9)));
  // Another millisecond, then the first again (an upload made again for its arrival).
  const later = newQueueId(now + 1);
  const again = Array.from({ length: 1000 }, () => newQueueId(now));
  const all = new Set([...first, later, ...again]);
  assert.equal(all.size, first.length + 1 + again.length);
  assert.equal(again[0]!.slice(0, 9), first[0]!.slice(0, 9), "the time is still the one asked for");
});

/** The random part of an id, as a number. */
function randomPart(id: string): number {
  let value = 0;
  for (const c of id.slice(9)) value = value * 32 + "0123456789ABCDEFGHJKMNPQRSTVWXYZ".indexOf(c);
  return value;
}

Deno.test("threads of one process make ids from shares of their own", () => {
  try {
    const now = Date.now();
    const byThread = [0, 1, 2].map((index) => {
      setQueueIdThread(index, 3);
      return Array.from({ length: 20_000 }, () => newQueueId(now));
    });
    // Two bits for three threads: the random part's top two bits are the thread's.
    byThread.forEach((ids, index) => {
      for (const id of ids) assert.equal(Math.floor(randomPart(id) / 2 ** 23), index, id);
    });
    assert.equal(new Set(byThread.flat()).size, 60_000);
  } finally {
    setQueueIdThread(0, 1);
  }
});

Deno.test("setQueueIdThread() refuses a thread that is not one of them", () => {
  assert.throws(() => setQueueIdThread(3, 3), RangeError);
  assert.throws(() => setQueueIdThread(-1, 3), RangeError);
  assert.throws(() => setQueueIdThread(0, 0), RangeError);
  assert.throws(() => setQueueIdThread(0.5, 3), RangeError);
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
