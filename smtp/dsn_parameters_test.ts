import assert from "node:assert/strict";
import { decodeXtext, parseEnvid, parseOrcpt } from "./dsn_parameters.ts";

Deno.test("decodeXtext decodes +XX that stands for printable US-ASCII (RFC 3461 §4)", () => {
  assert.equal(decodeXtext("order+2B42"), "order+42");
  assert.equal(decodeXtext("a+20b"), "a b");
  assert.equal(decodeXtext("+7E"), "~");
});

Deno.test("decodeXtext refuses what decodes to a control character or 8-bit octet", () => {
  for (
    const bad of ["x+0D+0AAction:+20delivered", "+00", "+09", "+1B[2J", "+7F", "+C3+A9", "+9B"]
  ) {
    assert.equal(decodeXtext(bad), null, bad);
    assert.equal(decodeXtext(bad, true), null, bad);
  }
  // Not xtext at all: lower-case hex, "=", a space, a raw control.
  for (const bad of ["+0d", "a=b", "a b", "a\x1bb", "+4"]) {
    assert.equal(decodeXtext(bad), null, bad);
  }
});

Deno.test("decodeXtext takes UTF-8 as it is only when allowed, and never a C1 control", () => {
  assert.equal(decodeXtext("d\u00e9j\u00e0"), null);
  assert.equal(
    decodeXtext("d\u00e9j\u00e0\u{1F4EC}", true),
    "d\u00e9j\u00e0\u{1F4EC}",
  );
  assert.equal(decodeXtext("a\u009bb", true), null);
  assert.equal(decodeXtext("a\ud800b", true), null);
});

Deno.test("parseEnvid: at most 100 characters of printable xtext (RFC 3461 §4.4)", () => {
  assert.equal(parseEnvid("QQ314159"), "QQ314159");
  assert.equal(parseEnvid("x".repeat(100)), "x".repeat(100));
  assert.equal(parseEnvid("x".repeat(101)), null);
  assert.equal(parseEnvid("x+0D+0AAction:+20delivered"), null);
  assert.equal(parseEnvid("caf\u00e9"), null);
});

Deno.test("parseOrcpt: addr-type;xtext, UTF-8 only for the utf-8 type (RFC 6533 §3)", () => {
  assert.equal(parseOrcpt("rfc822;bob+2Bx@example.test"), "rfc822;bob+x@example.test");
  assert.equal(parseOrcpt("RFC822;bob@example.test"), "rfc822;bob@example.test");
  assert.equal(parseOrcpt("rfc822;x+0D+0AAction:+20delivered@example.test"), null);
  assert.equal(parseOrcpt("rfc822;j\u00f6rg@example.test"), null);
  assert.equal(parseOrcpt("utf-8;j\u00f6rg@example.test"), "utf-8;j\u00f6rg@example.test");
  assert.equal(parseOrcpt("utf-8;j\u0085rg@example.test"), null);
  assert.equal(parseOrcpt(";bob@example.test"), null);
  assert.equal(parseOrcpt("rfc822;"), null);
});
