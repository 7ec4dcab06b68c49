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

// --- attempts counted before the check ----------------------------------------

Deno.test("AuthLimiter.begin counts attempts in flight, so parallel ones stop at the limit", () => {
  const limiter = new AuthLimiter({ maxFailures: 5 });
  const admissions = Array.from({ length: 40 }, () => limiter.begin("192.0.2.1", "a@example.test"));
  const admitted = admissions.filter((a) => a.attempt !== null);
  assert.equal(admitted.length, 5);
  assert.ok(admissions.slice(5).every((a) => a.locked === "address" && a.delayMs === 0));
  assert.equal(limiter.isLocked("192.0.2.1"), true, "locked while the five are in flight");
});

Deno.test("AuthLimiter: a success takes back its own attempt only, never earlier failures", () => {
  const limiter = new AuthLimiter({ maxFailures: 3, delayMs: 100 });
  const begin = () => {
    const admission = limiter.begin("192.0.2.1", "a@example.test");
    assert.ok(admission.attempt, `refused: ${admission.locked}`);
    return admission.attempt;
  };
  assert.equal(begin().failed().failures, 1);
  const right = begin();
  const wrong = begin();
  assert.equal(limiter.isLocked("192.0.2.1"), true, "two in flight fill the limit");
  right.succeeded();
  assert.equal(limiter.isLocked("192.0.2.1"), false);
  const failure = wrong.failed();
  assert.deepEqual(failure, { failures: 2, accountFailures: 2, delayMs: 200, isLocked: false });
  begin().succeeded();
  begin().succeeded();
  assert.equal(begin().failed().isLocked, true, "successes did not wipe the two failures");
});

Deno.test("AuthLimiter: an abandoned attempt (nothing checked) does not count; settling twice does nothing", () => {
  const limiter = new AuthLimiter({ maxFailures: 1 });
  const first = limiter.begin("192.0.2.1", "a@example.test").attempt!;
  first.abandoned();
  first.abandoned();
  first.succeeded();
  assert.equal(limiter.isLocked("192.0.2.1"), false);
  const second = limiter.begin("192.0.2.1", "a@example.test").attempt!;
  assert.equal(second.failed().failures, 1);
  second.succeeded(); // too late: it failed
  assert.equal(second.failed().failures, 1, "the same answer again");
  assert.equal(limiter.isLocked("192.0.2.1"), true);
});

Deno.test("AuthLimiter: an account is locked after maxAccountFailures from any addresses, in any case", () => {
  let now = 0;
  const limiter = new AuthLimiter({
    maxFailures: 2,
    maxAccountFailures: 3,
    delayMs: 100,
    windowMs: 60_000,
    now: () => now,
  });
  const names = ["alice@example.test", "ALICE@Example.Test", "Alice@example.test"];
  names.forEach((name, i) => limiter.begin(`192.0.2.${i}`, name).attempt!.failed());
  assert.equal(limiter.isAccountLocked("alice@EXAMPLE.test"), true);
  assert.equal(limiter.isLocked("192.0.2.9"), false, "a new address is not locked");
  const refused = limiter.begin("192.0.2.9", "alice@example.test");
  assert.equal(refused.locked, "account");
  assert.equal(refused.attempt, null);
  assert.equal(refused.locked === "account" && refused.delayMs, 400, "as slow as a third failure");
  assert.ok(limiter.begin("192.0.2.9", "bob@example.test").attempt, "other accounts go on");
  now += 60_000;
  assert.equal(limiter.isAccountLocked("alice@example.test"), false, "forgotten after the window");
});

Deno.test("AuthLimiter: the account limit defaults to twice the address limit, with separate counters", () => {
  const limiter = new AuthLimiter({ maxFailures: 2 });
  for (let i = 0; i < 3; i++) limiter.begin(`192.0.2.${i}`, "a@example.test").attempt!.failed();
  assert.equal(limiter.isAccountLocked("a@example.test"), false);
  limiter.begin("192.0.2.3", "a@example.test").attempt!.failed();
  assert.equal(limiter.isAccountLocked("a@example.test"), true);
  // One address, many accounts: the address part alone stops it.
  limiter.begin("198.51.100.1", "x@example.test").attempt!.failed();
  const second = limiter.begin("198.51.100.1", "y@example.test").attempt!.failed();
  assert.deepEqual([second.failures, second.accountFailures, second.isLocked], [2, 1, true]);
});

Deno.test("AuthLimiter.begin with no address counts the account only", () => {
  const limiter = new AuthLimiter({ maxFailures: 1, maxAccountFailures: 2 });
  const failure = limiter.begin(null, "a@example.test").attempt!.failed();
  assert.deepEqual([failure.failures, failure.accountFailures, failure.isLocked], [0, 1, false]);
  assert.ok(limiter.begin(null, "a@example.test").attempt);
  assert.equal(limiter.begin(null, "a@example.test").locked, "account");
});

Deno.test("AuthLimiter: settling an attempt whose record was forgotten meanwhile changes nothing", () => {
  let now = 0;
  const limiter = new AuthLimiter({ maxFailures: 2, windowMs: 1000, now: () => now });
  const old = limiter.begin("192.0.2.1", "a@example.test").attempt!;
  now += 1000;
  limiter.begin("192.0.2.1", "a@example.test").attempt!.failed();
  old.succeeded(); // its record is gone: the new failure stays
  assert.equal(limiter.begin("192.0.2.1", "a@example.test").attempt!.failed().isLocked, true);
});
