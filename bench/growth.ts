/**
 * `deno task bench --growth`: how tern's costs grow (tern only).
 *
 * 1. Message size from 1 KiB to 10 MiB: accept and delivery rates, and
 *    tern's peak memory (VmHWM) over the run. Streaming should keep memory
 *    flat as messages grow.
 * 2. Queue depth: the intake of the local scenario's load with an empty
 *    queue, then with 100,000 deferred messages already in it. The deferred
 *    messages are written with {@linkcode KvQueue} directly (fast, grouped
 *    commits), then claimed and recorded as deferred by a failed attempt
 *    (`4.4.1`, next attempt in an hour), exactly as tern's delivery loop
 *    leaves a message whose next hop refuses connections; tern's route for
 *    their domain is a closed loopback port. The store is made once and
 *    copied for each run.
 * 3. `tern queue list --json` over those 100,000 messages: time and peak
 *    memory, against an empty queue. It should stream (flat memory).
 *
 * @module
 */

import { join } from "node:path";
import { KvQueue } from "../queue/kv_queue.ts";
import { countFiles, waitForCount } from "./_disk.ts";
import { freePort } from "./_net.ts";
import { summary } from "./_table.ts";
import { peakRss, PeakWatcher, treeMemory } from "./memory.ts";
import { runSmtpSource } from "./smtp_source.ts";
import { Tern, ternCommand } from "./tern.ts";

const KIB = 1024;
const MIB = 1024 * 1024;
const LOCAL_DOMAIN = "bench.test";
const MAILBOX = `sink@${LOCAL_DOMAIN}`;
const SENDER = "load@client.bench.test";
/** The domain of the deferred messages, routed to a closed port. */
const DEFERRED_DOMAIN = "deferred.test";

/** Options of {@linkcode runGrowth}. */
export interface GrowthOptions {
  /** The bench's temporary directory. */
  readonly root: string;
  /** Runs per figure. */
  readonly runs: number;
  /** Multiplies message counts (and the queue depth). */
  readonly scale: number;
  /** Keep the directories. */
  readonly keep: boolean;
  /** Progress lines. */
  readonly log: (line: string) => void;
}

interface SizeStep {
  readonly size: number;
  readonly messages: number;
}

const SIZE_STEPS: readonly SizeStep[] = [
  { size: KIB, messages: 5000 },
  { size: 10 * KIB, messages: 2000 },
  { size: 100 * KIB, messages: 1000 },
  { size: MIB, messages: 200 },
  { size: 10 * MIB, messages: 20 },
];

function sizeName(size: number): string {
  return size >= MIB ? `${size / MIB} MiB` : `${size / KIB} KiB`;
}

/** A Markdown table of `median (min–max)` cells. */
function table(header: string[], rows: (string | [number[], number])[][]): string {
  const cells = rows.map((r) => r.map((c) => typeof c === "string" ? c : summary(c[0], c[1])));
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i]!.length)));
  const line = (r: string[]) =>
    `| ${r.map((c, i) => i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)).join(" | ")} |`;
  const rule = `|${
    widths.map((w, i) => i === 0 ? "-".repeat(w + 2) : "-".repeat(w + 1) + ":").join("|")
  }|`;
  return [line(header), rule, ...cells.map(line)].join("\n");
}

/**
 * Copies a queue store and fsyncs the copy. Without the fsync the kernel
 * would still be writing hundreds of megabytes back to disk during the run
 * that follows, and every fsync of that run would wait behind them: the
 * figure would measure the copy, not the queue's depth.
 */
async function copyStore(store: string, to: string): Promise<void> {
  await Deno.copyFile(store, to);
  await syncFile(to);
}

/** fsyncs a file. */
async function syncFile(path: string): Promise<void> {
  const file = await Deno.open(path, { read: true, write: true });
  try {
    await file.sync();
  } finally {
    file.close();
  }
}

/** Starts tern in a new directory, optionally on a copy of a queue store. */
async function startTern(
  options: GrowthOptions,
  name: string,
  store: string | null,
): Promise<{ tern: Tern; dir: string; startMs: number }> {
  const dir = await Deno.makeTempDir({ dir: options.root, prefix: `${name}-` });
  if (store !== null) {
    await Deno.mkdir(join(dir, "data"), { recursive: true });
    await copyStore(store, join(dir, "data", "queue.sqlite3"));
  }
  const started = performance.now();
  const tern = await Tern.start({
    dir,
    port: freePort(),
    localDomain: LOCAL_DOMAIN,
    routes: { [DEFERRED_DOMAIN]: `127.0.0.1:${freePort()}` },
    retry: ["1h"],
  });
  return { tern, dir, startMs: performance.now() - started };
}

async function finish(options: GrowthOptions, tern: Tern, dir: string): Promise<void> {
  await tern.stop();
  if (!options.keep) await Deno.remove(dir, { recursive: true }).catch(() => {});
}

/** Sends a load with smtp-source and waits for its delivery; rates and memory. */
async function intake(
  tern: Tern,
  load: { messages: number; size: number; sessions: number },
): Promise<{ accepted: number; delivered: number; peak: number; after: number }> {
  const source = await runSmtpSource({ port: tern.port, ...load, from: SENDER, to: MAILBOX });
  const newDir = tern.newDir(MAILBOX);
  const doneAt = await waitForCount(() => countFiles(newDir), load.messages, {
    what: "messages in Maildir new/",
  });
  return {
    accepted: load.messages / (source.elapsedMs / 1000),
    delivered: load.messages / ((doneAt - source.startedAt) / 1000),
    peak: await peakRss(tern.pid),
    after: (await treeMemory(tern.pid)).rss,
  };
}

/**
 * Fills a queue store with `count` deferred messages of about `size` octets.
 *
 * @param path The store to create.
 * @param count How many messages.
 * @param size Content size of each.
 * @param log Progress lines.
 * @returns When the store is closed.
 */
export async function fillDeferred(
  path: string,
  count: number,
  size: number,
  log: (line: string) => void,
): Promise<void> {
  const queue = await KvQueue.open(path, { retry: [3_600_000], maxAge: 5 * 86_400_000 });
  const rcpt = `rcpt@${DEFERRED_DOMAIN}`;
  const body = new TextEncoder().encode(
    `From: <${SENDER}>\r\nTo: <${rcpt}>\r\nSubject: deferred\r\n\r\n` +
      `${"x".repeat(76)}\r\n`.repeat(Math.max(1, Math.floor(size / 78))),
  );
  const started = performance.now();
  let next = 0;
  const receiveOne = async () => {
    while (next < count) {
      next++;
      const message = await queue.receive({
        envelope: { reversePath: SENDER, forwardPaths: [rcpt], body: "7BIT", smtputf8: false },
        recipients: [{ address: rcpt, originalRecipient: rcpt, mailbox: null }],
        clientAddress: "127.0.0.1",
        now: Date.now(),
      });
      await message.write(body);
      await message.commit();
    }
  };
  try {
    // Many uploads in flight: their commits share KV operations.
    await Promise.all(Array.from({ length: 256 }, receiveOne));
    const queued = performance.now();
    log(`  queued ${count} in ${((queued - started) / 1000).toFixed(1)} s`);
    let deferred = 0;
    while (deferred < count) {
      const now = Date.now();
      const claims = await queue.claimDue({ now, limit: 500 });
      if (claims.length === 0) break;
      await Promise.all(claims.map((claim) =>
        queue.recordAttempt(claim, [{
          index: 0,
          status: "deferred",
          reply: { code: 0, enhancedStatus: "4.4.1", text: "Connection refused" },
        }], now)
      ));
      deferred += claims.length;
    }
    log(`  deferred ${deferred} in ${((performance.now() - queued) / 1000).toFixed(1)} s`);
  } finally {
    await queue.close();
  }
}

/** Runs `tern queue list --json`; lines printed, seconds, peak RSS. */
async function queueList(
  configFile: string,
): Promise<{ lines: number; seconds: number; peak: number }> {
  const started = performance.now();
  const child = ternCommand(["queue", "list", "--config", configFile, "--json"]).spawn();
  const watcher = new PeakWatcher(child.pid, 10);
  let lines = 0;
  for await (const chunk of child.stdout) {
    for (const byte of chunk) if (byte === 10) lines++;
  }
  const errors = await new Response(child.stderr).text();
  const { code } = await child.status;
  const peak = watcher.stop();
  if (code !== 0) throw new Error(`tern queue list failed (exit ${code}): ${errors.trim()}`);
  return { lines, seconds: (performance.now() - started) / 1000, peak };
}

/**
 * Runs the three growth measurements.
 *
 * @param options Where, how many runs, how big.
 * @returns The tables, as text.
 */
export async function runGrowth(options: GrowthOptions): Promise<string> {
  const { runs, log } = options;
  const n = (messages: number) => Math.max(10, Math.round(messages * options.scale));
  const out: string[] = [];

  // 1. Message size.
  const sizeRows: (string | [number[], number])[][] = [];
  for (const step of SIZE_STEPS) {
    const load = { messages: n(step.messages), size: step.size, sessions: 10 };
    const figures = {
      accepted: [] as number[],
      mibs: [] as number[],
      delivered: [] as number[],
      peak: [] as number[],
      after: [] as number[],
    };
    for (let run = 0; run < runs; run++) {
      log(`growth size ${sizeName(step.size)} run ${run + 1}/${runs}`);
      const { tern, dir } = await startTern(options, "size", null);
      try {
        const r = await intake(tern, load);
        figures.accepted.push(r.accepted);
        figures.mibs.push((r.accepted * step.size) / MIB);
        figures.delivered.push(r.delivered);
        figures.peak.push(r.peak / MIB);
        figures.after.push(r.after / MIB);
        log(
          `  accepted ${r.accepted.toFixed(1)} msg/s, delivered ${
            r.delivered.toFixed(1)
          } msg/s, peak RSS ${(r.peak / MIB).toFixed(0)} MiB`,
        );
      } finally {
        await finish(options, tern, dir);
      }
    }
    sizeRows.push([
      `${sizeName(step.size)} × ${load.messages}`,
      [figures.accepted, 1],
      [figures.mibs, 1],
      [figures.delivered, 1],
      [figures.peak, 0],
      [figures.after, 0],
    ]);
  }
  out.push(
    "## tern: cost by message size (10 sessions, smtp-source, local Maildir)\n",
    table(
      [
        "size × messages",
        "accepted msg/s",
        "accepted MiB/s",
        "delivered msg/s",
        "peak RSS MiB",
        "RSS after MiB",
      ],
      sizeRows,
    ),
  );

  // 2. Queue depth.
  const depth = n(100_000);
  const templateDir = await Deno.makeTempDir({ dir: options.root, prefix: "deferred-" });
  const template = join(templateDir, "queue.sqlite3");
  log(`growth: filling a queue store with ${depth} deferred messages of 4 KiB`);
  await fillDeferred(template, depth, 4 * KIB, log);
  await syncFile(template); // written back now, not during the first run
  const load = { messages: n(5000), size: 4 * KIB, sessions: 10 };
  const depthRows: (string | [number[], number])[][] = [];
  let configFile = "";
  for (const store of [null, template]) {
    const figures = {
      start: [] as number[],
      accepted: [] as number[],
      delivered: [] as number[],
      peak: [] as number[],
    };
    for (let run = 0; run < runs; run++) {
      log(`growth intake, queue ${store ? depth : 0}, run ${run + 1}/${runs}`);
      const { tern, dir, startMs } = await startTern(options, "depth", store);
      try {
        const r = await intake(tern, load);
        figures.start.push(startMs);
        figures.accepted.push(r.accepted);
        figures.delivered.push(r.delivered);
        figures.peak.push(r.peak / MIB);
        log(
          `  start ${startMs.toFixed(0)} ms, accepted ${r.accepted.toFixed(0)} msg/s, delivered ${
            r.delivered.toFixed(0)
          } msg/s`,
        );
      } finally {
        await finish(options, tern, dir);
      }
    }
    depthRows.push([
      store ? `${depth.toLocaleString("en-US")} deferred` : "empty",
      [figures.start, 0],
      [figures.accepted, 0],
      [figures.delivered, 0],
      [figures.peak, 0],
    ]);
  }
  out.push(
    `\n## tern: intake of 4 KiB × ${load.messages} (10 sessions) by queue depth\n`,
    table(
      ["queue before", "start ms", "accepted msg/s", "delivered msg/s", "peak RSS MiB"],
      depthRows,
    ),
  );

  // 3. tern queue list --json.
  const listRows: (string | [number[], number])[][] = [];
  for (const store of [null, template]) {
    const figures = { lines: [] as number[], seconds: [] as number[], peak: [] as number[] };
    for (let run = 0; run < runs; run++) {
      log(`growth queue list, queue ${store ? depth : 0}, run ${run + 1}/${runs}`);
      // A config and a store, no server: `tern queue` reads the store alone.
      const dir = await Deno.makeTempDir({ dir: options.root, prefix: "list-" });
      await Deno.mkdir(join(dir, "data"), { recursive: true });
      if (store) await copyStore(store, join(dir, "data", "queue.sqlite3"));
      configFile = join(dir, "tern.yaml");
      await Deno.writeTextFile(
        configFile,
        JSON.stringify({ data_dir: join(dir, "data"), local_domains: [LOCAL_DOMAIN] }) + "\n",
      );
      try {
        const r = await queueList(configFile);
        figures.lines.push(r.lines);
        figures.seconds.push(r.seconds);
        figures.peak.push(r.peak / MIB);
        log(
          `  ${r.lines} lines in ${r.seconds.toFixed(1)} s, peak RSS ${
            (r.peak / MIB).toFixed(0)
          } MiB`,
        );
      } finally {
        if (!options.keep) await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    }
    listRows.push([
      store ? `${depth.toLocaleString("en-US")} deferred` : "empty",
      [figures.lines, 0],
      [figures.seconds, 1],
      [figures.peak, 0],
    ]);
  }
  if (!options.keep) await Deno.remove(templateDir, { recursive: true }).catch(() => {});
  out.push(
    "\n## tern queue list --json\n",
    table(["queue", "lines", "seconds", "peak RSS MiB"], listRows),
  );
  return out.join("\n");
}
