import { deepStrictEqual, equal, match, ok } from "node:assert/strict";
import { MemoryLogger } from "../log/logger.ts";
import type { QueuedMessage, RecipientState } from "../queue/types.ts";
import { classifyLocalFailure, LocalDelivery } from "./local_delivery.ts";
import { maildirPath, maildirUniqueName } from "./maildir.ts";

const encoder = new TextEncoder();
const CONTENT = "Received: from client.example.net\r\nSubject: hi\r\n\r\n.dot\r\nGrüße\r\n";
const ARRIVAL = 1700000000000;

function recipient(
  address: string,
  mailbox: string | null,
  attempts = 0,
): RecipientState {
  return {
    address,
    originalRecipient: address,
    mailbox,
    status: attempts === 0 ? "queued" : "deferred",
    attempts,
    lastAttempt: null,
    lastReply: null,
  };
}

function message(recipients: RecipientState[], reversePath = "bob@example.net"): QueuedMessage {
  return {
    queueId: "4F2A9C",
    envelope: {
      reversePath,
      forwardPaths: recipients.map((r) => r.originalRecipient),
      body: "8BITMIME",
      smtputf8: false,
    },
    recipients,
    size: encoder.encode(CONTENT).length,
    arrival: ARRIVAL,
    nextAttempt: ARRIVAL,
    held: false,
    clientAddress: "192.0.2.1",
  };
}

function openContent(): ReadableStream<Uint8Array> {
  return new Blob([CONTENT]).stream();
}

async function withMailRoot(
  fn: (mailRoot: string, delivery: LocalDelivery, logger: MemoryLogger) => Promise<void>,
): Promise<void> {
  const mailRoot = await Deno.makeTempDir({ prefix: "tern_local_delivery_test_" });
  const logger = new MemoryLogger();
  const delivery = new LocalDelivery({
    mailRoot,
    hostname: "mx.example.test",
    logger,
    now: () => ARRIVAL + 61_000,
  });
  try {
    await fn(mailRoot, delivery, logger);
  } finally {
    await Deno.remove(mailRoot, { recursive: true });
  }
}

async function listNew(mailRoot: string, mailbox: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(`${maildirPath(mailRoot, mailbox)}new`)) out.push(e.name);
  return out.sort();
}

async function run(command: string, ...args: string[]): Promise<boolean> {
  try {
    const { success } = await new Deno.Command(command, { args, stdout: "null", stderr: "null" })
      .output();
    return success;
  } catch {
    return false;
  }
}

const isRoot = Deno.uid() === 0;

Deno.test("LocalDelivery delivers each local recipient into its own Maildir and skips remote ones", async () => {
  await withMailRoot(async (mailRoot, delivery, logger) => {
    const msg = message([
      recipient("Alice+news@example.test", "alice@example.test"),
      recipient("dave@example.net", null),
      recipient("bob@example.test", "bob@example.test"),
    ]);
    const outcomes = await delivery.deliver(
      { message: msg, recovered: false },
      [0, 1, 2],
      openContent,
    );
    deepStrictEqual(outcomes, [
      {
        index: 0,
        status: "sent",
        reply: { code: 250, enhancedStatus: "2.0.0", text: "delivered to maildir" },
      },
      {
        index: 2,
        status: "sent",
        reply: { code: 250, enhancedStatus: "2.0.0", text: "delivered to maildir" },
      },
    ]);
    const aliceName = maildirUniqueName(ARRIVAL, "4F2A9C", 0, "mx.example.test");
    const bobName = maildirUniqueName(ARRIVAL, "4F2A9C", 2, "mx.example.test");
    ok(aliceName !== bobName);
    deepStrictEqual(await listNew(mailRoot, "alice@example.test"), [aliceName]);
    deepStrictEqual(await listNew(mailRoot, "bob@example.test"), [bobName]);
    equal(
      await Deno.readTextFile(`${mailRoot}/example.test/alice/new/${aliceName}`),
      "Return-Path: <bob@example.net>\r\nDelivered-To: Alice+news@example.test\r\n" + CONTENT,
    );
    equal(
      await Deno.readTextFile(`${mailRoot}/example.test/bob/new/${bobName}`),
      "Return-Path: <bob@example.net>\r\nDelivered-To: bob@example.test\r\n" + CONTENT,
    );
    deepStrictEqual(logger.records.map((r) => [r.event, r.queueId, r.fields.rcpt]), [
      ["delivery.sent", "4F2A9C", "<Alice+news@example.test>"],
      ["delivery.sent", "4F2A9C", "<bob@example.test>"],
    ]);
    equal(logger.records[0]?.fields.delay, "61s");
    equal(logger.records[0]?.fields.status, "2.0.0");
  });
});

Deno.test("LocalDelivery gives two recipients of one mailbox two files with different names", async () => {
  await withMailRoot(async (mailRoot, delivery) => {
    const msg = message([
      recipient("alice@example.test", "alice@example.test"),
      recipient("alice+x@example.test", "alice@example.test"),
    ]);
    await delivery.deliver({ message: msg, recovered: false }, [0, 1], openContent);
    equal((await listNew(mailRoot, "alice@example.test")).length, 2);
  });
});

Deno.test("LocalDelivery writes Return-Path: <> for a bounce from the null sender", async () => {
  await withMailRoot(async (mailRoot, delivery) => {
    const msg = message([recipient("alice@example.test", "alice@example.test")], "");
    await delivery.deliver({ message: msg, recovered: false }, [0], openContent);
    const [name] = await listNew(mailRoot, "alice@example.test");
    ok((await Deno.readTextFile(`${mailRoot}/example.test/alice/new/${name}`)).startsWith(
      "Return-Path: <>\r\n",
    ));
  });
});

Deno.test("LocalDelivery reports a copy already in new/ as already delivered", async () => {
  await withMailRoot(async (mailRoot, delivery) => {
    const msg = message([recipient("alice@example.test", "alice@example.test")]);
    await delivery.deliver({ message: msg, recovered: false }, [0], openContent);
    // The queue crashed before recording "sent": the claim is recovered.
    const again = await delivery.deliver({ message: msg, recovered: true }, [0], openContent);
    deepStrictEqual(again, [{
      index: 0,
      status: "sent",
      reply: { code: 250, enhancedStatus: "2.0.0", text: "already delivered" },
    }]);
    equal((await listNew(mailRoot, "alice@example.test")).length, 1);
  });
});

Deno.test("LocalDelivery finds a copy the reader moved to cur/ with :2,S on a recovered claim", async () => {
  await withMailRoot(async (mailRoot, delivery) => {
    const msg = message([recipient("alice@example.test", "alice@example.test")]);
    await delivery.deliver({ message: msg, recovered: false }, [0], openContent);
    const dir = maildirPath(mailRoot, "alice@example.test");
    const [name] = await listNew(mailRoot, "alice@example.test");
    await Deno.rename(`${dir}new/${name}`, `${dir}cur/${name}:2,S`);
    const again = await delivery.deliver({ message: msg, recovered: true }, [0], openContent);
    equal(again[0]?.reply.text, "already delivered");
    deepStrictEqual(await listNew(mailRoot, "alice@example.test"), []);
  });
});

Deno.test("LocalDelivery looks in cur/ on a retry (attempts > 0) too", async () => {
  await withMailRoot(async (mailRoot, delivery) => {
    const first = message([recipient("alice@example.test", "alice@example.test")]);
    await delivery.deliver({ message: first, recovered: false }, [0], openContent);
    const dir = maildirPath(mailRoot, "alice@example.test");
    const [name] = await listNew(mailRoot, "alice@example.test");
    await Deno.rename(`${dir}new/${name}`, `${dir}cur/${name}:2,RS`);
    const retry = message([recipient("alice@example.test", "alice@example.test", 1)]);
    const again = await delivery.deliver({ message: retry, recovered: false }, [0], openContent);
    equal(again[0]?.reply.text, "already delivered");
  });
});

Deno.test("LocalDelivery bounces with 5.2.0 when the mailbox's parent is a file, and carries on", async () => {
  await withMailRoot(async (mailRoot, delivery, logger) => {
    // Works as root too: no permission bit is involved, mkdir fails with ENOTDIR.
    await Deno.writeTextFile(`${mailRoot}/broken.test`, "a file where a directory should be");
    const msg = message([
      recipient("carol@broken.test", "carol@broken.test"),
      recipient("alice@example.test", "alice@example.test"),
    ]);
    const outcomes = await delivery.deliver(
      { message: msg, recovered: false },
      [0, 1],
      openContent,
    );
    equal(outcomes.length, 2);
    // A structure no retry can cure: bounced at once, the mailbox named, no path.
    deepStrictEqual(outcomes[0], {
      index: 0,
      status: "bounced",
      reply: {
        code: 0,
        enhancedStatus: "5.2.0",
        text: "cannot write to mailbox <carol@broken.test>: Not a directory",
      },
    });
    equal(outcomes[1]?.status, "sent");
    equal(logger.records[0]?.event, "delivery.bounced");
    equal(logger.records[0]?.fields.status, "5.2.0");
    // The path is in the server log.
    equal(logger.records[0]?.fields.next_hop, `maildir:${mailRoot}/broken.test/carol/`);
  });
});

/** Makes a directory unwritable, even for root where possible; returns how to undo it, or null. */
async function makeReadOnly(dir: string): Promise<(() => Promise<void>) | null> {
  if (!isRoot) {
    await Deno.chmod(dir, 0o500);
    return () => Deno.chmod(dir, 0o700);
  }
  // Root ignores permission bits; the immutable attribute stops it (ext4, xfs, btrfs).
  if (!(await run("chattr", "+i", dir))) return null;
  return async () => {
    await run("chattr", "-i", dir);
  };
}

Deno.test("LocalDelivery defers with 4.2.0 when the Maildir cannot be written", async (t) => {
  await withMailRoot(async (mailRoot, delivery) => {
    const msg = message([recipient("alice@example.test", "alice@example.test")]);
    const dir = maildirPath(mailRoot, "alice@example.test");
    for (const sub of ["tmp", "new", "cur"]) await Deno.mkdir(`${dir}${sub}`, { recursive: true });
    const undo = await makeReadOnly(`${dir}tmp`);
    if (undo === null) {
      await t.step({ name: "skipped: running as root without chattr", ignore: true, fn() {} });
      return;
    }
    try {
      const outcomes = await delivery.deliver({ message: msg, recovered: false }, [0], openContent);
      equal(outcomes[0]?.status, "deferred");
      equal(outcomes[0]?.reply.code, 0);
      equal(outcomes[0]?.reply.enhancedStatus, "4.2.0");
      match(
        outcomes[0]?.reply.text ?? "",
        /^cannot write to mailbox <alice@example\.test>: (Permission denied|Operation not permitted)$/,
      );
    } finally {
      await undo();
    }
    deepStrictEqual(await listNew(mailRoot, "alice@example.test"), []);
  });
});

Deno.test("LocalDelivery defers with 4.3.1 when the disk is full", async (t) => {
  await withMailRoot(async (mailRoot, delivery) => {
    // A tiny tmpfs gives a real ENOSPC; it needs root (or CAP_SYS_ADMIN).
    const small = `${mailRoot}/small.test`;
    await Deno.mkdir(small);
    if (!(await run("mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", small))) {
      await t.step({ name: "skipped: cannot mount a tmpfs here", ignore: true, fn() {} });
      return;
    }
    try {
      const big = new Uint8Array(256 * 1024).fill(0x41);
      const msg = message([recipient("alice@small.test", "alice@small.test")]);
      const outcomes = await delivery.deliver(
        { message: msg, recovered: false },
        [0],
        () => new Blob([big]).stream(),
      );
      equal(outcomes[0]?.status, "deferred");
      equal(outcomes[0]?.reply.enhancedStatus, "4.3.1");
      match(outcomes[0]?.reply.text ?? "", /: No space left on device$/);
      // The partial file was removed from tmp/.
      deepStrictEqual([...Deno.readDirSync(`${small}/alice/tmp`)], []);
    } finally {
      await run("umount", small);
    }
  });
});

Deno.test("LocalDelivery defers with 4.3.0 when the queued content cannot be read", async () => {
  await withMailRoot(async (mailRoot, delivery) => {
    const msg = message([recipient("alice@example.test", "alice@example.test")]);
    const failing = () =>
      new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(encoder.encode("Subject: half\r\n"));
        },
        pull(controller) {
          controller.error(new Error("Chunk 2 of 4F2A9C is missing"));
        },
      });
    const outcomes = await delivery.deliver({ message: msg, recovered: false }, [0], failing);
    deepStrictEqual(outcomes, [{
      index: 0,
      status: "deferred",
      reply: {
        code: 0,
        enhancedStatus: "4.3.0",
        text: "cannot read the queued content: Chunk 2 of 4F2A9C is missing",
      },
    }]);
    deepStrictEqual(await listNew(mailRoot, "alice@example.test"), []);
    deepStrictEqual([...Deno.readDirSync(`${maildirPath(mailRoot, "alice@example.test")}tmp`)], []);
  });
});

Deno.test("LocalDelivery bounces a mailbox that cannot name a Maildir instead of throwing", async () => {
  await withMailRoot(async (_mailRoot, delivery, logger) => {
    const msg = message([recipient("alice", "alice")]);
    const outcomes = await delivery.deliver({ message: msg, recovered: false }, [0], openContent);
    equal(outcomes[0]?.status, "bounced");
    equal(outcomes[0]?.reply.enhancedStatus, "5.1.3");
    equal(logger.records[0]?.event, "delivery.bounced");
  });
});

Deno.test("LocalDelivery bounces an address that would inject header lines", async () => {
  await withMailRoot(async (mailRoot, delivery) => {
    const msg = message(
      [recipient("alice@example.test", "alice@example.test")],
      "x@example.net\r\nBcc: victim@example.org",
    );
    const outcomes = await delivery.deliver({ message: msg, recovered: false }, [0], openContent);
    equal(outcomes[0]?.status, "bounced");
    deepStrictEqual([...Deno.readDirSync(mailRoot)], []);
  });
});

Deno.test("LocalDelivery delivers only the indices it is given, skipping unknown ones", async () => {
  await withMailRoot(async (mailRoot, delivery) => {
    const msg = message([
      recipient("alice@example.test", "alice@example.test"),
      recipient("bob@example.test", "bob@example.test"),
    ]);
    const outcomes = await delivery.deliver(
      { message: msg, recovered: false },
      [1, 7],
      openContent,
    );
    deepStrictEqual(outcomes.map((o) => o.index), [1]);
    deepStrictEqual([...Deno.readDirSync(`${mailRoot}/example.test`)].map((e) => e.name), ["bob"]);
  });
});

Deno.test("LocalDelivery defers with 4.3.0 when the content cannot even be opened", async () => {
  await withMailRoot(async (_mailRoot, delivery) => {
    const msg = message([recipient("alice@example.test", "alice@example.test")]);
    const outcomes = await delivery.deliver({ message: msg, recovered: false }, [0], () => {
      throw new Error("Message 4F2A9C is not in the store");
    });
    equal(outcomes[0]?.status, "deferred");
    equal(outcomes[0]?.reply.enhancedStatus, "4.3.0");
    equal(
      outcomes[0]?.reply.text,
      "cannot read the queued content: Message 4F2A9C is not in the store",
    );
  });
});

Deno.test("LocalDelivery bounces a mailbox name too long for the file system at once, naming no path", async () => {
  await withMailRoot(async (mailRoot, delivery, logger) => {
    // 200 slashes escape to 600 octets: ENAMETOOLONG on every attempt.
    const mailbox = `${"/".repeat(200)}@localhost`;
    const msg = message([recipient(mailbox, mailbox)], "victim@evil.test");
    const outcomes = await delivery.deliver({ message: msg, recovered: false }, [0], openContent);
    equal(outcomes[0]?.status, "bounced");
    equal(outcomes[0]?.reply.enhancedStatus, "5.1.3");
    ok(!(outcomes[0]?.reply.text ?? "").includes(mailRoot), outcomes[0]?.reply.text);
    equal(logger.records[0]?.event, "delivery.bounced");
    deepStrictEqual([...Deno.readDirSync(mailRoot)], []);
  });
});

const failures: [string, string, string][] = [
  ["ENAMETOOLONG", "bounced", "5.1.3"],
  ["ENOTDIR", "bounced", "5.2.0"],
  ["EISDIR", "bounced", "5.2.0"],
  ["ELOOP", "bounced", "5.2.0"],
  ["ENOSPC", "deferred", "4.3.1"],
  ["EDQUOT", "deferred", "4.2.2"],
  ["EACCES", "deferred", "4.2.0"],
  ["EPERM", "deferred", "4.2.0"],
  ["EIO", "deferred", "4.3.0"],
  ["EMFILE", "deferred", "4.3.0"],
  ["", "deferred", "4.3.0"],
];
for (const [code, status, enhancedStatus] of failures) {
  Deno.test(`classifyLocalFailure(): ${code || "no code"} is ${status} ${enhancedStatus}, without the path`, () => {
    const error = Object.assign(
      new Error("Some reason (os error 99): open '/srv/tern/mail/example.test/alice/tmp/x'"),
      code === "" ? {} : { code },
    );
    deepStrictEqual(classifyLocalFailure(error), { status, enhancedStatus, reason: "Some reason" });
  });
}

/** A directory outside the mail root, removed after `fn`. */
async function withOutside(fn: (outside: string) => Promise<void>): Promise<void> {
  const outside = await Deno.makeTempDir({ prefix: "tern_outside_" });
  try {
    await fn(outside);
  } finally {
    await Deno.remove(outside, { recursive: true });
  }
}

function entries(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
}

Deno.test("LocalDelivery does not write through a mailbox that is a link out of the mail root", async () => {
  await withMailRoot(async (mailRoot, delivery, logger) => {
    await withOutside(async (outside) => {
      await Deno.mkdir(`${mailRoot}/example.test`);
      await Deno.symlink(outside, `${mailRoot}/example.test/alice`);
      const msg = message([recipient("alice@example.test", "alice@example.test")]);
      const outcomes = await delivery.deliver({ message: msg, recovered: false }, [0], openContent);
      equal(outcomes[0]?.status, "bounced");
      equal(outcomes[0]?.reply.enhancedStatus, "5.2.0");
      ok(!(outcomes[0]?.reply.text ?? "").includes(outside));
      match(outcomes[0]?.reply.text ?? "", /<alice@example\.test>/);
      deepStrictEqual(entries(outside), []);
      // Where the link leads is in the server log, at warn level.
      equal(logger.records[0]?.level, "warn");
      equal(logger.records[0]?.fields.target, await Deno.realPath(outside));
    });
  });
});

Deno.test("LocalDelivery does not write through a domain directory that is a link out of the mail root", async () => {
  await withMailRoot(async (mailRoot, delivery) => {
    await withOutside(async (outside) => {
      await Deno.symlink(outside, `${mailRoot}/example.test`);
      const msg = message([recipient("alice@example.test", "alice@example.test")]);
      const outcomes = await delivery.deliver({ message: msg, recovered: false }, [0], openContent);
      equal(outcomes[0]?.status, "bounced");
      equal(outcomes[0]?.reply.enhancedStatus, "5.2.0");
      deepStrictEqual(entries(outside), []);
    });
  });
});

Deno.test("LocalDelivery does not write through a new/ that is a link out of the mail root", async () => {
  await withMailRoot(async (mailRoot, delivery) => {
    await withOutside(async (outside) => {
      const dir = maildirPath(mailRoot, "alice@example.test");
      await Deno.mkdir(`${dir}tmp`, { recursive: true });
      await Deno.mkdir(`${dir}cur`);
      await Deno.symlink(outside, `${dir}new`);
      const msg = message([recipient("alice@example.test", "alice@example.test")]);
      const outcomes = await delivery.deliver({ message: msg, recovered: false }, [0], openContent);
      equal(outcomes[0]?.status, "bounced");
      deepStrictEqual(entries(outside), []);
      deepStrictEqual(entries(`${dir}tmp`), []);
    });
  });
});

Deno.test("LocalDelivery follows a link that stays inside the mail root", async () => {
  await withMailRoot(async (mailRoot, delivery) => {
    await Deno.mkdir(`${mailRoot}/example.test/alice`, { recursive: true });
    await Deno.symlink("alice", `${mailRoot}/example.test/alicia`);
    const msg = message([recipient("alicia@example.test", "alicia@example.test")]);
    const outcomes = await delivery.deliver({ message: msg, recovered: false }, [0], openContent);
    equal(outcomes[0]?.status, "sent");
    equal(entries(`${mailRoot}/example.test/alice/new`).length, 1);
  });
});

Deno.test("LocalDelivery defers a mailbox that is a link to nothing, and writes nowhere", async () => {
  await withMailRoot(async (mailRoot, delivery) => {
    await withOutside(async (outside) => {
      await Deno.mkdir(`${mailRoot}/example.test`);
      await Deno.symlink(`${outside}/later`, `${mailRoot}/example.test/alice`);
      const msg = message([recipient("alice@example.test", "alice@example.test")]);
      const outcomes = await delivery.deliver({ message: msg, recovered: false }, [0], openContent);
      equal(outcomes[0]?.status, "deferred");
      equal(outcomes[0]?.reply.enhancedStatus, "4.2.0");
      deepStrictEqual(entries(outside), []);
    });
  });
});

Deno.test("LocalDelivery checks a mailbox directory again once its check is a minute old", async () => {
  const mailRoot = await Deno.makeTempDir({ prefix: "tern_local_delivery_test_" });
  let now = ARRIVAL;
  const delivery = new LocalDelivery({
    mailRoot,
    hostname: "mx.example.test",
    logger: new MemoryLogger(),
    now: () => now,
  });
  try {
    await withOutside(async (outside) => {
      const first = message([recipient("alice@example.test", "alice@example.test")]);
      equal(
        (await delivery.deliver({ message: first, recovered: false }, [0], openContent))[0]
          ?.status,
        "sent",
      );
      // The mailbox is swapped for a link out of the mail root.
      await Deno.rename(`${mailRoot}/example.test/alice`, `${mailRoot}/example.test/old`);
      await Deno.symlink(outside, `${mailRoot}/example.test/alice`);
      now += 61_000;
      const second = { ...first, queueId: "4F2A9D" };
      equal(
        (await delivery.deliver({ message: second, recovered: false }, [0], openContent))[0]
          ?.status,
        "bounced",
      );
      deepStrictEqual(entries(outside), []);
    });
  } finally {
    await Deno.remove(mailRoot, { recursive: true });
  }
});

Deno.test("LocalDelivery defers with 4.3.5 when the mail root itself cannot be reached", async () => {
  await withMailRoot(async (mailRoot) => {
    // The mail root's parent is a file: every mailbox is concerned, the operator fixes it.
    await Deno.writeTextFile(`${mailRoot}/blocked`, "not a directory");
    const delivery = new LocalDelivery({
      mailRoot: `${mailRoot}/blocked/mail`,
      hostname: "mx.example.test",
      logger: new MemoryLogger(),
    });
    const msg = message([recipient("alice@example.test", "alice@example.test")]);
    const outcomes = await delivery.deliver({ message: msg, recovered: false }, [0], openContent);
    equal(outcomes[0]?.status, "deferred");
    equal(outcomes[0]?.reply.enhancedStatus, "4.3.5");
    ok(!(outcomes[0]?.reply.text ?? "").includes(mailRoot), outcomes[0]?.reply.text);
  });
});
