// The mx listeners' sessions in worker threads (`workers`): every message
// still goes through the one store on the main thread before its 250, the
// connection limits hold for the port as a whole, a reload reaches the
// workers, and their log lines and metrics come out of the main thread.
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadConfig } from "../config/load.ts";
import { Mta } from "../mta/mta.ts";
import { MemoryLogger } from "../log/logger.ts";
import { python, spawnServe, tempConfig, waitFor, waitForMail } from "./_helpers.ts";

const CONFIG = `
listeners: [{ address: 127.0.0.1, port: 0, mode: mx }]
local_domains: [example.test]
accounts:
  bob@example.test: {}
admin: { address: 127.0.0.1, port: 0 }
workers: 2
`;

/** Sends `perSession` messages in each of `sessions` sessions at once; a 1.5 MiB one in the first. */
const SEND = `
import smtplib, sys, threading
port, sessions, per = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
big = "x" * 76 + "\\r\\n"
errors = []
def run(n):
    try:
        with smtplib.SMTP("127.0.0.1", port) as s:
            for i in range(per):
                body = big * 20000 if n == 0 and i == 0 else f"message {n}.{i}\\r\\n"
                s.sendmail("a@example.org", ["bob@example.test"], f"Subject: {n}.{i}\\r\\n\\r\\n{body}")
    except Exception as e:
        errors.append(repr(e))
threads = [threading.Thread(target=run, args=(n,)) for n in range(sessions)]
for t in threads: t.start()
for t in threads: t.join()
print("errors", len(errors), errors[:3])
`;

Deno.test("sessions in two workers: every message stored and delivered, logged and counted by the main thread", async () => {
  const { dir, config } = await tempConfig(CONFIG);
  const logger = new MemoryLogger();
  const mta = await Mta.start(config, { logger, pollMs: 200 });
  try {
    const port = mta.listeners[0]!.port;
    const out = await python(SEND, [String(port), "12", "3"]);
    assert.match(out, /^errors 0 /);
    const mailbox = join(dir, "data", "mail", "example.test", "bob");
    const mail = await waitForMail(mailbox, 36, 20_000);
    assert.equal(mail.length, 36);
    // The large message came through the pieces intact.
    const big = mail.find((m) => m.length > 1_000_000);
    assert.ok(big !== undefined, "the 1.5 MiB message is there");
    const text = new TextDecoder().decode(big);
    assert.equal(text.split("x".repeat(76) + "\r\n").length - 1, 20_000);
    // Sessions ran in both workers; their lines reached the main thread's logger.
    const sessions = logger.records.filter((l) => l.event === "session.connect");
    const threads = new Set(sessions.map((l) => String(l.fields.session).slice(0, 2)));
    assert.deepEqual([...threads].sort(), ["W1", "W2"]);
    const accepted = logger.records.filter((l) => l.event === "message.accepted");
    assert.equal(accepted.length, 36);
    // Acceptance is logged before the delivery of the same message.
    for (const a of accepted) {
      const acceptedAt = logger.records.indexOf(a);
      const sentAt = logger.records.findIndex((l) =>
        l.event === "delivery.sent" && l.queueId === a.queueId
      );
      assert.ok(sentAt > acceptedAt, `${a.queueId}: delivered after it was accepted`);
    }
    // The workers' counts are in the main thread's /metrics, fresh when it is read.
    const metrics = await (await fetch(`http://127.0.0.1:${mta.admin!.port}/metrics`)).text();
    const count = (name: string) =>
      Number(metrics.split("\n").find((l) => l.startsWith(name + " "))?.split(" ")[1]);
    assert.equal(count("tern_messages_accepted_total"), 36);
  } finally {
    await mta.stop(1000);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("max_connections_per_ip holds for the port, whichever worker a connection lands on", async () => {
  const { dir, config } = await tempConfig(`${CONFIG}limits: { max_connections_per_ip: 4 }\n`);
  const mta = await Mta.start(config, { logger: new MemoryLogger() });
  const open: Deno.TcpConn[] = [];
  const banner = async (conn: Deno.TcpConn) => {
    const buffer = new Uint8Array(512);
    const n = await conn.read(buffer);
    return new TextDecoder().decode(buffer.subarray(0, n ?? 0));
  };
  try {
    const port = mta.listeners[0]!.port;
    for (let i = 0; i < 4; i++) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      open.push(conn);
      assert.match(await banner(conn), /^220 /);
    }
    // Several tries: the kernel spreads them over both workers.
    for (let i = 0; i < 6; i++) {
      const extra = await Deno.connect({ hostname: "127.0.0.1", port });
      assert.match(await banner(extra), /^421 4\.7\.0 /);
      extra.close();
    }
    open.pop()!.close();
    const again = await waitFor(async () => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      const said = await banner(conn);
      if (said.startsWith("220 ")) return conn;
      conn.close();
      return undefined;
    });
    open.push(again);
  } finally {
    for (const c of open) c.close();
    await mta.stop(1000);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a reload reaches the workers: a new account is taken by their next RCPT", async () => {
  const { dir, file, config } = await tempConfig(CONFIG);
  const mta = await Mta.start(config, { logger: new MemoryLogger() });
  const rcpt = `
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1])) as s:
    s.ehlo("client.example.org")
    s.mail("a@example.org")
    print(s.rcpt("carol@example.test")[0])
`;
  try {
    const port = String(mta.listeners[0]!.port);
    // Several sessions, so both workers answer.
    for (let i = 0; i < 4; i++) assert.equal((await python(rcpt, [port])).trim(), "550");
    const text = await Deno.readTextFile(file);
    await Deno.writeTextFile(
      file,
      text.replace("bob@example.test: {}", "bob@example.test: {}\n  carol@example.test: {}"),
    );
    await mta.reload(await loadConfig({ file }));
    for (let i = 0; i < 4; i++) assert.equal((await python(rcpt, [port])).trim(), "250");
  } finally {
    await mta.stop(1000);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("workers: 0 serves every session on the main thread", async () => {
  const { dir, config } = await tempConfig(CONFIG.replace("workers: 2", "workers: 0"));
  const logger = new MemoryLogger();
  const mta = await Mta.start(config, { logger });
  try {
    const out = await python(SEND, [String(mta.listeners[0]!.port), "2", "1"]);
    assert.match(out, /^errors 0 /);
    const sessions = logger.records.filter((l) => l.event === "session.connect");
    assert.equal(sessions.length, 2);
    assert.ok(sessions.every((l) => !String(l.fields.session).startsWith("W")));
  } finally {
    await mta.stop(1000);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("tern serve: workers write their own lines to stderr, in order with the main thread's, and follow a reload", async () => {
  // Queued, not delivered at acceptance: the main thread delivers and logs
  // delivery.sent, so the two threads' lines meet in one stream.
  const body = CONFIG.replace("admin: { address: 127.0.0.1, port: 0 }\n", "") +
    "queue: { deliver_at_acceptance: false }\nlog: { level: debug }\n";
  const { dir, file } = await tempConfig(body);
  const serve = await spawnServe(file);
  try {
    const port = String(serve.port);
    assert.match(await python(SEND, [port, "8", "2"]), /^errors 0 /);
    const mailbox = join(dir, "data", "mail", "example.test", "bob");
    await waitForMail(mailbox, 16, 20_000);
    await waitFor(() => (serve.log().match(/ delivery\.sent /g) ?? []).length >= 16 || undefined);
    const lines = serve.log().split("\n");
    const connects = lines.filter((l) => / session\.connect /.test(l));
    const threads = new Set(connects.map((l) => /session=(W\d)/.exec(l)?.[1] ?? "main"));
    assert.deepEqual([...threads].sort(), ["W1", "W2"]);
    const accepted = lines.filter((l) => / message\.accepted /.test(l));
    assert.equal(accepted.length, 16, "each acceptance written once");
    for (const line of accepted) {
      const id = line.split(" ")[2]!;
      const at = lines.indexOf(line);
      const sent = lines.findIndex((l) => l.includes(` ${id} delivery.sent `));
      assert.ok(sent > at, `${id}: delivered after the line of its acceptance`);
    }
    // A reload to info reaches the workers' own loggers: their debug lines stop, the rest go on.
    await Deno.writeTextFile(
      file,
      (await Deno.readTextFile(file)).replace("level: debug", "level: info"),
    );
    serve.child.kill("SIGHUP");
    await waitFor(() => / config\.reloaded /.test(serve.log()) || undefined);
    const before = serve.log().length;
    assert.match(await python(SEND, [port, "4", "1"]), /^errors 0 /);
    await waitForMail(mailbox, 20, 20_000);
    const after = () => serve.log().slice(before);
    await waitFor(() => (after().match(/ delivery\.sent /g) ?? []).length >= 4 || undefined);
    assert.doesNotMatch(after(), / session\.connect /);
    assert.equal((after().match(/ message\.accepted /g) ?? []).length, 4);
  } finally {
    assert.equal(await serve.stop(), 0);
    await Deno.remove(dir, { recursive: true });
  }
});
