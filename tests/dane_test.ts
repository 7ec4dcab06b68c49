// DANE (RFC 7672) on the way out, with real peers on loopback: nsd serves a
// zone signed with ldns-signzone (and an unsigned one), unbound validates it
// with the zone's key as trust anchor and is tern's resolver, and aiosmtpd
// receivers play the MX hosts with certificates from a test CA. tern runs
// in-process with its real queue and resolver.

import assert from "node:assert/strict";
import { createHash, X509Certificate } from "node:crypto";
import { Mta } from "../mta/mta.ts";
import { MemoryLogger } from "../log/logger.ts";
import { python, tempConfig } from "./_helpers.ts";
import { deliveryOutcome, freePort, messagesTo, startReceiver } from "./_relay_fixtures.ts";
import { makeTestCa } from "./_test_ca.ts";
import { startDnssec } from "./_dnssec.ts";
import { checkDaneChain, isUsableTlsa, parseTlsa } from "../tls_policy/dane.ts";

const TLS = "127.0.0.32"; // STARTTLS, a certificate for the mx-* names
const PLAIN = "127.0.0.33"; // no STARTTLS

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

function der(pem: string): Uint8Array {
  return new Uint8Array(new X509Certificate(pem).raw);
}

function spki(pem: string): Uint8Array {
  return new Uint8Array(
    new X509Certificate(pem).publicKey.export({ type: "spki", format: "der" }),
  );
}

Deno.test("DANE matching without I/O: usages, selectors, matching types (RFC 6698 §2.1, RFC 7672 §3.1)", async () => {
  await using ca = await makeTestCa();
  const leaf = await ca.issue(["mx.example.net"]);
  const chain = [der(leaf.leafPem), der(ca.pem)];
  const hex = (h: string) => Uint8Array.from(h.match(/../g)!.map((b) => parseInt(b, 16)));
  const record = (usage: number, selector: number, type: number, data: Uint8Array) =>
    parseTlsa(new Uint8Array([usage, selector, type, ...data]))!;
  const eeSpki = record(3, 1, 1, hex(sha256(spki(leaf.leafPem))));
  const eeFull = record(3, 0, 0, der(leaf.leafPem));
  const ta = record(2, 0, 1, hex(sha256(der(ca.pem))));
  assert.equal(checkDaneChain([eeSpki], chain, ["anything.test"]), null);
  assert.equal(checkDaneChain([eeFull], chain, ["anything.test"]), null);
  assert.equal(checkDaneChain([ta], chain, ["mx.example.net"]), null);
  assert.match(String(checkDaneChain([ta], chain, ["other.example.net"])), /does not name/);
  assert.match(String(checkDaneChain([ta], [chain[0]!], ["mx.example.net"])), /no TLSA record/);
  assert.match(
    String(checkDaneChain([record(3, 1, 1, new Uint8Array(32))], chain, ["x"])),
    /no TLSA record matches/,
  );
  assert.ok(!isUsableTlsa(record(1, 1, 1, new Uint8Array(32)))); // PKIX-EE: not for SMTP
  assert.ok(!isUsableTlsa(record(3, 1, 1, new Uint8Array(31)))); // a short digest
  assert.ok(isUsableTlsa(record(3, 1, 2, new Uint8Array(64))));
  assert.equal(parseTlsa(new Uint8Array([3, 1])), null);
});

Deno.test("DANE: TLSA records from a validating resolver decide how MX hosts are reached", async (t) => {
  await using ca = await makeTestCa();
  const names = ["ok", "bad", "ta", "tawrong-not-in-cert", "bogus", "pkix"].map((n) =>
    `mx-${n}.dane.test`
  );
  const leaf = await ca.issue([...names.filter((n) => !n.includes("tawrong")), "mx.plain.test"]);
  const port = await freePort(TLS);
  await using tlsReceiver = await startReceiver(TLS, port, { tls: leaf });
  await using plainReceiver = await startReceiver(PLAIN, port);
  const leafSpki = sha256(spki(leaf.leafPem));
  const leafFull = sha256(der(leaf.leafPem));
  const caFull = sha256(der(ca.pem));
  const tlsa = (host: string, data: string) => `_${port}._tcp.${host} IN TLSA ${data}`;
  const mx = (name: string, address: string) => [
    `${name} IN MX 10 mx-${name}`,
    `mx-${name} IN A ${address}`,
  ];
  await using bed = await startDnssec([
    {
      origin: "dane.test",
      signed: true,
      records: [
        ...mx("ok", TLS),
        tlsa("mx-ok", `3 1 1 ${leafSpki}`),
        ...mx("bad", TLS),
        tlsa("mx-bad", `3 1 1 ${"00".repeat(32)}`),
        ...mx("ta", TLS),
        tlsa("mx-ta", `2 0 1 ${caFull}`),
        ...mx("tawrong-not-in-cert", TLS),
        tlsa("mx-tawrong-not-in-cert", `2 0 1 ${caFull}`),
        ...mx("strip", PLAIN),
        tlsa("mx-strip", `3 1 1 ${leafSpki}`),
        ...mx("bogus", TLS),
        tlsa("mx-bogus", `3 0 1 ${leafFull}`),
        ...mx("pkix", TLS),
        tlsa("mx-pkix", `1 1 1 ${leafSpki}`),
      ],
      // After signing, the bogus host's TLSA data is changed to one that
      // would match: only its signature says it is forged.
      tamper: (zone) => zone.replace(leafFull, leafSpki),
    },
    {
      origin: "plain.test",
      signed: false,
      records: ["@ IN MX 10 mx", `mx IN A ${TLS}`, tlsa("mx", `3 1 1 ${"00".repeat(32)}`)],
    },
  ]);
  const { dir, config } = await tempConfig(
    `listeners: [{ address: 127.0.0.1, port: 0, mode: mx }]
local_domains: [example.test]
dns: { nameservers: ["${bed.nameserver}"] }
`,
  );
  const logger = new MemoryLogger();
  const mta = await Mta.start(config, { logger, pollMs: 50, mxPort: port });
  try {
    const smtpPort = mta.listeners[0]!.port;
    const outcome = (to: string) => deliveryOutcome(logger, to);

    await t.step("a matching DANE-EE record: delivered over TLS, tls_policy=dane", async () => {
      await sendTo(smtpPort, "u@ok.dane.test");
      const line = await outcome("u@ok.dane.test");
      assert.equal(line.event, "delivery.sent", JSON.stringify(line.fields));
      assert.equal(line.fields.tls_policy, "dane");
      assert.equal(line.fields.verified, true);
      assert.equal((await messagesTo(tlsReceiver, "u@ok.dane.test"))[0]?.tls, true);
    });

    await t.step(
      "a matching DANE-TA record and the MX name in the certificate: delivered",
      async () => {
        await sendTo(smtpPort, "u@ta.dane.test");
        const line = await outcome("u@ta.dane.test");
        assert.equal(line.event, "delivery.sent", JSON.stringify(line.fields));
        assert.equal(line.fields.tls_policy, "dane");
      },
    );

    for (
      const [domain, why] of [
        ["bad.dane.test", /DANE.*no TLSA record matches/],
        ["tawrong-not-in-cert.dane.test", /DANE.*does not name/],
        ["strip.dane.test", /DANE.*STARTTLS/],
        ["bogus.dane.test", /DANE: the TLSA lookup .* failed \(servfail\)/],
      ] as const
    ) {
      await t.step(`${domain}: deferred, nothing delivered`, async () => {
        await sendTo(smtpPort, `u@${domain}`);
        const line = await outcome(`u@${domain}`);
        assert.equal(line.event, "delivery.deferred", JSON.stringify(line.fields));
        assert.match(String(line.fields.reply), why);
        assert.equal(line.fields.tls_policy, "dane");
        assert.deepEqual(await messagesTo(tlsReceiver, `u@${domain}`), []);
        assert.deepEqual(await messagesTo(plainReceiver, `u@${domain}`), []);
      });
    }

    await t.step(
      "only unusable (PKIX-EE) records: TLS still required, not authenticated",
      async () => {
        await sendTo(smtpPort, "u@pkix.dane.test");
        const line = await outcome("u@pkix.dane.test");
        assert.equal(line.event, "delivery.sent", JSON.stringify(line.fields));
        assert.equal(line.fields.tls_policy, "dane");
        assert.equal(line.fields.verified, false);
        assert.equal((await messagesTo(tlsReceiver, "u@pkix.dane.test"))[0]?.tls, true);
      },
    );

    await t.step("an unsigned zone: its TLSA records are ignored, opportunistic TLS", async () => {
      await sendTo(smtpPort, "u@plain.test");
      const line = await outcome("u@plain.test");
      assert.equal(line.event, "delivery.sent", JSON.stringify(line.fields));
      assert.equal(line.fields.tls_policy, "opportunistic");
    });
  } finally {
    await mta.stop(500);
    await Deno.remove(dir, { recursive: true });
  }
});

async function sendTo(port: number, to: string): Promise<void> {
  await python(
    `
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1])) as s:
    s.sendmail("alice@example.test", [sys.argv[2]], b"Subject: dane\\r\\n\\r\\nhello\\r\\n")
`,
    [String(port), to],
  );
}
