/**
 * `deno task bench --growth`: how tern's costs grow (tern only).
 *
 * 1. Message size from 1 KiB to 10 MiB: accept and delivery rates, and
 *    tern's peak memory (VmHWM) over the run. Streaming should keep memory
 *    flat as messages grow.
 * 2. Queue depth: the intake of the local scenario's load with an empty
 *    queue, then with 1,000,000 deferred messages already in it (`--depth
 *    N`), the two taking turns run by run. One deferred message is written
 *    with {@linkcode KvQueue}, claimed and recorded as deferred by a failed
 *    attempt (`4.4.1`, next attempt in a day), exactly as tern's delivery
 *    loop leaves a message whose next hop refuses connections; the others
 *    are copies of its stored entries under other ids, many per atomic
 *    operation. tern's route for their domain is a closed loopback port. The
 *    store is made once, and every run works on it in place (a hard link).
 * 3. `tern queue list --json` over those messages: time to the first line,
 *    time to the last, and peak memory, against an empty queue. It should
 *    stream (flat memory, first line at once).
 *
 * `--parts size,depth,list` runs some of them only.
 *
 * @module
 */

import { join } from "node:path";
import { commitOp, type Mutation, NO_COST, set, splitIntoOps } from "../queue/kv_atomic.ts";
import { KEY, PREFIX, type StoredMeta } from "../queue/kv_keys.ts";
import { KvQueue } from "../queue/kv_queue.ts";
import { newQueueId } from "../queue/queue_id.ts";
import type { RecipientState } from "../queue/types.ts";
import { countFiles, waitForCount } from "./_disk.ts";
import { freePort } from "./_net.ts";
import { summary } from "./_table.ts";
import { peakRss, PeakWatcher, treeCpuSeconds, treeMemory } from "./memory.ts";
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
  /** Multiplies message counts (and the default queue depth). */
  readonly scale: number;
  /** Deferred messages in the deep queue; default 1,000,000 × `scale`. */
  readonly depth?: number;
  /**
   * A store of deferred messages made by an earlier run (`--keep` keeps it,
   * in `deferred-*`/queue.sqlite3), used instead of filling a new one: a
   * million take minutes. Its messages are due a day after it was made. The
   * runs work on it in place (they leave its messages as they were).
   */
  readonly depthStore?: string;
  /** The measurements to run; default all three. */
  readonly parts?: readonly GrowthPart[];
  /**
   * Leave each run's directory until the end of its measurement rather than
   * delete it before the next run (when the disk has room for them all).
   */
  readonly deferDeletion?: boolean;
  /** Deno flags for tern's process (`--cpu-prof ...`). */
  readonly denoFlags?: readonly string[];
  /** Keep the directories. */
  readonly keep: boolean;
  /** Progress lines. */
  readonly log: (line: string) => void;
}

/** The three measurements: message size, queue depth, `tern queue list`. */
export type GrowthPart = "size" | "depth" | "list";

const GROWTH_PARTS: readonly GrowthPart[] = ["size", "depth", "list"];

/**
 * Reads `--parts size,depth,list`.
 *
 * @param text Comma-separated part names.
 * @returns The parts named.
 * @throws {Error} On a name that is not a part.
 */
export function parseGrowthParts(text: string): GrowthPart[] {
  const parts = text.split(",").map((p) => p.trim()).filter((p) => p !== "");
  for (const p of parts) {
    if (!(GROWTH_PARTS as readonly string[]).includes(p)) {
      throw new Error(`--parts: "${p}" is not one of ${GROWTH_PARTS.join(", ")}`);
    }
  }
  if (parts.length === 0) throw new Error(`--parts: name one of ${GROWTH_PARTS.join(", ")}`);
  return parts as GrowthPart[];
}

/** The options of {@linkcode runGrowth} that come from `--depth`, `--parts` and `--depth-store`. */
export type GrowthArgs = Pick<GrowthOptions, "depth" | "parts" | "depthStore">;

/**
 * Reads `--depth N`, `--parts LIST` and `--depth-store FILE`.
 *
 * @param values The flags' texts, absent when not given.
 * @returns The options they set.
 * @throws {Error} With a one-line message when one is wrong.
 */
export function parseGrowthArgs(
  values: { depth?: string; parts?: string; "depth-store"?: string },
): GrowthArgs {
  const depth = values.depth === undefined ? undefined : Number(values.depth);
  if (depth !== undefined && !(Number.isSafeInteger(depth) && depth >= 1)) {
    throw new Error(`--depth must be a whole number of messages from 1, found "${values.depth}"`);
  }
  return {
    ...(depth === undefined ? {} : { depth }),
    ...(values.parts === undefined ? {} : { parts: parseGrowthParts(values.parts) }),
    ...(values["depth-store"] === undefined ? {} : { depthStore: values["depth-store"] }),
  };
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
 * Puts a queue store into a run's data directory as a hard link: every run
 * works on the one store, in place. A copy per run (gigabytes for a million
 * messages) filled the page cache until the runs paid for reclaiming it
 * (system time counted as tern's), and deleting each copy slowed the disk
 * for the run that followed. A run leaves the store as it found it: the
 * deferred messages stay deferred, and the run's own messages are delivered
 * and removed (their pages left free for the next run, as in any store that
 * has been running a while).
 */
async function linkStore(store: string, dataDir: string): Promise<void> {
  await Deno.mkdir(dataDir, { recursive: true });
  await Deno.link(store, join(dataDir, "queue.sqlite3"));
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
  if (store !== null) await linkStore(store, join(dir, "data"));
  const started = performance.now();
  const tern = await Tern.start({
    dir,
    port: freePort(),
    localDomain: LOCAL_DOMAIN,
    routes: { [DEFERRED_DOMAIN]: `127.0.0.1:${freePort()}` },
    retry: ["1h"],
    // Every message through the store, whose growth this measures.
    deliverAtAcceptance: false,
    ...(options.denoFlags === undefined ? {} : { denoFlags: options.denoFlags }),
  });
  return { tern, dir, startMs: performance.now() - started };
}

/**
 * Stops tern and deletes its directory, or, with `later`, leaves it to be
 * deleted after the last run: deleting a run's Maildir (thousands of files)
 * or a queue store of gigabytes slows the disk for a while (ext4 skips
 * recently deleted inodes; the discards of the freed blocks), and the run
 * that follows would pay for it. Without `later` the empty-queue runs, which
 * follow the deep ones, paid for deleting the deep store.
 */
async function finish(
  options: GrowthOptions,
  tern: Tern,
  dir: string,
  later?: string[],
): Promise<void> {
  await tern.stop();
  if (options.keep) return;
  if (later !== undefined && options.deferDeletion === true) later.push(dir);
  else await Deno.remove(dir, { recursive: true }).catch(() => {});
}

/** Sends a load with smtp-source and waits for its delivery; rates, CPU ms/msg and memory. */
async function intake(
  tern: Tern,
  load: { messages: number; size: number; sessions: number },
): Promise<{ accepted: number; delivered: number; cpu: number; peak: number; after: number }> {
  const cpu = await treeCpuSeconds(tern.pid);
  const source = await runSmtpSource({ port: tern.port, ...load, from: SENDER, to: MAILBOX });
  const newDir = tern.newDir(MAILBOX);
  const doneAt = await waitForCount(() => countFiles(newDir), load.messages, {
    what: "messages in Maildir new/",
  });
  const cpuAfter = await treeCpuSeconds(tern.pid);
  return {
    accepted: load.messages / (source.elapsedMs / 1000),
    delivered: load.messages / ((doneAt - source.startedAt) / 1000),
    cpu: (cpuAfter - cpu) * 1000 / load.messages,
    peak: await peakRss(tern.pid),
    after: (await treeMemory(tern.pid)).rss,
  };
}

/** The next attempt of the deferred messages: far enough that no run of the bench reaches it. */
const DEFERRED_FOR_MS = 24 * 3_600_000;
/** Messages cloned per batch of atomic operations (bounds the fill's memory). */
const CLONE_BATCH = 5000;

/** The raw KV entries of one queued message, as {@linkcode KvQueue} wrote them. */
interface MessageEntries {
  readonly meta: StoredMeta;
  readonly chunks: readonly Uint8Array[];
  readonly recipients: readonly RecipientState[];
}

/**
 * Makes one deferred message the way tern does: received and committed
 * through {@linkcode KvQueue}, claimed, and recorded as deferred by a failed
 * attempt (`4.4.1`), exactly as the delivery loop leaves a message whose
 * next hop refuses connections.
 */
async function deferOne(path: string, size: number): Promise<void> {
  const queue = await KvQueue.open(path, { retry: [DEFERRED_FOR_MS], maxAge: 5 * 86_400_000 });
  try {
    const rcpt = `rcpt@${DEFERRED_DOMAIN}`;
    const body = new TextEncoder().encode(
      `From: <${SENDER}>\r\nTo: <${rcpt}>\r\nSubject: deferred\r\n\r\n` +
        `${"x".repeat(76)}\r\n`.repeat(Math.max(1, Math.floor(size / 78))),
    );
    const message = await queue.receive({
      envelope: { reversePath: SENDER, forwardPaths: [rcpt], body: "7BIT", smtputf8: false },
      recipients: [{ address: rcpt, originalRecipient: rcpt, mailbox: null }],
      clientAddress: "127.0.0.1",
      now: Date.now(),
    });
    await message.write(body);
    await message.commit();
    const now = Date.now();
    const [claim] = await queue.claimDue({ now, limit: 1 });
    if (claim === undefined) throw new Error("fillDeferred: the template message was not due");
    await queue.recordAttempt(claim, [{
      index: 0,
      status: "deferred",
      reply: { code: 0, enhancedStatus: "4.4.1", text: "Connection refused" },
    }], now);
  } finally {
    await queue.close();
  }
}

/** Reads the one message of a store as raw entries. */
async function readTemplate(kv: Deno.Kv): Promise<MessageEntries> {
  const metas = await Array.fromAsync(kv.list<StoredMeta>({ prefix: PREFIX.msg }));
  const meta = metas[0]?.value;
  if (metas.length !== 1 || meta === undefined || meta.pathPages !== 0 || meta.spool) {
    throw new Error("fillDeferred: expected one small template message in the store");
  }
  const chunks = await Array.fromAsync(kv.list<Uint8Array>({ prefix: PREFIX.chunk(meta.queueId) }));
  const recipients = await Array.fromAsync(
    kv.list<RecipientState>({ prefix: PREFIX.rcpt(meta.queueId) }),
  );
  return { meta, chunks: chunks.map((e) => e.value), recipients: recipients.map((e) => e.value) };
}

/**
 * The writes of a copy of `template` that arrived `ageMs` earlier, under a
 * new queue id: every time it holds moves back by `ageMs`, so each copy has
 * its own arrival millisecond (and so its own id) and its own due key.
 */
function cloneWrites(template: MessageEntries, ageMs: number): Mutation[] {
  const { meta } = template;
  const arrival = meta.arrival - ageMs;
  const id = newQueueId(arrival);
  const due = meta.due === null ? null : meta.due - ageMs;
  const writes = [
    ...template.chunks.map((chunk, n) => set(KEY.chunk(id, n), chunk)),
    ...template.recipients.map((r, n) =>
      set(KEY.rcpt(id, n), {
        ...r,
        lastAttempt: r.lastAttempt === null ? null : r.lastAttempt - ageMs,
      })
    ),
    set(
      KEY.msg(id),
      {
        ...meta,
        queueId: id,
        arrival,
        nextAttempt: meta.nextAttempt - ageMs,
        due,
      } satisfies StoredMeta,
    ),
  ];
  if (due !== null) writes.push(set(KEY.due(due, id), null));
  return writes;
}

/**
 * Fills a queue store with `count` deferred messages of about `size` octets.
 *
 * One message is made deferred through {@linkcode KvQueue} as tern's
 * delivery loop leaves it (see {@linkcode deferOne}); the others are copies
 * of its stored entries (the same layout, byte for byte, under other ids and
 * earlier times), written many per atomic operation: a million messages take
 * a minute or two instead of the quarter of an hour that a million uploads,
 * claims and attempts would. Their next attempt is a day away, so no run of
 * the bench reaches it.
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
  const started = performance.now();
  await deferOne(path, size);
  const kv = await Deno.openKv(path);
  try {
    const template = await readTemplate(kv);
    // Copy i arrived (count - i) ms before the template: distinct arrival
    // times, so distinct ids, in the order tern would have given them.
    for (let first = 1; first < count; first += CLONE_BATCH) {
      const last = Math.min(count, first + CLONE_BATCH);
      const writes: Mutation[] = [];
      for (let i = first; i < last; i++) writes.push(...cloneWrites(template, count - i));
      for (const op of splitIntoOps(writes, NO_COST)) {
        if ((await commitOp(kv, [], op)) === null) throw new Error("fillDeferred: commit failed");
      }
    }
  } finally {
    kv.close();
  }
  log(`  ${count} deferred messages in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}

/** Runs `tern queue list --json`; lines printed, seconds to the first and the last, peak RSS. */
async function queueList(
  configFile: string,
): Promise<{ lines: number; first: number; seconds: number; peak: number }> {
  const started = performance.now();
  const child = ternCommand(["queue", "list", "--config", configFile, "--json"]).spawn();
  const watcher = new PeakWatcher(child.pid, 10);
  let lines = 0;
  let first = NaN;
  for await (const chunk of child.stdout) {
    for (const byte of chunk) if (byte === 10) lines++;
    if (lines > 0 && Number.isNaN(first)) first = (performance.now() - started) / 1000;
  }
  const errors = await new Response(child.stderr).text();
  const { code } = await child.status;
  const peak = watcher.stop();
  if (code !== 0) throw new Error(`tern queue list failed (exit ${code}): ${errors.trim()}`);
  return { lines, first, seconds: (performance.now() - started) / 1000, peak };
}

type Row = (string | [number[], number])[];

/** Part 1: accept and delivery rates and peak memory by message size. */
async function sizeGrowth(options: GrowthOptions, n: (messages: number) => number) {
  const { runs, log } = options;
  const sizeRows: Row[] = [];
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
  return [
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
  ].join("\n");
}

/** One run of part 2: tern on a copy of `store` (or an empty queue) takes the load. */
async function depthRun(
  options: GrowthOptions,
  load: { messages: number; size: number; sessions: number },
  store: string | null,
  later: string[],
) {
  const { tern, dir, startMs } = await startTern(options, "depth", store);
  try {
    return { startMs, ...await intake(tern, load) };
  } finally {
    await finish(options, tern, dir, later);
  }
}

/**
 * Part 2: the local load's intake with an empty queue and with `depth`
 * deferred messages, the two taking turns (empty, deep, empty, deep...) so
 * that a change in the machine's load falls on both alike.
 */
async function depthGrowth(
  options: GrowthOptions,
  n: (messages: number) => number,
  template: string,
  depth: number,
): Promise<string> {
  const { runs, log } = options;
  const load = { messages: n(5000), size: 4 * KIB, sessions: 10 };
  const stores = [null, template];
  const figures = stores.map(() => ({
    start: [] as number[],
    accepted: [] as number[],
    delivered: [] as number[],
    cpu: [] as number[],
    peak: [] as number[],
  }));
  const later: string[] = [];
  try {
    for (let run = 0; run < runs; run++) {
      for (const [i, store] of stores.entries()) {
        log(`growth intake, queue ${store ? depth : 0}, run ${run + 1}/${runs}`);
        const r = await depthRun(options, load, store, later);
        figures[i]!.start.push(r.startMs);
        figures[i]!.accepted.push(r.accepted);
        figures[i]!.delivered.push(r.delivered);
        figures[i]!.cpu.push(r.cpu);
        figures[i]!.peak.push(r.peak / MIB);
        log(
          `  start ${r.startMs.toFixed(0)} ms, accepted ${r.accepted.toFixed(0)} msg/s, delivered ${
            r.delivered.toFixed(0)
          } msg/s, CPU ${r.cpu.toFixed(2)} ms/msg, peak RSS ${(r.peak / MIB).toFixed(0)} MiB`,
        );
      }
    }
  } finally {
    for (const dir of later) await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  const rows: Row[] = stores.map((store, i) => [
    store ? `${depth.toLocaleString("en-US")} deferred` : "empty",
    [figures[i]!.start, 0],
    [figures[i]!.accepted, 0],
    [figures[i]!.delivered, 0],
    [figures[i]!.cpu, 2],
    [figures[i]!.peak, 0],
  ]);
  return [
    `## tern: intake of 4 KiB × ${load.messages} (10 sessions) by queue depth\n`,
    table(
      [
        "queue before",
        "start ms",
        "accepted msg/s",
        "delivered msg/s",
        "CPU ms/msg",
        "peak RSS MiB",
      ],
      rows,
    ),
  ].join("\n");
}

/** Part 3: `tern queue list --json` over an empty queue and over `depth` messages. */
async function listGrowth(options: GrowthOptions, template: string, depth: number) {
  const { runs, log } = options;
  const listRows: Row[] = [];
  for (const store of [null, template]) {
    const figures = {
      lines: [] as number[],
      first: [] as number[],
      seconds: [] as number[],
      peak: [] as number[],
    };
    for (let run = 0; run < runs; run++) {
      log(`growth queue list, queue ${store ? depth : 0}, run ${run + 1}/${runs}`);
      // A config and a store, no server: `tern queue` reads the store alone.
      const dir = await Deno.makeTempDir({ dir: options.root, prefix: "list-" });
      if (store) await linkStore(store, join(dir, "data"));
      else await Deno.mkdir(join(dir, "data"), { recursive: true });
      const configFile = join(dir, "tern.yaml");
      await Deno.writeTextFile(
        configFile,
        JSON.stringify({ data_dir: join(dir, "data"), local_domains: [LOCAL_DOMAIN] }) + "\n",
      );
      try {
        const r = await queueList(configFile);
        figures.lines.push(r.lines);
        if (r.lines > 0) figures.first.push(r.first); // an empty queue prints no line
        figures.seconds.push(r.seconds);
        figures.peak.push(r.peak / MIB);
        log(
          `  ${r.lines} lines in ${r.seconds.toFixed(1)} s (first after ${
            r.lines > 0 ? r.first.toFixed(2) : "-"
          } s), peak RSS ${(r.peak / MIB).toFixed(0)} MiB`,
        );
      } finally {
        if (!options.keep) await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    }
    listRows.push([
      store ? `${depth.toLocaleString("en-US")} deferred` : "empty",
      [figures.lines, 0],
      [figures.first, 2],
      [figures.seconds, 1],
      [figures.peak, 0],
    ]);
  }
  return [
    "## tern queue list --json\n",
    table(["queue", "lines", "first line s", "seconds", "peak RSS MiB"], listRows),
  ].join("\n");
}

/**
 * Runs the growth measurements (all three unless `options.parts` says).
 *
 * @param options Where, how many runs, how big, which parts.
 * @returns The tables, as text.
 * @throws {RangeError} When the depth is not a positive integer.
 */
export async function runGrowth(options: GrowthOptions): Promise<string> {
  const { log } = options;
  const parts = options.parts ?? GROWTH_PARTS;
  const n = (messages: number) => Math.max(10, Math.round(messages * options.scale));
  const depth = options.depth ?? n(1_000_000);
  if (!Number.isSafeInteger(depth) || depth < 1) {
    throw new RangeError(`--depth must be a whole number of messages from 1, found ${depth}`);
  }
  const out: string[] = [];
  if (parts.includes("size")) out.push(await sizeGrowth(options, n));
  if (!parts.includes("depth") && !parts.includes("list")) return out.join("\n\n");

  const templateDir = await Deno.makeTempDir({ dir: options.root, prefix: "deferred-" });
  let template = join(templateDir, "queue.sqlite3");
  try {
    if (options.depthStore === undefined) {
      log(`growth: filling a queue store with ${depth} deferred messages of 4 KiB`);
      await fillDeferred(template, depth, 4 * KIB, log);
      await syncFile(template); // written back now, not during the first run
    } else {
      template = options.depthStore;
      log(`growth: the queue store ${template}, said to hold ${depth} deferred messages`);
    }
    if (parts.includes("depth")) out.push(await depthGrowth(options, n, template, depth));
    if (parts.includes("list")) out.push(await listGrowth(options, template, depth));
  } finally {
    if (!options.keep) await Deno.remove(templateDir, { recursive: true }).catch(() => {});
  }
  return out.join("\n\n");
}
