// tern sendmail driven as cron, mail(1) and PHP drive sendmail: real
// processes beside a running tern serve, a non-root user submitting through
// the local socket, and one server per data directory.
import assert from "node:assert/strict";
import { join } from "node:path";
import { parseSendmailArgs } from "../cli/sendmail.ts";
import { maildirFiles, MAIN, python, spawnServe, tempConfig, waitFor } from "./_helpers.ts";

const CONFIG = `
listeners: [{ address: 127.0.0.1, port: 0, mode: mx }]
local_domains: [example.test]
accounts:
  bob@example.test: {}
  carol@example.test: {}
`;

const decoder = new TextDecoder();

/** Runs a command with stdin, cwd and environment; returns its exit code and output. */
async function run(
  command: string,
  args: string[],
  options: { stdin?: string | Uint8Array; cwd?: string; env?: Record<string, string> } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(command, {
    args,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    ...(options.env === undefined ? {} : { env: options.env }),
  }).spawn();
  if (options.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(
      typeof options.stdin === "string" ? new TextEncoder().encode(options.stdin) : options.stdin,
    );
    await w.close();
  }
  const out = await child.output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** `tern <args>` from `main.ts`. */
function tern(
  args: string[],
  options: { stdin?: string | Uint8Array; cwd?: string; env?: Record<string, string> } = {},
) {
  return run(Deno.execPath(), ["run", "-A", "--unstable-kv", MAIN, ...args], options);
}

Deno.test("sendmail flags parse as sendmail parses them", () => {
  const o = parseSendmailArgs(["-i", "-FCronDaemon", "-B8BITMIME", "-oem", "rcpt"]);
  assert.equal(o.ignoreDots, true);
  assert.equal(o.fullName, "CronDaemon");
  assert.equal(o.body, "8BITMIME");
  assert.deepEqual(o.recipients, ["rcpt"]);
  const p = parseSendmailArgs([
    "-tif",
    "a@example.test",
    "-F",
    "A B",
    "-Nsuccess,failure",
    "--",
    "-x",
  ]);
  assert.equal(p.fromHeader, true);
  assert.equal(p.sender, "a@example.test");
  assert.equal(p.fullName, "A B");
  assert.deepEqual(p.notify, ["SUCCESS", "FAILURE"]);
  assert.deepEqual(p.recipients, ["-x"]);
  assert.equal(parseSendmailArgs(["-r", "x@y.test", "-odb", "-oi", "-v", "b"]).sender, "x@y.test");
  assert.equal(parseSendmailArgs(["-bp"]).mode, "p");
  assert.equal(parseSendmailArgs(["-bs"]).mode, "s");
  assert.throws(() => parseSendmailArgs(["-bz"]), /-bz is not supported/);
  assert.throws(() => parseSendmailArgs(["-Q"]), /unknown option "-Q"/);
  assert.throws(() => parseSendmailArgs(["-f"]), /needs a value/);
});

Deno.test("cron's sendmail line, from a directory without tern.yaml, is delivered by the running server; -bp lists; -bs speaks SMTP", async () => {
  const { dir, file } = await tempConfig(CONFIG);
  const cwd = await Deno.makeTempDir({ prefix: "tern-cron-" });
  // carol's Maildir is a link to nothing: her message stays queued, for -bp to list.
  const mail = join(dir, "data", "mail", "example.test");
  await Deno.mkdir(mail, { recursive: true });
  await Deno.symlink("carol.missing", join(mail, "carol"));
  const serve = await spawnServe(file);
  try {
    const env = { TERN_CONFIG: file };
    const r = await tern(
      ["sendmail", "-i", "-FCronDaemon", "-B8BITMIME", "-oem", "bob"],
      { stdin: "Subject: Cron <root@host> run-parts\n\nline\n.\nafter the dot\n", cwd, env },
    );
    assert.equal(r.code, 0, r.stderr);
    const [delivered] = await waitFor(async () => {
      const f = await maildirFiles(join(mail, "bob"));
      return f.length === 1 ? f : undefined;
    });
    const text = await Deno.readTextFile(delivered!);
    assert.match(text, /\r\nReceived: by mx\.example\.test \(tern, local submission by root, /);
    assert.match(text, /\r\nFrom: CronDaemon <root@example\.test>\r\n/);
    assert.match(text, /\r\n\r\nline\r\n\.\r\nafter the dot\r\n$/);
    assert.deepEqual([...Deno.readDirSync(cwd)], [], "nothing written in the cron job's cwd");
    assert.match(serve.log(), /message\.accepted .*client=local listener=pickup login=root/);

    const held = await tern(["sendmail", "carol"], { stdin: "Subject: stays\n\nx\n", cwd, env });
    assert.equal(held.code, 0, held.stderr);
    const listed = await waitFor(async () => {
      const l = await tern(["sendmail", "-bp"], { cwd, env });
      return /deferred <carol@example\.test>/.test(l.stdout) ? l : undefined;
    });
    assert.equal(listed.code, 0);

    const out = await python(
      `
import subprocess, sys
p = subprocess.Popen(sys.argv[1:], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
def reply():
    lines = []
    while True:
        line = p.stdout.readline().decode()
        lines.append(line)
        if line[3:4] != "-":
            return "".join(lines)
out = reply()
for command in [b"EHLO client.example.test", b"MAIL FROM:<alice@example.test>", b"RCPT TO:<bob@example.test>", b"DATA"]:
    p.stdin.write(command + b"\\r\\n"); p.stdin.flush(); out += reply()
p.stdin.write(b"Subject: bs\\r\\n\\r\\nvia -bs\\r\\n.\\r\\n"); p.stdin.flush(); out += reply()
p.stdin.write(b"QUIT\\r\\n"); p.stdin.flush(); out += reply()
p.stdin.close()
print(out, end="")
sys.exit(p.wait())
`,
      [Deno.execPath(), "run", "-A", "--unstable-kv", MAIN, "sendmail", "--config", file, "-bs"],
    );
    assert.match(out, /^220 mx\.example\.test /);
    assert.match(out, /\r\n250 2\.0\.0 Ok: queued as \S+\r\n221 /);
    await waitFor(async () => (await maildirFiles(join(mail, "bob"))).length === 2);
  } finally {
    assert.equal(await serve.stop(), 0);
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(cwd, { recursive: true });
  }
});

Deno.test("without a configuration anywhere and no server, sendmail says so and exits 75", async () => {
  const cwd = await Deno.makeTempDir({ prefix: "tern-cron-" });
  try {
    const r = await tern(["sendmail", "-i", "bob"], { stdin: "x\n", cwd });
    assert.equal(r.code, 75);
    assert.match(r.stderr, /^tern sendmail: no configuration found \(.*\) and no tern server/);
    assert.equal(r.stderr.trim().split("\n").length, 1);
    assert.deepEqual([...Deno.readDirSync(cwd)], [], "no ./data store made");
  } finally {
    await Deno.remove(cwd, { recursive: true });
  }
});

/** How to run a command as nobody here, or why not. */
function asNobody(): string[] | string {
  if (Deno.uid() !== 0) return "not root";
  for (const dir of ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]) {
    try {
      Deno.statSync(join(dir, "runuser"));
      return [join(dir, "runuser"), "-u", "nobody", "--"];
    } catch {
      // look further
    }
    try {
      Deno.statSync(join(dir, "setpriv"));
      return [join(dir, "setpriv"), "--reuid=nobody", "--regid=nogroup", "--clear-groups"];
    } catch {
      // look further
    }
  }
  return "neither runuser nor setpriv";
}
const nobody = asNobody();

Deno.test({
  name: "a non-root user submits through the server's socket, and the store keeps its owner",
  ignore: typeof nobody === "string",
  async fn() {
    const { dir, file } = await tempConfig(CONFIG);
    // nobody must reach the configuration and the socket: tempConfig made the directory 0700.
    await Deno.chmod(dir, 0o755);
    const tools = await Deno.makeTempDir({ prefix: "tern-nobody-" });
    await Deno.chmod(tools, 0o777);
    // root's module cache is out of nobody's reach: one bundled file it can run. The mail
    // authentication library is loaded only when mail is checked, never by sendmail, and
    // the bundler cannot take it whole: left out.
    const bundle = join(tools, "tern.js");
    const built = await run(Deno.execPath(), [
      "bundle",
      "--platform",
      "deno",
      MAIN, // before --external, which takes every argument up to the next flag
      "--external",
      "mailauth",
      "--external",
      "mailauth/*",
      "-o",
      bundle,
    ]);
    assert.equal(built.code, 0, built.stderr);
    const serve = await spawnServe(file);
    try {
      const [command, ...prefix] = nobody as string[];
      const r = await run(command!, [
        ...prefix,
        "env",
        `DENO_DIR=${join(tools, "deno")}`,
        `HOME=${tools}`,
        `TERN_CONFIG=${file}`,
        Deno.execPath(),
        "run",
        "-A",
        bundle,
        "sendmail",
        "-t",
      ], { stdin: "To: bob@example.test\nSubject: from nobody\n\nhello\n", cwd: tools });
      assert.equal(r.code, 0, r.stderr);
      const mail = join(dir, "data", "mail", "example.test", "bob");
      const [delivered] = await waitFor(async () => {
        const f = await maildirFiles(mail);
        return f.length === 1 ? f : undefined;
      });
      const text = await Deno.readTextFile(delivered!);
      assert.match(text, /^Return-Path: <nobody@example\.test>\r\n/);
      assert.match(text, /\(tern, local submission by nobody, unverified\)/);
      for await (const e of Deno.readDir(join(dir, "data"))) {
        assert.equal((await Deno.lstat(join(dir, "data", e.name))).uid, 0, e.name);
      }
    } finally {
      assert.equal(await serve.stop(), 0);
      await Deno.remove(dir, { recursive: true });
      await Deno.remove(tools, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "root submitting a big message before the server starts leaves no files of its own; foreign files stop serve with the chown to run",
  ignore: Deno.uid() !== 0,
  async fn() {
    const { dir, file } = await tempConfig(CONFIG);
    const data = join(dir, "data");
    try {
      // The server runs as nobody here: its data_dir is nobody's.
      await Deno.mkdir(data, { mode: 0o711 });
      await Deno.chown(data, 65534, 65534);
      const big = "Subject: big\n\n" + "x".repeat(99) + "\n".repeat(1) +
        ("y".repeat(99) + "\n").repeat(700);
      const r = await tern(["sendmail", "--config", file, "bob"], { stdin: big });
      assert.equal(r.code, 75, r.stderr);
      assert.match(r.stderr, /no tern server is running .* belongs to nobody: start tern serve/);
      assert.deepEqual([...Deno.readDirSync(data)], [], "nothing written into nobody's store");

      // A spool left by root in a store that root's server uses is fine; one of
      // nobody's in root's store is the start-up error.
      await Deno.chown(data, 0, 0);
      await Deno.mkdir(join(data, "queue.sqlite3-spool"));
      await Deno.chown(join(data, "queue.sqlite3-spool"), 65534, 65534);
      const serve = await tern(["serve", "--config", file]);
      assert.equal(serve.code, 1);
      assert.match(
        serve.stderr.trim(),
        new RegExp(
          `^tern serve: cannot start: ${data}/queue\\.sqlite3-spool belongs to nobody, but tern runs as root: run "chown -R root ${data}"`,
        ),
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("a second serve on the same data_dir exits 1 naming the first one's pid; a lock left by SIGKILL does not block", async () => {
  const { dir, file } = await tempConfig(CONFIG);
  try {
    const first = await spawnServe(file);
    const second = await tern(["serve", "--config", file]);
    assert.equal(second.code, 1);
    assert.equal(
      second.stderr.trim(),
      `tern serve: cannot start: another tern serve (pid ${first.child.pid}) is already running on ${
        join(dir, "data")
      }; stop it first, or give this one another data_dir`,
    );
    await first.kill();
    assert.equal(
      (await Deno.readTextFile(join(dir, "data", "tern.pid"))).trim(),
      String(first.child.pid),
      "SIGKILL left the pid file",
    );
    const again = await spawnServe(file);
    assert.equal(
      (await Deno.readTextFile(join(dir, "data", "tern.pid"))).trim(),
      String(again.child.pid),
    );
    assert.equal(await again.stop(), 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
