import assert from "node:assert/strict";
import { isExpired, retryDelay } from "./retry.ts";

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const SCHEDULE = [1 * MINUTE, 5 * MINUTE, 15 * MINUTE, 1 * HOUR, 4 * HOUR];

const cases = [
  { attempts: 1, delay: 1 * MINUTE },
  { attempts: 2, delay: 5 * MINUTE },
  { attempts: 3, delay: 15 * MINUTE },
  { attempts: 4, delay: 1 * HOUR },
  { attempts: 5, delay: 4 * HOUR },
  { attempts: 6, delay: 4 * HOUR }, // the last wait repeats
  { attempts: 100, delay: 4 * HOUR },
];
for (const c of cases) {
  Deno.test(`retryDelay() waits ${c.delay / MINUTE} min after ${c.attempts} attempts`, () => {
    assert.equal(retryDelay(c.attempts, SCHEDULE), c.delay);
  });
}

Deno.test("retryDelay() with a one-wait schedule always waits that long", () => {
  assert.equal(retryDelay(1, [30 * MINUTE]), 30 * MINUTE);
  assert.equal(retryDelay(7, [30 * MINUTE]), 30 * MINUTE);
});

Deno.test("retryDelay() refuses fewer than one attempt", () => {
  assert.throws(() => retryDelay(0, SCHEDULE), RangeError);
  assert.throws(() => retryDelay(Number.NaN, SCHEDULE), RangeError);
});

Deno.test("retryDelay() refuses an empty schedule", () => {
  assert.throws(() => retryDelay(1, []), RangeError);
});

const ages = [
  { age: 0, expired: false },
  { age: 4 * DAY, expired: false },
  { age: 5 * DAY - 1, expired: false },
  { age: 5 * DAY, expired: true },
  { age: 6 * DAY, expired: true },
];
for (const a of ages) {
  Deno.test(`isExpired() says ${a.expired} at ${a.age} ms with a 5-day max_age`, () => {
    const arrival = 1_700_000_000_000;
    assert.equal(isExpired(arrival, arrival + a.age, 5 * DAY), a.expired);
  });
}
