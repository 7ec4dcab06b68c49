// KvQueue.list() walks the metas and the recipients as two listings side by
// side: every message must come out as get() reads it, whatever lies between
// them in the recipient listing.
import assert from "node:assert/strict";
import { KvQueue, type KvQueueOptions } from "./kv_queue.ts";
import type { QueueRecipient } from "./types.ts";

const DAY = 86_400_000;
const OPTIONS: KvQueueOptions = { retry: [3_600_000], maxAge: 5 * DAY };

function recipients(n: number, tag: number): QueueRecipient[] {
  return Array.from({ length: n }, (_, i) => {
    // Long addresses, so that 1,500 of them outgrow the meta: path pages.
    const address = `user${i}.${"x".repeat(40)}@m${tag}.example.net`;
    return { address, originalRecipient: address, mailbox: null };
  });
}

async function enqueue(queue: KvQueue, rcpts: QueueRecipient[], now: number): Promise<string> {
  const message = await queue.receive({
    envelope: {
      reversePath: "sender@example.test",
      forwardPaths: rcpts.map((r) => r.address),
      body: "7BIT",
      smtputf8: false,
    },
    recipients: rcpts,
    clientAddress: "127.0.0.1",
    now,
  });
  await message.write(new TextEncoder().encode("Subject: listed\r\n\r\nbody\r\n"));
  await message.commit();
  return message.queueId;
}

Deno.test("list() gives every message as get() reads it, in id order, past recipients no meta names", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tern-kv-list-" });
  const path = `${dir}/queue.sqlite3`;
  const queue = await KvQueue.open(path, OPTIONS);
  try {
    // More messages and recipients than one batch of either listing.
    const ids: string[] = [];
    const now = Date.now();
    for (let group = 0; group < 24; group++) {
      ids.push(
        ...await Promise.all(Array.from({ length: 50 }, (_, i) => {
          const n = group * 50 + i;
          const count = n === 600 ? 1500 : n % 7 === 0 ? 3 : 1;
          return enqueue(queue, recipients(count, n), now + n);
        })),
      );
    }
    ids.sort();
    assert.ok(await queue.hold(ids[700]!));
    // Recipients an upload stored before dying uncommitted, between two
    // messages' (ids[10] + "0" sorts after ids[10], before ids[11]), and a
    // message whose recipient is missing (read on its own, then passed over).
    const kv = await Deno.openKv(path);
    try {
      const orphan = `${ids[10]}0`;
      const stray = recipients(1, 0)[0]!;
      for (let n = 0; n < 3; n++) {
        await kv.set(["queue", "rcpt", orphan, n], {
          ...stray,
          status: "queued",
          attempts: 0,
          lastAttempt: null,
          lastReply: null,
        });
      }
      await kv.delete(["queue", "rcpt", ids[900]!, 0]);
    } finally {
      kv.close();
    }
    const listed = await Array.fromAsync(queue.list());
    const expected = ids.filter((id) => id !== ids[900]);
    assert.deepEqual(listed.map((m) => m.queueId), expected);
    assert.equal(await queue.get(ids[900]!), null);
    for (const m of listed) assert.deepEqual(m, await queue.get(m.queueId), m.queueId);
    const big = listed.find((m) => m.queueId === ids[600]);
    assert.equal(big?.recipients.length, 1500);
    assert.equal(big?.envelope.forwardPaths.length, 1500);
    assert.equal(listed.find((m) => m.queueId === ids[700])?.held, true);
  } finally {
    await queue.close();
    await Deno.remove(dir, { recursive: true });
  }
});
