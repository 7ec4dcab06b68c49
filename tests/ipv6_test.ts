// IPv6 on loopback (::1): a listener on ::1 takes mail and relays it to an
// MX host that has only an AAAA record (served by dnsmasq); trusted networks
// written as an IPv6 prefix; the per-IP connection limit for an IPv6 client.

import assert from "node:assert/strict";
import net from "node:net";
import { MemoryLogger } from "../log/logger.ts";
import { Mta } from "../mta/mta.ts";
import { python, tempConfig, waitFor } from "./_helpers.ts";
import { freePort, startDnsmasq, startReceiver } from "./_relay_fixtures.ts";

/** Runs SMTP commands from `host` (after EHLO) with smtplib; returns each reply as "code text". */
async function dialogue(host: string, port: number, commands: string[]): Promise<string[]> {
  const out = await python(
    `
import smtplib, sys, json
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=30)
s.ehlo("client.example.test")
replies = []
for c in json.loads(sys.argv[3]):
    code, text = s.docmd(c)
    replies.append(f"{code} {text.decode()}")
s.quit()
print(json.dumps(replies))
`,
    [host, String(port), JSON.stringify(commands)],
  );
  return JSON.parse(out) as string[];
}

async function startIn(body: string, options: { mxPort?: number } = {}) {
  const { dir, config } = await tempConfig(body);
  const logger = new MemoryLogger();
  const mta = await Mta.start(config, { logger, pollMs: 100, ...options });
  return {
    mta,
    logger,
    async [Symbol.asyncDispose]() {
      await mta.stop(500);
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("a listener on ::1 takes mail and relays it to an AAAA-only MX host", async () => {
  const port = await freePort("::1");
  await using dns = await startDnsmasq([
    "--mx-host=example.net,mx6.example.net,10",
    "--host-record=mx6.example.net,::1", // AAAA only: no IPv4 address for the MX
  ], ["example.net"]);
  await using receiver = await startReceiver("::1", port);
  await using t = await startIn(
    `listeners: [{ address: "::1", port: 0, mode: mx }]
local_domains: [example.test]
dns: { nameservers: ["${dns.nameserver}"] }
`,
    { mxPort: port },
  );
  const listener = t.mta.listeners[0]!;
  assert.equal(listener.address, "::1");
  const refused = await python(
    `
import smtplib, sys
with smtplib.SMTP("::1", int(sys.argv[1])) as s:
    print(s.sendmail("alice@example.test", ["someone@example.net"], b"Subject: over IPv6\\r\\n\\r\\nhello\\r\\n"))
`,
    [String(listener.port)],
  );
  assert.equal(refused.trim(), "{}"); // ::1 is in the default trusted networks
  const accepted = await waitFor(() =>
    t.logger.records.find((r) => r.event === "message.accepted")
  );
  assert.equal(accepted.fields.client, "::1");
  const [got] = await waitFor(async () => {
    const m = await receiver.messages();
    return m.length > 0 ? m : undefined;
  }, 15_000);
  assert.deepEqual(got!.to, ["someone@example.net"]);
  // tern's Received line names the IPv6 client as an address literal (RFC 5321 §4.1.3).
  assert.match(got!.data, /Received: from \S+ \(\[IPv6:::1\]\)/);
  // The receiver has the message a moment before the attempt is recorded and logged.
  const sent = await waitFor(() => t.logger.records.find((r) => r.event === "delivery.sent"));
  assert.match(String(sent.fields.next_hop), /mx6\.example\.net/);
});

Deno.test("trusted networks as an IPv6 prefix: ::1 may relay, 127.0.0.1 may not", async () => {
  await using t = await startIn(
    `listeners:
  - { address: "::1", port: 0, mode: mx }
  - { address: 127.0.0.1, port: 0, mode: mx }
local_domains: [example.test]
relay: { trusted_networks: ["::/127"] }
`,
  );
  const [v6, v4] = t.mta.listeners;
  const fromV6 = await dialogue("::1", v6!.port, [
    "MAIL FROM:<alice@example.test>",
    "RCPT TO:<someone@example.net>",
  ]);
  assert.match(fromV6[1]!, /^250 /);
  const fromV4 = await dialogue("127.0.0.1", v4!.port, [
    "MAIL FROM:<alice@example.test>",
    "RCPT TO:<someone@example.net>",
  ]);
  assert.match(fromV4[1]!, /^554 5\.7\.1/);
});

Deno.test("the per-IP connection limit counts an IPv6 client", async () => {
  await using t = await startIn(
    `listeners: [{ address: "::1", port: 0, mode: mx }]
local_domains: [example.test]
limits: { max_connections_per_ip: 1, greeting_delay: 0s }
`,
  );
  const port = t.mta.listeners[0]!.port;
  const first = await openAndRead(port);
  try {
    assert.match(first.text, /^220 /);
    const second = await openAndRead(port);
    second.socket.destroy();
    assert.match(second.text, /^421 /);
  } finally {
    first.socket.destroy();
  }
});

/** Connects to ::1 and reads the first line the server sends. */
function openAndRead(port: number): Promise<{ socket: net.Socket; text: string }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: "::1", port });
    let text = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      text += chunk;
      if (text.includes("\r\n")) resolve({ socket, text });
    });
    socket.once("error", reject);
    socket.once("close", () => resolve({ socket, text }));
  });
}
