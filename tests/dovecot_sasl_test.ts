// AUTH on a submission listener checked by a real Dovecot's auth service
// (`submission.auth: dovecot:...`), as Postfix's smtpd_sasl_type = dovecot:
// PLAIN and LOGIN with the right and a wrong password, the user Dovecot
// names standing for the session (sender ownership), Dovecot's TCP auth
// listener, and Dovecot stopped or silent: 454 4.7.0, never a login.

import assert from "node:assert/strict";
import net from "node:net";
import { MemoryLogger } from "../log/logger.ts";
import { Mta } from "../mta/mta.ts";
import {
  askDovecot,
  authenticateWithDovecot,
  authLine,
  DovecotUnavailableError,
  readVerdict,
} from "../mta/dovecot_auth.ts";
import { python, tempConfig } from "./_helpers.ts";
import { CERT, plainResponse } from "./_tls.ts";
import { DOVECOT_USERS, startDovecot } from "./_dovecot.ts";

const [ALICE] = DOVECOT_USERS;

/**
 * Runs commands over STARTTLS on a submission port with smtplib, after EHLO;
 * returns each reply as "code text".
 */
async function session(port: number, commands: string[]): Promise<string[]> {
  const out = await python(
    `
import smtplib, ssl, sys, json
port, cafile, commands = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
s = smtplib.SMTP("127.0.0.1", port, timeout=30)
s.starttls(context=ssl.create_default_context(cafile=cafile))
s.ehlo("client.example.test")
replies = []
for c in commands:
    code, text = s.docmd(c)
    replies.append(f"{code} {text.decode()}")
    if code == 421:
        break
try:
    s.quit()
except Exception:
    pass
print(json.dumps(replies))
`,
    [String(port), CERT.cert, JSON.stringify(commands)],
  );
  return JSON.parse(out) as string[];
}

const b64 = (text: string): string => btoa(String.fromCharCode(...new TextEncoder().encode(text)));

Deno.test("submission AUTH checked by Dovecot's auth service", async (t) => {
  await using dovecot = await startDovecot();
  const { dir, config } = await tempConfig(`
listeners:
  - { address: 127.0.0.1, port: 0, mode: submission }
tls: { cert: "${CERT.cert}", key: "${CERT.key}" }
local_domains: [example.test]
submission: { auth: "dovecot:${dovecot.authSocket}" }
limits: { auth_failure_delay: 0s }
`);
  const logger = new MemoryLogger();
  const mta = await Mta.start(config, { logger, pollMs: 200 });
  const port = mta.listeners[0]!.port;
  try {
    await t.step("AUTH PLAIN: the right password logs in, a wrong one is refused", async () => {
      const good = await session(port, [
        `AUTH PLAIN ${plainResponse(ALICE!.address, ALICE!.password)}`,
        "MAIL FROM:<alice@example.test>",
      ]);
      assert.match(good[0]!, /^235 2\.7\.0/);
      assert.match(good[1]!, /^250 /);
      const bad = await session(port, [`AUTH PLAIN ${plainResponse(ALICE!.address, "wrong")}`]);
      assert.match(bad[0]!, /^535 5\.7\.8/);
    });

    await t.step("AUTH LOGIN: the right password logs in, a wrong one is refused", async () => {
      const good = await session(port, [
        "AUTH LOGIN",
        b64(ALICE!.address),
        b64(ALICE!.password),
      ]);
      assert.match(good[0]!, /^334 /);
      assert.match(good[2]!, /^235 2\.7\.0/);
      const bad = await session(port, ["AUTH LOGIN", b64(ALICE!.address), b64("nope")]);
      assert.match(bad[2]!, /^535 5\.7\.8/);
    });

    await t.step("the user Dovecot names is the one whose addresses may be sent from", async () => {
      // auth_default_realm: "alice" logs in as alice@example.test.
      const replies = await session(port, [
        `AUTH PLAIN ${plainResponse("alice", ALICE!.password)}`,
        "MAIL FROM:<alice@example.test>",
        "RSET",
        "MAIL FROM:<bob@example.test>",
      ]);
      assert.match(replies[0]!, /^235 /);
      assert.match(replies[1]!, /^250 /, "alice@example.test is Dovecot's user: her own address");
      assert.match(replies[3]!, /^553 5\.7\.1/, "bob's address is not hers");
      const auth = logger.records.filter((r) => r.event === "session.auth");
      assert.ok(auth.some((r) => r.fields.user === "alice@example.test"), JSON.stringify(auth));
    });

    await t.step("Dovecot stopped: 454 4.7.0, never a login, not counted", async () => {
      await dovecot.stop();
      // More than max_auth_failures (5) tries: a temporary failure is not a strike.
      const login = `AUTH PLAIN ${plainResponse(ALICE!.address, ALICE!.password)}`;
      const replies = await session(port, Array(6).fill(login));
      assert.equal(replies.length, 6);
      for (const reply of replies) assert.match(reply, /^454 4\.7\.0/);
      const errors = logger.records.filter((r) => r.event === "session.error");
      assert.ok(errors.some((r) => String(r.fields.error).includes("Dovecot auth at")));
      await dovecot.start();
      const again = await session(port, [
        `AUTH PLAIN ${plainResponse(ALICE!.address, ALICE!.password)}`,
      ]);
      assert.match(again[0]!, /^235 /);
    });
  } finally {
    await mta.stop(1000);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Dovecot's auth service over TCP, and one that never answers", async () => {
  await using dovecot = await startDovecot();
  const endpoint = { host: "127.0.0.1", port: dovecot.authPort };
  const credentials = {
    mechanism: "LOGIN" as const,
    authorizationId: "",
    username: ALICE!.address,
    password: ALICE!.password,
  };
  const ok = await authenticateWithDovecot(endpoint, credentials, { secured: true });
  assert.equal(ok.code, 235);
  assert.equal(ok.user, "alice@example.test");
  const refused = await authenticateWithDovecot(endpoint, { ...credentials, password: "x" }, {
    secured: true,
  });
  assert.equal(refused.code, 535);

  // A socket that takes the connection and says nothing: a bounded wait.
  const accepted: net.Socket[] = [];
  const silent = net.createServer((socket) => void accepted.push(socket));
  await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
  const port = (silent.address() as net.AddressInfo).port;
  try {
    await assert.rejects(
      askDovecot({ host: "127.0.0.1", port }, { credentials, secured: true }, 300),
      (error: unknown) =>
        error instanceof DovecotUnavailableError && /no answer/.test(error.message),
    );
  } finally {
    for (const socket of accepted) socket.destroy();
    await new Promise<void>((resolve) => silent.close(() => resolve()));
  }
});

Deno.test("Dovecot's answers: OK names the user, FAIL with temp is temporary", () => {
  assert.deepEqual(readVerdict("OK\t7\tuser=al\x01tice@example.test", 7), {
    ok: true,
    user: "al\tice@example.test",
  });
  assert.deepEqual(readVerdict("FAIL\t7\tuser=alice\ttemp\treason=db down", 7), {
    ok: false,
    temporary: true,
    reason: "db down",
  });
  assert.deepEqual(readVerdict("FAIL\t7", 7), { ok: false, temporary: false, reason: null });
  assert.equal(readVerdict("OK\t8\tuser=x", 7), null, "another request's answer");
  assert.throws(() => readVerdict("CONT\t7\tabc", 7), DovecotUnavailableError);
  assert.throws(() => readVerdict("OK\t7", 7), DovecotUnavailableError);
  // A tab or newline in a field cannot split the request line.
  const line = authLine(1, {
    credentials: { mechanism: "PLAIN", authorizationId: "", username: "a", password: "b" },
    secured: false,
    remoteAddress: "x\ty\nz",
  });
  assert.equal(line.split("\n").length, 1);
  assert.ok(line.includes("rip=x\x01ty\x01nz"));
});
