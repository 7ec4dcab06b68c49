// `tern queue list` streams: its first line is out while most of the queue
// is still unread, so a deep queue (a million deferred messages) neither
// makes the operator wait for the whole store nor holds it in memory.
import assert from "node:assert/strict";
import { openQueue } from "../cli/_common.ts";
import type { Queue } from "../queue/queue.ts";
import { MAIN, tempConfig } from "./_helpers.ts";

const CONFIG = `
local_domains: [example.test]
queue: { retry: [1h] }
`;

/** Many more messages than the pipe, the lister's write buffer and its read-ahead hold. */
const MESSAGES = 4000;

async function enqueue(queue: Queue, now: number): Promise<string> {
  const to = "someone@example.net";
  const message = await queue.receive({
    envelope: {
      reversePath: "alice@example.test",
      forwardPaths: [to],
      body: "7BIT",
      smtputf8: false,
    },
    recipients: [{ address: to, originalRecipient: to, mailbox: null }],
    clientAddress: "127.0.0.1",
    now,
  });
  await message.write(new TextEncoder().encode("Subject: q\r\n\r\nx\r\n"));
  await message.commit();
  return message.queueId;
}

/** Reads from `reader` until `text` holds a whole line. */
async function firstLine(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  decoder: TextDecoder,
): Promise<string> {
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`tern queue list ended before its first line: ${text}`);
    text += decoder.decode(value, { stream: true });
  }
  return text;
}

Deno.test("queue list prints its first line before it has read the queue: later changes still show", async () => {
  const { dir, file, config } = await tempConfig(CONFIG);
  try {
    let queue = await openQueue(config);
    const ids: string[] = [];
    const start = Date.now() - 60_000;
    for (let group = 0; group < MESSAGES / 200; group++) {
      ids.push(
        ...await Promise.all(
          Array.from({ length: 200 }, (_, i) => enqueue(queue, start + group * 200 + i)),
        ),
      );
    }
    await queue.close();
    ids.sort();

    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--unstable-kv", MAIN, "queue", "list", "--config", file, "--json"],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stderr = new Response(child.stderr).text();
    const reader = child.stdout.getReader();
    const decoder = new TextDecoder();
    // Not reading on, the lister soon stops at a full pipe, far from the
    // end of the queue: a message queued now and the last one deleted now
    // must show in what it prints next, as they would not if it had read
    // the whole queue before its first line.
    let text = await firstLine(reader, decoder);
    queue = await openQueue(config);
    const added = await enqueue(queue, Date.now());
    assert.ok(await queue.delete(ids.at(-1)!));
    await queue.close();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    const { code } = await child.status;
    assert.equal(await stderr, "");
    assert.equal(code, 0);
    const listed = text.trim().split("\n").map((line) => JSON.parse(line).id as string);
    assert.deepEqual(listed, [...ids.slice(0, -1), added]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
