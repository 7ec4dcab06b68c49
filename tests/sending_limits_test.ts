// Per-account sending limits on a submissions listener (implicit TLS, AUTH):
// past the message limit MAIL gets 451 4.7.1, past the recipient limit RCPT
// does; the messages before the limit are delivered, and another account
// is not affected.
import assert from "node:assert/strict";
import { hashPassword } from "../config/password.ts";
import { MemoryLogger } from "../log/logger.ts";
import { Mta } from "../mta/mta.ts";
import { tempConfig, waitForMail } from "./_helpers.ts";
import { CERT, plainResponse, TestClient } from "./_tls.ts";

const PASSWORD = "correct horse";
const HASH = await hashPassword(PASSWORD);

async function startSubmissions(limits: string) {
  const { dir, config } = await tempConfig(`
listeners:
  - { address: 127.0.0.1, port: 0, mode: submissions }
tls: { cert: "${CERT.cert}", key: "${CERT.key}" }
local_domains: [example.test]
accounts:
  alice@example.test: { password: "${HASH}" }
  bob@example.test: { password: "${HASH}" }
  carol@example.test: {}
limits: { ${limits} }
`);
  const logger = new MemoryLogger();
  const mta = await Mta.start(config, { logger, pollMs: 200 });
  return {
    port: mta.listeners[0]!.port,
    dir,
    logger,
    async [Symbol.asyncDispose]() {
      await mta.stop(1000);
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** A logged-in session. */
async function login(port: number, user: string): Promise<TestClient> {
  const c = await TestClient.connect(port, { implicitTls: true });
  await c.command("EHLO client.test");
  const r = await c.command(`AUTH PLAIN ${plainResponse(user, PASSWORD)}`);
  assert.match(r!, /^235 /);
  return c;
}

/** One message to `to`; returns the first refusal, or the final reply. */
async function send(c: TestClient, from: string, to: string[]): Promise<string> {
  const mail = (await c.command(`MAIL FROM:<${from}>`))!;
  if (!mail.startsWith("250")) return mail;
  for (const rcpt of to) {
    const r = (await c.command(`RCPT TO:<${rcpt}>`))!;
    if (!r.startsWith("250")) {
      await c.command("RSET");
      return r;
    }
  }
  assert.match((await c.command("DATA"))!, /^354 /);
  return (await c.command("Subject: hi\r\n\r\nhello\r\n."))!;
}

Deno.test("user_messages_per_hour: 3 messages go, the 4th gets 451 4.7.1 at MAIL; another account is unaffected", async () => {
  await using t = await startSubmissions("user_messages_per_hour: 3");
  const alice = await login(t.port, "alice@example.test");
  try {
    for (let i = 0; i < 3; i++) {
      assert.match(await send(alice, "alice@example.test", ["carol@example.test"]), /^250 /);
    }
    assert.match(
      await send(alice, "alice@example.test", ["carol@example.test"]),
      /^451 4\.7\.1 Sending limit reached: 3 messages per hour/,
    );
  } finally {
    alice.close();
  }
  const bob = await login(t.port, "bob@example.test");
  try {
    assert.match(await send(bob, "bob@example.test", ["carol@example.test"]), /^250 /);
  } finally {
    bob.close();
  }
  await waitForMail(`${t.dir}/data/mail/example.test/carol`, 4);
  const limited = t.logger.records.filter((r) => r.event === "submission.limited");
  assert.equal(limited.length, 1);
  assert.deepEqual(
    [limited[0]!.fields.user, limited[0]!.fields.limit, limited[0]!.fields.used],
    ["alice@example.test", "messages_per_hour", 3],
  );
  assert.ok(
    t.logger.records.some((r) =>
      r.event === "message.rejected" && r.fields.stage === "mail" && r.fields.code === 451
    ),
  );
});

Deno.test("user_recipients_per_day: 5 recipients go, the 6th gets 451 4.7.1 at RCPT", async () => {
  await using t = await startSubmissions("user_recipients_per_day: 5");
  const alice = await login(t.port, "alice@example.test");
  const to = (n: number) => Array.from({ length: n }, (_, i) => `carol+${i}@example.test`);
  try {
    assert.match(await send(alice, "alice@example.test", to(3)), /^250 /);
    // Two more fit; the sixth recipient of the day, in the same transaction, does not.
    assert.match((await alice.command("MAIL FROM:<alice@example.test>"))!, /^250 /);
    assert.match((await alice.command("RCPT TO:<carol+a@example.test>"))!, /^250 /);
    assert.match((await alice.command("RCPT TO:<carol+b@example.test>"))!, /^250 /);
    assert.match(
      (await alice.command("RCPT TO:<carol+c@example.test>"))!,
      /^451 4\.7\.1 Sending limit reached: 5 recipients per day/,
    );
    // The message goes to the two accepted.
    assert.match((await alice.command("DATA"))!, /^354 /);
    assert.match((await alice.command("Subject: hi\r\n\r\nhello\r\n."))!, /^250 /);
    assert.match(await send(alice, "alice@example.test", to(1)), /^451 4\.7\.1 /);
  } finally {
    alice.close();
  }
  const bob = await login(t.port, "bob@example.test");
  try {
    assert.match(await send(bob, "bob@example.test", to(5)), /^250 /);
  } finally {
    bob.close();
  }
  const limited = t.logger.records.filter((r) => r.event === "submission.limited");
  assert.deepEqual(
    limited.map((r) => [r.fields.user, r.fields.limit, r.fields.used]),
    [
      ["alice@example.test", "recipients_per_day", 5],
      ["alice@example.test", "recipients_per_day", 5],
    ],
  );
});
