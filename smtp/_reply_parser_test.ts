import assert from "node:assert/strict";
import { MAX_REPLY_LINE, ReplyParser, ReplySyntaxError } from "./_reply_parser.ts";
import { formatReply, type Reply } from "./reply.ts";

const encoder = new TextEncoder();

function parseAll(text: string, piece = Infinity): Reply[] {
  const p = new ReplyParser();
  const out: Reply[] = [];
  const bytes = encoder.encode(text);
  for (let i = 0; i < bytes.length; i += piece === Infinity ? bytes.length : piece) {
    p.push(bytes.subarray(i, i + (piece === Infinity ? bytes.length : piece)));
    for (let r = p.next(); r !== null; r = p.next()) out.push(r);
  }
  return out;
}

const cases: { name: string; wire: string; replies: Reply[] }[] = [
  { name: "a bare code", wire: "250\r\n", replies: [{ code: 250, lines: [""] }] },
  { name: "a code and a space", wire: "250 \r\n", replies: [{ code: 250, lines: [""] }] },
  {
    name: "a multi-line reply with an empty continuation",
    wire: "250-mx.example.test\r\n250-\r\n250 SIZE\r\n",
    replies: [{ code: 250, lines: ["mx.example.test", "", "SIZE"] }],
  },
  {
    name: "an enhanced status code on every line",
    wire: "550-5.1.1 No such user\r\n550 5.1.1 Try another\r\n",
    replies: [{ code: 550, enhancedStatus: "5.1.1", lines: ["No such user", "Try another"] }],
  },
  {
    name: "a status code whose class does not match (kept as text)",
    wire: "250 5.1.1 odd\r\n",
    replies: [{ code: 250, lines: ["5.1.1 odd"] }],
  },
  {
    name: "a bare LF line end (read, laxer than §2.3.8)",
    wire: "220 hi\n250 ok\r\n",
    replies: [{ code: 220, lines: ["hi"] }, { code: 250, lines: ["ok"] }],
  },
  {
    name: "UTF-8 text (RFC 6531)",
    wire: "250 2.0.0 d\u00e9j\u00e0 vu\r\n",
    replies: [{ code: 250, enhancedStatus: "2.0.0", lines: ["d\u00e9j\u00e0 vu"] }],
  },
];

for (const c of cases) {
  Deno.test(`ReplyParser reads ${c.name}, whole and byte by byte`, () => {
    assert.deepEqual(parseAll(c.wire), c.replies);
    assert.deepEqual(parseAll(c.wire, 1), c.replies);
  });
}

Deno.test("ReplyParser gives formatReply's text back", () => {
  const wire = "250-2.1.0 Sender\r\n250 2.1.0 ok\r\n";
  const [r] = parseAll(wire);
  assert.equal(formatReply(r!, true), wire);
});

Deno.test("ReplyParser tolerates a line far over 512 octets, keeping a bounded start", () => {
  const long = "x".repeat(3 * MAX_REPLY_LINE);
  const replies = parseAll(`250-${long}\r\n250 ok\r\n`, 1000);
  assert.equal(replies.length, 1);
  assert.equal(replies[0]!.lines[0]!.length, MAX_REPLY_LINE - 4);
  assert.equal(replies[0]!.lines[1], "ok");
  const fair = "y".repeat(600);
  assert.deepEqual(parseAll(`550 ${fair}\r\n`), [{ code: 550, lines: [fair] }]);
});

Deno.test("ReplyParser replaces control characters in the text, keeping TAB and UTF-8", () => {
  const wire = "550-5.1.1 \x1b[31mred\x1b[0m bare\rCR\x00\x7f\r\n" +
    "550 5.1.1 tab\there \u009b2J d\u00e9j\u00e0 \xff\r\n";
  const replies = parseAll(wire);
  assert.deepEqual(replies, [{
    code: 550,
    enhancedStatus: "5.1.1",
    lines: ["?[31mred?[0m bare?CR??", "tab\there ?2J d\u00e9j\u00e0 \u00ff"],
  }]);
  // Octets that are not UTF-8 become U+FFFD, never a C1 control.
  const p = new ReplyParser();
  p.push(Uint8Array.from([...encoder.encode("550 a"), 0x9b, 0xc2, 0x9b, 0x0d, 0x0a]));
  assert.deepEqual(p.next()?.lines, ["a\ufffd?"]);
  assert.throws(() => parseAll("25\x1b0 x\r\n"), (e: Error) => !e.message.includes("\x1b"));
});

const bad = ["hello\r\n", "25\r\n", "250x\r\n", "650 no\r\n", "250-a\r\n251 b\r\n"];
for (const wire of bad) {
  Deno.test(`ReplyParser refuses ${JSON.stringify(wire)}`, () => {
    assert.throws(() => parseAll(wire), ReplySyntaxError);
  });
}

Deno.test("ReplyParser.clear() throws away what has not been read", () => {
  const p = new ReplyParser();
  p.push(encoder.encode("220 go ahead\r\n250 injected\r\n250-par"));
  assert.equal(p.next()?.code, 220);
  assert.equal(p.clear(), "250 injected\r\n250-par".length);
  assert.equal(p.isEmpty, true);
  assert.equal(p.next(), null);
});
