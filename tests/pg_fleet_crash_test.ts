// The fleet crash test: three `tern serve` nodes on 127.0.0.2, .3 and .4
// share one PostgreSQL store and one mail root. Python smtplib senders send
// to all three without pause while a killer SIGKILLs a random node at a
// random moment (seeded) and restarts it on the same address and port. At
// the end every message acknowledged with 250 must be delivered: exactly
// once into the Maildir, at least once to the relay receiver (a duplicate is
// allowed by RFC 5321 section 6.1 only when a node dies between the remote
// 250 and its own record; they are counted and printed). A killed node's
// claims are taken over once their leases end, by the others or by itself
// after its restart.
//
// TERN_PG_CRASH_ROUNDS sets the number of kills (default 3); replay a run
// with TERN_PG_CRASH_SEED, printed in the test name:
//   TERN_PG_CRASH_ROUNDS=30 deno test -A --unstable-kv tests/pg_fleet_crash_test.ts
// Needs the Debian packages postgresql-15 and python3-aiosmtpd.

import assert from "node:assert/strict";
import { join } from "node:path";
import { PgQueue } from "../queue/pg_queue.ts";
import { prng, type ServeProcess, spawnServe, waitFor } from "./_helpers.ts";
import { startPostgres } from "./_postgres.ts";
import { freePort, startReceiver } from "./_relay_fixtures.ts";

const ROUNDS = Number(Deno.env.get("TERN_PG_CRASH_ROUNDS") ?? "3");
const SEED = Number(Deno.env.get("TERN_PG_CRASH_SEED") ?? "20261205");
const SENDERS = 4;
const HOSTS = ["127.0.0.2", "127.0.0.3", "127.0.0.4"] as const;

// One sender: message n goes to node (sender + n) mod 3 over a connection
// kept per node, to the local mailbox, the relay or both (n mod 3). A
// connection that fails (its node was killed) is dropped and made again for
// the next message to that node. Prints "ok TOKEN" for each 250 covering all
// of the message's recipients; stops when the stop file exists.
const SENDER = `
import os, smtplib, sys, time
sender, stop = int(sys.argv[1]), sys.argv[2]
targets = [(t.rsplit(":", 1)[0], int(t.rsplit(":", 1)[1])) for t in sys.argv[3:]]
conns = [None] * len(targets)
local, remote = "bob@example.test", "someone@example.net"
n = 0
while not os.path.exists(stop):
    k = (sender + n) % len(targets)
    token = "s%d-%d" % (sender, n)
    to = [[local], [remote], [local, remote]][n % 3]
    filler = ("y" * 998 + "\\r\\n") * 200 if n % 5 == 0 else ""
    body = "Subject: %s\\r\\nX-Token: %s\\r\\n\\r\\n%send of %s\\r\\n" % (token, token, filler, token)
    try:
        if conns[k] is None:
            conns[k] = smtplib.SMTP(targets[k][0], targets[k][1], timeout=15)
        refused = conns[k].sendmail("alice@example.net", to, body.encode())
        if not refused:
            print("ok", token, flush=True)
    except Exception:
        try:
            if conns[k] is not None:
                conns[k].close()
        except Exception:
            pass
        conns[k] = None
        time.sleep(0.05)
    n += 1
for c in conns:
    try:
        if c is not None:
            c.quit()
    except Exception:
        pass
`;

/** What the local mailbox should hold of a token's message, and the relay. */
function destinations(token: string): { local: boolean; relayed: boolean } {
  const n = Number(/-(\d+)$/.exec(token)?.[1]);
  return { local: n % 3 !== 1, relayed: n % 3 !== 0 };
}

/** One node's config file: a fixed port, so a restart listens where clients send. */
function nodeConfig(
  n: number,
  host: string,
  port: number,
  options: { mailRoot: string; store: string; relayPort: number },
): string {
  return `hostname: node${n}.example.test
data_dir: ./data${n}
mail_root: ${options.mailRoot}
listeners: [{ address: ${host}, port: ${port}, mode: mx }]
local_domains: [example.test]
relay: { routes: { example.net: "127.0.0.1:${options.relayPort}" } }
queue: { store: "${options.store}", lease: 3s, retry: [1s] }
`;
}

async function queueCount(url: string): Promise<number> {
  const queue = await PgQueue.open(url, { retry: [60_000], maxAge: 86_400_000 });
  try {
    return await queue.count();
  } finally {
    await queue.close();
  }
}

/** How often each token is in a Maildir's new/; every file must be whole. */
async function localCounts(mailbox: string): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  const dir = join(mailbox, "new");
  try {
    for await (const entry of Deno.readDir(dir)) {
      const text = await Deno.readTextFile(join(dir, entry.name));
      const token = /X-Token: (\S+)/.exec(text)?.[1];
      assert.ok(token, `a file without its token: ${entry.name}`);
      assert.ok(text.endsWith(`end of ${token}\r\n`), `a half message in new/: ${entry.name}`);
      counts.set(token, (counts.get(token) ?? 0) + 1);
    }
  } catch (error: unknown) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return counts;
}

/** A `tern serve` process and the node (0, 1, 2) it ran as. */
interface NodeProcess {
  node: number;
  process: ServeProcess;
}

/**
 * Claims taken over after their lease ended (`queue.recovered ... lease
 * expired`, which names the dead owner's pid): in all, and by a node other
 * than the one that died.
 */
function takeovers(processes: NodeProcess[]): { all: number; byOthers: number } {
  const nodeOfPid = new Map(processes.map((p) => [p.process.child.pid, p.node]));
  let all = 0;
  let byOthers = 0;
  for (const { node, process } of processes) {
    for (const line of process.log().split("\n")) {
      if (!/queue\.recovered.*lease expired/.test(line)) continue;
      all++;
      const pid = Number(/owner="?\S+ (\d+)"?/.exec(line)?.[1]);
      if (nodeOfPid.get(pid) !== node) byOthers++;
    }
  }
  return { all, byOthers };
}

Deno.test(
  `pg fleet: nothing acknowledged is lost across ${ROUNDS} SIGKILLs of random nodes (seed ${SEED})`,
  async () => {
    const started = Date.now();
    const random = prng(SEED);
    await using pg = await startPostgres();
    const relayPort = await freePort();
    await using receiver = await startReceiver("127.0.0.1", relayPort);
    const dir = await Deno.makeTempDir({ prefix: "tern-fleet-crash-" });
    const mailRoot = join(dir, "mail");
    const stopFile = join(dir, "stop");
    const ports = await Promise.all(HOSTS.map((host) => freePort(host)));
    const files = await Promise.all(HOSTS.map(async (host, i) => {
      const file = join(dir, `node${i + 2}.yaml`);
      await Deno.writeTextFile(
        file,
        nodeConfig(i + 2, host, ports[i]!, { mailRoot, store: pg.url, relayPort }),
      );
      return file;
    }));
    const nodes: ServeProcess[] = await Promise.all(files.map((file) => spawnServe(file)));
    // Every process a node ran as, killed ones too: their logs tell who took over what.
    const everyProcess: NodeProcess[] = nodes.map((process, node) => ({ node, process }));
    const targets = HOSTS.map((host, i) => `${host}:${ports[i]}`);
    const senders = Array.from({ length: SENDERS }, (_, s) =>
      new Deno.Command("python3", {
        args: ["-c", SENDER, String(s), stopFile, ...targets],
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn().output());
    try {
      const kills: string[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        const i = Math.floor(random() * nodes.length);
        await new Promise((r) => setTimeout(r, 100 + random() * 1400));
        await nodes[i]!.kill();
        kills.push(HOSTS[i]!);
        nodes[i] = await spawnServe(files[i]!);
        everyProcess.push({ node: i, process: nodes[i]! });
      }
      await Deno.writeTextFile(stopFile, "");
      const acknowledged: string[] = [];
      for (const out of await Promise.all(senders)) {
        const text = new TextDecoder().decode(out.stdout);
        assert.ok(out.success, `a sender failed: ${new TextDecoder().decode(out.stderr)}`);
        for (const line of text.split("\n")) {
          if (line.startsWith("ok ")) acknowledged.push(line.slice(3));
        }
      }

      // Every node is up again: the queue must empty.
      await waitFor(
        async () => (await queueCount(pg.url)) === 0,
        60_000 + acknowledged.length * 10,
      ).catch(async (error) => {
        throw new Error(`${await queueCount(pg.url)} messages still queued`, { cause: error });
      });

      const local = await localCounts(join(mailRoot, "example.test", "bob"));
      const relayed = new Map<string, number>();
      for await (const record of receiver.records()) {
        // A bounce to the sender would quote the token too: only copies for the recipient count.
        if (!record.to.includes("someone@example.net")) continue;
        const token = /X-Token: (\S+)/.exec(record.data)?.[1];
        if (token) relayed.set(token, (relayed.get(token) ?? 0) + 1);
      }
      let lost = 0;
      let localDuplicates = 0;
      let relayDuplicates = 0;
      const missing: string[] = [];
      for (const token of acknowledged) {
        const want = destinations(token);
        const l = local.get(token) ?? 0;
        const r = relayed.get(token) ?? 0;
        if ((want.local && l === 0) || (want.relayed && r === 0)) {
          lost++;
          missing.push(token);
        }
        if (l > 1) localDuplicates++;
        if (r > 1) relayDuplicates++;
      }
      // Unacknowledged messages may arrive or not, but never twice locally.
      const allLocalDuplicates = [...local].filter(([, count]) => count > 1).map(([t]) => t);
      const stopped = await Promise.all(nodes.map((node) => node.stop()));
      const taken = takeovers(everyProcess);
      console.log(
        `pg fleet crash test: rounds=${ROUNDS} seed=${SEED} kills=${kills.join(",")} ` +
          `acknowledged=${acknowledged.length} lost=${lost} local_duplicates=${localDuplicates} ` +
          `relay_duplicates=${relayDuplicates} takeovers=${taken.all} ` +
          `taken_by_others=${taken.byOthers} ` +
          `seconds=${Math.round((Date.now() - started) / 1000)}`,
      );
      assert.ok(acknowledged.length > 0, "no message was acknowledged");
      assert.equal(lost, 0, `acknowledged messages were lost: ${missing.slice(0, 20).join(" ")}`);
      assert.equal(localDuplicates, 0, "local delivery happened twice");
      assert.deepEqual(allLocalDuplicates, [], "local delivery happened twice");
      assert.deepEqual(stopped, [0, 0, 0], "a node did not stop cleanly");
    } finally {
      await Deno.writeTextFile(stopFile, "").catch(() => {});
      await Promise.allSettled(senders);
      await Promise.all(nodes.map((node) => node.kill()));
      await Deno.remove(dir, { recursive: true });
    }
  },
);
