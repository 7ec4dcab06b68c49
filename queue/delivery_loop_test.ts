import assert from "node:assert/strict";
import { MemoryLogger } from "../log/logger.ts";
import { DeliveryLoop, type DeliveryLoopOptions } from "./delivery_loop.ts";
import { KvQueue, type KvQueueOptions } from "./kv_queue.ts";
import { CHUNK_SIZE } from "./kv_keys.ts";
import type { IncomingMessage } from "./queue.ts";
import type { ClaimedMessage, QueuedMessage, RecipientOutcome } from "./types.ts";

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

/** Receives a message to `rcpts` remote recipients and writes `text`, uncommitted. */
async function receiveWritten(
  queue: KvQueue,
  text: string,
  rcpts: number,
  now: number,
): Promise<IncomingMessage> {
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
    now,
  });
  await message.write(new TextEncoder().encode(text));
  return message;
}

async function enqueue(
  queue: KvQueue,
  text = "Subject: hi\r\n\r\nHello\r\n",
  rcpts = 1,
): Promise<string> {
  const message = await receiveWritten(queue, text, rcpts, Date.now());
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

// ---------------------------------------------------------------------------
// Hand-offs: claims taken at commit

/** Receives a message and commits it with a claim, as the SMTP server does for a hand-off. */
async function commitClaimed(
  queue: KvQueue,
  text = "Subject: hi\r\n\r\nHello\r\n",
  now = Date.now(),
): Promise<ClaimedMessage> {
  const message = await receiveWritten(queue, text, 1, now);
  return await message.commitAndClaim(now);
}

async function listAll(queue: KvQueue): Promise<QueuedMessage[]> {
  const out: QueuedMessage[] = [];
  for await (const m of queue.list()) out.push(m);
  return out;
}

/** A promise to block a deliverer on, and the function that lets it go. */
function gate(): { wait: Promise<void>; open: () => void } {
  let open = (): void => {};
  const wait = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { wait, open };
}

/**
 * A loop with one slot and no poll by the clock (unless `options` say
 * otherwise) whose deliverer notes each claim, then waits at a gate.
 */
function gatedLoop(queue: KvQueue, options: Partial<DeliveryLoopOptions> = {}) {
  const blocked = gate();
  const delivered: string[] = [];
  const done: string[] = [];
  const loop = new DeliveryLoop(queue, {
    concurrency: 1,
    pollMs: 60_000,
    logger: new MemoryLogger(),
    deliver: async (claim) => {
      delivered.push(claim.message.queueId);
      await blocked.wait;
      return sendAll(claim);
    },
    onDone: (final) => done.push(final.queueId),
    ...options,
  });
  return { loop, blocked, delivered, done };
}

/** Counts the calls of `queue.openContent` (reads of stored content). */
function spyOpenContent(queue: KvQueue): { readonly calls: string[] } {
  const calls: string[] = [];
  const original = queue.openContent.bind(queue);
  queue.openContent = (queueId: string) => {
    calls.push(queueId);
    return original(queueId);
  };
  return { calls };
}

Deno.test("50 hand-offs are delivered from memory with at most `concurrency` at once", async () => {
  await withQueue(async (queue) => {
    const opened = spyOpenContent(queue);
    let inFlight = 0;
    let most = 0;
    const seen = new Map<string, string>();
    const done: string[] = [];
    const loop = new DeliveryLoop(queue, {
      concurrency: 3,
      pollMs: 20,
      logger: new MemoryLogger(),
      deliver: async (claim, content) => {
        inFlight++;
        most = Math.max(most, inFlight);
        assert.ok(claim.content !== undefined, "a hand-off carries its content");
        seen.set(claim.message.queueId, await new Response(content()).text());
        await delay(2);
        inFlight--;
        return sendAll(claim);
      },
      onDone: (final) => done.push(final.queueId),
    });
    loop.start();
    const texts = Array.from({ length: 50 }, (_, i) => `Subject: ${i}\r\n\r\nHello ${i}\r\n`);
    const claims = await Promise.all(texts.map((text) => commitClaimed(queue, text)));
    for (const claim of claims) {
      assert.ok(loop.acceptsHandOff(claim.message.size));
      loop.handOff(claim);
    }
    // Three start at once; the others wait in memory.
    assert.equal(loop.inFlight, 3);
    assert.equal(loop.waiting, 47);
    await waitFor(() => done.length === 50);
    await loop.stop();
    assert.equal(most, 3);
    assert.equal(loop.waiting, 0);
    assert.deepEqual([...done].sort(), claims.map((c) => c.message.queueId).sort());
    claims.forEach((claim, i) => assert.equal(seen.get(claim.message.queueId), texts[i]));
    assert.deepEqual(opened.calls, [], "no content was read from the store");
    assert.equal(await queue.count(), 0);
  });
});

Deno.test("a hand-off larger than one chunk is delivered from the store", async () => {
  await withQueue(async (queue) => {
    const opened = spyOpenContent(queue);
    const text = "x".repeat(CHUNK_SIZE + 100);
    let seen = "";
    const loop = new DeliveryLoop(queue, {
      concurrency: 1,
      pollMs: 60_000,
      logger: new MemoryLogger(),
      deliver: async (claim, content) => {
        seen = await new Response(content()).text();
        return sendAll(claim);
      },
    });
    loop.start();
    const claim = await commitClaimed(queue, text);
    assert.equal(claim.content, undefined);
    loop.handOff(claim);
    await loop.stop();
    assert.equal(seen, text);
    assert.deepEqual(opened.calls, [claim.message.queueId]);
    assert.equal(await queue.count(), 0);
  });
});

Deno.test("acceptsHandOff() says no before start(), after stop(), and when the waiting list is full", async () => {
  await withQueue(async (queue) => {
    const { loop, blocked } = gatedLoop(queue, { handOffLimit: 2 });
    assert.equal(loop.acceptsHandOff(100), false, "not started");
    loop.start();
    assert.equal(loop.acceptsHandOff(100), true);
    loop.handOff(await commitClaimed(queue)); // takes the only slot
    assert.equal(loop.inFlight, 1);
    assert.equal(loop.waiting, 0);
    loop.handOff(await commitClaimed(queue));
    assert.equal(loop.waiting, 1);
    assert.equal(loop.acceptsHandOff(100), true);
    loop.handOff(await commitClaimed(queue));
    assert.equal(loop.waiting, 2);
    assert.equal(loop.acceptsHandOff(100), false, "handOffLimit reached");
    assert.equal(loop.acceptsHandOff(CHUNK_SIZE + 1), false, "whatever the size");
    blocked.open();
    await waitFor(() => loop.waiting === 0 && loop.inFlight === 0);
    assert.equal(loop.acceptsHandOff(100), true, "room again");
    await loop.stop();
    assert.equal(loop.acceptsHandOff(100), false, "stopped");
    assert.equal(await queue.count(), 0);
  });
});

Deno.test("acceptsHandOff() counts the octets waiting in memory against handOffBytes", async () => {
  await withQueue(async (queue) => {
    const { loop, blocked } = gatedLoop(queue, { handOffBytes: 100 });
    loop.start();
    loop.handOff(await commitClaimed(queue, "a".repeat(90))); // in flight: not counted
    assert.equal(loop.acceptsHandOff(90), true);
    loop.handOff(await commitClaimed(queue, "b".repeat(60))); // waiting: 60 octets
    assert.equal(loop.waiting, 1);
    assert.equal(loop.acceptsHandOff(40), true);
    assert.equal(loop.acceptsHandOff(41), false);
    // Content that stays in the store takes no memory.
    assert.equal(loop.acceptsHandOff(CHUNK_SIZE + 1), true);
    blocked.open();
    await waitFor(() => loop.waiting === 0 && loop.inFlight === 0);
    assert.equal(loop.acceptsHandOff(100), true, "the octets were given back");
    await loop.stop();
    assert.equal(await queue.count(), 0);
  });
});

Deno.test("stop() gives back the waiting hand-offs and records the one in flight", async () => {
  await withQueue(async (queue) => {
    const { loop, blocked, delivered, done } = gatedLoop(queue);
    loop.start();
    const claims: ClaimedMessage[] = [];
    for (let i = 0; i < 4; i++) {
      const claim = await commitClaimed(queue, `Subject: ${i}\r\n\r\n${i}\r\n`);
      claims.push(claim);
      loop.handOff(claim);
    }
    const [first, ...rest] = claims;
    assert.ok(first);
    assert.equal(loop.inFlight, 1);
    assert.equal(loop.waiting, 3);
    const stopping = loop.stop();
    blocked.open();
    await stopping;
    assert.deepEqual(delivered, [first.message.queueId], "only the one in flight was attempted");
    assert.deepEqual(done, [first.message.queueId]);
    assert.equal(loop.inFlight, 0);
    assert.equal(loop.waiting, 0);
    assert.equal(await queue.get(first.message.queueId), null, "its attempt was recorded");
    assert.equal(await queue.count(), 3);
    // Given back: claimable at once by anyone, not as recovered, never attempted.
    const again = await queue.claimDue({ now: Date.now(), limit: 10 });
    assert.deepEqual(
      again.map((c) => c.message.queueId).sort(),
      rest.map((c) => c.message.queueId).sort(),
    );
    for (const claim of again) {
      assert.equal(claim.recovered, false);
      assert.equal(claim.message.recipients[0]?.attempts, 0);
    }
  });
});

Deno.test("a hand-off after stop() (or before start()) is given back to the store", async () => {
  await withQueue(async (queue) => {
    let calls = 0;
    const loop = new DeliveryLoop(queue, {
      concurrency: 2,
      pollMs: 60_000,
      logger: new MemoryLogger(),
      deliver: (claim) => {
        calls++;
        return Promise.resolve(sendAll(claim));
      },
    });
    const early = await commitClaimed(queue);
    loop.handOff(early); // never started
    loop.start();
    await loop.stop();
    assert.equal(loop.acceptsHandOff(10), false);
    const late = await commitClaimed(queue);
    loop.handOff(late);
    assert.equal(loop.waiting, 0);
    assert.equal(loop.inFlight, 0);
    // The give-back runs in the background: poll the store until both are claimable.
    const found = new Map<string, ClaimedMessage>();
    const deadline = Date.now() + 2_000;
    while (found.size < 2 && Date.now() < deadline) {
      for (const claim of await queue.claimDue({ now: Date.now(), limit: 10 })) {
        found.set(claim.message.queueId, claim);
      }
      if (found.size < 2) await delay(5);
    }
    assert.deepEqual(
      [...found.keys()].sort(),
      [early.message.queueId, late.message.queueId].sort(),
    );
    assert.ok([...found.values()].every((c) => !c.recovered));
    assert.equal(calls, 0, "nothing was delivered");
    await loop.stop(); // nothing left to wait for
  });
});

Deno.test("store messages are not starved by a steady stream of hand-offs", async () => {
  await withQueue(async (queue) => {
    let storeId = "";
    let storeDeliveredAt = -1;
    let waitingAtStore = -1;
    let handOffsDelivered = 0;
    const loop: DeliveryLoop = new DeliveryLoop(queue, {
      concurrency: 2,
      pollMs: 20,
      logger: new MemoryLogger(),
      deliver: async (claim) => {
        if (claim.message.queueId === storeId) {
          storeDeliveredAt = Date.now();
          waitingAtStore = loop.waiting;
        } else {
          handOffsDelivered++;
        }
        await delay(3);
        return sendAll(claim);
      },
    });
    loop.start();
    const handOffBatch = async (n: number): Promise<void> => {
      const claims = await Promise.all(Array.from({ length: n }, () => commitClaimed(queue)));
      for (const claim of claims) loop.handOff(claim);
    };
    await handOffBatch(30);
    assert.ok(loop.waiting > 0);
    // Committed plainly (another process, a retry): only a poll finds it.
    storeId = await enqueue(queue);
    const start = Date.now();
    let handedOff = 30;
    while (storeDeliveredAt < 0 && Date.now() - start < 3_000) {
      if (loop.waiting < 20) {
        await handOffBatch(10);
        handedOff += 10;
      } else {
        await delay(2);
      }
    }
    const feedingStopped = Date.now();
    await loop.stop();
    assert.ok(storeDeliveredAt >= 0, "the store message was delivered while hand-offs kept coming");
    assert.ok(storeDeliveredAt <= feedingStopped);
    assert.ok(waitingAtStore > 0, "hand-offs were still waiting when the store got its slot");
    assert.ok(handOffsDelivered > 0);
    assert.ok(storeDeliveredAt - start < 1_000, "found within a few polls");
    // Whatever was still waiting at stop() was given back, nothing is lost.
    assert.equal(await queue.count(), handedOff - handOffsDelivered);
  });
});

Deno.test("a waiting hand-off whose lease is half gone is renewed before its delivery", async () => {
  await withQueue(async (queue) => {
    let skew = 0; // the loop's clock runs ahead of the claims' clock
    const blocked = gate();
    const delivered: string[] = [];
    let stolen = -1;
    const logger = new MemoryLogger();
    const loop = new DeliveryLoop(queue, {
      concurrency: 1,
      pollMs: 60_000,
      logger,
      now: () => Date.now() + skew,
      deliver: async (claim) => {
        delivered.push(claim.message.queueId);
        if (delivered.length === 1) {
          await blocked.wait;
        } else {
          // Past the first lease's end, and the message is still ours.
          stolen = (await queue.claimDue({ now: Date.now() + 70_000, limit: 10 })).length;
        }
        return sendAll(claim);
      },
    });
    loop.start();
    const first = await commitClaimed(queue);
    const second = await commitClaimed(queue);
    loop.handOff(first);
    loop.handOff(second);
    assert.equal(loop.waiting, 1);
    skew = 45_000; // 15 s of the 60 s lease left: less than half
    blocked.open();
    await waitFor(() => delivered.length === 2 && loop.inFlight === 0);
    await loop.stop();
    assert.deepEqual(delivered, [first.message.queueId, second.message.queueId]);
    assert.equal(stolen, 0, "the lease was renewed before the delivery");
    assert.equal(await queue.count(), 0);
    assert.ok(!logger.records.some((r) => r.event === "queue.error"));
  });
});

Deno.test("a waiting hand-off that is no longer ours is skipped", async () => {
  await withQueue(async (queue) => {
    let skew = 0;
    const logger = new MemoryLogger();
    const { loop, blocked, delivered } = gatedLoop(queue, {
      logger,
      now: () => Date.now() + skew,
    });
    loop.start();
    const first = await commitClaimed(queue);
    const second = await commitClaimed(queue);
    loop.handOff(first);
    loop.handOff(second);
    assert.equal(await queue.delete(second.message.queueId), true); // `tern queue delete`
    skew = 45_000;
    blocked.open();
    await waitFor(() => loop.waiting === 0 && loop.inFlight === 0);
    await loop.stop();
    assert.deepEqual(delivered, [first.message.queueId]);
    assert.ok(
      logger.records.some((r) =>
        r.event === "queue.error" && r.queueId === second.message.queueId &&
        r.fields.reason === "held, deleted or taken while waiting"
      ),
    );
    assert.equal(await queue.count(), 0);
  });
});

Deno.test("a waiting hand-off is left alone by the poll; taken by another process, it is skipped", async () => {
  await withQueue(async (queue, path) => {
    let skew = 0;
    const gates = new Map<string, { wait: Promise<void>; open: () => void }>();
    const calls: { id: string; recovered: boolean }[] = [];
    let running = 0;
    let most = 0;
    const logger = new MemoryLogger();
    const loop = new DeliveryLoop(queue, {
      concurrency: 2,
      pollMs: 20,
      logger,
      now: () => Date.now() + skew,
      deliver: async (claim) => {
        running++;
        most = Math.max(most, running);
        calls.push({ id: claim.message.queueId, recovered: claim.recovered });
        await gates.get(claim.message.queueId)?.wait;
        running--;
        return sendAll(claim);
      },
    });
    const [a, b, x, y] = [
      await commitClaimed(queue),
      await commitClaimed(queue),
      await commitClaimed(queue),
      await commitClaimed(queue),
    ];
    assert.ok(a && b && x && y);
    for (const c of [a, b, x, y]) gates.set(c.message.queueId, gate());
    const other = await KvQueue.open(path, OPTIONS);
    let stopping: Promise<void> | null = null;
    try {
      loop.start();
      loop.handOff(a);
      loop.handOff(b);
      loop.handOff(x); // waits for a slot
      loop.handOff(y); // waits too
      assert.equal(loop.waiting, 2);
      // Both wait longer than their lease; the loop keeps polling the store.
      skew = 61_000;
      await delay(100);
      assert.equal(calls.length, 2, "the poll did not take the waiting claims");
      // Another process on the same store takes x, whose lease has lapsed.
      const [taken] = await other.claimDue({
        now: Date.now() + skew,
        limit: 1,
        exclude: new Set([a, b, y].map((c) => c.message.queueId)),
      });
      assert.equal(taken?.message.queueId, x.message.queueId);
      assert.equal(taken?.recovered, true);
      // Slots free up: x is no longer ours and is skipped; y's lease is renewed and it goes.
      gates.get(a.message.queueId)?.open();
      gates.get(b.message.queueId)?.open();
      gates.get(y.message.queueId)?.open();
      await waitFor(() => calls.some((c) => c.id === y.message.queueId));
      await waitFor(() =>
        logger.records.some((r) =>
          r.queueId === x.message.queueId &&
          r.fields.reason === "held, deleted or taken while waiting"
        )
      );
      assert.equal(calls.filter((c) => c.id === x.message.queueId).length, 0, "x is not ours");
      stopping = loop.stop();
      await stopping;
      assert.ok(most <= 2);
      // x stays with the process that took it; the others are done.
      assert.deepEqual((await listAll(queue)).map((m) => m.queueId), [x.message.queueId]);
    } finally {
      for (const g of gates.values()) g.open();
      await (stopping ?? loop.stop());
      await other.close();
    }
  });
});

Deno.test("with every slot busy and hand-offs waiting, the loop sleeps until the next poll instead of spinning", async () => {
  await withQueue(async (queue) => {
    let clockReads = 0;
    const { loop, blocked } = gatedLoop(queue, {
      pollMs: 50,
      now: () => {
        clockReads++;
        return Date.now();
      },
    });
    try {
      loop.start();
      loop.handOff(await commitClaimed(queue)); // takes the only slot
      loop.handOff(await commitClaimed(queue)); // waits
      assert.equal(loop.waiting, 1);
      const before = clockReads;
      await delay(300); // six poll periods with no free slot
      const reads = clockReads - before;
      // A few reads per poll period at most; a loop waking every millisecond reads hundreds.
      assert.ok(reads <= 30, `the loop looked at the clock ${reads} times in 300 ms`);
    } finally {
      blocked.open();
      await loop.stop();
    }
    assert.equal(await queue.count(), 1, "the waiting one was given back");
  });
});

Deno.test("a waiting hand-off held meanwhile is not delivered, stays held and goes once released", async () => {
  await withQueue(async (queue) => {
    let skew = 0;
    const { loop, blocked, delivered } = gatedLoop(queue, {
      pollMs: 20,
      now: () => Date.now() + skew,
    });
    loop.start();
    try {
      const first = await commitClaimed(queue);
      const second = await commitClaimed(queue);
      assert.ok(first && second);
      const id = second.message.queueId;
      loop.handOff(first);
      loop.handOff(second); // waits behind first
      assert.equal(await queue.hold(id), true); // `tern queue hold`
      skew = 2_000; // it waited more than a second
      blocked.open();
      await waitFor(() => loop.waiting === 0 && loop.inFlight === 0);
      await delay(60); // a few polls: a held message is never claimed
      assert.deepEqual(delivered, [first.message.queueId]);
      assert.equal((await queue.get(id))?.held, true);
      assert.equal(await queue.release(id), true);
      await waitFor(() => delivered.includes(id));
      for (let i = 0; i < 200 && (await queue.count()) !== 0; i++) await delay(10);
      assert.equal(await queue.count(), 0);
    } finally {
      blocked.open();
      await loop.stop();
    }
  });
});

/** Counts the calls of `queue.claimDue` (reads of the store's due index). */
function spyClaimDue(queue: KvQueue): { count: number } {
  const spy = { count: 0 };
  const original = queue.claimDue.bind(queue);
  queue.claimDue = (options) => {
    spy.count++;
    return original(options);
  };
  return spy;
}

Deno.test("finished hand-offs do not read the store; a wake() while every slot is busy is kept for the next free one", async () => {
  await withQueue(async (queue) => {
    const claimDue = spyClaimDue(queue);
    const done: string[] = [];
    let blocked = gate();
    const loop = new DeliveryLoop(queue, {
      concurrency: 2,
      pollMs: 60_000, // no poll by the clock in this test
      logger: new MemoryLogger(),
      deliver: async (claim) => {
        if (new TextDecoder().decode(claim.content).includes("block")) await blocked.wait;
        return sendAll(claim);
      },
      onDone: (final) => done.push(final.queueId),
    });
    loop.start();
    await waitFor(() => claimDue.count === 1); // the first look, at start
    await delay(20);
    const claims = await Promise.all(
      Array.from({ length: 20 }, (_, i) => commitClaimed(queue, `Subject: ${i}\r\n\r\nHi\r\n`)),
    );
    for (const claim of claims) loop.handOff(claim);
    await waitFor(() => done.length === 20);
    await delay(20);
    assert.equal(claimDue.count, 1, "twenty deliveries, no read of the store");

    // Both slots busy; mail committed without a hand-off, and wake().
    blocked = gate();
    for (let i = 0; i < 2; i++) {
      loop.handOff(await commitClaimed(queue, "Subject: block\r\n\r\nHi\r\n"));
    }
    assert.equal(loop.inFlight, 2);
    const plain = await enqueue(queue);
    loop.wake();
    await delay(30);
    assert.ok(!done.includes(plain), "no free slot yet");
    blocked.open();
    // A slot frees long before the next poll: the store is read, the message goes.
    await waitFor(() => done.includes(plain), 2_000);
    await loop.stop();
    assert.equal(await queue.count(), 0);
  });
});

Deno.test("a delivery that leaves its slot lets the next message through while it waits", async () => {
  await withQueue(async (queue) => {
    const slow = await enqueue(queue, "Subject: slow\r\n\r\nx\r\n");
    const done: string[] = [];
    let release = (): void => {};
    const waited = new Promise<void>((resolve) => release = resolve);
    const loop = new DeliveryLoop(queue, {
      concurrency: 1,
      pollMs: 10,
      logger: new MemoryLogger(),
      deliver: async (claim, _content, context) => {
        if (claim.message.queueId === slow) {
          assert.equal(context.leaveSlot(), true);
          assert.equal(context.leaveSlot(), true, "a second call changes nothing");
          await waited; // a next hop that does not answer
        }
        return sendAll(claim);
      },
      onDone: (final) => done.push(final.queueId),
    });
    loop.start();
    await waitFor(() => loop.offSlot === 1);
    const quick = await enqueue(queue, "Subject: quick\r\n\r\nx\r\n");
    loop.wake();
    await waitFor(() => done.includes(quick));
    assert.deepEqual(done, [quick], "the slow one still waits, holding its claim");
    assert.equal(loop.inFlight, 1);
    release();
    await waitFor(() => done.includes(slow));
    assert.equal(loop.offSlot, 0);
    await loop.stop();
    assert.equal(await queue.count(), 0);
  });
});

Deno.test("leaveSlot() says no past offSlotLimit, and the delivery keeps its slot", async () => {
  await withQueue(async (queue) => {
    await Promise.all([enqueue(queue), enqueue(queue), enqueue(queue)]);
    const answers: boolean[] = [];
    let release = (): void => {};
    const waited = new Promise<void>((resolve) => release = resolve);
    let busy = 0;
    let most = 0;
    const loop = new DeliveryLoop(queue, {
      concurrency: 1,
      offSlotLimit: 1,
      pollMs: 10,
      logger: new MemoryLogger(),
      deliver: async (claim, _content, context) => {
        const left = context.leaveSlot();
        answers.push(left);
        if (!left) busy++;
        most = Math.max(most, busy);
        await waited;
        if (!left) busy--;
        return sendAll(claim);
      },
    });
    loop.start();
    // One out of its slot, one in the only slot; the third waits in the store.
    await waitFor(() => answers.length === 2);
    await delay(50);
    assert.deepEqual(answers, [true, false]);
    assert.equal(loop.inFlight, 2);
    release();
    await waitFor(() => answers.length === 3);
    await loop.stop();
    assert.equal(most, 1);
    assert.equal(await queue.count(), 0);
  });
});

Deno.test("stop() aborts the deliveries' signal; one that tried nothing goes back to the store unattempted", async () => {
  await withQueue(async (queue) => {
    const id = await enqueue(queue);
    let aborted = false;
    const loop = new DeliveryLoop(queue, {
      concurrency: 1,
      pollMs: 10,
      logger: new MemoryLogger(),
      deliver: async (_claim, _content, context) => {
        context.leaveSlot();
        await new Promise<void>((resolve) =>
          context.signal.addEventListener("abort", () => resolve(), { once: true })
        );
        aborted = true;
        return []; // waited for a greeting that never came: nothing attempted
      },
    });
    loop.start();
    await waitFor(() => loop.offSlot === 1);
    await loop.stop();
    assert.equal(aborted, true);
    const message = await queue.get(id);
    assert.equal(message?.recipients[0]?.attempts, 0);
    assert.equal(message?.recipients[0]?.status, "queued");
    // Due as before: a restarted loop takes it at once.
    const [claim] = await queue.claimDue({ now: Date.now(), limit: 1 });
    assert.equal(claim?.message.queueId, id);
  });
});
