// Backscatter and local hardening: a recipient that can never be a Maildir is
// refused at RCPT (so tern never bounces an outsider's content to a forged
// sender days later), a local error that cannot heal bounces at once without
// a server path in the DSN, a mailbox that is a link out of mail_root is not
// written through, and the queue store is private whatever the umask.
import assert from "node:assert/strict";
import { join } from "node:path";
import { maildirFiles, MAIN, python, rawExchange, startMta, waitFor } from "./_helpers.ts";

const TWO_DOMAINS = "local_domains: [localhost, example.test]\n";

/** Sends one message with smtplib (RET=FULL); returns the RCPT refusals it met, as JSON. */
const SEND = `
import smtplib, sys, json
port, sender, rcpt = int(sys.argv[1]), sys.argv[2], sys.argv[3]
with smtplib.SMTP("127.0.0.1", port) as s:
    s.ehlo("client.example.net")
    try:
        s.sendmail(sender, [rcpt], b"Subject: probe\\r\\nMessage-ID: <p1@example.net>\\r\\n\\r\\nsecret body\\r\\n", mail_options=["RET=FULL"])
        print(json.dumps({}))
    except smtplib.SMTPRecipientsRefused as e:
        print(json.dumps({k: [c, m.decode()] for k, (c, m) in e.recipients.items()}))
`;

/** The mode bits of a path. */
async function modeOf(path: string): Promise<number> {
  return ((await Deno.stat(path)).mode ?? 0) & 0o777;
}

Deno.test("a local part that can never be a Maildir name is refused at RCPT with 550 5.1.3 (catch-all)", async () => {
  await using t = await startMta();
  const out = await rawExchange(
    t.port,
    "EHLO client.example.net\r\n" +
      "MAIL FROM:<victim@evil.test> RET=FULL\r\n" +
      `RCPT TO:<${"/".repeat(200)}@localhost>\r\n` +
      "RCPT TO:<alice@localhost>\r\n" +
      "RSET\r\nQUIT\r\n",
  );
  const replies = out.split("\r\n").filter((l) => /^\d{3} /.test(l));
  // Banner, EHLO, MAIL, the refused RCPT, the good RCPT, RSET, QUIT.
  assert.match(replies[3] ?? "", /^550 5\.1\.3 /, out);
  assert.match(replies[4] ?? "", /^250 2\.1\.5 /, out);
  // The refusal names no server path.
  assert.ok(!out.includes(t.dir), out);
});

Deno.test("a mailbox whose parent is a file bounces at once, and the DSN names no server path", async () => {
  await using t = await startMta(TWO_DOMAINS);
  // A file where the domain's directory should be: ENOTDIR on every try.
  await Deno.mkdir(t.config.mailRoot, { recursive: true });
  await Deno.writeTextFile(join(t.config.mailRoot, "example.test"), "not a directory");
  const refused = JSON.parse(
    await python(SEND, [String(t.port), "alice@localhost", "bob@example.test"]),
  );
  assert.deepEqual(refused, {});
  // The default retry schedule waits minutes: a DSN within seconds was sent at once.
  const [file] = await waitFor(async () => {
    const f = await maildirFiles(join(t.config.mailRoot, "localhost", "alice"));
    return f.length > 0 ? f : undefined;
  }, 8_000);
  const dsn = await Deno.readTextFile(file!);
  assert.match(dsn, /^Status: 5\.2\.0\r?$/m);
  assert.match(dsn, /^Diagnostic-Code: X-Tern; .*<bob@example\.test>/m);
  assert.ok(!dsn.includes(t.dir), dsn);
  assert.ok(!dsn.includes(t.config.mailRoot), dsn);
  await waitFor(async () => (await t.mta.queue.count()) === 0);
});

Deno.test("a mailbox that is a symbolic link out of mail_root is not written through; one inside is", async () => {
  await using t = await startMta();
  const outside = await Deno.makeTempDir({ prefix: "tern-outside-" });
  try {
    const domain = join(t.config.mailRoot, "localhost");
    await Deno.mkdir(join(domain, "robert"), { recursive: true });
    await Deno.symlink(outside, join(domain, "mallory"));
    await Deno.symlink("robert", join(domain, "bob"));

    await python(SEND, [String(t.port), "alice@localhost", "mallory@localhost"]);
    await python(SEND, [String(t.port), "alice@localhost", "bob@localhost"]);
    // The link inside mail_root is followed.
    await waitFor(async () => (await maildirFiles(join(domain, "robert"))).length === 1);
    // The one out of it bounces at once to the sender.
    const [file] = await waitFor(async () => {
      const f = await maildirFiles(join(domain, "alice"));
      return f.length > 0 ? f : undefined;
    }, 8_000);
    const dsn = await Deno.readTextFile(file!);
    assert.match(dsn, /^Final-Recipient: rfc822; mallory@localhost\r?$/m);
    assert.match(dsn, /^Status: 5\.2\.0\r?$/m);
    assert.ok(!dsn.includes(outside), dsn);
    // Nothing was created or written outside.
    const entries = [];
    for await (const e of Deno.readDir(outside)) entries.push(e.name);
    assert.deepEqual(entries, []);
    // The server log has the path, at warn level.
    const warned = t.logger.records.find((r) =>
      r.level === "warn" && JSON.stringify(r.fields).includes(outside)
    );
    assert.ok(warned, JSON.stringify(t.logger.records));
  } finally {
    await Deno.remove(outside, { recursive: true });
  }
});

/** Runs `tern serve` under `umask 022` until it listens, then stops it. */
async function serveOnceUnderUmask022(dir: string, file: string): Promise<void> {
  const command = `umask 022; exec "$0" run -A --unstable-kv "$1" serve --config "$2"`;
  const child = new Deno.Command("sh", {
    args: ["-c", command, Deno.execPath(), MAIN, file],
    cwd: dir,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let text = "";
  const decoder = new TextDecoder();
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) text += decoder.decode(chunk, { stream: true });
  };
  const draining = Promise.all([drain(child.stdout), drain(child.stderr)]);
  try {
    await waitFor(() => /server\.listening/.test(text), 20_000).catch((error) => {
      throw new Error(`tern serve did not start: ${text}`, { cause: error });
    });
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await draining;
  }
}

Deno.test("under umask 022, tern serve keeps data_dir 0711 (traversable, not listable) and the queue store files 0600", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tern-umask-" });
  try {
    const file = join(dir, "tern.yaml");
    await Deno.writeTextFile(
      file,
      "hostname: mx.example.test\ndata_dir: ./data\n" +
        "listeners: [{ address: 127.0.0.1, port: 0, mode: mx }]\n",
    );
    const data = join(dir, "data");
    const storeFiles = async (): Promise<string[]> => {
      const out: string[] = [];
      for await (const e of Deno.readDir(data)) {
        if (e.isFile && e.name.startsWith("queue.sqlite3")) out.push(join(data, e.name));
      }
      return out.sort();
    };

    // A fresh start: tern makes data_dir and the store.
    await serveOnceUnderUmask022(dir, file);
    assert.equal((await modeOf(data)).toString(8), "711");
    const fresh = await storeFiles();
    assert.ok(fresh.includes(join(data, "queue.sqlite3")), fresh.join(" "));
    for (const f of fresh) assert.equal((await modeOf(f)).toString(8), "600", f);

    // An existing store left readable by an older version is made private at start.
    await Deno.chmod(data, 0o755);
    for (const f of fresh) await Deno.chmod(f, 0o644);
    await serveOnceUnderUmask022(dir, file);
    assert.equal((await modeOf(data)).toString(8), "711");
    for (const f of await storeFiles()) assert.equal((await modeOf(f)).toString(8), "600", f);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
