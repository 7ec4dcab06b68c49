import assert from "node:assert/strict";
import { DeadlineSweep } from "./deadline_sweep.ts";

/** A member of the sweep: its deadline, and when it was told it passed. */
interface Member {
  due: number;
  expiredAt: number | null;
}

function sweepOf(onExpire: (m: Member) => void = () => {}): DeadlineSweep<Member> {
  const sweep: DeadlineSweep<Member> = new DeadlineSweep<Member>(
    (m) => m.due,
    (m) => {
      m.expiredAt = Date.now();
      sweep.unwatch(m);
      onExpire(m);
    },
  );
  return sweep;
}

function waitUntil(check: () => boolean, ms = 5000): Promise<void> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const poll = () => {
      if (check()) return resolve();
      if (Date.now() - started > ms) return reject(new Error("timed out waiting"));
      setTimeout(poll, 5);
    };
    poll();
  });
}

Deno.test("each member is told once its deadline has passed, never before", async () => {
  const sweep = sweepOf();
  const now = Date.now();
  const members = [30, 60, 90].map((ms) => ({ due: now + ms, expiredAt: null as number | null }));
  for (const m of members) sweep.watch(m, m.due, 5);
  await waitUntil(() => members.every((m) => m.expiredAt !== null));
  for (const m of members) assert.ok(m.expiredAt! >= m.due, "not before its deadline");
  assert.equal(sweep.size, 0);
});

Deno.test("a deadline moved later is read at the sweep: the member is not told early", async () => {
  const sweep = sweepOf();
  const m: Member = { due: Date.now() + 20, expiredAt: null };
  sweep.watch(m, m.due, 5);
  m.due = Date.now() + 120; // as a connection does after a reply: no call needed
  await waitUntil(() => m.expiredAt !== null);
  assert.ok(m.expiredAt! >= m.due);
});

Deno.test("a deadline moved earlier is met when the member is watched again", async () => {
  const sweep = sweepOf();
  const late: Member = { due: Date.now() + 60_000, expiredAt: null };
  const m: Member = { due: Date.now() + 60_000, expiredAt: null };
  sweep.watch(late, late.due, 5);
  sweep.watch(m, m.due, 5);
  m.due = Date.now() + 20;
  sweep.watch(m, m.due, 5);
  await waitUntil(() => m.expiredAt !== null);
  assert.equal(late.expiredAt, null);
  sweep.unwatch(late); // the timer stops with the last member (the test would leak it otherwise)
  assert.equal(sweep.size, 0);
});

Deno.test("a member with no deadline now (busy) is skipped until it is watched again", async () => {
  const sweep = sweepOf();
  const busy: Member = { due: Infinity, expiredAt: null };
  const idle: Member = { due: Date.now() + 10, expiredAt: null };
  sweep.watch(busy, Date.now() + 10, 5);
  sweep.watch(idle, idle.due, 5);
  await waitUntil(() => idle.expiredAt !== null);
  assert.equal(busy.expiredAt, null);
  busy.due = Date.now() + 10;
  sweep.watch(busy, busy.due, 5);
  await waitUntil(() => busy.expiredAt !== null);
});

Deno.test("many members share one timer and are all told", async () => {
  const sweep = sweepOf();
  const now = Date.now();
  const members = Array.from({ length: 2000 }, (_, i) => ({
    due: now + 20 + (i % 50),
    expiredAt: null as number | null,
  }));
  for (const m of members) sweep.watch(m, m.due, 10);
  await waitUntil(() => members.every((m) => m.expiredAt !== null));
  assert.equal(sweep.size, 0);
});
