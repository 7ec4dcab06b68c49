import assert from "node:assert/strict";
import {
  formatHostPort,
  parseHostPort,
  parseNameServer,
  parsePort,
  splitHostPort,
} from "./host_port.ts";

Deno.test("parsePort takes 1-65535 written as digits", () => {
  const cases: ReadonlyArray<readonly [string, number | null]> = [
    ["25", 25],
    ["1", 1],
    ["65535", 65535],
    ["0", null],
    ["65536", null],
    ["025", 25],
    ["+25", null],
    ["2 5", null],
    ["", null],
    ["123456", null],
  ];
  for (const [text, expected] of cases) assert.equal(parsePort(text), expected, text);
});

Deno.test("splitHostPort splits on brackets or the last colon", () => {
  const cases: ReadonlyArray<readonly [string, ReturnType<typeof splitHostPort>]> = [
    ["mx.example.test:25", { host: "mx.example.test", port: "25", bracketed: false }],
    ["192.0.2.1:2525", { host: "192.0.2.1", port: "2525", bracketed: false }],
    ["[2001:db8::1]:25", { host: "2001:db8::1", port: "25", bracketed: true }],
    ["[mx.example.test]", { host: "mx.example.test", port: undefined, bracketed: true }],
    ["[::1]:", { host: "::1", port: "", bracketed: true }],
    ["mx.example.test", { host: "mx.example.test", port: undefined, bracketed: false }],
    [":25", { host: ":25", port: undefined, bracketed: false }],
    ["2001:db8::1", { host: "2001:db8:", port: "1", bracketed: false }],
  ];
  for (const [text, expected] of cases) assert.deepEqual(splitHostPort(text), expected, text);
});

Deno.test("formatHostPort and parseHostPort round-trip", () => {
  const cases: ReadonlyArray<readonly [string, number, string]> = [
    ["MX.Example.Test", 25, "mx.example.test:25"],
    ["192.0.2.1", 2525, "192.0.2.1:2525"],
    ["2001:DB8::1", 25, "[2001:db8::1]:25"],
    ["fe80::1%eth0", 53, "[fe80::1%eth0]:53"],
  ];
  for (const [host, port, text] of cases) {
    assert.equal(formatHostPort(host, port), text);
    assert.deepEqual(parseHostPort(text), { host: host.toLowerCase(), port });
  }
  assert.equal(parseHostPort("mx.example.test"), null);
  assert.equal(parseHostPort("mx.example.test:0"), null);
  assert.equal(parseHostPort("[::1]"), null);
});

const NAME_SERVERS: [string, string | null][] = [
  ["127.0.0.1", "127.0.0.1:53"],
  ["127.0.0.1:5353", "127.0.0.1:5353"],
  ["::1", "[::1]:53"],
  ["[::1]:5353", "[::1]:5353"],
  ["[::1]", "[::1]:53"],
  ["fe80::1%eth0", "[fe80::1%eth0]:53"], // resolv.conf may give a scope
  ["[127.0.0.1]:53", null], // brackets are for IPv6
  ["::1:53", "[::1:53]:53"], // an IPv6 address, not ::1 port 53
  ["127.0.0.1:0", null],
  ["127.0.0.1:65536", null],
  ["ns.example.test", null], // a name needs a name server to find
  ["ns.example.test:53", null],
  ["", null],
];
for (const [text, expected] of NAME_SERVERS) {
  Deno.test(`parseNameServer(${JSON.stringify(text)}) is ${expected}`, () => {
    assert.equal(parseNameServer(text)?.text ?? null, expected);
  });
}
