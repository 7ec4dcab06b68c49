// The V8 flags tern runs with: `deno task start` and the compiled binary
// (`deno task compile`) must carry the same, and they must do what they are
// there for. `--max-semi-space-size` caps V8's young generation: without it,
// opening thousands of connections at once grows it to tens of MiB (measured
// in bench/README.md, `idle-10k`), which then counts against every idle
// connection until V8 shrinks it again.

import assert from "node:assert/strict";
import meta from "../deno.json" with { type: "json" };

const decoder = new TextDecoder();

/** The `--v8-flags=` words of a task. */
function v8Flags(task: string): string[] {
  return task.split(/\s+/).filter((word) => word.startsWith("--v8-flags="));
}

Deno.test("deno task start and the compiled binary run with the same V8 flags", () => {
  const start = v8Flags(meta.tasks.start);
  assert.ok(start.length > 0, "deno task start names its V8 flags");
  assert.deepEqual(v8Flags(meta.tasks.compile), start);
});

/** The young generation's size (MiB) after a burst of allocations that partly survive, with `flags`. */
async function youngGeneration(flags: readonly string[]): Promise<number> {
  const script = `
    import v8 from "node:v8";
    const kept = [];
    for (let i = 0; i < 1_000_000; i++) {
      const o = { i, s: "x" + i };
      if (i % 20 === 0) kept.push(o);
    }
    const space = v8.getHeapSpaceStatistics().find((s) => s.space_name === "new_space");
    console.log(space.space_size / 1048576);
  `;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["eval", ...flags, script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(output.success, decoder.decode(output.stderr));
  return Number(decoder.decode(output.stdout).trim());
}

Deno.test("the start task's V8 flags keep the young generation within its cap", async () => {
  const flags = v8Flags(meta.tasks.start);
  const cap = /--max-semi-space-size=(\d+)/.exec(flags.join(" "));
  assert.ok(cap, "the flags set --max-semi-space-size");
  const capped = await youngGeneration(flags);
  const uncapped = await youngGeneration([]);
  // Two semi-spaces of at most the cap each; V8's default lets them grow further.
  assert.ok(capped <= 2 * Number(cap[1]), `young generation ${capped} MiB with ${flags}`);
  assert.ok(capped < uncapped, `young generation ${capped} MiB capped, ${uncapped} MiB not`);
});
