// MTA-STS (RFC 8461) on the way out, with real peers on loopback: dnsmasq
// serves the MX, `_mta-sts` TXT and address records, an HTTPS server on
// 127.0.0.21:443 serves the policies (its certificate from a test CA that
// tern trusts through relay.ca_file), and aiosmtpd receivers play the MX
// hosts: one with STARTTLS and a certificate for the right names, one
// without STARTTLS (a stripping attacker), one with a certificate for
// another name. tern runs in-process with its real queue and resolver.

import assert from "node:assert/strict";
import { Mta } from "../mta/mta.ts";
import { MemoryLogger } from "../log/logger.ts";
import { python, tempConfig } from "./_helpers.ts";
import {
  deliveryOutcome,
  freePort,
  messagesTo,
  startDnsmasq,
  startReceiver,
} from "./_relay_fixtures.ts";
import { makeTestCa } from "./_test_ca.ts";
import { mxMatches, parseStsPolicy, parseStsRecord } from "../tls_policy/mta_sts_policy.ts";

const GOOD = "127.0.0.22"; // STARTTLS, certificate for the MX names
const PLAIN = "127.0.0.23"; // no STARTTLS
const WRONG = "127.0.0.24"; // STARTTLS, certificate for another name
const HTTPS = "127.0.0.21"; // the policy host of every domain

const enforce = (mx: string[], maxAge = 604800) =>
  `version: STSv1\r\nmode: enforce\r\n${
    mx.map((m) => `mx: ${m}\r\n`).join("")
  }max_age: ${maxAge}\r\n`;

/** What the policy server answers, per domain; changed by the tests. */
const policies = new Map<string, () => Response>([
  ["good.test", () => text(enforce(["*.good.test"]))],
  ["strip.test", () => text(enforce(["mx.strip.test"]))],
  ["wrongname.test", () => text(enforce(["mx.wrongname.test"]))],
  ["nomatch.test", () => text(enforce(["mx.elsewhere.test"]))],
  [
    "testing.test",
    () => text("version: STSv1\nmode: testing\nmx: mx.testing.test\nmax_age: 86400\n"),
  ],
  // max_age of a day: every lookup refreshes it (it is "near expiry").
  ["cached.test", () => text(enforce(["*.cached.test"], 86400))],
  ["malformed.test", () => text("version: STSv1\nmode: enforce\nmx: mx.malformed.test\n")],
  ["oversized.test", () => text(enforce(["mx.oversized.test"]) + "#".repeat(70_000))],
  // No length, and no end: the size limit must stop the reading.
  ["endless.test", () =>
    new Response(
      new ReadableStream({
        pull(controller) {
          controller.enqueue(new TextEncoder().encode("#".repeat(16_384)));
        },
      }),
      { headers: { "content-type": "text/plain" } },
    )],
  [
    "redirect.test",
    () => new Response(null, { status: 301, headers: { location: "https://elsewhere.test/" } }),
  ],
  [
    "html.test",
    () => new Response(enforce(["mx.html.test"]), { headers: { "content-type": "text/html" } }),
  ],
]);

function text(body: string): Response {
  return new Response(body, { headers: { "content-type": "text/plain" } });
}

Deno.test("parsing: the TXT record and the policy file (RFC 8461 §3.1, §3.2), and mx patterns (§4.1)", () => {
  assert.deepEqual(parseStsRecord([["v=STSv1; id=abc123"]]), { id: "abc123" });
  assert.deepEqual(parseStsRecord([["v=STSv1;", " id=x1;"]]), { id: "x1" });
  assert.equal(parseStsRecord([["v=STSv1; id=a"], ["v=STSv1; id=b"]]), null);
  assert.equal(parseStsRecord([["v=STSv1; id=no-dashes"]]), null);
  assert.equal(parseStsRecord([["v=spf1 -all"]]), null);
  const policy = parseStsPolicy(enforce(["*.example.net", "mx.example.org."]));
  assert.ok("mode" in policy);
  assert.equal(policy.maxAge, 604800);
  assert.ok(mxMatches(policy, "MX1.example.net."));
  assert.ok(mxMatches(policy, "mx.example.org"));
  assert.ok(!mxMatches(policy, "a.b.example.net"));
  assert.ok(!mxMatches(policy, "example.net"));
  assert.match(
    JSON.stringify(parseStsPolicy("version: STSv1\nmode: enforce\nmax_age: 1\n")),
    /no mx/,
  );
  assert.match(JSON.stringify(parseStsPolicy(enforce(["a.test"], 31557601))), /max_age/);
  assert.match(JSON.stringify(parseStsPolicy("version: STSv2\nmode: enforce\n")), /version/);
  assert.match(JSON.stringify(parseStsPolicy("version: STSv1\nmode: strict\n")), /mode/);
});

Deno.test("MTA-STS: enforce, testing, and policies that cannot be had", async (t) => {
  await using ca = await makeTestCa();
  const goodCert = await ca.issue(["mx.good.test", "mx.nomatch.test", "mx2.cached.test"]);
  const wrongCert = await ca.issue(["other.test"]);
  const httpsCert = await ca.issue([...policies.keys()].map((d) => `mta-sts.${d}`));
  const port = await freePort(GOOD);
  await using _good = await startReceiver(GOOD, port, { tls: goodCert });
  await using plain = await startReceiver(PLAIN, port);
  await using wrong = await startReceiver(WRONG, port, { tls: wrongCert });
  const good = _good;
  const server = Deno.serve({
    hostname: HTTPS,
    port: 443,
    cert: await Deno.readTextFile(httpsCert.cert),
    key: await Deno.readTextFile(httpsCert.key),
    onListen: () => {},
  }, (request) => {
    const host = (request.headers.get("host") ?? "").replace(/^mta-sts\./, "");
    const url = new URL(request.url);
    if (url.pathname !== "/.well-known/mta-sts.txt") return new Response("no", { status: 404 });
    return policies.get(host)?.() ?? new Response("no", { status: 404 });
  });
  const mx = (domain: string, host: string, address: string, pref = 10) => [
    `--mx-host=${domain},${host},${pref}`,
    `--host-record=${host},${address}`,
  ];
  const records = [
    ...mx("good.test", "mx.good.test", GOOD),
    ...mx("strip.test", "mx.strip.test", PLAIN),
    ...mx("wrongname.test", "mx.wrongname.test", WRONG),
    ...mx("nomatch.test", "mx.nomatch.test", GOOD),
    ...mx("testing.test", "mx.testing.test", PLAIN),
    ...mx("cached.test", "mx1.cached.test", PLAIN, 10),
    ...mx("cached.test", "mx2.cached.test", GOOD, 20),
    ...mx("malformed.test", "mx.malformed.test", PLAIN),
    ...mx("oversized.test", "mx.oversized.test", PLAIN),
    ...mx("redirect.test", "mx.redirect.test", PLAIN),
    ...mx("endless.test", "mx.endless.test", PLAIN),
    ...mx("html.test", "mx.html.test", PLAIN),
    ...mx("nopolicy.test", "mx.nopolicy.test", PLAIN),
    ...[...policies.keys()].flatMap((d) => [
      `--txt-record=_mta-sts.${d},v=STSv1; id=20260101`,
      `--host-record=mta-sts.${d},${HTTPS}`,
    ]),
  ];
  await using dns = await startDnsmasq(records, [], { ready: "mx.good.test" });
  const { dir, config } = await tempConfig(
    `listeners: [{ address: 127.0.0.1, port: 0, mode: mx }]
local_domains: [example.test]
relay: { ca_file: ${JSON.stringify(ca.certFile)} }
dns: { nameservers: ["${dns.nameserver}"] }
`,
  );
  const logger = new MemoryLogger();
  const trace: string[] = [];
  const mta = await Mta.start(config, {
    logger,
    pollMs: 50,
    mxPort: port,
    trace: (line) => trace.push(line),
  });
  try {
    const smtpPort = mta.listeners[0]!.port;
    const send = (to: string) => sendTo(smtpPort, to);
    const outcome = (to: string) => deliveryOutcome(logger, to);

    await t.step(
      "enforce + matching MX with a valid certificate: delivered over verified TLS",
      async () => {
        await send("u@good.test");
        const line = await outcome("u@good.test");
        assert.equal(line.event, "delivery.sent", JSON.stringify(line.fields));
        assert.equal(line.fields.tls_policy, "mta-sts");
        assert.equal(line.fields.verified, true);
        const [m] = await messagesTo(good, "u@good.test");
        assert.equal(m?.tls, true);
        // serve --trace: how the hop was secured, with the rule, then the annotated dialogue.
        assert.ok(
          trace.some((l) =>
            /^\* mx\.good\.test:\d+: the MTA-STS policy of good\.test \(RFC 8461, enforce\)/.test(l)
          ),
          trace.join("\n"),
        );
        assert.ok(trace.some((l) => /C: STARTTLS +; .*RFC 3207/.test(l)), trace.join("\n"));
      },
    );

    await t.step(
      "enforce + STARTTLS stripped: deferred naming MTA-STS, nothing sent in clear",
      async () => {
        await send("u@strip.test");
        const line = await outcome("u@strip.test");
        assert.equal(line.event, "delivery.deferred");
        assert.match(String(line.fields.reply), /MTA-STS/);
        assert.equal(line.fields.tls_policy, "mta-sts");
        assert.deepEqual(await messagesTo(plain, "u@strip.test"), []);
        assert.ok(
          trace.some((l) => /^\* mx\.strip\.test\S*: not used: .*STARTTLS/.test(l)),
          trace.join("\n"),
        );
      },
    );

    await t.step(
      "TLS-Required: No (RFC 8689 §5): the policy is waived, sent as without one",
      async () => {
        await sendTo(smtpPort, "v@strip.test", "TLS-Required: No\r\n");
        const line = await outcome("v@strip.test");
        assert.equal(line.event, "delivery.sent", JSON.stringify(line.fields));
        assert.equal(line.fields.tls_policy, "opportunistic");
        assert.equal((await messagesTo(plain, "v@strip.test")).length, 1);
      },
    );

    await t.step("enforce + a certificate for another name: deferred", async () => {
      await send("u@wrongname.test");
      const line = await outcome("u@wrongname.test");
      assert.equal(line.event, "delivery.deferred");
      assert.match(String(line.fields.reply), /MTA-STS/);
      assert.deepEqual(await messagesTo(wrong, "u@wrongname.test"), []);
    });

    await t.step("enforce + an MX the policy does not list: not used", async () => {
      await send("u@nomatch.test");
      const line = await outcome("u@nomatch.test");
      assert.equal(line.event, "delivery.deferred");
      assert.match(String(line.fields.reply), /not listed in the MTA-STS policy/);
      assert.deepEqual(await messagesTo(good, "u@nomatch.test"), []);
    });

    await t.step("testing: delivered as without a policy, the failure logged", async () => {
      await send("u@testing.test");
      const line = await outcome("u@testing.test");
      assert.equal(line.event, "delivery.sent");
      assert.equal((await messagesTo(plain, "u@testing.test")).length, 1);
      assert.ok(
        logger.records.some((r) => /testing mode would refuse/.test(String(r.fields.reason))),
      );
    });

    await t.step("a cached policy stays in force when the refresh fails", async () => {
      await send("a@cached.test");
      assert.equal((await outcome("a@cached.test")).event, "delivery.sent");
      assert.equal(
        await mta.queue.getState("mta-sts/cached.test").then((v) => JSON.parse(v!).id),
        "20260101",
      );
      policies.set("cached.test", () => new Response("down", { status: 503 }));
      await send("b@cached.test");
      const line = await outcome("b@cached.test");
      assert.equal(line.event, "delivery.sent");
      assert.equal(line.fields.tls_policy, "mta-sts");
      // The first MX has no STARTTLS: under the cached policy it got nothing.
      assert.deepEqual(
        (await plain.messages()).filter((m) => m.to.some((a) => a.endsWith("@cached.test"))),
        [],
      );
      assert.equal((await messagesTo(good, "b@cached.test")).length, 1);
      assert.ok(
        logger.records.some((r) =>
          r.fields.domain === "cached.test" && /HTTP 503/.test(String(r.fields.error))
        ),
      );
    });

    for (
      const [domain, why] of [
        ["malformed.test", /max_age/],
        ["oversized.test", /larger than 65536/],
        ["endless.test", /larger than 65536/],
        ["redirect.test", /redirect \(HTTP 301\) refused/],
        ["html.test", /not text\/plain/],
      ] as const
    ) {
      await t.step(`${domain}: no usable policy (a failed fetch), so opportunistic`, async () => {
        await send(`u@${domain}`);
        const line = await outcome(`u@${domain}`);
        assert.equal(line.event, "delivery.sent");
        assert.equal(line.fields.tls_policy, "opportunistic");
        assert.equal((await messagesTo(plain, `u@${domain}`)).length, 1);
        const failed = logger.records.find((r) => r.fields.domain === domain);
        assert.match(String(failed?.fields.error), why);
      });
    }

    await t.step("no TXT record: opportunistic", async () => {
      await send("u@nopolicy.test");
      const line = await outcome("u@nopolicy.test");
      assert.equal(line.event, "delivery.sent");
      assert.equal(line.fields.tls_policy, "opportunistic");
    });
  } finally {
    await mta.stop(500);
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

async function sendTo(port: number, to: string, header = ""): Promise<void> {
  await python(
    `
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1])) as s:
    s.sendmail("alice@example.test", [sys.argv[2]], sys.argv[3].encode() + b"Subject: sts\\r\\n\\r\\nhello\\r\\n")
`,
    [String(port), to, header],
  );
}

Deno.test("relay.ca_file: an unreadable file or one without a certificate is a one-line config error", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tern-cafile-" });
  try {
    await Deno.writeTextFile(`${dir}/junk.pem`, "not a certificate\n");
    for (
      const [file, why] of [
        [`${dir}/missing.pem`, /relay\.ca_file: cannot read .*missing\.pem/],
        [`${dir}/junk.pem`, /relay\.ca_file: .*junk\.pem holds no PEM certificate/],
      ] as const
    ) {
      const error = await tempConfig(`relay: { ca_file: ${JSON.stringify(file)} }\n`).then(
        () => null,
        (e: unknown) => e,
      );
      assert.ok(error instanceof Error);
      assert.match(error.message, why);
    }
    const bad = await tempConfig("relay: { mta_sts: maybe }\n").then(() => null, (e: unknown) => e);
    assert.match(String(bad), /relay\.mta_sts: expected true or false/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
