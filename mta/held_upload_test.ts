import assert from "node:assert/strict";
import { join } from "node:path";
import { KvQueue } from "../queue/kv_queue.ts";
import { newQueueId } from "../queue/queue_id.ts";
import type { ReceiveInit } from "../queue/queue.ts";
import { HeldUpload, MemoryBudget } from "./held_upload.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A real store in a temporary directory. */
async function openQueue(): Promise<KvQueue & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "tern-held-" });
  const queue = await KvQueue.open(join(dir, "queue.sqlite3"), {
    retry: [60_000],
    maxAge: 86_400_000,
  });
  return Object.assign(queue, {
    async [Symbol.asyncDispose]() {
      await queue.close();
      await Deno.remove(dir, { recursive: true });
    },
  });
}

function init(now = Date.now()): ReceiveInit & { queueId: string } {
  return {
    envelope: {
      reversePath: "carol@example.test",
      forwardPaths: ["alice@example.test", "bob@example.test"],
      body: "8BITMIME",
      smtputf8: false,
    },
    recipients: [
      {
        address: "alice@example.test",
        originalRecipient: "alice@example.test",
        mailbox: "alice@example.test",
      },
      {
        address: "bob@example.test",
        originalRecipient: "bob@example.test",
        mailbox: "bob@example.test",
      },
    ],
    clientAddress: "192.0.2.1",
    now,
    queueId: newQueueId(now),
  };
}

Deno.test("held content stays out of the store, and comes back whole with the header on top", async () => {
  await using queue = await openQueue();
  const budget = new MemoryBudget(1024);
  const upload = new HeldUpload(init(), queue, budget, 1024);
  const buffer = encoder.encode("Subject: one\r\n");
  await upload.write(buffer);
  buffer.fill(0x78); // the caller reuses its buffer: the held copy is its own
  await upload.write(encoder.encode("\r\nbody\r\n"));
  assert.equal(upload.size, 22);
  assert.ok(upload.isHeld);
  assert.equal(budget.used, 22);
  assert.equal(await queue.count(), 0);
  const content = upload.content(encoder.encode("Received: x\r\n"));
  assert.equal(
    content.map((piece) => decoder.decode(piece)).join(""),
    "Received: x\r\nSubject: one\r\n\r\nbody\r\n",
  );
  await upload.abort();
  assert.equal(budget.used, 0, "the memory is given back");
  assert.equal(upload.isHeld, false);
  await assert.rejects(upload.write(encoder.encode("late")), /done/);
});

Deno.test("a commit stores the held content under the id made up front, for the narrowed recipients", async () => {
  await using queue = await openQueue();
  const budget = new MemoryBudget(1024);
  const start = init();
  const upload = new HeldUpload(start, queue, budget, 1024);
  await upload.write(encoder.encode("Subject: two\r\n\r\nbody\r\n"));
  upload.narrow([start.recipients[1]!]);
  await upload.commit({ header: encoder.encode("Received: y\r\n") });
  assert.equal(budget.used, 0);
  const stored = await queue.get(start.queueId);
  assert.ok(stored, "stored under the held id");
  assert.deepEqual(stored.recipients.map((r) => r.address), ["bob@example.test"]);
  const text = await new Response(queue.openContent(start.queueId)).text();
  assert.equal(text, "Received: y\r\nSubject: two\r\n\r\nbody\r\n");
});

Deno.test("past its limit, or past the shared budget, a message moves into the store as it arrives", async () => {
  await using queue = await openQueue();
  const budget = new MemoryBudget(100);
  const first = new HeldUpload(init(), queue, budget, 60);
  const second = new HeldUpload(init(), queue, budget, 60);
  await first.write(new Uint8Array(50).fill(0x61));
  await second.write(new Uint8Array(40).fill(0x62));
  assert.equal(budget.used, 90);
  // Over first's own limit of 60: its 50 held octets go to the store, and the budget is freed.
  await first.write(new Uint8Array(20).fill(0x63));
  assert.equal(first.isHeld, false);
  assert.equal(budget.used, 40);
  assert.throws(() => first.content(new Uint8Array()), /not held/);
  // Within second's limit but over what the budget has left once a third takes most of it.
  const third = new HeldUpload(init(), queue, budget, 60);
  await third.write(new Uint8Array(55).fill(0x64));
  await second.write(new Uint8Array(10).fill(0x65));
  assert.equal(second.isHeld, false);
  assert.equal(budget.used, 55);
  await first.write(new Uint8Array(5).fill(0x66)); // straight to the store now
  assert.equal(first.size, 75, "octets written after the move are counted too");
  const claim = await first.commitAndClaim(Date.now());
  assert.equal(decoder.decode(claim.content), "a".repeat(50) + "c".repeat(20) + "f".repeat(5));
  await second.commit();
  assert.equal(
    await new Response(queue.openContent(second.queueId)).text(),
    "b".repeat(40) + "e".repeat(10),
  );
  await third.abort();
  assert.equal(budget.used, 0);
  assert.equal(await queue.count(), 2);
});
