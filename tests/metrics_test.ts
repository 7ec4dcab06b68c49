// The admin listener: /metrics parses as Prometheus text format 0.0.4 and
// counts what happened, /healthz and /readyz answer, other paths 404.

import assert from "node:assert/strict";
import { join } from "node:path";
import { python, startMta, waitForMail } from "./_helpers.ts";

// The Debian package python3-prometheus-client installs for the system Python.
const SYSTEM_PYTHON = "/usr/bin/python3";

/** Parses exposition text with prometheus_client; returns `family sample value` lines. */
async function parseWithPrometheus(text: string): Promise<Map<string, number>> {
  const out = await new Deno.Command(SYSTEM_PYTHON, {
    args: [
      "-c",
      `import sys
from prometheus_client.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        print(f"{s.name}{{{labels}}} {s.value}")
`,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = out.stdin.getWriter();
  await writer.write(new TextEncoder().encode(text));
  await writer.close();
  const result = await out.output();
  const decoder = new TextDecoder();
  assert.ok(result.success, `prometheus_client failed: ${decoder.decode(result.stderr)}`);
  const samples = new Map<string, number>();
  for (const line of decoder.decode(result.stdout).trim().split("\n")) {
    const at = line.lastIndexOf(" ");
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return samples;
}

async function get(port: number, path: string): Promise<{ status: number; body: string }> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: response.status, body: await response.text() };
}

const SEND = `
import smtplib, sys
port = int(sys.argv[1])
n = int(sys.argv[2])
with smtplib.SMTP("127.0.0.1", port) as s:
    for i in range(n):
        s.sendmail("a@example.org", ["bob@mx.example.test"], f"Subject: {i}\\r\\n\\r\\nhi\\r\\n")
    try:
        s.sendmail("a@example.org", ["nobody@mx.example.test"], "Subject: x\\r\\n\\r\\nhi\\r\\n")
        print("accepted")
    except smtplib.SMTPRecipientsRefused:
        print("refused")
`;

Deno.test("admin listener: /metrics counts accepted, delivered and refused mail; health and readiness", async () => {
  await using running = await startMta(
    "local_domains: [mx.example.test]\naccounts: { bob@mx.example.test: {} }\nlimits: { greeting_delay: 0s }\nadmin: { address: 127.0.0.1, port: 0 }\n",
  );
  const admin = running.mta.admin;
  assert.ok(admin !== null);
  const before = await parseWithPrometheus((await get(admin.port, "/metrics")).body);
  const accepted0 = before.get("tern_messages_accepted_total{}") ?? -1;
  const sent0 = before.get('tern_deliveries_total{result="sent",transport="local"}') ?? -1;
  assert.ok(accepted0 >= 0 && sent0 >= 0, "the counters are shown before any event");

  const n = 3;
  assert.equal((await python(SEND, [String(running.port), String(n)])).trim(), "refused");
  await waitForMail(join(running.config.mailRoot, "mx.example.test", "bob"), n);

  const scrape = await get(admin.port, "/metrics");
  assert.equal(scrape.status, 200);
  const after = await parseWithPrometheus(scrape.body);
  assert.equal(after.get("tern_messages_accepted_total{}"), accepted0 + n);
  // Delivery is counted after the Maildir write: wait for the counter, not a sleep.
  let samples = after;
  for (let i = 0; i < 100; i++) {
    if (samples.get('tern_deliveries_total{result="sent",transport="local"}') === sent0 + n) break;
    await new Promise((r) => setTimeout(r, 50));
    samples = await parseWithPrometheus((await get(admin.port, "/metrics")).body);
  }
  assert.equal(samples.get('tern_deliveries_total{result="sent",transport="local"}'), sent0 + n);
  assert.ok((samples.get('tern_smtp_connections_total{listener="mx"}') ?? 0) >= 1);
  assert.ok((samples.get('tern_smtp_refusals_total{code="550"}') ?? 0) >= 1);
  for (const state of ["active", "deferred", "held"]) {
    assert.ok(samples.has(`tern_queue_messages{state="${state}"}`), state);
  }

  assert.deepEqual(await get(admin.port, "/healthz"), { status: 200, body: "ok\n" });
  assert.equal((await get(admin.port, "/readyz")).status, 200);
  assert.equal((await get(admin.port, "/nothing")).status, 404);

  // The store closed: the probe's cached answer lapses within a second or two.
  await running.mta.queue.close();
  let ready = 200;
  for (let i = 0; i < 60 && ready === 200; i++) {
    await new Promise((r) => setTimeout(r, 50));
    ready = (await get(admin.port, "/readyz")).status;
  }
  assert.equal(ready, 503);
  assert.equal((await get(admin.port, "/healthz")).status, 200);
});

Deno.test("admin listener: off when the key is absent", async () => {
  await using running = await startMta();
  assert.equal(running.mta.admin, null);
});
