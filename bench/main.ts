/**
 * `deno task bench`: tern against Postfix on this machine, same run, same
 * load. See bench/README.md for what each scenario measures and why the
 * settings are fair.
 *
 * Each run of each scenario starts the MTA afresh (a new directory, queue
 * and Maildir), drives it over loopback and stops it; tern and Postfix take
 * turns run by run. Each figure is the median of the runs with min and max;
 * the last column is the ratio of the medians, tern/Postfix. Beside them:
 * the disk's fsyncs per second (4 KiB write + fsync), the physical ceiling
 * of an MTA that makes every message durable one fsync at a time.
 *
 * ```sh
 * deno task bench                                  # every scenario, 3 runs
 * deno task bench --scenario local --runs 5        # one scenario
 * deno task bench --scenario 'local*,relay'        # several; * is a wildcard
 * deno task bench --mta tern                       # tern alone (no Postfix needed
 *                                                  #  except smtp-source/smtp-sink)
 * deno task bench --growth                         # cost growth (tern only)
 * deno task bench --smoke                          # CI: tern only, a few hundred messages
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { cpus, loadavg } from "node:os";
import { basename, dirname, join } from "node:path";
import { countFiles, fsyncsPerSecond, waitForCount } from "./_disk.ts";
import { freePort } from "./_net.ts";
import { renderTable, type Row, summary } from "./_table.ts";
import { type GrowthArgs, parseGrowthArgs, runGrowth } from "./growth.ts";
import { IdleHolder, probeTransaction } from "./idle.ts";
import { runLoad } from "./load.ts";
import { processTree, treeCpuSeconds, treeMemory } from "./memory.ts";
import { runAuthCost } from "./auth_cost.ts";
import { runMilterLoad } from "./milter.ts";
import { OpenDkim } from "./opendkim.ts";
import { ensurePostfix, Postfix, postfixVersion } from "./postfix.ts";
import { PgTern } from "./postgres.ts";
import { type MilterSocket, Rspamd } from "./rspamd.ts";
import {
  checkSignedDumps,
  makeDumpDir,
  makeSigningKey,
  type PublishedKey,
  SIGN_DOMAIN,
  SIGN_SELECTOR,
} from "./sign.ts";
import { runSmtpSource, SmtpSink } from "./smtp_source.ts";
import { Tern } from "./tern.ts";

/** The `--scenario` name of bench/auth_cost.ts's figures. */
const AUTH_COST = "auth-cost";

/** The local domain of both MTAs. */
export const LOCAL_DOMAIN = "bench.test";
/** The mailbox every local message goes to. */
export const MAILBOX = `sink@${LOCAL_DOMAIN}`;
/** The domain routed to smtp-sink. */
export const RELAY_DOMAIN = "relay.test";
/** The envelope sender of the load. */
export const SENDER = "load@client.bench.test";

const KIB = 1024;
const MIB = 1024 * 1024;

/** The two MTAs. */
export type MtaName = "tern" | "postfix";

/** What a scenario needs of a running MTA. */
export interface Instance {
  /** The root of its process tree. */
  readonly pid: number;
  /** Its SMTP port on 127.0.0.1. */
  readonly port: number;
  /** The Maildir `new/` of a local address. */
  newDir(address: string): string;
  /** Stops it. */
  stop(): Promise<void>;
  /**
   * Every listener the load is spread over (several tern nodes sharing a
   * store). @default {[127.0.0.1:port]}
   */
  readonly targets?: readonly { host: string; port: number }[];
  /**
   * CPU seconds of everything that does the MTA's work when it is more than
   * the tree of `pid` (the nodes and the PostgreSQL server).
   */
  cpuSeconds?(): Promise<number>;
  /** The part of {@linkcode cpuSeconds} spent outside tern (PostgreSQL), for the log. */
  serverCpuSeconds?(): Promise<number>;
}

/** Where tern keeps its queue in a scenario: Deno KV, or PostgreSQL for 1 or 3 nodes. */
type TernStore = "kv" | "pg" | "pg3";

/** What a signing run adds: the key the MTA signs with, and where smtp-sink dumps what it gets. */
interface Signing {
  readonly key: PublishedKey;
  readonly dumpDir: string;
  /** Processes outside the MTA's tree that do its signing (OpenDKIM), for its CPU time. */
  readonly helperPids: readonly number[];
}

/** One figure a scenario reports. */
interface Metric {
  readonly key: string;
  readonly label: string;
  readonly digits: number;
}

/** A scenario: what to do with a freshly started MTA, and what it reports. */
interface Scenario {
  /** Its name for `--scenario`. */
  readonly name: string;
  /** Its name in the table. */
  readonly title: string;
  readonly metrics: readonly Metric[];
  /** Whether it needs smtp-sink as the relay next hop. */
  readonly sink?: boolean;
  /** tern's queue store (Postfix is the same in every case). @default {"kv"} */
  readonly store?: TernStore;
  /**
   * Whether the MTA DKIM-signs every message (tern itself, Postfix through
   * OpenDKIM); smtp-sink then dumps what it receives, to check.
   */
  readonly sign?: boolean;
  /**
   * Whether the MTA passes every message to a private rspamd as a milter
   * (bench/rspamd.ts), and over which socket. @default {none}
   */
  readonly milter?: MilterSocket;
  /**
   * The cores the MTA and the load may use (`taskset -c`), as on a machine
   * with only those: tern is started on them (its session workers follow
   * the cores it may use), Postfix's process tree is pinned to them once
   * started (its children inherit it), smtp-source runs on them. @default {every core}
   */
  readonly cpus?: string;
  /** The MTAs it is run on, when not both (say why in bench/README.md). @default {every one asked} */
  readonly mtas?: readonly MtaName[];
  run(
    instance: Instance,
    sink: SmtpSink | null,
    signing: Signing | null,
    milter: Rspamd | null,
  ): Promise<Record<string, number>>;
}

/** Run-wide settings. */
interface Context {
  readonly root: string;
  readonly keep: boolean;
  readonly denoFlags: readonly string[];
  /** tern's `workers` (`--tern-workers`); `null`: its default, `auto`. */
  readonly ternWorkers: number | null;
  /**
   * Whether a run's directory stays until the end of the bench instead of
   * being deleted before the next run (see {@linkcode DEFER_DELETION_MIN_FREE}).
   */
  readonly deferDeletion: boolean;
}

/**
 * Free space (bytes) below which each run's directory is deleted at once.
 *
 * Deleting a run's thousands of files just before the next run slows that
 * run: for a while after, ext4 skips recently deleted inodes when it
 * allocates new ones (`recently_deleted()` reads each one's inode block, in
 * ialloc.c), while holding the directory lock that every other file creation
 * then spins on. `perf record -a -g` during a run right after such a deletion
 * shows `rwsem_spin_on_owner` (13%) and `recently_deleted` (19%) at the top,
 * and system time per created file triples. That is the previous run's
 * clean-up, not the MTA under test, so with room on the disk every run's
 * files are kept until the bench ends.
 */
const DEFER_DELETION_MIN_FREE = 20 * 1024 ** 3;

/**
 * Marks `root` as a top of a directory hierarchy (`chattr +T`): ext4's Orlov
 * allocator then puts each run's directory in a block group of its own, so
 * the files one MTA deletes during its run (Postfix deletes a queue file per
 * message) do not slow the file creations of the next run, which would
 * otherwise search past those recently deleted inodes (see
 * {@linkcode DEFER_DELETION_MIN_FREE}). Measured: after 5,000 deletions in a
 * sibling directory, 24 concurrent create-fsync-rename loops ran at 1,600–2,100
 * files/s without the flag and 8,200–8,400 with it.
 *
 * @returns Whether the flag was set.
 */
async function spreadSubdirectories(root: string): Promise<boolean> {
  try {
    const out = await new Deno.Command("chattr", { args: ["+T", root], stderr: "null" }).output();
    return out.success;
  } catch {
    return false;
  }
}

/** Free bytes on the file system holding `path`, or 0 when `df` cannot tell. */
async function freeBytes(path: string): Promise<number> {
  try {
    const out = await new Deno.Command("df", {
      args: ["-Pk", path],
      stdout: "piped",
      stderr: "null",
    })
      .output();
    const fields = new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)?.split(/\s+/);
    const kib = Number(fields?.[3]);
    return Number.isFinite(kib) ? kib * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Instances running now, stopped on SIGINT/SIGTERM. */
const running = new Set<{ stop(): Promise<void> }>();
/** smtp-sink's dump directories in use (in /dev/shm, outside the bench directory). */
const dumpDirs = new Set<string>();

function log(line: string): void {
  console.error(line);
}

/** Pins every thread of a process tree to some cores (`taskset -a -p -c`). */
async function pinTree(root: number, cpus: string): Promise<void> {
  for (const pid of await processTree(root)) {
    const out = await new Deno.Command("taskset", {
      args: ["-a", "-p", "-c", cpus, String(pid)],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!out.success) {
      throw new Error(`taskset -p ${pid}: ${new TextDecoder().decode(out.stderr).trim()}`);
    }
  }
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts one MTA in a new directory (and smtp-sink when the scenario relays;
 * a new RSA-2048 key, and OpenDKIM for Postfix, when it signs), runs
 * `body`, and stops everything.
 */
async function withInstance<T>(
  mta: MtaName,
  context: Context,
  needs: {
    sink: boolean;
    sign: boolean;
    store: TernStore;
    milter?: MilterSocket | null;
    cpus?: string | null;
  },
  body: (
    instance: Instance,
    sink: SmtpSink | null,
    signing: Signing | null,
    milter: Rspamd | null,
  ) => Promise<T>,
): Promise<T> {
  const dir = await Deno.makeTempDir({ dir: context.root, prefix: `${mta}-` });
  // Postfix's daemons and OpenDKIM run as other users and must reach into it.
  await Deno.chmod(dir, 0o755);
  let sink: SmtpSink | null = null;
  let instance: Instance | null = null;
  let openDkim: OpenDkim | null = null;
  let rspamd: Rspamd | null = null;
  let dumpDir: string | null = null;
  let failed = false;
  try {
    const key = needs.sign ? makeSigningKey() : null;
    if (needs.sink) {
      dumpDir = key ? await makeDumpDir(dir) : null;
      if (dumpDir !== null) dumpDirs.add(dumpDir);
      sink = await SmtpSink.start(freePort(), dumpDir === null ? {} : { dumpDir });
      running.add(sink);
    }
    const routes = sink ? { [RELAY_DOMAIN]: `127.0.0.1:${sink.port}` } : {};
    const port = freePort();
    if (key && mta === "postfix") {
      openDkim = await OpenDkim.start({
        dir: join(dir, "opendkim"),
        domain: SIGN_DOMAIN,
        selector: SIGN_SELECTOR,
        keyPem: key.pem,
      });
      running.add(openDkim);
    }
    if (needs.milter) {
      // The same rspamd configuration for both MTAs, a new instance per run.
      rspamd = await Rspamd.start({ dir: join(dir, "rspamd") });
      running.add(rspamd);
    }
    let dkimKeys: { domain: string; selector: string; key: string }[] | undefined;
    if (key && mta === "tern") {
      const keyFile = join(dir, "dkim.pem");
      await Deno.writeTextFile(keyFile, key.pem, { mode: 0o600 });
      dkimKeys = [{ domain: SIGN_DOMAIN, selector: SIGN_SELECTOR, key: keyFile }];
    }
    instance = mta === "tern" && needs.store !== "kv"
      ? await PgTern.start({
        dir,
        nodes: needs.store === "pg3" ? 3 : 1,
        localDomain: LOCAL_DOMAIN,
        routes,
        denoFlags: context.denoFlags,
      })
      : mta === "tern"
      ? await Tern.start({
        dir,
        port,
        localDomain: LOCAL_DOMAIN,
        routes,
        denoFlags: context.denoFlags,
        ...(needs.cpus ? { cpus: needs.cpus } : {}),
        ...(context.ternWorkers === null ? {} : { workers: context.ternWorkers }),
        ...(dkimKeys ? { dkimKeys } : {}),
        ...(rspamd ? { milters: [rspamd.addressFor(needs.milter!, "tern")] } : {}),
      })
      : await Postfix.start({
        dir,
        port,
        localDomain: LOCAL_DOMAIN,
        mailboxes: ["sink"],
        routes,
        ...(openDkim ? { milter: openDkim.milter } : {}),
        ...(rspamd ? { milter: rspamd.addressFor(needs.milter!, "postfix") } : {}),
      });
    running.add(instance);
    // Postfix does not size itself by the cores: pinning its tree once started is the same.
    if (needs.cpus && mta === "postfix") await pinTree(instance.pid, needs.cpus);
    const signing = key && dumpDir !== null
      ? { key, dumpDir, helperPids: openDkim ? [openDkim.pid] : [] }
      : null;
    return await body(instance, sink, signing, rspamd);
  } catch (error: unknown) {
    failed = true;
    throw error;
  } finally {
    if (instance) {
      await instance.stop();
      running.delete(instance);
    }
    if (openDkim) {
      await openDkim.stop();
      running.delete(openDkim);
    }
    if (rspamd) {
      await rspamd.stop();
      running.delete(rspamd);
    }
    if (sink) {
      await sink.stop();
      running.delete(sink);
    }
    // The dumps are in memory (/dev/shm): never kept past the run.
    if (dumpDir !== null) {
      await Deno.remove(dumpDir, { recursive: true }).catch(() => {});
      dumpDirs.delete(dumpDir);
    }
    if (failed && !context.keep) {
      // A failed run's queue, Maildir and logs are what tells why: kept,
      // beside the bench directory (which goes when the bench ends).
      const kept = join(dirname(context.root), `tern-bench-failed-${basename(dir)}`);
      await Deno.rename(dir, kept).then(
        () => log(`  ${mta}: the failed run's directory is kept: ${kept}`),
        () => {},
      );
    } else if (!context.keep && !context.deferDeletion) {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  }
}

// ---------------------------------------------------------------------------
// Scenarios

const RATES: readonly Metric[] = [
  { key: "accepted", label: "accepted msg/s", digits: 0 },
  { key: "delivered", label: "delivered msg/s", digits: 0 },
  { key: "cpu", label: "MTA CPU ms/msg", digits: 2 },
];

/**
 * smtp-source sends the load to the local mailbox; the accept rate runs
 * until smtp-source exits, the delivered rate until every file is in
 * Maildir `new/` (counted from the same start).
 */
function localScenario(
  name: string,
  title: string,
  load: { messages: number; sessions: number; size: number },
  store: TernStore = "kv",
  cpus?: string,
): Scenario {
  return {
    name,
    title,
    metrics: RATES,
    store,
    ...(cpus === undefined ? {} : { cpus }),
    async run(instance) {
      const cpuOf = () => instance.cpuSeconds?.() ?? treeCpuSeconds(instance.pid);
      const cpu = await cpuOf();
      const server = await instance.serverCpuSeconds?.() ?? 0;
      const source = await spreadSmtpSource(instance, {
        ...load,
        from: SENDER,
        to: MAILBOX,
        ...(cpus === undefined ? {} : { cpus }),
      });
      const newDir = instance.newDir(MAILBOX);
      const doneAt = await waitForCount(() => countFiles(newDir), load.messages, {
        what: "messages in Maildir new/",
      });
      const cpuAfter = await cpuOf();
      if (instance.serverCpuSeconds) {
        const ms = ((await instance.serverCpuSeconds()) - server) * 1000 / load.messages;
        log(`  of the MTA CPU, PostgreSQL's: ${ms.toFixed(2)} ms/msg`);
      }
      return {
        accepted: load.messages / (source.elapsedMs / 1000),
        delivered: load.messages / ((doneAt - source.startedAt) / 1000),
        cpu: (cpuAfter - cpu) * 1000 / load.messages,
      };
    },
  };
}

/**
 * smtp-source against every target of the instance at once, the messages
 * and sessions shared out as evenly as they go; one target: one smtp-source
 * with the whole load. The elapsed time runs from the first start to the
 * last exit.
 */
async function spreadSmtpSource(
  instance: Instance,
  load: {
    messages: number;
    sessions: number;
    size: number;
    from: string;
    to: string;
    cpus?: string;
  },
): Promise<{ elapsedMs: number; startedAt: number }> {
  const targets = instance.targets ?? [{ host: "127.0.0.1", port: instance.port }];
  const share = (total: number, i: number) =>
    Math.floor(total / targets.length) + (i < total % targets.length ? 1 : 0);
  const results = await Promise.all(
    targets.map((t, i) =>
      runSmtpSource({
        ...load,
        host: t.host,
        port: t.port,
        messages: share(load.messages, i),
        sessions: Math.max(1, share(load.sessions, i)),
      })
    ),
  );
  const startedAt = Math.min(...results.map((r) => r.startedAt));
  const endedAt = Math.max(...results.map((r) => r.startedAt + r.elapsedMs));
  return { elapsedMs: endedAt - startedAt, startedAt };
}

/** CPU seconds of the MTA's tree and of the processes signing for it (OpenDKIM). */
async function mtaCpuSeconds(
  instance: Instance,
  signing: Signing | null,
): Promise<{ total: number; helpers: number }> {
  let helpers = 0;
  for (const pid of signing?.helperPids ?? []) helpers += await treeCpuSeconds(pid);
  return { total: (await treeCpuSeconds(instance.pid)) + helpers, helpers };
}

/**
 * The same load to the relay domain: delivered = received by smtp-sink.
 * With `sign`, the MTA DKIM-signs every message (tern itself; Postfix
 * through OpenDKIM as a milter, whose CPU counts as Postfix's), and after
 * the timed part every message smtp-sink received is checked to carry the
 * signature, a sample of them verified (bench/sign.ts).
 */
function relayScenario(
  name: string,
  title: string,
  load: { messages: number; sessions: number; size: number },
  sign = false,
): Scenario {
  return {
    name,
    title,
    metrics: RATES,
    sink: true,
    sign,
    async run(instance, sink, signing) {
      if (sign && signing === null) throw new Error("the sign scenario has no key");
      const cpu = await mtaCpuSeconds(instance, signing);
      const source = await runSmtpSource({
        port: instance.port,
        ...load,
        from: SENDER,
        to: `rcpt@${RELAY_DOMAIN}`,
      });
      const doneAt = await waitForCount(() => sink!.received, load.messages, {
        what: "messages received by smtp-sink",
        intervalMs: 10,
      });
      const cpuAfter = await mtaCpuSeconds(instance, signing);
      const figures = {
        accepted: load.messages / (source.elapsedMs / 1000),
        delivered: load.messages / ((doneAt - source.startedAt) / 1000),
        cpu: (cpuAfter.total - cpu.total) * 1000 / load.messages,
      };
      if (signing !== null) {
        if (signing.helperPids.length > 0) {
          const ms = (cpuAfter.helpers - cpu.helpers) * 1000 / load.messages;
          log(`  of the MTA CPU, the signing milter's: ${ms.toFixed(2)} ms/msg`);
        }
        await checkSignedDumps(signing.dumpDir, load.messages, signing.key);
      }
      return figures;
    },
  };
}

/**
 * Memory of the MTA's whole process tree idle, then with `connections` open
 * after EHLO; per connection = the difference / connections.
 */
function idleScenario(connections: number): Scenario {
  return {
    name: "idle",
    title: `${count(connections)} idle connections after EHLO`,
    metrics: [
      { key: "baseRss", label: "idle RSS MiB", digits: 1 },
      { key: "basePss", label: "idle PSS MiB", digits: 1 },
      { key: "rssPer", label: "RSS KiB/connection", digits: 1 },
      { key: "pssPer", label: "PSS KiB/connection", digits: 1 },
      { key: "anonPer", label: "anon PSS KiB/connection", digits: 1 },
      { key: "processes", label: "processes", digits: 0 },
    ],
    async run(instance) {
      await sleep(1000); // let start-up settle (JIT, lazy allocations)
      const holder = await IdleHolder.start(instance.port, connections);
      try {
        const base = await treeMemory(instance.pid);
        const open = await holder.open();
        await sleep(1000);
        const loaded = await treeMemory(instance.pid);
        return {
          baseRss: base.rss / MIB,
          basePss: base.pss / MIB,
          rssPer: (loaded.rss - base.rss) / open / KIB,
          pssPer: (loaded.pss - base.pss) / open / KIB,
          anonPer: (loaded.anon - base.anon) / open / KIB,
          processes: loaded.processes,
        };
      } finally {
        await holder.close();
      }
    },
  };
}

/**
 * `connections` idle connections held at once (10,000: more than Postfix's
 * one smtpd process per connection can sensibly hold here, so tern only),
 * and meanwhile a normal client's whole transaction, `probes` times one
 * after the other. Memory is read 1 s after the last connection opened, as
 * in `idle`, and again once 30 s have passed (V8 gives back the young
 * generation it grew while the connections were opened only after a while).
 */
function idleManyScenario(connections: number, probes: number): Scenario {
  return {
    name: "idle-10k",
    title: `${count(connections)} idle connections, ${probes} transactions meanwhile`,
    mtas: ["tern"],
    metrics: [
      { key: "pssPer", label: "PSS KiB/connection", digits: 1 },
      { key: "anonPer", label: "anon PSS KiB/connection", digits: 1 },
      { key: "settledPer", label: "anon PSS KiB/connection at 30 s", digits: 1 },
      { key: "alone", label: "transaction p50 ms, no idle connection", digits: 1 },
      { key: "p50", label: "transaction p50 ms", digits: 1 },
      { key: "max", label: "transaction max ms", digits: 1 },
    ],
    async run(instance) {
      await sleep(1000); // let start-up settle (JIT, lazy allocations)
      await probeTransaction(instance.port, SENDER, MAILBOX); // the delivery path warmed up
      const alone: number[] = [];
      for (let i = 0; i < probes; i++) {
        alone.push(await probeTransaction(instance.port, SENDER, MAILBOX));
      }
      alone.sort((a, b) => a - b);
      const holder = await IdleHolder.start(instance.port, connections);
      try {
        const base = await treeMemory(instance.pid);
        const open = await holder.open();
        const openedAt = performance.now();
        await sleep(1000);
        const loaded = await treeMemory(instance.pid);
        const times: number[] = [];
        for (let i = 0; i < probes; i++) {
          times.push(await probeTransaction(instance.port, SENDER, MAILBOX));
        }
        await sleep(Math.max(0, 30_000 - (performance.now() - openedAt)));
        const settled = await treeMemory(instance.pid);
        times.sort((a, b) => a - b);
        return {
          pssPer: (loaded.pss - base.pss) / open / KIB,
          anonPer: (loaded.anon - base.anon) / open / KIB,
          settledPer: (settled.anon - base.anon) / open / KIB,
          alone: alone[Math.floor(alone.length / 2)]!,
          p50: times[Math.floor(times.length / 2)]!,
          max: times.at(-1)!,
        };
      } finally {
        await holder.close();
      }
    },
  };
}

/**
 * bench/load.ts's generator (PIPELINING: MAIL, RCPT, DATA in one write)
 * times each message from the end of its data to the 250.
 */
function latencyScenario(
  name: string,
  title: string,
  load: { messages: number; sessions: number; size: number },
  waitForDelivery: boolean,
): Scenario {
  return {
    name,
    title,
    metrics: [
      { key: "p50", label: "latency p50 ms", digits: 2 },
      { key: "p99", label: "latency p99 ms", digits: 2 },
      { key: "accepted", label: "accepted msg/s", digits: 0 },
      ...(waitForDelivery ? [{ key: "delivered", label: "delivered msg/s", digits: 0 }] : []),
    ],
    async run(instance) {
      const started = performance.now();
      const result = await runLoad({
        host: "127.0.0.1",
        port: instance.port,
        ...load,
        recipient: MAILBOX,
      });
      if (result.accepted !== load.messages) {
        throw new Error(`Only ${result.accepted} of ${load.messages} messages accepted`);
      }
      const pick = (q: number) =>
        result
          .latenciesMs[
            Math.min(result.latenciesMs.length - 1, Math.floor(q * result.latenciesMs.length))
          ]!;
      const figures: Record<string, number> = {
        p50: pick(0.5),
        p99: pick(0.99),
        accepted: load.messages / (result.elapsedMs / 1000),
      };
      if (waitForDelivery) {
        const newDir = instance.newDir(MAILBOX);
        const doneAt = await waitForCount(() => countFiles(newDir), load.messages, {
          what: "messages in Maildir new/",
        });
        figures.delivered = load.messages / ((doneAt - started) / 1000);
      }
      return figures;
    },
  };
}

/**
 * The `local` load with one private rspamd per run as the MTA's milter
 * (bench/milter.ts): its CPU counts as the MTA's, and every delivered
 * message must show that rspamd scanned it.
 */
function milterScenario(
  name: string,
  socket: MilterSocket,
  load: { messages: number; sessions: number; size: number },
): Scenario {
  return {
    name,
    title: `local, rspamd milter (${socket === "unix" ? "UNIX socket" : "TCP"}), ${
      sizeName(load.size)
    } × ${count(load.messages)}, ${load.sessions} sessions`,
    metrics: RATES,
    milter: socket,
    run(instance, _sink, _signing, rspamd) {
      if (rspamd === null) throw new Error("the milter scenario has no rspamd");
      return runMilterLoad(instance, rspamd, { ...load, from: SENDER, to: MAILBOX }, log);
    },
  };
}

/** What a scenario's title says of tern's store. */
const STORE_TITLES: Readonly<Record<TernStore, string>> = {
  kv: "",
  pg: "; tern on PostgreSQL",
  pg3: "; 3 tern nodes on one PostgreSQL",
};

function count(n: number): string {
  return n.toLocaleString("en-US");
}

function sizeName(size: number): string {
  return size >= MIB ? `${size / MIB} MiB` : `${size / KIB} KiB`;
}

/** Every scenario of the full bench; `scale` shrinks the message counts for a quick try. */
function allScenarios(scale: number, connections: number): Scenario[] {
  const n = (messages: number) => Math.max(10, Math.round(messages * scale));
  const local = (
    name: string,
    messages: number,
    sessions: number,
    size: number,
    store: TernStore = "kv",
  ) =>
    localScenario(
      name,
      `local ${sizeName(size)} × ${count(n(messages))}, ${sessions} session${
        sessions > 1 ? "s" : ""
      }${STORE_TITLES[store]}`,
      { messages: n(messages), sessions, size },
      store,
    );
  return [
    local("local", 5000, 10, 4 * KIB),
    local("local-1", 5000, 1, 4 * KIB),
    local("local-100k", 5000, 10, 100 * KIB),
    local("local-1m", 200, 10, MIB),
    local("local-pg", 5000, 10, 4 * KIB, "pg"),
    local("local-pg3", 5000, 10, 4 * KIB, "pg3"),
    // The same load on a machine of one core, then of two (taskset: the MTA and smtp-source).
    ...[1, 2].map((cores) =>
      localScenario(
        `cores-${cores}`,
        `local 4 KiB × ${count(n(5000))}, 10 sessions, MTA and load on ${cores} core${
          cores > 1 ? "s" : ""
        }`,
        { messages: n(5000), sessions: 10, size: 4 * KIB },
        "kv",
        Array.from({ length: cores }, (_, i) => i).join(","),
      )
    ),
    relayScenario(
      "relay",
      `relay 4 KiB × ${count(n(5000))}, 10 sessions`,
      { messages: n(5000), sessions: 10, size: 4 * KIB },
    ),
    relayScenario(
      "sign",
      `relay, DKIM-signed (rsa-2048), 4 KiB × ${count(n(5000))}, 10 sessions`,
      { messages: n(5000), sessions: 10, size: 4 * KIB },
      true,
    ),
    milterScenario("milter", "inet", { messages: n(5000), sessions: 10, size: 4 * KIB }),
    milterScenario("milter-unix", "unix", { messages: n(5000), sessions: 10, size: 4 * KIB }),
    idleScenario(connections),
    idleManyScenario(10_000, 20),
    latencyScenario(
      "latency",
      `latency 4 KiB × ${count(n(5000))}, 10 sessions (load.ts)`,
      { messages: n(5000), sessions: 10, size: 4 * KIB },
      false,
    ),
  ];
}

/** CI's smoke test: tern alone, a few hundred messages, no Postfix tools. */
function smokeScenarios(): Scenario[] {
  return [
    latencyScenario(
      "local",
      "local 4 KiB × 300, 10 sessions (load.ts)",
      { messages: 300, sessions: 10, size: 4 * KIB },
      true,
    ),
    idleScenario(100),
  ];
}

/**
 * How each MTA's delivered rate grew from one core to two: the median of
 * `cores-2` over the median of `cores-1`, one row when both ran.
 */
function scalingRows(rows: readonly Row[]): Row[] {
  const delivered = (cores: number) =>
    rows.find((r) =>
      r.scenario.endsWith(`on ${cores} core${cores > 1 ? "s" : ""}`) &&
      r.metric === "delivered msg/s"
    );
  const one = delivered(1);
  const two = delivered(2);
  if (one === undefined || two === undefined) return [];
  const ratio = (a: readonly number[] | null, b: readonly number[] | null) =>
    a === null || b === null || a.length === 0 || b.length === 0 ? [] : [median(b) / median(a)];
  return [{
    scenario: "scaling: cores-2 / cores-1",
    metric: "delivered, 2 cores / 1",
    digits: 2,
    tern: ratio(one.tern, two.tern),
    postfix: two.postfix === null ? null : ratio(one.postfix, two.postfix),
  }];
}

/** Whether a scenario name matches one of the `--scenario` patterns (`*` = anything). */
function selected(name: string, patterns: readonly string[]): boolean {
  return patterns.some((p) =>
    new RegExp(`^${p.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replaceAll("*", ".*")}$`).test(name)
  );
}

const USAGE =
  `usage: deno task bench [--scenario NAME[,NAME...]] [--runs N] [--mta tern|postfix|both]
                       [--scale F] [--connections N] [--keep] [--tern-flags="FLAGS"]
                       [--tern-workers N]
       deno task bench --growth [--runs N] [--scale F] [--depth N] [--parts size,depth,list]
                       [--depth-store FILE]
       deno task bench --smoke
scenarios: local local-1 local-100k local-1m local-pg local-pg3 cores-1 cores-2 relay
           sign milter milter-unix idle idle-10k latency auth-cost
           (* is a wildcard; auth-cost is tern's code alone, no MTA; idle-10k is tern only)`;

/** Runs one scenario on one MTA once; `null` (and a logged error) if it failed. */
async function runOnce(
  scenario: Scenario,
  mta: MtaName,
  context: Context,
): Promise<Record<string, number> | null> {
  try {
    const needs = {
      sink: scenario.sink ?? false,
      sign: scenario.sign ?? false,
      store: scenario.store ?? "kv",
      milter: scenario.milter ?? null,
      cpus: scenario.cpus ?? null,
    };
    return await withInstance(mta, context, needs, scenario.run);
  } catch (error: unknown) {
    log(`  ${mta}: FAILED: ${error instanceof Error ? error.message : String(error)}`);
    return null;
  }
}

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: Deno.args,
      options: {
        smoke: { type: "boolean" },
        growth: { type: "boolean" },
        depth: { type: "string" },
        "depth-store": { type: "string" },
        parts: { type: "string" },
        runs: { type: "string" },
        scenario: { type: "string", multiple: true },
        mta: { type: "string" },
        scale: { type: "string" },
        connections: { type: "string" },
        keep: { type: "boolean" },
        "tern-flags": { type: "string" },
        "tern-workers": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
    }));
  } catch (error: unknown) {
    console.error(`${error instanceof Error ? error.message : String(error)}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const smoke = values.smoke ?? false;
  const runs = smoke ? 1 : Number(values.runs ?? 3);
  const scale = Number(values.scale ?? 1);
  const connections = Number(values.connections ?? 1000);
  const mtaChoice = smoke ? "tern" : values.mta ?? "both";
  if (!["tern", "postfix", "both"].includes(mtaChoice) || !(runs >= 1) || !(scale > 0)) {
    console.error(USAGE);
    return 2;
  }
  const mtas: MtaName[] = mtaChoice === "both" ? ["tern", "postfix"] : [mtaChoice as MtaName];
  let growthArgs: GrowthArgs;
  try {
    growthArgs = parseGrowthArgs(values);
  } catch (error: unknown) {
    console.error(`${error instanceof Error ? error.message : String(error)}\n${USAGE}`);
    return 2;
  }
  const patterns = (values.scenario ?? ["*"]).flatMap((s) => s.split(",")).filter((s) => s);
  const scenarios = smoke
    ? smokeScenarios()
    : allScenarios(scale, connections).filter((s) => selected(s.name, patterns));
  // Not a scenario of an MTA: tern's signing and verifying code, timed in this process.
  const authCost = !smoke && !values.growth && mtas.includes("tern") &&
    selected(AUTH_COST, patterns);
  if (!values.growth && scenarios.length === 0 && !authCost) {
    console.error(`no scenario matches ${patterns.join(",")}\n${USAGE}`);
    return 2;
  }

  // smtp-source and smtp-sink come with Postfix: every mode but --smoke needs them.
  if (!smoke) await ensurePostfix(log);

  const root = await Deno.makeTempDir({ prefix: "tern-bench-" });
  // Postfix's daemons (user postfix) and virtual(8) (nobody) must reach their directories.
  await Deno.chmod(root, 0o755);
  const spread = await spreadSubdirectories(root);
  if (!spread) log("chattr +T failed: runs share block groups (one's deletions can slow the next)");
  const deferDeletion = await freeBytes(root) >= DEFER_DELETION_MIN_FREE;
  if (!deferDeletion) {
    log(
      "less than 20 GiB free: each run's files are deleted before the next run (which can slow it)",
    );
  }
  const context: Context = {
    root,
    keep: values.keep ?? false,
    denoFlags: (values["tern-flags"] ?? "").split(" ").filter((f) => f),
    ternWorkers: values["tern-workers"] === undefined ? null : Number(values["tern-workers"]),
    deferDeletion,
  };
  const cleanUp = async () => {
    for (const r of [...running]) await r.stop().catch(() => {});
    for (const d of dumpDirs) await Deno.remove(d, { recursive: true }).catch(() => {});
    if (!context.keep) await Deno.remove(root, { recursive: true }).catch(() => {});
  };
  const onSignal = () => {
    log("interrupted: stopping the MTAs");
    void cleanUp().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);

  try {
    const fsyncs: number[] = [];
    for (let i = 0; i < (smoke ? 1 : 3); i++) {
      fsyncs.push(await fsyncsPerSecond(root, smoke ? 0.5 : 1));
    }
    const header = [
      `# tern bench ${new Date().toISOString()}`,
      `deno ${Deno.version.deno}; ${
        mtas.includes("postfix") && !values.growth ? `Postfix ${await postfixVersion()}; ` : ""
      }${cpus().length} CPUs (${cpus()[0]?.model.trim() ?? "?"}); load average ${
        loadavg().map((l) => l.toFixed(2)).join(" ")
      }`,
      `disk: ${
        summary(fsyncs, 0)
      } fsyncs/s (4 KiB write + fsync, ${root}): the ceiling of one fsync per message`,
      `each figure: median (min–max) of ${runs} run${
        runs > 1 ? "s" : ""
      }; rates: higher is better; ` +
      `latency, memory: lower is better`,
    ].join("\n");
    console.log(header + "\n");

    if (values.growth) {
      console.log(
        await runGrowth({
          root,
          runs,
          scale,
          keep: context.keep,
          log,
          denoFlags: context.denoFlags,
          deferDeletion: context.deferDeletion,
          ...growthArgs,
        }),
      );
      return 0;
    }

    const rows: Row[] = [];
    let failures = 0;
    for (const scenario of scenarios) {
      const results = new Map<MtaName, Record<string, number>[]>(mtas.map((m) => [m, []]));
      for (let run = 0; run < runs; run++) {
        // Take turns: tern first in even runs, Postfix first in odd ones.
        const order = run % 2 === 0 ? mtas : [...mtas].reverse();
        for (const mta of order) {
          if (scenario.mtas !== undefined && !scenario.mtas.includes(mta)) continue;
          log(`${scenario.name} run ${run + 1}/${runs} ${mta}`);
          const figures = await runOnce(scenario, mta, context);
          if (figures === null) {
            failures++;
            continue;
          }
          log(
            `  ${
              scenario.metrics.map((m) => `${m.label} ${figures[m.key]?.toFixed(m.digits)}`).join(
                ", ",
              )
            }`,
          );
          results.get(mta)!.push(figures);
        }
      }
      for (const metric of scenario.metrics) {
        const values = (mta: MtaName) => results.get(mta)?.map((f) => f[metric.key]!) ?? null;
        rows.push({
          scenario: scenario.title,
          metric: metric.label,
          digits: metric.digits,
          tern: values("tern") ?? [],
          postfix: mtas.includes("postfix") && (scenario.mtas?.includes("postfix") ?? true)
            ? values("postfix")
            : null,
        });
      }
    }
    rows.push(...scalingRows(rows));
    if (rows.length > 0) console.log(renderTable(rows));
    if (authCost) {
      log("auth-cost: signing and verifying in this process");
      console.log(`${rows.length > 0 ? "\n" : ""}${await runAuthCost({ scale })}`);
    }
    if (failures > 0) console.log(`\n${failures} run(s) failed: see the messages above`);
    return failures > 0 ? 1 : 0;
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
    await cleanUp();
  }
}

if (import.meta.main) Deno.exit(await main());
