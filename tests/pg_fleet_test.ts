// A fleet of tern nodes sharing one PostgreSQL store and one mail root:
// three `tern serve` processes on 127.0.0.2, .3 and .4. One is killed
// (SIGKILL) in the middle of deliveries it had claimed; the others take its
// messages once its leases lapse, and every acknowledged message is
// delivered exactly once. Then the database restarts (`pg_ctl restart -m
// fast`) under load: no acknowledged message is lost.
// Needs the Debian package postgresql-15.

import assert from "node:assert/strict";
import { join } from "node:path";
import { PgQueue } from "../queue/pg_queue.ts";
import { maildirHostName } from "../queue/open_queue.ts";
import type { QueuedMessage } from "../queue/types.ts";
import { LocalDelivery } from "../mda/local_delivery.ts";
import { loadConfig } from "../config/load.ts";
import { NULL_LOGGER } from "../log/logger.ts";
import { queuedReply, REPLIES, type Reply } from "../smtp/reply.ts";
import { SmtpServer } from "../smtp/server.ts";
import {
  maildirFiles,
  python,
  type ServeProcess,
  spawnServe,
  startMta,
  waitFor,
} from "./_helpers.ts";
import { startPostgres } from "./_postgres.ts";

const SEND = `
import smtplib, sys, time
host, port, prefix, count, to = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
each = len(sys.argv) > 6
s = None
for i in range(count):
    subject = "%s-%d" % (prefix, i)
    try:
        if s is None:
            s = smtplib.SMTP(host, port, timeout=30)
        s.sendmail("alice@example.net", [to], ("Subject: %s\\r\\n\\r\\nhello\\r\\n" % subject).encode())
        print("ok", subject, flush=True)
    except Exception as e:
        print("fail", subject, type(e).__name__, flush=True)
        s = None
        if not each:
            break
    if each:
        if s is not None:
            s.quit()
            s = None
        time.sleep(0.05)
if s is not None:
    s.quit()
`;

/** Sends `count` messages with subjects `prefix-i`; returns the subjects acknowledged with 250. */
async function sendMany(
  host: string,
  port: number,
  prefix: string,
  count: number,
  to: string,
  connectionEach = false,
): Promise<string[]> {
  const args = [host, String(port), prefix, String(count), to, ...(connectionEach ? ["each"] : [])];
  const out = await python(SEND, args);
  return out.split("\n").filter((l) => l.startsWith("ok ")).map((l) => l.slice(3));
}

/** How many times each subject is in a Maildir. */
async function subjectsIn(mailbox: string): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const file of await maildirFiles(mailbox)) {
    const text = new TextDecoder().decode(await Deno.readFile(file));
    const subject = /\r\nSubject: ([^\r]*)\r\n/.exec(text)?.[1] ?? "?";
    counts.set(subject, (counts.get(subject) ?? 0) + 1);
  }
  return counts;
}

/**
 * A next hop for `slow.test` whose end-of-data answers wait until the test
 * opens its gate; it counts each subject it answered 250 for. Answers held
 * before the gate opened become 451s (their clients were killed meanwhile).
 */
function gatedSink() {
  let open = false;
  let release: () => void = () => {};
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  let waiting = 0;
  const accepted = new Map<string, number>();
  const server = new SmtpServer({
    hostname: "sink.example.test",
    address: "127.0.0.1",
    port: 0,
    handlers: {
      recipient: () => REPLIES.recipientOk,
      open: () => {
        const parts: Uint8Array[] = [];
        return Promise.resolve({
          write: (chunk: Uint8Array) => {
            parts.push(chunk.slice());
            return Promise.resolve();
          },
          commit: async (): Promise<Reply> => {
            if (!open) {
              waiting++;
              await gate;
              return REPLIES.storageFailed;
            }
            const text = new TextDecoder().decode(
              new Uint8Array(parts.flatMap((p) => [...p])),
            );
            const subject = /Subject: ([^\r]*)\r\n/.exec(text)?.[1] ?? "?";
            accepted.set(subject, (accepted.get(subject) ?? 0) + 1);
            return queuedReply("S1");
          },
          abort: () => Promise.resolve(),
        });
      },
    },
  });
  return {
    server,
    accepted,
    waiting: () => waiting,
    open() {
      open = true;
      release();
    },
  };
}

async function queueCount(url: string): Promise<number> {
  const queue = await PgQueue.open(url, { retry: [60_000], maxAge: 86_400_000 });
  try {
    return await queue.count();
  } finally {
    await queue.close();
  }
}

Deno.test("pg fleet: three nodes share one store; a node killed mid-delivery loses nothing", async () => {
  await using pg = await startPostgres();
  const dir = await Deno.makeTempDir({ prefix: "tern-fleet-" });
  const sink = gatedSink();
  const { port: sinkPort } = await sink.server.listen();
  const nodes: ServeProcess[] = [];
  try {
    const mailRoot = join(dir, "mail");
    const files = await Promise.all([2, 3, 4].map(async (n) => {
      const file = join(dir, `node${n}.yaml`);
      await Deno.writeTextFile(
        file,
        `hostname: node${n}.example.test
data_dir: ./data${n}
mail_root: ${mailRoot}
listeners: [{ address: 127.0.0.${n}, port: 0, mode: mx }]
local_domains: [example.test]
relay: { routes: { slow.test: "127.0.0.1:${sinkPort}" } }
queue: { store: "${pg.url}", lease: 2s, retry: [1s] }
`,
      );
      return file;
    }));
    nodes.push(...await Promise.all(files.map((file) => spawnServe(file))));
    const [a, b, c] = nodes as [ServeProcess, ServeProcess, ServeProcess];
    const mailbox = join(mailRoot, "example.test", "bob");

    // Node b takes relay mail whose next hop does not answer yet, and local mail.
    const relayed = await sendMany("127.0.0.3", b.port, "relay", 4, "x@slow.test");
    const fromB = await sendMany("127.0.0.3", b.port, "b", 10, "bob@example.test");
    assert.equal(relayed.length, 4);
    await waitFor(() => sink.waiting() >= 1, 15_000);

    // The others take mail while b is killed in the middle of its deliveries.
    const sending = Promise.all([
      sendMany("127.0.0.2", a.port, "a", 25, "bob@example.test"),
      sendMany("127.0.0.4", c.port, "c", 25, "bob@example.test"),
    ]);
    await b.kill();
    sink.open();
    const [fromA, fromC] = await sending;
    const acknowledged = [...fromA, ...fromB, ...fromC];
    assert.equal(acknowledged.length, 60);

    // Every acknowledged message is delivered, and the queue empties.
    await waitFor(async () => {
      const delivered = await subjectsIn(mailbox);
      return acknowledged.every((s) => delivered.has(s)) &&
        relayed.every((s) => sink.accepted.has(s)) && (await queueCount(pg.url)) === 0;
    }, 30_000);
    const delivered = await subjectsIn(mailbox);
    for (const subject of acknowledged) assert.equal(delivered.get(subject), 1, subject);
    for (const subject of relayed) assert.equal(sink.accepted.get(subject), 1, subject);
    // b's claims were taken over once its leases lapsed.
    const survivors = a.log() + c.log();
    assert.match(survivors, /queue\.recovered.*lease expired/);
  } finally {
    await Promise.all(nodes.map((node) => node.kill()));
    await sink.server.close(0);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("pg store: pg_ctl restart -m fast under load loses no acknowledged message", async () => {
  await using pg = await startPostgres();
  await using t = await startMta(
    `local_domains: [example.test]\nqueue: { store: "${pg.url}", lease: 2s, retry: [1s] }\n`,
  );
  const mailbox = join(t.config.mailRoot, "example.test", "bob");
  // One connection per message, 50 ms apart: about three seconds of mail.
  const sending = sendMany("127.0.0.1", t.port, "load", 60, "bob@example.test", true);
  await waitFor(async () => (await maildirFiles(mailbox)).length >= 10, 20_000);
  await pg.restart();
  const acknowledged = await sending;
  // Those sent while the database restarted got 451 4.3.0 (the client keeps
  // them); once it was back, mail was taken again without a tern restart.
  assert.ok(acknowledged.includes("load-59"), acknowledged.join(" "));
  await waitFor(async () => {
    const delivered = await subjectsIn(mailbox);
    return acknowledged.every((s) => delivered.has(s)) && (await queueCount(pg.url)) === 0;
  }, 30_000);
  for (const [subject, count] of await subjectsIn(mailbox)) assert.equal(count, 1, subject);
});

Deno.test("pg fleet: a node taking over a dead node's claim finds the copy it wrote, not a second", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tern-fleet-maildir-" });
  try {
    const mailRoot = join(dir, "mail");
    const store = "postgres://tern@db.example.test/tern";
    const nodes = await Promise.all(["node2", "node3"].map(async (name) => {
      const file = join(dir, `${name}.yaml`);
      await Deno.writeTextFile(
        file,
        `hostname: ${name}.example.test\nmail_root: ${mailRoot}\nlocal_domains: [example.test]\n` +
          `queue: { store: "${store}" }\n`,
      );
      const config = await loadConfig({ file });
      return new LocalDelivery({
        mailRoot,
        hostname: maildirHostName(config),
        logger: NULL_LOGGER,
      });
    }));
    const bob = "bob@example.test";
    const message: QueuedMessage = {
      queueId: "0000000001ABCD",
      envelope: {
        reversePath: "a@example.net",
        forwardPaths: [bob],
        body: "7BIT",
        smtputf8: false,
      },
      recipients: [{
        address: bob,
        originalRecipient: bob,
        mailbox: bob,
        status: "queued",
        attempts: 0,
        lastAttempt: null,
        lastReply: null,
      }],
      size: 20,
      arrival: Date.now(),
      nextAttempt: Date.now(),
      held: false,
      clientAddress: "192.0.2.1",
    };
    const content = () => new Blob(["Subject: x\r\n\r\nhi\r\n"]).stream();
    // node2 wrote the copy and died before recording it; node3 recovers the claim.
    await nodes[0]!.deliver({ message, recovered: false }, [0], content);
    const again = await nodes[1]!.deliver({ message, recovered: true }, [0], content);
    assert.equal(again[0]?.reply.text, "already delivered");
    assert.equal((await maildirFiles(join(mailRoot, "example.test", "bob"))).length, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
