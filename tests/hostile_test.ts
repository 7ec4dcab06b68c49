// Hostile clients over real sockets: the server stays up, its memory stays
// bounded, and a normal client still gets its mail through. Figures are
// printed; the bounds asserted are loose on purpose (they catch a server that
// buffers what it should discard, not a slow machine).
import assert from "node:assert/strict";
import { rawExchange, startMta } from "./_helpers.ts";

const CONFIG = `
local_domains: [example.test]
limits: { max_connections: 3000, max_connections_per_ip: 3000 }
`;
const MiB = 1024 * 1024;

function rss(): number {
  return Deno.memoryUsage().rss;
}

/** One ordinary transaction; returns the milliseconds it took. */
async function normalTransaction(port: number): Promise<number> {
  const started = performance.now();
  const out = await rawExchange(
    port,
    "EHLO ok.test\r\nMAIL FROM:<a@ok.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\nSubject: ok\r\n\r\nfine\r\n.\r\nQUIT\r\n",
  );
  assert.match(out, /250 2\.0\.0 Ok: queued as /);
  return performance.now() - started;
}

Deno.test("a 1 MB line, NUL bytes and invalid UTF-8 get clear errors and the session goes on", async () => {
  await using t = await startMta(CONFIG);
  const bytes = new Uint8Array([
    ...new TextEncoder().encode("EHLO h.test\r\nNOOP " + "x".repeat(MiB) + "\r\n"),
    ...new TextEncoder().encode("MAIL FROM:<a\u0000b@x.test>\r\n"),
    ...new TextEncoder().encode("MAIL FROM:<"),
    0xff,
    0xfe,
    ...new TextEncoder().encode("@x.test>\r\nNOOP\r\nQUIT\r\n"),
  ]);
  const out = await rawExchange(t.port, bytes);
  const lines = out.trim().split("\r\n").filter((l) => !l.startsWith("250-"));
  assert.deepEqual(lines.slice(1).map((l) => l.slice(0, 9)), [
    "250 HELP",
    "500 5.5.2",
    "501 5.1.7",
    "500 5.5.2",
    "250 2.0.0",
    "221 2.0.0",
  ]);
});

Deno.test("10,000 RCPT commands are answered, the excess with 452, and the message still goes through", async () => {
  await using t = await startMta(CONFIG);
  let script = "EHLO h.test\r\nMAIL FROM:<a@x.test>\r\n";
  for (let i = 0; i < 10_000; i++) script += `RCPT TO:<u${i}@example.test>\r\n`;
  script += "DATA\r\nSubject: many\r\n\r\nx\r\n.\r\nQUIT\r\n";
  const before = rss();
  const out = await rawExchange(t.port, script);
  console.log(`10,000 RCPT: rss grew ${((rss() - before) / MiB).toFixed(1)} MiB`);
  assert.equal(out.match(/^250 2\.1\.5 /gm)?.length, 100);
  assert.equal(out.match(/^452 4\.5\.3 /gm)?.length, 9_900);
  assert.match(out, /250 2\.0\.0 Ok: queued as \S+\r\n221 /);
});

Deno.test("1,000 idle connections and slowloris clients do not stop a normal client", async () => {
  await using t = await startMta(CONFIG);
  const before = rss();
  const idle: Deno.Conn[] = [];
  for (let i = 0; i < 1000; i++) {
    const c = await Deno.connect({ hostname: "127.0.0.1", port: t.port });
    await c.write(new TextEncoder().encode("EHLO idle.test\r\n"));
    idle.push(c);
  }
  // Slowloris: 50 clients each dribbling a command one byte at a time.
  let dribbling = true;
  const slow = Array.from({ length: 50 }, async () => {
    const c = await Deno.connect({ hostname: "127.0.0.1", port: t.port });
    const line = new TextEncoder().encode("NOOP " + "z".repeat(5000));
    for (let i = 0; dribbling && i < line.length; i++) {
      try {
        await c.write(line.subarray(i, i + 1));
      } catch {
        break;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    c.close();
  });
  await new Promise((r) => setTimeout(r, 500));
  const times: number[] = [];
  for (let i = 0; i < 5; i++) times.push(await normalTransaction(t.port));
  const peak = rss();
  dribbling = false;
  await Promise.all(slow);
  for (const c of idle) c.close();
  console.log(
    `1,000 idle + 50 slowloris: rss grew ${((peak - before) / MiB).toFixed(1)} MiB ` +
      `(${((peak - before) / 1050 / 1024).toFixed(1)} KiB per connection, client side included); ` +
      `normal transactions took ${times.map((x) => x.toFixed(0)).join(", ")} ms`,
  );
  assert.ok(Math.max(...times) < 5000, "a normal client was held up for seconds");
  assert.ok(peak - before < 512 * MiB, "memory grew without bound");
});
