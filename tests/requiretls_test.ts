// REQUIRETLS (RFC 8689) and TLS-Required: No, end to end on loopback: tern
// takes REQUIRETLS on MAIL FROM only under TLS, and relays such a message
// only over verified TLS to a hop that offers REQUIRETLS (here tern's own
// SMTP server, which records the envelope), else bounces it with 5.7.30.
// Peers: an aiosmtpd receiver with STARTTLS (no REQUIRETLS), dnsmasq for
// the names, certificates from a test CA that tern trusts via relay.ca_file.

import assert from "node:assert/strict";
import { Mta } from "../mta/mta.ts";
import { MemoryLogger } from "../log/logger.ts";
import { python, tempConfig } from "./_helpers.ts";
import { deliveryOutcome, freePort, startDnsmasq, startReceiver } from "./_relay_fixtures.ts";
import { makeTestCa } from "./_test_ca.ts";
import { SmtpServer } from "../smtp/server.ts";
import { queuedReply, REPLIES } from "../smtp/reply.ts";
import { TlsContext } from "../smtp/tls_context.ts";
import type { Envelope } from "../smtp/envelope.ts";

const HOP1 = "127.0.0.41"; // tern's SMTP server: STARTTLS, then REQUIRETLS
const HOP2 = "127.0.0.42"; // aiosmtpd: STARTTLS, no REQUIRETLS

Deno.test("REQUIRETLS: accepted only over TLS, relayed only over verified TLS to hops that offer it", async (t) => {
  await using ca = await makeTestCa();
  const leaf = await ca.issue(["hop1.rt.test", "hop2.rt.test", "mx.mxonly.test", "localhost"]);
  const captured: Envelope[] = [];
  const hop1 = new SmtpServer({
    hostname: "hop1.rt.test",
    address: HOP1,
    port: 0,
    tls: await TlsContext.load({ cert: leaf.cert, key: leaf.key }),
    handlers: {
      recipient: () => REPLIES.recipientOk,
      open: (envelope) => {
        captured.push(envelope);
        return Promise.resolve({
          write: () => Promise.resolve(),
          commit: () => Promise.resolve(queuedReply("Q1")),
          abort: () => Promise.resolve(),
        });
      },
    },
  });
  const { port: port1 } = await hop1.listen();
  const port2 = await freePort(HOP2);
  await using hop2 = await startReceiver(HOP2, port2, { tls: leaf });
  await using dns = await startDnsmasq(
    [
      `--host-record=hop1.rt.test,${HOP1}`,
      `--host-record=hop2.rt.test,${HOP2}`,
      "--mx-host=mxonly.test,mx.mxonly.test,10",
      `--host-record=mx.mxonly.test,${HOP2}`,
    ],
    [],
    { ready: "hop1.rt.test" },
  );
  const { dir, config } = await tempConfig(
    `listeners: [{ address: 127.0.0.1, port: 0, mode: mx }]
tls: { cert: "${leaf.cert}", key: "${leaf.key}" }
local_domains: [example.test]
dns: { nameservers: ["${dns.nameserver}"] }
relay:
  ca_file: ${JSON.stringify(ca.certFile)}
  routes:
    good.test: { host: "[hop1.rt.test]:${port1}", tls: verify }
    norequire.test: { host: "[hop2.rt.test]:${port2}", tls: verify }
    opp.test: "hop1.rt.test:${port1}"
`,
  );
  const logger = new MemoryLogger();
  const mta = await Mta.start(config, { logger, pollMs: 50, mxPort: port2 });
  try {
    const smtpPort = mta.listeners[0]!.port;
    const outcome = (to: string) => deliveryOutcome(logger, to);

    await t.step(
      "EHLO offers REQUIRETLS only after STARTTLS; MAIL REQUIRETLS in clear gets 530 5.7.10",
      async () => {
        const out = await python(
          `
import smtplib, ssl, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]))
s.ehlo("client.test")
print("before", s.has_extn("requiretls"))
print("mail", s.docmd("MAIL FROM:<alice@example.test> REQUIRETLS"))
s.rset()
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
s.starttls(context=context)
s.ehlo("client.test")
print("after", s.has_extn("requiretls"))
print("tls-mail", s.docmd("MAIL FROM:<alice@example.test> REQUIRETLS=yes")[0])
s.quit()
`,
          [String(smtpPort)],
        );
        assert.match(out, /^before False$/m);
        assert.match(out, /^mail \(530, b'5\.7\.10 REQUIRETLS needs a TLS connection/m);
        assert.match(out, /^after True$/m);
        assert.match(out, /^tls-mail 501$/m);
      },
    );

    await t.step(
      "a route with tls: verify to a hop offering REQUIRETLS: delivered, REQUIRETLS passed on",
      async () => {
        await sendRequireTls(smtpPort, "u@good.test");
        const line = await outcome("u@good.test");
        assert.equal(line.event, "delivery.sent", JSON.stringify(line.fields));
        assert.equal(line.fields.tls_policy, "ca");
        assert.equal(line.fields.verified, true);
        assert.equal(captured.at(-1)?.requireTls, true);
      },
    );

    await t.step("a verified hop without REQUIRETLS: bounced 5.7.30, nothing sent", async () => {
      await sendRequireTls(smtpPort, "u@norequire.test");
      const line = await outcome("u@norequire.test");
      assert.equal(line.event, "delivery.bounced", JSON.stringify(line.fields));
      assert.equal(line.fields.status, "5.7.30");
      assert.match(String(line.fields.reply), /does not offer REQUIRETLS/);
      assert.deepEqual(await hop2.messages(), []);
    });

    await t.step("a route that does not verify its certificate: bounced 5.7.30", async () => {
      const before = captured.length;
      await sendRequireTls(smtpPort, "u@opp.test");
      const line = await outcome("u@opp.test");
      assert.equal(line.event, "delivery.bounced");
      assert.equal(line.fields.status, "5.7.30");
      assert.equal(captured.length, before);
    });

    await t.step(
      "an MX neither DNSSEC-secure nor in an MTA-STS policy: bounced 5.7.30",
      async () => {
        await sendRequireTls(smtpPort, "u@mxonly.test");
        const line = await outcome("u@mxonly.test");
        assert.equal(line.event, "delivery.bounced");
        assert.equal(line.fields.status, "5.7.30");
        assert.match(
          String(line.fields.reply),
          /neither DNSSEC-secure nor listed in an MTA-STS policy/,
        );
        assert.deepEqual(await hop2.messages(), []);
      },
    );
  } finally {
    await mta.stop(500);
    await hop1.close(500);
    await Deno.remove(dir, { recursive: true });
  }
});

async function sendRequireTls(port: number, to: string): Promise<void> {
  await python(
    `
import smtplib, ssl, sys
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
with smtplib.SMTP("127.0.0.1", int(sys.argv[1])) as s:
    s.starttls(context=context)
    s.sendmail("alice@example.test", [sys.argv[2]], b"Subject: requiretls\\r\\n\\r\\nhello\\r\\n", mail_options=["REQUIRETLS"])
`,
    [String(port), to],
  );
}
