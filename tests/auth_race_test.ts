// AUTH under parallel attempts, over real TLS sockets: the limiter counts an
// attempt before its password is checked (per client address and per
// account), and password checks wait their turn, so neither a burst from one
// address nor a burst spread over many addresses gets more guesses than the
// limit, and memory stays flat whatever the number of attempts.
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import net from "node:net";
import tls from "node:tls";
import { hashPassword } from "../config/password.ts";
import { MemoryLogger } from "../log/logger.ts";
import { Mta } from "../mta/mta.ts";
import { python, spawnServe, tempConfig } from "./_helpers.ts";
import { CERT, plainResponse } from "./_tls.ts";

const PASSWORD = "right horse battery";
const HASH = await hashPassword(PASSWORD);

/**
 * A TLS client that may choose its own loopback source address (the whole of
 * 127.0.0.0/8 is local on Linux), so one test can play many clients.
 */
class RaceClient {
  #socket: tls.TLSSocket;
  #buffer = "";
  #closed = false;
  #wake: (() => void) | null = null;

  private constructor(socket: tls.TLSSocket) {
    this.#socket = socket;
    socket.setEncoding("utf8");
    socket.on("data", (text: string) => {
      this.#buffer += text;
      this.#notify();
    });
    socket.on("close", () => {
      this.#closed = true;
      this.#notify();
    });
    socket.on("error", () => {
      this.#closed = true;
      this.#notify();
    });
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  /** Connects with implicit TLS from `from`, and reads the banner. */
  static async connect(port: number, from = "127.0.0.1"): Promise<RaceClient> {
    const socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const tcp = net.connect({ host: "127.0.0.1", port, localAddress: from });
      const s = tls.connect(
        { socket: tcp, ca: [CERT.pem], servername: "localhost" },
        () => resolve(s),
      );
      tcp.once("error", reject);
      s.once("error", reject);
    });
    const client = new RaceClient(socket);
    const banner = await client.reply();
    if (!banner?.startsWith("220 ")) throw new Error(`No banner from ${from}: ${banner}`);
    return client;
  }

  /** One whole reply, or `null` once the server has closed. */
  async reply(ms = 20_000): Promise<string | null> {
    const deadline = Date.now() + ms;
    while (true) {
      const m = /^(?:\d{3}-[^\r]*\r\n)*\d{3}(?: [^\r]*)?\r\n/.exec(this.#buffer);
      if (m) {
        this.#buffer = this.#buffer.slice(m[0].length);
        return m[0];
      }
      if (this.#closed) return null;
      if (Date.now() >= deadline) throw new Error(`No reply in time; so far: ${this.#buffer}`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        timer = setTimeout(resolve, Math.max(0, deadline - Date.now()));
      });
      clearTimeout(timer);
    }
  }

  /** Sends one line without waiting for its reply. */
  send(line: string): void {
    this.#socket.write(Buffer.from(`${line}\r\n`, "utf8"));
  }

  /** Sends one line and reads its reply. */
  command(line: string): Promise<string | null> {
    this.send(line);
    return this.reply();
  }

  close(): void {
    this.#socket.destroy();
  }
}

/** AUTH PLAIN for a user and password. */
function authLine(user: string, password: string): string {
  return `AUTH PLAIN ${plainResponse(user, password)}`;
}

/** Opens `count` sessions (from the given addresses), each past EHLO. */
async function openSessions(
  port: number,
  count: number,
  from: (i: number) => string = () => "127.0.0.1",
): Promise<RaceClient[]> {
  const clients = await Promise.all(
    Array.from({ length: count }, (_, i) => RaceClient.connect(port, from(i))),
  );
  await Promise.all(clients.map((c) => c.command("EHLO race.test")));
  return clients;
}

/**
 * Sends every AUTH line at once (all sessions are ready first, so the lines
 * reach the server together), and returns the first reply to each.
 */
async function authAtOnce(clients: RaceClient[], lines: string[]): Promise<string[]> {
  clients.forEach((c, i) => c.send(lines[i]!));
  // Generous: on a busy machine one password check can take most of a second.
  const first = (c: RaceClient) => c.reply(120_000);
  return await Promise.all(clients.map(async (c) => (await first(c))?.slice(0, 3) ?? "closed"));
}

function tally(codes: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const code of codes) counts[code] = (counts[code] ?? 0) + 1;
  return counts;
}

interface Running {
  port: number;
  logger: MemoryLogger;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * A submissions listener on loopback. Loopback is trusted by default, and
 * trusted clients are counted per account only: `trusted` says which networks
 * to trust instead (none by default here, so addresses are counted).
 */
async function startSubmissions(limits: string, trusted = "[]"): Promise<Running> {
  const { dir, config } = await tempConfig(`
listeners:
  - { address: 127.0.0.1, port: 0, mode: submissions }
tls: { cert: "${CERT.cert}", key: "${CERT.key}" }
local_domains: [example.test]
accounts:
  alice@example.test: { password: "${HASH}" }
  bob@example.test: { password: "${HASH}" }
limits: { greeting_delay: 0s, max_connections_per_ip: 100, ${limits} }
relay: { trusted_networks: ${trusted} }
`);
  const logger = new MemoryLogger();
  const mta = await Mta.start(config, { logger, pollMs: 200 });
  return {
    port: mta.listeners[0]!.port,
    logger,
    async [Symbol.asyncDispose]() {
      await mta.stop(1000);
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** How many AUTH attempts had their password checked, by the logs. */
function checkedAttempts(logger: MemoryLogger): number {
  return logger.records.filter((r) =>
    r.event === "session.auth" && (r.fields.result === "failed" || r.fields.result === "succeeded")
  ).length;
}

Deno.test("40 parallel AUTH from one address: at most max_auth_failures are checked, the rest refused unchecked", async () => {
  await using t = await startSubmissions("max_auth_failures: 5, auth_failure_delay: 10ms");
  const clients = await openSessions(t.port, 40);
  try {
    // All wrong: a right password among the first five checked would rightly
    // succeed and take its attempt back, leaving the address unlocked.
    const lines = clients.map((_, i) => authLine("alice@example.test", `guess ${i}`));
    const codes = await authAtOnce(clients, lines);
    const counts = tally(codes);
    const checked = counts["535"] ?? 0;
    assert.equal(counts["235"], undefined, JSON.stringify(counts));
    assert.ok(checked <= 5, `${checked} attempts checked: ${JSON.stringify(counts)}`);
    assert.equal(counts["421"], 40 - checked, JSON.stringify(counts));
    assert.ok(checkedAttempts(t.logger) <= 5, "the logs agree");
  } finally {
    clients.forEach((c) => c.close());
  }
  // Locked out now: the right password is refused unchecked, and the session closed.
  const [late] = await openSessions(t.port, 1);
  try {
    assert.match((await late!.command(authLine("alice@example.test", PASSWORD)))!, /^421 4\.7\.0 /);
    assert.equal(await late!.reply(), null);
  } finally {
    late!.close();
  }
});

Deno.test("a guesser spread over many addresses is stopped at the account, and the account's owner with it", async () => {
  // Per address 3; per account twice that: 6.
  await using t = await startSubmissions("max_auth_failures: 3, auth_failure_delay: 10ms");
  const clients = await openSessions(t.port, 16, (i) => `127.0.0.${10 + i}`);
  try {
    const codes = await authAtOnce(
      clients,
      clients.map((_, i) => authLine("ALICE@example.test", `guess ${i}`)),
    );
    assert.deepEqual(new Set(codes), new Set(["535"]), "each address failed once, no lockout");
    assert.ok(checkedAttempts(t.logger) <= 6, `${checkedAttempts(t.logger)} checked`);
  } finally {
    clients.forEach((c) => c.close());
  }
  // A fresh address with the right password: the account is locked, so it is
  // refused like a wrong password, unchecked; the session stays open.
  const [owner] = await openSessions(t.port, 1, () => "127.0.0.200");
  try {
    assert.match(
      (await owner!.command(authLine("alice@example.test", PASSWORD)))!,
      /^535 5\.7\.8 /,
    );
    assert.match((await owner!.command("NOOP"))!, /^250 /);
  } finally {
    owner!.close();
  }
  assert.ok(
    t.logger.records.some((r) => r.event === "session.auth" && r.fields.result === "locked"),
  );
  // Nothing secret in the logs.
  const log = JSON.stringify(t.logger.records);
  assert.ok(!log.includes(PASSWORD) && !log.includes("guess"));
});

Deno.test("a trusted client failing at one account locks that account only, not its address", async () => {
  // Per address 2, per account 4; 127.0.0.2 is trusted, like a webmail on the same host.
  await using t = await startSubmissions(
    "max_auth_failures: 2, auth_failure_delay: 10ms",
    "[127.0.0.2/32]",
  );
  const webmail = () => openSessions(t.port, 1, () => "127.0.0.2").then(([c]) => c!);
  const failed: string[] = [];
  for (let i = 0; i < 6; i++) {
    const c = await webmail();
    try {
      failed.push((await c.command(authLine("alice@example.test", `guess ${i}`)))!.slice(0, 3));
      // Never disconnected for its address: the session goes on.
      assert.match((await c.command("NOOP"))!, /^250 /);
    } finally {
      c.close();
    }
  }
  assert.deepEqual(failed, ["535", "535", "535", "535", "535", "535"]);
  // Another user of the same webmail, same address, another account: let in.
  const bob = await webmail();
  try {
    assert.match((await bob.command(authLine("bob@example.test", PASSWORD)))!, /^235 /);
  } finally {
    bob.close();
  }
  // The account tried is locked all the same, from the webmail as from anywhere.
  const alice = await webmail();
  try {
    assert.match((await alice.command(authLine("alice@example.test", PASSWORD)))!, /^535 /);
  } finally {
    alice.close();
  }
  assert.ok(checkedAttempts(t.logger) <= 5, `${checkedAttempts(t.logger)} checked`);
  assert.ok(
    t.logger.records.some((r) => r.event === "session.auth" && r.fields.result === "locked"),
  );
  // An untrusted address is still counted as a whole: 127.0.0.3 is disconnected at 2.
  const [stranger] = await openSessions(t.port, 1, () => "127.0.0.3");
  try {
    assert.match((await stranger!.command(authLine("bob@example.test", "guess a")))!, /^535 /);
    assert.match((await stranger!.command(authLine("bob@example.test", "guess b")))!, /^535 /);
    assert.match((await stranger!.reply())!, /^421 4\.7\.0 /);
  } finally {
    stranger!.close();
  }
});

/** Python's smtplib login() with a wrong password from `from`: its AUTH lines and the error. */
const SMTPLIB_LOGIN = `
import smtplib, ssl, sys
port, cafile, source = int(sys.argv[1]), sys.argv[2], sys.argv[3]
context = ssl.create_default_context(cafile=cafile)
with smtplib.SMTP_SSL("127.0.0.1", port, context=context, source_address=(source, 0)) as s:
    s.ehlo("py.test")
    try:
        s.login("alice@example.test", "wrong password")
        print("logged in")
    except smtplib.SMTPAuthenticationError as e:
        print(e.smtp_code)
`;

for (const trusted of [false, true]) {
  Deno.test(
    `smtplib login() trying PLAIN then LOGIN with one wrong password counts one failure (${
      trusted ? "trusted" : "untrusted"
    } client)`,
    async () => {
      await using t = await startSubmissions(
        "max_auth_failures: 3, auth_failure_delay: 10ms",
        trusted ? "[127.0.0.2/32]" : "[]",
      );
      const run = () => python(SMTPLIB_LOGIN, [String(t.port), CERT.cert, "127.0.0.2"]);
      assert.equal((await run()).trim(), "535");
      const failures = t.logger.records.filter((r) =>
        r.event === "session.auth" && r.fields.result === "failed"
      );
      // Both mechanisms were tried and refused, and counted as one failure.
      assert.deepEqual(failures.map((r) => r.fields.mechanism), ["PLAIN", "LOGIN"]);
      for (const r of failures) {
        assert.equal(r.fields.failures, trusted ? 0 : 1);
        assert.equal(r.fields.account_failures, 1);
      }
      // Two more logins: three failures in all, so an untrusted address is locked
      // only now (counting each mechanism would have locked it in the second).
      assert.equal((await run()).trim(), "535");
      const last = t.logger.records.filter((r) =>
        r.event === "session.auth" && r.fields.result === "failed"
      ).at(-1)!;
      assert.equal(last.fields.account_failures, 2);
      const log = JSON.stringify(t.logger.records);
      assert.ok(!log.includes("wrong password"));
    },
  );
}

/** The peak resident set of a process so far, in bytes (Linux). */
async function peakRss(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const kb = /^VmHWM:\s+(\d+) kB$/m.exec(status)?.[1];
  if (kb === undefined) throw new Error(`No VmHWM in /proc/${pid}/status`);
  return Number(kb) * 1024;
}

Deno.test({
  name: "60 parallel AUTH from 60 addresses at unknown users: tern serve's memory stays flat",
  ignore: Deno.build.os !== "linux",
  async fn() {
    // Default limits per address and account: each client and user is new, so
    // only the hashing queue stands between 60 checks and 60 × 32 MiB.
    const { dir, file } = await tempConfig(`
listeners:
  - { address: 127.0.0.1, port: 0, mode: submissions }
tls: { cert: "${CERT.cert}", key: "${CERT.key}" }
local_domains: [example.test]
accounts:
  alice@example.test: { password: "${HASH}" }
limits: { greeting_delay: 0s, auth_failure_delay: 0s }
`);
    const serve = await spawnServe(file);
    try {
      const clients = await openSessions(serve.port, 60, (i) => `127.0.1.${1 + i}`);
      const before = await peakRss(serve.child.pid);
      try {
        const codes = await authAtOnce(
          clients,
          clients.map((_, i) => authLine(`nobody${i}@example.test`, "guess")),
        );
        // Each is checked and refused, or (past the queue's bound) told to come back later.
        for (const code of codes) assert.match(code, /^(535|454)$/, JSON.stringify(tally(codes)));
      } finally {
        clients.forEach((c) => c.close());
      }
      const peak = await peakRss(serve.child.pid);
      const mib = (n: number) => `${Math.round(n / 2 ** 20)} MiB`;
      assert.ok(
        peak < 400 * 2 ** 20,
        `peak RSS ${mib(peak)} (before the attempts: ${mib(before)})`,
      );
    } finally {
      await serve.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
