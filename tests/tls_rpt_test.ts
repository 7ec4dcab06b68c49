// TLS-RPT (RFC 8460) with real peers on loopback: dnsmasq serves the MX,
// `_mta-sts` and `_smtp._tls` records; one HTTPS server on 127.0.0.41:443
// serves the MTA-STS policies and takes the reports POSTed to an https:
// rua (its certificate from a test CA that tern trusts via relay.ca_file);
// aiosmtpd receivers play the MX hosts: one with STARTTLS and a good
// certificate, one without STARTTLS (a stripping attacker), which also
// takes the report mail. tern runs in-process; `tern tls-report` runs as
// the CLI does, beside it, on the same store.

import assert from "node:assert/strict";
import { gunzipSync } from "node:zlib";
import { Mta } from "../mta/mta.ts";
import { MemoryLogger } from "../log/logger.ts";
import { python, tempConfig, tern, waitFor } from "./_helpers.ts";
import { deliveryOutcome, freePort, startDnsmasq, startReceiver } from "./_relay_fixtures.ts";
import { makeTestCa } from "./_test_ca.ts";
import {
  buildReport,
  certificateResult,
  countSession,
  type DomainCounts,
  parseTlsRptRecord,
  type TlsRptSession,
  utcDay,
} from "../tls_policy/tls_rpt.ts";
import { TlsRptRecorder } from "../tls_policy/tls_rpt_store.ts";
import { handshakeFailure, stsLookupFailure } from "../tls_policy/tls_rpt_session.ts";

const HTTPS = "127.0.0.41"; // policy host of every domain, and the https: rua
const GOOD = "127.0.0.42"; // STARTTLS, certificate for mx.good.test
const PLAIN = "127.0.0.43"; // no STARTTLS: mx.strip.test, and mx.reports.test

/** The field names of RFC 8460 §4.4, per object. */
const REPORT_FIELDS = [
  "contact-info",
  "date-range",
  "organization-name",
  "policies",
  "report-id",
];
const POLICY_FIELDS = ["mx-host", "policy-domain", "policy-string", "policy-type"];
const SUMMARY_FIELDS = ["total-failure-session-count", "total-successful-session-count"];
const FAILURE_FIELDS = new Set([
  "result-type",
  "sending-mta-ip",
  "receiving-mx-hostname",
  "receiving-mx-helo",
  "receiving-ip",
  "failed-session-count",
  "additional-information",
  "failure-reason-code",
]);

/** A map standing in for the queue's shared state. */
class MapStore {
  readonly map = new Map<string, string>();
  getState(name: string): Promise<string | null> {
    return Promise.resolve(this.map.get(name) ?? null);
  }
  setState(name: string, value: string | null): Promise<void> {
    if (value === null) this.map.delete(name);
    else this.map.set(name, value);
    return Promise.resolve();
  }
}

const stsSession = (failure: TlsRptSession["failure"]): TlsRptSession => ({
  domain: "example.net",
  policy: {
    type: "sts",
    strings: ["version: STSv1", "mode: enforce", "mx: mx.example.net", "max_age: 86400"],
    mxHosts: ["mx.example.net"],
  },
  failure,
});

Deno.test("TLS-RPT: the _smtp._tls record (RFC 8460 §3)", () => {
  assert.deepEqual(
    parseTlsRptRecord([[
      "v=TLSRPTv1; rua=mailto:tls%2Breports@example.net,https://r.example.net/tls",
    ]]),
    { mailto: ["tls+reports@example.net"], https: ["https://r.example.net/tls"] },
  );
  assert.deepEqual(parseTlsRptRecord([["v=TLSRPTv1;", "rua=mailto:a@example.net"]]), {
    mailto: ["a@example.net"],
    https: [],
  });
  assert.equal(parseTlsRptRecord([["v=TLSRPTv1; rua=ftp://x.example"]]), null);
  assert.equal(
    parseTlsRptRecord([["v=TLSRPTv1; rua=mailto:a@x"], ["v=TLSRPTv1; rua=mailto:b@x"]]),
    null,
  );
  assert.equal(parseTlsRptRecord([["v=spf1 -all"]]), null);
});

Deno.test("TLS-RPT: result types of certificate and policy failures (RFC 8460 §4.3)", () => {
  assert.equal(certificateResult("CERT_HAS_EXPIRED"), "certificate-expired");
  assert.equal(certificateResult("ERR_TLS_CERT_ALTNAME_INVALID"), "certificate-host-mismatch");
  assert.equal(certificateResult("DEPTH_ZERO_SELF_SIGNED_CERT"), "certificate-not-trusted");
  assert.equal(certificateResult("UNABLE_TO_VERIFY_LEAF_SIGNATURE"), "certificate-not-trusted");
  assert.equal(certificateResult("something else"), "validation-failure");
  const dane = handshakeFailure(
    { kind: "dane" },
    new Error("TLS with mx[192.0.2.1]:25 refused: no TLSA record matches the server's certificate"),
    false,
  );
  assert.equal(dane.resultType, "tlsa-invalid");
  const fetch = (error: string) =>
    stsLookupFailure({ policy: null, source: "none", error })?.resultType;
  assert.equal(fetch("the policy of x.test is malformed: no mx line"), "sts-policy-invalid");
  assert.equal(fetch("https://mta-sts.x.test/...: self-signed certificate"), "sts-webpki-invalid");
  assert.equal(fetch("https://mta-sts.x.test/...: HTTP 503"), "sts-policy-fetch-error");
  assert.equal(stsLookupFailure({ policy: null, source: "none" }), null);
});

Deno.test("TLS-RPT: counts from two nodes add up in the store (read-merge-write)", async () => {
  const store = new MapStore();
  const now = () => Date.parse("2026-03-01T12:00:00Z");
  const a = new TlsRptRecorder({ store, now });
  const b = new TlsRptRecorder({ store, now });
  const failure = {
    resultType: "starttls-not-supported" as const,
    receivingMx: "mx.example.net",
    receivingIp: "192.0.2.25",
  };
  a.record(stsSession(null));
  a.record(stsSession(failure));
  b.record(stsSession(null));
  b.record(stsSession(failure));
  b.record({ ...stsSession(null), domain: "other.example" });
  await a.flush();
  await b.close();
  assert.deepEqual(JSON.parse(store.map.get("tls-rpt/2026-03-01")!), [
    "example.net",
    "other.example",
  ]);
  const counts = JSON.parse(store.map.get("tls-rpt/2026-03-01/example.net")!) as DomainCounts;
  const [entry] = Object.values(counts.policies);
  assert.equal(entry?.success, 2);
  assert.equal(entry?.failure, 2);
  assert.deepEqual(Object.values(entry!.details).map((d) => d.count), [2]);
  const report = buildReport("2026-03-01", "example.net", counts, {
    organization: "Org",
    contact: "tls@example.org",
  }, "r1");
  assert.deepEqual(Object.keys(report).sort(), REPORT_FIELDS);
  assert.deepEqual(report["date-range"], {
    "start-datetime": "2026-03-01T00:00:00Z",
    "end-datetime": "2026-03-01T23:59:59Z",
  });
  // Failures past the cap still count in the summary.
  const big: DomainCounts = { policies: {} };
  for (let i = 0; i < 200; i++) {
    countSession(big, stsSession({ ...failure, receivingIp: `192.0.2.${i}` }));
  }
  const [capped] = Object.values(big.policies);
  assert.equal(capped?.failure, 200);
  assert.equal(Object.keys(capped!.details).length, 50);
});

Deno.test("TLS-RPT: sessions under enforce counted, reported as JSON, mailed and POSTed", async (t) => {
  await using ca = await makeTestCa();
  const goodCert = await ca.issue(["mx.good.test"]);
  const httpsCert = await ca.issue([
    "mta-sts.good.test",
    "mta-sts.strip.test",
    "rua.reports.test",
  ]);
  const port = await freePort(GOOD);
  await using good = await startReceiver(GOOD, port, { tls: goodCert });
  await using plain = await startReceiver(PLAIN, port);
  const posts: { type: string | null; body: Uint8Array; path: string }[] = [];
  const policy = (mx: string) =>
    `version: STSv1\r\nmode: enforce\r\nmx: ${mx}\r\nmax_age: 604800\r\n`;
  const server = Deno.serve({
    hostname: HTTPS,
    port: 443,
    cert: await Deno.readTextFile(httpsCert.cert),
    key: await Deno.readTextFile(httpsCert.key),
    onListen: () => {},
  }, async (request) => {
    const url = new URL(request.url);
    const host = (request.headers.get("host") ?? "").replace(/:\d+$/, "");
    if (request.method === "POST" && host === "rua.reports.test") {
      posts.push({
        type: request.headers.get("content-type"),
        body: new Uint8Array(await request.arrayBuffer()),
        path: url.pathname,
      });
      return new Response("thanks", { status: 201 });
    }
    const text = (type: string) =>
      new Response(policy(type), { headers: { "content-type": "text/plain" } });
    if (url.pathname !== "/.well-known/mta-sts.txt") return new Response("no", { status: 404 });
    if (host === "mta-sts.good.test") return text("*.good.test");
    if (host === "mta-sts.strip.test") return text("mx.strip.test");
    return new Response("no", { status: 404 });
  });
  const txtFile = `${ca.dir}/txt.conf`;
  await Deno.writeTextFile(
    txtFile,
    'txt-record=_smtp._tls.good.test,"v=TLSRPTv1; ' +
      'rua=mailto:tls@reports.test,https://rua.reports.test/tlsrpt"\n',
  );
  const records = [
    "--mx-host=good.test,mx.good.test,10",
    `--host-record=mx.good.test,${GOOD}`,
    "--mx-host=strip.test,mx.strip.test,10",
    `--host-record=mx.strip.test,${PLAIN}`,
    "--mx-host=reports.test,mx.reports.test,10",
    `--host-record=mx.reports.test,${PLAIN}`,
    `--host-record=rua.reports.test,${HTTPS}`,
    `--host-record=mta-sts.good.test,${HTTPS}`,
    `--host-record=mta-sts.strip.test,${HTTPS}`,
    "--txt-record=_mta-sts.good.test,v=STSv1; id=1",
    "--txt-record=_mta-sts.strip.test,v=STSv1; id=1",
    // From a file: only there does dnsmasq keep a comma inside a quoted text.
    `--conf-file=${txtFile}`,
    "--txt-record=_smtp._tls.strip.test,v=TLSRPTv1; rua=mailto:tls@reports.test",
  ];
  await using dns = await startDnsmasq(records, [], { ready: "mx.good.test" });
  const { dir, file, config } = await tempConfig(
    `listeners: [{ address: 127.0.0.1, port: 0, mode: mx }]
local_domains: [example.test]
relay:
  ca_file: ${JSON.stringify(ca.certFile)}
  tls_rpt: { organization: Tern Test, contact: tls-admin@example.test, from: reports@example.test }
dns: { nameservers: ["${dns.nameserver}"] }
`,
  );
  const logger = new MemoryLogger();
  const mta = await Mta.start(config, { logger, pollMs: 50, mxPort: port });
  const day = utcDay(Date.now());
  try {
    const smtpPort = mta.listeners[0]!.port;
    const outcome = (to: string) => deliveryOutcome(logger, to);
    let reports: Record<string, unknown>[] = [];

    await t.step("a success and a STARTTLS-stripped failure under enforce", async () => {
      await sendTo(smtpPort, "u@good.test");
      await sendTo(smtpPort, "u@strip.test");
      assert.equal((await outcome("u@good.test")).event, "delivery.sent");
      assert.equal((await outcome("u@strip.test")).event, "delivery.deferred");
      await mta.flushTlsReports();
    });

    await t.step("tern tls-report prints the day's reports with the RFC's fields", async () => {
      const run = await tern(["tls-report", "--config", file, "--day", day]);
      assert.equal(run.code, 0, run.stderr);
      reports = JSON.parse(run.stdout);
      assert.match(run.stderr, /good\.test: rua mailto:tls@reports\.test, https:\/\/rua/);
      const byDomain = (d: string) =>
        reports.find((r) =>
          (r.policies as { policy: Record<string, unknown> }[])[0]?.policy["policy-domain"] === d
        );
      for (const r of reports) {
        assert.deepEqual(Object.keys(r).sort(), REPORT_FIELDS);
        assert.equal(r["organization-name"], "Tern Test");
        assert.equal(r["contact-info"], "tls-admin@example.test");
        for (const p of r.policies as Record<string, Record<string, unknown>>[]) {
          assert.deepEqual(Object.keys(p.policy!).sort(), POLICY_FIELDS);
          assert.deepEqual(Object.keys(p.summary!).sort(), SUMMARY_FIELDS);
          for (const f of (p["failure-details"] ?? []) as unknown as Record<string, unknown>[]) {
            for (const key of Object.keys(f)) assert.ok(FAILURE_FIELDS.has(key), key);
          }
        }
      }
      const goodPolicy = (byDomain("good.test")?.policies as Record<string, unknown>[])[0]!;
      assert.deepEqual(goodPolicy.policy, {
        "policy-type": "sts",
        "policy-string": ["version: STSv1", "mode: enforce", "mx: *.good.test", "max_age: 604800"],
        "policy-domain": "good.test",
        "mx-host": ["*.good.test"],
      });
      assert.deepEqual(goodPolicy.summary, {
        "total-successful-session-count": 1,
        "total-failure-session-count": 0,
      });
      const strip = (byDomain("strip.test")?.policies as Record<string, unknown>[])[0]!;
      assert.deepEqual(strip.summary, {
        "total-successful-session-count": 0,
        "total-failure-session-count": 1,
      });
      const [detail] = strip["failure-details"] as Record<string, unknown>[];
      assert.equal(detail?.["result-type"], "starttls-not-supported");
      assert.equal(detail?.["receiving-mx-hostname"], "mx.strip.test");
      assert.equal(detail?.["receiving-ip"], PLAIN);
      assert.equal(detail?.["sending-mta-ip"], "127.0.0.1");
      assert.equal(detail?.["failed-session-count"], 1);
    });

    await t.step(
      "--send: multipart/report mail to the mailto: rua, gzip POST to the https: one",
      async () => {
        const run = await tern([
          "tls-report",
          "--config",
          file,
          "--day",
          day,
          "--domain",
          "good.test",
          "--send",
        ]);
        assert.equal(run.code, 0, run.stderr);
        assert.match(run.stderr, /sent to mailto:tls@reports\.test: queued as /);
        assert.match(run.stderr, /sent to https:\/\/rua\.reports\.test\/tlsrpt: accepted/);
        const sent = JSON.parse(run.stdout)[0];
        // The HTTPS rua (RFC 8460 §5.4).
        assert.equal(posts.length, 1);
        assert.equal(posts[0]!.type, "application/tlsrpt+gzip");
        assert.equal(posts[0]!.path, "/tlsrpt");
        assert.deepEqual(JSON.parse(new TextDecoder().decode(gunzipSync(posts[0]!.body))), sent);
        // The mailto rua (RFC 8460 §5.3), delivered by the running server.
        const mail = await waitFor(
          async () => (await plain.messages()).find((m) => m.to.includes("tls@reports.test")),
          20_000,
        );
        assert.equal(mail.from, "reports@example.test");
        const parsed = JSON.parse(
          await python3(
            `
import email, gzip, json, sys
m = email.message_from_string(sys.stdin.read())
parts = m.get_payload()
out = {
  "type": m.get_content_type(),
  "report_type": m.get_param("report-type"),
  "domain": m["TLS-Report-Domain"],
  "submitter": m["TLS-Report-Submitter"],
  "tls_required": m["TLS-Required"],
  "subject": " ".join(m["Subject"].split()),
  "parts": [p.get_content_type() for p in parts],
  "filename": parts[1].get_filename(),
  "json": json.loads(gzip.decompress(parts[1].get_payload(decode=True))),
}
print(json.dumps(out))
`,
            mail.data,
          ),
        );
        assert.equal(parsed.type, "multipart/report");
        assert.equal(parsed.report_type, "tlsrpt");
        assert.equal(parsed.domain, "good.test");
        assert.equal(parsed.submitter, "example.test");
        assert.equal(parsed.tls_required, "No");
        assert.match(
          parsed.subject,
          /^Report Domain: good\.test Submitter: example\.test Report-ID: </,
        );
        assert.deepEqual(parsed.parts, ["text/plain", "application/tlsrpt+gzip"]);
        assert.match(parsed.filename, /^example\.test!good\.test!\d+!\d+!.*\.json\.gz$/);
        assert.deepEqual(parsed.json, sent);
        assert.notEqual(await mta.queue.getState(`tls-rpt-sent/${day}/good.test`), null);
        // RFC 8460 §3: the report's own delivery is not counted (TLS-Required: No).
        await waitFor(() =>
          logger.records.find((r) =>
            r.event === "delivery.sent" && r.fields.rcpt === "<tls@reports.test>"
          )
        );
        await mta.flushTlsReports();
        assert.equal(await mta.queue.getState(`tls-rpt/${day}/reports.test`), null);
      },
    );

    await t.step("bad arguments are one line", async () => {
      const run = await tern(["tls-report", "--config", file, "--day", "2026-13-45"]);
      assert.equal(run.code, 1);
      assert.match(run.stderr, /^tern tls-report: not a day \(YYYY-MM-DD\): "2026-13-45"/);
    });
    assert.ok(good);
  } finally {
    await mta.stop(500);
    await server.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

async function sendTo(port: number, to: string): Promise<void> {
  await python(
    `
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1])) as s:
    s.sendmail("alice@example.test", [sys.argv[2]], b"Subject: rpt\\r\\n\\r\\nhello\\r\\n")
`,
    [String(port), to],
  );
}

/** Runs a script with Debian's Python (its email package), `input` on stdin. */
async function python3(script: string, input: string): Promise<string> {
  const child = new Deno.Command("/usr/bin/python3", {
    args: ["-c", script],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(input));
  await w.close();
  const out = await child.output();
  if (!out.success) throw new Error(`python3 failed: ${new TextDecoder().decode(out.stderr)}`);
  return new TextDecoder().decode(out.stdout);
}
