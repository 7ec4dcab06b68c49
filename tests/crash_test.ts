// Crash safety: parallel clients send mail while the server is killed with
// SIGKILL at random moments (seeded), during intake, local delivery and
// relay; it is restarted on the same data directory each time. At the end,
// every message acknowledged with 250 must be delivered: exactly once into
// the Maildir, at least once to the relay receiver (duplicates only in the
// window between the remote 250 and our own commit, counted), never a half
// message in new/, and nothing left that no worker picks up.
//
// TERN_CRASH_ROUNDS sets the number of kills (default 4); a release check
// runs hundreds: TERN_CRASH_ROUNDS=300 deno task test tests/crash_test.ts
//
// The bookkeeping stays flat with the number of rounds: a message is a few
// bytes in a per-client ledger (not its token as a string), and what was
// delivered is read back one Maildir file and one relay log line at a time,
// never as a whole. The summary line prints the process's peak memory.
import assert from "node:assert/strict";
import { join } from "node:path";
import { parsePendingName } from "../mda/maildir.ts";
import { prng, spawnServe, tempConfig, tern, waitFor } from "./_helpers.ts";
import { freePort, startReceiver } from "./_relay_fixtures.ts";

const ROUNDS = Number(Deno.env.get("TERN_CRASH_ROUNDS") ?? "4");
const SEED = Number(Deno.env.get("TERN_CRASH_SEED") ?? "20261129");
const CLIENTS = 4;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** What one message goes to: a local mailbox, the relay, or both. */
function recipientsFor(n: number): string[] {
  switch (n % 3) {
    case 0:
      return ["alice@example.test"];
    case 1:
      return ["someone@example.net"];
    default:
      return ["alice@example.test", "someone@example.net"];
  }
}

/**
 * One sending client's messages, a byte per message and per fact: whether it
 * was acknowledged with 250, and how often it reached the Maildir and the
 * relay (saturating at 255). Message n goes to {@linkcode recipientsFor}(n).
 */
class ClientLedger {
  acknowledged = new Uint8Array(64);
  local = new Uint8Array(64);
  relayed = new Uint8Array(64);

  /** Makes room for message n (doubling, so growth costs O(1) amortised). */
  grow(n: number): void {
    if (n < this.acknowledged.length) return;
    let size = this.acknowledged.length;
    while (size <= n) size *= 2;
    const widen = (from: Uint8Array) => {
      const to = new Uint8Array(size);
      to.set(from);
      return to;
    };
    this.acknowledged = widen(this.acknowledged);
    this.local = widen(this.local);
    this.relayed = widen(this.relayed);
  }
}

/** What a run sent and what arrived, keyed by client (`r<round>c<client>`). */
class Ledger {
  readonly #clients = new Map<string, ClientLedger>();
  acknowledgedCount = 0;

  /** The ledger of one client, made on first use. */
  client(id: string): ClientLedger {
    let entry = this.#clients.get(id);
    if (!entry) {
      entry = new ClientLedger();
      this.#clients.set(id, entry);
    }
    return entry;
  }

  /** Records a 250 for message n of client id. */
  acknowledge(id: string, n: number): void {
    const entry = this.client(id);
    entry.grow(n);
    entry.acknowledged[n] = 1;
    this.acknowledgedCount++;
  }

  /** Counts one arrival of a token (`<client>-<n>`) in the Maildir or at the relay. */
  arrived(token: string, where: "local" | "relayed"): void {
    const m = /^(r\d+c\d+)-(\d+)$/.exec(token);
    assert.ok(m?.[1] && m[2], `a delivered message with a token the test never sent: ${token}`);
    const n = Number(m[2]);
    const entry = this.client(m[1]);
    entry.grow(n);
    entry[where][n] = Math.min(255, (entry[where][n] ?? 0) + 1);
  }

  /** Acknowledged messages missing somewhere they were sent, and duplicates. */
  tally(): { lost: number; localDuplicates: number; relayDuplicates: number } {
    let lost = 0;
    let localDuplicates = 0;
    let relayDuplicates = 0;
    for (const entry of this.#clients.values()) {
      for (let n = 0; n < entry.acknowledged.length; n++) {
        if (entry.acknowledged[n] === 0) continue;
        const to = recipientsFor(n);
        const local = entry.local[n] ?? 0;
        const relayed = entry.relayed[n] ?? 0;
        if (to.includes("alice@example.test")) {
          if (local === 0) lost++;
          if (local > 1) localDuplicates++;
        }
        if (to.includes("someone@example.net")) {
          if (relayed === 0) lost++;
          if (relayed > 1) relayDuplicates++;
        }
      }
    }
    return { lost, localDuplicates, relayDuplicates };
  }
}

/** The highest memory seen: sampled after each round, and the kernel's peak RSS. */
class MemoryPeak {
  heap = 0;
  rss = 0;

  sample(): void {
    const usage = Deno.memoryUsage();
    this.heap = Math.max(this.heap, usage.heapUsed);
    this.rss = Math.max(this.rss, usage.rss);
  }

  /** VmHWM (Linux): the resident set's high-water mark, between samples too. */
  async highWaterMark(): Promise<number> {
    try {
      const status = await Deno.readTextFile("/proc/self/status");
      const kib = /^VmHWM:\s+(\d+) kB/m.exec(status)?.[1];
      if (kib) return Math.max(this.rss, Number(kib) * 1024);
    } catch {
      // not Linux: the samples are all there is
    }
    return this.rss;
  }
}

/** The start-up's Maildir recovery across rounds, from each start's log (before it listens). */
class RecoveryCount {
  delivered = 0;
  removed = 0;

  count(log: string): void {
    this.delivered += log.match(/maildir\.recovered action=delivered/g)?.length ?? 0;
    this.removed += log.match(/maildir\.recovered action=removed/g)?.length ?? 0;
  }
}

const mib = (bytes: number) => `${Math.round(bytes / 1048576)}MiB`;

/** Sends messages until the connection breaks; records each one acknowledged with 250. */
async function client(
  port: number,
  id: string,
  ledger: Ledger,
): Promise<void> {
  let conn: Deno.Conn;
  try {
    conn = await Deno.connect({ hostname: "127.0.0.1", port });
  } catch {
    return;
  }
  const reader = conn.readable.getReader();
  let buffer = "";
  const reply = async (): Promise<number> => {
    while (true) {
      let start = 0;
      let nl: number;
      while ((nl = buffer.indexOf("\r\n", start)) >= 0) {
        const line = buffer.slice(start, nl);
        start = nl + 2;
        if (line[3] !== "-") {
          buffer = buffer.slice(start);
          return Number(line.slice(0, 3));
        }
      }
      const { value, done } = await reader.read();
      if (done) throw new Error("closed");
      buffer += decoder.decode(value);
    }
  };
  try {
    await reply();
    await conn.write(encoder.encode("EHLO crash.test\r\n"));
    await reply();
    for (let n = 0;; n++) {
      const token = `${id}-${n}`;
      const to = recipientsFor(n);
      let script = "MAIL FROM:<alice@example.test>\r\n";
      for (const r of to) script += `RCPT TO:<${r}>\r\n`;
      await conn.write(encoder.encode(script + "DATA\r\n"));
      for (let i = 0; i < to.length + 2; i++) await reply();
      // Big enough to span several queue chunks now and then.
      const filler = n % 5 === 0 ? ("y".repeat(998) + "\r\n").repeat(200) : "";
      await conn.write(
        encoder.encode(
          `Subject: ${token}\r\nX-Token: ${token}\r\n\r\n${filler}end of ${token}\r\n.\r\n`,
        ),
      );
      if (await reply() === 250) ledger.acknowledge(id, n);
    }
  } catch {
    // The server was killed: this client is done.
  } finally {
    try {
      conn.close();
    } catch {
      // already closed
    }
  }
}

Deno.test(`nothing acknowledged is lost across ${ROUNDS} SIGKILLs (seed ${SEED})`, async () => {
  const random = prng(SEED);
  const relayPort = await freePort();
  await using receiver = await startReceiver("127.0.0.1", relayPort);
  const { dir, file } = await tempConfig(`
listeners: [{ address: 127.0.0.1, port: 0, mode: mx }]
local_domains: [example.test]
accounts:
  alice@example.test: {}
relay: { routes: { example.net: "127.0.0.1:${relayPort}" } }
queue: { retry: [1s] }
`);
  const ledger = new Ledger();
  const recovery = new RecoveryCount();
  const memory = new MemoryPeak();
  // Every other round with two session workers: the mx sessions then run in
  // threads that hand each message to the main thread's store before the 250.
  const base = await Deno.readTextFile(file);
  try {
    for (let round = 0; round < ROUNDS; round++) {
      await Deno.writeTextFile(file, `${base}workers: ${round % 2 === 0 ? 0 : 2}\n`);
      const serve = await spawnServe(file);
      recovery.count(serve.log());
      const clients = Array.from(
        { length: CLIENTS },
        (_, c) => client(serve.port, `r${round}c${c}`, ledger),
      );
      await new Promise((r) => setTimeout(r, 150 + random() * 900));
      await serve.kill();
      await Promise.all(clients);
      memory.sample();
    }
    // The last restart: everything acknowledged must arrive.
    const serve = await spawnServe(file);
    recovery.count(serve.log());
    try {
      // The backlog of many rounds takes a while: allow a second per 100 messages.
      let last = "";
      await waitFor(async () => {
        const r = await tern(["queue", "list", "--config", file, "--json"]);
        last = r.stdout;
        return r.stdout.trim() === "";
      }, 60_000 + ledger.acknowledgedCount * 10).catch((error) => {
        const rows = last.trim().split("\n");
        throw new Error(`${rows.length} messages still queued, the first: ${rows[0]}`, {
          cause: error,
        });
      });
    } finally {
      assert.equal(await serve.stop(), 0);
    }
    // No spool file outlives its message: uploads cut off by a kill, and files
    // whose removal a kill interrupted, are swept at the next start.
    const spool: string[] = [];
    try {
      for await (const entry of Deno.readDir(join(dir, "data", "queue.sqlite3-spool"))) {
        spool.push(entry.name);
      }
    } catch (error: unknown) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    assert.deepEqual(spool, [], "spool files left behind");
    // No delivery at acceptance is left half done: the start-up moved each
    // complete file from tmp/ into new/ and removed those cut short.
    const pending: string[] = [];
    for await (
      const entry of Deno.readDir(join(dir, "data", "mail", "example.test", "alice", "tmp"))
    ) {
      if (parsePendingName(entry.name) !== null) pending.push(entry.name);
    }
    assert.deepEqual(pending, [], "deliveries at acceptance left in tmp/");

    // Local: exactly once, whole. One file at a time, only its token kept.
    const newDir = join(dir, "data", "mail", "example.test", "alice", "new");
    for await (const entry of Deno.readDir(newDir)) {
      const text = await Deno.readTextFile(join(newDir, entry.name));
      const token = /X-Token: (\S+)/.exec(text)?.[1];
      assert.ok(token, `a file without its token: ${entry.name}`);
      assert.ok(text.endsWith(`end of ${token}\r\n`), `a half message in new/: ${entry.name}`);
      ledger.arrived(token, "local");
    }
    memory.sample();
    // Relay: at least once. The log is streamed, a record at a time.
    for await (const m of receiver.records()) {
      const token = /X-Token: (\S+)/.exec(m.data)?.[1];
      if (token) ledger.arrived(token, "relayed");
    }
    memory.sample();
    const { lost, localDuplicates, relayDuplicates } = ledger.tally();
    const peak = await memory.highWaterMark();
    console.log(
      `crash test: rounds=${ROUNDS} seed=${SEED} acknowledged=${ledger.acknowledgedCount} ` +
        `lost=${lost} local_duplicates=${localDuplicates} relay_duplicates=${relayDuplicates} ` +
        `peak_rss=${mib(peak)} peak_heap=${mib(memory.heap)} ` +
        `maildir_recovered=${recovery.delivered} maildir_removed=${recovery.removed}`,
    );
    assert.ok(ledger.acknowledgedCount > 0, "no message was acknowledged");
    assert.equal(lost, 0, "acknowledged messages were lost");
    assert.equal(localDuplicates, 0, "local delivery happened twice");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
