// `deno task compile`: the one binary. The task is run as written in
// deno.json (to a temporary output path), and the binary is run in a
// temporary directory. `deno compile` needs a base runtime binary (denort)
// that it downloads on first use, or takes from DENORT_BIN; without network
// and without DENORT_BIN the compiling tests are skipped, and say why.

import assert from "node:assert/strict";
import { join } from "node:path";
import { playgroundFiles } from "../cli/playground.ts";
import meta from "../deno.json" with { type: "json" };

const ROOT = new URL("..", import.meta.url).pathname;
const decoder = new TextDecoder();

/** The compile task's arguments after `deno`, with the output sent to `output`. */
function compileArgs(output: string): string[] {
  const words = meta.tasks.compile.split(/\s+/);
  assert.equal(words[0], "deno");
  const at = words.indexOf("--output");
  assert.ok(at > 0, "the compile task names its --output");
  words[at + 1] = output;
  return words.slice(1);
}

Deno.test("deno task compile embeds every file the playground serves", async () => {
  const args = compileArgs("tern");
  const included = args.flatMap((a, i) => (args[i - 1] === "--include" ? [a] : []));
  const missing = (await playgroundFiles()).filter((file) =>
    !included.some((inc) => inc === file || (inc.endsWith("/") && file.startsWith(inc)))
  );
  assert.deepEqual(missing, [], `add "--include <file>" to the compile task in deno.json`);
  assert.equal(args.at(-1), "main.ts");
});

const dir = await Deno.makeTempDir({ prefix: "tern-compile-" });
const binary = join(dir, "tern");

/** Compiles once; returns why the binary cannot be made here, or null when it was. */
async function compile(): Promise<string | null> {
  const denort = Deno.env.get("DENORT_BIN");
  if (
    denort !== undefined && (await Deno.realPath(denort).catch(() => denort)) === Deno.execPath()
  ) {
    return "DENORT_BIN points at deno itself, which cannot serve as a base binary (the result starts a REPL)";
  }
  const out = await new Deno.Command(Deno.execPath(), {
    args: compileArgs(binary),
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  if (out.success) return null;
  const stderr = decoder.decode(out.stderr);
  if (denort === undefined && /Setting up base binary|denort/i.test(stderr)) {
    const why = /dns error/i.test(stderr) ? "no network" : "download failed";
    return `no denort base binary (${why}): set DENORT_BIN to denort ${Deno.version.deno}`;
  }
  // Any other failure (a type error, a bad --include) is the build's fault: report it.
  throw new Error(`deno task compile failed:\n${stderr}`);
}

let skipReason: string | null;
try {
  skipReason = await compile();
} catch (error: unknown) {
  skipReason = null;
  Deno.test("deno task compile builds the binary", () => {
    throw error;
  });
}
if (skipReason !== null) {
  console.log(`compile tests skipped: ${skipReason}`);
  await Deno.remove(dir, { recursive: true });
}

async function run(
  args: string[],
  cwd: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(binary, {
    args,
    cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

const compiled = skipReason === null;
const skipped = (name: string) => compiled ? name : `${name} (SKIPPED: ${skipReason})`;

Deno.test({
  name: skipped("compiled tern: version, check-config and explain run from the one binary"),
  ignore: !compiled,
  async fn() {
    const work = await Deno.makeTempDir({ prefix: "tern-compiled-run-" });
    try {
      const version = await run(["version"], work);
      assert.equal(version.code, 0, version.stderr);
      assert.equal(version.stdout, `tern ${meta.version}\n`);

      // No tern.yaml here: the built-in defaults.
      const defaults = await run(["check-config"], work);
      assert.equal(defaults.code, 0, defaults.stderr);
      assert.match(defaults.stdout, /^hostname: /m);

      await Deno.writeTextFile(join(work, "bad.yaml"), "no_such_key: 1\n");
      const bad = await run(["check-config", "--config", "bad.yaml"], work);
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /bad\.yaml: no_such_key: /);

      const explain = await run(["explain", "550", "5.1.1"], work);
      assert.equal(explain.code, 0, explain.stderr);
      assert.match(explain.stdout, /^550 5\.1\.1: no such mailbox here$/m);
    } finally {
      await Deno.remove(work, { recursive: true });
    }
  },
});

Deno.test({
  name: skipped(
    "compiled tern: the playground serves its page and the session modules from the binary",
  ),
  ignore: !compiled,
  async fn() {
    const work = await Deno.makeTempDir({ prefix: "tern-compiled-run-" });
    const child = new Deno.Command(binary, {
      args: ["playground", "--port", "0"],
      cwd: work,
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    try {
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let text = "";
      while (!/open (http:\S+)/.test(text)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`tern playground ended: ${text}`);
        text += value;
      }
      reader.releaseLock();
      const url = /open (http:\S+)/.exec(text)![1]!;
      const page = await fetch(url);
      assert.equal(page.status, 200);
      assert.match(await page.text(), /<title>tern playground/);
      const session = await fetch(new URL("/smtp/server_session.ts", url));
      assert.equal(session.status, 200);
      assert.match(await session.text(), /export class ServerSession/);
    } finally {
      child.kill("SIGTERM");
      await child.status;
      await child.stdout.cancel().catch(() => {});
      await Deno.remove(work, { recursive: true });
    }
  },
});

if (compiled) {
  globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
}
