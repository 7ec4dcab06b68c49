import assert from "node:assert/strict";
import { AuthLimiter } from "./auth_limiter.ts";

Deno.test("AuthLimiter doubles the delay with each failure, up to the cap", () => {
  const limiter = new AuthLimiter({ maxFailures: 10, delayMs: 100, maxDelayMs: 500 });
  const delays = Array.from({ length: 5 }, () => limiter.recordFailure("192.0.2.1").delayMs);
  assert.deepEqual(delays, [100, 200, 400, 500, 500]);
});

Deno.test("AuthLimiter locks an address out at the limit, and forgets it after the window", () => {
  let now = 1_000;
  const limiter = new AuthLimiter({ maxFailures: 2, windowMs: 60_000, now: () => now });
  assert.equal(limiter.recordFailure("192.0.2.1").isLocked, false);
  assert.equal(limiter.isLocked("192.0.2.1"), false);
  assert.equal(limiter.recordFailure("192.0.2.1").isLocked, true);
  assert.equal(limiter.isLocked("192.0.2.1"), true);
  assert.equal(limiter.isLocked("192.0.2.2"), false, "other addresses are not affected");
  now += 59_999;
  assert.equal(limiter.isLocked("192.0.2.1"), true);
  now += 1;
  assert.equal(limiter.isLocked("192.0.2.1"), false);
  assert.equal(limiter.recordFailure("192.0.2.1").failures, 1);
});

Deno.test("AuthLimiter counts addresses with the same key as one client", () => {
  const limiter = new AuthLimiter({
    maxFailures: 2,
    keyOf: (a) => a.split(":").slice(0, 4).join(":"),
  });
  limiter.recordFailure("2001:db8:1:2::1");
  assert.equal(limiter.recordFailure("2001:db8:1:2::99").isLocked, true);
  assert.equal(limiter.isLocked("2001:db8:1:2::5"), true);
  assert.equal(limiter.isLocked("2001:db8:1:3::5"), false);
});

Deno.test("AuthLimiter forgets the oldest clients first when it holds too many", () => {
  const limiter = new AuthLimiter({ maxFailures: 1, maxClients: 2 });
  limiter.recordFailure("a");
  limiter.recordFailure("b");
  limiter.recordFailure("c");
  assert.deepEqual(["a", "b", "c"].map((x) => limiter.isLocked(x)), [false, true, true]);
});
