// Bounces: a recipient that cannot be delivered within queue.max_age gives
// up, and the sender gets a DSN (RFC 3464) that Python's email package reads
// as multipart/report; a message from <> is never bounced.
import assert from "node:assert/strict";
import { join } from "node:path";
import { maildirFiles, python, startMta, waitFor, waitForMail } from "./_helpers.ts";

const CONFIG = `
local_domains: [example.test]
accounts:
  alice@example.test: {}
  bob@example.test: {}
queue: { retry: [1s], max_age: 2s }
`;

const PARSE_DSN = `
import email, sys, json, re
msg = email.message_from_binary_file(open(sys.argv[1], "rb"))
out = {"type": msg.get_content_type(), "report": msg.get_param("report-type"), "from": msg["From"],
       "to": msg["To"], "return_path": msg["Return-Path"], "parts": [p.get_content_type() for p in msg.get_payload()]}
status = msg.get_payload()[1]
blocks = status.get_payload()
unfold = lambda b: {k: re.sub(r"\\r?\\n(?=[ \\t])", "", v) for k, v in b.items()}  # RFC 5322 §2.2.3
out["per_message"] = unfold(blocks[0])
out["per_recipient"] = [unfold(b) for b in blocks[1:]]
out["returned"] = msg.get_payload()[2].as_string()
print(json.dumps(out))
`;

Deno.test("a recipient that keeps failing until max_age is bounced with a DSN to the sender", async () => {
  await using t = await startMta(CONFIG);
  const mail = join(t.dir, "data", "mail", "example.test");
  await Deno.mkdir(mail, { recursive: true });
  // A link to nothing where bob's Maildir should be: deferred (4.2.0) on every try.
  await Deno.symlink("bob.missing", join(mail, "bob"));
  await python(
    `
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1])) as s:
    s.sendmail("alice@example.test", ["bob@example.test"], b"Subject: for bob\\r\\nMessage-ID: <m1@example.test>\\r\\n\\r\\nhello\\r\\n")
`,
    [String(t.port)],
  );
  const [file] = await waitFor(async () => {
    const f = await maildirFiles(join(mail, "alice"));
    return f.length > 0 ? f : undefined;
  }, 15_000);
  const dsn = JSON.parse(await python(PARSE_DSN, [file!]));
  assert.equal(dsn.type, "multipart/report");
  assert.equal(dsn.report, "delivery-status");
  assert.equal(dsn.return_path, "<>");
  assert.match(dsn.from, /MAILER-DAEMON@mx\.example\.test/);
  assert.deepEqual(dsn.parts, ["text/plain", "message/delivery-status", "text/rfc822-headers"]);
  assert.equal(dsn.per_message["Reporting-MTA"], "dns; mx.example.test");
  assert.equal(dsn.per_recipient.length, 1);
  assert.equal(dsn.per_recipient[0]["Final-Recipient"], "rfc822; bob@example.test");
  assert.equal(dsn.per_recipient[0]["Action"], "failed");
  // RFC 3464 §2.3.4: "failed" takes a 5.x.x Status; the 4.2.0 deferral that
  // reached max_age is now permanent, same subject and detail.
  assert.equal(dsn.per_recipient[0]["Status"], "5.2.0");
  assert.match(dsn.per_recipient[0]["Diagnostic-Code"], /gave up after/);
  assert.match(dsn.returned, /Message-ID: <m1@example\.test>/);
  assert.doesNotMatch(dsn.returned, /hello/);
  // The original leaves the queue once bounced.
  await waitFor(async () => (await t.mta.queue.count()) === 0);
});

Deno.test("a failing message from the null sender is never bounced", async () => {
  await using t = await startMta(CONFIG);
  const mail = join(t.dir, "data", "mail", "example.test");
  await Deno.mkdir(mail, { recursive: true });
  await Deno.writeTextFile(join(mail, "bob"), "not a directory");
  await python(
    `
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1])) as s:
    s.sendmail("", ["bob@example.test"], b"Subject: a bounce\\r\\n\\r\\nx\\r\\n")
`,
    [String(t.port)],
  );
  await waitFor(() => t.logger.records.some((r) => r.event === "dsn.suppressed"), 15_000);
  await waitFor(async () => (await t.mta.queue.count()) === 0);
  assert.equal((await maildirFiles(join(mail, "alice"))).length, 0);
  assert.ok(!t.logger.records.some((r) => r.event === "dsn.queued"));
});

Deno.test("a delivered message produces no DSN", async () => {
  await using t = await startMta(CONFIG);
  await python(
    `
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1])) as s:
    s.sendmail("alice@example.test", ["bob@example.test"], b"Subject: fine\\r\\n\\r\\nx\\r\\n")
`,
    [String(t.port)],
  );
  await waitForMail(join(t.dir, "data", "mail", "example.test", "bob"), 1);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(
    (await maildirFiles(join(t.dir, "data", "mail", "example.test", "alice"))).length,
    0,
  );
});
