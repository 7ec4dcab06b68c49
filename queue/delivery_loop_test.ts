import assert from "node:assert/strict";
import { MemoryLogger } from "../log/logger.ts";
import { DeliveryLoop } from "./delivery_loop.ts";
import { type ClaimedMessage, KvQueue, type KvQueueOptions } from "./kv_queue.ts";
import type { QueuedMessage, RecipientOutcome } from "./types.ts";

const OPTIONS: KvQueueOptions = { retry: [60_000, 300_000], maxAge: 5 * 86_400_000 };

async function withQueue(
  fn: (queue: KvQueue, path: string) => Promise<void>,
  options: Partial<KvQueueOptions> = {},
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "tern-loop-" });
  const path = `${dir}/queue.sqlite3`;
  const queue = await KvQueue.open(path, { ...OPTIONS, ...options });
  try {
    await fn(queue, path);
  } finally {
    await queue.close();
    await Deno.remove(dir, { recursive: true });
  }
}

async function enqueue(
  queue: KvQueue,
  text = "Subject: hi\r\n\r\nHello\r\n",
  rcpts = 1,
): Promise<string> {
  const addresses = Array.from({ length: rcpts }, (_, i) => `user${i}@example.net`);
  const message = await queue.receive({
    envelope: {
      reversePath: "a@example.test",
      forwardPaths: addresses,
      body: "7BIT",
      smtputf8: false,
    },
    recipients: addresses.map((address) => ({
      address,
      originalRecipient: address,
      mailbox: null,
    })),
    clientAddress: "192.0.2.7",
    now: Date.now(),
  });
  await message.write(new TextEncoder().encode(text));
  await message.commit();
  return message.queueId;
}

function sendAll(claim: ClaimedMessage): RecipientOutcome[] {
  return claim.message.recipients.map((_, index) => ({
    index,
    status: "sent",
    reply: { code: 250, enhancedStatus: "2.0.0", text: "Ok" },
  }));
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitFor(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("Timed out waiting for the loop");
    await delay(5);
  }
}

Deno.test("the loop delivers every due message with at most `concurrency` in flight", async () => {
  await withQueue(async (queue) => {
    const ids = await Promise.all(Array.from({ length: 12 }, () => enqueue(queue)));
    let inFlight = 0;
    let most = 0;
    const done: QueuedMessage[] = [];
    const loop = new DeliveryLoop(queue, {
      concurrency: 3,
      pollMs: 20,
      logger: new MemoryLogger(),
      deliver: async (claim, content) => {
        inFlight++;
        most = Math.max(most, inFlight);
        assert.equal(await new Response(content()).text(), "Subject: hi\r\n\r\nHello\r\n");
        await delay(15);
        inFlight--;
        return sendAll(claim);
      },
      onDone: (final) => done.push(final),
    });
    loop.start();
    await waitFor(() => done.length === 12);
    await loop.stop();
    assert.equal(most, 3);
    assert.deepEqual(done.map((m) => m.queueId).sort(), [...ids].sort());
    assert.ok(done.every((m) => m.recipients.every((r) => r.status === "sent")));
    assert.equal(await queue.count(), 0);
  });
});

Deno.test("an exception from deliver defers every pending recipient with 4.3.0", async () => {
  await withQueue(async (queue) => {
    const id = await enqueue(queue, undefined, 2);
    const logger = new MemoryLogger();
    let calls = 0;
    const loop = new DeliveryLoop(queue, {
      concurrency: 2,
      pollMs: 20,
      logger,
      deliver: () => {
        calls++;
        return Promise.reject(new Error("Cannot resolve next hop: boom"));
      },
    });
    loop.start();
    await waitFor(() => calls === 1 && loop.inFlight === 0);
    await loop.stop();
    const message = await queue.get(id);
    assert.ok(message, "the message is still queued");
    for (const r of message.recipients) {
      assert.equal(r.status, "deferred");
      assert.equal(r.attempts, 1);
      assert.deepEqual(r.lastReply, {
        code: 0,
        enhancedStatus: "4.3.0",
        text: "Cannot resolve next hop: boom",
      });
    }
    assert.ok(message.nextAttempt > Date.now() + 50_000, "retried on the schedule");
    const error = logger.records.find((r) => r.event === "delivery.error");
    assert.equal(error?.queueId, id);
    assert.equal(error?.fields.error, "Cannot resolve next hop: boom");
  });
});

Deno.test("the loop finds work committed by another connection by polling", async () => {
  await withQueue(async (queue, path) => {
    const done: string[] = [];
    const loop = new DeliveryLoop(queue, {
      concurrency: 1,
      pollMs: 25,
      logger: new MemoryLogger(),
      deliver: (claim) => Promise.resolve(sendAll(claim)),
      onDone: (final) => done.push(final.queueId),
    });
    loop.start();
    // `tern send` in another process: its own connection to the same file.
    const other = await KvQueue.open(path, OPTIONS);
    const id = await enqueue(other);
    await other.close();
    await waitFor(() => done.length === 1); // no wake(): polling finds it
    await loop.stop();
    assert.deepEqual(done, [id]);
  });
});

Deno.test("wake() starts a delivery without waiting for the poll", async () => {
  await withQueue(async (queue) => {
    const done: string[] = [];
    const loop = new DeliveryLoop(queue, {
      concurrency: 1,
      pollMs: 60_000,
      logger: new MemoryLogger(),
      deliver: (claim) => Promise.resolve(sendAll(claim)),
      onDone: (final) => done.push(final.queueId),
    });
    loop.start();
    await delay(20); // the loop has looked once and is asleep
    const id = await enqueue(queue);
    loop.wake();
    await waitFor(() => done.length === 1, 2_000);
    await loop.stop();
    assert.deepEqual(done, [id]);
  });
});

Deno.test("stop() waits for the deliveries in flight and claims no more", async () => {
  await withQueue(async (queue) => {
    await Promise.all([enqueue(queue), enqueue(queue), enqueue(queue)]);
    let started = 0;
    let finished = 0;
    const loop = new DeliveryLoop(queue, {
      concurrency: 1,
      pollMs: 10,
      logger: new MemoryLogger(),
      deliver: async (claim) => {
        started++;
        await delay(50);
        finished++;
        return sendAll(claim);
      },
    });
    loop.start();
    await waitFor(() => started === 1);
    await loop.stop();
    assert.equal(started, 1);
    assert.equal(finished, 1);
    assert.equal(loop.inFlight, 0);
    assert.equal(await queue.count(), 2);
  });
});

Deno.test("a delivery slower than the lease keeps its claim by renewing it", async () => {
  await withQueue(async (queue, path) => {
    await enqueue(queue);
    const other = await KvQueue.open(path, { ...OPTIONS, leaseMs: 150 });
    let stolen = 0;
    const loop = new DeliveryLoop(queue, {
      concurrency: 1,
      pollMs: 10,
      logger: new MemoryLogger(),
      deliver: async (claim) => {
        for (let i = 0; i < 8; i++) {
          await delay(50);
          stolen += (await other.claimDue({ now: Date.now(), limit: 1 })).length;
        }
        return sendAll(claim);
      },
    });
    loop.start();
    await waitFor(() => loop.inFlight === 1);
    await waitFor(() => loop.inFlight === 0, 5_000);
    await loop.stop();
    await other.close();
    assert.equal(stolen, 0);
    assert.equal(await queue.count(), 0, "the attempt was recorded: the lease stayed ours");
  }, { leaseMs: 150 });
});

Deno.test("a deferral leaves the message queued for its next attempt, and onDone is not called", async () => {
  await withQueue(async (queue) => {
    const id = await enqueue(queue);
    const done: string[] = [];
    let calls = 0;
    const loop = new DeliveryLoop(queue, {
      concurrency: 1,
      pollMs: 10,
      logger: new MemoryLogger(),
      deliver: () => {
        calls++;
        return Promise.resolve([{
          index: 0,
          status: "deferred",
          reply: { code: 421, enhancedStatus: "4.4.2", text: "Try later" },
        }]);
      },
      onDone: (final) => done.push(final.queueId),
    });
    loop.start();
    await waitFor(() => calls === 1 && loop.inFlight === 0);
    await delay(50); // polls again: not due yet
    await loop.stop();
    assert.equal(calls, 1);
    assert.deepEqual(done, []);
    assert.equal((await queue.get(id))?.recipients[0]?.status, "deferred");
  });
});

Deno.test("a loop with concurrency below 1 is refused", async () => {
  await withQueue((queue) => {
    assert.throws(
      () =>
        new DeliveryLoop(queue, {
          concurrency: 0,
          logger: new MemoryLogger(),
          deliver: () => Promise.resolve([]),
        }),
      RangeError,
    );
    return Promise.resolve();
  });
});
