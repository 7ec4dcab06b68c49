import assert from "node:assert/strict";
import type { DnsRecord } from "./message.ts";
import { type MxHost, parseAddressLiteral, resolveAddresses, resolveMx } from "./mx.ts";
import { type DnsAnswer, type DnsQuerier, DnsTemporaryError } from "./resolver.ts";

type Scripted = DnsAnswer | "servfail";

/** A resolver that answers from a table ("name TYPE" → answer) and records what it was asked. */
class FakeResolver implements DnsQuerier {
  readonly asked: string[] = [];
  readonly #table: Record<string, Scripted>;
  constructor(table: Record<string, Scripted>) {
    this.#table = table;
  }
  query(name: string, type: string | number): Promise<DnsAnswer> {
    const key = `${name} ${type}`;
    this.asked.push(key);
    const answer = this.#table[key] ?? { kind: "nodata" };
    if (answer === "servfail") {
      return Promise.reject(
        new DnsTemporaryError({ qname: name, qtype: "MX" }, [{
          nameserver: "fake",
          reason: "servfail",
          detail: "answered SERVFAIL",
        }]),
      );
    }
    return Promise.resolve(answer);
  }
}

function mxAnswer(owner: string, ...mxs: [number, string][]): DnsAnswer {
  const records: DnsRecord[] = mxs.map(([preference, exchange]) => ({
    name: owner,
    type: "MX",
    class: 1,
    ttl: 300,
    data: { preference, exchange },
  }));
  return { kind: "answer", records, ttl: 300 };
}

function addressAnswer(owner: string, ...addresses: string[]): DnsAnswer {
  const records: DnsRecord[] = addresses.map((data) =>
    data.includes(":")
      ? { name: owner, type: "AAAA", class: 1, ttl: 300, data }
      : { name: owner, type: "A", class: 1, ttl: 300, data }
  );
  return { kind: "answer", records, ttl: 300 };
}

/** Random numbers from a list, repeating. */
function sequence(...values: number[]): () => number {
  let i = 0;
  return () => values[i++ % values.length]!;
}

/** A small deterministic generator (mulberry32), for tests that need many draws. */
function seeded(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const names = (hosts: readonly MxHost[]) => hosts.map((h) => h.name);

async function hostsOf(
  resolver: DnsQuerier,
  domain = "example.test",
  random?: () => number,
): Promise<readonly MxHost[]> {
  const result = await resolveMx(domain, resolver, random === undefined ? {} : { random });
  assert.equal(result.kind, "hosts");
  return result.kind === "hosts" ? result.hosts : [];
}

// ---------------------------------------------------------------------------
// Ordering (RFC 5321 §5.1)

Deno.test("resolveMx() orders hosts by preference, lowest first", async () => {
  const resolver = new FakeResolver({
    "example.test MX": mxAnswer("example.test", [30, "c.example.test"], [10, "a.example.test"], [
      20,
      "b.example.test",
    ]),
  });
  const hosts = await hostsOf(resolver);
  assert.deepEqual(hosts, [
    { name: "a.example.test", preference: 10, implicit: false },
    { name: "b.example.test", preference: 20, implicit: false },
    { name: "c.example.test", preference: 30, implicit: false },
  ]);
  assert.deepEqual(resolver.asked, ["example.test MX"], "no A/AAAA lookups when MX records exist");
});

Deno.test("resolveMx() shuffles equal preferences with the random source it is given", async () => {
  const resolver = new FakeResolver({
    "example.test MX": mxAnswer(
      "example.test",
      [10, "a.example.test"],
      [10, "b.example.test"],
      [10, "c.example.test"],
      [5, "first.example.test"],
      [20, "last.example.test"],
    ),
  });
  // Fisher-Yates from the end: 0.99 keeps every element in place.
  assert.deepEqual(names(await hostsOf(resolver, "example.test", sequence(0.99))), [
    "first.example.test",
    "a.example.test",
    "b.example.test",
    "c.example.test",
    "last.example.test",
  ]);
  // 0 swaps each element with the first of its group: [a,b,c] → [c,b,a] → [b,c,a].
  assert.deepEqual(names(await hostsOf(resolver, "example.test", sequence(0))), [
    "first.example.test",
    "b.example.test",
    "c.example.test",
    "a.example.test",
    "last.example.test",
  ]);
});

Deno.test("resolveMx() gives every order of equal preferences a chance, never mixing preferences", async () => {
  const resolver = new FakeResolver({
    "example.test MX": mxAnswer(
      "example.test",
      [10, "a.example.test"],
      [10, "b.example.test"],
      [10, "c.example.test"],
      [20, "d.example.test"],
      [20, "e.example.test"],
    ),
  });
  const random = seeded(42);
  const seen = new Map<string, number>();
  for (let i = 0; i < 600; i++) {
    const order = names(await hostsOf(resolver, "example.test", random));
    assert.deepEqual(order.slice(0, 3).toSorted(), [
      "a.example.test",
      "b.example.test",
      "c.example.test",
    ]);
    assert.deepEqual(order.slice(3).toSorted(), ["d.example.test", "e.example.test"]);
    const key = order.slice(0, 3).join(",");
    seen.set(key, (seen.get(key) ?? 0) + 1);
  }
  assert.equal(seen.size, 6, "all six orders of a, b, c appear");
  for (const count of seen.values()) {
    assert.ok(count > 50, `roughly uniform: ${[...seen.values()]}`);
  }
});

Deno.test("resolveMx() keeps one entry per exchange, at its lowest preference, names normalized", async () => {
  const resolver = new FakeResolver({
    "example.test MX": mxAnswer("example.test", [20, "MX.Example.Test."], [10, "mx.example.test"]),
  });
  assert.deepEqual(await hostsOf(resolver), [{
    name: "mx.example.test",
    preference: 10,
    implicit: false,
  }]);
});

// ---------------------------------------------------------------------------
// Null MX (RFC 7505)

Deno.test("resolveMx() reports a null MX (RFC 7505)", async () => {
  const resolver = new FakeResolver({ "example.test MX": mxAnswer("example.test", [0, "."]) });
  assert.deepEqual(await resolveMx("example.test", resolver), { kind: "nullmx" });
  assert.deepEqual(resolver.asked, ["example.test MX"], "no implicit MX lookup");
});

Deno.test("resolveMx() ignores a null MX mixed with real MX records", async () => {
  const resolver = new FakeResolver({
    "example.test MX": mxAnswer("example.test", [0, "."], [10, "mx.example.test"]),
  });
  assert.deepEqual(names(await hostsOf(resolver)), ["mx.example.test"]);
});

Deno.test("resolveMx() treats MX records that all point at the root as a null MX", async () => {
  const resolver = new FakeResolver({ "example.test MX": mxAnswer("example.test", [10, "."]) });
  assert.deepEqual(await resolveMx("example.test", resolver), { kind: "nullmx" });
});

// ---------------------------------------------------------------------------
// Implicit MX and permanent failures

Deno.test("resolveMx() uses the domain itself when it has no MX but an A record", async () => {
  const resolver = new FakeResolver({
    "example.test A": addressAnswer("example.test", "192.0.2.1"),
  });
  assert.deepEqual(await resolveMx("Example.TEST.", resolver), {
    kind: "hosts",
    hosts: [{ name: "example.test", preference: 0, implicit: true }],
  });
  assert.deepEqual(resolver.asked.toSorted(), [
    "example.test A",
    "example.test AAAA",
    "example.test MX",
  ]);
});

Deno.test("resolveMx() uses the domain itself when it has no MX but an AAAA record", async () => {
  const resolver = new FakeResolver({
    "example.test AAAA": addressAnswer("example.test", "2001:db8::1"),
  });
  const hosts = await hostsOf(resolver);
  assert.deepEqual(hosts, [{ name: "example.test", preference: 0, implicit: true }]);
});

Deno.test("resolveMx() reports noaddress when the domain has neither MX nor address records", async () => {
  const resolver = new FakeResolver({});
  assert.deepEqual(await resolveMx("example.test", resolver), { kind: "noaddress" });
});

Deno.test("resolveMx() reports nxdomain without asking for anything else", async () => {
  const resolver = new FakeResolver({ "nowhere.test MX": { kind: "nxdomain" } });
  assert.deepEqual(await resolveMx("nowhere.test", resolver), { kind: "nxdomain" });
  assert.deepEqual(resolver.asked, ["nowhere.test MX"]);
});

Deno.test("resolveMx() reports nxdomain when the name vanishes between the MX and address lookups", async () => {
  const resolver = new FakeResolver({
    "example.test A": { kind: "nxdomain" },
    "example.test AAAA": { kind: "nxdomain" },
  });
  assert.deepEqual(await resolveMx("example.test", resolver), { kind: "nxdomain" });
});

Deno.test("resolveMx() asks for U-labels as A-labels and names the implicit host so", async () => {
  const resolver = new FakeResolver({
    "xn--bcher-kva.example A": addressAnswer("xn--bcher-kva.example", "192.0.2.1"),
  });
  assert.deepEqual(names(await hostsOf(resolver, "bücher.example")), ["xn--bcher-kva.example"]);
  assert.equal(resolver.asked[0], "xn--bcher-kva.example MX");
});

Deno.test("resolveMx() returns an address literal as the only host, without DNS", async () => {
  const resolver = new FakeResolver({});
  assert.deepEqual(await resolveMx("[192.0.2.1]", resolver), {
    kind: "hosts",
    hosts: [{ name: "[192.0.2.1]", preference: 0, implicit: true }],
  });
  assert.deepEqual(await resolveMx("[not-an-address]", resolver), { kind: "noaddress" });
  assert.deepEqual(resolver.asked, []);
});

// ---------------------------------------------------------------------------
// Temporary failures: the caller defers

Deno.test("resolveMx() throws DnsTemporaryError when the MX lookup fails for now", async () => {
  const resolver = new FakeResolver({ "example.test MX": "servfail" });
  await assert.rejects(resolveMx("example.test", resolver), DnsTemporaryError);
  assert.deepEqual(resolver.asked, ["example.test MX"], "never falls back to A on a failure");
});

Deno.test("resolveMx() throws DnsTemporaryError when the implicit MX lookup fails for now", async () => {
  const resolver = new FakeResolver({ "example.test A": "servfail" });
  await assert.rejects(resolveMx("example.test", resolver), DnsTemporaryError);
});

Deno.test("resolveMx() keeps the implicit MX when only one address family fails", async () => {
  const resolver = new FakeResolver({
    "example.test A": addressAnswer("example.test", "192.0.2.1"),
    "example.test AAAA": "servfail",
  });
  assert.deepEqual(names(await hostsOf(resolver)), ["example.test"]);
});

// ---------------------------------------------------------------------------
// resolveAddresses

Deno.test("resolveAddresses() lists IPv6 addresses first, then IPv4, without duplicates", async () => {
  const resolver = new FakeResolver({
    "mx.example.test A": addressAnswer("mx.example.test", "192.0.2.2", "192.0.2.1", "192.0.2.2"),
    "mx.example.test AAAA": addressAnswer("mx.example.test", "2001:db8::2", "2001:db8::1"),
  });
  assert.deepEqual(await resolveAddresses("MX.example.test.", resolver), [
    "2001:db8::2",
    "2001:db8::1",
    "192.0.2.2",
    "192.0.2.1",
  ]);
});

Deno.test("resolveAddresses() returns an empty list for NXDOMAIN and NODATA", async () => {
  const resolver = new FakeResolver({
    "gone.example.test A": { kind: "nxdomain" },
    "gone.example.test AAAA": { kind: "nxdomain" },
  });
  assert.deepEqual(await resolveAddresses("gone.example.test", resolver), []);
  assert.deepEqual(await resolveAddresses("empty.example.test", resolver), []);
});

Deno.test("resolveAddresses() throws DnsTemporaryError when no address was found and a lookup failed", async () => {
  const resolver = new FakeResolver({ "mx.example.test AAAA": "servfail" });
  await assert.rejects(resolveAddresses("mx.example.test", resolver), DnsTemporaryError);
});

Deno.test("resolveAddresses() returns the addresses of one family when the other fails for now", async () => {
  const resolver = new FakeResolver({
    "mx.example.test A": addressAnswer("mx.example.test", "192.0.2.1"),
    "mx.example.test AAAA": "servfail",
  });
  assert.deepEqual(await resolveAddresses("mx.example.test", resolver), ["192.0.2.1"]);
});

const literals = [
  { host: "[192.0.2.1]", addresses: ["192.0.2.1"] },
  { host: "[IPv6:2001:DB8::1]", addresses: ["2001:db8::1"] },
  { host: "[ipv6:::1]", addresses: ["::1"] },
  { host: "192.0.2.7", addresses: ["192.0.2.7"] },
  { host: "2001:db8:0::7", addresses: ["2001:db8::7"] },
  { host: "[2001:db8::1]", addresses: [] }, // RFC 5321 §4.1.3: IPv6 literals need the tag
  { host: "[999.0.0.1]", addresses: [] },
  { host: "[IPv6:192.0.2.1]", addresses: [] },
];
for (const c of literals) {
  Deno.test(`resolveAddresses() reads ${c.host} without DNS`, async () => {
    const resolver = new FakeResolver({});
    assert.deepEqual(await resolveAddresses(c.host, resolver), c.addresses);
    assert.deepEqual(resolver.asked, []);
    assert.equal(parseAddressLiteral(c.host), c.addresses[0] ?? null);
  });
}
