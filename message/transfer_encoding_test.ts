import assert from "node:assert/strict";
import {
  chooseTransferEncoding,
  encodeBase64Lines,
  encodeQuotedPrintable,
  MAX_ENCODED_LINE,
} from "./transfer_encoding.ts";

const utf8 = (s: string) => new TextEncoder().encode(s);

/** An RFC 2045 §6.7 decoder for the tests. */
function decodeQuotedPrintable(text: string): Uint8Array {
  const joined = text.replace(/=\r\n/g, "");
  const out: number[] = [];
  for (let i = 0; i < joined.length; i++) {
    if (joined[i] === "=") {
      out.push(parseInt(joined.slice(i + 1, i + 3), 16));
      i += 2;
    } else out.push(joined.charCodeAt(i));
  }
  return Uint8Array.from(out);
}

Deno.test("transfer_encoding: quoted-printable cases", () => {
  const cases: [string, string][] = [
    ["plain", "plain"],
    ["a=b", "a=3Db"],
    ["café", "caf=C3=A9"],
    ["trailing space \r\nnext", "trailing space=20\r\nnext"],
    ["tab\t", "tab=09"],
    ["bare\nLF", "bare=0ALF"],
    ["x".repeat(80), "x".repeat(75) + "=\r\n" + "x".repeat(5)],
  ];
  for (const [input, expected] of cases) assert.equal(encodeQuotedPrintable(utf8(input)), expected);
});

Deno.test("transfer_encoding: quoted-printable lines are at most 76 and decode back", () => {
  const inputs = [
    "é".repeat(200),
    "a b ".repeat(100) + "\r\n\r\n" + "=".repeat(90),
    "x".repeat(74) + "é" + "y".repeat(10),
    "line ending with spaces   \r\n",
  ];
  for (const input of inputs) {
    const encoded = encodeQuotedPrintable(utf8(input));
    for (const line of encoded.split("\r\n")) {
      assert.ok(line.length <= MAX_ENCODED_LINE, line);
      assert.ok(!/[ \t]$/.test(line), `trailing whitespace: ${JSON.stringify(line)}`);
    }
    assert.deepEqual(decodeQuotedPrintable(encoded), utf8(input));
  }
});

Deno.test("transfer_encoding: base64 in 76-character lines", () => {
  for (const size of [0, 1, 56, 57, 58, 1000]) {
    const data = Uint8Array.from({ length: size }, (_, i) => (i * 7) % 256);
    const encoded = encodeBase64Lines(data);
    const lines = encoded === "" ? [] : encoded.split("\r\n");
    for (const line of lines) assert.ok(line.length <= 76);
    assert.deepEqual(Uint8Array.from(atob(lines.join("")), (c) => c.charCodeAt(0)), data);
  }
});

Deno.test("transfer_encoding: chooser", () => {
  const cases: [Uint8Array, string][] = [
    [utf8("Hello\r\nWorld\r\n"), "7bit"],
    [utf8(""), "7bit"],
    [utf8("x".repeat(77)), "quoted-printable"],
    [utf8("bare\nLF"), "quoted-printable"],
    [utf8("trailing space "), "quoted-printable"],
    [utf8("NUL\0"), "quoted-printable"],
    [utf8("Grüße aus Köln, wie geht es dir heute?\r\n"), "quoted-printable"],
    [utf8("日本語のテキスト"), "base64"],
    [Uint8Array.from({ length: 300 }, (_, i) => i % 256), "base64"],
  ];
  for (const [data, expected] of cases) assert.equal(chooseTransferEncoding(data), expected);
});

Deno.test("transfer_encoding: short accented text is quoted-printable", () => {
  assert.equal(chooseTransferEncoding(utf8("Grüße aus Köln\r\n")), "quoted-printable");
  assert.equal(chooseTransferEncoding(utf8("Hello Zoë,\r\n")), "quoted-printable");
  assert.equal(chooseTransferEncoding(utf8("éééé")), "base64");
});
