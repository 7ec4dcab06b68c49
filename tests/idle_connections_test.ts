// What an idle connection costs the server, and the duties that must hold
// all the same: the timeouts of RFC 5321 §4.5.3.2 (on one shared timer, not
// one per connection) and flow control (a client that sends faster than the
// store writes is stopped being read).
import assert from "node:assert/strict";
import { join } from "node:path";
import { python, readAll, ROOT, sinkServer } from "./_helpers.ts";
import { SmtpServer } from "../smtp/server.ts";
import { queuedReply, REPLIES } from "../smtp/reply.ts";

const encoder = new TextEncoder();

Deno.test("an idle connection after EHLO holds a few KiB of the server's heap", async () => {
  // In a process of its own, with the GC exposed: the server in it, the
  // clients in yet another (bench/idle.ts), so only the server is counted.
  const dir = await Deno.makeTempDir({ prefix: "tern-idle-heap-" });
  const script = join(dir, "heap.ts");
  await Deno.writeTextFile(
    script,
    `
import { SmtpServer } from ${JSON.stringify(join(ROOT, "smtp", "server.ts"))};
import { REPLIES } from ${JSON.stringify(join(ROOT, "smtp", "reply.ts"))};
import { IdleHolder } from ${JSON.stringify(join(ROOT, "bench", "idle.ts"))};
const gc = (globalThis as unknown as { gc: () => void }).gc;
const settle = async () => {
  for (let i = 0; i < 3; i++) { gc(); await new Promise((r) => setTimeout(r, 50)); }
  return Deno.memoryUsage().heapUsed;
};
const server = new SmtpServer({
  hostname: "mx.example.test", address: "127.0.0.1", port: 0,
  maxConnections: 1000, maxConnectionsPerIp: 1000,
  handlers: { recipient: () => REPLIES.recipientOk, open: () => REPLIES.storageFailed },
});
const { port } = await server.listen();
const warm = await IdleHolder.start(port, 20);
await warm.open();
await warm.close();
const holder = await IdleHolder.start(port, 300);
const before = await settle();
const open = await holder.open();
const after = await settle();
console.log("perConnection=" + (after - before) / open);
await holder.close();
await server.close(100);
`,
  );
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--v8-flags=--expose-gc", script],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    const perConnection = Number(/perConnection=([\d.]+)/.exec(text)?.[1]);
    assert.ok(
      Number.isFinite(perConnection),
      `no figure: ${text} ${new TextDecoder().decode(out.stderr)}`,
    );
    // A per-connection timer, a session object of closures and accessors and
    // eager buffers made it about 7.7 KiB; the socket itself is about 1.1.
    assert.ok(perConnection < 5 * 1024, `${(perConnection / 1024).toFixed(2)} KiB per connection`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("many idle connections each time out on their own, and a talking one does not", async () => {
  const server = sinkServer({ commandTimeout: 300, maxConnectionsPerIp: 100 });
  const { port } = await server.listen();
  try {
    const idle = await Promise.all(
      Array.from({ length: 60 }, () => Deno.connect({ hostname: "127.0.0.1", port })),
    );
    const talker = await Deno.connect({ hostname: "127.0.0.1", port });
    const talkerOut = readAll(talker);
    // NOOP every 100 ms for 900 ms: three command timeouts, each reset by a reply.
    for (let i = 0; i < 9; i++) {
      await talker.write(encoder.encode("NOOP\r\n"));
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const outs = await Promise.all(idle.map(readAll));
    for (const out of outs) {
      // No EHLO, so no enhanced status code (RFC 2034).
      assert.match(out, /^220 [^\r]*\r\n421 Timeout waiting for input, closing connection\r\n$/);
    }
    await talker.write(encoder.encode("QUIT\r\n"));
    const said = await talkerOut;
    assert.equal(said.match(/^250 /gm)?.length, 9, said);
    assert.match(said, /\r\n221 [^\r]*\r\n$/);
  } finally {
    await server.close(100);
  }
});

Deno.test("a client that sends faster than the store writes is no longer read", async () => {
  // The store takes the first chunk and never finishes writing it: the
  // server must stop reading, so what the client manages to send is bounded
  // by the sockets' buffers, not by what it has to send.
  const stalled: (() => void)[] = [];
  const server = new SmtpServer({
    hostname: "mx.example.test",
    address: "127.0.0.1",
    port: 0,
    maxMessageSize: 0,
    handlers: {
      recipient: () => REPLIES.recipientOk,
      open: () =>
        Promise.resolve({
          write: () => new Promise<void>((resolve) => stalled.push(resolve)),
          commit: () => Promise.resolve(queuedReply("Q1")),
          abort: () => Promise.resolve(),
        }),
    },
  });
  const { port } = await server.listen();
  try {
    const sent = Number(
      await python(
        `
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.recv(1000)
s.sendall(b"EHLO c.test\\r\\nMAIL FROM:<a@c.test>\\r\\nRCPT TO:<b@x.test>\\r\\nDATA\\r\\n")
got = b""
while b"354" not in got:
    got += s.recv(1000)
line = b"x" * 76 + b"\\r\\n"
block = line * 840
s.settimeout(0.05)
sent, deadline = 0, time.time() + 1.5
while time.time() < deadline and sent < 64 * 2**20:
    try:
        sent += s.send(block)
    except socket.timeout:
        pass
print(sent)
s.close()
`,
        [String(port)],
      ),
    );
    assert.ok(stalled.length >= 1, "the store was asked to write");
    assert.ok(sent < 32 * 2 ** 20, `the client sent ${sent} octets while the store was stalled`);
  } finally {
    for (const resolve of stalled) resolve();
    await server.close(100);
  }
});
