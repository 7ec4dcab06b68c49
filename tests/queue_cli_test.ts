// tern queue and tern send, run as separate processes beside a running
// tern serve on the same data directory: the queue is shared through the
// store, never through the server's memory.
import assert from "node:assert/strict";
import { join } from "node:path";
import { openQueue } from "../cli/_common.ts";
import { maildirFiles, MAIN, python, spawnServe, tempConfig, tern, waitFor } from "./_helpers.ts";

const CONFIG = `
listeners: [{ address: 127.0.0.1, port: 0, mode: mx }]
local_domains: [example.test]
accounts:
  alice@example.test: {}
  bob@example.test: {}
queue: { retry: [1h] }
`;

Deno.test("queue list shows a deferred message with its last error, and flush makes the server retry it", async () => {
  const { dir, file } = await tempConfig(CONFIG);
  const mail = join(dir, "data", "mail", "example.test");
  await Deno.mkdir(mail, { recursive: true });
  // A link to nothing where bob's Maildir should be: deferred (4.2.0) until it is removed.
  await Deno.symlink("bob.missing", join(mail, "bob"));
  const serve = await spawnServe(file);
  try {
    const out = await python(
      `
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1])) as s:
    s.sendmail("alice@example.test", ["bob@example.test"], b"Subject: deferred\\r\\n\\r\\nx\\r\\n")
`,
      [String(serve.port)],
    );
    assert.equal(out, "");
    const listed = await waitFor(async () => {
      const r = await tern(["queue", "list", "--config", file, "--json"]);
      const rows = r.stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
      return rows.length === 1 && rows[0].recipients[0].state === "deferred" ? rows : undefined;
    });
    assert.equal(listed[0].sender, "alice@example.test");
    assert.equal(listed[0].recipients[0].address, "bob@example.test");
    assert.match(listed[0].recipients[0].last_error, /^4\.2\.0 /);
    const text = await tern(["queue", "list", "--config", file]);
    assert.equal(text.code, 0);
    assert.match(text.stdout, /deferred <bob@example\.test> {2}attempts=1 {2}\(4\.2\.0 /);

    // The mailbox is fixed; without a flush the next try is an hour away.
    await Deno.remove(join(mail, "bob"));
    const flushed = await tern(["queue", "flush", "--config", file]);
    assert.equal(flushed.code, 0, flushed.stderr);
    const started = Date.now();
    await waitFor(async () => (await maildirFiles(join(mail, "bob"))).length === 1, 5000);
    console.log(`delivered ${Date.now() - started} ms after tern queue flush`);
    const empty = await tern(["queue", "list", "--config", file]);
    assert.match(empty.stdout, /Queue is empty/);
  } finally {
    assert.equal(await serve.stop(), 0);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("queue hold parks a message, release and delete act on it, and an unknown id exits 1", async () => {
  const { dir, file } = await tempConfig(CONFIG);
  try {
    const sent = await tern(["send", "--config", file, "-v", "bob"], "Subject: parked\n\nbody\n");
    assert.equal(sent.code, 0, sent.stderr);
    const id = /queued as ([0-9A-Z]+)/.exec(sent.stderr)?.[1];
    assert.ok(id);
    assert.equal((await tern(["queue", "hold", "--config", file, id])).code, 0);
    assert.match(
      (await tern(["queue", "list", "--config", file])).stdout,
      new RegExp(`${id} \\(held\\)`),
    );
    assert.equal((await tern(["queue", "release", "--config", file, id])).code, 0);
    const shown = await tern(["queue", "show", "--config", file, id]);
    assert.equal(shown.code, 0);
    assert.match(shown.stdout, /Subject: parked\r\n/);
    assert.equal((await tern(["queue", "delete", "--config", file, id])).code, 0);
    for (const sub of ["show", "delete", "hold", "release"]) {
      const r = await tern(["queue", sub, "--config", file, id]);
      assert.equal(r.code, 1, sub);
      assert.equal(r.stderr.trim(), `tern queue ${sub}: no message with queue ID "${id}"`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("tern send takes a message on stdin like sendmail and the server delivers it", async () => {
  const { dir, file } = await tempConfig(CONFIG);
  const serve = await spawnServe(file);
  try {
    const r = await tern(
      ["send", "--config", file, "-f", "alice@example.test", "-t", "-oi"],
      "To: Bob <bob@example.test>\nBcc: alice\nSubject: cron\n\nline\n.\nafter the dot\n",
    );
    assert.equal(r.code, 0, r.stderr);
    const bob = await waitFor(async () => {
      const f = await maildirFiles(join(dir, "data", "mail", "example.test", "bob"));
      return f.length === 1 ? f : undefined;
    });
    const text = await Deno.readTextFile(bob[0]!);
    assert.match(
      text,
      /^Return-Path: <alice@example\.test>\r\nDelivered-To: bob@example\.test\r\nReceived: by /,
    );
    assert.match(text, /\r\nTo: Bob <bob@example\.test>\r\n/);
    assert.doesNotMatch(text, /Bcc:/);
    assert.match(text, /\r\nDate: /);
    assert.match(text, /\r\nMessage-ID: </);
    assert.match(text, /\r\n\r\nline\r\n\.\r\nafter the dot\r\n$/);
    await waitFor(async () =>
      (await maildirFiles(join(dir, "data", "mail", "example.test", "alice"))).length === 1
    );

    const bad = await tern(["send", "--config", file, "nobody@example.test"], "x\n");
    assert.equal(bad.code, 1);
    assert.equal(bad.stderr.trim(), 'tern send: unknown local recipient "nobody@example.test"');
  } finally {
    assert.equal(await serve.stop(), 0);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("tern send --trace submits over SMTP and prints the annotated dialogue; tern serve --trace prints the server's", async () => {
  const { dir, file } = await tempConfig(CONFIG);
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--unstable-kv",
      join(import.meta.dirname!, "..", "main.ts"),
      "serve",
      "--config",
      file,
      "--trace",
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const decoder = new TextDecoder();
  let serverOut = "";
  let serverErr = "";
  const reading = Promise.all([
    (async () => {
      for await (const c of child.stdout) serverOut += decoder.decode(c);
    })(),
    (async () => {
      for await (const c of child.stderr) serverErr += decoder.decode(c);
    })(),
  ]);
  try {
    const port = await waitFor(() => /port=(\d+)/.exec(serverErr)?.[1]);
    const r = await tern(
      [
        "send",
        "--config",
        file,
        "--server",
        `127.0.0.1:${port}`,
        "--trace",
        "-f",
        "alice@example.test",
        "bob",
      ],
      "Subject: traced\n\nsecret body\n",
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^C: MAIL FROM:<alice@example\.test>.* ; RFC 5321 §4\.1\.1\.2 MAIL: /m);
    assert.match(r.stdout, /^S: 250 2\.0\.0 Ok: queued as \S+ +; RFC 5321 §6\.1 /m);
    assert.doesNotMatch(r.stdout, /secret body/);
    await waitFor(async () =>
      (await maildirFiles(join(dir, "data", "mail", "example.test", "bob"))).length === 1
    );
    await waitFor(() => serverOut.includes("221"));
    assert.match(
      serverOut,
      /^\[\w+\] C: RCPT TO:<bob@example\.test> +; RFC 5321 §4\.1\.1\.3 RCPT: /m,
    );
    assert.match(serverOut, /\(message content: \d+ octets/);
    assert.doesNotMatch(serverOut, /secret body/);
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await reading;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("queue list and show escape the control characters a next hop put in its reply", async () => {
  const { dir, file, config } = await tempConfig(CONFIG);
  try {
    // A record as an older tern, or another writer, may have stored it.
    const queue = await openQueue(config);
    const now = Date.now();
    const incoming = await queue.receive({
      envelope: {
        reversePath: "a\u009b2J@example.test",
        forwardPaths: ["x@example.net"],
        body: "8BITMIME",
        smtputf8: true,
      },
      recipients: [{ address: "x@example.net", originalRecipient: "x@example.net", mailbox: null }],
      clientAddress: "127.0.0.1",
      now,
    });
    await incoming.write(new TextEncoder().encode("Subject: \x1b]0;t\x07hi\r\n\r\nx\r\n"));
    const claim = await incoming.commitAndClaim(now);
    await queue.recordAttempt(claim, [{
      index: 0,
      status: "deferred",
      reply: { code: 451, enhancedStatus: "4.3.0", text: "\x1b[2J\x1b[31mwiped\rfake\x00" },
    }], now);
    await queue.close();

    const text = await tern(["queue", "list", "--config", file]);
    assert.equal(text.code, 0, text.stderr);
    // deno-lint-ignore no-control-regex
    assert.doesNotMatch(text.stdout, /[\x00-\x08\x0b-\x1f\x7f-\x9f]/);
    assert.match(text.stdout, /\(451 4\.3\.0 \\x1b\[2J\\x1b\[31mwiped\\x0dfake\\x00\)/);
    assert.match(text.stdout, /<a\\x9b2J@example\.test>/);
    const json = await tern(["queue", "list", "--config", file, "--json"]);
    // deno-lint-ignore no-control-regex
    assert.doesNotMatch(json.stdout.trim(), /[\x00-\x1f\x7f-\x9f]/);
    const row = JSON.parse(json.stdout);
    assert.equal(row.sender, "a\u009b2J@example.test");
    assert.equal(row.recipients[0].last_error, "451 4.3.0 \x1b[2J\x1b[31mwiped\rfake\x00");
    const shown = await tern(["queue", "show", "--config", file, claim.message.queueId]);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /wiped\\x0dfake/);
    // Not a terminal: the content itself comes out byte for byte.
    // deno-lint-ignore no-control-regex
    assert.match(shown.stdout, /Subject: \x1b\]0;t\x07hi\r\n/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Queues a message straight into the store; `deferred` records one failed attempt. */
async function enqueue(
  queue: Awaited<ReturnType<typeof openQueue>>,
  from: string,
  to: string[],
  deferred = false,
): Promise<string> {
  const now = Date.now();
  const incoming = await queue.receive({
    envelope: { reversePath: from, forwardPaths: to, body: "7BIT", smtputf8: false },
    recipients: to.map((a) => ({ address: a, originalRecipient: a, mailbox: null })),
    clientAddress: "127.0.0.1",
    now,
  });
  await incoming.write(new TextEncoder().encode("Subject: q\r\n\r\nx\r\n"));
  if (!deferred) {
    await incoming.commit();
    return incoming.queueId;
  }
  const claim = await incoming.commitAndClaim(now);
  await queue.recordAttempt(
    claim,
    to.map((_, index) => ({
      index,
      status: "deferred" as const,
      reply: { code: 451, enhancedStatus: "4.3.0", text: "try later" },
    })),
    now,
  );
  return claim.message.queueId;
}

/** Standard error without the admin log lines (`... info ID queue.held user=...`). */
function errors(stderr: string): string {
  return stderr.split(/(?<=\n)/).filter((l) => !/ queue\.\w+ .*uid=/.test(l)).join("");
}

function jsonIds(stdout: string): string[] {
  return stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l).id);
}

Deno.test("queue delete, hold, release and flush take several ids, ALL and a selection, and refuse what does not apply", async () => {
  const { dir, file, config } = await tempConfig(CONFIG);
  try {
    const queue = await openQueue(config);
    const a = await enqueue(queue, "alice@example.test", ["x@example.net"]);
    const b = await enqueue(queue, "alice@example.test", ["y@example.org"]);
    const c = await enqueue(queue, "carol@example.test", ["z@example.org"], true);
    await queue.close();
    const q = (...args: string[]) => tern(["queue", ...args, "--config", file]);
    const ok = async (args: string[], stdout: string) => {
      const r = await q(...args);
      assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
      assert.equal(r.stdout, stdout, args.join(" "));
    };
    const fails = async (args: string[], stderr: string, stdout = "") => {
      const r = await q(...args);
      assert.equal(r.code, 1, args.join(" "));
      assert.equal(errors(r.stderr), stderr, args.join(" "));
      assert.equal(r.stdout, stdout, args.join(" "));
    };

    await ok(["hold", a, b.toLowerCase()], `${a}: held\n${b}: held\n`);
    await fails(["hold", a], `tern queue hold: ${a}: already held\n`);
    await fails(["release", c], `tern queue release: ${c}: not held\n`);
    // Each id is reported; one failure is enough for exit 1.
    await fails(
      ["release", a, "01NOSUCHMESSAG"],
      `tern queue release: no message with queue ID "01NOSUCHMESSAG"\n`,
      `${a}: released\n`,
    );

    // Selections, for list and for actions.
    assert.deepEqual(jsonIds((await q("list", "--json", "--state", "held")).stdout), [b]);
    assert.deepEqual(jsonIds((await q("list", "--json", "--state", "deferred")).stdout), [c]);
    assert.deepEqual(jsonIds((await q("list", "--json", "--state", "active")).stdout), [a]);
    assert.deepEqual(jsonIds((await q("list", "--json", "--domain", "example.org")).stdout), [
      b,
      c,
    ]);
    assert.deepEqual(jsonIds((await q("list", "--json", "--from", "Carol@example.test")).stdout), [
      c,
    ]);
    assert.deepEqual(jsonIds((await q("list", "--json", "--to", "x@example.net")).stdout), [a]);
    await fails(
      ["list", "--state", "frozen"],
      `tern queue list: --state must be held, deferred or active, found "frozen"\n`,
    );
    // ALL passes over the messages the action does not apply to.
    await ok(["release", "ALL"], `${b}: released\n1 message released\n`);
    await ok(
      ["hold", "ALL", "--domain", "example.org"],
      `${b}: held\n${c}: held\n2 messages held\n`,
    );

    // flush ID: one message due now; a held one is refused, an unknown one too.
    await fails(["flush", c], `tern queue flush: ${c}: held (release it to deliver it)\n`);
    await ok(["release", c], `${c}: released\n`);
    const before = Date.now();
    await ok(["flush", c], `${c}: due now\n`);
    const reopened = await openQueue(config);
    const flushed = await reopened.get(c);
    await reopened.close();
    assert.ok(
      flushed !== null && flushed.nextAttempt >= before && flushed.nextAttempt <= Date.now(),
    );
    await fails(
      ["flush", "01NOSUCHMESSAG"],
      `tern queue flush: no message with queue ID "01NOSUCHMESSAG"\n`,
    );

    await fails(
      ["delete"],
      `tern queue delete: needs queue IDs, or ALL (see "tern queue delete --help")\n`,
    );
    await ok(["delete", "ALL", "--state", "deferred"], `${c}: deleted\n1 message deleted\n`);
    await ok(["delete", a, b], `${a}: deleted\n${b}: deleted\n`);
    await ok(["list"], "Queue is empty\n");
    await ok(["delete", "ALL"], "0 messages deleted\n");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("queue list ends quietly with status 0 when its reader goes away (| head -1)", async () => {
  const { dir, file, config } = await tempConfig(CONFIG);
  try {
    // Lines long enough that the output outgrows the pipe once head has gone.
    const queue = await openQueue(config);
    for (let i = 0; i < 6; i++) {
      await enqueue(
        queue,
        "alice@example.test",
        Array.from({ length: 600 }, (_, n) => `user${n}@example.net`),
      );
    }
    await queue.close();
    for (const json of [["--json"], []]) {
      const script = `"$@" 2>"${dir}/stderr" | head -c 100 >/dev/null; echo "\${PIPESTATUS[0]}"`;
      const out = await new Deno.Command("bash", {
        args: [
          "-c",
          script,
          "tern",
          Deno.execPath(),
          "run",
          "-A",
          "--unstable-kv",
          MAIN,
          "queue",
          "list",
          "--config",
          file,
          ...json,
        ],
        stdout: "piped",
      }).output();
      assert.equal(new TextDecoder().decode(out.stdout).trim(), "0", `list ${json}`);
      assert.equal(await Deno.readTextFile(`${dir}/stderr`), "", `list ${json}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
