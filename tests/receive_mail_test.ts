// receiveMail over real loopback sockets, with real clients: Python's smtplib
// (messages built by its email package), swaks, and a raw client for what
// those refuse to send (bare line feeds).

import assert from "node:assert/strict";
import { python, swaks } from "./_helpers.ts";
import { CERT, TestClient } from "./_tls.ts";
import { type ReceivedMessage, receiveMail, REPLIES, reply } from "../receive/mod.ts";

Deno.test("receiveMail: smtplib's MIME message arrives parsed: encoded Subject, quoted-printable text", async () => {
  const messages: ReceivedMessage[] = [];
  await using server = await receiveMail({ port: 0, onMessage: (m) => void messages.push(m) });
  const out = await python(
    `
import smtplib, sys
from email.message import EmailMessage
m = EmailMessage()
m["From"] = "Zoë Martin <zoe@client.test>"
m["To"] = "bob@example.test"
m["Subject"] = "Grüße aus Köln, ça va? " + "très long " * 8
m["Message-ID"] = "<abc.123@client.test>"
m.set_content("Hallo Bob,\\nÄpfel für alle.\\n", cte="quoted-printable")
m.add_alternative("<p>Hallo</p>", subtype="html")
with smtplib.SMTP("127.0.0.1", int(sys.argv[1])) as s:
    s.ehlo("client.test")
    r = s.send_message(m, from_addr="zoe@client.test", to_addrs=["bob@example.test"])
    print(s.noop()[0], r)
print(m.as_string().count("=?utf-8?"))
`,
    [String(server.port)],
  );
  assert.match(out, /^250 \{\}$/m);
  assert.notEqual(out.trim().split("\n").at(-1), "0", "smtplib did encode the Subject");
  assert.equal(messages.length, 1);
  const m = messages[0]!;
  assert.equal(m.envelope.from, "zoe@client.test");
  assert.deepEqual(m.envelope.to, ["bob@example.test"]);
  assert.equal(m.envelope.clientAddress, "127.0.0.1");
  assert.equal(m.envelope.clientName, "client.test");
  assert.equal(m.envelope.tls, null);
  assert.equal(m.subject, "Grüße aus Köln, ça va? " + "très long ".repeat(8).trimEnd());
  assert.equal(m.header("from"), "Zoë Martin <zoe@client.test>");
  assert.equal(m.messageId, "<abc.123@client.test>");
  assert.equal(m.text, "Hallo Bob,\nÄpfel für alle.\n");
  assert.match(m.header("Content-Type")!, /^multipart\/alternative;/);
  assert.match(new TextDecoder().decode(m.raw), /=C3=84pfel f=C3=BCr alle/);
});

Deno.test("receiveMail: refusals from onRecipient and onMessage reach swaks with their codes", async () => {
  let calls = 0;
  await using server = await receiveMail({
    port: 0,
    onRecipient: (address, client) => {
      assert.equal(client.from, "alice@client.test"); // MAIL FROM is known at RCPT time
      return address.endsWith("@example.test") ? undefined : REPLIES.relayDenied;
    },
    onMessage: () => {
      calls++;
      return reply(550, "5.7.1", "No thanks");
    },
  });
  const common = ["--server", `127.0.0.1:${server.port}`, "--from", "alice@client.test"];
  const relay = await swaks([...common, "--to", "carol@elsewhere.test"]);
  assert.equal(relay.success, false);
  assert.match(relay.output, /<\*\* +554 5\.7\.1 Relay access denied/);

  const refused = await swaks([...common, "--to", "bob@example.test"]);
  assert.equal(refused.success, false);
  assert.match(refused.output, /<\*\* +550 5\.7\.1 No thanks/);
  assert.equal(calls, 1);
});

Deno.test("receiveMail: onMessage throwing gives 451 4.3.0 and the error to onError", async () => {
  const errors: unknown[] = [];
  await using server = await receiveMail({
    port: 0,
    onMessage: () => {
      throw new Error("disk full");
    },
    onError: (error) => errors.push(error),
  });
  const out = await python(
    `
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1])) as s:
    try:
        s.sendmail("alice@client.test", ["bob@example.test"], "Subject: x\\r\\n\\r\\nHi\\r\\n")
        print("accepted")
    except smtplib.SMTPDataError as e:
        print(e.smtp_code, e.smtp_error.decode())
`,
    [String(server.port)],
  );
  assert.match(out, /^451 4\.3\.0 /);
  assert.equal(errors.length, 1);
  assert.equal((errors[0] as Error).message, "disk full");
});

Deno.test("receiveMail: a bare-LF smuggling attempt is refused with 550 5.6.11, onMessage never called", async () => {
  let calls = 0;
  await using server = await receiveMail({ port: 0, onMessage: () => void calls++ });
  const client = await TestClient.connect(server.port);
  try {
    await client.command("EHLO client.test");
    assert.match((await client.command("MAIL FROM:<alice@client.test>"))!, /^250 /);
    assert.match((await client.command("RCPT TO:<bob@example.test>"))!, /^250 /);
    assert.match((await client.command("DATA"))!, /^354 /);
    // A second message hidden behind "\n.\n": a lenient server would see two.
    await client.write(
      "Subject: one\r\n\r\nHi\n.\nMAIL FROM:<x@evil.test>\r\nRCPT TO:<bob@example.test>\r\n" +
        "DATA\r\nSubject: smuggled\r\n\r\nGotcha\r\n.\r\n",
    );
    assert.match((await client.reply())!, /^550 5\.6\.11 /);
    assert.match((await client.command("QUIT"))!, /^221 /);
  } finally {
    client.close();
  }
  assert.equal(calls, 0);
});

Deno.test("receiveMail: STARTTLS with a certificate given as PEM text or as file paths", async () => {
  const messages: ReceivedMessage[] = [];
  await using server = await receiveMail({
    port: 0,
    tls: { cert: CERT.pem, key: await Deno.readTextFile(CERT.key) },
    onMessage: (m) => void messages.push(m),
  });
  const out = await python(
    `
import smtplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
ctx.check_hostname = False  # connecting by address; the certificate is still verified
with smtplib.SMTP("127.0.0.1", int(sys.argv[1])) as s:
    s.ehlo("client.test")
    s.starttls(context=ctx)
    s.ehlo("client.test")
    s.sendmail("alice@client.test", ["bob@example.test"], "Subject: secret\\r\\n\\r\\nHi\\r\\n")
    print("sent", s.sock.version())
`,
    [String(server.port), CERT.cert],
  );
  assert.match(out, /^sent TLSv1\.[23]$/m);
  assert.equal(messages.length, 1);
  assert.match(messages[0]!.envelope.tls?.protocol ?? "", /^TLSv1\.[23]$/);
  assert.equal(messages[0]!.subject, "secret");

  await using byPath = await receiveMail({
    port: 0,
    tls: { cert: CERT.cert, key: CERT.key },
    onMessage: () => {},
  });
  const client = await TestClient.connect(byPath.port);
  try {
    await client.secure();
    assert.match(client.received, /^250-STARTTLS\r$/m);
  } finally {
    client.close();
  }
});

Deno.test("receiveMail: a maxMessageSize of 0 is refused: messages are held in memory", async () => {
  await assert.rejects(
    () => receiveMail({ port: 0, maxMessageSize: 0, onMessage: () => {} }),
    RangeError,
  );
});
