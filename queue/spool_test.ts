import assert from "node:assert/strict";
import { MemoryLogger } from "../log/logger.ts";
import { KvQueue, type KvQueueOptions } from "./kv_queue.ts";
import { CHUNK_SIZE } from "./kv_keys.ts";
import { Spool } from "./spool.ts";

const T0 = Date.UTC(2025, 0, 6, 9, 0, 0);
const OPTIONS: KvQueueOptions = { retry: [60_000], maxAge: 86_400_000 };
const SENT = { code: 250, enhancedStatus: "2.0.0", text: "Ok" };

async function withQueue(
  fn: (queue: KvQueue, path: string, logger: MemoryLogger) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "tern-spool-" });
  const path = `${dir}/queue.sqlite3`;
  const logger = new MemoryLogger();
  const queue = await KvQueue.open(path, { ...OPTIONS, logger });
  try {
    await fn(queue, path, logger);
  } finally {
    await queue.close();
    await Deno.remove(dir, { recursive: true });
  }
}

function bytes(size: number, seed = 7): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    out[i] = x >> 16;
  }
  return out;
}

function receive(queue: KvQueue, now = T0) {
  return queue.receive({
    envelope: {
      reversePath: "a@example.test",
      forwardPaths: ["b@example.net"],
      body: "8BITMIME",
      smtputf8: false,
    },
    recipients: [{ address: "b@example.net", originalRecipient: "b@example.net", mailbox: null }],
    clientAddress: "192.0.2.1",
    now,
  });
}

/** Every key of the store, as JSON, for "nothing else is left". */
async function keys(path: string): Promise<string[]> {
  const kv = await Deno.openKv(path);
  try {
    const out: string[] = [];
    for await (const entry of kv.list({ prefix: [] })) out.push(JSON.stringify(entry.key));
    return out;
  } finally {
    kv.close();
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("a message bigger than one chunk is one spool file, not chunks in KV", async () => {
  await withQueue(async (queue, path) => {
    const content = bytes(3 * CHUNK_SIZE + 1);
    const message = await receive(queue);
    // Written in uneven pieces, as a socket delivers them.
    for (let o = 0; o < content.length; o += 16_411) {
      await message.write(content.subarray(o, Math.min(content.length, o + 16_411)));
    }
    await message.commit();
    const file = `${path}-spool/${message.queueId}`;
    assert.equal((await Deno.stat(file)).size, content.length);
    assert.equal((await keys(path)).filter((k) => k.includes('"chunk"')).length, 0);
    const back = new Uint8Array(
      await new Response(queue.openContent(message.queueId)).arrayBuffer(),
    );
    assert.deepEqual(back, content);
    // Delivered: the keys go, then the file.
    const [claim] = await queue.claimDue({ now: T0, limit: 1 });
    assert.ok(claim);
    await queue.recordAttempt(claim, [{ index: 0, status: "sent", reply: SENT }], T0);
    assert.equal(await exists(file), false);
    assert.deepEqual(await keys(path), []);
  });
});

Deno.test("a message of exactly one chunk stays in KV and writes no spool file", async () => {
  await withQueue(async (queue, path) => {
    const message = await receive(queue);
    await message.write(bytes(CHUNK_SIZE));
    await message.commit();
    assert.equal(await exists(`${path}-spool/${message.queueId}`), false);
    assert.equal((await keys(path)).filter((k) => k.includes('"chunk"')).length, 1);
  });
});

Deno.test("an aborted spooled upload leaves neither file nor keys", async () => {
  await withQueue(async (queue, path) => {
    const message = await receive(queue);
    await message.write(bytes(CHUNK_SIZE + 5));
    const file = `${path}-spool/${message.queueId}`;
    assert.ok(await exists(file), "the file exists while the upload runs");
    await message.abort();
    assert.equal(await exists(file), false);
    assert.deepEqual(await keys(path), []);
  });
});

Deno.test("delete() of a spooled message removes its file", async () => {
  await withQueue(async (queue, path) => {
    const message = await receive(queue);
    await message.write(bytes(2 * CHUNK_SIZE));
    await message.commit();
    assert.ok(await queue.delete(message.queueId));
    assert.equal(await exists(`${path}-spool/${message.queueId}`), false);
    assert.deepEqual(await keys(path), []);
  });
});

Deno.test("recover() sweeps a spool file no message names, and keeps the others", async () => {
  await withQueue(async (queue, path, logger) => {
    const kept = await receive(queue);
    await kept.write(bytes(CHUNK_SIZE + 1));
    await kept.commit();
    const running = await receive(queue);
    await running.write(bytes(CHUNK_SIZE + 1)); // an upload in progress
    // Left by a crash between a removal's commit and its unlink.
    const orphan = `${path}-spool/0000000000ORPH`;
    await Deno.writeFile(orphan, bytes(10));
    const result = await queue.recover(T0);
    assert.equal(result.spoolOrphansRemoved, 1);
    assert.equal(await exists(orphan), false);
    assert.ok(await exists(`${path}-spool/${kept.queueId}`));
    assert.ok(await exists(`${path}-spool/${running.queueId}`));
    assert.ok(
      logger.records.some((r) =>
        r.event === "queue.recovered" && r.fields.spool_orphans_removed === 1
      ),
    );
    await running.commit();
    assert.equal(await queue.count(), 2);
  });
});

Deno.test("a spool file gone or cut short fails the read with a clear error", async () => {
  await withQueue(async (queue, path) => {
    const message = await receive(queue);
    await message.write(bytes(CHUNK_SIZE * 2));
    await message.commit();
    const file = `${path}-spool/${message.queueId}`;
    await Deno.truncate(file, CHUNK_SIZE);
    await assert.rejects(
      new Response(queue.openContent(message.queueId)).arrayBuffer(),
      /spool file has 60000 of 120000 octets/,
    );
    await Deno.remove(file);
    await assert.rejects(
      new Response(queue.openContent(message.queueId)).arrayBuffer(),
      /its spool file is gone/,
    );
  });
});

Deno.test("a commit that fails after spooling leaves no file behind", async () => {
  await withQueue(async (queue, path) => {
    const message = await receive(queue);
    await message.write(bytes(CHUNK_SIZE + 1));
    // Another process's recover() took the upload for dead meanwhile.
    assert.equal((await queue.recover(T0 + 2 * 60 * 60_000)).incompleteRemoved, 1);
    await assert.rejects(message.commit(), /upload was removed/);
    assert.equal(await exists(`${path}-spool/${message.queueId}`), false);
    assert.deepEqual(await keys(path), []);
  });
});

Deno.test("Spool refuses a file name that is not a queue id", () => {
  const spool = new Spool("/tmp/none/queue.sqlite3");
  assert.throws(() => spool.path("../etc/passwd"), /Not a queue id/);
  assert.equal(spool.path("01JDQ4ZK8M3T7Q"), "/tmp/none/queue.sqlite3-spool/01JDQ4ZK8M3T7Q");
});
