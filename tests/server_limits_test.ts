// The socket adapter's own duties: timeouts (RFC 5321 §4.5.3.2), connection
// limits, and streaming large content without holding it.
import assert from "node:assert/strict";
import { join } from "node:path";
import { python, readAll, sinkServer, splitDelivered, startMta, waitForMail } from "./_helpers.ts";

Deno.test("a silent client is closed with 421 4.4.2 after the command timeout", async () => {
  const server = sinkServer({ commandTimeout: 300 });
  const { port } = await server.listen();
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(new TextEncoder().encode("EHLO c.test\r\n"));
    const out = await readAll(conn);
    assert.match(out, /\r\n421 4\.4\.2 Timeout waiting for input, closing connection\r\n$/);
  } finally {
    await server.close(100);
  }
});

Deno.test("a client that stalls in the data phase is closed after the data timeout", async () => {
  const server = sinkServer({ commandTimeout: 5000, dataTimeout: 300 });
  const { port } = await server.listen();
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(
      new TextEncoder().encode(
        "EHLO c.test\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\nhalf a line",
      ),
    );
    const out = await readAll(conn);
    assert.match(out, /354 [^\r]*\r\n421 4\.4\.2 [^\r]*\r\n$/);
  } finally {
    await server.close(100);
  }
});

Deno.test("after the data phase, the shorter command timeout applies again", async () => {
  // The timer set for the data phase would fire after a minute; the idle
  // client after the message must be closed after the command timeout.
  const server = sinkServer({ commandTimeout: 300, dataTimeout: 60_000 });
  const { port } = await server.listen();
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(
      new TextEncoder().encode(
        "EHLO c.test\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\nSubject: x\r\n",
      ),
    );
    await new Promise((resolve) => setTimeout(resolve, 400)); // past the command timeout: in data, no harm
    await conn.write(new TextEncoder().encode("\r\nbody\r\n.\r\n"));
    let guard: ReturnType<typeof setTimeout> | undefined;
    const out = await Promise.race([
      readAll(conn),
      new Promise<string>((resolve) => (guard = setTimeout(() => resolve("(still open)"), 20_000))),
    ]);
    clearTimeout(guard);
    if (out === "(still open)") conn.close();
    assert.match(out, /\r\n250 [^\r]*\r\n421 4\.4\.2 [^\r]*\r\n$/);
  } finally {
    await server.close(100);
  }
});

Deno.test("connections over the per-address limit get 421 4.7.0 and are closed", async () => {
  const server = sinkServer({ maxConnectionsPerIp: 2 });
  const { port } = await server.listen();
  const conns: Deno.Conn[] = [];
  try {
    for (let i = 0; i < 2; i++) conns.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    // Let the server register both.
    const banner = new Uint8Array(100);
    for (const c of conns) await c.read(banner);
    const third = await Deno.connect({ hostname: "127.0.0.1", port });
    assert.equal(await readAll(third), "421 4.7.0 Too many connections, try again later\r\n");
  } finally {
    for (const c of conns) c.close();
    await server.close(100);
  }
});

Deno.test("a 20 MiB message is streamed into the queue and delivered byte-exact", async () => {
  await using t = await startMta(
    `local_domains: [example.test]\nlimits: { max_message_size: 64M }\n`,
  );
  const path = join(t.dir, "big.eml");
  await python(
    `
import sys, random
random.seed(7)
with open(sys.argv[1], "wb") as f:
    f.write(b"Subject: big\\r\\n\\r\\n")
    for i in range(20 * 1024 * 1024 // 100):
        f.write(bytes(random.choice(b"abcdefghij. ") for _ in range(98)) + b"\\r\\n")
`,
    [path],
  );
  await python(
    `
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1])) as s:
    s.sendmail("s@c.test", ["big@example.test"], open(sys.argv[2], "rb").read())
`,
    [String(t.port), path],
  );
  const [mail] = await waitForMail(join(t.dir, "data", "mail", "example.test", "big"), 1, 60_000);
  const sent = await Deno.readFile(path);
  const { rest } = splitDelivered(mail!);
  assert.equal(rest.length, sent.length);
  assert.ok(rest.every((b, i) => b === sent[i]), "content differs");
});
