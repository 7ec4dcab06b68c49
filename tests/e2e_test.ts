// End to end over real sockets with real clients: Python's smtplib, swaks and
// a raw TCP client, against an MTA with its real queue and Maildir delivery.
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  maildirFiles,
  python,
  rawExchange,
  splitDelivered,
  startMta,
  swaks,
  waitFor,
  waitForMail,
} from "./_helpers.ts";

const DIRECTORY = `
local_domains: [example.test]
accounts:
  alice@example.test: {}
  bob@example.test: {}
  carol@example.test: {}
aliases:
  team@example.test: [alice@example.test, bob@example.test]
  everyone@example.test: [team@example.test, carol@example.test, alice@example.test]
`;

function mailbox(dir: string, address: string): string {
  const [local, domain] = address.split("@");
  return join(dir, "data", "mail", domain!, local!);
}

Deno.test("swaks sends a message that arrives in the Maildir with Return-Path, Delivered-To and Received", async () => {
  await using t = await startMta(DIRECTORY);
  const r = await swaks([
    "--server",
    `127.0.0.1:${t.port}`,
    "--from",
    "sender@client.test",
    "--to",
    "alice@example.test",
  ]);
  assert.ok(r.success, r.output);
  const id = /250 2\.0\.0 Ok: queued as ([0-9A-Z]+)/.exec(r.output)?.[1];
  assert.ok(id, r.output);
  const [mail] = await waitForMail(mailbox(t.dir, "alice@example.test"), 1);
  const text = new TextDecoder().decode(mail);
  assert.match(
    text,
    /^Return-Path: <sender@client\.test>\r\nDelivered-To: alice@example\.test\r\nReceived: from /,
  );
  assert.match(
    text,
    new RegExp(
      `by mx\\.example\\.test \\(tern\\) with ESMTP id ${id}\r\n\tfor <alice@example\\.test>; `,
    ),
  );
  // One log line for the acceptance, one for the delivery.
  await waitFor(() =>
    t.logger.records.some((r) => r.event === "delivery.sent" && r.queueId === id)
  );
  const accepted = t.logger.records.find((r) => r.event === "message.accepted" && r.queueId === id);
  assert.equal(accepted?.fields.from, "<sender@client.test>");
  assert.equal(accepted?.fields.nrcpt, 1);
  assert.equal(accepted?.fields.client, "127.0.0.1");
});

Deno.test("smtplib delivers an 8-bit UTF-8 body with dot lines byte-exact", async () => {
  await using t = await startMta(DIRECTORY);
  const body = "Subject: =?utf-8?q?caf=C3=A9?=\r\nContent-Type: text/plain; charset=utf-8\r\n" +
    "Content-Transfer-Encoding: 8bit\r\n\r\nCafé, naïve, 日本語\r\n.\r\n..two dots\r\n. space\r\nend\r\n";
  await python(
    `
import smtplib, sys
body = sys.argv[1].encode("utf-8")
with smtplib.SMTP("127.0.0.1", int(sys.argv[2])) as s:
    s.sendmail("sender@client.test", ["bob@example.test"], body, mail_options=["BODY=8BITMIME"])
`,
    [body, String(t.port)],
  );
  const [mail] = await waitForMail(mailbox(t.dir, "bob@example.test"), 1);
  assert.deepEqual(splitDelivered(mail!).rest, new TextEncoder().encode(body));
});

Deno.test("three transactions pipelined on one connection are all queued and delivered (RFC 2920)", async () => {
  await using t = await startMta(DIRECTORY);
  let script = "EHLO client.test\r\n";
  for (const to of ["alice", "bob", "carol"]) {
    script += `MAIL FROM:<s@client.test>\r\nRCPT TO:<${to}@example.test>\r\nDATA\r\n`;
    script += `Subject: to ${to}\r\n\r\nhello ${to}\r\n.\r\n`;
  }
  script += "QUIT\r\n";
  const out = await rawExchange(t.port, script);
  assert.equal(out.match(/^250 2\.0\.0 Ok: queued as /gm)?.length, 3, out);
  assert.match(out, /221 2\.0\.0 Bye\r\n$/);
  for (const to of ["alice", "bob", "carol"]) {
    const [mail] = await waitForMail(mailbox(t.dir, `${to}@example.test`), 1);
    assert.equal(
      new TextDecoder().decode(splitDelivered(mail!).rest),
      `Subject: to ${to}\r\n\r\nhello ${to}\r\n`,
    );
  }
});

Deno.test("a message sent with BDAT in several chunks arrives whole (RFC 3030)", async () => {
  await using t = await startMta(DIRECTORY);
  const out = await python(
    `
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]))
s.ehlo()
assert s.has_extn("chunking")
print(s.docmd("MAIL", "FROM:<s@client.test>"))
print(s.docmd("RCPT", "TO:<alice@example.test>"))
for chunk, last in [(b"Subject: chunks\\r\\n\\r\\n", False), (b".not stuffed\\r\\n", False), (b"end\\r\\n", True)]:
    s.send(b"BDAT %d%s\\r\\n" % (len(chunk), b" LAST" if last else b""))
    s.send(chunk)
    print(s.getreply())
s.quit()
`,
    [String(t.port)],
  );
  assert.match(out, /250, b'2\.0\.0 Ok: queued as/);
  const [mail] = await waitForMail(mailbox(t.dir, "alice@example.test"), 1);
  assert.equal(
    new TextDecoder().decode(splitDelivered(mail!).rest),
    "Subject: chunks\r\n\r\n.not stuffed\r\nend\r\n",
  );
});

Deno.test("plus-addressing delivers to the base mailbox and alias fan-out reaches each mailbox once", async () => {
  await using t = await startMta(DIRECTORY);
  await python(
    `
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1])) as s:
    s.sendmail("s@client.test", ["alice+lists@example.test"], b"Subject: plus\\r\\n\\r\\nx\\r\\n")
    s.sendmail("s@client.test", ["everyone@example.test"], b"Subject: fan-out\\r\\n\\r\\ny\\r\\n")
`,
    [String(t.port)],
  );
  const alice = await waitForMail(mailbox(t.dir, "alice@example.test"), 2);
  const texts = alice.map((m) => new TextDecoder().decode(m));
  assert.ok(
    texts.some((x) =>
      x.includes("Delivered-To: alice+lists@example.test\r\n") && x.includes("Subject: plus")
    ),
  );
  assert.ok(
    texts.some((x) =>
      x.includes("Delivered-To: alice@example.test\r\n") && x.includes("Subject: fan-out")
    ),
  );
  await waitForMail(mailbox(t.dir, "bob@example.test"), 1);
  await waitForMail(mailbox(t.dir, "carol@example.test"), 1);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(
    (await maildirFiles(mailbox(t.dir, "alice@example.test"))).length,
    2,
    "alice gets the fan-out once",
  );
  assert.equal((await maildirFiles(mailbox(t.dir, "alice+lists@example.test"))).length, 0);
});

Deno.test("an unknown local user gets 550 5.1.1 and a remote domain 554 5.7.1 at RCPT", async () => {
  // Loopback is trusted by default (it may relay): trust nobody here.
  await using t = await startMta(DIRECTORY + "relay: { trusted_networks: [] }\n");
  const out = await python(
    `
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1])) as s:
    s.ehlo()
    s.mail("s@client.test")
    print(s.rcpt("nobody@example.test"))
    print(s.rcpt("someone@elsewhere.test"))
    print(s.rcpt("Postmaster"))
`,
    [String(t.port)],
  );
  assert.match(out, /\(550, b'5\.1\.1 No such user here'\)/);
  assert.match(out, /\(554, b'5\.7\.1 Relay access denied'\)/);
  assert.match(out, /\(250, b'2\.1\.5 /);
});

Deno.test("an oversize message gets 552 5.3.4 and the connection stays usable", async () => {
  await using t = await startMta(DIRECTORY + "limits: { max_message_size: 10000 }\n");
  const out = await python(
    `
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]))
s.ehlo()
# No SIZE= declared: the limit is found during the data and answered at its end.
s.mail("s@client.test")
s.rcpt("alice@example.test")
code, text = s.data(b"Subject: big\\r\\n\\r\\n" + (b"y" * 78 + b"\\r\\n") * 200)
print("data", code, text)
try:
    s.sendmail("s@client.test", ["alice@example.test"], b"x" * 20000)  # smtplib declares SIZE=20000
except smtplib.SMTPSenderRefused as e:
    print("mail", e.smtp_code, e.smtp_error)
print(s.sendmail("s@client.test", ["alice@example.test"], b"Subject: small\\r\\n\\r\\nok\\r\\n"))
s.quit()
`,
    [String(t.port)],
  );
  assert.match(out, /data 552 b'5\.3\.4 /);
  assert.match(out, /mail 552 b'5\.3\.4 /);
  assert.match(out, /\{\}/);
  const [mail] = await waitForMail(mailbox(t.dir, "alice@example.test"), 1);
  assert.match(new TextDecoder().decode(mail), /Subject: small/);
});

Deno.test("the 101st recipient gets 452 4.5.3 and the message goes to the first 100", async () => {
  await using t = await startMta(`local_domains: [example.test]\n`);
  const out = await python(
    `
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1])) as s:
    refused = s.sendmail("s@client.test", ["u%d@example.test" % i for i in range(101)], b"Subject: many\\r\\n\\r\\nx\\r\\n")
    print(refused)
`,
    [String(t.port)],
  );
  assert.match(out, /'u100@example\.test': \(452, b'4\.5\.3 Too many recipients'\)/);
  await waitForMail(mailbox(t.dir, "u99@example.test"), 1);
  await waitForMail(mailbox(t.dir, "u0@example.test"), 1);
  assert.equal((await maildirFiles(mailbox(t.dir, "u100@example.test"))).length, 0);
});

Deno.test("a bare LF in the data is refused after the real end of data, and nothing is smuggled", async () => {
  await using t = await startMta(DIRECTORY);
  const out = await rawExchange(
    t.port,
    "EHLO c.test\r\nMAIL FROM:<s@c.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n" +
      "Subject: a\r\n\r\nx\n.\nMAIL FROM:<evil@c.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nSubject: forged\r\n\r\n.\r\nQUIT\r\n",
  );
  assert.match(out, /550 5\.6\.11 /);
  assert.doesNotMatch(out, /queued as/);
  await new Promise((r) => setTimeout(r, 500));
  assert.equal((await maildirFiles(mailbox(t.dir, "bob@example.test"))).length, 0);
  assert.equal((await maildirFiles(mailbox(t.dir, "alice@example.test"))).length, 0);
});
