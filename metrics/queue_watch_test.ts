// The queue gauges count the queue by reading all of it: over a deep queue
// that takes long, and a scrape must not start such a count every few
// seconds.
import assert from "node:assert/strict";
import type { QueuedMessage } from "../queue/types.ts";
import { registry, watchQueue } from "./tern.ts";

const MESSAGE: QueuedMessage = {
  queueId: "1M934MSJ9Z9NKT",
  envelope: {
    reversePath: "a@example.test",
    forwardPaths: ["b@example.net"],
    body: "7BIT",
    smtputf8: false,
  },
  recipients: [{
    address: "b@example.net",
    originalRecipient: "b@example.net",
    mailbox: null,
    status: "deferred",
    attempts: 1,
    lastAttempt: 0,
    lastReply: { code: 0, enhancedStatus: "4.4.1", text: "Connection refused" },
  }],
  size: 100,
  arrival: 0,
  nextAttempt: 3_600_000,
  held: false,
  clientAddress: "127.0.0.1",
};

Deno.test("a count of the queue that took long is reused for twenty times as long, however often it is scraped", async () => {
  let now = 1_000_000;
  let scans = 0;
  // Each count takes 2 s of the fake clock, as a deep queue's would.
  const queue = {
    async *list(): AsyncIterable<QueuedMessage> {
      scans++;
      now += 2_000;
      yield await Promise.resolve(MESSAGE);
    },
  };
  const stop = watchQueue(queue, () => now);
  try {
    await registry.render();
    assert.equal(scans, 1);
    for (let i = 0; i < 7; i++) {
      now += 5_000; // scraped every 5 s: 37 s after the count began
      await registry.render();
    }
    assert.equal(scans, 1, "counted again within 40 s of a count that took 2 s");
    now += 5_000;
    const text = await registry.render();
    assert.equal(scans, 2);
    assert.match(text, /tern_queue_messages\{state="deferred"\} 1\b/);
  } finally {
    stop();
  }
});
