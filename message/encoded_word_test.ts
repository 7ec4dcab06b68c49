import assert from "node:assert/strict";
import {
  chooseWordEncoding,
  encodeUnstructured,
  encodeWords,
  MAX_ENCODED_WORD_LENGTH,
  needsEncoding,
} from "./encoded_word.ts";

/** A small RFC 2047 decoder for the tests: adjacent encoded-words join without their space. */
function decode(text: string): string {
  const decodeWord = (enc: string, data: string): Uint8Array =>
    enc.toUpperCase() === "B"
      ? Uint8Array.from(atob(data), (c) => c.charCodeAt(0))
      : Uint8Array.from(
        data.replaceAll("_", " ").replace(/=([0-9A-F]{2})/g, (_, h) =>
          String.fromCharCode(parseInt(h, 16))),
        (c) =>
          c.charCodeAt(0),
      );
  const joined = text.replace(/(\?=)\s+(?==\?)/g, "$1");
  return joined.replace(
    /=\?utf-8\?([BQ])\?([^?]*)\?=/g,
    (_, enc, data) => new TextDecoder().decode(decodeWord(enc, data)),
  );
}

Deno.test("encoded_word: needsEncoding", () => {
  const cases: [string, boolean][] = [
    ["Hello world", false],
    ["tab\there", false],
    ["café", true],
    ["looks =?like?= a word", true],
    ["bell\x07", true],
    ["", false],
  ];
  for (const [text, expected] of cases) assert.equal(needsEncoding(text), expected, text);
});

Deno.test("encoded_word: B or Q by content", () => {
  const cases: [string, "B" | "Q"][] = [
    ["Café au lait", "Q"],
    ["Grüße aus Köln", "Q"],
    ["Grüße", "B"],
    ["日本語", "B"],
    ["😀😀", "B"],
  ];
  for (const [text, expected] of cases) assert.equal(chooseWordEncoding(text), expected, text);
});

Deno.test("encoded_word: words are at most 75 characters, split between characters, and decode back", () => {
  const texts = [
    "é",
    "Grüße",
    "日本語のテキスト".repeat(10),
    "😀".repeat(40),
    "a=b?c_d é".repeat(30),
    "e\u0301 combining and 👩‍👩‍👧 zwj".repeat(5),
  ];
  for (const text of texts) {
    for (const encoding of ["B", "Q"] as const) {
      const words = encodeWords(text, encoding);
      for (const word of words) {
        assert.ok(word.length <= MAX_ENCODED_WORD_LENGTH, word);
        assert.match(word, /^=\?utf-8\?[BQ]\?[A-Za-z0-9!*+\-/=_]*\?=$/);
        // Each word decodes on its own: no character is split across two.
        assert.ok(!decode(word).includes("\ufffd"), word);
      }
      assert.equal(decode(words.join(" ")), text);
    }
  }
});

Deno.test("encoded_word: unstructured text keeps ASCII words and encodes the rest", () => {
  const cases: [string, string][] = [
    ["Hello world", "Hello world"],
    ["Report: 日本語", "Report: =?utf-8?B?5pel5pys6Kqe?="],
    ["Café time", "=?utf-8?Q?Caf=C3=A9?= time"],
    ["a  é  ü  b", "a  =?utf-8?B?w6kgIMO8?=  b"],
  ];
  for (const [text, expected] of cases) {
    const encoded = encodeUnstructured(text);
    assert.equal(encoded, expected);
    assert.equal(decode(encoded), text);
  }
  // A word too long to fold is encoded so that it can be split.
  const long = "y".repeat(200);
  const encoded = encodeUnstructured(`x ${long}`);
  assert.ok(encoded.split(" ").every((w) => w.length <= 76));
  assert.equal(decode(encoded), `x ${long}`);
});
