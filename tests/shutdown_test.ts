// Graceful shutdown (SIGTERM): no new connections, 421 4.3.2 to idle
// sessions, a transaction in its data phase may finish within the grace
// period and gets its 250, and the process exits 0.
import assert from "node:assert/strict";
import { join } from "node:path";
import { maildirFiles, spawnServe, tempConfig } from "./_helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

class Line {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #buffer = "";
  constructor(conn: Deno.Conn) {
    this.#reader = conn.readable.getReader();
  }
  async reply(): Promise<string> {
    while (true) {
      const nl = this.#buffer.indexOf("\r\n");
      if (nl >= 0) {
        const line = this.#buffer.slice(0, nl);
        this.#buffer = this.#buffer.slice(nl + 2);
        if (line[3] !== "-") return line;
        continue;
      }
      const { value, done } = await this.#reader.read();
      if (done) return "";
      this.#buffer += decoder.decode(value);
    }
  }
}

Deno.test("SIGTERM lets a message in DATA finish, sends 421 4.3.2 to others and exits 0", async () => {
  const { dir, file } = await tempConfig(`
listeners: [{ address: 127.0.0.1, port: 0, mode: mx }]
local_domains: [example.test]
`);
  const serve = await spawnServe(file);
  try {
    const busy = await Deno.connect({ hostname: "127.0.0.1", port: serve.port });
    const busyReplies = new Line(busy);
    await busyReplies.reply();
    await busy.write(
      encoder.encode(
        "EHLO busy.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\n",
      ),
    );
    for (let i = 0; i < 3; i++) await busyReplies.reply();
    assert.match(await busyReplies.reply(), /^354 /);
    await busy.write(encoder.encode("Subject: in flight\r\n\r\nfirst half\r\n"));

    const idle = await Deno.connect({ hostname: "127.0.0.1", port: serve.port });
    const idleReplies = new Line(idle);
    await idleReplies.reply();
    await idle.write(encoder.encode("EHLO idle.test\r\n"));
    while (!(await idleReplies.reply()).startsWith("250 ")) { /* the EHLO reply */ }

    serve.child.kill("SIGTERM");
    assert.equal(await idleReplies.reply(), "421 4.3.2 Service shutting down, try again later");

    await new Promise((r) => setTimeout(r, 200));
    await busy.write(encoder.encode("second half\r\n.\r\n"));
    assert.match(await busyReplies.reply(), /^250 2\.0\.0 Ok: queued as /);
    await busy.write(encoder.encode("NOOP\r\n"));
    assert.equal(await busyReplies.reply(), "421 4.3.2 Service shutting down, try again later");
    busy.close();
    idle.close();

    const status = await serve.child.status;
    assert.equal(status.code, 0);
    await serve.kill();
    // Refused once stopped.
    await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port: serve.port }));
    // The acknowledged message is in the queue or already delivered; a restart finishes it.
    const again = await spawnServe(file);
    try {
      const mailbox = join(dir, "data", "mail", "example.test", "b");
      for (let i = 0; i < 100 && (await maildirFiles(mailbox)).length === 0; i++) {
        await new Promise((r) => setTimeout(r, 50));
      }
      const [only] = await maildirFiles(mailbox);
      assert.match(await Deno.readTextFile(only!), /first half\r\nsecond half\r\n$/);
    } finally {
      assert.equal(await again.stop(), 0);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
