import assert from "node:assert/strict";
import {
  formatAddressLiteral,
  isAddressLiteral,
  isIpv4AddressLiteral,
  parseAddressLiteral,
} from "./address_literal.ts";

Deno.test("isAddressLiteral follows RFC 5321 §4.1.3", () => {
  // [literal, as an address literal, with general literals allowed]
  const cases: ReadonlyArray<readonly [string, boolean, boolean]> = [
    ["[192.0.2.1]", true, true],
    ["[192.0.2.01]", true, true], // Snum allows leading zeros
    ["[300.1.1.1]", false, false],
    ["[192.0.2]", false, false],
    ["[IPv6:2001:db8::1]", true, true],
    ["[ipv6:2001:DB8::1]", true, true],
    ["[IPv6:::ffff:192.0.2.1]", true, true],
    ["[IPv6:2001:db8::1::2]", false, false],
    ["[IPv6:fe80::1%eth0]", false, false], // no zone index in the grammar
    ["[2001:db8::1]", false, true], // without the IPv6 tag: a general literal, tag "2001"
    ["[x-tag:content]", false, true],
    ["[x-:content]", false, false],
    ["[tag:with space]", false, false],
    ["[tag:a[b]", false, false],
    ["192.0.2.1", false, false],
    ["[]", false, false],
    ["[192.0.2.1", false, false],
  ];
  for (const [text, literal, general] of cases) {
    assert.equal(isAddressLiteral(text), literal, text);
    assert.equal(isAddressLiteral(text, true), general, `${text} (general)`);
  }
  assert.ok(isIpv4AddressLiteral("0.0.0.0"));
  assert.ok(!isIpv4AddressLiteral("1.2.3.4.5"));
});

Deno.test("parseAddressLiteral and formatAddressLiteral", () => {
  const parse: ReadonlyArray<readonly [string, string | null]> = [
    ["[192.0.2.1]", "192.0.2.1"],
    ["192.0.2.1", "192.0.2.1"],
    ["[IPv6:2001:DB8:0::1]", "2001:db8::1"],
    ["2001:db8::1", "2001:db8::1"],
    ["[192.0.2.01]", null], // an address is read strictly
    ["[2001:db8::1]", null],
    ["example.test", null],
    ["[example.test]", null],
  ];
  for (const [text, expected] of parse) assert.equal(parseAddressLiteral(text), expected, text);
  const format: ReadonlyArray<readonly [string, string | null]> = [
    ["192.0.2.1", "[192.0.2.1]"],
    ["2001:db8::1", "[IPv6:2001:db8::1]"],
    ["unknown", null],
  ];
  for (const [text, expected] of format) assert.equal(formatAddressLiteral(text), expected, text);
});
