import assert from "node:assert/strict";
import { isDomain, isDomainName } from "./domain.ts";

const label63 = "a".repeat(63);
const CASES: [string, boolean, boolean, boolean][] = [
  // name, isDomain(ascii), isDomain(utf8), isDomainName
  ["mx.example.test", true, true, true],
  ["localhost", true, true, true],
  ["a-b.example", true, true, true],
  ["-a.example", false, false, false],
  ["a-.example", false, false, false],
  ["a..example", false, false, false],
  ["", false, false, false],
  ["under_score.example", false, false, false],
  ["bücher.example", false, true, false],
  [`${label63}.example`, true, true, true],
  [`${label63}a.example`, false, false, false],
  [Array(64).fill("abc").join("."), true, true, false], // 255 characters: a domain, not a DNS name
];
for (const [name, ascii, utf8, dns] of CASES) {
  Deno.test(`isDomain and isDomainName: ${JSON.stringify(name.slice(0, 40))}`, () => {
    assert.equal(isDomain(name, false), ascii);
    assert.equal(isDomain(name, true), utf8);
    assert.equal(isDomainName(name), dns);
  });
}
