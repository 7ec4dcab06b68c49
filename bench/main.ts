/**
 * `deno task bench`: how fast tern takes and delivers mail on this machine.
 *
 * Each scenario starts `tern serve` afresh on a temporary data directory,
 * drives it with {@linkcode runLoad} over loopback, and measures the accept
 * rate (messages acknowledged per second until the load finishes), the
 * delivered rate (until every file is in the Maildir's `new/`) and the
 * latency from the end of DATA to the 250. Every 250 still means "durably
 * stored" and every Maildir file is fsynced. Each figure is the median of
 * the runs, with min and max. Beside them: the disk's fsyncs per second
 * (4 KiB write + fsync), the physical ceiling of any durable MTA here.
 *
 * `deno task bench --smoke` runs a few hundred messages once: it only
 * checks that the harness works, and CI runs it.
 *
 * @module
 */

import { join } from "node:path";
import { parseArgs } from "node:util";
import { runLoad } from "./load.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

interface Scenario {
  name: string;
  messages: number;
  sessions: number;
  size: number;
}

interface Measure {
  acceptRate: number;
  deliveredRate: number;
  p50: number;
  p99: number;
}

async function fsyncsPerSecond(dir: string, seconds = 1): Promise<number> {
  const file = await Deno.open(join(dir, "fsync.test"), { write: true, create: true });
  const block = new Uint8Array(4096);
  let n = 0;
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    await file.write(block);
    await file.sync();
    n++;
  }
  file.close();
  return n / seconds;
}

async function countFiles(dir: string): Promise<number> {
  let n = 0;
  try {
    for await (const _ of Deno.readDir(dir)) n++;
  } catch {
    return 0;
  }
  return n;
}

async function startTern(dir: string): Promise<{ port: number; stop: () => Promise<void> }> {
  const file = join(dir, "tern.yaml");
  await Deno.writeTextFile(
    file,
    `hostname: bench.test\ndata_dir: ./data\nlisteners: [{ address: 127.0.0.1, port: 0, mode: mx }]\n` +
      `local_domains: [bench.test]\nlimits: { max_connections_per_ip: 2000, max_connections: 5000 }\n`,
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-kv", MAIN, "serve", "--config", file],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let text = "";
  const reader = child.stderr.getReader();
  const decoder = new TextDecoder();
  let port = 0;
  while (port === 0) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`tern serve did not start: ${text}`);
    text += decoder.decode(value);
    const m = /port=(\d+)/.exec(text);
    if (m) port = Number(m[1]);
  }
  void (async () => {
    while (!(await reader.read()).done) { /* drain */ }
  })();
  return {
    port,
    stop: async () => {
      child.kill("SIGTERM");
      await child.status;
    },
  };
}

async function runOnce(s: Scenario): Promise<Measure> {
  const dir = await Deno.makeTempDir({ prefix: "tern-bench-" });
  const tern = await startTern(dir);
  try {
    const started = performance.now();
    const load = await runLoad({
      host: "127.0.0.1",
      port: tern.port,
      messages: s.messages,
      sessions: s.sessions,
      size: s.size,
      recipient: "sink@bench.test",
    });
    if (load.accepted !== s.messages) {
      throw new Error(`only ${load.accepted} of ${s.messages} accepted`);
    }
    const newDir = join(dir, "data", "mail", "bench.test", "sink", "new");
    while (await countFiles(newDir) < s.messages) await new Promise((r) => setTimeout(r, 20));
    const delivered = performance.now() - started;
    const pick = (q: number) =>
      load
        .latenciesMs[
          Math.min(load.latenciesMs.length - 1, Math.floor(q * load.latenciesMs.length))
        ]!;
    return {
      acceptRate: s.messages / (load.elapsedMs / 1000),
      deliveredRate: s.messages / (delivered / 1000),
      p50: pick(0.5),
      p99: pick(0.99),
    };
  } finally {
    await tern.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

function summary(values: number[], digits = 0): string {
  const sorted = [...values].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  return `${median.toFixed(digits)} (min ${sorted[0]!.toFixed(digits)}, max ${
    sorted.at(-1)!.toFixed(digits)
  })`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: { smoke: { type: "boolean" }, runs: { type: "string" } },
    strict: true,
  });
  const runs = values.smoke ? 1 : Number(values.runs ?? 3);
  const scenarios: Scenario[] = values.smoke
    ? [{ name: "local 4 KiB x 10 sessions (smoke)", messages: 200, sessions: 10, size: 4096 }]
    : [
      { name: "local 4 KiB x 10 sessions", messages: 5000, sessions: 10, size: 4096 },
      { name: "local 4 KiB x 1 session", messages: 2000, sessions: 1, size: 4096 },
      { name: "local 100 KiB x 10 sessions", messages: 2000, sessions: 10, size: 100 * 1024 },
      { name: "local 1 MiB x 10 sessions", messages: 200, sessions: 10, size: 1024 * 1024 },
    ];
  const tmp = await Deno.makeTempDir({ prefix: "tern-fsync-" });
  const fsyncs = await fsyncsPerSecond(tmp);
  await Deno.remove(tmp, { recursive: true });
  console.log(`disk: ${fsyncs.toFixed(0)} fsyncs/s (4 KiB write + fsync)`);
  console.log(`runs per figure: ${runs}; figures are median (min, max)\n`);
  for (const s of scenarios) {
    const measures: Measure[] = [];
    for (let i = 0; i < runs; i++) measures.push(await runOnce(s));
    console.log(s.name);
    console.log(`  accepted   msg/s  ${summary(measures.map((m) => m.acceptRate))}`);
    console.log(`  delivered  msg/s  ${summary(measures.map((m) => m.deliveredRate))}`);
    console.log(`  latency p50 ms    ${summary(measures.map((m) => m.p50), 1)}`);
    console.log(`  latency p99 ms    ${summary(measures.map((m) => m.p99), 1)}`);
  }
}

if (import.meta.main) await main();
