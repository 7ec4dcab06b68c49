// Faults of the store: when the queue cannot be written, the server answers
// 451 4.3.0 instead of 250 (never an acknowledgement it cannot keep), and
// takes mail again once the store is writable. The store is made unwritable
// with chattr +i, which stops root too; without chattr the test is skipped.
import assert from "node:assert/strict";
import { join } from "node:path";
import { python, startMta, waitFor } from "./_helpers.ts";

async function chattr(flag: "+i" | "-i", paths: string[]): Promise<boolean> {
  try {
    const out = await new Deno.Command("chattr", { args: [flag, ...paths], stderr: "null" })
      .output();
    return out.success;
  } catch {
    return false;
  }
}

const SEND = `
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]))
s.ehlo(); s.mail("a@x.test"); s.rcpt("me@example.test")
print(s.data(b"Subject: t\\r\\n\\r\\nx\\r\\n"))
s.quit()
`;

Deno.test("a queue store that cannot be written gets 451 4.3.0, then 250 once it can", async (t) => {
  // Every message through the store, which is what this test breaks.
  await using mta = await startMta(
    "local_domains: [example.test]\nqueue: { deliver_at_acceptance: false }\n",
  );
  const data = join(mta.dir, "data");
  const files = ["queue.sqlite3", "queue.sqlite3-wal", "queue.sqlite3-shm"].map((f) =>
    join(data, f)
  );
  assert.match(await python(SEND, [String(mta.port)]), /^\(250, b'2\.0\.0 Ok: queued as/);
  // Let its delivery finish first: SQLite maps its -shm file, and a store
  // write in flight that touches a new page of an immutable file is a SIGBUS
  // for the whole process, not an error a server could answer.
  await waitFor(async () => (await mta.mta.queue.count()) === 0);
  if (!(await chattr("+i", [...files, data]))) {
    await t.step({ name: "skipped: chattr +i is not available here", ignore: true, fn: () => {} });
    return;
  }
  try {
    assert.match(await python(SEND, [String(mta.port)]), /^\(451, b'4\.3\.0 /);
  } finally {
    await chattr("-i", [...files, data]);
  }
  assert.match(await python(SEND, [String(mta.port)]), /^\(250, b'2\.0\.0 Ok: queued as/);
});

Deno.test("a full disk makes a commit fail and never corrupts what is already queued", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "tern-fulldisk-" });
  const mount = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", "size=3m", "tmpfs", dir],
    stderr: "null",
  })
    .output().catch(() => null);
  if (!mount?.success) {
    await Deno.remove(dir, { recursive: true });
    await t.step({ name: "skipped: cannot mount a small tmpfs here", ignore: true, fn: () => {} });
    return;
  }
  try {
    const { KvQueue } = await import("../queue/kv_queue.ts");
    const queue = await KvQueue.open(join(dir, "queue.sqlite3"), {
      retry: [60_000],
      maxAge: 86_400_000,
    });
    const envelope = {
      reversePath: "a@x.test",
      forwardPaths: ["b@y.test"],
      body: "7BIT" as const,
      smtputf8: false,
    };
    const recipients = [{ address: "b@y.test", originalRecipient: "b@y.test", mailbox: null }];
    const kept: string[] = [];
    const body = new Uint8Array(100_000).fill(0x61);
    let refused = 0;
    for (let i = 0; i < 60 && refused === 0; i++) {
      const m = await queue.receive({
        envelope,
        recipients,
        clientAddress: "test",
        now: Date.now(),
      });
      try {
        await m.write(body);
        await m.commit();
        kept.push(m.queueId);
      } catch {
        refused++;
        await m.abort().catch(() => {});
      }
    }
    assert.equal(refused, 1, "the disk filled up");
    assert.ok(kept.length > 3);
    for (const id of kept) {
      const content = new Uint8Array(await new Response(queue.openContent(id)).arrayBuffer());
      assert.equal(content.length, body.length, `message ${id} intact`);
    }
    await queue.close();
    console.log(`full disk: ${kept.length} messages queued before ENOSPC, all intact`);
  } finally {
    await new Deno.Command("umount", { args: [dir] }).output();
    await Deno.remove(dir, { recursive: true });
  }
});
