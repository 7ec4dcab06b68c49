// Delivery at acceptance (queue.deliver_at_acceptance), over real sockets
// with Python's smtplib: mail for local mailboxes only is in them when the
// 250 reaches the client, and the queue store never sees it; anything else,
// and any mailbox that fails, goes through the store as before.

import assert from "node:assert/strict";
import { join } from "node:path";
import { storeCommitLatency } from "../metrics/tern.ts";
import { MemoryLogger } from "../log/logger.ts";
import {
  deliverToMaildir,
  MaildirNameTakenError,
  maildirPath,
  maildirUniqueName,
  pendingName,
} from "../mda/maildir.ts";
import { DirectDelivery } from "../mta/direct_delivery.ts";
import { errorData, errorFromData } from "../mta/worker_protocol.ts";
import { Mta } from "../mta/mta.ts";
import {
  maildirFiles,
  python,
  sinkServer,
  startMta,
  tempConfig,
  waitFor,
  waitForMail,
} from "./_helpers.ts";

/** Commits into the store so far, in this process. */
const commits = () => storeCommitLatency.labels().count;

const ACCOUNTS = `local_domains: [example.test]
accounts:
  alice@example.test: {}
  bob@example.test: {}
  carol@example.test: {}
`;

/**
 * Sends one message with smtplib and, as soon as the 250 is in, lists the
 * Maildirs' new/ directories: prints the reply, then one count per mailbox.
 */
async function sendAndLook(
  port: number,
  options: {
    from: string;
    to: string[];
    body: string;
    mailboxes: string[];
    rcptOptions?: string[];
  },
): Promise<{ reply: string; counts: number[] }> {
  const bodyFile = await Deno.makeTempFile({ prefix: "tern-test-body-" });
  await Deno.writeTextFile(bodyFile, options.body);
  const out = await python(
    `
import json, os, smtplib, sys
port, sender, rcpts, boxes, rcpt_options = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[5]), json.loads(sys.argv[6])
body = open(sys.argv[4], "rb").read()
with smtplib.SMTP("127.0.0.1", port) as s:
    s.ehlo("client.test")
    s.mail(sender)
    for r in rcpts:
        s.rcpt(r, rcpt_options)
    code, text = s.data(body)
    def count(box):
        try:
            return len(os.listdir(os.path.join(box, "new")))
        except FileNotFoundError:
            return 0
    counts = [count(b) for b in boxes]
    print(code, text.decode())
    print(json.dumps(counts))
`,
    [
      String(port),
      options.from,
      JSON.stringify(options.to),
      bodyFile,
      JSON.stringify(options.mailboxes),
      JSON.stringify(options.rcptOptions ?? []),
    ],
  ).finally(() => Deno.remove(bodyFile));
  const [reply = "", counts = "[]"] = out.trim().split("\n");
  return { reply, counts: JSON.parse(counts) };
}

const message = (subject: string, filler = "") =>
  `From: carol@example.test\r\nSubject: ${subject}\r\n\r\nHello\r\n${filler}`;

Deno.test("mail for local mailboxes is in them at the 250, and the store never sees it", async () => {
  await using m = await startMta(ACCOUNTS);
  const mail = join(m.dir, "data", "mail", "example.test");
  const before = commits();
  const { reply, counts } = await sendAndLook(m.port, {
    from: "carol@example.test",
    to: ["alice@example.test", "bob+news@example.test"],
    body: message("at once"),
    mailboxes: [join(mail, "alice"), join(mail, "bob")],
  });
  const id = /^250 2\.0\.0 Ok: queued as (\S+)$/.exec(reply)?.[1];
  assert.ok(id, reply);
  assert.deepEqual(counts, [1, 1], "both files were in new/ when the 250 came");
  assert.equal(commits(), before, "nothing was committed to the store");
  assert.equal(await m.mta.queue.count(), 0);
  // The same file the queue's delivery would write: trace fields, the Received line, the content.
  const [file] = await maildirFiles(join(mail, "bob"));
  assert.ok(file?.includes(id), `the file name carries the queue id: ${file}`);
  const text = await Deno.readTextFile(file!);
  assert.match(
    text,
    /^Return-Path: <carol@example\.test>\r\nDelivered-To: bob\+news@example\.test\r\nReceived: from client\.test/,
  );
  assert.ok(text.endsWith("Subject: at once\r\n\r\nHello\r\n"), text);
  // The acceptance line first, then one delivery line per mailbox.
  const lines = m.logger.records.filter((r) => r.queueId === id);
  assert.deepEqual(lines.map((r) => r.event), [
    "message.accepted",
    "delivery.sent",
    "delivery.sent",
  ]);
  assert.equal(lines[0]!.fields.nrcpt, 2);
  assert.deepEqual(lines.slice(1).map((r) => r.fields.rcpt), [
    "<alice@example.test>",
    "<bob+news@example.test>",
  ]);
});

Deno.test("the file's fsync blocks the thread while its session is the only one, and not beside another", async () => {
  await using m = await startMta(ACCOUNTS);
  const mail = join(m.dir, "data", "mail", "example.test");
  // The real calls, counted: an fsync in place is FsFile.syncSync, and only
  // that syncer calls it.
  const proto = Deno.FsFile.prototype;
  const syncSync = proto.syncSync;
  let inPlace = 0;
  proto.syncSync = function (this: Deno.FsFile) {
    inPlace++;
    return syncSync.call(this);
  };
  try {
    const send = (subject: string) =>
      sendAndLook(m.port, {
        from: "carol@example.test",
        to: ["alice@example.test", "bob@example.test"],
        body: message(subject),
        mailboxes: [join(mail, "alice"), join(mail, "bob")],
      });
    assert.deepEqual((await send("alone")).counts, [1, 1]);
    assert.equal(inPlace, 2, "one fsync in place per mailbox");
    // A second client connected and idle: the thread has someone else to serve.
    const other = await Deno.connect({ hostname: "127.0.0.1", port: m.port });
    try {
      await other.read(new Uint8Array(512)); // the banner
      assert.deepEqual((await send("beside another")).counts, [2, 2]);
      assert.equal(inPlace, 2, "no fsync in place beside another session");
    } finally {
      other.close();
    }
  } finally {
    proto.syncSync = syncSync;
  }
});

/** What a `postMessage` does to an error on its way back from the thread that wrote the file. */
function crossed(error: unknown): Error {
  return errorFromData(structuredClone(errorData(error)));
}

for (
  const [where, writeMaildir] of [
    ["on this thread", deliverToMaildir],
    // As on the main thread with session workers: a worker writes the file.
    [
      "on another thread",
      ((dir, content, options) =>
        deliverToMaildir(dir, content, options).catch((error: unknown) => {
          throw crossed(error);
        })) as typeof deliverToMaildir,
    ],
  ] as const
) {
  Deno.test(`on a shared mail root, a delivery at acceptance refuses a name another node's file has (file written ${where})`, async () => {
    const root = await Deno.makeTempDir({ prefix: "tern-test-shared-root-" });
    try {
      // As in a fleet: the rename's fsync before the 250, one host part for every node.
      const direct = new DirectDelivery({
        mailRoot: root,
        hostname: "tern-fleet",
        logger: new MemoryLogger(),
        syncNameLater: false,
        writeMaildir,
      });
      const arrival = 1_700_000_000_000;
      const queueId = "1M941T9GG60R84";
      const dir = maildirPath(root, "alice@example.test");
      for (const sub of ["tmp", "new", "cur"]) {
        await Deno.mkdir(join(dir, sub), { recursive: true });
      }
      // Another node accepted a message in the same millisecond and drew the same id.
      const theirs = join(dir, "new", maildirUniqueName(arrival, queueId, 0, "tern-fleet"));
      await Deno.writeTextFile(theirs, "Subject: theirs\r\n\r\nhello\r\n");
      const address = "alice@example.test";
      await assert.rejects(
        direct.deliver({
          queueId,
          envelope: {
            reversePath: "carol@example.test",
            forwardPaths: [address],
            body: "7BIT",
            smtputf8: false,
          },
          recipients: [{ address, originalRecipient: address, mailbox: address }],
          arrival,
          clientAddress: "127.0.0.1",
          content: [new TextEncoder().encode("Subject: mine\r\n\r\nhello\r\n")],
        }),
        MaildirNameTakenError,
      );
      assert.equal(await Deno.readTextFile(theirs), "Subject: theirs\r\n\r\nhello\r\n");
      assert.deepEqual(await maildirFiles(dir), [theirs]);
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  });
}

Deno.test("deliver_at_acceptance: false stores every message first", async () => {
  await using m = await startMta(`${ACCOUNTS}queue: { deliver_at_acceptance: false }\n`);
  const before = commits();
  const { reply } = await sendAndLook(m.port, {
    from: "carol@example.test",
    to: ["alice@example.test"],
    body: message("stored"),
    mailboxes: [],
  });
  assert.match(reply, /^250 /);
  assert.equal(commits(), before + 1);
  await waitForMail(join(m.dir, "data", "mail", "example.test", "alice"), 1);
});

Deno.test("a message with a remote recipient goes through the store, local part included", async () => {
  const sink = sinkServer();
  const { port: sinkPort } = await sink.listen();
  await using m = await startMta(
    `${ACCOUNTS}relay: { routes: { example.net: "127.0.0.1:${sinkPort}" } }\n`,
  );
  await using _closing = { [Symbol.asyncDispose]: () => sink.close(100) };
  const before = commits();
  const { reply } = await sendAndLook(m.port, {
    from: "carol@example.test",
    to: ["alice@example.test", "dave@example.net"],
    body: message("mixed"),
    mailboxes: [],
  });
  const id = /queued as (\S+)$/.exec(reply)?.[1];
  assert.ok(id, reply);
  assert.equal(commits(), before + 1);
  await waitForMail(join(m.dir, "data", "mail", "example.test", "alice"), 1);
  await waitFor(() =>
    m.logger.records.some((r) =>
      r.queueId === id && r.event === "delivery.sent" && r.fields.rcpt === "<dave@example.net>"
    )
  );
});

Deno.test("a mailbox that fails at acceptance is left to the queue, which bounces it; the others are not written twice", async () => {
  await using m = await startMta(ACCOUNTS);
  const mail = join(m.dir, "data", "mail", "example.test");
  await Deno.mkdir(mail, { recursive: true });
  // A file where bob's Maildir should be: a permanent failure (RFC 3463 X.2.0).
  await Deno.writeTextFile(join(mail, "bob"), "not a directory\n");
  const before = commits();
  const { reply, counts } = await sendAndLook(m.port, {
    from: "carol@example.test",
    to: ["alice@example.test", "bob@example.test"],
    body: message("half"),
    mailboxes: [join(mail, "alice")],
  });
  const id = /queued as (\S+)$/.exec(reply)?.[1];
  assert.ok(id, reply);
  assert.deepEqual(counts, [1], "alice's copy was in new/ at the 250");
  assert.equal(commits(), before + 1, "bob's part was stored");
  // The delivery loop bounces bob: carol gets the report.
  const [report] = await waitForMail(join(mail, "carol"), 1);
  const text = new TextDecoder().decode(report);
  assert.match(text, /Final-Recipient: rfc822;\s*bob@example\.test/i);
  assert.match(text, /Action: failed/);
  assert.doesNotMatch(text, /Final-Recipient: rfc822;\s*alice@example\.test/i);
  assert.equal((await maildirFiles(join(mail, "alice"))).length, 1);
  const bob = m.logger.records.filter((r) =>
    r.queueId === id && r.fields.rcpt === "<bob@example.test>"
  );
  // The try at acceptance is a debug detail; the queue's attempt is the outcome.
  assert.deepEqual(bob.map((r) => [r.level, r.event]), [
    ["debug", "delivery.bounced"],
    ["warn", "delivery.bounced"],
  ]);
  await waitFor(async () => await m.mta.queue.count() === 0);
});

Deno.test("a message over 2 MiB goes through the store and arrives whole", async () => {
  await using m = await startMta(ACCOUNTS);
  const mail = join(m.dir, "data", "mail", "example.test", "alice");
  const line = "z".repeat(78) + "\r\n";
  const filler = line.repeat(Math.ceil(3 * 1024 * 1024 / line.length));
  const before = commits();
  const { reply } = await sendAndLook(m.port, {
    from: "carol@example.test",
    to: ["alice@example.test"],
    body: message("big", filler),
    mailboxes: [],
  });
  assert.match(reply, /^250 /);
  assert.equal(commits(), before + 1);
  const [copy] = await waitForMail(mail, 1);
  assert.ok(new TextDecoder().decode(copy).endsWith(`Hello\r\n${filler}`));
});

Deno.test("a recipient asking for a success report (NOTIFY=SUCCESS) goes through the store, which sends it", async () => {
  await using m = await startMta(ACCOUNTS);
  const mail = join(m.dir, "data", "mail", "example.test");
  const before = commits();
  const { reply } = await sendAndLook(m.port, {
    from: "carol@example.test",
    to: ["alice@example.test"],
    body: message("tell me"),
    mailboxes: [],
    rcptOptions: ["NOTIFY=SUCCESS"],
  });
  assert.match(reply, /^250 /);
  assert.equal(commits(), before + 1);
  await waitForMail(join(mail, "alice"), 1);
  // RFC 3461 §4.1: the delivery is reported to the sender, from the queue's delivery.
  const [report] = await waitForMail(join(mail, "carol"), 1);
  assert.match(new TextDecoder().decode(report), /Action: delivered/);
});

Deno.test("with session workers, the worker writes the mailbox before its 250 and the store never sees it", async () => {
  await using m = await startMta(`${ACCOUNTS}workers: 2\n`);
  const alice = join(m.dir, "data", "mail", "example.test", "alice");
  const before = commits();
  // Connections of their own: the kernel spreads them over the two workers.
  for (let n = 1; n <= 4; n++) {
    const { reply, counts } = await sendAndLook(m.port, {
      from: "carol@example.test",
      to: ["alice@example.test"],
      body: message(`worker ${n}`),
      mailboxes: [alice],
    });
    assert.match(reply, /^250 /);
    assert.deepEqual(counts, [n], `message ${n} was in new/ at its 250`);
  }
  assert.equal(commits(), before, "nothing was committed to the store");
  const accepted = m.logger.records.filter((r) => r.event === "message.accepted");
  assert.equal(accepted.length, 4);
  // Each acceptance line before its delivery line, as the main thread writes the workers' lines.
  for (const a of accepted) {
    const lines = m.logger.records.filter((r) => r.queueId === a.queueId).map((r) => r.event);
    assert.deepEqual(lines, ["message.accepted", "delivery.sent"]);
  }
});

Deno.test("at start, a rename into new/ a crash undid is finished, and a file cut short is removed", async () => {
  const { dir, config } = await tempConfig(
    `listeners: [{ address: 127.0.0.1, port: 0, mode: mx }]\n${ACCOUNTS}`,
  );
  try {
    const alice = maildirPath(config.mailRoot, "alice@example.test");
    const first = await Mta.start(config, { logger: new MemoryLogger() });
    try {
      const { reply } = await sendAndLook(first.listeners[0]!.port, {
        from: "carol@example.test",
        to: ["alice@example.test"],
        body: message("before the crash"),
        mailboxes: [alice],
      });
      assert.match(reply, /^250 /);
    } finally {
      await first.stop(1000);
    }
    // What a power cut before the fsync of new/ can leave: the synced file
    // still in tmp/, under the name that carries its size; and a file the
    // cut stopped before its fsync, shorter than its name says.
    const [delivered] = await maildirFiles(alice);
    const name = delivered!.slice(delivered!.lastIndexOf("/") + 1);
    const { size } = await Deno.stat(delivered!);
    await Deno.rename(delivered!, join(alice, "tmp", pendingName(name, size)));
    const cut = pendingName(name.replace("R0.", "R1."), size);
    await Deno.writeTextFile(join(alice, "tmp", cut), "Return-Path: <carol@exa");

    const logger = new MemoryLogger();
    const second = await Mta.start(config, { logger });
    try {
      assert.deepEqual(await maildirFiles(alice), [join(alice, "new", name)]);
      const lines = logger.records.filter((r) => r.event === "maildir.recovered");
      assert.deepEqual(lines.map((r) => [r.level, r.fields.action, r.fields.path]), [
        ["info", "delivered", join(alice, "new", name)],
        ["warn", "removed", join(alice, "tmp", cut)],
        ["info", undefined, undefined],
      ]);
      assert.equal(lines[2]!.fields.delivered, 1);
      assert.equal(lines[2]!.fields.removed, 1);
      const tmp = [];
      for await (const entry of Deno.readDir(join(alice, "tmp"))) tmp.push(entry.name);
      assert.deepEqual(tmp, []);
      const text = await Deno.readTextFile(join(alice, "new", name));
      assert.ok(text.endsWith("Subject: before the crash\r\n\r\nHello\r\n"), text);
      // And it takes mail as before.
      const { counts } = await sendAndLook(second.listeners[0]!.port, {
        from: "carol@example.test",
        to: ["alice@example.test"],
        body: message("after"),
        mailboxes: [alice],
      });
      assert.deepEqual(counts, [2]);
    } finally {
      await second.stop(1000);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
