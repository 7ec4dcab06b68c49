import assert from "node:assert/strict";
import fc from "fast-check";
import { DataDecoder } from "./data_decoder.ts";
import { DataEncoder } from "./data_encoder.ts";

const latin1 = new TextDecoder("latin1");
const bytes = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0));

/** Encodes `input` cut into pieces at `cuts`, and returns the whole output. */
function encode(input: Uint8Array, cuts: number[], dotStuffing: boolean): string {
  const e = new DataEncoder({ dotStuffing });
  let out = "";
  let from = 0;
  for (const cut of [...cuts.filter((c) => c > 0 && c < input.length).sort((a, b) => a - b)]) {
    out += latin1.decode(e.encode(input.subarray(from, cut)));
    from = cut;
  }
  out += latin1.decode(e.encode(input.subarray(from)));
  return out + latin1.decode(e.end());
}

/** What the content should become: every CR, LF or CRLF a CRLF, and the last line ended. */
function normalized(s: string): string {
  const n = s.replace(/\r\n|\r|\n/g, "\r\n");
  return n === "" || n.endsWith("\r\n") ? n : n + "\r\n";
}

const cases: { name: string; input: string; data: string; bdat: string }[] = [
  { name: "empty content", input: "", data: ".\r\n", bdat: "" },
  { name: "a plain line", input: "a\r\n", data: "a\r\n.\r\n", bdat: "a\r\n" },
  { name: "a missing last CRLF", input: "a", data: "a\r\n.\r\n", bdat: "a\r\n" },
  { name: "a leading dot", input: ".a\r\n", data: "..a\r\n.\r\n", bdat: ".a\r\n" },
  {
    name: "a lone dot line",
    input: "x\r\n.\r\ny\r\n",
    data: "x\r\n..\r\ny\r\n.\r\n",
    bdat: "x\r\n.\r\ny\r\n",
  },
  { name: "a bare LF", input: "a\nb\r\n", data: "a\r\nb\r\n.\r\n", bdat: "a\r\nb\r\n" },
  { name: "a bare CR", input: "a\rb\r\n", data: "a\r\nb\r\n.\r\n", bdat: "a\r\nb\r\n" },
  { name: "CR CR LF", input: "a\r\r\n", data: "a\r\n\r\n.\r\n", bdat: "a\r\n\r\n" },
  { name: "a dot after a bare LF", input: "a\n.\n", data: "a\r\n..\r\n.\r\n", bdat: "a\r\n.\r\n" },
  {
    name: "the smuggling sequence",
    input: "a\n.\r\nb",
    data: "a\r\n..\r\nb\r\n.\r\n",
    bdat: "a\r\n.\r\nb\r\n",
  },
  { name: "a trailing CR", input: "a\r", data: "a\r\n.\r\n", bdat: "a\r\n" },
  { name: "a dot in mid-line", input: "a.b\r\n", data: "a.b\r\n.\r\n", bdat: "a.b\r\n" },
];

for (const c of cases) {
  Deno.test(`DataEncoder handles ${c.name}, whole and byte by byte`, () => {
    const input = bytes(c.input);
    const everyByte = Array.from({ length: input.length }, (_, i) => i);
    assert.equal(encode(input, [], true), c.data);
    assert.equal(encode(input, everyByte, true), c.data);
    assert.equal(encode(input, [], false), c.bdat);
    assert.equal(encode(input, everyByte, false), c.bdat);
  });
}

Deno.test("DataEncoder counts rewritten line endings and content size without the stuffing", () => {
  const e = new DataEncoder({ dotStuffing: true });
  e.encode(bytes(".a\nb\r"));
  e.encode(bytes("c\r\n"));
  e.end();
  assert.equal(e.rewrittenLineEndings, 2);
  assert.equal(e.size, ".a\r\nb\r\nc\r\n".length);
});

Deno.test("DataEncoder output always decodes back to the normalized content (property)", () => {
  const piece = fc.constantFrom("a", ".", "\r", "\n", "\r\n", "..", "x.y", "\u00e9");
  fc.assert(
    fc.property(
      fc.array(piece, { maxLength: 40 }),
      fc.array(fc.nat(200), { maxLength: 6 }),
      (pieces, cuts) => {
        const text = pieces.join("");
        const input = bytes(text);
        const wire = bytes(encode(input, cuts, true));
        // What tern's own server makes of it: the same content, ended where it should be.
        const decoder = new DataDecoder({ dotStuffed: true });
        const r = decoder.decode(wire, 0, wire.length);
        assert.equal(r.ended, true);
        assert.equal(r.consumed, wire.length);
        assert.equal(decoder.hasBareLineEnding, false);
        assert.equal(latin1.decode(r.content), normalized(text));
        // BDAT: no stuffing, same line endings.
        assert.equal(encode(input, cuts, false), normalized(text));
      },
    ),
    { numRuns: 300 },
  );
});
