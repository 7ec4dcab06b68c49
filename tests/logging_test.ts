// The log lines an operator works with, asserted over real sockets: one line
// per refusal with its context (client, HELO, sender, recipient, the reply),
// the Message-ID at acceptance, the remote reply, queue id and TLS of a
// relayed delivery, queue administration with who did it, and the fail2ban
// filter of docs/logging.md matched against real lines.
import assert from "node:assert/strict";
import { join } from "node:path";
import { hashPassword } from "../config/password.ts";
import { createLogger, type LogValue, MemoryLogger } from "../log/logger.ts";
import { Mta } from "../mta/mta.ts";
import { queuedReply, REPLIES } from "../smtp/reply.ts";
import { SmtpServer } from "../smtp/server.ts";
import { TlsContext } from "../smtp/tls_context.ts";
import { python, rawExchange, startMta, swaks, tempConfig, tern, waitFor } from "./_helpers.ts";
import { CERT, plainResponse, TestClient } from "./_tls.ts";

const PASSWORD = "battery staple";
const HASH = await hashPassword(PASSWORD);

type Rec = MemoryLogger["records"][number];

function find(logger: MemoryLogger, event: string, where: (f: Rec["fields"]) => boolean) {
  return logger.records.filter((r) => r.event === event && where(r.fields));
}

/** The records as `tern serve` writes them in text format, timestamps and all. */
function textLines(logger: MemoryLogger): string[] {
  const lines: string[] = [];
  const text = createLogger({ level: "debug", write: (l) => lines.push(l) });
  for (const r of logger.records) text.log(r.level, r.event, r.queueId, r.fields);
  return lines;
}

const DIRECTORY = `
local_domains: [example.test]
accounts:
  alice@example.test: { password: "${HASH}" }
relay:
  trusted_networks: []
limits: { greeting_delay: 0s, auth_failure_delay: 10ms }
`;

Deno.test("swaks: a refused relay and an unknown user each log one message.rejected line with client, HELO, sender, recipient and reply", async () => {
  await using t = await startMta(DIRECTORY);
  const relay = await swaks([
    "--server",
    `127.0.0.1:${t.port}`,
    "--helo",
    "relay-probe.example.org",
    "--from",
    "spammer@example.org",
    "--to",
    "victim@example.net",
  ]);
  assert.match(relay.output, /554 5\.7\.1 /);
  const unknown = await swaks([
    "--server",
    `127.0.0.1:${t.port}`,
    "--helo",
    "client.example.org",
    "--from",
    "someone@example.org",
    "--to",
    "nobody@example.test",
  ]);
  assert.match(unknown.output, /550 5\.1\.1 /);

  const relayLines = find(t.logger, "message.rejected", (f) => f.code === 554);
  assert.equal(relayLines.length, 1, JSON.stringify(t.logger.records));
  const r = relayLines[0]!;
  assert.equal(r.level, "warn"); // X.7.Y: policy
  assert.equal(r.fields.client, "127.0.0.1");
  assert.equal(r.fields.helo, "relay-probe.example.org");
  assert.equal(r.fields.stage, "rcpt");
  assert.equal(r.fields.from, "<spammer@example.org>");
  assert.equal(r.fields.to, "<victim@example.net>");
  assert.equal(r.fields.status, "5.7.1");
  assert.equal(typeof r.fields.reply, "string");

  const unknownLines = find(t.logger, "message.rejected", (f) => f.code === 550);
  assert.equal(unknownLines.length, 1);
  const u = unknownLines[0]!;
  assert.equal(u.level, "info");
  assert.equal(u.fields.helo, "client.example.org");
  assert.equal(u.fields.stage, "rcpt");
  assert.equal(u.fields.from, "<someone@example.org>");
  assert.equal(u.fields.to, "<nobody@example.test>");
  assert.equal(u.fields.status, "5.1.1");
  // swaks then sends DATA with no recipient: refused too, and logged at that stage.
  const data = find(t.logger, "message.rejected", (f) => f.stage === "data");
  assert.ok(
    data.every((d) =>
      d.fields.from === "<someone@example.org>" || d.fields.from === "<spammer@example.org>"
    ),
  );

  // The text line carries it all, quoted where needed.
  const line = textLines(t.logger).find((l) =>
    l.includes("message.rejected") && l.includes("code=554")
  )!;
  assert.match(
    line,
    /^\S+ warn - message\.rejected session=\S+ client=127\.0\.0\.1 port=\d+ helo=relay-probe\.example\.org stage=rcpt from=<spammer@example\.org> to=<victim@example\.net> code=554 status=5\.7\.1 reply="[^"]+"$/,
  );
});

Deno.test("a bare LF in the content logs 550 5.6.11 at end-of-data with the envelope", async () => {
  await using t = await startMta(DIRECTORY);
  const out = await rawExchange(
    t.port,
    "EHLO bare.example.org\r\nMAIL FROM:<lf@example.org>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n" +
      "Subject: bare\nLF\r\n.\r\nQUIT\r\n",
  );
  assert.match(out, /550 5\.6\.11 /);
  const lines = find(t.logger, "message.rejected", (f) => f.status === "5.6.11");
  assert.equal(lines.length, 1, JSON.stringify(t.logger.records));
  const f = lines[0]!.fields;
  assert.equal(f.stage, "end-of-data");
  assert.equal(f.helo, "bare.example.org");
  assert.equal(f.from, "<lf@example.org>");
  assert.equal(f.to, "<alice@example.test>");
  assert.equal(f.code, 550);
});

Deno.test("submission: a 553 sender mismatch logs the user, the sender and the reply", async () => {
  const { dir, config } = await tempConfig(`
listeners: [{ address: 127.0.0.1, port: 0, mode: submissions }]
tls: { cert: "${CERT.cert}", key: "${CERT.key}" }
${DIRECTORY}`);
  const logger = new MemoryLogger();
  const mta = await Mta.start(config, { logger, pollMs: 200 });
  try {
    const client = await TestClient.connect(mta.listeners[0]!.port, { implicitTls: true });
    try {
      await client.command("EHLO laptop.example.test");
      assert.match(
        (await client.command(`AUTH PLAIN ${plainResponse("alice@example.test", PASSWORD)}`))!,
        /^235 /,
      );
      assert.match((await client.command("MAIL FROM:<bob@example.test>"))!, /^553 5\.7\.1 /);
    } finally {
      client.close();
    }
    const lines = find(logger, "message.rejected", (f) => f.code === 553);
    assert.equal(lines.length, 1, JSON.stringify(logger.records));
    const r = lines[0]!;
    assert.equal(r.level, "warn");
    assert.equal(r.fields.user, "alice@example.test");
    assert.equal(r.fields.helo, "laptop.example.test");
    assert.equal(r.fields.stage, "mail");
    assert.equal(r.fields.from, "<bob@example.test>");
    assert.equal(r.fields.to, undefined);
    assert.equal(r.fields.status, "5.7.1");
    assert.match(String(r.fields.reply), /alice@example\.test/);
  } finally {
    await mta.stop(1000);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("smtplib: the Message-ID (folded, or none) is in the message.accepted line", async () => {
  await using t = await startMta(DIRECTORY);
  const out = await python(
    `
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1])) as s:
    s.sendmail("a@example.org", ["alice@example.test"],
        b"Subject: one\\r\\nMessage-ID:\\r\\n <20250101.abc@client.example.org>\\r\\n\\r\\nHi\\r\\n")
    s.sendmail("a@example.org", ["alice@example.test"],
        b"Subject: two\\r\\nX-Message-ID: <not-this@x>\\r\\n\\r\\nMessage-ID: <in-body@x>\\r\\n")
print("ok")
`,
    [String(t.port)],
  );
  assert.match(out, /ok/);
  const accepted = t.logger.records.filter((r) => r.event === "message.accepted");
  assert.equal(accepted.length, 2);
  assert.equal(accepted[0]!.fields.message_id, "<20250101.abc@client.example.org>");
  assert.equal(accepted[1]!.fields.message_id, "none");
  assert.ok(accepted[0]!.queueId);
});

Deno.test("a relayed delivery logs the remote reply, its queue id and the TLS used", async () => {
  const tls = await TlsContext.load(CERT);
  const receiver = new SmtpServer({
    hostname: "next.example.net",
    address: "127.0.0.1",
    port: 0,
    tls,
    handlers: {
      recipient: () => REPLIES.recipientOk,
      open: () =>
        Promise.resolve({
          write: () => Promise.resolve(),
          commit: () => Promise.resolve(queuedReply("ABC123")),
          abort: () => Promise.resolve(),
        }),
    },
  });
  const { port } = await receiver.listen();
  try {
    await using t = await startMta(
      `${DIRECTORY}relay: { trusted_networks: [127.0.0.0/8], routes: { example.net: "127.0.0.1:${port}" } }\n`
        .replace("relay:\n  trusted_networks: []\n", ""),
    );
    await swaks([
      "--server",
      `127.0.0.1:${t.port}`,
      "--to",
      "bob@example.net",
      "--from",
      "a@example.test",
    ]);
    const sent = await waitFor(() =>
      t.logger.records.find((r) =>
        r.event === "delivery.sent" && r.fields.rcpt === "<bob@example.net>"
      )
    );
    const f = sent.fields;
    assert.equal(f.code, 250);
    assert.equal(f.status, "2.0.0");
    assert.equal(f.reply, "Ok: queued as ABC123");
    assert.equal(f.remote_id, "ABC123");
    assert.match(String(f.tls), /^TLSv1\.[23]$/);
    assert.equal(typeof f.cipher, "string");
    assert.equal(f.verified, false); // a self-signed certificate, opportunistic TLS
    assert.match(String(f.next_hop), new RegExp(`127\\.0\\.0\\.1\\]:${port}$`));
  } finally {
    await receiver.close(500);
    tls.close();
  }
});

Deno.test("tern queue hold, release, delete and flush log who did it to stderr", async () => {
  await using t = await startMta(
    `${DIRECTORY}queue: { retry: [1h] }\n`.replace(
      "relay:\n  trusted_networks: []\n",
      'relay: { trusted_networks: [127.0.0.0/8], routes: { example.net: "127.0.0.1:1" } }\n',
    ),
  );
  await swaks([
    "--server",
    `127.0.0.1:${t.port}`,
    "--to",
    "bob@example.net",
    "--from",
    "a@example.test",
  ]);
  const accepted = await waitFor(() =>
    t.logger.records.find((r) => r.event === "message.accepted")
  );
  const id = accepted.queueId!;
  await waitFor(() => t.logger.records.find((r) => r.event === "delivery.deferred"));
  const file = join(t.dir, "tern.yaml");
  const user = Deno.env.get("USER") ?? Deno.env.get("LOGNAME");
  const uid = Deno.uid();
  const expectations: [string, string][] = [
    ["hold", "queue.held"],
    ["release", "queue.released"],
    ["flush", "queue.flushed"],
    ["delete", "queue.deleted"],
  ];
  for (const [sub, event] of expectations) {
    const out = await tern(["queue", sub, "--config", file, ...(sub === "flush" ? [] : [id])]);
    assert.equal(out.code, 0, out.stderr);
    const line = out.stderr.split("\n").find((l) => l.includes(` ${event} `));
    assert.ok(line, `${sub}: ${out.stderr}`);
    const who = user === undefined ? `user=uid${uid}` : `user=${user}`;
    assert.match(
      line,
      new RegExp(`^\\S+ info ${sub === "flush" ? "-" : id} ${event.replace(".", "\\.")} `),
    );
    assert.ok(line.includes(` ${who}`) || line.includes(` user="${user}"`), line);
    assert.ok(line.includes(` uid=${uid}`), line);
    if (sub === "flush") assert.match(line, / count=\d+ /);
  }
});

/** The filter of docs/logging.md, as fail2ban reads it. */
async function fail2banRegex(): Promise<RegExp> {
  const doc = await Deno.readTextFile(new URL("../docs/logging.md", import.meta.url));
  const m = /^failregex = (.+)$/m.exec(doc);
  assert.ok(m, "docs/logging.md has no failregex");
  // fail2ban's <HOST> is an address; the date is cut off the line before matching.
  return new RegExp(m[1]!.replace("<HOST>", "(?<host>[0-9A-Fa-f.:]+)"));
}

Deno.test("the fail2ban filter of docs/logging.md matches failed AUTH lines, and nothing else", async () => {
  const { dir, config } = await tempConfig(`
listeners: [{ address: 127.0.0.1, port: 0, mode: submissions }]
tls: { cert: "${CERT.cert}", key: "${CERT.key}" }
${DIRECTORY}`);
  const logger = new MemoryLogger();
  const mta = await Mta.start(config, { logger, pollMs: 200 });
  try {
    const port = mta.listeners[0]!.port;
    const out = await python(
      `
import smtplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
ctx.check_hostname = False
with smtplib.SMTP_SSL("127.0.0.1", int(sys.argv[1]), context=ctx) as s:
    try:
        s.login("alice@example.test", "wrong password")
    except smtplib.SMTPAuthenticationError as e:
        print("refused", e.smtp_code)
with smtplib.SMTP_SSL("127.0.0.1", int(sys.argv[1]), context=ctx) as s:
    s.login("alice@example.test", sys.argv[3])
    print("ok")
`,
      [String(port), CERT.cert, PASSWORD],
    );
    assert.match(out, /refused 535/);
    assert.match(out, /ok/);
  } finally {
    await mta.stop(1000);
    await Deno.remove(dir, { recursive: true });
  }
  const regex = await fail2banRegex();
  // fail2ban finds the date at the start of the line and matches the rest.
  const lines = textLines(logger).map((l) => l.replace(/^\S+/, ""));
  const matched = lines.filter((l) => regex.test(l));
  assert.ok(matched.length >= 1, lines.join("\n"));
  for (const l of matched) {
    assert.match(l, /session\.auth /);
    assert.doesNotMatch(l, /result=succeeded/);
    assert.equal(regex.exec(l)!.groups!.host, "127.0.0.1");
  }
  assert.ok(lines.some((l) => /session\.auth .*result=succeeded/.test(l)), lines.join("\n"));
  const fields: Record<string, LogValue>[] = logger.records
    .filter((r) => r.event === "session.auth")
    .map((r) => r.fields);
  assert.equal(matched.length, fields.filter((f) => f.result !== "succeeded").length);
});
