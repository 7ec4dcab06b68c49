import assert from "node:assert/strict";
import { createLogger } from "./logger.ts";
import { concatBytes } from "../bytes/concat.ts";

const LOGGER = new URL("./logger.ts", import.meta.url).href;

/** Runs a script that logs to standard error, and returns the lines it wrote there. */
async function stderrOf(body: string): Promise<string[]> {
  return (await run(body)).lines;
}

/** Runs a script that logs to standard error: its log lines, its exit code, all it wrote there. */
async function run(body: string): Promise<{ lines: string[]; code: number; stderr: string }> {
  const script = `import { createLogger } from "${LOGGER}";
const log = createLogger({ now: () => 0 });
${body}`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--quiet", script],
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  const lines = stderr.split("\n").filter((line) => line.startsWith("1970"));
  return { lines, code: out.code, stderr };
}

Deno.test("standard error gets every line in order, however the process ends", async (t) => {
  const lines = (n: number) =>
    Array.from(
      { length: n },
      (_, i) => `1970-01-01T00:00:00.000Z info - session.connect n=${i}`,
    );
  await t.step("a natural end", async () => {
    assert.deepEqual(
      await stderrOf(
        `for (let n = 0; n < 3; n++) log.log("info", "session.connect", undefined, { n });`,
      ),
      lines(3),
    );
  });
  await t.step("Deno.exit", async () => {
    assert.deepEqual(
      await stderrOf(
        `for (let n = 0; n < 3; n++) log.log("info", "session.connect", undefined, { n });
Deno.exit(2);`,
      ),
      lines(3),
    );
  });
  await t.step("an uncaught error, which still ends the process as it would", async () => {
    const r = await run(
      `for (let n = 0; n < 3; n++) log.log("info", "session.connect", undefined, { n });
throw new Error("boom");`,
    );
    assert.deepEqual(r.lines, lines(3));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /Uncaught.*boom/);
  });
  await t.step("an unhandled rejection, after a timer", async () => {
    assert.deepEqual(
      await stderrOf(`await new Promise((r) => setTimeout(r, 5));
for (let n = 0; n < 3; n++) log.log("info", "session.connect", undefined, { n });
Promise.reject(new Error("boom"));`),
      lines(3),
    );
  });
  await t.step("more lines than one batch holds", async () => {
    assert.deepEqual(
      await stderrOf(
        `for (let n = 0; n < 2000; n++) log.log("info", "session.connect", undefined, { n });`,
      ),
      lines(2000),
    );
  });
});

Deno.test("threads writing to one standard error pipe never cut each other's lines", async () => {
  // The main thread and two workers log at once, lines of varied length (one
  // longer than a pipe's atomic write among them), 16 KiB batches each.
  const dir = await Deno.makeTempDir({ prefix: "tern_logger_test_" });
  try {
    const writer = `${dir}/writer.ts`;
    await Deno.writeTextFile(
      writer,
      `import { createLogger } from "${LOGGER}";
export function write(name: string): void {
  const log = createLogger({ now: () => 0 });
  for (let n = 0; n < 3000; n++) {
    const pad = "x".repeat(n === 1500 ? 6000 : 1 + (n * 37) % 300);
    log.log("info", "session.connect", undefined, { thread: name, n, pad });
  }
}
if ("WorkerGlobalScope" in globalThis) {
  self.onmessage = (e: MessageEvent<string>) => { write(e.data); self.postMessage("done"); };
}
`,
    );
    const main = `${dir}/main.ts`;
    await Deno.writeTextFile(
      main,
      `import { write } from "./writer.ts";
const workers = ["w1", "w2"].map((name) => {
  const w = new Worker(new URL("./writer.ts", import.meta.url), { type: "module" });
  const done = new Promise((resolve) => (w.onmessage = resolve));
  w.postMessage(name);
  return done.then(() => w.terminate());
});
write("main");
await Promise.all(workers);
`,
    );
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--quiet", "--allow-read", main],
      stdout: "null",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    // Read slowly, so the pipe fills and writers wait in the middle of a write.
    const chunks: Uint8Array[] = [];
    for await (const chunk of child.stderr) {
      chunks.push(chunk);
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    const text = new TextDecoder().decode(concatBytes(chunks));
    assert.equal((await child.status).code, 0, text.slice(-500));
    const lines = text.split("\n").filter((l) => l !== "");
    const pattern =
      /^1970-01-01T00:00:00\.000Z info - session\.connect thread=(\w+) n=(\d+) pad=x+$/;
    const seen = new Map<string, number[]>();
    for (const line of lines) {
      const m = pattern.exec(line);
      assert.ok(m !== null, `a line cut or mixed: ${line.slice(0, 120)}`);
      const n = Number(m[2]);
      assert.equal(line.length - line.indexOf("pad=") - 4, n === 1500 ? 6000 : 1 + (n * 37) % 300);
      seen.set(m[1]!, [...(seen.get(m[1]!) ?? []), n]);
    }
    const all = Array.from({ length: 3000 }, (_, n) => n);
    for (const name of ["main", "w1", "w2"]) assert.deepEqual(seen.get(name), all, name);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a warning is written at once, after the lines held before it", async () => {
  const got = await stderrOf(`log.log("info", "session.connect", undefined, { n: 0 });
log.log("warn", "queue.error", undefined, { n: 1 });
// Blocks the event loop: only lines already written can be seen now.
const start = Date.now();
while (Date.now() - start < 50) {}
Deno.kill(Deno.pid, "SIGKILL");`);
  assert.deepEqual(got, [
    "1970-01-01T00:00:00.000Z info - session.connect n=0",
    "1970-01-01T00:00:00.000Z warn - queue.error n=1",
  ]);
});

Deno.test("a custom writer gets each line as it is logged", () => {
  const lines: string[] = [];
  const log = createLogger({ write: (line) => lines.push(line), now: () => 0, format: "json" });
  log.log("info", "delivery.sent", "4F2A9C", { rcpt: "<a@b.test>", skipped: undefined });
  assert.deepEqual(lines.map((line) => JSON.parse(line)), [{
    time: "1970-01-01T00:00:00.000Z",
    level: "info",
    queue_id: "4F2A9C",
    event: "delivery.sent",
    rcpt: "<a@b.test>",
  }]);
});

Deno.test("each line carries its own time, and values are quoted only when they must be", () => {
  const lines: string[] = [];
  let clock = 0;
  const log = createLogger({ write: (line) => lines.push(line), now: () => clock });
  log.log("info", "delivery.sent", "A", { n: -1.5, ok: true, none: null, text: "two words" });
  log.log("info", "delivery.sent", "B");
  clock = 1;
  log.log("info", "delivery.sent", "C", { reason: 'say "hi"' });
  assert.deepEqual(lines, [
    '1970-01-01T00:00:00.000Z info A delivery.sent n=-1.5 ok=true none=null text="two words"',
    "1970-01-01T00:00:00.000Z info B delivery.sent",
    '1970-01-01T00:00:00.001Z info C delivery.sent reason="say \\"hi\\""',
  ]);
});
