// The DSN extension (RFC 3461) end to end: NOTIFY, RET, ENVID and ORCPT are
// taken on MAIL and RCPT, honoured in the reports tern sends, and passed on
// to a next hop that offers DSN.
import assert from "node:assert/strict";
import { join } from "node:path";
import { SmtpServer } from "../smtp/server.ts";
import { queuedReply, REPLIES } from "../smtp/reply.ts";
import { maildirFiles, python, startMta, waitFor } from "./_helpers.ts";
import { freePort, startReceiver } from "./_relay_fixtures.ts";

/** An MTA taking mail for alice and bob at example.test, polling its queue often. */
async function startDsnMta(extra: string) {
  const running = await startMta(
    `local_domains: [example.test]\naccounts:\n  alice@example.test: {}\n  bob@example.test: {}\n${extra}`,
    { pollMs: 100 },
  );
  return { ...running, alice: join(running.dir, "data", "mail", "example.test", "alice") };
}

const SEND = `
import smtplib, sys, json
port, rcpt_options = int(sys.argv[1]), sys.argv[3].split()
with smtplib.SMTP("127.0.0.1", port) as s:
    s.ehlo()
    assert s.has_extn("dsn")
    print(s.mail("alice@example.test", sys.argv[2].split()))
    print(s.rcpt(sys.argv[4], rcpt_options))
    print(s.data(b"Subject: dsn test\\r\\nMessage-ID: <t1@example.test>\\r\\n\\r\\nbody\\r\\n"))
`;

const PARSE = `
import email, sys, json
msg = email.message_from_binary_file(open(sys.argv[1], "rb"))
parts = msg.get_payload()
status = parts[1].get_payload()
print(json.dumps({"subject": msg["Subject"], "message": dict(status[0].items()),
                  "recipients": [dict(b.items()) for b in status[1:]], "returned": parts[2].as_string()}))
`;

Deno.test("NOTIFY=SUCCESS brings a 'delivered' report with the ENVID and ORCPT given", async () => {
  await using t = await startDsnMta("");
  await python(SEND, [
    String(t.port),
    "RET=HDRS ENVID=order+2B42",
    "NOTIFY=SUCCESS ORCPT=rfc822;bob+2Bx@example.test",
    "bob@example.test",
  ]);
  const [file] = await waitFor(async () => {
    const f = await maildirFiles(t.alice);
    return f.length > 0 ? f : undefined;
  });
  const dsn = JSON.parse(await python(PARSE, [file!]));
  assert.equal(dsn.subject, "Successful Mail Delivery Report");
  assert.equal(dsn.message["Original-Envelope-Id"], "order+42");
  assert.equal(dsn.recipients[0]["Action"], "delivered");
  assert.equal(dsn.recipients[0]["Status"], "2.0.0");
  assert.equal(dsn.recipients[0]["Original-Recipient"], "rfc822; bob+x@example.test");
  assert.equal(dsn.recipients[0]["Final-Recipient"], "rfc822; bob@example.test");
});

Deno.test("NOTIFY=NEVER suppresses the bounce of a failed recipient; RET=FULL returns the whole message", async () => {
  const port = await freePort();
  await using receiver = await startReceiver("127.0.0.1", port);
  await using t = await startDsnMta(`relay: { routes: { example.net: "127.0.0.1:${port}" } }\n`);
  await python(SEND, [String(t.port), "", "NOTIFY=NEVER", "fail550@example.net"]);
  await waitFor(() => t.logger.records.some((r) => r.event === "delivery.bounced"));
  await new Promise((r) => setTimeout(r, 300));
  assert.equal((await maildirFiles(t.alice)).length, 0);

  await python(SEND, [String(t.port), "RET=FULL", "NOTIFY=FAILURE", "fail550@example.net"]);
  const [file] = await waitFor(async () => {
    const f = await maildirFiles(t.alice);
    return f.length > 0 ? f : undefined;
  });
  const dsn = JSON.parse(await python(PARSE, [file!]));
  assert.equal(dsn.recipients[0]["Action"], "failed");
  assert.match(dsn.returned, /Content-Type: message\/rfc822/);
  assert.match(dsn.returned, /\n\nbody\n?$/);
  void receiver;
});

Deno.test("DSN parameters are passed on to a next hop that offers DSN, and a 'relayed' report comes from one that does not", async () => {
  const seen: { path: string; parameters: Record<string, string | null> }[] = [];
  const mail: Record<string, string | null>[] = [];
  const nextHop = new SmtpServer({
    hostname: "next.test",
    address: "127.0.0.1",
    port: 0,
    handlers: {
      sender: (_path, parameters) => {
        mail.push(Object.fromEntries(parameters));
        return REPLIES.senderOk;
      },
      recipient: (path, parameters) => {
        seen.push({ path, parameters: Object.fromEntries(parameters) });
        return REPLIES.recipientOk;
      },
      open: () =>
        Promise.resolve({
          write: () => Promise.resolve(),
          commit: () => Promise.resolve(queuedReply("NEXT1")),
          abort: () => Promise.resolve(),
        }),
    },
  });
  const { port: dsnPort } = await nextHop.listen();
  const plainPort = await freePort();
  await using plain = await startReceiver("127.0.0.1", plainPort);
  try {
    await using t = await startDsnMta(
      `relay: { routes: { example.net: "127.0.0.1:${dsnPort}", example.org: "127.0.0.1:${plainPort}" } }\n`,
    );
    await python(SEND, [
      String(t.port),
      "RET=HDRS ENVID=e1",
      "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x@example.net",
      "x@example.net",
    ]);
    await waitFor(() => seen.length > 0);
    assert.deepEqual(seen[0], {
      path: "x@example.net",
      parameters: { NOTIFY: "SUCCESS,FAILURE", ORCPT: "rfc822;x@example.net" },
    });
    assert.equal(mail[0]?.RET, "HDRS");
    assert.equal(mail[0]?.ENVID, "e1");
    // The DSN-capable hop reports success itself: no report from us.
    await new Promise((r) => setTimeout(r, 300));
    assert.equal((await maildirFiles(t.alice)).length, 0);

    await python(SEND, [String(t.port), "", "NOTIFY=SUCCESS", "y@example.org"]);
    const [file] = await waitFor(async () => {
      const f = await maildirFiles(t.alice);
      return f.length > 0 ? f : undefined;
    });
    const dsn = JSON.parse(await python(PARSE, [file!]));
    assert.equal(dsn.recipients[0]["Action"], "relayed");
    assert.equal((await plain.messages())[0]?.rcpt_options.length, 0);
  } finally {
    await nextHop.close(100);
  }
});

Deno.test("a message still undelivered at queue.delay_warning brings one 'delayed' report", async () => {
  const port = await freePort();
  await using receiver = await startReceiver("127.0.0.1", port);
  await using t = await startDsnMta(
    `relay: { routes: { example.net: "127.0.0.1:${port}" } }\nqueue: { retry: [1s], delay_warning: 1s }\n`,
  );
  await python(SEND, [String(t.port), "", "", "always451@example.net"]);
  const [file] = await waitFor(async () => {
    const f = await maildirFiles(t.alice);
    return f.length > 0 ? f : undefined;
  }, 10_000);
  const dsn = JSON.parse(await python(PARSE, [file!]));
  assert.equal(dsn.subject, "Delayed Mail (still being retried)");
  assert.equal(dsn.recipients[0]["Action"], "delayed");
  assert.equal(dsn.recipients[0]["Status"], "4.3.0");
  // More attempts, no second warning.
  await waitFor(
    () => t.logger.records.filter((r) => r.event === "delivery.deferred").length >= 4,
    10_000,
  );
  assert.equal((await maildirFiles(t.alice)).length, 1);
  void receiver;
});
