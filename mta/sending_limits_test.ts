import assert from "node:assert/strict";
import { SendingLimits, type SendingLimitValues } from "./sending_limits.ts";

const MIN = 60_000;
const HOUR = 60 * MIN;
const BOB = "bob@example.test";

/** One step of a scenario: send (record) or ask (check), at a time on a fake clock. */
type Step =
  | { at: number; send: number }
  | { at: number; mail: "ok" | number }
  | { at: number; rcpt: "ok" | number; pending?: number };

interface Case {
  name: string;
  limits: SendingLimitValues;
  steps: Step[];
}

const CASES: Case[] = [
  {
    name: "the 4th message in an hour is refused, with used=3",
    limits: { userMessagesPerHour: 3, userRecipientsPerDay: 0 },
    steps: [
      { at: 0, mail: "ok" },
      { at: 0, send: 1 },
      { at: MIN, send: 1 },
      { at: 2 * MIN, mail: "ok" },
      { at: 2 * MIN, send: 1 },
      { at: 3 * MIN, mail: 3 },
    ],
  },
  {
    name: "the hour slides by five-minute buckets",
    limits: { userMessagesPerHour: 2, userRecipientsPerDay: 0 },
    steps: [
      { at: 0, send: 1 },
      { at: 10 * MIN, send: 1 },
      { at: 59 * MIN, mail: 2 },
      // The first bucket (0-5 min) leaves the window when the 13th begins.
      { at: 60 * MIN, mail: "ok" },
      { at: 69 * MIN, mail: "ok" },
      { at: 60 * MIN, send: 1 },
      { at: 69 * MIN, mail: 2 },
      { at: 75 * MIN, mail: "ok" },
    ],
  },
  {
    name: "recipients per day count what is recorded plus the transaction's pending ones",
    limits: { userMessagesPerHour: 0, userRecipientsPerDay: 5 },
    steps: [
      { at: 0, send: 3 },
      { at: MIN, rcpt: "ok", pending: 0 },
      { at: MIN, rcpt: "ok", pending: 1 },
      { at: MIN, rcpt: 5, pending: 2 },
      { at: MIN, send: 2 },
      { at: 2 * MIN, rcpt: 5 },
      { at: 23 * HOUR + 59 * MIN, rcpt: 5 },
      // The first hour's bucket leaves the day after 24 hours.
      { at: 24 * HOUR, rcpt: "ok" },
    ],
  },
  {
    name: "0 means no limit",
    limits: { userMessagesPerHour: 0, userRecipientsPerDay: 0 },
    steps: [
      { at: 0, send: 10_000 },
      { at: 0, send: 10_000 },
      { at: 0, mail: "ok" },
      { at: 0, rcpt: "ok", pending: 1_000_000 },
    ],
  },
  {
    name: "a never-seen account is within its limits",
    limits: { userMessagesPerHour: 1, userRecipientsPerDay: 1 },
    steps: [{ at: 0, mail: "ok" }, { at: 0, rcpt: "ok" }],
  },
];

for (const c of CASES) {
  Deno.test(`SendingLimits: ${c.name}`, () => {
    const counter = new SendingLimits();
    for (const [i, step] of c.steps.entries()) {
      const where = `step ${i} at ${step.at / MIN} min`;
      if ("send" in step) {
        counter.record(BOB, step.send, step.at);
      } else if ("mail" in step) {
        const hit = counter.checkMessage(BOB, c.limits, step.at);
        if (step.mail === "ok") assert.equal(hit, null, where);
        else {
          assert.deepEqual(
            hit,
            { limit: "messages_per_hour", max: c.limits.userMessagesPerHour, used: step.mail },
            where,
          );
        }
      } else {
        const hit = counter.checkRecipient(BOB, step.pending ?? 0, c.limits, step.at);
        if (step.rcpt === "ok") assert.equal(hit, null, where);
        else {
          assert.deepEqual(
            hit,
            { limit: "recipients_per_day", max: c.limits.userRecipientsPerDay, used: step.rcpt },
            where,
          );
        }
      }
    }
  });
}

Deno.test("SendingLimits: accounts are counted apart", () => {
  const limits = { userMessagesPerHour: 1, userRecipientsPerDay: 0 };
  const counter = new SendingLimits();
  counter.record(BOB, 1, 0);
  assert.equal(counter.checkMessage(BOB, limits, 0)?.used, 1);
  assert.equal(counter.checkMessage("alice@example.test", limits, 0), null);
});

Deno.test("SendingLimits: the map stays bounded, forgetting the idlest account first", () => {
  const counter = new SendingLimits({ maxAccounts: 3 });
  for (let i = 0; i < 10; i++) counter.record(`u${i}@example.test`, 1, i * MIN);
  assert.equal(counter.size, 3);
  // The most recent three are the ones remembered.
  assert.deepEqual(counter.check("u9@example.test", 10 * MIN), { messages: 1, recipients: 1 });
  assert.deepEqual(counter.check("u0@example.test", 10 * MIN), { messages: 0, recipients: 0 });
  // Sending again makes an account recent: u7 survives the next newcomer, u8 does not.
  counter.record("u7@example.test", 1, 11 * MIN);
  counter.record("new@example.test", 1, 12 * MIN);
  assert.equal(counter.check("u7@example.test", 12 * MIN).messages, 2);
  assert.equal(counter.check("u8@example.test", 12 * MIN).messages, 0);
});

Deno.test("SendingLimits: a limit lowered by a reload applies at the next check", () => {
  const counter = new SendingLimits();
  counter.record(BOB, 1, 0);
  counter.record(BOB, 1, 0);
  assert.equal(
    counter.checkMessage(BOB, { userMessagesPerHour: 5, userRecipientsPerDay: 0 }, 0),
    null,
  );
  assert.equal(
    counter.checkMessage(BOB, { userMessagesPerHour: 2, userRecipientsPerDay: 0 }, 0)?.used,
    2,
  );
});
