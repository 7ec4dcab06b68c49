import assert from "node:assert/strict";
import { FdBudget } from "./fd_budget.ts";

/** A budget whose count of open descriptors is `open()`, and how often it was counted. */
function budgetCounting(
  limit: number,
  open: () => number,
): { budget: FdBudget; counts: () => number } {
  let counts = 0;
  const budget = new FdBudget({
    limit,
    baseline: 20,
    countOpen: () => {
      counts++;
      return open();
    },
  });
  return { budget, counts: () => counts };
}

Deno.test("near a low limit, every check counts the descriptors", () => {
  let open = 100;
  const { budget, counts } = budgetCounting(256, () => open);
  for (let i = 0; i < 5; i++) assert.equal(budget.check(), false);
  assert.equal(counts(), 5);
  open = 250; // the rest of the process took the room: refused at once
  assert.equal(budget.check(), true);
  assert.equal(budget.isShort, true);
});

Deno.test("with thousands of descriptors well clear of the limit, checks count only now and then", () => {
  // Each count reads /proc/self/fd: about 17 ms with 10,000 idle clients.
  const { budget, counts } = budgetCounting(20_000, () => 10_000);
  for (let i = 0; i < 33; i++) assert.equal(budget.check(), false);
  assert.equal(counts(), 3); // one count, then ten skipped, three times
});

Deno.test("close to the limit, every check counts again", () => {
  let open = 5_000;
  const { budget, counts } = budgetCounting(20_000, () => open);
  budget.check(); // clear: the next five go without a count
  open = 19_500;
  for (let i = 0; i < 5; i++) budget.check();
  assert.equal(counts(), 1);
  assert.equal(budget.check(), true); // counted: short of descriptors
  assert.equal(budget.check(), true);
  assert.equal(counts(), 3);
});
