// The PostgreSQL queue store against a real PostgreSQL 15 (tests/_postgres.ts):
// the whole store-independent suite, each test in a fresh schema, then what
// only this store does: tables made by tern, state shared by nodes,
// LISTEN/NOTIFY wake-ups, and a database that goes away and comes back.

import assert from "node:assert/strict";
import postgres from "postgres";
import { type PgCluster, startPostgres } from "../tests/_postgres.ts";
import { queueSuite } from "./queue_suite.ts";
import { PgQueue } from "./pg_queue.ts";
import { QueueConflictError, QueueUnavailableError } from "./errors.ts";
import { SCHEMA_VERSION } from "./pg_schema.ts";
import type { Queue } from "./queue.ts";
import { waitFor } from "../tests/_helpers.ts";

let cluster: Promise<PgCluster> | null = null;
let schemas = 0;

/** The cluster of this file, started by the first test that needs it. */
function pg(): Promise<PgCluster> {
  cluster ??= startPostgres();
  return cluster;
}

const RETRY = { retry: [60_000], maxAge: 86_400_000 };

async function enqueue(queue: Queue, now = Date.now()): Promise<string> {
  const message = await queue.receive({
    envelope: {
      reversePath: "a@example.test",
      forwardPaths: ["b@example.net"],
      body: "7BIT",
      smtputf8: false,
    },
    recipients: [{ address: "b@example.net", originalRecipient: "b@example.net", mailbox: null }],
    clientAddress: "192.0.2.1",
    now,
  });
  await message.write(new TextEncoder().encode("Subject: t\r\n\r\nHi\r\n"));
  await message.commit();
  return message.queueId;
}

queueSuite("PgQueue", async (options) => {
  const { url } = await pg();
  const queue = await PgQueue.open(url, { ...options, schema: `suite_${++schemas}` });
  return { queue, dispose: () => queue.close() };
});

Deno.test("PgQueue: tern creates its tables once, and two nodes opening together agree", async () => {
  const { url } = await pg();
  const schema = `tables_${++schemas}`;
  const [a, b] = await Promise.all([
    PgQueue.open(url, { ...RETRY, schema }),
    PgQueue.open(url, { ...RETRY, schema }),
  ]);
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const [row] = await sql.unsafe(`SELECT version FROM ${schema}.schema_version`);
    assert.equal(row?.version, SCHEMA_VERSION);
    const tables = await sql`SELECT table_name FROM information_schema.tables
      WHERE table_schema = ${schema} ORDER BY table_name`;
    assert.deepEqual(tables.map((t) => t.table_name), [
      "chunks",
      "messages",
      "schema_version",
      "state",
      "uploads",
    ]);
    const id = await enqueue(a);
    assert.equal((await b.get(id))?.queueId, id); // one store, two nodes
  } finally {
    await sql.end();
    await a.close();
    await b.close();
  }
});

Deno.test("PgQueue: state is shared by every node; values over the limit are refused", async () => {
  const { url } = await pg();
  const schema = `state_${++schemas}`;
  const a = await PgQueue.open(url, { ...RETRY, schema });
  const b = await PgQueue.open(url, { ...RETRY, schema });
  try {
    assert.equal(await a.getState("mta-sts/example.org"), null);
    await a.setState("mta-sts/example.org", "version: STSv1\nmode: enforce\n");
    assert.equal(await b.getState("mta-sts/example.org"), "version: STSv1\nmode: enforce\n");
    await b.setState("mta-sts/example.org", null);
    assert.equal(await a.getState("mta-sts/example.org"), null);
    await assert.rejects(a.setState("big", "x".repeat(60 * 1024 + 1)), RangeError);
  } finally {
    await a.close();
    await b.close();
  }
});

Deno.test("PgQueue: a commit on one node wakes the watcher of another (LISTEN/NOTIFY)", async () => {
  const { url } = await pg();
  const schema = `notify_${++schemas}`;
  const a = await PgQueue.open(url, { ...RETRY, schema });
  const b = await PgQueue.open(url, { ...RETRY, schema });
  let calls = 0;
  const unwatch = b.watch(() => calls++);
  try {
    // The first call says LISTEN is in place (it is made on every connect,
    // since notifications sent while not listening are lost).
    await waitFor(() => calls >= 1);
    await enqueue(a);
    await waitFor(() => calls >= 2);
  } finally {
    unwatch();
    await a.close();
    await b.close();
  }
});

Deno.test("PgQueue: a queue id taken by another node is a QueueConflictError", async () => {
  const { url } = await pg();
  const schema = `conflict_${++schemas}`;
  const queue = await PgQueue.open(url, { ...RETRY, schema });
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const message = await queue.receive({
      envelope: { reversePath: "", forwardPaths: ["b@example.net"], body: "7BIT", smtputf8: false },
      recipients: [{ address: "b@example.net", originalRecipient: "b@example.net", mailbox: null }],
      clientAddress: "local",
      now: Date.now(),
    });
    // Another node committed the same id first.
    await sql.unsafe(
      `INSERT INTO ${schema}.messages (queue_id, envelope, recipients, client_address, arrival,
        size, next_attempt) VALUES ($1, '{}', '[]', 'x', 0, 0, 0)`,
      [message.queueId],
    );
    await assert.rejects(message.commit(), QueueConflictError);
    await message.abort();
  } finally {
    await sql.end();
    await queue.close();
  }
});

Deno.test("PgQueue: with the database down, commit and claims throw QueueUnavailableError; then it works again", async () => {
  const cluster = await pg();
  const schema = `down_${++schemas}`;
  const queue = await PgQueue.open(cluster.url, { ...RETRY, schema, connectTimeout: 2 });
  try {
    const before = await enqueue(queue);
    const message = await queue.receive({
      envelope: { reversePath: "", forwardPaths: ["b@example.net"], body: "7BIT", smtputf8: false },
      recipients: [{ address: "b@example.net", originalRecipient: "b@example.net", mailbox: null }],
      clientAddress: "local",
      now: Date.now(),
    });
    await message.write(new TextEncoder().encode("x\r\n"));
    await cluster.stop();
    try {
      const error = await message.commit().then(() => null, (e: unknown) => e);
      assert.ok(error instanceof QueueUnavailableError, String(error));
      assert.match(error.message, /^Cannot commit the message: the queue store is unavailable/);
      await assert.rejects(queue.claimDue({ now: Date.now(), limit: 1 }), QueueUnavailableError);
      await assert.rejects(queue.probe(), QueueUnavailableError);
    } finally {
      await cluster.start();
    }
    // Nothing was acknowledged, nothing half-stored: the committed one is still there.
    await message.abort();
    assert.equal(await queue.count(), 1);
    assert.equal((await queue.get(before))?.queueId, before);
    await queue.probe();
    const after = await enqueue(queue);
    assert.equal((await queue.get(after))?.queueId, after);
  } finally {
    await queue.close();
  }
});

/** Starts an upload to b@example.net with `content` written, not yet committed. */
async function upload(queue: Queue, content: Uint8Array, now = Date.now()) {
  const message = await queue.receive({
    envelope: { reversePath: "", forwardPaths: ["b@example.net"], body: "7BIT", smtputf8: false },
    recipients: [{ address: "b@example.net", originalRecipient: "b@example.net", mailbox: null }],
    clientAddress: "local",
    now,
  });
  await message.write(content);
  return message;
}

const SENT = { code: 250, enhancedStatus: "2.0.0", text: "Ok" };

Deno.test("PgQueue: a small message is one row; a large one is in chunks; delivery removes either", async () => {
  const { url } = await pg();
  const schema = `inline_${++schemas}`;
  const queue = await PgQueue.open(url, { ...RETRY, schema });
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  const header = new TextEncoder().encode("X-Top: 1\r\n");
  try {
    const small = new TextEncoder().encode("Subject: s\r\n\r\nsmall\r\n");
    const large = new Uint8Array(300 * 1024).map((_, i) => 65 + (i % 26));
    const a = await upload(queue, small);
    await a.commit({ header });
    const b = await upload(queue, large);
    await b.commit({ header });
    const rows = await sql.unsafe(
      `SELECT m.queue_id, m.content IS NOT NULL AS inline,
         (SELECT count(*)::int FROM ${schema}.chunks c WHERE c.queue_id = m.queue_id) AS chunks
       FROM ${schema}.messages m ORDER BY m.queue_id`,
    );
    const byId = new Map(rows.map((r) => [r.queue_id, r]));
    assert.deepEqual({ ...byId.get(a.queueId) }, { queue_id: a.queueId, inline: true, chunks: 0 });
    assert.equal(byId.get(b.queueId)?.inline, false);
    assert.ok(byId.get(b.queueId)?.chunks >= 3);
    const read = async (id: string) =>
      new Uint8Array(await new Response(queue.openContent(id)).arrayBuffer());
    assert.deepEqual(await read(a.queueId), new Uint8Array([...header, ...small]));
    assert.deepEqual(await read(b.queueId), new Uint8Array([...header, ...large]));
    const claims = await queue.claimDue({ now: Date.now() + 1000, limit: 10 });
    assert.equal(claims.length, 2);
    for (const claim of claims) {
      const final = await queue.recordAttempt(
        claim,
        [{ index: 0, status: "sent", reply: SENT }],
        Date.now(),
      );
      assert.equal(final?.recipients[0]?.status, "sent");
    }
    assert.equal(await queue.count(), 0);
    const [left] = await sql.unsafe(`SELECT count(*)::int AS n FROM ${schema}.chunks`);
    assert.equal(left?.n, 0);
  } finally {
    await sql.end();
    await queue.close();
  }
});

Deno.test("PgQueue: commits that arrive together share one transaction; a taken id fails only its own", async () => {
  const { url } = await pg();
  const schema = `batch_${++schemas}`;
  const queue = await PgQueue.open(url, { ...RETRY, schema });
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const body = new TextEncoder().encode("Subject: b\r\n\r\nbatch\r\n");
    const together = [];
    for (let i = 0; i < 20; i++) together.push(await upload(queue, body));
    await Promise.all(together.map((m) => m.commit()));
    // The first commit goes at once; those made meanwhile go together.
    const [tx] = await sql.unsafe(
      `SELECT count(DISTINCT xmin::text)::int AS n FROM ${schema}.messages`,
    );
    assert.ok(tx?.n <= 3, `${tx?.n} transactions for 20 commits`);

    const messages = [];
    for (let i = 0; i < 20; i++) messages.push(await upload(queue, body));
    // Another node committed the id of the fifth first.
    await sql.unsafe(
      `INSERT INTO ${schema}.messages (queue_id, envelope, recipients, client_address, arrival,
        size, next_attempt) VALUES ($1, '{}', '[]', 'x', 0, 0, 0)`,
      [messages[4]!.queueId],
    );
    const results = await Promise.allSettled(messages.map((m) => m.commit()));
    results.forEach((r, i) => {
      if (i === 4) assert.ok(r.status === "rejected" && r.reason instanceof QueueConflictError);
      else assert.equal(r.status, "fulfilled", `commit ${i}`);
    });
    await messages[4]!.abort();
    assert.equal(await queue.count(), 40);
    for (const [i, m] of messages.entries()) {
      if (i !== 4) assert.equal((await queue.get(m.queueId))?.queueId, m.queueId);
    }
  } finally {
    await sql.end();
    await queue.close();
  }
});

Deno.test("PgQueue: an attempt recorded on a message held during its delivery leaves it held", async () => {
  const { url } = await pg();
  const schema = `heldrec_${++schemas}`;
  const queue = await PgQueue.open(url, { ...RETRY, schema });
  try {
    const id = await enqueue(queue);
    const [claim] = await queue.claimDue({ now: Date.now(), limit: 1 });
    assert.equal(claim?.message.queueId, id);
    assert.ok(await queue.hold(id));
    const deferred = { code: 451, enhancedStatus: "4.4.1", text: "later" };
    const record = await queue.recordAttempt(claim!, [{
      index: 0,
      status: "deferred",
      reply: deferred,
    }], Date.now());
    assert.equal(record?.recipients[0]?.status, "deferred");
    assert.equal((await queue.get(id))?.held, true);
    assert.deepEqual(await queue.claimDue({ now: Date.now() + 86_400_000, limit: 1 }), []);
    // A second record with the same claim finds no lease: nothing written.
    assert.equal(
      await queue.recordAttempt(claim!, [{ index: 0, status: "sent", reply: SENT }], Date.now()),
      null,
    );
    assert.equal((await queue.get(id))?.recipients[0]?.status, "deferred");
  } finally {
    await queue.close();
  }
});

Deno.test("PgQueue: a store of the first layout is upgraded, and its chunked messages still read", async () => {
  const { url } = await pg();
  const schema = `upgrade_${++schemas}`;
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const first = await PgQueue.open(url, { ...RETRY, schema });
    const id = await enqueue(first);
    await first.close();
    // Back to the first layout: content in chunks, no content column.
    await sql.unsafe(`INSERT INTO ${schema}.chunks (queue_id, seq, data)
      SELECT queue_id, 0, content FROM ${schema}.messages`);
    await sql.unsafe(`ALTER TABLE ${schema}.messages DROP COLUMN content`);
    await sql.unsafe(`UPDATE ${schema}.schema_version SET version = 1`);
    const queue = await PgQueue.open(url, { ...RETRY, schema });
    try {
      const [row] = await sql.unsafe(`SELECT version FROM ${schema}.schema_version`);
      assert.equal(row?.version, SCHEMA_VERSION);
      assert.equal(await new Response(queue.openContent(id)).text(), "Subject: t\r\n\r\nHi\r\n");
      const [claim] = await queue.claimDue({ now: Date.now(), limit: 1 });
      await queue.recordAttempt(claim!, [{ index: 0, status: "sent", reply: SENT }], Date.now());
      const [left] = await sql.unsafe(`SELECT count(*)::int AS n FROM ${schema}.chunks`);
      assert.equal(left?.n, 0);
    } finally {
      await queue.close();
    }
  } finally {
    await sql.end();
  }
});

// Last: stops the cluster the tests above started.
Deno.test("PgQueue: (stop the test cluster)", async () => {
  if (cluster !== null) await (await cluster)[Symbol.asyncDispose]();
  cluster = null;
});
