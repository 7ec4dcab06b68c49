// One slow or dead next hop must not stall the rest of delivery: a loopback
// "tarpit" accepts TCP connections and never greets, like a host that
// tarpits or a firewall that swallows connections. Messages queued to it wait
// outside the delivery loop's slots, so local mail and other destinations
// keep flowing; a host that gave no answer goes on the unreachable list
// (RFC 5321 §4.5.4.1) instead of being tried again by every message.
import assert from "node:assert/strict";
import { join } from "node:path";
import { KvQueue } from "../queue/kv_queue.ts";
import type { ClaimedMessage } from "../queue/types.ts";
import { SmtpClient, SmtpConnectionError } from "../smtp/client.ts";
import { NULL_LOGGER } from "../log/logger.ts";
import { RelayTransport } from "../mta/relay.ts";
import { queuePath } from "../mta/mta.ts";
import type { DnsQuerier } from "../dns/resolver.ts";
import { python, startMta, tempConfig, waitFor, waitForMail } from "./_helpers.ts";
import { freePort, type Receiver, startReceiver } from "./_relay_fixtures.ts";

/** Accepts connections on loopback and never says a word; counts them. */
function startTarpit(): AsyncDisposable & { port: number; accepted(): number } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  let count = 0;
  const serving = (async () => {
    for await (const conn of listener) {
      count++;
      held.push(conn);
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    accepted: () => count,
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const conn of held) {
        try {
          conn.close();
        } catch { /* closed by the peer already */ }
      }
      await serving;
    },
  };
}

/** Sends `count` messages to `to` over one SMTP session. */
async function sendMany(port: number, to: string, count: number): Promise<void> {
  await python(
    `
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1])) as s:
    for i in range(int(sys.argv[3])):
        s.sendmail("alice@example.test", [sys.argv[2]], ("Subject: %d\\r\\n\\r\\nhello\\r\\n" % i).encode())
`,
    [String(port), to, String(count)],
  );
}

async function receivedOne(r: Receiver, ms: number) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const m = await r.messages();
    if (m.length > 0) return m;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`the healthy next hop received nothing in ${ms} ms`);
}

Deno.test("40 messages to a next hop that never greets do not stop local delivery or another destination", async () => {
  await using tarpit = startTarpit();
  const healthyPort = await freePort();
  await using healthy = await startReceiver("127.0.0.1", healthyPort);
  const t = await startMta(`local_domains: [example.test]
relay:
  routes: { example.net: "127.0.0.1:${tarpit.port}", example.org: "127.0.0.1:${healthyPort}" }
`);
  let stopped = false;
  try {
    await sendMany(t.port, "someone@example.net", 40);
    await sendMany(t.port, "alice@example.test", 1);
    await sendMany(t.port, "bob@example.org", 1);
    await waitForMail(join(t.config.mailRoot, "example.test", "alice"), 1, 20_000);
    const [m] = await receivedOne(healthy, 20_000);
    assert.deepEqual(m!.to, ["bob@example.org"]);
    // The tarpit holds at most relay.max_connections_per_destination connections.
    assert.ok(
      tarpit.accepted() <= t.config.relay.maxConnectionsPerDestination,
      `${tarpit.accepted()} connections to the tarpit`,
    );
    // Stopping does not sit out the 5-minute greeting wait; nothing was
    // attempted, so the 40 messages stay queued with no attempt counted.
    await t.mta.stop(1000);
    stopped = true;
    const queue = await KvQueue.open(queuePath(t.config), {
      retry: t.config.queue.retry,
      maxAge: t.config.queue.maxAge,
    });
    try {
      const left = await Array.fromAsync(queue.list());
      assert.equal(left.length, 40);
      for (const message of left) assert.equal(message.recipients[0]!.attempts, 0);
    } finally {
      await queue.close();
    }
  } finally {
    if (!stopped) await t.mta.stop(1000);
    await Deno.remove(t.dir, { recursive: true });
  }
});

/** Queues one message to b@example.net and claims it at once (content in memory). */
async function claimOne(queue: KvQueue): Promise<ClaimedMessage> {
  const now = Date.now();
  const message = await queue.receive({
    envelope: {
      reversePath: "a@example.test",
      forwardPaths: ["b@example.net"],
      body: "7BIT",
      smtputf8: false,
    },
    recipients: [{ address: "b@example.net", originalRecipient: "b@example.net", mailbox: null }],
    clientAddress: "local",
    now,
  });
  await message.write(new TextEncoder().encode("Subject: x\r\n\r\nbody\r\n"));
  return await message.commitAndClaim(now);
}

/** Route-only configurations never ask DNS. */
const NO_DNS: DnsQuerier = {
  query: () => Promise.reject(new Error("no DNS in this test")),
};

Deno.test("a next hop that gave no greeting is not tried again by the next message (unreachable list)", async () => {
  await using tarpit = startTarpit();
  const { dir, config } = await tempConfig(
    `relay: { routes: { example.net: "127.0.0.1:${tarpit.port}" } }\n`,
  );
  const queue = await KvQueue.open(join(dir, "queue.sqlite3"), {
    retry: [60_000],
    maxAge: 86_400_000,
  });
  const relay = new RelayTransport({
    config,
    resolver: NO_DNS,
    logger: NULL_LOGGER,
    client: { commandTimeoutMs: 300 },
  });
  try {
    const attempt = async () => {
      const claim = await claimOne(queue);
      const content = claim.content!;
      return await relay.deliver(claim, [0], () => ReadableStream.from([content]));
    };
    const [first] = await attempt();
    assert.equal(first?.status, "deferred");
    assert.match(first!.reply.text, /greeting/);
    assert.equal(tarpit.accepted(), 1);
    const [second] = await attempt();
    assert.equal(second?.status, "deferred");
    assert.equal(second?.reply.enhancedStatus, "4.4.1");
    assert.match(second!.reply.text, /not tried: it did not answer \d+s ago/);
    assert.equal(tarpit.accepted(), 1, "the second message did not connect");
  } finally {
    await relay.close();
    await queue.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("messages to a host whose connections all wait for a greeting are deferred at once, not queued behind them", async () => {
  await using tarpit = startTarpit();
  const { dir, config } = await tempConfig(
    `relay: { routes: { example.net: "127.0.0.1:${tarpit.port}" } }\n`,
  );
  const queue = await KvQueue.open(join(dir, "queue.sqlite3"), {
    retry: [60_000],
    maxAge: 86_400_000,
  });
  const relay = new RelayTransport({
    config,
    resolver: NO_DNS,
    logger: NULL_LOGGER,
    maxConnectionsPerDestination: 1,
    stallMs: 200,
  });
  const stopping = new AbortController();
  try {
    const first = await claimOne(queue);
    const firstContent = first.content!;
    const waiting = relay.deliver(
      first,
      [0],
      () => ReadableStream.from([firstContent]),
      stopping.signal,
    );
    await waitFor(() => tarpit.accepted() === 1);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const second = await claimOne(queue);
    const secondContent = second.content!;
    const [o] = await relay.deliver(second, [0], () => ReadableStream.from([secondContent]));
    assert.equal(o?.status, "deferred");
    assert.match(o!.reply.text, /not tried: 1 connection\(s\) have waited \d+s for its greeting/);
    // Stopping gives up the greeting wait: nothing attempted, no outcome.
    stopping.abort(new Error("shutting down"));
    assert.deepEqual(await waiting, []);
    assert.equal(tarpit.accepted(), 1);
  } finally {
    await relay.close();
    await queue.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SmtpClient.connect gives up the greeting wait when its signal is aborted", async () => {
  await using tarpit = startTarpit();
  const stopping = new AbortController();
  const connecting = SmtpClient.connect({
    host: "127.0.0.1",
    port: tarpit.port,
    helo: "client.example.test",
    signal: stopping.signal,
  });
  await waitFor(() => tarpit.accepted() === 1);
  stopping.abort(new Error("shutting down"));
  await assert.rejects(connecting, (error: unknown) => {
    assert.ok(error instanceof SmtpConnectionError);
    assert.match(error.message, /^Gave up connecting to 127\.0\.0\.1:\d+: shutting down$/);
    return true;
  });
});
