// Nothing acknowledged is lost: messages answered 250, then the server killed
// with SIGKILL before (or while) delivering them, then restarted on the same
// data directory: every one is delivered, exactly once.
import assert from "node:assert/strict";
import { join } from "node:path";
import { maildirFiles, python, spawnServe, tempConfig, tern, waitFor } from "./_helpers.ts";

const SEND = `
import smtplib, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
with smtplib.SMTP("127.0.0.1", port) as s:
    for i in range(count):
        s.ehlo_or_helo_if_needed()
        s.mail("s@client.test")
        s.rcpt("alice@example.test")
        code, text = s.data(b"Subject: message %d\\r\\n\\r\\nbody %d\\r\\n" % (i, i))
        assert code == 250, (code, text)
        print(text.decode().split()[-1])
`;

async function queueIdsIn(mailbox: string): Promise<string[]> {
  const ids: string[] = [];
  for (const f of await maildirFiles(mailbox)) {
    const m = /\(tern\) with ESMTP id ([0-9A-Z]+)/.exec(await Deno.readTextFile(f));
    if (m) ids.push(m[1]!);
  }
  return ids.sort();
}

Deno.test("messages acknowledged before a SIGKILL are delivered after the restart", async () => {
  const { dir, file } = await tempConfig(`
listeners: [{ address: 127.0.0.1, port: 0, mode: mx }]
local_domains: [example.test]
mail_root: ./blocked/mail
queue: { retry: [1s] }
`);
  // The mail root cannot be created (its parent is a file): deliveries defer.
  await Deno.writeTextFile(join(dir, "blocked"), "not a directory");
  const first = await spawnServe(file);
  const acknowledged = (await python(SEND, [String(first.port), "20"])).trim().split("\n").sort();
  assert.equal(acknowledged.length, 20);
  await first.kill();

  await Deno.remove(join(dir, "blocked"));
  const second = await spawnServe(file);
  try {
    const mailbox = join(dir, "blocked", "mail", "example.test", "alice");
    const delivered = await waitFor(async () => {
      const ids = await queueIdsIn(mailbox);
      return ids.length >= 20 ? ids : undefined;
    }, 20_000);
    assert.deepEqual(delivered, acknowledged);
  } finally {
    assert.equal(await second.stop(), 0);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a SIGKILL during delivery loses nothing and duplicates nothing", async () => {
  const { dir, file } = await tempConfig(`
listeners: [{ address: 127.0.0.1, port: 0, mode: mx }]
local_domains: [example.test]
queue: { retry: [1s] }
`);
  const mailbox = join(dir, "data", "mail", "example.test", "alice");
  const first = await spawnServe(file);
  const acknowledged = (await python(SEND, [String(first.port), "30"])).trim().split("\n").sort();
  await first.kill();
  const before = (await queueIdsIn(mailbox)).length;
  const second = await spawnServe(file);
  try {
    const delivered = await waitFor(async () => {
      const ids = await queueIdsIn(mailbox);
      return ids.length >= 30 ? ids : undefined;
    }, 20_000);
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual(
      await queueIdsIn(mailbox),
      acknowledged,
      `delivered before the kill: ${before}`,
    );
    assert.deepEqual(delivered, acknowledged);
  } finally {
    assert.equal(await second.stop(), 0);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("with no configuration, tern serve takes mail for me@localhost on 127.0.0.1:2525 into data/mail", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tern-fresh-" });
  const serve = await spawnServe("", { cwd: dir });
  try {
    assert.equal(serve.port, 2525);
    const out = await new Deno.Command("swaks", {
      args: ["--server", "127.0.0.1:2525", "--to", "me@localhost"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(out.success, new TextDecoder().decode(out.stdout));
    const files = await waitFor(async () => {
      const f = await maildirFiles(join(dir, "data", "mail", "localhost", "me"));
      return f.length > 0 ? f : undefined;
    });
    assert.equal(files.length, 1);
  } finally {
    assert.equal(await serve.stop(), 0);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("tern serve with a data_dir that cannot be a directory fails with one line, not a stack trace", async () => {
  const { dir, file } = await tempConfig(
    "listeners: [{ address: 127.0.0.1, port: 0, mode: mx }]\n",
  );
  try {
    // data_dir: ./data is a file here: the store cannot be made in it.
    await Deno.writeTextFile(join(dir, "data"), "not a directory\n");
    const { code, stderr } = await tern(["serve", "--config", file]);
    assert.equal(code, 1);
    const lines = stderr.trim().split("\n");
    assert.equal(lines.length, 1, stderr);
    assert.match(lines[0]!, /data_dir: .* not a directory/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
