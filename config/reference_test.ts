import assert from "node:assert/strict";
import { checkReference, renderReference } from "./reference.ts";

Deno.test("every key the loader accepts is in the reference, and every key described is accepted", () => {
  assert.deepEqual(checkReference(), []);
});

Deno.test("docs/configuration.md is the rendered reference (run: deno run -A config/reference.ts > docs/configuration.md)", async () => {
  const page = await Deno.readTextFile(new URL("../docs/configuration.md", import.meta.url));
  assert.equal(page, renderReference());
});

Deno.test("the reference shows a default list of mappings as YAML, not [object Object]", () => {
  const page = renderReference();
  assert.ok(!page.includes("[object Object]"));
  assert.match(
    page,
    /\| `listeners` \| list \| `\[\{ address: 127\.0\.0\.1, port: 2525, mode: mx \}\]` \|/,
  );
});
