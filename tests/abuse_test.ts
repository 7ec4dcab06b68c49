// Abuse limits over real sockets: early talkers, slow clients (slowloris, in
// commands and in data), clients that never read, bad commands, connections
// per address, and password guessing (a growing delay, a disconnect, a
// lockout per address across connections). And AUTH secrets stay out of logs.
import assert from "node:assert/strict";
import { hashPassword } from "../config/password.ts";
import { MemoryLogger } from "../log/logger.ts";
import { Mta } from "../mta/mta.ts";
import { REPLIES } from "../smtp/reply.ts";
import { type ServerLogEvent, SmtpServer } from "../smtp/server.ts";
import { rawExchange, sinkServer, tempConfig, waitFor } from "./_helpers.ts";
import { CERT, plainResponse, TestClient } from "./_tls.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

async function startMtaWith(body: string) {
  const { dir, config } = await tempConfig(body);
  const logger = new MemoryLogger();
  const mta = await Mta.start(config, { logger, pollMs: 60_000 });
  return {
    mta,
    logger,
    port: (mode: string, address = "127.0.0.1") =>
      mta.listeners.find((l) => l.mode === mode && l.address === address)!.port,
    async [Symbol.asyncDispose]() {
      await mta.stop(1000);
      await Deno.remove(dir, { recursive: true });
    },
  };
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    closeQuietly(conn);
  } catch {
    // already closed by the server
  }
}

/** Reads until the server closes, or `ms` pass; the text and when it closed. */
async function readUntilClosed(
  conn: Deno.Conn,
  ms: number,
): Promise<{ text: string; closedAt: number | null }> {
  let text = "";
  const reader = conn.readable.getReader();
  const deadline = Date.now() + ms;
  try {
    while (true) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), Math.max(0, deadline - Date.now()));
      });
      const r = await Promise.race([reader.read(), timeout]).catch(() => ({ done: true as const }));
      clearTimeout(timer);
      if (r === "timeout") return { text, closedAt: null };
      if (r.done) return { text, closedAt: Date.now() };
      text += decoder.decode(r.value, { stream: true });
    }
  } finally {
    reader.releaseLock();
  }
}

// --- early talkers ------------------------------------------------------------

Deno.test("mx: a client that talks before the banner is refused with 421 4.7.0; a patient one waits the delay", async () => {
  await using t = await startMtaWith(`
listeners: [{ address: 127.0.0.1, port: 0, mode: mx }]
relay: { trusted_networks: [] }
limits: { greeting_delay: 400ms }
`);
  const early = await Deno.connect({ hostname: "127.0.0.1", port: t.port("mx") });
  await early.write(encoder.encode("EHLO bot.test\r\nMAIL FROM:<spam@bot.test>\r\n"));
  const refused = await readUntilClosed(early, 5000);
  closeQuietly(early);
  assert.equal(
    refused.text,
    "421 You talked before the greeting (RFC 5321 §4.3.1), closing connection\r\n",
  );
  assert.ok(t.logger.records.some((r) => r.event === "session.refused"));

  const began = Date.now();
  const patient = await TestClient.connect(t.port("mx"));
  const waited = Date.now() - began;
  try {
    assert.match(patient.received, /^220 mx\.example\.test ESMTP\r\n$/);
    assert.ok(waited >= 350, `banner after ${waited} ms`);
    assert.match((await patient.command("EHLO client.test"))!, /^250-/);
  } finally {
    patient.close();
  }
});

Deno.test("the greeting delay spares trusted clients and submission listeners", async () => {
  await using t = await startMtaWith(`
listeners:
  - { address: 127.0.0.1, port: 0, mode: mx }
  - { address: 127.0.0.1, port: 0, mode: submissions }
tls: { cert: "${CERT.cert}", key: "${CERT.key}" }
limits: { greeting_delay: 5s }
`);
  for (const [mode, implicitTls] of [["mx", false], ["submissions", true]] as const) {
    const began = Date.now();
    const client = await TestClient.connect(t.port(mode), { implicitTls });
    client.close();
    assert.ok(Date.now() - began < 2000, `${mode}: banner after ${Date.now() - began} ms`);
  }
});

// --- slow clients ---------------------------------------------------------------

Deno.test("slowloris: a client dribbling a byte at a time without ending a command is cut at the command timeout", async () => {
  const server = sinkServer({ commandTimeout: 400 });
  const { port } = await server.listen();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  let dribbling = true;
  const dribble = (async () => {
    for (let i = 0; dribbling && i < 40; i++) {
      await new Promise((r) => setTimeout(r, 50));
      try {
        await conn.write(encoder.encode("x"));
      } catch {
        return; // closed by the server
      }
    }
  })();
  try {
    const began = Date.now();
    const { text, closedAt } = await readUntilClosed(conn, 3000);
    assert.ok(closedAt !== null, "still open after 3 s of dribbling");
    assert.ok(closedAt - began < 1500, `closed after ${closedAt - began} ms`);
    // No EHLO was ever finished, so no enhanced status code (RFC 2034).
    assert.match(text, /^220 [^\r]*\r\n421 Timeout waiting for input, closing connection\r\n$/);
    await waitFor(() => server.connectionCount === 0, 2000);
  } finally {
    dribbling = false;
    await dribble;
    closeQuietly(conn);
    await server.close(100);
  }
});

Deno.test("slowloris in DATA: content dribbled a byte at a time is cut at the data timeout", async () => {
  const server = sinkServer({ commandTimeout: 5000, dataTimeout: 400 });
  const { port } = await server.listen();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(
    encoder.encode("EHLO c.test\r\nMAIL FROM:<a@c.test>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n"),
  );
  let dribbling = true;
  const dribble = (async () => {
    for (let i = 0; dribbling && i < 60; i++) {
      await new Promise((r) => setTimeout(r, 50));
      try {
        await conn.write(encoder.encode("y"));
      } catch {
        return;
      }
    }
  })();
  try {
    const { text, closedAt } = await readUntilClosed(conn, 4000);
    assert.ok(closedAt !== null, "still open after 4 s of dribbling");
    assert.match(text, /354 [^\r]*\r\n421 4\.4\.2 [^\r]*\r\n$/);
  } finally {
    dribbling = false;
    await dribble;
    closeQuietly(conn);
    await server.close(100);
  }
});

Deno.test("a client that pipelines commands and never reads the replies is cut, not waited for", async () => {
  const server = sinkServer({ commandTimeout: 500 });
  const { port } = await server.listen();
  try {
    // A small receive window, 4 MB of NOOPs, and no reading: our writes block.
    const child = new Deno.Command("python3", {
      args: [
        "-c",
        `
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", int(sys.argv[1])))
s.settimeout(4)
try:
    s.sendall(b"NOOP\\r\\n" * 700000)
except OSError:
    pass
time.sleep(2)
`,
        String(port),
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
    await waitFor(() => server.connectionCount === 1, 3000);
    await waitFor(() => server.connectionCount === 0, 4000);
    await child.status;
  } finally {
    await server.close(100);
  }
});

Deno.test("the session's input stays bounded while a line grows without end", async () => {
  const events: ServerLogEvent[] = [];
  const server = sinkServer({ commandTimeout: 2000, onEvent: (e) => events.push(e) });
  const { port } = await server.listen();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const chunk = encoder.encode("z".repeat(64 * 1024));
    for (let i = 0; i < 64; i++) await conn.write(chunk); // 4 MiB, no line end
    await conn.write(encoder.encode("\r\nNOOP\r\nQUIT\r\n"));
    const { text } = await readUntilClosed(conn, 5000);
    assert.match(
      text,
      /\r\n500 Line too long \(see RFC 5321 §4\.5\.3\.1\)\r\n250 Ok\r\n221 Bye\r\n$/,
    );
  } finally {
    closeQuietly(conn);
    await server.close(100);
  }
});

// --- bad commands and connections ---------------------------------------------------

Deno.test("limits.max_bad_commands closes a session with 421 after that many refused commands", async () => {
  await using t = await startMtaWith(`
listeners: [{ address: 127.0.0.1, port: 0, mode: mx }]
limits: { max_bad_commands: 3 }
`);
  const out = await rawExchange(
    t.port("mx"),
    "EHLO c.test\r\nFOO\r\nBAR\r\nMAIL FROM:<bad\r\nNOOP\r\n",
  );
  assert.match(
    out,
    /500 5\.5\.2 Command not recognized\r\n500 5\.5\.2 Command not recognized\r\n501 5\.1\.7 [^\r]*\r\n421 4\.7\.0 Too many errors, closing connection\r\n$/,
  );
});

Deno.test("limits.max_connections_per_ip refuses one connection too many with 421 4.7.0", async () => {
  await using t = await startMtaWith(`
listeners: [{ address: 127.0.0.1, port: 0, mode: mx }]
limits: { max_connections_per_ip: 1 }
`);
  const first = await TestClient.connect(t.port("mx"));
  try {
    const second = await Deno.connect({ hostname: "127.0.0.1", port: t.port("mx") });
    const { text } = await readUntilClosed(second, 3000);
    closeQuietly(second);
    assert.equal(text, "421 4.7.0 Too many connections, try again later\r\n");
  } finally {
    first.close();
  }
});

// --- password guessing --------------------------------------------------------------

Deno.test("failed AUTH: a growing delay, a disconnect at the limit, and a lockout for that address only", async () => {
  const password = "right one";
  await using t = await startMtaWith(`
listeners:
  - { address: 127.0.0.1, port: 0, mode: submissions }
  - { address: "::1", port: 0, mode: submissions }
tls: { cert: "${CERT.cert}", key: "${CERT.key}" }
local_domains: [example.test]
accounts: { alice@example.test: { password: "${await hashPassword(password)}" } }
limits: { max_auth_failures: 3, auth_failure_delay: 150ms }
# Loopback is trusted by default, and trusted clients are counted per account only.
relay: { trusted_networks: [] }
`);
  const v4 = t.port("submissions");
  const timed = async (client: TestClient, line: string) => {
    const began = Date.now();
    const r = await client.command(line);
    return { reply: r, ms: Date.now() - began };
  };
  // A different guess each time: the same wrong password retried in one session is one mistake.
  const wrong = (n: number) => `AUTH PLAIN ${plainResponse("alice@example.test", `guess ${n}`)}`;
  const right = `AUTH PLAIN ${plainResponse("alice@example.test", password)}`;

  const one = await TestClient.connect(v4, { implicitTls: true });
  await one.command("EHLO c.test");
  const first = await timed(one, wrong(1));
  const second = await timed(one, wrong(2));
  one.close();
  assert.match(first.reply!, /^535 5\.7\.8 /);
  assert.match(second.reply!, /^535 5\.7\.8 /);
  assert.ok(first.ms >= 140, `first failure answered after ${first.ms} ms`);
  assert.ok(second.ms >= 290, `second failure answered after ${second.ms} ms (should double)`);

  // The count follows the address to a new connection: the third failure disconnects.
  const two = await TestClient.connect(v4, { implicitTls: true });
  await two.command("EHLO c.test");
  assert.match((await two.command(wrong(3)))!, /^535 5\.7\.8 /);
  assert.match((await two.reply())!, /^421 4\.7\.0 Too many failed authentication attempts/);
  assert.equal(await two.reply(), null); // closed
  two.close();

  // Locked out: even the right password is refused unchecked, and the connection closed.
  const three = await TestClient.connect(v4, { implicitTls: true });
  await three.command("EHLO c.test");
  const locked = await timed(three, right);
  three.close();
  assert.match(locked.reply!, /^421 4\.7\.0 /);
  assert.ok(locked.ms < 500, `locked-out answer after ${locked.ms} ms`);

  // Another address is not affected.
  const other = await TestClient.connect(t.port("submissions", "::1"), {
    implicitTls: true,
    hostname: "::1",
  });
  try {
    await other.command("EHLO c.test");
    assert.match((await other.command(right))!, /^235 2\.7\.0 /);
  } finally {
    other.close();
  }

  // Nothing secret in the logs: no password, no AUTH payload.
  const log = JSON.stringify(t.logger.records);
  for (const secret of [password, "guess", plainResponse("alice@example.test", password)]) {
    assert.ok(!log.includes(secret), `log holds ${secret}`);
  }
  assert.ok(
    t.logger.records.some((r) => r.event === "session.auth" && r.fields.result === "locked"),
  );
});

Deno.test("AUTH payloads never appear in command events, even in SASL responses and errors", async () => {
  const events: ServerLogEvent[] = [];
  const secret = "hunter2-Ŝecret";
  const server = new SmtpServer({
    hostname: "mx.example.test",
    address: "127.0.0.1",
    port: 0,
    authMechanisms: ["PLAIN", "LOGIN"],
    authRequiresTls: false, // only to look at the events without a certificate
    onEvent: (e) => events.push(e),
    handlers: {
      recipient: () => REPLIES.recipientOk,
      open: () => Promise.resolve(REPLIES.storageFailed),
      authenticate: () => Promise.reject(new Error("directory down")),
    },
  });
  const { port } = await server.listen();
  const user64 = btoa("alice@example.test");
  const pass64 = btoa(String.fromCharCode(...encoder.encode(secret)));
  try {
    const out = await rawExchange(
      port,
      `EHLO c.test\r\nAUTH LOGIN ${user64}\r\n${pass64}\r\nAUTH PLAIN\r\n${
        plainResponse("a", secret)
      }\r\nQUIT\r\n`,
    );
    assert.match(out, /454 4\.7\.0 Temporary authentication failure/);
    const text = JSON.stringify(events, (_k, v) => (v instanceof Error ? v.message : v));
    for (const s of [secret, pass64, user64, plainResponse("a", secret)]) {
      assert.ok(!text.includes(s), `events hold ${s}`);
    }
    const commands = events.filter((e) => e.type === "command").map((e) =>
      e.type === "command" && e.line
    );
    // Reported for traces, with the secrets masked.
    assert.deepEqual(commands, [
      "EHLO c.test",
      "AUTH LOGIN ****",
      "****",
      "AUTH PLAIN",
      "****",
      "QUIT",
    ]);
  } finally {
    await server.close(100);
  }
});
