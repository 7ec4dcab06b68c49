// `tern status`: against a running server with an admin listener (its
// /status), one without (the lock on tern.pid, and the store read here), and
// a stopped one (exit 3, the queue still counted from the store).

import assert from "node:assert/strict";
import { join } from "node:path";
import { python, startMta, tern, waitFor } from "./_helpers.ts";
import { freePort } from "./_relay_fixtures.ts";
import type { Queue } from "../queue/queue.ts";
import type { StatusReport } from "../cli/status.ts";

/** Queues one message and holds it (as `tern queue hold` would), as of `arrival`. */
async function holdOne(queue: Queue, arrival: number): Promise<void> {
  const m = await queue.receive({
    envelope: {
      reversePath: "a@example.org",
      forwardPaths: ["bob@mx.example.test"],
      body: "7BIT",
      smtputf8: false,
    },
    recipients: [{
      address: "bob@mx.example.test",
      originalRecipient: "bob@mx.example.test",
      mailbox: "bob",
    }],
    clientAddress: "127.0.0.1",
    now: arrival,
  });
  await m.write(new TextEncoder().encode("Subject: held\r\n\r\nhi\r\n"));
  await m.commit({ hold: true });
}

Deno.test("tern status: a running server's listeners and queue from its admin listener, as text and JSON", async () => {
  const adminPort = await freePort();
  const closed = await freePort(); // nothing listens: the relayed message is deferred
  await using running = await startMta(
    `local_domains: [mx.example.test]
accounts: { bob@mx.example.test: {} }
limits: { greeting_delay: 0s }
admin: { address: 127.0.0.1, port: ${adminPort} }
relay: { routes: { example.net: "127.0.0.1:${closed}" } }
queue: { retry: [1h] }
`,
  );
  const file = join(running.dir, "tern.yaml");
  await holdOne(running.mta.queue, Date.now() - 7_200_000);
  await python(
    `import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1])) as s:
    s.sendmail("a@example.org", ["someone@example.net"], "Subject: x\\r\\n\\r\\nhi\\r\\n")`,
    [String(running.port)],
  );
  await waitFor(async () => {
    const r = await fetch(`http://127.0.0.1:${adminPort}/status`);
    const body = await r.json();
    return body.queue.deferred === 1 ? true : undefined;
  }, 10_000);

  const json = await tern(["status", "--config", file, "--json"]);
  assert.equal(json.code, 0, json.stderr);
  const report = JSON.parse(json.stdout) as StatusReport;
  assert.equal(report.running, true);
  assert.equal(report.source, "admin");
  assert.equal(report.pid, Deno.pid);
  assert.deepEqual(report.listeners, [
    { mode: "mx", address: "127.0.0.1", port: running.port },
    { mode: "admin", address: "127.0.0.1", port: adminPort },
  ]);
  assert.equal(report.queue?.held, 1);
  assert.equal(report.queue?.deferred, 1);
  assert.equal(report.queue?.active, 0);
  assert.ok((report.queue?.oldest_age_seconds ?? 0) >= 7_200);

  const text = await tern(["status", "--config", file]);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, new RegExp(`^tern serve: running \\(pid ${Deno.pid}\\), up `, "m"));
  assert.match(text.stdout, new RegExp(`^  mx     127\\.0\\.0\\.1:${running.port}$`, "m"));
  assert.match(text.stdout, new RegExp(`^  admin  127\\.0\\.0\\.1:${adminPort}$`, "m"));
  assert.match(
    text.stdout,
    /^queue: 2 messages \(active 0, deferred 1, held 1\), oldest 2h( \d+s)?$/m,
  );
});

Deno.test("tern status: without admin the pid lock says it runs; once stopped, exit 3 and the queue from the store", async () => {
  const running = await startMta("local_domains: [mx.example.test]\n");
  const file = join(running.dir, "tern.yaml");
  try {
    await holdOne(running.mta.queue, Date.now() - 90_000);
    const up = await tern(["status", "--config", file]);
    assert.equal(up.code, 0, up.stderr);
    assert.match(up.stdout, new RegExp(`^tern serve: running \\(pid ${Deno.pid}\\)$`, "m"));
    assert.match(up.stdout, /^listeners \(configured\):$/m);
    assert.match(up.stdout, /^queue: 1 message \(active 0, deferred 0, held 1\), oldest 1m 3\ds$/m);

    await running.mta.stop(500);
    const down = await tern(["status", "--config", file, "--json"]);
    assert.equal(down.code, 3, down.stderr);
    const report = JSON.parse(down.stdout) as StatusReport;
    assert.equal(report.running, false);
    assert.equal(report.source, "store");
    assert.equal(report.pid, Deno.pid, "the pid the stale file names");
    assert.deepEqual(report.queue && { ...report.queue, oldest_age_seconds: 0 }, {
      active: 0,
      deferred: 0,
      held: 1,
      oldest_age_seconds: 0,
    });
    const text = await tern(["status", "--config", file]);
    assert.equal(text.code, 3);
    assert.match(text.stdout, /^tern serve: not running on /m);
  } finally {
    await Deno.remove(running.dir, { recursive: true });
  }
});

Deno.test("tern status: a configuration that cannot be read is one line and exit 1; no store yet is said", async () => {
  const bad = await tern(["status", "--config", "/nonexistent/tern.yaml"]);
  assert.equal(bad.code, 1);
  assert.equal(bad.stderr.trim().split("\n").length, 1, bad.stderr);
  assert.match(bad.stderr, /^tern status: /);

  const dir = await Deno.makeTempDir({ prefix: "tern-status-" });
  try {
    const file = join(dir, "tern.yaml");
    await Deno.writeTextFile(file, "data_dir: ./never-started\n");
    const r = await tern(["status", "--config", file]);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stdout, /^queue: no store yet/m);
    await assert.rejects(() => Deno.stat(join(dir, "never-started")), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
