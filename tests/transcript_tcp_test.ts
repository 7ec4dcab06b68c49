// The transcript fixtures again, this time against a real server over TCP.
import assert from "node:assert/strict";
import { SmtpServer } from "../smtp/server.ts";
import { REPLIES } from "../smtp/reply.ts";
import { assertServerReplies, loadTranscripts, queuedAs, recipientPolicy } from "./_transcript.ts";

/**
 * Sends the client's bytes once the greeting has arrived (so the client is
 * not an early talker, RFC 5321 §4.3.1) and returns all the server said.
 */
async function exchange(port: number, bytes: Uint8Array): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const { promise: greeted, resolve: greet } = Promise.withResolvers<void>();
  const reading = (async () => {
    let out = "";
    const decoder = new TextDecoder();
    for await (const chunk of conn.readable) {
      out += decoder.decode(chunk, { stream: true });
      if (out.includes("\r\n")) greet();
    }
    greet(); // closed before a whole line: the comparison below says what came
    return out;
  })();
  await greeted;
  await conn.write(bytes);
  return await reading;
}

for (const t of await loadTranscripts()) {
  Deno.test(`transcript ${t.name} gets the same replies over TCP`, async () => {
    let queued = 0;
    const server = new SmtpServer({
      hostname: "mx.example.test",
      address: "127.0.0.1",
      port: 0,
      ...t.options,
      handlers: {
        recipient: recipientPolicy,
        open: () =>
          Promise.resolve({
            write: () => Promise.resolve(),
            commit: () => Promise.resolve(queuedAs(++queued)),
            abort: () => Promise.resolve(),
          }),
      },
    });
    const { port } = await server.listen();
    try {
      assertServerReplies(await exchange(port, t.client), t);
    } finally {
      await server.close(1000);
    }
  });
}

Deno.test("a store that fails at commit gets 451 4.3.0, never 250", async () => {
  const server = new SmtpServer({
    hostname: "mx.example.test",
    address: "127.0.0.1",
    port: 0,
    handlers: {
      recipient: () => REPLIES.recipientOk,
      open: () =>
        Promise.resolve({
          write: () => Promise.resolve(),
          commit: () => Promise.reject(new Error("disk full")),
          abort: () => Promise.resolve(),
        }),
    },
  });
  const { port } = await server.listen();
  try {
    const out = await exchange(
      port,
      new TextEncoder().encode(
        "EHLO c.test\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\nx\r\n.\r\nQUIT\r\n",
      ),
    );
    assert.match(out, /\r\n451 4\.3\.0 [^\r]*\r\n221 2\.0\.0 Bye\r\n$/);
  } finally {
    await server.close(1000);
  }
});
