/**
 * The tests every {@linkcode Queue} implementation must pass, whatever its
 * store: receive and commit, claim what is due, record attempts on the retry
 * schedule, hold, release, delete, flush, list, recover after an aborted
 * upload, and the typed errors. A store's own test file calls
 * {@linkcode queueSuite} with a factory that opens a fresh, empty queue;
 * tests of what only one store does (its key layout, its files) stay in that
 * file.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { Logger } from "../log/logger.ts";
import { type IncomingMessage, MAX_COMMIT_HEADER, MAX_STATE_VALUE, type Queue } from "./queue.ts";
import type { QueueRecipient, RecipientOutcome } from "./types.ts";
import { QueueNotFoundError, QueueUnavailableError } from "./errors.ts";

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;
const T0 = Date.UTC(2025, 0, 6, 9, 0, 0);

/** What the suite asks of a new queue: the settings every store takes. */
export interface QueueSuiteOptions {
  /** Waits between attempts in ms; the last one repeats. */
  readonly retry: readonly number[];
  /** Give-up time in ms. */
  readonly maxAge: number;
  /** How long a claim lasts unless renewed, ms. */
  readonly leaseMs: number;
  /** Where events go. */
  readonly logger?: Logger;
}

/** A fresh, empty queue, and how to dispose of it (close the queue, delete its store). */
export interface OpenedQueue {
  /** The queue under test. */
  readonly queue: Queue;
  /** Closes the queue (if the test did not) and removes its store. */
  dispose(): Promise<void>;
}

/** Opens a fresh, empty queue for one test. */
export type QueueFactory = (options: QueueSuiteOptions) => Promise<OpenedQueue>;

const OPTIONS: QueueSuiteOptions = {
  retry: [1 * MINUTE, 5 * MINUTE, 60 * MINUTE],
  maxAge: 5 * DAY,
  leaseMs: MINUTE,
};

function recipients(n: number): QueueRecipient[] {
  return Array.from({ length: n }, (_, i) => ({
    address: `user${i}@example.net`,
    originalRecipient: `user${i}@example.net`,
    mailbox: null,
  }));
}

function outcome(index: number, status: RecipientOutcome["status"]): RecipientOutcome {
  const code = status === "sent" ? 250 : status === "deferred" ? 451 : 550;
  const enhancedStatus = status === "sent" ? "2.0.0" : status === "deferred" ? "4.4.1" : "5.1.1";
  return { index, status, reply: { code, enhancedStatus, text: `reply ${code}` } };
}

async function receive(
  queue: Queue,
  content: Uint8Array,
  rcpts = 1,
  now = T0,
): Promise<IncomingMessage> {
  const list = recipients(rcpts);
  const message = await queue.receive({
    envelope: {
      reversePath: "alice@example.test",
      forwardPaths: list.map((r) => r.originalRecipient),
      body: "8BITMIME",
      smtputf8: false,
    },
    recipients: list,
    clientAddress: "192.0.2.7",
    now,
  });
  await message.write(content);
  return message;
}

async function enqueue(queue: Queue, rcpts = 1, now = T0): Promise<string> {
  const message = await receive(
    queue,
    new TextEncoder().encode("Subject: t\r\n\r\nHi\r\n"),
    rcpts,
    now,
  );
  await message.commit();
  return message.queueId;
}

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

async function listIds(queue: Queue): Promise<string[]> {
  const ids: string[] = [];
  for await (const message of queue.list()) ids.push(message.queueId);
  return ids;
}

/**
 * Registers the shared queue tests with `Deno.test`, each on a fresh queue
 * from `open`.
 *
 * @param name The implementation's name, prefixed to every test's name.
 * @param open Opens a fresh, empty queue.
 */
export function queueSuite(name: string, open: QueueFactory): void {
  const test = (title: string, fn: (queue: Queue) => Promise<void>): void => {
    Deno.test(`${name}: ${title}`, async () => {
      const opened = await open(OPTIONS);
      try {
        await fn(opened.queue);
      } finally {
        await opened.dispose();
      }
    });
  };

  test("a committed message is listed, counted and read back byte for byte", async (queue) => {
    const content = new Uint8Array(3 * queue.inMemoryContentLimit + 17);
    for (let i = 0; i < content.length; i++) content[i] = (i * 31) & 0xff;
    const message = await receive(queue, content, 2);
    assert.equal(message.size, content.length);
    await message.commit();
    const stored = await queue.get(message.queueId);
    assert.equal(stored?.size, content.length);
    assert.deepEqual(stored?.recipients.map((r) => r.status), ["queued", "queued"]);
    assert.deepEqual(await listIds(queue), [message.queueId]);
    assert.equal(await queue.count(), 1);
    assert.deepEqual(await readAll(queue.openContent(message.queueId)), content);
  });

  test("an aborted upload leaves nothing, and recover finds nothing to clean", async (queue) => {
    const message = await receive(queue, new Uint8Array(2 * queue.inMemoryContentLimit + 5));
    await message.abort();
    await message.abort(); // a second time does nothing
    await assert.rejects(message.commit(), /already aborted/);
    assert.equal(await queue.count(), 0);
    assert.deepEqual(await queue.recover(T0 + DAY), {
      incompleteRemoved: 0,
      leasesExpired: 0,
      spoolOrphansRemoved: 0,
    });
    assert.deepEqual(await listIds(queue), []);
  });

  test("claimDue takes due messages once, oldest first, up to the limit", async (queue) => {
    const first = await enqueue(queue, 1, T0);
    const second = await enqueue(queue, 1, T0 + 1);
    await enqueue(queue, 1, T0 + 2 * MINUTE); // not due yet
    const claims = await queue.claimDue({ now: T0 + MINUTE, limit: 5 });
    assert.deepEqual(claims.map((c) => c.message.queueId), [first, second]);
    assert.ok(claims.every((c) => !c.recovered));
    assert.deepEqual(await queue.claimDue({ now: T0 + MINUTE, limit: 5 }), []);
  });

  test("a deferral follows the retry schedule; sent and bounced remove the message", async (queue) => {
    const id = await enqueue(queue, 2);
    const [claim] = await queue.claimDue({ now: T0, limit: 1 });
    assert.ok(claim);
    const record = await queue.recordAttempt(
      claim,
      [outcome(0, "sent"), outcome(1, "deferred")],
      T0,
    );
    assert.equal(record?.nextAttempt, T0 + MINUTE);
    assert.deepEqual(record?.recipients.map((r) => r.status), ["sent", "deferred"]);
    assert.deepEqual(await queue.claimDue({ now: T0 + MINUTE - 1, limit: 1 }), []);
    const [again] = await queue.claimDue({ now: T0 + MINUTE, limit: 1 });
    assert.ok(again);
    assert.equal(again.message.recipients[1]?.attempts, 1);
    const final = await queue.recordAttempt(again, [outcome(1, "bounced")], T0 + MINUTE);
    assert.deepEqual(final?.recipients.map((r) => r.status), ["sent", "bounced"]);
    assert.equal(await queue.get(id), null);
    assert.equal(await queue.count(), 0);
  });

  test("past max_age a deferred recipient bounces, saying it gave up", async (queue) => {
    await enqueue(queue);
    const later = T0 + 6 * DAY;
    const [claim] = await queue.claimDue({ now: later, limit: 1 });
    assert.ok(claim);
    const final = await queue.recordAttempt(claim, [outcome(0, "deferred")], later);
    assert.equal(final?.recipients[0]?.status, "bounced");
    assert.match(final?.recipients[0]?.lastReply?.text ?? "", /gave up after 6d 0h/);
    assert.equal(await queue.count(), 0);
  });

  test("commitAndClaim claims at once; unclaim gives it back unattempted", async (queue) => {
    const message = await receive(queue, new TextEncoder().encode("x\r\n"));
    const claim = await message.commitAndClaim(T0);
    assert.deepEqual(claim.content, new TextEncoder().encode("x\r\n"));
    assert.deepEqual(await queue.claimDue({ now: T0, limit: 1 }), []);
    assert.ok(await queue.isClaimCurrent(claim));
    assert.ok(await queue.renewLease(claim, T0 + 1));
    assert.ok(await queue.unclaim(claim));
    assert.equal(await queue.unclaim(claim), false);
    const [again] = await queue.claimDue({ now: T0, limit: 1 });
    assert.equal(again?.recovered, false);
    assert.equal(again?.message.recipients[0]?.attempts, 0);
  });

  test("a commit header goes on top of the content, in reads, claims and size", async (queue) => {
    const encode = (text: string) => new TextEncoder().encode(text);
    const header = encode("Authentication-Results: mx.example.test; spf=pass\r\n");
    const big = new Uint8Array(200_000).fill(0x61); // spooled, not one chunk
    for (const [content, claimed] of [[encode("x\r\n"), true], [big, false]] as const) {
      const message = await receive(queue, content);
      const expected = new Uint8Array([...header, ...content]);
      if (claimed) {
        const claim = await message.commitAndClaim(T0, { header });
        assert.deepEqual(claim.content, expected);
        assert.equal(claim.message.size, expected.length);
      } else {
        await message.commit({ header });
      }
      assert.equal((await queue.get(message.queueId))?.size, expected.length);
      assert.deepEqual(await readAll(queue.openContent(message.queueId)), expected);
    }
  });

  test("state is kept, replaced and removed; sizes are checked", async (queue) => {
    assert.equal(await queue.getState("mta-sts/example.org"), null);
    await queue.setState("mta-sts/example.org", '{"mode":"testing"}');
    await queue.setState("mta-sts/example.org", '{"mode":"enforce"}');
    assert.equal(await queue.getState("mta-sts/example.org"), '{"mode":"enforce"}');
    await queue.setState("mta-sts/example.org", null);
    assert.equal(await queue.getState("mta-sts/example.org"), null);
    await assert.rejects(queue.setState("x", "v".repeat(MAX_STATE_VALUE + 1)), RangeError);
    await assert.rejects(queue.setState("", "v"), RangeError);
    assert.equal(await queue.count(), 0);
  });

  test("a commit header over the limit is refused and nothing is stored", async (queue) => {
    const message = await receive(queue, new TextEncoder().encode("x\r\n"));
    await assert.rejects(
      message.commit({ header: new Uint8Array(MAX_COMMIT_HEADER + 1) }),
      RangeError,
    );
    assert.equal(await queue.count(), 0);
  });

  test("an expired lease makes the message claimable again, marked recovered", async (queue) => {
    await enqueue(queue);
    const [first] = await queue.claimDue({ now: T0, limit: 1 });
    assert.ok(first);
    assert.deepEqual(await queue.claimDue({ now: T0 + 1, limit: 1 }), []);
    const [second] = await queue.claimDue({ now: T0 + queue.leaseMs, limit: 1 });
    assert.equal(second?.recovered, true);
    assert.equal(await queue.recordAttempt(first, [outcome(0, "sent")], T0 + queue.leaseMs), null);
  });

  test("hold keeps a message from claims and flush until release", async (queue) => {
    const id = await enqueue(queue);
    assert.ok(await queue.hold(id));
    assert.equal((await queue.get(id))?.held, true);
    assert.deepEqual(await queue.claimDue({ now: T0 + DAY, limit: 1 }), []);
    assert.equal(await queue.flush(T0), 0);
    assert.equal(await queue.flushOne(id, T0), "held");
    assert.ok(await queue.release(id));
    assert.equal((await queue.claimDue({ now: T0, limit: 1 })).length, 1);
  });

  test("a message committed held is listed held, never claimed, and release frees it", async (queue) => {
    const incoming = await receive(queue, new TextEncoder().encode("Subject: q\r\n\r\nbody\r\n"));
    await assert.rejects(incoming.commitAndClaim(T0, { hold: true }), RangeError);
    await incoming.commit({ hold: true });
    const id = incoming.queueId;
    assert.equal((await queue.get(id))?.held, true);
    assert.deepEqual((await Array.fromAsync(queue.list())).map((m) => [m.queueId, m.held]), [[
      id,
      true,
    ]]);
    assert.deepEqual(await queue.claimDue({ now: T0 + DAY, limit: 1 }), []);
    assert.equal(await queue.flushOne(id, T0), "held");
    assert.ok(await queue.release(id));
    const [claim] = await queue.claimDue({ now: T0, limit: 1 });
    assert.equal(claim?.message.queueId, id);
  });

  test("flushOne makes a deferred message due now, and says when it is delivering", async (queue) => {
    const id = await enqueue(queue);
    const [claim] = await queue.claimDue({ now: T0, limit: 1 });
    assert.ok(claim);
    assert.equal(await queue.flushOne(id, T0 + 1), "delivering");
    await queue.recordAttempt(claim, [outcome(0, "deferred")], T0 + 1);
    assert.equal(await queue.flushOne(id, T0 + 2), "due");
    assert.equal((await queue.claimDue({ now: T0 + 2, limit: 1 })).length, 1);
  });

  test("delete removes a message, even during its delivery", async (queue) => {
    const id = await enqueue(queue);
    const [claim] = await queue.claimDue({ now: T0, limit: 1 });
    assert.ok(claim);
    assert.ok(await queue.delete(id));
    assert.equal(await queue.isClaimCurrent(claim), false);
    assert.equal(await queue.recordAttempt(claim, [outcome(0, "deferred")], T0), null);
    assert.equal(await queue.count(), 0);
  });

  test("an unknown id: false, null, unknown, or a QueueNotFoundError", async (queue) => {
    const id = "0000000000ZZZZ";
    assert.equal(await queue.get(id), null);
    assert.equal(await queue.hold(id), false);
    assert.equal(await queue.release(id), false);
    assert.equal(await queue.delete(id), false);
    assert.equal(await queue.flushOne(id, T0), "unknown");
    const error = await readAll(queue.openContent(id)).then(() => null, (e: unknown) => e);
    assert.ok(error instanceof QueueNotFoundError, String(error));
    assert.equal(error.queueId, id);
    assert.match(error.message, /no such message/);
  });

  test("a message with no recipients is refused with a RangeError", async (queue) => {
    await assert.rejects(
      queue.receive({
        envelope: { reversePath: "", forwardPaths: [], body: "7BIT", smtputf8: false },
        recipients: [],
        clientAddress: "local",
        now: T0,
      }),
      RangeError,
    );
  });

  test("a closed queue throws QueueUnavailableError", async (queue) => {
    await queue.close();
    await queue.close(); // a second time does nothing
    assert.throws(() => queue.openContent("0000000000ZZZZ"), QueueUnavailableError);
    await assert.rejects(queue.count(), QueueUnavailableError);
    await assert.rejects(queue.count(), /Cannot use the queue: it is closed/);
    await assert.rejects(queue.claimDue({ now: T0, limit: 1 }), QueueUnavailableError);
  });
}
