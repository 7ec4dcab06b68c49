// tern on a shared PostgreSQL store whose database goes away: a real SMTP
// client gets 451 4.3.0 (nothing acknowledged), /readyz says 503, and once the
// database is back tern takes mail and delivers again by itself, including
// mail another node queued meanwhile. Needs the Debian package postgresql-15.

import assert from "node:assert/strict";
import { join } from "node:path";
import { PgQueue } from "../queue/pg_queue.ts";
import { DeliveryLoop } from "../queue/delivery_loop.ts";
import { QueueUnavailableError } from "../queue/errors.ts";
import { MemoryLogger } from "../log/logger.ts";
import { python, startMta, waitFor, waitForMail } from "./_helpers.ts";
import { startPostgres } from "./_postgres.ts";

/** Sends one message; returns the final reply as `code text` (250 or the refusal). */
async function send(port: number, subject: string): Promise<string> {
  return (await python(
    `
import smtplib, sys
try:
    with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=20) as s:
        s.sendmail("alice@example.net", ["bob@example.test"],
                   ("Subject: %s\\r\\n\\r\\nhello\\r\\n" % sys.argv[2]).encode())
        print("250")
except smtplib.SMTPDataError as e:
    print(e.smtp_code, e.smtp_error.decode())
`,
    [String(port), subject],
  )).trim();
}

async function readyz(port: number): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${port}/readyz`);
  await response.body?.cancel();
  return response.status;
}

Deno.test("pg store down: 451 4.3.0 and /readyz 503; back up: mail flows again by itself", async () => {
  await using pg = await startPostgres();
  await using t = await startMta(
    // Every message through the store (local mail would go straight into its mailbox).
    `local_domains: [example.test]\nqueue: { store: "${pg.url}", deliver_at_acceptance: false }\n` +
      `admin: { address: 127.0.0.1, port: 0 }\n`,
  );
  const admin = t.mta.admin;
  assert.ok(admin);
  const mailbox = join(t.config.mailRoot, "example.test", "bob");
  assert.equal(await send(t.port, "before"), "250");
  await waitForMail(mailbox, 1);
  assert.equal(await readyz(admin.port), 200);

  await pg.stop();
  try {
    const reply = await send(t.port, "while down");
    assert.match(reply, /^451 4\.3\.0 /);
    // The probe's cached answer lapses within a second or two.
    await waitFor(async () => (await readyz(admin.port)) === 503, 10_000);
  } finally {
    await pg.start();
  }

  await waitFor(async () => (await readyz(admin.port)) === 200, 15_000);
  assert.equal(await send(t.port, "after"), "250");
  // Another node queues a message: this node's delivery loop finds it.
  const other = await PgQueue.open(pg.url, { retry: [60_000], maxAge: 86_400_000 });
  try {
    const message = await other.receive({
      envelope: {
        reversePath: "carol@example.net",
        forwardPaths: ["bob@example.test"],
        body: "7BIT",
        smtputf8: false,
      },
      recipients: [{
        address: "bob@example.test",
        originalRecipient: "bob@example.test",
        mailbox: "bob@example.test",
      }],
      clientAddress: "local",
      now: Date.now(),
    });
    await message.write(new TextEncoder().encode("Subject: from another node\r\n\r\nhi\r\n"));
    await message.commit();
  } finally {
    await other.close();
  }
  const mail = await waitForMail(mailbox, 3, 15_000);
  const subjects = mail.map((m) => /Subject: ([^\r]*)/.exec(new TextDecoder().decode(m))?.[1]);
  assert.deepEqual(subjects.sort(), ["after", "before", "from another node"]);
  // While it was down, the delivery loop said why it could not claim.
  assert.ok(
    t.logger.records.some((r) =>
      r.event === "queue.error" && /queue store is unavailable/.test(String(r.fields.error))
    ),
  );
});

Deno.test("the delivery loop backs off while the store cannot be read, and resumes at once when woken", async () => {
  let calls = 0;
  let down = true;
  const claimed: string[] = [];
  const queue = {
    leaseMs: 60_000,
    inMemoryContentLimit: 0,
    claimDue: () => {
      calls++;
      if (down) return Promise.reject(new QueueUnavailableError("Cannot claim: down"));
      claimed.push("poll");
      return Promise.resolve([]);
    },
    renewLease: () => Promise.resolve(true),
    isClaimCurrent: () => Promise.resolve(true),
    unclaim: () => Promise.resolve(true),
    openContent: () => new ReadableStream<Uint8Array>(),
    recordAttempt: () => Promise.resolve(null),
  };
  const logger = new MemoryLogger();
  const loop = new DeliveryLoop(queue, {
    concurrency: 1,
    pollMs: 20,
    logger,
    deliver: () => Promise.resolve([]),
  });
  loop.start();
  try {
    // Without a backoff, 1.5 s of 20 ms polls is 75 tries and 75 error lines.
    await new Promise((r) => setTimeout(r, 1_500));
    assert.ok(calls >= 3, `tried ${calls} times`);
    assert.ok(calls <= 12, `tried ${calls} times in 1.5 s: no backoff`);
    // A wake-up (a commit here, a NOTIFY from another node) tries at once.
    down = false;
    loop.wake();
    await waitFor(() => claimed.length > 0, 2_000);
  } finally {
    await loop.stop();
  }
});
