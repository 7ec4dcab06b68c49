import assert from "node:assert/strict";
import {
  HashingGate,
  hashPassword,
  isPasswordHash,
  PasswordCheckBusyError,
  verifyPassword,
} from "./password.ts";

Deno.test("hashPassword() writes scrypt parameters, a 16-byte salt and a 32-byte key", async () => {
  const hash = await hashPassword("s3cret");
  const match = /^\$scrypt\$ln=15,r=8,p=1\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/.exec(hash);
  assert.ok(match, hash);
  assert.equal(atob(padBase64(match[1] ?? "")).length, 16);
  assert.equal(atob(padBase64(match[2] ?? "")).length, 32);
});

function padBase64(text: string): string {
  return text + "=".repeat((4 - (text.length % 4)) % 4);
}

Deno.test("hashPassword() salts every hash differently", async () => {
  const [a, b] = await Promise.all([hashPassword("same"), hashPassword("same")]);
  assert.notEqual(a, b);
});

Deno.test("hashPassword() refuses an empty password", async () => {
  await assert.rejects(() => hashPassword(""), RangeError);
});

Deno.test("verifyPassword() accepts the password a hash was made from, and nothing else", async () => {
  const hash = await hashPassword("correct horse battery staple");
  assert.equal(await verifyPassword("correct horse battery staple", hash), true);
  assert.equal(await verifyPassword("correct horse battery stapler", hash), false);
  assert.equal(await verifyPassword("", hash), false);
});

Deno.test("verifyPassword() matches a password however its accents are composed", async () => {
  const hash = await hashPassword("caf\u00e9"); // é as one code point
  assert.equal(await verifyPassword("cafe\u0301", hash), true); // e + combining acute
});

// A real hash of "s3cret", so the parser is tested against a fixed string.
const KNOWN =
  "$scrypt$ln=15,r=8,p=1$MuE9jkt/4x/jXtiwLf3kVw$MHADKunhFM1Q8UmDOe6HieXUW4jwfM/PL6nqJ6eBlw8";

Deno.test("verifyPassword() reads a hash written earlier", async () => {
  assert.equal(await verifyPassword("s3cret", KNOWN), true);
  assert.equal(await verifyPassword("s3cret", KNOWN.replace(/\$([^$]*)$/, "$$$1==")), true);
});

const malformed = [
  "",
  "s3cret",
  "$scrypt$",
  "$scrypt$ln=15,r=8,p=1$MuE9jkt/4x/jXtiwLf3kVw",
  "$scrypt$ln=15,r=8$MuE9jkt/4x/jXtiwLf3kVw$MHADKunhFM1Q8UmDOe6HieXUW4jwfM/PL6nqJ6eBlw8",
  "$scrypt$ln=0,r=8,p=1$MuE9jkt/4x/jXtiwLf3kVw$MHADKunhFM1Q8UmDOe6HieXUW4jwfM/PL6nqJ6eBlw8",
  "$scrypt$ln=40,r=8,p=1$MuE9jkt/4x/jXtiwLf3kVw$MHADKunhFM1Q8UmDOe6HieXUW4jwfM/PL6nqJ6eBlw8",
  "$scrypt$ln=15,r=99,p=1$MuE9jkt/4x/jXtiwLf3kVw$MHADKunhFM1Q8UmDOe6HieXUW4jwfM/PL6nqJ6eBlw8",
  "$scrypt$ln=15,r=8,p=1$!!!!$MHADKunhFM1Q8UmDOe6HieXUW4jwfM/PL6nqJ6eBlw8",
  "$scrypt$ln=15,r=8,p=1$MuE9jkt/4x/jXtiwLf3kVw$c2hvcnQ",
  "$2b$10$abcdefghijklmnopqrstuu5ZfbZ6Fkqk1Ogs0vGc0q3aF0W7HhzSa",
  `${KNOWN}\n`,
];
for (const hash of malformed) {
  Deno.test(`verifyPassword() returns false, without throwing, for ${JSON.stringify(hash)}`, async () => {
    assert.equal(isPasswordHash(hash), false);
    assert.equal(await verifyPassword("s3cret", hash), false);
  });
}

Deno.test("isPasswordHash() recognizes what hashPassword() makes", async () => {
  assert.equal(isPasswordHash(await hashPassword("x")), true);
  assert.equal(isPasswordHash(KNOWN), true);
});

// --- the hashing gate -----------------------------------------------------------

Deno.test("HashingGate runs so many at once, the rest in order, and refuses past its queue", async () => {
  const gate = new HashingGate({ concurrency: 2, maxWaiting: 3 });
  const started: number[] = [];
  const releases: (() => void)[] = [];
  const task = (i: number) => () => {
    started.push(i);
    const { promise, resolve } = Promise.withResolvers<number>();
    releases.push(() => resolve(i));
    return promise;
  };
  const runs = [0, 1, 2, 3, 4].map((i) => gate.run(task(i)));
  assert.deepEqual(started, [0, 1]);
  assert.deepEqual([gate.running, gate.waiting], [2, 3]);
  await assert.rejects(gate.run(task(5)), PasswordCheckBusyError);
  const operator = gate.run(task(6), { mayRefuse: false }); // hashPassword waits however long
  assert.equal(gate.waiting, 4);
  for (let i = 0; i < 6; i++) {
    releases[i]!(); // each end hands its slot to the first in the queue
    await (i < 5 ? runs[i] : operator);
  }
  assert.deepEqual(started, [0, 1, 2, 3, 4, 6], "first come, first served");
  assert.deepEqual(await Promise.all([...runs, operator]), [0, 1, 2, 3, 4, 6]);
  assert.deepEqual([gate.running, gate.waiting], [0, 0]);
});

Deno.test("HashingGate frees the slot of a task that throws", async () => {
  const gate = new HashingGate({ concurrency: 1, maxWaiting: 0 });
  await assert.rejects(gate.run(() => Promise.reject(new Error("boom"))), /boom/);
  assert.equal(await gate.run(() => Promise.resolve("next")), "next");
  assert.throws(() => new HashingGate({ concurrency: 0 }), RangeError);
});

Deno.test("verifyPassword() waits at its gate, and is refused when the gate is full", async () => {
  const gate = new HashingGate({ concurrency: 1, maxWaiting: 1 });
  const { promise: hold, resolve: release } = Promise.withResolvers<void>();
  const blocker = gate.run(() => hold);
  const waiting = verifyPassword("s3cret", KNOWN, { gate });
  assert.equal(gate.waiting, 1);
  await assert.rejects(verifyPassword("s3cret", KNOWN, { gate }), PasswordCheckBusyError);
  release();
  await blocker;
  assert.equal(await waiting, true);
  assert.equal(await verifyPassword("wrong", KNOWN, { gate }), false);
});

Deno.test("verifyPassword() answers many checks at once right, through the default gate", async () => {
  // They take turns (two at a time by default); none is refused, the queue holds 32.
  const checks = Array.from({ length: 6 }, () => verifyPassword("s3cret", KNOWN));
  assert.deepEqual(await Promise.all(checks), Array(6).fill(true));
});
