import assert from "node:assert/strict";
import { foldHeader } from "./header_fold.ts";

Deno.test("header_fold: folds before whitespace, unfolds to the value", () => {
  const values = [
    "short",
    "",
    "word ".repeat(40).trim(),
    "a, b,  c\tand " + "x".repeat(100) + " tail",
    "=?utf-8?B?" + "A".repeat(60) + "?= =?utf-8?B?" + "B".repeat(60) + "?=",
  ];
  for (const value of values) {
    const field = foldHeader("Subject", value);
    const lines = field.split("\r\n");
    for (const [i, line] of lines.entries()) {
      if (i > 0) assert.match(line, /^[ \t]+\S/, "a continuation starts with WSP and has text");
      // Longer only when one word cannot be split.
      if (line.length > 78) assert.ok(!/\S[ \t]+\S/.test(line.trimStart().slice(9)), line);
    }
    // RFC 5322 §2.2.3: unfolding removes the CRLFs.
    assert.equal(field.replaceAll("\r\n", ""), value === "" ? "Subject:" : `Subject: ${value}`);
  }
});

Deno.test("header_fold: a word over 998 octets is refused", () => {
  assert.throws(() => foldHeader("X-Long", "y".repeat(1000)), RangeError);
});
