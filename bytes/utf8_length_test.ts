import assert from "node:assert/strict";
import { utf8Length } from "./utf8_length.ts";

Deno.test("utf8Length agrees with TextEncoder on edge cases", () => {
  const encoder = new TextEncoder();
  for (
    const text of [
      "",
      "a",
      "\x7f",
      "\x80",
      "\u07ff",
      "\u0800",
      "\uffff",
      "😀",
      "\ud800", // lone high surrogate
      "\udc00", // lone low surrogate
      "\udc00\ud800", // reversed pair
      "a\ud800b",
      "\ud83d\ude00\ud83d",
      "bücher.example",
    ]
  ) {
    assert.equal(utf8Length(text), encoder.encode(text).length, JSON.stringify(text));
  }
});

Deno.test("utf8Length agrees with TextEncoder on random strings", () => {
  const encoder = new TextEncoder();
  let seed = 7;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const ranges = [0x80, 0x800, 0xd800, 0xe000, 0x10000];
  for (let n = 0; n < 5000; n++) {
    let text = "";
    const length = Math.floor(random() * 12);
    for (let i = 0; i < length; i++) {
      const top = ranges[Math.floor(random() * ranges.length)] ?? 0x80;
      text += String.fromCharCode(Math.floor(random() * top));
    }
    assert.equal(utf8Length(text), encoder.encode(text).length, JSON.stringify(text));
  }
});
