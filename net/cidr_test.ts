import assert from "node:assert/strict";
import { cidrNetwork, isInCidr, normalizeCidr, parseCidr } from "./cidr.ts";

Deno.test("parseCidr reads prefixes and flags host bits", () => {
  const cases: ReadonlyArray<
    readonly [string, { prefix: number; hostBits: boolean; v6Only: boolean } | null]
  > = [
    ["10.0.0.0/8", { prefix: 8, hostBits: false, v6Only: false }],
    ["10.1.2.3/8", { prefix: 8, hostBits: true, v6Only: false }],
    ["192.0.2.1", { prefix: 32, hostBits: false, v6Only: false }],
    ["0.0.0.0/0", { prefix: 0, hostBits: false, v6Only: false }],
    ["::1", { prefix: 128, hostBits: false, v6Only: false }],
    ["2001:db8::/32", { prefix: 32, hostBits: false, v6Only: true }],
    ["2001:db8::1/32", { prefix: 32, hostBits: true, v6Only: true }],
    ["::ffff:0:0/96", { prefix: 96, hostBits: false, v6Only: false }],
    ["::/0", { prefix: 0, hostBits: false, v6Only: true }],
    ["10.0.0.0/33", null],
    ["::/129", null],
    ["10.0.0.0/", null],
    ["10.0.0.0/x", null],
    ["10.0.0.0/-1", null],
    ["10.0.0.0/1e1", null],
    ["example.test/8", null],
  ];
  for (const [text, expected] of cases) {
    const block = parseCidr(text);
    const got = block === null
      ? null
      : { prefix: block.prefix, hostBits: block.hasHostBits, v6Only: block.isIpv6Only };
    assert.deepEqual(got, expected, text);
  }
});

Deno.test("isInCidr matches both families, IPv4-mapped clients as IPv4", () => {
  const cases: ReadonlyArray<readonly [string, string, boolean]> = [
    ["10.1.2.3", "10.0.0.0/8", true],
    ["::ffff:10.1.2.3", "10.0.0.0/8", true],
    ["11.0.0.1", "10.0.0.0/8", false],
    ["2001:db8::5", "2001:db8::/32", true],
    ["2001:db9::5", "2001:db8::/32", false],
    ["127.0.0.1", "127.0.0.1", true],
    ["fe80::1%eth0", "fe80::/10", true],
    // A wide IPv6 block does not cover IPv4 clients.
    ["192.0.2.1", "::/0", false],
    ["192.0.2.1", "::ffff:0:0/96", true],
    ["192.0.2.1", "0.0.0.0/0", true],
    ["::1", "0.0.0.0/0", false],
    ["garbage", "0.0.0.0/0", false],
    ["10.0.0.1", "garbage", false],
  ];
  for (const [address, network, expected] of cases) {
    assert.equal(isInCidr(address, network), expected, `${address} in ${network}`);
  }
});

Deno.test("normalizeCidr and cidrNetwork", () => {
  const normal: ReadonlyArray<readonly [string, string | null]> = [
    ["127.0.0.1", "127.0.0.1/32"],
    ["::1", "::1/128"],
    ["2001:DB8::/032", "2001:db8::/32"],
    ["10.0.0.0/33", null],
    ["10.0.0.0/", null],
    ["10.0.0.0/8/8", null],
    ["name/8", null],
  ];
  for (const [text, expected] of normal) assert.equal(normalizeCidr(text), expected, text);
  const network: ReadonlyArray<readonly [string, string | null]> = [
    ["10.1.2.3/8", "10.0.0.0/8"],
    ["10.0.0.0/8", null],
    ["2001:db8::1/32", "2001:db8::/32"],
    ["192.168.1.1/32", null],
    ["fe80::1%eth0/10", "fe80::/10"],
  ];
  for (const [text, expected] of network) assert.equal(cidrNetwork(text), expected, text);
});
