import assert from "node:assert/strict";
import { MemoryLogger } from "../log/logger.ts";
import { KvQueue, type KvQueueOptions } from "./kv_queue.ts";
import { CHUNK_SIZE } from "./kv_keys.ts";
import { newQueueId } from "./queue_id.ts";
import type { IncomingMessage } from "./queue.ts";
import type { ClaimedMessage, QueueRecipient, RecipientOutcome } from "./types.ts";
import { queueSuite } from "./queue_suite.ts";

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;
const T0 = Date.UTC(2025, 0, 6, 9, 0, 0);
const OPTIONS: KvQueueOptions = { retry: [1 * MINUTE, 5 * MINUTE, 60 * MINUTE], maxAge: 5 * DAY };

interface Fixture {
  queue: KvQueue;
  path: string;
  logger: MemoryLogger;
}

/** Runs `fn` with a queue on a fresh KV file, then closes and deletes it. */
async function withQueue(
  fn: (f: Fixture) => Promise<void>,
  options: Partial<KvQueueOptions> = {},
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "tern-queue-" });
  const path = `${dir}/queue.sqlite3`;
  const logger = new MemoryLogger();
  const queue = await KvQueue.open(path, { ...OPTIONS, logger, ...options });
  try {
    await fn({ queue, path, logger });
  } finally {
    await queue.close();
    await Deno.remove(dir, { recursive: true });
  }
}

function recipients(n: number, domain = "example.net"): QueueRecipient[] {
  return Array.from({ length: n }, (_, i) => ({
    address: `user${i}@${domain}`,
    originalRecipient: `user${i}@${domain}`,
    mailbox: null,
  }));
}

function randomBytes(size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let offset = 0; offset < size; offset += 65_536) {
    crypto.getRandomValues(bytes.subarray(offset, Math.min(size, offset + 65_536)));
  }
  return bytes;
}

/** Receives one message and writes its content (in pieces of `piece` bytes), uncommitted. */
async function receiveWritten(
  queue: KvQueue,
  options: {
    content?: Uint8Array;
    rcpts?: QueueRecipient[];
    now?: number;
    piece?: number;
    keepContent?: number;
    queueId?: string;
  } = {},
): Promise<IncomingMessage> {
  const rcpts = options.rcpts ?? recipients(1);
  const message = await queue.receive({
    envelope: {
      reversePath: "alice@example.test",
      forwardPaths: rcpts.map((r) => r.originalRecipient),
      body: "8BITMIME",
      smtputf8: false,
    },
    recipients: rcpts,
    clientAddress: "192.0.2.7",
    now: options.now ?? T0,
    ...(options.keepContent === undefined ? {} : { keepContent: options.keepContent }),
    ...(options.queueId === undefined ? {} : { queueId: options.queueId }),
  });
  const content = options.content ?? new TextEncoder().encode("Subject: test\r\n\r\nHello\r\n");
  const piece = options.piece ?? Math.max(1, content.byteLength);
  for (let offset = 0; offset < content.byteLength; offset += piece) {
    await message.write(content.subarray(offset, offset + piece));
  }
  return message;
}

/** Queues one message and returns its id. */
async function enqueue(
  queue: KvQueue,
  options: { content?: Uint8Array; rcpts?: QueueRecipient[]; now?: number } = {},
): Promise<string> {
  const message = await receiveWritten(queue, options);
  await message.commit();
  return message.queueId;
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** Every key in the KV file, read through a second connection. */
async function allKeys(path: string): Promise<Deno.KvKey[]> {
  const kv = await Deno.openKv(path);
  try {
    const keys: Deno.KvKey[] = [];
    for await (const entry of kv.list({ prefix: [] })) keys.push(entry.key);
    return keys;
  } finally {
    kv.close();
  }
}

async function listIds(queue: KvQueue): Promise<string[]> {
  const ids: string[] = [];
  for await (const message of queue.list()) ids.push(message.queueId);
  return ids;
}

function outcome(
  index: number,
  status: RecipientOutcome["status"],
  code = status === "sent" ? 250 : status === "deferred" ? 451 : 550,
): RecipientOutcome {
  const enhancedStatus = status === "sent" ? "2.0.0" : status === "deferred" ? "4.4.1" : "5.1.1";
  return { index, status, reply: { code, enhancedStatus, text: `reply ${code}` } };
}

// The tests every Queue implementation passes; those below are about this
// store's keys, files, commits and limits.
queueSuite("KvQueue", async (options) => {
  const dir = await Deno.makeTempDir({ prefix: "tern-queue-suite-" });
  const queue = await KvQueue.open(`${dir}/queue.sqlite3`, options);
  return {
    queue,
    dispose: async () => {
      await queue.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
});

// ---------------------------------------------------------------------------
// Content

Deno.test("a message of 1 MiB and a few bytes comes back byte for byte", async () => {
  await withQueue(async ({ queue }) => {
    const content = randomBytes(1024 * 1024 + 7);
    const message = await queue.receive({
      envelope: {
        reversePath: "a@example.test",
        forwardPaths: ["b@example.net"],
        body: "BINARYMIME",
        smtputf8: false,
      },
      recipients: recipients(1),
      clientAddress: "192.0.2.7",
      now: T0,
    });
    // Odd-sized writes, as a network would deliver them.
    for (let offset = 0; offset < content.length; offset += 7_777) {
      await message.write(content.subarray(offset, offset + 7_777));
    }
    assert.equal(message.size, content.length);
    await message.commit();
    const stored = await queue.get(message.queueId);
    assert.equal(stored?.size, content.length);
    assert.deepEqual(await readAll(queue.openContent(message.queueId)), content);
  });
});

Deno.test("content comes back in pieces of at most 64 KiB, however big the message", async () => {
  await withQueue(async ({ queue }) => {
    const content = randomBytes(3 * CHUNK_SIZE + 1);
    const id = await enqueue(queue, { content });
    const sizes: number[] = [];
    for await (const chunk of queue.openContent(id)) sizes.push(chunk.length);
    assert.ok(sizes.every((n) => n <= 65_536), JSON.stringify(sizes));
    assert.equal(sizes.reduce((a, b) => a + b, 0), content.length);
  });
});

Deno.test("an empty message and a message of exactly one chunk round-trip", async () => {
  await withQueue(async ({ queue }) => {
    const empty = await enqueue(queue, { content: new Uint8Array(0) });
    const exact = randomBytes(CHUNK_SIZE);
    const one = await enqueue(queue, { content: exact });
    assert.equal((await readAll(queue.openContent(empty))).length, 0);
    assert.deepEqual(await readAll(queue.openContent(one)), exact);
  });
});

// ---------------------------------------------------------------------------
// All or nothing

Deno.test("abort() leaves nothing in the store", async () => {
  await withQueue(async ({ queue, path }) => {
    const message = await queue.receive({
      envelope: { reversePath: "", forwardPaths: ["b@example.net"], body: "7BIT", smtputf8: false },
      recipients: recipients(1),
      clientAddress: "192.0.2.7",
      now: T0,
    });
    await message.write(randomBytes(5 * CHUNK_SIZE + 10));
    assert.ok((await allKeys(path)).length > 0, "the upload is recorded before its spool file");
    await message.abort();
    await message.abort(); // a second time does nothing
    assert.deepEqual(await allKeys(path), []);
    await assert.rejects(message.write(new Uint8Array(1)), /already aborted/);
    await assert.rejects(message.commit(), /already aborted/);
  });
});

Deno.test("an uncommitted upload is invisible to list, get, count and claimDue", async () => {
  await withQueue(async ({ queue }) => {
    const message = await queue.receive({
      envelope: {
        reversePath: "a@example.test",
        forwardPaths: ["b@example.net"],
        body: "7BIT",
        smtputf8: false,
      },
      recipients: recipients(1),
      clientAddress: "192.0.2.7",
      now: T0,
    });
    await message.write(randomBytes(2 * CHUNK_SIZE + 5));
    assert.deepEqual(await listIds(queue), []);
    assert.equal(await queue.get(message.queueId), null);
    assert.equal(await queue.count(), 0);
    assert.deepEqual(await queue.claimDue({ now: T0 + DAY, limit: 10 }), []);
    await message.abort();
  });
});

Deno.test("recover() removes an old uncommitted upload but spares a recent one", async () => {
  await withQueue(async ({ queue, path, logger }) => {
    const kept = await enqueue(queue);
    const message = await queue.receive({
      envelope: {
        reversePath: "a@example.test",
        forwardPaths: ["b@example.net"],
        body: "7BIT",
        smtputf8: false,
      },
      recipients: recipients(1),
      clientAddress: "192.0.2.7",
      now: T0,
    });
    await message.write(randomBytes(2 * CHUNK_SIZE + 5));
    // Still being written (another process, say): too recent to touch.
    assert.deepEqual(await queue.recover(T0 + MINUTE), {
      incompleteRemoved: 0,
      leasesExpired: 0,
      spoolOrphansRemoved: 0,
    });
    assert.deepEqual(await queue.recover(T0 + 2 * 60 * MINUTE), {
      incompleteRemoved: 1,
      leasesExpired: 0,
      spoolOrphansRemoved: 0,
    });
    const keys = await allKeys(path);
    assert.ok(
      keys.every((key) => key.includes(kept)),
      `only ${kept} is left: ${JSON.stringify(keys)}`,
    );
    assert.ok(logger.records.some((r) => r.event === "queue.recovered"));
    // The upload cannot be committed any more: it would be half a message.
    await assert.rejects(message.commit(), /removed/);
    assert.deepEqual(await listIds(queue), [kept]);
  });
});

Deno.test("an upload cannot commit once recover() has removed it", async () => {
  await withQueue(async ({ queue, path }) => {
    const message = await queue.receive({
      envelope: {
        reversePath: "a@example.test",
        forwardPaths: ["b@example.net"],
        body: "7BIT",
        smtputf8: false,
      },
      recipients: recipients(1),
      clientAddress: "192.0.2.7",
      now: T0,
    });
    await message.write(randomBytes(CHUNK_SIZE + 1));
    await queue.recover(T0 + DAY);
    // Writes go to the (now unlinked) spool file; the commit's check fails.
    await message.write(randomBytes(CHUNK_SIZE));
    await message.commit().then(
      () => assert.fail("the commit should fail"),
      (error: Error) => assert.match(error.message, /removed/),
    );
    assert.deepEqual(await allKeys(path), []);
    assert.deepEqual([...Deno.readDirSync(`${path}-spool`)], []);
  });
});

Deno.test("a message killed with SIGKILL mid-stream is cleaned by recover() and a committed one stays intact", async () => {
  await withQueue(async ({ queue, path }) => {
    const content = randomBytes(2 * CHUNK_SIZE + 123);
    const kept = await enqueue(queue, { content });
    const dir = path.slice(0, path.lastIndexOf("/"));
    const script = `${dir}/upload.ts`;
    const kvQueueUrl = new URL("./kv_queue.ts", import.meta.url).href;
    await Deno.writeTextFile(
      script,
      `import { KvQueue } from ${JSON.stringify(kvQueueUrl)};
const queue = await KvQueue.open(Deno.args[0]!, { retry: [60_000], maxAge: 86_400_000 });
const message = await queue.receive({
  envelope: { reversePath: "a@example.test", forwardPaths: ["b@example.net"], body: "7BIT", smtputf8: false },
  recipients: [{ address: "b@example.net", originalRecipient: "b@example.net", mailbox: null }],
  clientAddress: "local",
  now: Date.now(),
});
const piece = new Uint8Array(50_000).fill(0x41);
for (let i = 0; ; i++) {
  await message.write(piece);
  if (i === 6) console.log("streaming " + message.queueId);
  await new Promise((resolve) => setTimeout(resolve, 2));
}
`,
    );
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--unstable-kv", script, path],
      cwd: dir,
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let output = "";
    while (!output.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      output += value;
    }
    child.kill("SIGKILL");
    const status = await child.status;
    await reader.cancel();
    assert.equal(status.signal, "SIGKILL");
    const uploadId = output.match(/streaming (\w+)/)?.[1];
    assert.ok(uploadId, `the child reported its upload: ${output}`);

    // The dead upload is invisible; its record is in the store, its content in the spool.
    assert.deepEqual(await listIds(queue), [kept]);
    assert.ok((await allKeys(path)).some((key) => key.includes(uploadId)));
    assert.ok(Deno.statSync(`${path}-spool/${uploadId}`).size > 0);

    // At once, not an hour later: the uploading process is gone from this host.
    const result = await queue.recover(Date.now());
    assert.deepEqual(result, { incompleteRemoved: 1, leasesExpired: 0, spoolOrphansRemoved: 0 });
    assert.ok((await allKeys(path)).every((key) => !key.includes(uploadId)));
    assert.throws(() => Deno.statSync(`${path}-spool/${uploadId}`), Deno.errors.NotFound);
    assert.deepEqual(await listIds(queue), [kept]);
    assert.deepEqual(await readAll(queue.openContent(kept)), content);
  });
});

// ---------------------------------------------------------------------------
// Group commit

Deno.test("50 concurrent commits all resolve, share KV commits and are all listed", async () => {
  await withQueue(async ({ queue, path }) => {
    const ids = await Promise.all(
      Array.from(
        { length: 50 },
        (_, i) =>
          enqueue(queue, { content: randomBytes(4096 + i), rcpts: recipients(1 + (i % 3)) }),
      ),
    );
    assert.equal(new Set(ids).size, 50);
    assert.deepEqual((await listIds(queue)).sort(), [...ids].sort());
    assert.equal(await queue.count(), 50);
    // A shared commit gives its writes one versionstamp.
    const kv = await Deno.openKv(path);
    const stamps = new Set<string>();
    for await (const entry of kv.list({ prefix: ["queue", "msg"] })) stamps.add(entry.versionstamp);
    kv.close();
    assert.ok(stamps.size < 50, `50 messages in ${stamps.size} commits`);
    for (const [i, id] of ids.entries()) {
      const message = await queue.get(id);
      assert.equal(message?.recipients.length, 1 + (i % 3));
      assert.equal((await readAll(queue.openContent(id))).length, 4096 + i);
    }
  });
});

Deno.test("concurrent commits of large messages are split across several KV commits", async () => {
  await withQueue(async ({ queue }) => {
    // Each last chunk is ~59 KB: at most 13 fit in one 800 KiB operation.
    const contents = Array.from({ length: 30 }, () => randomBytes(CHUNK_SIZE + 59_000));
    const ids = await Promise.all(contents.map((content) => enqueue(queue, { content })));
    assert.equal(await queue.count(), 30);
    for (const [i, id] of ids.entries()) {
      const content = contents[i];
      assert.ok(content);
      assert.deepEqual(await readAll(queue.openContent(id)), content);
    }
  });
});

// ---------------------------------------------------------------------------
// Recipients

Deno.test("a message with 300 recipients keeps them all, in order, and updates them", async () => {
  await withQueue(async ({ queue }) => {
    const id = await enqueue(queue, { rcpts: recipients(300) });
    const message = await queue.get(id);
    assert.equal(message?.recipients.length, 300);
    assert.equal(message?.recipients[299]?.address, "user299@example.net");
    assert.equal(message?.envelope.forwardPaths.length, 300);
    const [claim] = await queue.claimDue({ now: T0, limit: 1 });
    assert.ok(claim);
    const outcomes = claim.message.recipients.map((_, i) =>
      outcome(i, i % 2 === 0 ? "sent" : "deferred")
    );
    const record = await queue.recordAttempt(claim, outcomes, T0 + 1000);
    assert.equal(record?.recipients.filter((r) => r.status === "sent").length, 150);
    const again = await queue.get(id);
    assert.deepEqual(again?.recipients, record?.recipients);
    assert.equal(again?.recipients[1]?.attempts, 1);
    assert.equal(again?.recipients[1]?.lastReply?.code, 451);
  });
});

Deno.test("a message with 10,000 recipients is stored in several operations before its marker", async () => {
  await withQueue(async ({ queue, path }) => {
    const rcpts = recipients(10_000, "a-rather-long-domain-name-for-a-test.example.net");
    const id = await enqueue(queue, { rcpts });
    const message = await queue.get(id);
    assert.equal(message?.recipients.length, 10_000);
    assert.deepEqual(message?.envelope.forwardPaths, rcpts.map((r) => r.originalRecipient));
    const [claim] = await queue.claimDue({ now: T0, limit: 1 });
    assert.ok(claim);
    const half = claim.message.recipients.map((_, i) =>
      outcome(i, i < 5_000 ? "sent" : "deferred")
    );
    const record = await queue.recordAttempt(claim, half, T0 + 1000);
    assert.equal(record?.recipients[4_999]?.status, "sent");
    assert.equal(record?.recipients[5_000]?.status, "deferred");
    assert.equal((await queue.get(id))?.recipients[9_999]?.status, "deferred");
    const [second] = await queue.claimDue({ now: T0 + DAY, limit: 1 });
    assert.ok(second);
    const rest = Array.from({ length: 5_000 }, (_, i) => outcome(5_000 + i, "sent"));
    const final = await queue.recordAttempt(second, rest, T0 + DAY);
    assert.ok(final?.recipients.every((r) => r.status === "sent"));
    assert.deepEqual(await allKeys(path), []);
  });
});

// ---------------------------------------------------------------------------
// Claims and leases

Deno.test("two queues on one file never both claim a message", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tern-queue-" });
  const path = `${dir}/queue.sqlite3`;
  const a = await KvQueue.open(path, OPTIONS);
  const b = await KvQueue.open(path, OPTIONS);
  try {
    const ids = await Promise.all(Array.from({ length: 40 }, () => enqueue(a)));
    const claimedBy = new Map<string, string>();
    for (let round = 0; round < 10; round++) {
      const [fromA, fromB] = await Promise.all([
        a.claimDue({ now: T0, limit: 3 }),
        b.claimDue({ now: T0, limit: 3 }),
      ]);
      for (const [who, claims] of [["a", fromA], ["b", fromB]] as const) {
        for (const claim of claims) {
          const id = claim.message.queueId;
          assert.equal(claimedBy.get(id), undefined, `${id} claimed twice`);
          claimedBy.set(id, who);
        }
      }
    }
    assert.equal(claimedBy.size, 40);
    assert.deepEqual([...claimedBy.keys()].sort(), [...ids].sort());
    assert.deepEqual(await b.claimDue({ now: T0, limit: 100 }), []);
  } finally {
    await a.close();
    await b.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("claimDue() takes the oldest due messages first, up to the limit", async () => {
  await withQueue(async ({ queue }) => {
    const early = await enqueue(queue, { now: T0 });
    const later = await enqueue(queue, { now: T0 + 1000 });
    await enqueue(queue, { now: T0 + 2000 });
    assert.deepEqual(await queue.claimDue({ now: T0 - 1, limit: 10 }), []);
    const claims = await queue.claimDue({ now: T0 + 1000, limit: 10 });
    assert.deepEqual(claims.map((c) => c.message.queueId), [early, later]);
    assert.ok(claims.every((c) => !c.recovered));
  });
});

Deno.test("claimDue() skips excluded ids", async () => {
  await withQueue(async ({ queue }) => {
    const first = await enqueue(queue);
    const second = await enqueue(queue);
    const claims = await queue.claimDue({ now: T0, limit: 10, exclude: new Set([first]) });
    assert.deepEqual(claims.map((c) => c.message.queueId), [second]);
  });
});

Deno.test("an expired lease makes the message claimable again, marked recovered", async () => {
  await withQueue(async ({ queue, logger }) => {
    const id = await enqueue(queue);
    const [first] = await queue.claimDue({ now: T0, limit: 1 });
    assert.ok(first);
    assert.equal(first.recovered, false);
    assert.deepEqual(await queue.claimDue({ now: T0 + MINUTE, limit: 1 }), []);
    // The worker died: nobody records the attempt, the lease runs out.
    assert.deepEqual(await queue.recover(T0 + 10 * MINUTE), {
      incompleteRemoved: 0,
      leasesExpired: 1,
      spoolOrphansRemoved: 0,
    });
    const [second] = await queue.claimDue({ now: T0 + 5 * MINUTE, limit: 1 });
    assert.ok(second);
    assert.equal(second.message.queueId, id);
    assert.equal(second.recovered, true);
    // The first worker comes back to life: its claim is no longer good.
    assert.equal(await queue.recordAttempt(first, [outcome(0, "sent")], T0 + 6 * MINUTE), null);
    assert.ok(
      logger.records.some((r) => r.event === "queue.error" && r.fields.reason === "lease lost"),
    );
    assert.equal((await queue.get(id))?.recipients[0]?.status, "queued");
    const final = await queue.recordAttempt(second, [outcome(0, "sent")], T0 + 6 * MINUTE);
    assert.equal(final?.recipients[0]?.status, "sent");
    assert.equal(await queue.count(), 0);
  }, { leaseMs: 5 * MINUTE });
});

Deno.test("a renewed lease keeps other workers away", async () => {
  await withQueue(async ({ queue }) => {
    await enqueue(queue);
    const [claim] = await queue.claimDue({ now: T0, limit: 1 });
    assert.ok(claim);
    assert.equal(await queue.renewLease(claim, T0 + 4 * MINUTE), true);
    assert.deepEqual(await queue.claimDue({ now: T0 + 6 * MINUTE, limit: 1 }), []);
    assert.equal((await queue.claimDue({ now: T0 + 9 * MINUTE, limit: 1 })).length, 1);
    assert.equal(await queue.renewLease(claim, T0 + 9 * MINUTE), false);
  }, { leaseMs: 5 * MINUTE });
});

// ---------------------------------------------------------------------------
// Attempts, retries, give-up

Deno.test("a deferred message is retried on the schedule, the last wait repeating", async () => {
  await withQueue(async ({ queue }) => {
    const id = await enqueue(queue);
    let now = T0;
    const waits: number[] = [];
    for (let attempt = 1; attempt <= 5; attempt++) {
      const [claim] = await queue.claimDue({ now, limit: 1 });
      assert.ok(claim, `attempt ${attempt} is due`);
      const record = await queue.recordAttempt(claim, [outcome(0, "deferred")], now);
      assert.equal(record?.recipients[0]?.attempts, attempt);
      assert.equal(record?.recipients[0]?.status, "deferred");
      assert.ok(record);
      waits.push(record.nextAttempt - now);
      assert.deepEqual(await queue.claimDue({ now: record.nextAttempt - 1, limit: 1 }), []);
      now = record.nextAttempt;
    }
    assert.deepEqual(waits, [1 * MINUTE, 5 * MINUTE, 60 * MINUTE, 60 * MINUTE, 60 * MINUTE]);
    assert.equal((await queue.get(id))?.recipients[0]?.lastReply?.text, "reply 451");
  });
});

Deno.test("past max_age a deferred recipient bounces, saying it gave up, and the message leaves", async () => {
  await withQueue(async ({ queue, logger }) => {
    const id = await enqueue(queue, { rcpts: recipients(2) });
    const [claim] = await queue.claimDue({ now: T0, limit: 1 });
    assert.ok(claim);
    await queue.recordAttempt(claim, [outcome(0, "sent"), outcome(1, "deferred")], T0);
    const late = T0 + 5 * DAY + 2 * 60 * MINUTE;
    const [last] = await queue.claimDue({ now: late, limit: 1 });
    assert.ok(last);
    const final = await queue.recordAttempt(last, [outcome(1, "deferred")], late);
    assert.equal(final?.queueId, id);
    assert.equal(final?.recipients[0]?.status, "sent");
    const bounced = final?.recipients[1];
    assert.equal(bounced?.status, "bounced");
    assert.equal(bounced?.lastReply?.code, 451);
    assert.equal(bounced?.lastReply?.enhancedStatus, "4.4.1");
    assert.equal(bounced?.lastReply?.text, "reply 451 (gave up after 5d 2h)");
    assert.equal(await queue.count(), 0);
    const expired = logger.records.find((r) => r.event === "queue.expired");
    assert.equal(expired?.queueId, id);
    assert.equal(expired?.fields.rcpt, "<user1@example.net>");
    assert.ok(logger.records.some((r) => r.event === "queue.removed" && r.queueId === id));
  });
});

Deno.test("mixed outcomes keep the message for the deferred recipient only", async () => {
  await withQueue(async ({ queue, path }) => {
    const id = await enqueue(queue, { rcpts: recipients(3) });
    const [claim] = await queue.claimDue({ now: T0, limit: 1 });
    assert.ok(claim);
    const record = await queue.recordAttempt(
      claim,
      [outcome(0, "sent"), outcome(1, "bounced"), outcome(2, "deferred")],
      T0,
    );
    assert.deepEqual(record?.recipients.map((r) => r.status), ["sent", "bounced", "deferred"]);
    const [retry] = await queue.claimDue({ now: T0 + MINUTE, limit: 1 });
    assert.ok(retry);
    assert.equal(retry.message.queueId, id);
    // An outcome for a recipient already done is ignored: final states never change.
    const final = await queue.recordAttempt(
      retry,
      [outcome(0, "deferred"), outcome(2, "sent")],
      T0 + MINUTE,
    );
    assert.deepEqual(final?.recipients.map((r) => r.status), ["sent", "bounced", "sent"]);
    assert.equal(final?.recipients[0]?.attempts, 1);
    assert.deepEqual(await allKeys(path), []);
  });
});

Deno.test("recordAttempt() refuses an outcome for a recipient that does not exist", async () => {
  await withQueue(async ({ queue }) => {
    await enqueue(queue);
    const [claim] = await queue.claimDue({ now: T0, limit: 1 });
    assert.ok(claim);
    await assert.rejects(queue.recordAttempt(claim, [outcome(3, "sent")], T0), RangeError);
  });
});

// ---------------------------------------------------------------------------
// tern queue: delete, hold, release, flush, list

Deno.test("delete() removes a message and all its keys", async () => {
  await withQueue(async ({ queue, path, logger }) => {
    const id = await enqueue(queue, { content: randomBytes(3 * CHUNK_SIZE), rcpts: recipients(5) });
    assert.equal(await queue.delete(id), true);
    assert.equal(await queue.get(id), null);
    assert.equal(await queue.count(), 0);
    assert.deepEqual(await allKeys(path), []);
    assert.equal(await queue.delete(id), false);
    assert.ok(
      logger.records.some((r) => r.event === "queue.removed" && r.fields.reason === "deleted"),
    );
  });
});

Deno.test("a message deleted during its delivery is not written back", async () => {
  await withQueue(async ({ queue, path }) => {
    const id = await enqueue(queue);
    const [claim] = await queue.claimDue({ now: T0, limit: 1 });
    assert.ok(claim);
    assert.equal(await queue.delete(id), true);
    assert.equal(await queue.recordAttempt(claim, [outcome(0, "deferred")], T0), null);
    assert.deepEqual(await allKeys(path), []);
  });
});

Deno.test("a held message is never claimed, even by flush, until released", async () => {
  await withQueue(async ({ queue }) => {
    const id = await enqueue(queue);
    assert.equal(await queue.hold(id), true);
    assert.equal(await queue.hold(id), true);
    assert.equal((await queue.get(id))?.held, true);
    assert.deepEqual(await queue.claimDue({ now: T0 + DAY, limit: 10 }), []);
    assert.equal(await queue.flush(T0 + DAY), 0);
    assert.deepEqual(await queue.claimDue({ now: T0 + DAY, limit: 10 }), []);
    assert.equal(await queue.release(id), true);
    assert.equal((await queue.get(id))?.held, false);
    assert.equal((await queue.claimDue({ now: T0, limit: 10 })).length, 1);
  });
});

Deno.test("a message held during its delivery stays held after the attempt", async () => {
  await withQueue(async ({ queue }) => {
    const id = await enqueue(queue);
    const [claim] = await queue.claimDue({ now: T0, limit: 1 });
    assert.ok(claim);
    assert.equal(await queue.hold(id), true);
    const record = await queue.recordAttempt(claim, [outcome(0, "deferred")], T0);
    assert.equal(record?.held, true);
    assert.deepEqual(await queue.claimDue({ now: T0 + DAY, limit: 1 }), []);
    assert.equal(await queue.release(id), true);
    assert.equal((await queue.claimDue({ now: T0 + MINUTE, limit: 1 })).length, 1);
  });
});

Deno.test("flush() makes every deferred message due now, but not one being delivered", async () => {
  await withQueue(async ({ queue }) => {
    const a = await enqueue(queue);
    const b = await enqueue(queue);
    const claims = await queue.claimDue({ now: T0, limit: 2 });
    assert.equal(claims.length, 2);
    const [first, second] = claims;
    assert.ok(first && second);
    await queue.recordAttempt(first, [outcome(0, "deferred")], T0);
    // `second` is still being delivered.
    const now = T0 + 10_000;
    assert.deepEqual(await queue.claimDue({ now, limit: 10 }), []);
    assert.equal(await queue.flush(now), 1);
    const due = await queue.claimDue({ now, limit: 10 });
    assert.deepEqual(due.map((c) => c.message.queueId), [first.message.queueId]);
    assert.equal((await queue.get(first.message.queueId))?.nextAttempt, now);
    assert.deepEqual([a, b].sort(), [first.message.queueId, second.message.queueId].sort());
  });
});

Deno.test("list() yields messages in arrival order with their envelope and state", async () => {
  await withQueue(async ({ queue }) => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await enqueue(queue, { now: T0 + i * 1000 }));
    const listed = [];
    for await (const message of queue.list()) listed.push(message);
    assert.deepEqual(listed.map((m) => m.queueId), ids);
    const first = listed[0];
    assert.equal(first?.envelope.reversePath, "alice@example.test");
    assert.equal(first?.clientAddress, "192.0.2.7");
    assert.equal(first?.arrival, T0);
    assert.equal(first?.nextAttempt, T0);
    assert.equal(first?.recipients[0]?.status, "queued");
  });
});

Deno.test("two queues on one file commit at the same time and lose nothing", async () => {
  // Two connections to one SQLite file: their writes collide ("database is
  // locked") and must be retried, as with the server and `tern send`.
  const dir = await Deno.makeTempDir({ prefix: "tern-queue-" });
  const path = `${dir}/queue.sqlite3`;
  const a = await KvQueue.open(path, OPTIONS);
  const b = await KvQueue.open(path, OPTIONS);
  try {
    const ids = await Promise.all([
      ...Array.from({ length: 40 }, () => enqueue(a, { content: randomBytes(70_000) })),
      ...Array.from({ length: 40 }, () => enqueue(b, { content: randomBytes(70_000) })),
    ]);
    assert.deepEqual((await listIds(a)).sort(), [...ids].sort());
    assert.equal(await b.count(), 80);
  } finally {
    await a.close();
    await b.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("recover() finishes a removal that a crash interrupted", async () => {
  await withQueue(async ({ queue, path }) => {
    const kept = await enqueue(queue);
    const id = await enqueue(queue, {
      content: randomBytes(2 * CHUNK_SIZE),
      rcpts: recipients(1500),
    });
    // What the first operation of a large removal leaves if the process
    // dies right after it: no meta, a `removing` marker, the content.
    const kv = await Deno.openKv(path);
    const meta = await kv.get<
      { due: number; chunks: number; recipients: number; pathPages: number }
    >(
      ["queue", "msg", id],
    );
    assert.ok(meta.value);
    await kv.atomic()
      .delete(["queue", "msg", id])
      .delete(["queue", "due", meta.value.due, id])
      .set(["queue", "removing", id], {
        chunks: meta.value.chunks,
        recipients: meta.value.recipients,
        pathPages: meta.value.pathPages,
      })
      .commit();
    kv.close();
    assert.deepEqual(await listIds(queue), [kept]);
    await queue.recover(T0);
    assert.ok((await allKeys(path)).every((key) => key.includes(kept)));
  });
});

// ---------------------------------------------------------------------------
// Claims taken at commit: commitAndClaim, unclaim, the snapshot of a claim

/** Receives a message, writes `content` (in pieces of `piece` bytes) and commits it with a claim. */
async function receiveAndClaim(
  queue: KvQueue,
  options: {
    content?: Uint8Array;
    rcpts?: QueueRecipient[];
    now?: number;
    claimAt?: number;
    piece?: number;
    keepContent?: number;
  } = {},
): Promise<ClaimedMessage> {
  const message = await receiveWritten(queue, options);
  const claim = await message.commitAndClaim(options.claimAt ?? options.now ?? T0);
  assert.equal(claim.message.queueId, message.queueId);
  return claim;
}

/** Asserts equal bytes, naming the first difference (a diff of 60,000 numbers takes ages). */
function assertSameBytes(actual: Uint8Array | undefined, expected: Uint8Array, what: string): void {
  assert.ok(actual !== undefined, `${what}: no bytes`);
  assert.equal(actual.byteLength, expected.byteLength, `${what}: length`);
  const at = actual.findIndex((byte, i) => byte !== expected[i]);
  assert.equal(at, -1, `${what}: first difference at octet ${at}`);
}

type KvRead = "get" | "getMany" | "list";

/**
 * Runs `fn` and counts the reads (get, getMany, list) it makes through any
 * KV connection of this isolate. Tests in a file run one at a time.
 */
async function countReads<T>(fn: () => Promise<T>): Promise<{ result: T; reads: number }> {
  const proto = Deno.Kv.prototype as unknown as Record<KvRead, (...args: unknown[]) => unknown>;
  const names: KvRead[] = ["get", "getMany", "list"];
  const saved = names.map((name) => [name, Object.getOwnPropertyDescriptor(proto, name)] as const);
  let reads = 0;
  for (const name of names) {
    const original = proto[name];
    Object.defineProperty(proto, name, {
      configurable: true,
      writable: true,
      value: function (this: Deno.Kv, ...args: unknown[]): unknown {
        reads++;
        return original.apply(this, args);
      },
    });
  }
  try {
    const result = await fn();
    return { result, reads };
  } finally {
    for (const [name, descriptor] of saved) {
      if (descriptor !== undefined) Object.defineProperty(proto, name, descriptor);
    }
  }
}

Deno.test("commitAndClaim() commits the message and claims it in one step, content in memory", async () => {
  await withQueue(async ({ queue, path }) => {
    const content = new TextEncoder().encode("Subject: claimed\r\n\r\nHello, at once\r\n");
    const claim = await receiveAndClaim(queue, { content, piece: 7, rcpts: recipients(2) });
    const id = claim.message.queueId;
    // Committed: every reader sees it.
    assert.equal(await queue.count(), 1);
    assert.deepEqual(await listIds(queue), [id]);
    const stored = await queue.get(id);
    assert.ok(stored);
    assert.equal(stored.size, content.byteLength);
    assert.equal(stored.held, false);
    assert.equal(stored.arrival, T0);
    assert.deepEqual(stored.recipients.map((r) => r.status), ["queued", "queued"]);
    assert.deepEqual(await readAll(queue.openContent(id)), content);
    // Claimed: nobody else takes it while the lease runs (1 minute by default).
    assert.deepEqual(await queue.claimDue({ now: T0, limit: 10 }), []);
    assert.deepEqual(await queue.claimDue({ now: T0 + MINUTE - 1, limit: 10 }), []);
    // The claim is what claimDue would give, with the whole content.
    assert.equal(claim.recovered, false);
    assert.equal(claim.lease.expires, T0 + MINUTE);
    assert.equal(claim.message.size, content.byteLength);
    assert.deepEqual(claim.message.recipients, stored.recipients);
    assert.deepEqual(claim.message.envelope, stored.envelope);
    assert.ok(claim.content);
    assert.deepEqual(claim.content, content);
    // One commit, nothing written before it: no upload record is left behind.
    assert.ok((await allKeys(path)).every((key) => key[1] !== "incoming"));
  });
});

Deno.test("a claim taken at commit cannot be taken by a second queue on the same file", async () => {
  await withQueue(async ({ queue, path }) => {
    const claim = await receiveAndClaim(queue);
    const other = await KvQueue.open(path, OPTIONS);
    try {
      assert.deepEqual(await other.claimDue({ now: T0 + 30_000, limit: 10 }), []);
      assert.equal(await other.count(), 1);
      assert.equal((await other.get(claim.message.queueId))?.recipients[0]?.status, "queued");
    } finally {
      await other.close();
    }
  });
});

Deno.test("commitAndClaim() of a message larger than one chunk leaves its content in the store", async () => {
  await withQueue(async ({ queue }) => {
    const content = randomBytes(CHUNK_SIZE + 10);
    const claim = await receiveAndClaim(queue, { content, piece: 25_000 });
    assert.equal(claim.content, undefined);
    assert.equal(claim.message.size, CHUNK_SIZE + 10);
    assertSameBytes(await readAll(queue.openContent(claim.message.queueId)), content, "stored");
    assert.deepEqual(await queue.claimDue({ now: T0, limit: 10 }), []);
    const final = await queue.recordAttempt(claim, [outcome(0, "sent")], T0);
    assert.equal(final?.recipients[0]?.status, "sent");
    assert.equal(await queue.count(), 0);
  });
});

Deno.test("keepContent: spooled content up to the limit comes with the claim, and is stored too", async () => {
  await withQueue(async ({ queue }) => {
    const content = randomBytes(3 * CHUNK_SIZE + 5);
    const kept = await receiveAndClaim(queue, {
      content,
      piece: 25_000,
      keepContent: content.length,
    });
    assertSameBytes(kept.content, content, "in memory");
    assertSameBytes(await readAll(queue.openContent(kept.message.queueId)), content, "stored");
    // One octet over the limit: read back from the store, as without the option.
    const over = await receiveAndClaim(queue, {
      content,
      piece: 25_000,
      keepContent: content.length - 1,
    });
    assert.equal(over.content, undefined);
    assertSameBytes(await readAll(queue.openContent(over.message.queueId)), content, "stored");
    // A plain commit keeps nothing.
    const message = await receiveWritten(queue, { content, keepContent: content.length });
    await message.commit();
    assertSameBytes(await readAll(queue.openContent(message.queueId)), content, "committed");
  });
});

Deno.test("keepContent copies what it keeps: the writer may reuse its buffer", async () => {
  await withQueue(async ({ queue }) => {
    const message = await queue.receive({
      envelope: {
        reversePath: "alice@example.test",
        forwardPaths: ["user0@example.net"],
        body: "8BITMIME",
        smtputf8: false,
      },
      recipients: recipients(1),
      clientAddress: "192.0.2.7",
      now: T0,
      keepContent: 1_000_000,
    });
    const buffer = new Uint8Array(40_000);
    const whole = new Uint8Array(5 * buffer.length);
    for (let n = 0; n < 5; n++) {
      buffer.fill(0x41 + n); // the same buffer, refilled for each write
      whole.set(buffer, n * buffer.length);
      await message.write(buffer);
    }
    const claim = await message.commitAndClaim(T0);
    assertSameBytes(claim.content, whole, "in memory");
    assertSameBytes(await readAll(queue.openContent(claim.message.queueId)), whole, "stored");
  });
});

Deno.test("keepContentBudget: what uploads keep together is bounded, and given back at commit and abort", async () => {
  const size = 2 * CHUNK_SIZE; // each upload keeps this much
  await withQueue(async ({ queue }) => {
    const content = randomBytes(size);
    const first = await receiveWritten(queue, { content, keepContent: size });
    const second = await receiveWritten(queue, { content, keepContent: size });
    // The budget held one upload's copy: the second reads back from its file.
    const secondClaim = await second.commitAndClaim(T0);
    assert.equal(secondClaim.content, undefined);
    assertSameBytes(await readAll(queue.openContent(second.queueId)), content, "second");
    const firstClaim = await first.commitAndClaim(T0);
    assertSameBytes(firstClaim.content, content, "first");
    // Given back at commit: a third upload keeps its copy.
    const third = await receiveAndClaim(queue, { content, keepContent: size });
    assertSameBytes(third.content, content, "third");
    // Given back at abort too.
    const aborted = await receiveWritten(queue, { content, keepContent: size });
    await aborted.abort();
    const fourth = await receiveAndClaim(queue, { content, keepContent: size });
    assertSameBytes(fourth.content, content, "fourth");
  }, { keepContentBudget: size + CHUNK_SIZE });
});

Deno.test("a message of exactly CHUNK_SIZE bytes comes in memory; an empty one is readable from the store", async () => {
  await withQueue(async ({ queue }) => {
    const full = randomBytes(CHUNK_SIZE);
    const one = await receiveAndClaim(queue, { content: full, piece: 1_000 });
    assertSameBytes(one.content, full, "in memory");
    assertSameBytes(await readAll(queue.openContent(one.message.queueId)), full, "stored");
    const empty = await receiveAndClaim(queue, { content: new Uint8Array(0) });
    if (empty.content !== undefined) assert.equal(empty.content.byteLength, 0);
    assert.equal((await readAll(queue.openContent(empty.message.queueId))).byteLength, 0);
    const final = await queue.recordAttempt(one, [outcome(0, "sent")], T0);
    assert.equal(final?.recipients[0]?.status, "sent");
    assert.equal(await queue.count(), 1);
  });
});

Deno.test("recordAttempt() after commitAndClaim removes a delivered message, without reading the store", async () => {
  await withQueue(async ({ queue, path, logger }) => {
    const claim = await receiveAndClaim(queue, { rcpts: recipients(2) });
    const id = claim.message.queueId;
    const { result: final, reads } = await countReads(() =>
      queue.recordAttempt(claim, [outcome(0, "sent"), outcome(1, "bounced")], T0 + 1_000)
    );
    assert.equal(reads, 0, "the record is written from the claim's snapshot");
    assert.equal(final?.queueId, id);
    assert.deepEqual(final?.recipients.map((r) => r.status), ["sent", "bounced"]);
    assert.equal(final?.recipients[0]?.attempts, 1);
    assert.equal(final?.recipients[1]?.lastReply?.code, 550);
    assert.equal(await queue.count(), 0);
    assert.equal(await queue.get(id), null);
    await assert.rejects(readAll(queue.openContent(id)), /no such message/);
    assert.deepEqual(await allKeys(path), []);
    assert.ok(
      logger.records.some((r) =>
        r.event === "queue.removed" && r.queueId === id && r.fields.reason === "done"
      ),
    );
    // The claim is spent: a second record finds no lease.
    assert.equal(await queue.recordAttempt(claim, [outcome(0, "sent")], T0 + 2_000), null);
  });
});

Deno.test("a deferral after commitAndClaim follows the retry schedule and the message is claimed again", async () => {
  await withQueue(async ({ queue }) => {
    const claim = await receiveAndClaim(queue);
    const id = claim.message.queueId;
    const attemptAt = T0 + 2_000;
    const { result: record, reads } = await countReads(() =>
      queue.recordAttempt(claim, [outcome(0, "deferred")], attemptAt)
    );
    assert.equal(reads, 0, "the record is written from the claim's snapshot");
    assert.equal(record?.nextAttempt, attemptAt + 1 * MINUTE);
    assert.equal(record?.recipients[0]?.status, "deferred");
    assert.equal(record?.recipients[0]?.attempts, 1);
    const stored = await queue.get(id);
    assert.equal(stored?.nextAttempt, attemptAt + 1 * MINUTE);
    assert.equal(stored?.recipients[0]?.status, "deferred");
    assert.equal(stored?.recipients[0]?.attempts, 1);
    assert.equal(stored?.recipients[0]?.lastAttempt, attemptAt);
    assert.equal(stored?.recipients[0]?.lastReply?.text, "reply 451");
    assert.equal(await queue.count(), 1);
    // Not before its time; then claimable, and not as recovered: the lease was released.
    assert.deepEqual(await queue.claimDue({ now: attemptAt + MINUTE - 1, limit: 1 }), []);
    const [again] = await queue.claimDue({ now: attemptAt + MINUTE, limit: 1 });
    assert.ok(again);
    assert.equal(again.message.queueId, id);
    assert.equal(again.recovered, false);
    assert.equal(again.content, undefined);
    assert.equal(again.message.recipients[0]?.attempts, 1);
    const second = await queue.recordAttempt(again, [outcome(0, "deferred")], attemptAt + MINUTE);
    assert.equal(second?.recipients[0]?.attempts, 2);
    assert.equal(second?.nextAttempt, attemptAt + MINUTE + 5 * MINUTE);
  });
});

Deno.test("a message held between commitAndClaim and a deferral stays held", async () => {
  await withQueue(async ({ queue }) => {
    const claim = await receiveAndClaim(queue);
    const id = claim.message.queueId;
    assert.equal(await queue.hold(id), true);
    const { result: record, reads } = await countReads(() =>
      queue.recordAttempt(claim, [outcome(0, "deferred")], T0 + 1_000)
    );
    assert.ok(reads > 0, "the snapshot check failed: the record was read afresh");
    assert.equal(record?.held, true);
    assert.equal(record?.recipients[0]?.attempts, 1);
    const stored = await queue.get(id);
    assert.equal(stored?.held, true);
    assert.equal(stored?.recipients[0]?.status, "deferred");
    assert.equal(stored?.recipients[0]?.attempts, 1);
    assert.deepEqual(await queue.claimDue({ now: T0 + DAY, limit: 10 }), []);
    assert.equal(await queue.flush(T0 + DAY), 0);
    assert.equal(await queue.release(id), true);
    const [again] = await queue.claimDue({ now: T0 + 1_000 + MINUTE, limit: 1 });
    assert.equal(again?.message.queueId, id);
    assert.equal(again?.recovered, false);
  });
});

Deno.test("a message held between commitAndClaim and a final record still leaves the queue", async () => {
  await withQueue(async ({ queue, path }) => {
    const claim = await receiveAndClaim(queue);
    assert.equal(await queue.hold(claim.message.queueId), true);
    const final = await queue.recordAttempt(claim, [outcome(0, "sent")], T0 + 1_000);
    assert.equal(final?.recipients[0]?.status, "sent");
    assert.equal(await queue.count(), 0);
    assert.deepEqual(await allKeys(path), []);
  });
});

Deno.test("a message deleted between commitAndClaim and the record is not written back", async () => {
  await withQueue(async ({ queue, path, logger }) => {
    const claim = await receiveAndClaim(queue);
    const id = claim.message.queueId;
    assert.equal(await queue.delete(id), true);
    assert.equal(await queue.recordAttempt(claim, [outcome(0, "deferred")], T0 + 1_000), null);
    assert.equal(await queue.get(id), null);
    assert.equal(await queue.count(), 0);
    assert.deepEqual(await queue.claimDue({ now: T0 + DAY, limit: 10 }), []);
    assert.deepEqual(await allKeys(path), []);
    assert.ok(
      logger.records.some((r) =>
        r.event === "queue.error" && r.queueId === id &&
        r.fields.reason === "message deleted during delivery"
      ),
    );
  });
});

Deno.test("a lapsed lease from commitAndClaim makes the message claimable again, as recovered", async () => {
  await withQueue(async ({ queue, logger }) => {
    const claim = await receiveAndClaim(queue);
    const id = claim.message.queueId;
    assert.equal(claim.lease.expires, T0 + 1_000);
    assert.deepEqual(await queue.claimDue({ now: T0 + 999, limit: 1 }), []);
    // This process died before recording: the lease runs out.
    const recovered = await queue.recover(T0 + 1_500);
    assert.equal(recovered.leasesExpired, 1);
    assert.equal(recovered.incompleteRemoved, 0);
    const [second] = await queue.claimDue({ now: T0 + 1_500, limit: 1 });
    assert.ok(second);
    assert.equal(second.message.queueId, id);
    assert.equal(second.recovered, true);
    assert.equal(second.message.recipients[0]?.status, "queued");
    assert.ok(logger.records.some((r) => r.event === "queue.recovered" && r.queueId === id));
    // The first claim is no longer good, even with its snapshot.
    assert.equal(await queue.recordAttempt(claim, [outcome(0, "sent")], T0 + 1_600), null);
    assert.equal(await queue.renewLease(claim, T0 + 1_600), false);
    assert.equal(await queue.count(), 1);
    const final = await queue.recordAttempt(second, [outcome(0, "sent")], T0 + 1_700);
    assert.equal(final?.recipients[0]?.status, "sent");
    assert.equal(await queue.count(), 0);
  }, { leaseMs: 1_000 });
});

Deno.test("unclaim() gives a claim back: due again at once, not recovered, no attempt counted", async () => {
  await withQueue(async ({ queue }) => {
    const claim = await receiveAndClaim(queue);
    const id = claim.message.queueId;
    assert.equal(await queue.unclaim(claim), true);
    assert.equal(await queue.unclaim(claim), false, "given back already");
    // Its snapshot is gone with the lease: a record with it writes nothing.
    assert.equal(await queue.recordAttempt(claim, [outcome(0, "sent")], T0), null);
    assert.equal(await queue.count(), 1);
    const [again] = await queue.claimDue({ now: T0, limit: 1 });
    assert.ok(again);
    assert.equal(again.message.queueId, id);
    assert.equal(again.recovered, false);
    assert.equal(again.message.recipients[0]?.attempts, 0);
    assert.equal(again.message.recipients[0]?.status, "queued");
  });
});

Deno.test("unclaim() after a deferral makes the message due at its next attempt, not sooner", async () => {
  await withQueue(async ({ queue }) => {
    const claim = await receiveAndClaim(queue);
    const record = await queue.recordAttempt(claim, [outcome(0, "deferred")], T0);
    assert.ok(record);
    const [retry] = await queue.claimDue({ now: record.nextAttempt, limit: 1 });
    assert.ok(retry);
    assert.equal(await queue.unclaim(retry), true);
    assert.deepEqual(await queue.claimDue({ now: record.nextAttempt - 1, limit: 1 }), []);
    const [again] = await queue.claimDue({ now: record.nextAttempt, limit: 1 });
    assert.equal(again?.recovered, false);
    assert.equal(again?.message.recipients[0]?.attempts, 1);
  });
});

Deno.test("unclaim() of a claim that is no longer ours says false and changes nothing", async () => {
  await withQueue(async ({ queue, path }) => {
    // Deleted meanwhile.
    const deleted = await receiveAndClaim(queue);
    assert.equal(await queue.delete(deleted.message.queueId), true);
    assert.equal(await queue.unclaim(deleted), false);
    assert.deepEqual(await allKeys(path), []);
    // Taken by another worker after the lease lapsed.
    const lapsed = await receiveAndClaim(queue);
    const [taken] = await queue.claimDue({ now: T0 + 2_000, limit: 1 });
    assert.equal(taken?.recovered, true);
    assert.equal(await queue.unclaim(lapsed), false);
    assert.deepEqual(await queue.claimDue({ now: T0 + 2_500, limit: 1 }), [], "still taken");
    assert.ok(taken);
    assert.equal(
      (await queue.recordAttempt(taken, [outcome(0, "sent")], T0 + 2_500))?.queueId,
      lapsed.message.queueId,
    );
    assert.equal(await queue.count(), 0);
  }, { leaseMs: 1_000 });
});

Deno.test("unclaim() of a held message leaves it held; release makes it due", async () => {
  await withQueue(async ({ queue }) => {
    const claim = await receiveAndClaim(queue);
    const id = claim.message.queueId;
    assert.equal(await queue.hold(id), true);
    assert.equal(await queue.unclaim(claim), true);
    assert.equal((await queue.get(id))?.held, true);
    assert.deepEqual(await queue.claimDue({ now: T0 + DAY, limit: 1 }), []);
    assert.equal(await queue.release(id), true);
    const [again] = await queue.claimDue({ now: T0, limit: 1 });
    assert.equal(again?.message.queueId, id);
    assert.equal(again?.recovered, false);
  });
});

Deno.test("renewLease() after commitAndClaim keeps the snapshot: the record still needs no read", async () => {
  await withQueue(async ({ queue, path }) => {
    const claim = await receiveAndClaim(queue);
    assert.equal(await queue.renewLease(claim, T0 + 4 * MINUTE), true);
    // The renewal holds: not claimable after the first lease's end.
    assert.deepEqual(await queue.claimDue({ now: T0 + 6 * MINUTE, limit: 1 }), []);
    const { result: final, reads } = await countReads(() =>
      queue.recordAttempt(claim, [outcome(0, "sent")], T0 + 7 * MINUTE)
    );
    assert.equal(reads, 0, "the snapshot followed the renewal");
    assert.equal(final?.recipients[0]?.status, "sent");
    assert.equal(await queue.count(), 0);
    assert.deepEqual(await allKeys(path), []);
  }, { leaseMs: 5 * MINUTE });
});

Deno.test("renewLease() after commitAndClaim, then a deferral, schedules the retry and frees the message", async () => {
  await withQueue(async ({ queue }) => {
    const claim = await receiveAndClaim(queue);
    assert.equal(await queue.renewLease(claim, T0 + 4 * MINUTE), true);
    assert.equal(await queue.renewLease(claim, T0 + 8 * MINUTE), true);
    const record = await queue.recordAttempt(claim, [outcome(0, "deferred")], T0 + 9 * MINUTE);
    assert.equal(record?.nextAttempt, T0 + 10 * MINUTE);
    const [again] = await queue.claimDue({ now: T0 + 10 * MINUTE, limit: 1 });
    assert.equal(again?.recovered, false);
    assert.equal(again?.message.recipients[0]?.attempts, 1);
  }, { leaseMs: 5 * MINUTE });
});

Deno.test("a claim from claimDue is recorded without reading the store", async () => {
  await withQueue(async ({ queue }) => {
    await enqueue(queue);
    const [claim] = await queue.claimDue({ now: T0, limit: 1 });
    assert.ok(claim);
    const { result: record, reads } = await countReads(() =>
      queue.recordAttempt(claim, [outcome(0, "deferred")], T0)
    );
    assert.equal(reads, 0);
    assert.equal(record?.nextAttempt, T0 + MINUTE);
  });
});

Deno.test("many concurrent commitAndClaim calls each get their own claim and record", async () => {
  await withQueue(async ({ queue, path }) => {
    const texts = Array.from({ length: 30 }, (_, i) => `Subject: ${i}\r\n\r\nbody ${i}\r\n`);
    const claims = await Promise.all(
      texts.map((text) => receiveAndClaim(queue, { content: new TextEncoder().encode(text) })),
    );
    assert.equal(new Set(claims.map((c) => c.message.queueId)).size, 30);
    claims.forEach((claim, i) => {
      assert.equal(new TextDecoder().decode(claim.content), texts[i]);
    });
    assert.equal(await queue.count(), 30);
    assert.deepEqual(await queue.claimDue({ now: T0, limit: 100 }), []);
    const { result: finals, reads } = await countReads(() =>
      Promise.all(claims.map((claim) => queue.recordAttempt(claim, [outcome(0, "sent")], T0)))
    );
    assert.equal(reads, 0, "records sharing commits still need no read");
    assert.ok(finals.every((f) => f?.recipients[0]?.status === "sent"));
    assert.deepEqual(await allKeys(path), []);
  });
});

/** Runs `fn` with crypto.getRandomValues filling with zeros for its first `times` calls. */
async function withZeroRandom<T>(times: number, fn: () => Promise<T>): Promise<T> {
  const original = crypto.getRandomValues;
  let calls = 0;
  const stub = (array: Uint8Array): Uint8Array => {
    if (calls++ < times) return array.fill(0);
    original.call(crypto, array);
    return array;
  };
  crypto.getRandomValues = stub as unknown as typeof crypto.getRandomValues;
  try {
    return await fn();
  } finally {
    crypto.getRandomValues = original;
  }
}

Deno.test("two uploads of one millisecond get different queue ids, whatever the draws", async () => {
  await withQueue(async ({ queue }) => {
    const [a, b] = await withZeroRandom(2, async () => [
      await receiveWritten(queue),
      await receiveWritten(queue),
    ]);
    assert.ok(a && b);
    assert.notEqual(a.queueId, b.queueId);
    await Promise.all([a.commit(), b.commit()]);
    assert.equal(await queue.count(), 2);
  });
});

Deno.test("two uploads with one queue id committed together: the second fails, the first is whole", async () => {
  for (const size of [20, 3 * CHUNK_SIZE]) {
    await withQueue(async ({ queue }) => {
      // One id made twice, as two processes on one store could: the
      // commits must tell the two apart.
      const first = randomBytes(size);
      const second = randomBytes(size);
      const queueId = newQueueId(T0);
      const [a, b] = [
        await receiveWritten(queue, { content: first, piece: 50_000, queueId }).catch((e) => e),
        await receiveWritten(queue, { content: second, piece: 50_000, queueId }).catch((e) => e),
      ];
      // With spooled content the second upload already fails while writing.
      if (!(b instanceof Error)) {
        assert.equal(a.queueId, b.queueId);
        const results = await Promise.allSettled([a.commit(), b.commit()]);
        assert.deepEqual(results.map((r) => r.status), ["fulfilled", "rejected"]);
      } else {
        await a.commit();
        assert.match(b.message, /id is taken/);
      }
      assert.equal(await queue.count(), 1);
      const [id] = await listIds(queue);
      assert.ok(id);
      assertSameBytes(await readAll(queue.openContent(id)), first, `the first, ${size} octets`);
    });
  }
});
