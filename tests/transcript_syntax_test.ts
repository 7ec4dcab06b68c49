// The transcript syntax of _transcript.ts: exact lines, prefixes, patterns and
// "S: ..." for the rest of a multi-line reply.

import assert from "node:assert/strict";
import { assertServerReplies, parseTranscript } from "./_transcript.ts";

const EHLO = [
  "220 mx.example.test ESMTP",
  "250-mx.example.test greets c.test",
  "250-PIPELINING",
  "250-SIZE 100",
  "250 HELP",
  "250 2.1.0 Ok: sender accepted",
];
const wire = (lines: string[]): string => lines.map((l) => l + "\r\n").join("");

function matches(fixture: string, lines: string[]): boolean {
  const t = parseTranscript("t.txt", fixture);
  try {
    assertServerReplies(wire(lines), t);
    return true;
  } catch (error: unknown) {
    if (error instanceof assert.AssertionError) return false;
    throw error;
  }
}

const FIXTURE = [
  "S: 220 mx.example.test ESMTP",
  "S: 250-mx.example.test greets c.test",
  "S: ...",
  "S: 250-SIZE 100",
  "S: ...",
  "S: 250 2.1.0 Ok...",
].join("\n");

Deno.test("transcripts: S: ... takes any keywords, and a new keyword changes nothing", () => {
  assert.ok(matches(FIXTURE, EHLO));
  assert.ok(matches(FIXTURE, EHLO.toSpliced(3, 0, "250-NEWKEYWORD")));
  assert.ok(matches(FIXTURE, EHLO.toSpliced(4, 0, "250-NEWKEYWORD")));
});

Deno.test("transcripts: what a wildcard does not allow still fails", () => {
  assert.ok(!matches(FIXTURE, EHLO.toSpliced(3, 1, "250-SIZE 200")), "a kept line changed");
  assert.ok(!matches(FIXTURE, EHLO.toSpliced(4, 1, "250-HELP")), "the reply never ends");
  assert.ok(!matches(FIXTURE, EHLO.toSpliced(5, 1, "250 2.1.0 Fine")), "the prefix differs");
  assert.ok(!matches(FIXTURE, [...EHLO, "221 2.0.0 Bye"]), "a reply too many");
  assert.ok(!matches(FIXTURE, EHLO.slice(0, -1)), "a reply missing");
});

Deno.test("transcripts: S~ matches a whole line by pattern", () => {
  const t = "S~ 250 2\\.0\\.0 Ok: queued as Q[0-9]+";
  assert.ok(matches(t, ["250 2.0.0 Ok: queued as Q12"]));
  assert.ok(!matches(t, ["250 2.0.0 Ok: queued as Q12 and more"]));
  assert.ok(!matches(t, ["250 2.0.0 Ok: queued as X"]));
});

Deno.test("transcripts: exact lines stay exact, and S: ... needs a line to continue", () => {
  assert.ok(parseTranscript("t.txt", "S: 250 Ok\nS: 221 Bye").exact);
  assert.ok(!matches("S: 250 Ok", ["250 Ok."]));
  assert.throws(() => parseTranscript("t.txt", "S: 250 Ok\nS: ..."), /must follow a line/);
});
