import assert from "node:assert/strict";
import { formatAddress, formatPhrase, parseAddress, parseAddressList } from "./address_header.ts";

Deno.test("address_header: parsing inputs", () => {
  const cases: [Parameters<typeof parseAddress>[0], string, string, boolean][] = [
    ["ann@example.org", "", "ann@example.org", false],
    ["<ann@example.org>", "", "ann@example.org", false],
    ["Ann Doe <ann@example.org>", "Ann Doe", "ann@example.org", false],
    ['"Doe, Ann" <ann@example.org>', "Doe, Ann", "ann@example.org", false],
    ['"say \\"hi\\"" <ann@example.org>', 'say "hi"', "ann@example.org", false],
    [{ name: "Zoë", address: "zoe@example.org" }, "Zoë", "zoe@example.org", false],
    [{ address: "josé@exämple.org" }, "", "josé@exämple.org", true],
    ['"john doe"@example.org', "", '"john doe"@example.org', false],
  ];
  for (const [input, name, address, smtputf8] of cases) {
    assert.deepEqual(parseAddress(input), { name, address, smtputf8 }, JSON.stringify(input));
  }
});

Deno.test("address_header: invalid addresses and names are refused", () => {
  const bad = [
    "",
    "no-at-sign",
    "a@",
    "@example.org",
    "a b@example.org",
    "a@@example.org",
    "<a@x.org> trailing",
  ];
  for (const input of bad) assert.throws(() => parseAddress(input), TypeError, input);
  assert.throws(
    () => parseAddress({ name: "a\r\nBcc: x@y.org", address: "a@example.org" }),
    TypeError,
  );
  assert.throws(() => parseAddress("x".repeat(300) + "@example.org"), TypeError);
});

Deno.test("address_header: phrases", () => {
  const cases: [string, string][] = [
    ["Ann Doe", "Ann Doe"],
    ["Doe, Ann", '"Doe, Ann"'],
    ["A. N. Other", '"A. N. Other"'],
    ['say "hi" \\', '"say \\"hi\\" \\\\"'],
    ["Zoë", "=?utf-8?Q?Zo=C3=AB?="],
    ["日本語", "=?utf-8?B?5pel5pys6Kqe?="],
  ];
  for (const [name, expected] of cases) assert.equal(formatPhrase(name), expected);
});

Deno.test("address_header: lists", () => {
  const list = parseAddressList(["Ann <a@example.org>", { address: "b@example.org" }]);
  assert.deepEqual(list.map(formatAddress), ["Ann <a@example.org>", "b@example.org"]);
  assert.deepEqual(parseAddressList(undefined), []);
  assert.equal(parseAddressList("c@example.org").length, 1);
});
