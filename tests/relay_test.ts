// Relaying to other MTAs over real sockets: receivers are Python's aiosmtpd
// on loopback addresses, MX records come from dnsmasq, and tern runs with
// its real queue, resolver and client.
import assert from "node:assert/strict";
import { join } from "node:path";
import { Mta } from "../mta/mta.ts";
import { MemoryLogger } from "../log/logger.ts";
import { maildirFiles, python, tempConfig, tern, waitFor } from "./_helpers.ts";
import {
  freePort,
  type Receiver,
  startDnsmasq,
  startReceiver,
  testCertificate,
} from "./_relay_fixtures.ts";

const DIRECTORY = `
local_domains: [example.test]
accounts:
  alice@example.test: {}
aliases:
  fwd@example.test: [someone@example.net]
  fail@example.test: [fail550@example.net]
  temp@example.test: [temp451@example.net]
  slow@example.test: [always451@example.net]
  down@example.test: [someone@down.example.net]
  org@example.test: [someone@example.org]
`;

async function startRelayMta(extra: string, options: { mxPort?: number } = {}) {
  const { dir, file, config } = await tempConfig(
    `listeners: [{ address: 127.0.0.1, port: 0, mode: mx }]\n${DIRECTORY}${extra}`,
  );
  const logger = new MemoryLogger();
  const mta = await Mta.start(config, { logger, pollMs: 100, ...options });
  return {
    mta,
    dir,
    file,
    logger,
    port: mta.listeners[0]!.port,
    async [Symbol.asyncDispose]() {
      await mta.stop(500);
      await Deno.remove(dir, { recursive: true });
    },
  };
}

async function sendTo(
  port: number,
  from: string,
  to: string[],
  body = "Subject: relayed\r\n\r\nhello\r\n",
) {
  return await python(
    `
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1])) as s:
    print(s.sendmail(sys.argv[2], sys.argv[3].split(","), sys.argv[4].encode()))
`,
    [String(port), from, to.join(","), body],
  );
}

async function received(r: Receiver, count = 1, ms = 10_000) {
  return await waitFor(async () => {
    const m = await r.messages();
    return m.length >= count ? m : undefined;
  }, ms);
}

Deno.test("a direct route delivers to host:port, with one log line per relayed recipient", async () => {
  const port = await freePort();
  await using receiver = await startReceiver("127.0.0.1", port);
  await using t = await startRelayMta(`relay: { routes: { example.net: "127.0.0.1:${port}" } }\n`);
  await sendTo(t.port, "alice@example.test", ["fwd@example.test"]);
  const [m] = await received(receiver);
  assert.equal(m!.from, "alice@example.test");
  assert.deepEqual(m!.to, ["someone@example.net"]);
  assert.match(m!.data, /^Received: from /);
  assert.match(m!.data, /Subject: relayed\r\n\r\nhello\r\n$/);
  await waitFor(() =>
    t.logger.records.some((r) =>
      r.event === "delivery.sent" && r.fields.rcpt === "<someone@example.net>"
    )
  );
  const line = t.logger.records.find((r) =>
    r.event === "delivery.sent" && r.fields.rcpt === "<someone@example.net>"
  )!;
  assert.equal(line.fields.next_hop, `127.0.0.1[127.0.0.1]:${port}`);
  assert.equal(line.fields.status, "2.0.0");
  assert.equal(line.fields.result, "sent");
  assert.ok(line.queueId);
  assert.match(String(line.fields.delay), /^\d+s$/);
});

Deno.test("MX records are tried by preference, and the next MX is used when the first refuses connections", async () => {
  const port = await freePort("127.0.0.2");
  await using dns = await startDnsmasq([
    "--mx-host=example.net,mx1.example.net,10",
    "--mx-host=example.net,mx2.example.net,20",
    "--host-record=mx1.example.net,127.0.0.2",
    "--host-record=mx2.example.net,127.0.0.3",
    "--mx-host=down.example.net,dead.example.net,5",
    "--mx-host=down.example.net,mx2.example.net,50",
    "--host-record=dead.example.net,127.0.0.4",
  ], ["example.net"]);
  await using mx1 = await startReceiver("127.0.0.2", port);
  await using mx2 = await startReceiver("127.0.0.3", port);
  await using t = await startRelayMta(`dns: { nameservers: ["${dns.nameserver}"] }\n`, {
    mxPort: port,
  });
  await sendTo(t.port, "alice@example.test", ["fwd@example.test"]);
  const [first] = await received(mx1);
  assert.deepEqual(first!.to, ["someone@example.net"]);
  assert.equal((await mx2.messages()).length, 0);
  // down.example.net: its best MX (127.0.0.4) refuses connections; mx2 takes the mail.
  await sendTo(t.port, "alice@example.test", ["down@example.test"]);
  const [second] = await received(mx2);
  assert.deepEqual(second!.to, ["someone@down.example.net"]);
});

Deno.test("a 451 is retried and then delivered; a 550 bounces with a DSN in the sender's mailbox", async () => {
  const port = await freePort();
  await using receiver = await startReceiver("127.0.0.1", port);
  await using t = await startRelayMta(
    `relay: { routes: { example.net: "127.0.0.1:${port}" } }\nqueue: { retry: [1s] }\n`,
  );
  await sendTo(t.port, "alice@example.test", ["temp@example.test"]);
  const [m] = await received(receiver, 1, 15_000);
  assert.deepEqual(m!.to, ["temp451@example.net"]);
  assert.ok(
    t.logger.records.some((r) =>
      r.event === "delivery.deferred" && r.fields.rcpt === "<temp451@example.net>"
    ),
  );

  await sendTo(
    t.port,
    "alice@example.test",
    ["fail@example.test"],
    "Subject: doomed\r\nMessage-ID: <d1@example.test>\r\n\r\nx\r\n",
  );
  const mailbox = join(t.dir, "data", "mail", "example.test", "alice");
  const [dsnFile] = await waitFor(async () => {
    const f = await maildirFiles(mailbox);
    return f.length > 0 ? f : undefined;
  });
  const parsed = JSON.parse(
    await python(
      `
import email, sys, json
msg = email.message_from_binary_file(open(sys.argv[1], "rb"))
status = msg.get_payload()[1].get_payload()
print(json.dumps({"type": msg.get_content_type(), "recipient": dict(status[1].items())}))
`,
      [dsnFile!],
    ),
  );
  assert.equal(parsed.type, "multipart/report");
  assert.equal(parsed.recipient["Final-Recipient"], "rfc822; fail550@example.net");
  assert.equal(parsed.recipient["Original-Recipient"], "rfc822; fail@example.test");
  assert.equal(parsed.recipient["Action"], "failed");
  assert.equal(parsed.recipient["Status"], "5.1.1");
  assert.equal(parsed.recipient["Remote-MTA"], "dns; 127.0.0.1");
  assert.match(parsed.recipient["Diagnostic-Code"], /^smtp; 550 5\.1\.1 /);
});

Deno.test("a recipient that keeps getting 451 bounces at max_age", async () => {
  const port = await freePort();
  await using receiver = await startReceiver("127.0.0.1", port);
  await using t = await startRelayMta(
    `relay: { routes: { example.net: "127.0.0.1:${port}" } }\nqueue: { retry: [1s], max_age: 2s }\n`,
  );
  await sendTo(t.port, "alice@example.test", ["slow@example.test"]);
  await waitFor(
    async () =>
      (await maildirFiles(join(t.dir, "data", "mail", "example.test", "alice"))).length === 1,
    15_000,
  );
  assert.equal((await receiver.messages()).length, 0);
  assert.ok(
    t.logger.records.some((r) =>
      r.event === "delivery.bounced" && /gave up/.test(String(r.fields.reply))
    ),
  );
});

Deno.test("STARTTLS is used when the receiver offers it, and a broken TLS receiver gets the mail in plaintext", async () => {
  const cert = await testCertificate();
  try {
    const goodPort = await freePort();
    const brokenPort = await freePort();
    await using good = await startReceiver("127.0.0.1", goodPort, { tls: cert });
    await using broken = await startReceiver("127.0.0.1", brokenPort, {
      tls: cert,
      brokenTls: true,
    });
    await using t = await startRelayMta(
      `relay: { routes: { example.net: "127.0.0.1:${goodPort}", example.org: "127.0.0.1:${brokenPort}" } }\n`,
    );
    await sendTo(t.port, "alice@example.test", ["fwd@example.test"]);
    const [m] = await received(good);
    assert.equal(m!.tls, true);
    await sendTo(t.port, "alice@example.test", ["org@example.test"]);
    const [p] = await received(broken);
    assert.equal(p!.tls, false);
    assert.ok(
      t.logger.records.some((r) =>
        r.event === "delivery.error" && /TLS handshake failed/.test(String(r.fields.reason))
      ),
    );
  } finally {
    await Deno.remove(cert.dir, { recursive: true });
  }
});

Deno.test("a DNS server that answers SERVFAIL or nothing defers the message instead of bouncing it", async () => {
  // Nothing listens on this port: every query fails, which is never a reason to bounce.
  const deadPort = await freePort();
  await using t = await startRelayMta(`dns: { nameservers: ["127.0.0.1:${deadPort}"] }\n`);
  await sendTo(t.port, "alice@example.test", ["fwd@example.test"]);
  const line = await waitFor(
    () => t.logger.records.find((r) => r.event === "delivery.deferred"),
    15_000,
  );
  assert.equal(line.fields.status, "4.4.3");
  assert.ok(!t.logger.records.some((r) => r.event === "delivery.bounced"));
  assert.equal(
    (await maildirFiles(join(t.dir, "data", "mail", "example.test", "alice"))).length,
    0,
  );
});

Deno.test("a null MX bounces at once and an unknown domain (NXDOMAIN) bounces", async () => {
  await using dns = await startDnsmasq(["--mx-host=example.net,.,0"], [
    "example.net",
    "example.org",
  ]);
  await using t = await startRelayMta(`dns: { nameservers: ["${dns.nameserver}"] }\n`);
  await sendTo(t.port, "alice@example.test", ["fwd@example.test"]);
  const line = await waitFor(
    () => t.logger.records.find((r) => r.event === "delivery.bounced"),
    10_000,
  );
  assert.equal(line.fields.status, "5.1.10");
  await waitFor(async () =>
    (await maildirFiles(join(t.dir, "data", "mail", "example.test", "alice"))).length === 1
  );
  const r = await tern([
    "send",
    "--config",
    t.file,
    "-f",
    "alice@example.test",
    "who@nowhere.example.org",
  ], "x\n");
  assert.equal(r.code, 0);
  const nx = await waitFor(
    () =>
      t.logger.records.find((r) =>
        r.event === "delivery.bounced" && r.fields.rcpt === "<who@nowhere.example.org>"
      ),
    10_000,
  );
  assert.equal(nx.fields.status, "5.1.2");
});

Deno.test("tern send relays to a remote recipient, and the next message reuses the connection", async () => {
  const port = await freePort();
  await using receiver = await startReceiver("127.0.0.1", port);
  await using t = await startRelayMta(`relay: { routes: { example.net: "127.0.0.1:${port}" } }\n`);
  const first = await tern([
    "send",
    "--config",
    t.file,
    "-f",
    "alice@example.test",
    "bob@example.net",
  ], "Subject: one\n\nx\n");
  assert.equal(first.code, 0, first.stderr);
  const [one] = await received(receiver);
  assert.deepEqual(one!.to, ["bob@example.net"]);
  assert.match(one!.data, /Subject: one\r\n/);
  await sendTo(t.port, "alice@example.test", ["fwd@example.test"]);
  const [, two] = await received(receiver, 2);
  assert.equal(two!.peer_port, one!.peer_port, "the second message came over the same connection");
});

Deno.test("an MX that greets with 421 is passed over for the next one", async () => {
  const port = await freePort("127.0.0.5");
  // The best MX: a server that is too busy, greeting 421 and closing (RFC 5321 §3.8).
  const busy = Deno.listen({ hostname: "127.0.0.5", port });
  const serving = (async () => {
    for await (const conn of busy) {
      await conn.write(
        new TextEncoder().encode("421 4.3.2 busy.example.net too busy, try later\r\n"),
      ).catch(() => {});
      conn.close();
    }
  })();
  await using dns = await startDnsmasq([
    "--mx-host=example.net,busy.example.net,10",
    "--mx-host=example.net,good.example.net,20",
    "--host-record=busy.example.net,127.0.0.5",
    "--host-record=good.example.net,127.0.0.6",
  ], ["example.net"]);
  await using good = await startReceiver("127.0.0.6", port);
  try {
    await using t = await startRelayMta(`dns: { nameservers: ["${dns.nameserver}"] }\n`, {
      mxPort: port,
    });
    await sendTo(t.port, "alice@example.test", ["fwd@example.test"]);
    const [m] = await received(good);
    assert.deepEqual(m!.to, ["someone@example.net"]);
  } finally {
    busy.close();
    await serving.catch(() => {});
  }
});

Deno.test("a next hop that refuses connections defers with 4.4.1, naming the hop once", async () => {
  const closedPort = await freePort();
  await using t = await startRelayMta(
    `relay: { routes: { example.net: "127.0.0.1:${closedPort}" } }\n`,
  );
  await sendTo(t.port, "alice@example.test", ["fwd@example.test"]);
  const line = await waitFor(
    () => t.logger.records.find((r) => r.event === "delivery.deferred"),
    15_000,
  );
  assert.equal(line.fields.status, "4.4.1");
  const reply = String(line.fields.reply);
  assert.match(
    reply,
    new RegExp(`^Cannot connect to 127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:${closedPort}: `),
  );
  assert.equal(reply.split("Cannot connect").length, 2, `said once: ${reply}`);
  assert.match(reply, /ECONNREFUSED|refused/i);
});
