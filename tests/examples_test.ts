// The programs in examples/, run for real as a reader would run them: a custom
// server and receive_mail.ts on a free loopback port, send_message.ts sending
// to them, and read_maildir.ts listing a Maildir made by tern's own
// mda/maildir.ts.

import assert from "node:assert/strict";
import { join } from "node:path";
import { deliverToMaildir, maildirUniqueName } from "../mda/maildir.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const decoder = new TextDecoder();

/** Runs `deno run -A examples/<name> args...` to its end. */
async function runExample(
  name: string,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `examples/${name}`, ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** Collects a child's stdout as it comes, so it can be waited on. */
class Output {
  text = "";
  #done: Promise<void>;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#done = (async () => {
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) this.text += chunk;
    })();
  }

  /** Waits until the output matches. */
  async waitFor(pattern: RegExp, ms = 20_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + ms;
    while (true) {
      const m = this.text.match(pattern);
      if (m) return m;
      if (Date.now() > deadline) {
        throw new Error(`Timed out waiting for ${pattern}; got:\n${this.text}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** Resolves when the child has closed its stdout. */
  closed(): Promise<void> {
    return this.#done;
  }
}

Deno.test("examples: custom_server.ts takes mail that send_message.ts sends, and refuses some recipients", async () => {
  const server = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "examples/custom_server.ts", "--port", "0", "--domain", "example.test"],
    cwd: ROOT,
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const output = new Output(server.stdout);
  try {
    const [, port] = await output.waitFor(/listening on 127\.0\.0\.1:([0-9]+)/);
    const sent = await runExample("send_message.ts", [
      "--server",
      `127.0.0.1:${port}`,
      "--from",
      "alice@client.example.test",
      "--to",
      "bob@example.test",
      "--to",
      "nobody@example.test",
      "--to",
      "carol@elsewhere.test",
      "--subject",
      "Lunch on Friday?",
      "--body",
      "Shall we?\n.A line that starts with a dot",
    ]);
    // One recipient refused: the example says so with its exit code.
    assert.equal(sent.code, 1, sent.stderr);
    assert.match(
      sent.stdout,
      /<bob@example\.test>: 250 2\.0\.0 Ok: queued as EX1\n.*RFC 5321 §6\.1/,
    );
    assert.match(
      sent.stdout,
      /<nobody@example\.test>: 550 5\.1\.1 No such user here\n.*RFC 3463 §3\.2/,
    );
    assert.match(sent.stdout, /<carol@elsewhere\.test>: 554 5\.7\.1 Relay access denied/);

    const [message] = await output.waitFor(/--- message EX1[\s\S]*?--- end of message EX1/);
    assert.match(message, /from <alice@client\.example\.test> to <bob@example\.test>\n/);
    assert.match(message, /^Subject: Lunch on Friday\?$/m);
    // Dot-stuffed by the client, unstuffed by the server (RFC 5321 §4.5.2).
    assert.match(message, /^\.A line that starts with a dot$/m);
  } finally {
    server.kill("SIGTERM");
    await server.status;
    await output.closed();
  }
});

Deno.test("examples: receive_mail.ts prints what send_message.ts sends, decoded, and refuses other domains", async () => {
  const server = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "examples/receive_mail.ts", "0"],
    cwd: ROOT,
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const output = new Output(server.stdout);
  try {
    const [, port] = await output.waitFor(/listening on 127\.0\.0\.1:([0-9]+)/);
    const sent = await runExample("send_message.ts", [
      "--server",
      `127.0.0.1:${port}`,
      "--from",
      "alice@client.example.test",
      "--to",
      "bob@example.test",
      "--to",
      "carol@elsewhere.test",
      "--subject",
      "Grüße aus Berlin",
      "--body",
      "Bis bald",
    ]);
    assert.equal(sent.code, 1, sent.stderr); // one recipient refused
    assert.match(sent.stdout, /<bob@example\.test>: 250 2\.0\.0 Ok: queued as R/);
    assert.match(sent.stdout, /<carol@elsewhere\.test>: 554 5\.7\.1 Relay access denied/);
    const [message] = await output.waitFor(/--- from[\s\S]*?--- end/);
    assert.match(message, /^--- from <alice@client\.example\.test> to bob@example\.test$/m);
    // Sent as an RFC 2047 encoded-word, printed decoded.
    assert.match(message, /^Subject: Grüße aus Berlin$/m);
    assert.match(message, /^Bis bald$/m);
  } finally {
    server.kill("SIGTERM");
    await server.status;
    await output.closed();
  }
});

Deno.test("examples: send_message.ts without --server prints its usage", async () => {
  const r = await runExample("send_message.ts", []);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^usage: deno run -A examples\/send_message\.ts --server HOST:PORT/);
});

Deno.test("examples: read_maildir.ts lists a Maildir written by mda/maildir.ts, with subjects", async () => {
  const root = await Deno.makeTempDir({ prefix: "tern-example-maildir-" });
  try {
    const maildir = join(root, "example.test", "bob");
    const messages = [
      { id: "Q1", at: Date.UTC(2026, 10, 29, 9, 30), subject: "Lunch on Friday?" },
      {
        id: "Q2",
        at: Date.UTC(2026, 10, 29, 10, 15),
        // RFC 2047: a folded, encoded subject
        subject: "=?utf-8?Q?Gr=C3=BC=C3=9Fe?=\r\n =?utf-8?B?IGF1cyBCZXJsaW4=?=",
      },
    ];
    for (const m of messages) {
      await deliverToMaildir(
        maildir,
        new Blob([`From: Alice <alice@client.example.test>\r\nSubject: ${m.subject}\r\n\r\nHi\r\n`])
          .stream(),
        {
          returnPath: "alice@client.example.test",
          deliveredTo: "bob@example.test",
          uniqueName: maildirUniqueName(m.at, m.id, 0, "mx.example.test"),
        },
      );
    }
    // A mail reader has seen the first one: moved to cur/ with the S flag.
    const first = maildirUniqueName(messages[0]!.at, "Q1", 0, "mx.example.test");
    await Deno.rename(join(maildir, "new", first), join(maildir, "cur", `${first}:2,S`));

    const r = await runExample("read_maildir.ts", [maildir]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trimEnd().split("\n"), [
      "new 2026-11-29 10:15     Grüße aus Berlin  (from Alice <alice@client.example.test>)",
      "cur 2026-11-29 09:30 S   Lunch on Friday?  (from Alice <alice@client.example.test>)",
      "2 messages",
    ]);

    const notMaildir = await runExample("read_maildir.ts", [root]);
    assert.equal(notMaildir.code, 1);
    assert.match(notMaildir.stderr, /is not a Maildir: it has no new\/ directory/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("examples: tern.service runs the binary as tern, hardened, with data in /var/lib/tern", async () => {
  const unit = await Deno.readTextFile(join(ROOT, "examples/tern.service"));
  for (
    const line of [
      "User=tern",
      "ExecStart=/usr/local/bin/tern serve --config /etc/tern/tern.yaml",
      "StateDirectory=tern",
      "NoNewPrivileges=yes",
      "ProtectSystem=strict",
      "ReadWritePaths=/var/lib/tern",
      "AmbientCapabilities=CAP_NET_BIND_SERVICE",
    ]
  ) assert.ok(unit.split("\n").includes(line), `tern.service lacks ${line}`);

  // systemd's own check, where systemd is installed (the binary need not be).
  let analyze: string | null = null;
  for (const path of ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]) {
    try {
      await Deno.stat(path);
      analyze = path;
      break;
    } catch {
      // not here
    }
  }
  if (analyze === null) {
    console.log("systemd-analyze not found: the unit file was checked by its lines only");
    return;
  }
  const dir = await Deno.makeTempDir({ prefix: "tern-unit-" });
  try {
    const file = join(dir, "tern.service");
    await Deno.writeTextFile(file, unit.replaceAll("/usr/local/bin/tern", "/bin/true"));
    const out = await new Deno.Command(analyze, { args: ["verify", file], stderr: "piped" })
      .output();
    const errors = decoder.decode(out.stderr).split("\n")
      .filter((l) => l.includes("tern.service") && !/not found|No such file/.test(l));
    assert.deepEqual(errors, [], decoder.decode(out.stderr));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
