// Property tests (fast-check) of the configuration loader: no input crashes
// it, and every input it refuses gets at least one "FILE: key.path: what is
// wrong" line.
import assert from "node:assert/strict";
import fc from "fast-check";
import { join } from "node:path";
import { ConfigError } from "./errors.ts";
import { loadConfig } from "./load.ts";
import { CONFIG_KEYS, validateConfig } from "./schema.ts";

/** Every key the loader knows, from every section, and one it does not. */
const KEYS = [...new Set(Object.values(CONFIG_KEYS).flat()), "bogus"];

/** Values shaped like configuration: the right keys, often the wrong things in them. */
const configish: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small" },
    fc.string({ maxLength: 20 }),
    fc.constantFrom(
      "5m",
      "1s",
      "0s",
      "-1h",
      "25M",
      "127.0.0.1",
      "::1/128",
      "mx",
      "a@b.test",
      "x:y",
      "[::1]:53",
      "",
    ),
    fc.integer(),
    fc.double(),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie("value"), { maxLength: 4 }),
    fc.dictionary(fc.constantFrom(...KEYS), tie("value"), { maxKeys: 5 }),
  ),
})).value;

function check(fn: () => unknown): void {
  try {
    fn();
  } catch (error: unknown) {
    if (!(error instanceof ConfigError)) throw error;
    assert.ok(error.problems.length > 0);
    for (const line of error.message.split("\n")) {
      assert.match(line, /^tern\.yaml: [^:]+: .+|^tern\.yaml: .+/);
    }
  }
}

Deno.test("validateConfig refuses bad input with ConfigError lines and never crashes", () => {
  fc.assert(
    fc.property(configish, (raw) => {
      check(() => validateConfig(raw, { file: "tern.yaml", baseDir: "/tmp" }));
    }),
    { numRuns: 3000 },
  );
});

Deno.test("loadConfig turns any file text into a Config or ConfigError lines", async () => {
  const dir = await Deno.makeTempDir();
  const file = join(dir, "tern.yaml");
  try {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string({ maxLength: 200 }),
          fc.string({ unit: "binary", maxLength: 200 }),
          fc.array(
            fc.constantFrom(
              "limits:\n",
              "  max_recipients: ",
              "- ",
              "{",
              "}",
              "[",
              "]",
              ": ",
              "\t",
              "&a ",
              "*a",
              "!!str ",
              "x\n",
            ),
            {
              maxLength: 20,
            },
          ).map((a) => a.join("")),
        ),
        async (text) => {
          await Deno.writeTextFile(file, text);
          try {
            await loadConfig({ file: "tern.yaml", cwd: dir });
          } catch (error: unknown) {
            if (!(error instanceof ConfigError)) throw error;
            assert.ok(error.problems.length > 0);
          }
        },
      ),
      { numRuns: 300 },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
