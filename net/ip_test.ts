import assert from "node:assert/strict";
import { isIP, isIPv4, isIPv6 } from "node:net";
import {
  canonicalIp,
  formatIp,
  ipVersion,
  isIpv4,
  isIpv4Mapped,
  isIpv6,
  parseIp,
  unmapIpv4,
  withoutZone,
} from "./ip.ts";

/** Texts whose family `node:net` (which the copies used) and net/ip.ts must agree on. */
const FAMILY_CASES: ReadonlyArray<readonly [string, 0 | 4 | 6]> = [
  ["192.0.2.1", 4],
  ["0.0.0.0", 4],
  ["255.255.255.255", 4],
  ["256.0.0.1", 0],
  ["192.0.2.01", 0], // leading zero: octal to some readers
  ["192.0.2", 0],
  ["192.0.2.1.", 0],
  [" 192.0.2.1", 0],
  ["::", 6],
  ["::1", 6],
  ["2001:db8::1", 6],
  ["2001:DB8:0:0:0:0:0:1", 6],
  ["::ffff:192.0.2.1", 6],
  ["::ffff:192.0.2.01", 0],
  ["1:2:3:4:5:6:7:8", 6],
  ["1:2:3:4:5:6:7:8:9", 0],
  ["1::2::3", 0],
  ["12345::1", 0],
  ["fe80::1%eth0", 6],
  ["fe80::1%", 0],
  ["[::1]", 0],
  ["localhost", 0],
  ["", 0],
];

Deno.test("ipVersion, isIpv4 and isIpv6 agree with node:net", () => {
  for (const [text, version] of FAMILY_CASES) {
    assert.equal(ipVersion(text), version, text);
    assert.equal(isIP(text), version, `node:net ${text}`);
    assert.equal(isIpv4(text), isIPv4(text), text);
    // isIpv6 takes no zone index; node:net's does.
    assert.equal(isIpv6(text), isIPv6(text) && !text.includes("%"), text);
  }
});

Deno.test("parseIp maps IPv4 into IPv6 and ignores a zone", () => {
  const cases: ReadonlyArray<readonly [string, bigint | null]> = [
    ["192.0.2.1", 0xffffc0000201n],
    ["::ffff:192.0.2.1", 0xffffc0000201n],
    ["::ffff:c000:201", 0xffffc0000201n],
    ["::1", 1n],
    ["fe80::1%eth0", 0xfe800000000000000000000000000001n],
    ["2001:db8::", 0x20010db8000000000000000000000000n],
    ["1:2:3:4:5:6:1.2.3.4", 0x00010002000300040005000601020304n],
    ["nope", null],
    ["", null],
  ];
  for (const [text, expected] of cases) assert.equal(parseIp(text), expected, text);
  assert.ok(isIpv4Mapped(parseIp("10.0.0.1")!));
  assert.ok(!isIpv4Mapped(parseIp("::1")!));
});

Deno.test("formatIp and canonicalIp write RFC 5952 text", () => {
  assert.equal(formatIp(0x0a000000n, 4), "10.0.0.0");
  assert.equal(formatIp(0x20010db8000000000000000000000000n, 6), "2001:db8::");
  const cases: ReadonlyArray<readonly [string, string]> = [
    ["2001:DB8:0:0:0:0:0:1", "2001:db8::1"],
    ["::FFFF:192.0.2.1", "::ffff:c000:201"],
    ["192.0.2.1", "192.0.2.1"],
    ["FE80::1%ETH0", "fe80::1%eth0"],
    ["mx.example.test", "mx.example.test"],
  ];
  for (const [text, expected] of cases) assert.equal(canonicalIp(text), expected, text);
});

Deno.test("unmapIpv4 and withoutZone", () => {
  const unmap: ReadonlyArray<readonly [string, string]> = [
    ["::ffff:127.0.0.1", "127.0.0.1"],
    ["::ffff:7f00:1", "::ffff:7f00:1"],
    ["::1", "::1"],
    ["127.0.0.1", "127.0.0.1"],
  ];
  for (const [text, expected] of unmap) assert.equal(unmapIpv4(text), expected, text);
  assert.equal(withoutZone("fe80::1%eth0"), "fe80::1");
  assert.equal(withoutZone("::1"), "::1");
});
