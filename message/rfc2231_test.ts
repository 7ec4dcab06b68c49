import assert from "node:assert/strict";
import { formatParameter } from "./rfc2231.ts";

/** Joins continuations and percent-decodes, as RFC 2231 §3–4 readers do. */
function decode(params: string[]): string {
  const values = params.map((p) => p.slice(p.indexOf("=") + 1));
  if (params.length === 1 && !params[0]!.includes("*=")) {
    return values[0]!.slice(1, -1).replace(/\\(.)/g, "$1");
  }
  const joined = values.join("").replace(/^utf-8''/, "");
  return decodeURIComponent(joined);
}

Deno.test("rfc2231: parameter forms", () => {
  const cases: [string, string[]][] = [
    ["report.pdf", ['filename="report.pdf"']],
    ['say "hi".txt', ['filename="say \\"hi\\".txt"']],
    ["résumé.pdf", ["filename*=utf-8''r%C3%A9sum%C3%A9.pdf"]],
  ];
  for (const [value, expected] of cases) {
    assert.deepEqual(formatParameter("filename", value), expected);
  }
});

Deno.test("rfc2231: long names become continuations that decode back", () => {
  const names = [
    "Prüfbericht für das Jahr 2026 – endgültige Fassung 日本語.pdf",
    "a".repeat(200) + ".txt",
    "😀".repeat(50),
    "100% 'quoted' * name.txt".repeat(5),
  ];
  for (const name of names) {
    const params = formatParameter("filename", name);
    for (const [i, p] of params.entries()) {
      assert.ok(p.length <= 70, p);
      if (params.length > 1) assert.ok(p.startsWith(`filename*${i}*=`), p);
    }
    assert.equal(decode(params), name);
  }
});

Deno.test("rfc2231: bad input is refused", () => {
  assert.throws(() => formatParameter("file name", "x"), TypeError);
  assert.throws(() => formatParameter("filename", "a\r\nb"), TypeError);
});
