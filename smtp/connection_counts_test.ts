import assert from "node:assert/strict";
import { LocalConnectionCounts, SharedConnectionCounts } from "./connection_counts.ts";

Deno.test("local counts: the total limit first, then the per-client one; a release makes room", () => {
  const counts = new LocalConnectionCounts();
  assert.equal(counts.admit("a", 3, 2), "admitted");
  assert.equal(counts.admit("a", 3, 2), "admitted");
  assert.equal(counts.admit("a", 3, 2), "per-client");
  assert.equal(counts.admit("b", 3, 2), "admitted");
  assert.equal(counts.admit("c", 3, 2), "total");
  counts.release("a");
  assert.equal(counts.admit("c", 3, 2), "admitted");
});

Deno.test("shared counts: two threads' views of one port hold one limit between them", () => {
  const main = new SharedConnectionCounts({ threads: 3, thread: 0 });
  const one = new SharedConnectionCounts({ buffer: main.buffer, thread: 1 });
  const two = new SharedConnectionCounts({ buffer: main.buffer, thread: 2 });
  assert.equal(one.admit("192.0.2.1", 100, 2), "admitted");
  assert.equal(two.admit("192.0.2.1", 100, 2), "admitted");
  assert.equal(one.admit("192.0.2.1", 100, 2), "per-client");
  assert.equal(two.admit("192.0.2.1", 100, 2), "per-client");
  // Another client is counted on its own.
  assert.equal(two.admit("192.0.2.2", 100, 2), "admitted");
  one.release("192.0.2.1");
  assert.equal(two.admit("192.0.2.1", 100, 2), "admitted");
  assert.equal(one.admit("192.0.2.3", 3, 2), "total");
});

Deno.test("shared counts: a thread that died is cleared, and its connections count no more", () => {
  const main = new SharedConnectionCounts({ threads: 3, thread: 0 });
  const one = new SharedConnectionCounts({ buffer: main.buffer, thread: 1 });
  const two = new SharedConnectionCounts({ buffer: main.buffer, thread: 2 });
  for (let i = 0; i < 5; i++) assert.equal(one.admit("198.51.100.7", 5, 5), "admitted");
  assert.equal(two.admit("198.51.100.7", 5, 5), "total");
  main.clear(1);
  assert.equal(two.admit("198.51.100.7", 5, 5), "admitted");
});

Deno.test("shared counts: 10,000 clients with one connection each do not crowd one another out", () => {
  // A client shares a count with another only where both its counters
  // collide; then two busy clients could be refused early, never idle ones.
  const counts = new SharedConnectionCounts({ threads: 2, thread: 1 });
  for (let i = 0; i < 10_000; i++) {
    assert.equal(counts.admit(`10.${i >> 8}.${i & 255}.1`, 20_000, 3), "admitted");
  }
});

Deno.test("a view must name a thread of the counts", () => {
  const counts = new SharedConnectionCounts({ threads: 2, thread: 0 });
  assert.throws(() => new SharedConnectionCounts({ buffer: counts.buffer, thread: 2 }), RangeError);
});

Deno.test("an open-file budget shared by threads: one capacity for all, a dead thread's sockets cleared", async () => {
  const { FdBudget } = await import("./fd_budget.ts");
  const main = new FdBudget({
    limit: 256,
    baseline: 28,
    reserve: 128,
    countOpen: () => null,
    threads: 2,
  });
  const worker = new FdBudget({ shared: main.shared, thread: 1, countOpen: () => null });
  assert.equal(main.capacity, 100);
  for (let i = 0; i < 60; i++) assert.ok(worker.tryAcquire());
  for (let i = 0; i < 40; i++) assert.ok(main.tryAcquire());
  assert.equal(main.tryAcquire(), false);
  assert.equal(worker.tryAcquire(), false);
  assert.equal(main.open, 100);
  main.clear(1);
  assert.equal(worker.open, 40);
  assert.ok(worker.tryAcquire());
});
