import assert from "node:assert/strict";
import fc from "fast-check";
import { HeaderFilter } from "./header_filter.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function run(input: string, cuts: number[] = []): { out: string; filter: HeaderFilter } {
  const filter = new HeaderFilter({
    inspect: ["authentication-results"],
    drop: (_name, value) => /^mx\.example\.test\s*;/i.test(value),
  });
  const bytes = encoder.encode(input);
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const parts: Uint8Array[] = [];
  let at = 0;
  for (const p of [...points, bytes.length]) {
    parts.push(filter.push(bytes.subarray(at, p)).slice());
    at = p;
  }
  parts.push(filter.end());
  return { out: parts.map((p) => decoder.decode(p)).join(""), filter };
}

const MESSAGE = "Received: from a\r\n by b; Sat, 5 Dec 2026 10:00:00 +0000\r\n" +
  "Authentication-Results: mx.example.test; spf=pass\r\n" +
  "Authentication-Results:\r\n mx.example.test;\r\n dkim=pass header.d=bank.test\r\n" +
  "Authentication-Results: other.example; spf=fail\r\n" +
  "From: a@example.org\r\nSubject: hi\r\n\r\n" +
  "Authentication-Results: mx.example.test; in the body stays\r\n";
const EXPECTED = "Received: from a\r\n by b; Sat, 5 Dec 2026 10:00:00 +0000\r\n" +
  "Authentication-Results: other.example; spf=fail\r\n" +
  "From: a@example.org\r\nSubject: hi\r\n\r\n" +
  "Authentication-Results: mx.example.test; in the body stays\r\n";

Deno.test("forged results naming us are dropped, folded or not; others and the body stay", () => {
  const { out, filter } = run(MESSAGE);
  assert.equal(out, EXPECTED);
  assert.equal(filter.dropped, 2);
  assert.ok(filter.has("from") && filter.has("subject") && !filter.has("message-id"));
});

Deno.test("the result does not depend on where the chunks are cut", () => {
  fc.assert(fc.property(fc.array(fc.nat(400), { maxLength: 12 }), (cuts) => {
    assert.equal(run(MESSAGE, cuts).out, EXPECTED);
  }));
});

Deno.test("a header with no body and no final line break is kept whole", () => {
  assert.equal(run("Subject: x\r\nFrom: a@b").out, "Subject: x\r\nFrom: a@b");
});

Deno.test("an over-long line passes on whole; an over-long held field is dropped", () => {
  const long = "X-Long: " + "a".repeat(20_000) + "\r\n";
  assert.equal(run(long + "Subject: y\r\n\r\nb").out, long + "Subject: y\r\n\r\nb");
  const huge = "Authentication-Results: other;\r\n" + " x\r\n".repeat(30_000);
  const { out, filter } = run(huge + "Subject: y\r\n\r\nb");
  assert.equal(out, "Subject: y\r\n\r\nb");
  assert.equal(filter.dropped, 1);
});
