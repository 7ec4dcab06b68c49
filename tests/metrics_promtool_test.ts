// /metrics scraped during real traffic (smtplib clients, local and relayed
// mail, refusals, STARTTLS both ways) passes Debian's `promtool check
// metrics` (package prometheus), and its counters and histograms move by
// exactly the mail sent. The Grafana dashboard in examples/ queries only
// metrics that /metrics shows. The registry, the log-line counters, the DKIM
// signer and the resolver hook are checked on their own too.

import assert from "node:assert/strict";
import { join } from "node:path";
import { python, startMta, waitFor, waitForMail } from "./_helpers.ts";
import { freePort, startReceiver, testCertificate } from "./_relay_fixtures.ts";
import { Counter, Gauge, Histogram, Registry } from "../metrics/registry.ts";
import { countingLogger, countServerEvent } from "../metrics/observers.ts";
import { countedSigner } from "../mta/dkim_signer.ts";
import type { ConnectionInfo, ServerLogEvent } from "../smtp/server.ts";
import {
  authFailures,
  authLockouts,
  authResults,
  dkimSignatures,
  refusalReason,
  registry,
  seriesOf,
  tlsInbound,
  tlsOutbound,
  verbIndex,
} from "../metrics/tern.ts";
import { MemoryLogger } from "../log/logger.ts";
import { parseDkimKey } from "../auth/dkim_keys.ts";
import { StubResolver } from "../dns/resolver.ts";

const PROMTOOL = "/usr/bin/promtool";
const DASHBOARD = new URL("../examples/grafana-dashboard.json", import.meta.url);

/** Runs `promtool check metrics` on exposition text; returns its exit code and what it said. */
async function promtool(text: string): Promise<{ code: number; output: string }> {
  try {
    await Deno.stat(PROMTOOL);
  } catch {
    throw new Error(`${PROMTOOL} is missing: install the Debian package prometheus`);
  }
  const child = new Deno.Command(PROMTOOL, {
    args: ["check", "metrics"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const out = await child.output();
  const d = new TextDecoder();
  return { code: out.code, output: d.decode(out.stdout) + d.decode(out.stderr) };
}

/**
 * The samples of exposition text by `name{labels}`, labels sorted by name
 * (values here never hold a comma or a quote).
 */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    const series = line.slice(0, at);
    const brace = series.indexOf("{");
    const key = brace < 0
      ? `${series}{}`
      : `${series.slice(0, brace)}{${series.slice(brace + 1, -1).split(",").sort().join(",")}}`;
    out.set(key, Number(line.slice(at + 1)));
  }
  return out;
}

/** The metric families `# TYPE` names. */
function families(text: string): Set<string> {
  return new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!));
}

async function scrape(port: number): Promise<string> {
  const response = await fetch(`http://127.0.0.1:${port}/metrics`);
  assert.equal(response.status, 200);
  return await response.text();
}

const LOCAL = 12;
const RELAYED = 8;
const REFUSED = 3;

// One plain session: LOCAL messages to a mailbox, REFUSED to nobody; one
// STARTTLS session: RELAYED messages to the relay's sink.
const LOAD = `
import smtplib, ssl, sys
port, local, relayed, refused = (int(a) for a in sys.argv[1:5])
with smtplib.SMTP("127.0.0.1", port) as s:
    for i in range(local):
        s.sendmail("a@example.org", ["bob@mx.example.test"], f"Subject: {i}\\r\\n\\r\\nhi\\r\\n")
    for i in range(refused):
        try:
            s.sendmail("a@example.org", ["nobody@mx.example.test"], "Subject: x\\r\\n\\r\\nhi\\r\\n")
        except smtplib.SMTPRecipientsRefused:
            pass
with smtplib.SMTP("127.0.0.1", port) as s:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    s.starttls(context=context)
    for i in range(relayed):
        s.sendmail("a@example.org", ["someone@example.net"], f"Subject: r{i}\\r\\n\\r\\nhi\\r\\n")
print("done")
`;

Deno.test("metrics: /metrics under load passes promtool, moves by exactly the mail sent, and has every metric the dashboard queries", async () => {
  const cert = await testCertificate();
  try {
    const sinkPort = await freePort();
    await using sink = await startReceiver("127.0.0.1", sinkPort, { tls: cert });
    await using running = await startMta(
      `local_domains: [mx.example.test]
accounts: { bob@mx.example.test: {} }
limits: { greeting_delay: 0s }
admin: { address: 127.0.0.1, port: 0 }
tls: { cert: ${cert.cert}, key: ${cert.key} }
relay: { routes: { example.net: "127.0.0.1:${sinkPort}" } }
`,
    );
    const admin = running.mta.admin!;
    const before = samples(await scrape(admin.port));
    const delta = (after: Map<string, number>, key: string) =>
      (after.get(key) ?? 0) - (before.get(key) ?? 0);

    const out = await python(LOAD, [
      String(running.port),
      String(LOCAL),
      String(RELAYED),
      String(REFUSED),
    ]);
    assert.equal(out.trim(), "done");
    await waitForMail(join(running.config.mailRoot, "mx.example.test", "bob"), LOCAL);
    await waitFor(async () => (await sink.messages()).length >= RELAYED ? true : undefined);
    // Outcomes are counted after the Maildir write and the remote 250, sessions
    // at the disconnect: wait for the counters, not a sleep.
    const text = await waitFor(async () => {
      const t = await scrape(admin.port);
      const s = samples(t);
      const done = delta(s, 'tern_deliveries_total{result="sent",transport="local"}') === LOCAL &&
        delta(s, 'tern_deliveries_total{result="sent",transport="relay"}') === RELAYED &&
        s.get('tern_smtp_sessions{listener="mx"}') === 0;
      return done ? t : undefined;
    }, 15_000);

    const lint = await promtool(text);
    assert.equal(lint.code, 0, lint.output);
    assert.equal(lint.output.trim(), "", "promtool has nothing to say");

    const after = samples(text);
    const d = (key: string) => delta(after, key);
    const sent = LOCAL + RELAYED;
    assert.equal(d("tern_messages_accepted_total{}"), sent);
    assert.equal(d('tern_smtp_connections_total{listener="mx"}'), 2);
    assert.equal(d('tern_smtp_commands_total{listener="mx",verb="DATA"}'), sent);
    assert.equal(d('tern_smtp_commands_total{listener="mx",verb="RCPT"}'), sent + REFUSED);
    assert.equal(d('tern_smtp_commands_total{listener="mx",verb="STARTTLS"}'), 1);
    assert.equal(d('tern_smtp_replies_total{code="550",listener="mx"}'), REFUSED);
    assert.equal(d('tern_smtp_refusals_total{code="550"}'), REFUSED);
    assert.equal(d('tern_messages_refused_total{reason="addressing",stage="rcpt"}'), REFUSED);
    assert.equal(d('tern_tls_inbound_total{listener="mx",version="TLSv1.3"}'), 1);
    assert.equal(d('tern_tls_outbound_total{verified="no",version="TLSv1.3"}'), RELAYED);
    // One observation per message: the end of data, the commit, the final
    // outcome. Local mail goes into its mailbox at acceptance, without a commit.
    assert.equal(d('tern_intake_latency_seconds_count{listener="mx"}'), sent);
    assert.equal(d('tern_intake_latency_seconds_bucket{le="+Inf",listener="mx"}'), sent);
    assert.equal(d("tern_store_commit_latency_seconds_count{}"), RELAYED);
    assert.equal(d('tern_delivery_latency_seconds_count{transport="local"}'), LOCAL);
    assert.equal(d('tern_delivery_latency_seconds_count{transport="relay"}'), RELAYED);
    assert.ok(d('tern_delivery_latency_seconds_sum{transport="local"}') >= 0);
    assert.equal(after.get("tern_queue_oldest_message_age_seconds{}"), 0);

    // Every metric the dashboard asks for is on /metrics (histograms by their family name).
    const dashboard = JSON.parse(await Deno.readTextFile(DASHBOARD));
    const shown = families(text);
    const exprs = JSON.stringify(dashboard).matchAll(/\btern_[a-z0-9_]+/g);
    const asked = new Set([...exprs].map((m) => m[0].replace(/_(bucket|sum|count)$/, "")));
    assert.ok(asked.size >= 10, `the dashboard asks for ${[...asked]}`);
    for (const name of asked) assert.ok(shown.has(name), `${name} is on /metrics`);
  } finally {
    await Deno.remove(cert.dir, { recursive: true });
  }
});

Deno.test("metrics: the Grafana dashboard is a dashboard with a Prometheus data source variable", async () => {
  const dashboard = JSON.parse(await Deno.readTextFile(DASHBOARD));
  assert.equal(typeof dashboard.title, "string");
  assert.ok(dashboard.schemaVersion >= 36);
  const variable = dashboard.templating.list.find((v: { type: string }) => v.type === "datasource");
  assert.equal(variable?.query, "prometheus");
  const ids = new Set<number>();
  for (const panel of dashboard.panels) {
    assert.ok(!ids.has(panel.id), `panel id ${panel.id} is unique`);
    ids.add(panel.id);
    if (panel.type === "row") continue;
    assert.ok(panel.targets.length > 0, panel.title);
    for (const t of panel.targets) {
      assert.equal(t.datasource.uid, "${datasource}", panel.title);
    }
  }
  const text = JSON.stringify(dashboard);
  assert.match(text, /histogram_quantile\(0\.99, sum by \(le\) \(rate\(tern_delivery_latency/);
});

Deno.test("metrics: histograms render cumulative buckets, +Inf once, sum and count; label values are escaped; promtool agrees", async () => {
  const r = new Registry();
  // An infinite and a repeated bound: +Inf must still appear once.
  const h = r.add(new Histogram("t_latency_seconds", "A test.", ["path"], [1, 0.5, 1, Infinity]));
  const odd = h.labels('a"b\\c\nd');
  for (const v of [0.25, 0.5, 0.75, 3, Number.NaN]) odd.observe(v);
  const c = r.add(new Counter("t_events_total", "Events,\nwith a newline in help.", ["kind"]));
  const series = c.labels("x");
  series.inc();
  series.inc(2);
  series.inc(-5); // counters never go down
  c.inc({ kind: "y" });
  const g = r.add(new Gauge("t_open", "Open things.", ["l"]));
  const open = g.labels("a");
  open.inc();
  open.inc();
  open.dec();
  const text = await r.render();
  assert.equal(
    text.split("\n").filter((l) => l.startsWith("t_latency_seconds")).join("\n"),
    [
      't_latency_seconds_bucket{path="a\\"b\\\\c\\nd",le="0.5"} 2',
      't_latency_seconds_bucket{path="a\\"b\\\\c\\nd",le="1"} 3',
      't_latency_seconds_bucket{path="a\\"b\\\\c\\nd",le="+Inf"} 4',
      't_latency_seconds_sum{path="a\\"b\\\\c\\nd"} 4.5',
      't_latency_seconds_count{path="a\\"b\\\\c\\nd"} 4',
    ].join("\n"),
  );
  assert.match(text, /^# HELP t_events_total Events,\\nwith a newline in help\.$/m);
  assert.match(text, /^t_events_total\{kind="x"\} 3$/m);
  assert.match(text, /^t_events_total\{kind="y"\} 1$/m);
  assert.match(text, /^t_open\{l="a"\} 1$/m);
  assert.equal(series.get(), 3);
  const lint = await promtool(text);
  assert.equal(lint.code, 0, lint.output);
  assert.throws(() => r.add(new Counter("t_events_total", "Again.")), /registered twice/);
  assert.throws(() => new Histogram("t_x_seconds", "Bad.", ["le"], [1]), /bucket label/);
  assert.throws(() => c.labels("x", "y"), /1 labels, got 2/);
});

Deno.test("metrics: command verbs are matched in place, case-insensitively, unknown ones as other", () => {
  assert.equal(verbIndex("MAIL FROM:<a@b>"), verbIndex("mail FROM:<a@b>"));
  assert.ok(verbIndex("STARTTLS") >= 0);
  assert.equal(verbIndex("STARTTLSX"), -1);
  assert.equal(verbIndex("MAILX FROM:<a>"), -1);
  assert.equal(verbIndex(""), -1);
  assert.equal(verbIndex("\u00e9HLO x"), -1);
});

Deno.test("metrics: server events count sessions, AUTH failures and lockouts, TLS and the intake time", () => {
  const series = seriesOf("submission");
  const connection = { id: "T1" } as unknown as ConnectionInfo;
  const ended = new WeakMap<object, number>();
  const failures = authFailures.get();
  const lockouts = authLockouts.get();
  const open = series.sessions.get();
  const intake = series.intake.count;
  const events: ServerLogEvent[] = [
    { type: "connect", connection },
    { type: "tls", connection, protocol: "TLSv1.2", cipher: "x" },
    { type: "auth", connection, mechanism: "PLAIN", outcome: "failed" },
    { type: "auth", connection, mechanism: "PLAIN", outcome: "locked" },
    { type: "auth", connection, mechanism: "PLAIN", outcome: "succeeded" },
    { type: "data", connection, octets: 10 },
    {
      type: "reply",
      connection,
      reply: { code: 250, enhancedStatus: "2.0.0", lines: ["Ok"] },
      context: { stage: "end-of-data", clientName: "", reversePath: "", forwardPaths: [] },
    },
  ];
  for (const e of events) countServerEvent(series, e, ended);
  assert.equal(series.sessions.get(), open + 1);
  assert.equal(authFailures.get(), failures + 2);
  assert.equal(authLockouts.get(), lockouts + 1);
  assert.equal(series.intake.count, intake + 1);
  assert.equal(tlsInbound.get({ listener: "submission", version: "TLSv1.2" }) >= 1, true);
  countServerEvent(series, { type: "disconnect", connection, reason: "quit" }, ended);
  assert.equal(series.sessions.get(), open);
});

Deno.test("metrics: a refusal's reason is the subject of its enhanced status code (RFC 3463), other when there is none", () => {
  assert.equal(refusalReason("5.1.1"), "addressing");
  assert.equal(refusalReason("4.7.1"), "policy");
  assert.equal(refusalReason("5.3.4"), "mail_system");
  assert.equal(refusalReason("5.9.1"), "other");
  assert.equal(refusalReason("5.10.1"), "other");
  assert.equal(refusalReason(""), "other");
  assert.equal(refusalReason(undefined), "other");
});

Deno.test("metrics: verdicts and the relay's TLS are counted from the log lines, passed on unchanged", () => {
  const memory = new MemoryLogger();
  const logger = countingLogger(memory);
  const pass = authResults.get({ method: "spf", result: "pass" });
  const dmarcFail = authResults.get({ method: "dmarc", result: "fail" });
  const dkimOther = authResults.get({ method: "dkim", result: "other" });
  const tls12 = tlsOutbound.get({ version: "TLSv1.2", verified: "yes" });
  const plain = tlsOutbound.get({ version: "none", verified: "no" });
  logger.log("info", "message.accepted", "Q1", {
    auth: "spf=pass dkim=bogus:example.org dmarc=fail:reject x=pass",
  });
  logger.log("info", "message.rejected", "Q2", { auth: "spf=pass" });
  logger.log("info", "delivery.sent", "Q1", { tls: "TLSv1.2", verified: true });
  logger.log("warn", "delivery.deferred", "Q1", { tls: "none" });
  logger.log("info", "delivery.sent", "Q1", { rcpt: "<local@example.test>" });
  assert.equal(authResults.get({ method: "spf", result: "pass" }), pass + 2);
  assert.equal(authResults.get({ method: "dmarc", result: "fail" }), dmarcFail + 1);
  assert.equal(authResults.get({ method: "dkim", result: "other" }), dkimOther + 1);
  assert.equal(authResults.get({ method: "x", result: "pass" }), 0);
  assert.equal(tlsOutbound.get({ version: "TLSv1.2", verified: "yes" }), tls12 + 1);
  assert.equal(tlsOutbound.get({ version: "none", verified: "no" }), plain + 1);
  assert.equal(memory.records.length, 5);
  assert.equal(
    memory.records[0]!.fields.auth,
    "spf=pass dkim=bogus:example.org dmarc=fail:reject x=pass",
  );
});

Deno.test("metrics: DKIM signatures are counted by algorithm, only when made", async () => {
  const out = await new Deno.Command("openssl", {
    args: ["genpkey", "-algorithm", "ed25519"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const key = parseDkimKey(new TextDecoder().decode(out.stdout), "example.test", "s1");
  const signer = countedSigner([key]);
  const before = dkimSignatures.get({ algorithm: "ed25519-sha256" });
  const sign = (from: string) => {
    const s = signer.begin();
    s.update(new TextEncoder().encode(`From: a@${from}\r\nSubject: x\r\n\r\nbody\r\n`));
    return s.finish("");
  };
  assert.match(sign("example.test"), /^DKIM-Signature:/);
  assert.equal(sign("example.org"), "");
  assert.equal(dkimSignatures.get({ algorithm: "ed25519-sha256" }), before + 1);
});

Deno.test("metrics: the resolver reports each question sent and each failed try", async () => {
  const dead = await freePort();
  const asked: string[] = [];
  const failed: string[] = [];
  const resolver = new StubResolver({
    nameservers: [`127.0.0.1:${dead}`],
    timeoutMs: 300,
    attempts: 2,
    onQuery: (type) => asked.push(type),
    onFailure: (type, reason) => failed.push(`${type} ${reason}`),
  });
  await assert.rejects(() => resolver.query("example.test", "MX"));
  assert.deepEqual(asked, ["MX"]);
  assert.equal(failed.length, 2);
  for (const f of failed) assert.match(f, /^MX (network|timeout)$/);
  // The metrics registered for them are on /metrics even before any question.
  const text = await registry.render();
  assert.match(text, /^# TYPE tern_dns_queries_total counter$/m);
  assert.match(text, /^# TYPE tern_dns_failures_total counter$/m);
});

Deno.test("metrics: docs/monitoring.md lists every metric, and names none that does not exist", async () => {
  const doc = await Deno.readTextFile(new URL("../docs/monitoring.md", import.meta.url));
  const listed = new Set(
    [...doc.matchAll(/^\| `(tern_[a-z0-9_]+)`/gm)].map((m) => m[1]!),
  );
  assert.deepEqual([...listed].sort(), [...registry.names].sort());
  // The example alerts too.
  for (const m of doc.matchAll(/\b(tern_[a-z0-9_]+)/g)) {
    const name = m[1]!.replace(/_(bucket|sum|count)$/, "");
    assert.ok(registry.names.includes(name), `${name} in docs/monitoring.md exists`);
  }
});
