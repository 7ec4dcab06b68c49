// Submission and security with real clients on loopback: STARTTLS (RFC 3207),
// implicit TLS (RFC 8314), AUTH PLAIN and LOGIN (RFC 4954), the submission
// policy (RFC 6409), relaying, and the TLS transcripts in memory and over TCP.
// Clients: Python's smtplib, swaks, openssl s_client, and a raw socket.
import assert from "node:assert/strict";
import { join } from "node:path";
import { hashPassword } from "../config/password.ts";
import { MemoryLogger } from "../log/logger.ts";
import { Mta } from "../mta/mta.ts";
import { TlsContext } from "../smtp/tls_context.ts";
import {
  python,
  spawnServe,
  splitDelivered,
  swaks,
  tempConfig,
  waitFor,
  waitForMail,
} from "./_helpers.ts";
import {
  CERT,
  loadTlsTranscripts,
  makeCertificate,
  plainResponse,
  playInMemory,
  playOverTcp,
  TestClient,
  transcriptServer,
} from "./_tls.ts";

// UTF-8 in the password (RFC 4616 §2); Python's smtplib sends only ASCII, so carol has one.
const PASSWORD = "correct horse ✓ staple";
const HASH = await hashPassword(PASSWORD);
const ASCII_PASSWORD = "battery staple";
const ASCII_HASH = await hashPassword(ASCII_PASSWORD);

// --- the TLS transcripts ------------------------------------------------------

for (const t of await loadTlsTranscripts()) {
  Deno.test(`TLS transcript ${t.name} gets the same replies in memory, whole, by line and by byte`, () => {
    const expected = t.segments.map((s) => s.server).join("");
    assert.equal(playInMemory(t, "whole"), expected);
    assert.equal(playInMemory(t, "line"), expected);
    assert.equal(playInMemory(t, "byte"), expected);
  });
  Deno.test(`TLS transcript ${t.name} gets the same replies over TCP with real TLS`, async () => {
    const tls = await TlsContext.load(CERT);
    const { server, port } = await transcriptServer(t, tls);
    try {
      assert.equal(await playOverTcp(t, port), t.segments.map((s) => s.server).join(""));
    } finally {
      await server.close(1000);
    }
  });
}

// --- an MTA with the three kinds of listener --------------------------------

interface Running {
  mta: Mta;
  dir: string;
  logger: MemoryLogger;
  mx: number;
  submission: number;
  submissions: number;
  [Symbol.asyncDispose](): Promise<void>;
}

async function startSecureMta(extra = ""): Promise<Running> {
  const { dir, config } = await tempConfig(`
listeners:
  - { address: 127.0.0.1, port: 0, mode: mx }
  - { address: 127.0.0.1, port: 0, mode: submission }
  - { address: 127.0.0.1, port: 0, mode: submissions }
tls: { cert: "${CERT.cert}", key: "${CERT.key}" }
local_domains: [example.test]
accounts:
  alice@example.test: { password: "${HASH}" }
  bob@example.test: {}
  carol@example.test: { password: "${ASCII_HASH}" }
aliases:
  sales@example.test: [alice@example.test, carol@example.test]
relay:
  trusted_networks: []
  routes: { example.net: "127.0.0.1:1" }
limits: { greeting_delay: 0s, auth_failure_delay: 10ms }
${extra}`);
  const logger = new MemoryLogger();
  const mta = await Mta.start(config, { logger, pollMs: 200 });
  const port = (mode: string) => mta.listeners.find((l) => l.mode === mode)!.port;
  return {
    mta,
    dir,
    logger,
    mx: port("mx"),
    submission: port("submission"),
    submissions: port("submissions"),
    async [Symbol.asyncDispose]() {
      await mta.stop(1000);
      await Deno.remove(dir, { recursive: true });
    },
  };
}

function mailbox(dir: string, address: string): string {
  const [local, domain] = address.split("@");
  return join(dir, "data", "mail", domain!, local!);
}

const PY_CONTEXT = `
import smtplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
ctx.check_hostname = False
`;

// --- positive paths with real clients -----------------------------------------

Deno.test("smtplib: STARTTLS, login, and a message that arrives with ESMTPSA and the TLS cipher", async () => {
  await using t = await startSecureMta();
  const out = await python(
    PY_CONTEXT + `
with smtplib.SMTP("127.0.0.1", int(sys.argv[1])) as s:
    s.ehlo()
    print("before", "starttls" in s.esmtp_features, "auth" in s.esmtp_features)
    s.starttls(context=ctx)
    s.ehlo()
    print("after", "starttls" in s.esmtp_features, s.esmtp_features.get("auth", "").strip())
    print(s.login("carol@example.test", sys.argv[3]))
    print(s.sendmail("carol@example.test", ["bob@example.test"], b"Subject: via 587\\r\\n\\r\\nhi\\r\\n"))
`,
    [String(t.submission), CERT.cert, ASCII_PASSWORD],
  );
  assert.match(out, /^before True False$/m);
  assert.match(out, /^after False PLAIN LOGIN$/m);
  assert.match(out, /\(235, b'2\.7\.0 Authentication successful'\)/);
  const [mail] = await waitForMail(mailbox(t.dir, "bob@example.test"), 1);
  const { added } = splitDelivered(mail!);
  assert.match(
    added,
    / with ESMTPSA id [0-9A-Z]+\r\n\t\(using TLSv1\.[23] with cipher [A-Z0-9_-]+\)\r\n/,
  );
  // The log says who, never the password.
  const log = JSON.stringify(t.logger.records);
  assert.ok(log.includes('"user":"carol@example.test"'), log);
  assert.ok(!log.includes(ASCII_PASSWORD));
});

Deno.test("smtplib: implicit TLS (SMTP_SSL) with AUTH LOGIN, and AUTH PLAIN with an initial response", async () => {
  await using t = await startSecureMta();
  const out = await python(
    PY_CONTEXT + `
with smtplib.SMTP_SSL("127.0.0.1", int(sys.argv[1]), context=ctx) as s:
    s.ehlo()
    print("features", "starttls" in s.esmtp_features, s.esmtp_features.get("auth", "").strip())
    s.user, s.password = "carol@example.test", sys.argv[3]
    print("login", s.auth("LOGIN", s.auth_login, initial_response_ok=False))
    print(s.sendmail("sales@example.test", ["bob@example.test"], b"Subject: via 465\\r\\n\\r\\nhi\\r\\n"))
with smtplib.SMTP_SSL("127.0.0.1", int(sys.argv[1]), context=ctx) as s:
    s.ehlo()
    s.user, s.password = "carol@example.test", sys.argv[3]
    print("plain", s.auth("PLAIN", s.auth_plain, initial_response_ok=True))
`,
    [String(t.submissions), CERT.cert, ASCII_PASSWORD],
  );
  assert.match(out, /^features False PLAIN LOGIN$/m);
  assert.match(out, /^login \(235, /m);
  assert.match(out, /^plain \(235, /m);
  const [mail] = await waitForMail(mailbox(t.dir, "bob@example.test"), 1);
  assert.match(splitDelivered(mail!).added, / with ESMTPSA id /);
});

Deno.test("swaks: --tls with AUTH PLAIN on submission, --tlsc with AUTH LOGIN on submissions", async () => {
  await using t = await startSecureMta();
  const common = ["--auth-user", "alice@example.test", "--auth-password", PASSWORD];
  const plain = await swaks([
    "--server",
    `127.0.0.1:${t.submission}`,
    "--tls",
    "--auth",
    "PLAIN",
    ...common,
    "--from",
    "alice@example.test",
    "--to",
    "bob@example.test",
  ]);
  assert.ok(plain.success, plain.output);
  assert.match(plain.output, /<~ {2}235 2\.7\.0 Authentication successful/);
  assert.match(plain.output, /<~ {2}250 2\.0\.0 Ok: queued as /);
  const login = await swaks([
    "--server",
    `127.0.0.1:${t.submissions}`,
    "--tlsc",
    "--auth",
    "LOGIN",
    ...common,
    "--from",
    "alice+swaks@example.test",
    "--to",
    "bob@example.test",
  ]);
  assert.ok(login.success, login.output);
  assert.match(login.output, /<~ {2}334 VXNlcm5hbWU6/);
  assert.match(login.output, /<~ {2}334 UGFzc3dvcmQ6/);
  assert.match(login.output, /<~ {2}250 2\.0\.0 Ok: queued as /);
  await waitForMail(mailbox(t.dir, "bob@example.test"), 2);
});

Deno.test("openssl s_client -starttls smtp completes TLS 1.3, and TLS 1.2 too; AUTH shows after it", async () => {
  await using t = await startSecureMta();
  for (const version of ["-tls1_3", "-tls1_2"]) {
    const child = new Deno.Command("openssl", {
      args: [
        "s_client",
        "-starttls",
        "smtp",
        "-connect",
        `127.0.0.1:${t.submission}`,
        version,
        "-CAfile",
        CERT.cert,
        "-ign_eof",
        "-quiet",
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode("EHLO openssl.test\r\nQUIT\r\n"));
    await writer.close();
    const out = await child.output();
    const text = new TextDecoder().decode(out.stdout);
    const err = new TextDecoder().decode(out.stderr);
    assert.match(text, /250-AUTH PLAIN LOGIN\r\n/, `${version}: ${text}\n${err}`);
    assert.ok(!text.includes("STARTTLS"), text);
    assert.match(text, /221 2\.0\.0 Bye/);
  }
});

Deno.test("a client offering only TLS 1.1 is refused: TLS 1.2 at least", async () => {
  await using t = await startSecureMta();
  const out = await python(
    PY_CONTEXT + `
ctx.minimum_version = ssl.TLSVersion.TLSv1
ctx.maximum_version = ssl.TLSVersion.TLSv1_1
ctx.set_ciphers("ALL:@SECLEVEL=0")
try:
    with smtplib.SMTP_SSL("127.0.0.1", int(sys.argv[1]), context=ctx, timeout=5) as s:
        print("connected", s.sock.version())
except (ssl.SSLError, OSError, smtplib.SMTPException) as e:
    print("refused", type(e).__name__)
`,
    [String(t.submissions), CERT.cert],
  );
  assert.match(out, /^refused /m, out);
});

// --- negative paths ---------------------------------------------------------

Deno.test("submission without TLS: AUTH not advertised, 538 5.7.11 to AUTH, 530 5.7.0 to MAIL", async () => {
  await using t = await startSecureMta();
  const out = await python(
    `
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1])) as s:
    s.ehlo()
    print("auth advertised", "auth" in s.esmtp_features)
    print(s.docmd("AUTH", "PLAIN " + sys.argv[2]))
    print(s.docmd("MAIL", "FROM:<alice@example.test>"))
`,
    [String(t.submission), plainResponse("alice@example.test", PASSWORD)],
  );
  assert.match(out, /^auth advertised False$/m);
  assert.match(out, /\(538, b'5\.7\.11 Encryption required/);
  assert.match(out, /\(530, b'5\.7\.0 Authentication required'\)/);
});

Deno.test("wrong credentials get 535 5.7.8, an account without a password cannot log in", async () => {
  await using t = await startSecureMta();
  const client = await TestClient.connect(t.submissions, { implicitTls: true });
  try {
    await client.command("EHLO client.test");
    assert.match(
      (await client.command(`AUTH PLAIN ${plainResponse("alice@example.test", "wrong")}`))!,
      /^535 5\.7\.8 Authentication credentials invalid\r\n$/,
    );
    assert.match(
      (await client.command(`AUTH PLAIN ${plainResponse("bob@example.test", "")}`))!,
      /^501 5\.5\.2 /, // an empty password is not a PLAIN message
    );
    assert.match(
      (await client.command(`AUTH PLAIN ${plainResponse("bob@example.test", "anything")}`))!,
      /^535 5\.7\.8 /,
    );
    assert.match(
      (await client.command(`AUTH PLAIN ${plainResponse("nobody@example.test", "x")}`))!,
      /^535 5\.7\.8 /,
    );
    assert.match((await client.command("MAIL FROM:<alice@example.test>"))!, /^530 5\.7\.0 /);
  } finally {
    client.close();
  }
});

Deno.test("an authenticated user sending as someone else gets 553 5.7.1; sender_must_match: false relaxes it", async () => {
  for (const relaxed of [false, true]) {
    await using t = await startSecureMta(
      relaxed ? "submission: { sender_must_match: false }\n" : "",
    );
    const client = await TestClient.connect(t.submissions, { implicitTls: true });
    try {
      await client.command("EHLO client.test");
      await client.command(`AUTH PLAIN ${plainResponse("alice@example.test", PASSWORD)}`);
      const bob = await client.command("MAIL FROM:<bob@example.test>");
      if (relaxed) {
        assert.match(bob!, /^250 /);
        await client.command("RSET");
        assert.match((await client.command("MAIL FROM:<>"))!, /^250 /);
      } else {
        assert.equal(bob, "553 5.7.1 Sender address not owned by user <alice@example.test>\r\n");
        assert.match((await client.command("MAIL FROM:<>"))!, /^553 5\.7\.1 /);
        assert.match((await client.command("MAIL FROM:<sales@example.test>"))!, /^250 /);
      }
    } finally {
      client.close();
    }
  }
});

Deno.test("an authenticated user may relay: the remote recipient is queued with mailbox null", async () => {
  await using t = await startSecureMta();
  const client = await TestClient.connect(t.submissions, { implicitTls: true });
  let queueId = "";
  try {
    await client.command("EHLO client.test");
    await client.command(`AUTH PLAIN ${plainResponse("alice@example.test", PASSWORD)}`);
    await client.command("MAIL FROM:<alice@example.test>");
    assert.match((await client.command("RCPT TO:<Carol@Example.NET>"))!, /^250 2\.1\.5 /);
    assert.match((await client.command("RCPT TO:<bob@example.test>"))!, /^250 2\.1\.5 /);
    await client.command("DATA");
    const done = await client.command("Subject: out\r\n\r\nhello\r\n.");
    queueId = /queued as ([0-9A-Z]+)/.exec(done!)![1]!;
  } finally {
    client.close();
  }
  // example.net routes to a closed port, so the remote copy stays queued.
  const message = await waitFor(() => t.mta.queue.get(queueId).then((m) => m ?? undefined));
  const remote = message.recipients.find((r) => r.address === "Carol@Example.NET");
  assert.ok(remote, JSON.stringify(message.recipients));
  assert.equal(remote.mailbox, null);
});

Deno.test("mx: a client outside trusted_networks cannot relay; <> is accepted for bounces", async () => {
  await using t = await startSecureMta();
  const client = await TestClient.connect(t.mx);
  try {
    await client.secure();
    assert.match((await client.command("MAIL FROM:<>"))!, /^250 /);
    assert.equal(
      await client.command("RCPT TO:<x@example.net>"),
      "554 5.7.1 Relay access denied\r\n",
    );
    assert.match((await client.command("RCPT TO:<bob@example.test>"))!, /^250 /);
  } finally {
    client.close();
  }
});

// --- certificates -------------------------------------------------------------

Deno.test("tern serve exits 1 with one line when the certificate or key is missing", async () => {
  const { dir, file } = await tempConfig(`
listeners: [{ address: 127.0.0.1, port: 0, mode: submissions }]
tls: { cert: ./missing.pem, key: "${CERT.key}" }
`);
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--unstable-kv",
        join(import.meta.dirname!, "..", "main.ts"),
        "serve",
        "--config",
        file,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 1);
    const lines = stderr.trim().split("\n");
    assert.deepEqual(lines, [
      `${file}: tls.cert: cannot read ${join(dir, "missing.pem")}: no such file`,
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("tern serve reloads the certificate on SIGHUP", async () => {
  const { dir, file } = await tempConfig(`
listeners: [{ address: 127.0.0.1, port: 0, mode: submissions }]
tls: { cert: "${CERT.cert}", key: "${CERT.key}" }
`);
  const serve = await spawnServe(file);
  try {
    const loaded = () => serve.log().split("\n").filter((l) => l.includes(" tls.loaded ")).length;
    assert.equal(loaded(), 1);
    serve.child.kill("SIGHUP");
    await waitFor(() => loaded() === 2, 10_000);
  } finally {
    assert.equal(await serve.stop(), 0);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a key that does not belong to the certificate is refused at load", async () => {
  const other = await makeCertificate("other.test");
  try {
    await assert.rejects(
      () => TlsContext.load({ cert: CERT.cert, key: other.key }),
      (error: unknown) =>
        error instanceof Error && /does not belong to the certificate/.test(error.message),
    );
  } finally {
    await Deno.remove(other.dir, { recursive: true });
  }
});

async function peerSubject(port: number): Promise<string> {
  const out = await python(
    `
import socket, ssl, sys
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
with socket.create_connection(("127.0.0.1", int(sys.argv[1]))) as raw:
    with ctx.wrap_socket(raw) as s:
        der = s.getpeercert(binary_form=True)
        import hashlib
        print(hashlib.sha256(der).hexdigest())
`,
    [String(port)],
  );
  return out.trim();
}

Deno.test("a renewed certificate is used without a restart: on reload, and when the files change", async () => {
  const first = await makeCertificate("first.test");
  const second = await makeCertificate("second.test");
  const third = await makeCertificate("third.test");
  const { dir, config } = await tempConfig(`
listeners: [{ address: 127.0.0.1, port: 0, mode: submissions }]
tls: { cert: "${first.cert}", key: "${first.key}" }
`);
  const logger = new MemoryLogger();
  const mta = await Mta.start(config, { logger });
  try {
    const port = mta.listeners[0]!.port;
    const before = await peerSubject(port);
    // SIGHUP path: replace both files, then reload.
    await Deno.copyFile(second.cert, first.cert);
    await Deno.copyFile(second.key, first.key);
    assert.equal(await mta.reloadTls(), true);
    const afterReload = await peerSubject(port);
    assert.notEqual(afterReload, before);
    // Watch path: replace them again and wait for the watcher.
    await Deno.copyFile(third.key, first.key);
    await Deno.copyFile(third.cert, first.cert);
    await waitFor(async () => (await peerSubject(port)) !== afterReload, 10_000);
    assert.ok(
      logger.records.some((r) =>
        r.event === "tls.loaded" && String(r.fields.subject) === "CN=third.test"
      ),
    );
  } finally {
    await mta.stop(1000);
    for (const d of [dir, first.dir, second.dir, third.dir]) {
      await Deno.remove(d, { recursive: true });
    }
  }
});
