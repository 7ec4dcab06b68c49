import assert from "node:assert/strict";
import {
  applyChanges,
  type Edited,
  HeaderSplitter,
  makeField,
  type MilterEnvelope,
  milterValue,
} from "./message.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function split(text: string) {
  const splitter = new HeaderSplitter();
  return splitter.push(enc.encode(text)) ?? splitter.end();
}

function edited(text: string): Edited {
  return {
    fields: split(text).fields,
    headerRewritten: false,
    body: null,
    envelopeChanged: false,
    quarantine: [],
  };
}

function headerOf(e: Edited): string {
  return e.fields.map((f) => dec.decode(f.raw)).join("");
}

Deno.test("header split: folded fields, the empty line, a body without one", () => {
  const section = split("Subject: a\r\n b\r\nTo: x\r\n\r\nbody\r\n");
  assert.deepEqual(section.fields.map((f) => f.name), ["Subject", "To"]);
  assert.equal(section.separated, true);
  assert.equal(dec.decode(section.rest), "body\r\n");
  assert.equal(milterValue(section.fields[0]!, false), "a\n b");
  assert.equal(milterValue(section.fields[0]!, true), " a\n b");
  const noBlank = split("Subject: a\r\nnot a header\r\n");
  assert.equal(noBlank.separated, false);
  assert.equal(dec.decode(noBlank.rest), "not a header\r\n");
  // A header section cut between chunks waits for the rest.
  assert.equal(new HeaderSplitter().push(enc.encode("Subject: a\r\nTo:")), null);
});

Deno.test("makeField: LF lines become folded lines; a line may not start a field", () => {
  assert.equal(dec.decode(makeField("X-A", "one\n\ttwo", false).raw), "X-A: one\r\n\ttwo\r\n");
  assert.equal(
    dec.decode(makeField("X-A", "one\nBcc: evil", false).raw),
    "X-A: one\r\n\tBcc: evil\r\n",
  );
  assert.equal(dec.decode(makeField("X-A", " v", true).raw), "X-A: v\r\n");
});

Deno.test("applyChanges: add, insert, change, delete in order; envelope edits; body replaced", () => {
  const e = edited("From: a\r\nX-A: 1\r\nx-a: 2\r\nSubject: s\r\n\r\n");
  const envelope: MilterEnvelope = { reversePath: "a@x", forwardPaths: ["b@x", "C@x"] };
  applyChanges(e, envelope, [
    { type: "addheader", name: "X-End", value: "e" },
    { type: "insheader", index: 0, name: "X-Top", value: "t" },
    { type: "chgheader", index: 2, name: "X-A", value: "two" },
    { type: "chgheader", index: 1, name: "Subject", value: "" },
    { type: "chgheader", index: 1, name: "X-Missing", value: "added" },
    { type: "chgfrom", sender: "<new@x>", args: "" },
    { type: "addrcpt", recipient: "<d@x>", args: "" },
    { type: "delrcpt", recipient: "<c@x>" },
    { type: "replbody", chunk: enc.encode("new\nbody") },
    { type: "quarantine", reason: "why" },
  ], false);
  assert.equal(
    headerOf(e),
    "X-Top: t\r\nFrom: a\r\nX-A: 1\r\nx-a: two\r\nX-End: e\r\nX-Missing: added\r\n",
  );
  assert.equal(e.headerRewritten, true);
  assert.deepEqual(envelope, { reversePath: "new@x", forwardPaths: ["b@x", "d@x"] });
  assert.equal(dec.decode(e.body!), "new\r\nbody\r\n");
  assert.deepEqual(e.quarantine, ["why"]);
});

Deno.test("applyChanges: fields added at the end do not count as a rewrite", () => {
  const e = edited("From: a\r\n\r\n");
  applyChanges(e, { reversePath: "", forwardPaths: [] }, [
    { type: "addheader", name: "X-Spam", value: "no" },
    { type: "insheader", index: 9, name: "X-Late", value: "x" },
  ], false);
  assert.equal(e.headerRewritten, false);
  assert.equal(headerOf(e), "From: a\r\nX-Spam: no\r\nX-Late: x\r\n");
});
