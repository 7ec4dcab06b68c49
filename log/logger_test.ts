import assert from "node:assert/strict";
import { createLogger } from "./logger.ts";

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
