import assert from "node:assert/strict";
import { type DnsAnswer, type DnsQuerier, DnsTemporaryError } from "../dns/resolver.ts";
import { ConfigError } from "../config/errors.ts";
import { validateConfig } from "../config/schema.ts";
import { MemoryLogger } from "../log/logger.ts";
import {
  cleanReason,
  DnsblChecker,
  dnsblQueryName,
  dnsblRefusal,
  isPostmaster,
  listedCode,
} from "./dnsbl.ts";

Deno.test("dnsblQueryName reverses IPv4 octets and IPv6 nibbles (RFC 5782 §2.1, §2.4)", () => {
  const table: [string, string, string | null][] = [
    ["127.0.0.2", "zen.example", "2.0.0.127.zen.example"],
    ["192.0.2.99", "zen.example.", "99.2.0.192.zen.example"],
    ["::ffff:192.0.2.99", "zen.example", "99.2.0.192.zen.example"],
    // RFC 5782 §2.4's own example.
    [
      "2001:db8:1:2:3:4:567:89ab",
      "ugly.example.com",
      "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ugly.example.com",
    ],
    ["::1", "l.example", "1." + "0.".repeat(31) + "l.example"],
    ["not an address", "l.example", null],
    ["", "l.example", null],
  ];
  for (const [address, zone, expected] of table) {
    assert.equal(dnsblQueryName(address, zone), expected, address);
  }
});

Deno.test("listedCode acts on 127/8 answers but the lists' error codes, or on the codes given", () => {
  const table: [string[], string[] | null, string | null][] = [
    [["127.0.0.2"], null, "127.0.0.2"],
    [["127.0.0.11"], null, "127.0.0.11"],
    [["127.255.255.254"], null, null], // Spamhaus: queried through a public resolver
    [["127.255.255.252"], null, null],
    [["192.0.2.1"], null, null], // not a list answer (a wildcard somewhere)
    [[], null, null],
    [["127.255.255.254", "127.0.0.4"], null, "127.0.0.4"],
    [["127.0.0.10"], ["127.0.0.2", "127.0.0.3"], null],
    [["127.0.0.10", "127.0.0.3"], ["127.0.0.2", "127.0.0.3"], "127.0.0.3"],
  ];
  for (const [answers, codes, expected] of table) {
    assert.equal(listedCode(answers, codes), expected, `${answers} ${codes}`);
  }
});

Deno.test("cleanReason removes control characters and cuts long text", () => {
  assert.equal(cleanReason(["Listed\r\n250 ok"]), "Listed 250 ok");
  assert.equal(cleanReason(["a\u0000\u001bb", "\tc "]), "a b c");
  assert.equal(cleanReason([]), "");
  const long = cleanReason(["x".repeat(1000)]);
  assert.equal(long.length, 200);
  assert.ok(long.endsWith("..."));
});

Deno.test("dnsblRefusal names the list, and the reason when there is one", () => {
  const r = dnsblRefusal("192.0.2.9", { zone: "zen.example", code: "127.0.0.2", reason: "spam" });
  assert.equal(r.code, 554);
  assert.equal(r.enhancedStatus, "5.7.1");
  assert.equal(r.lines.join(""), "Client 192.0.2.9 is listed by zen.example: spam");
});

Deno.test("isPostmaster: bare and at any domain, any case", () => {
  assert.ok(isPostmaster("Postmaster"));
  assert.ok(isPostmaster("POSTMASTER@example.test"));
  assert.ok(!isPostmaster("postmasters@example.test"));
  assert.ok(!isPostmaster("bob@postmaster.test"));
});

/** A resolver answering from a table; a name mapped to "fail" throws a temporary error. */
class FakeResolver implements DnsQuerier {
  queries: string[] = [];
  constructor(readonly table: Record<string, DnsAnswer | "fail">) {}
  query(name: string, type: string | number): Promise<DnsAnswer> {
    this.queries.push(`${name} ${type}`);
    const found = this.table[`${name} ${type}`];
    if (found === "fail") {
      return Promise.reject(
        new DnsTemporaryError({ qname: name, qtype: "A" }, [
          { nameserver: "127.0.0.1:53", reason: "servfail", detail: "answered SERVFAIL" },
        ]),
      );
    }
    return Promise.resolve(found ?? { kind: "nxdomain" });
  }
}

function a(name: string, data: string): DnsAnswer {
  return { kind: "answer", ttl: 60, records: [{ type: "A", name, class: 1, ttl: 60, data }] };
}

Deno.test("DnsblChecker: first listing list in order, TXT reason, fail open logged once", async () => {
  const q = "2.0.0.127";
  const resolver = new FakeResolver({
    [`${q}.down.test A`]: "fail",
    [`${q}.err.test A`]: a(`${q}.err.test`, "127.255.255.254"),
    [`${q}.bl.test A`]: a(`${q}.bl.test`, "127.0.0.2"),
    [`${q}.bl.test TXT`]: {
      kind: "answer",
      ttl: 60,
      records: [{ type: "TXT", name: `${q}.bl.test`, class: 1, ttl: 60, data: ["See\r\nhere"] }],
    },
  });
  const logger = new MemoryLogger();
  const checker = new DnsblChecker({ resolver, logger });
  const lists = ["down.test", "err.test", "bl.test"].map((zone) => ({ zone, codes: null }));
  const connection = {};
  const first = checker.lookup(connection, "127.0.0.2", lists);
  assert.equal(checker.lookup(connection, "127.0.0.2", lists), first, "one lookup per connection");
  assert.deepEqual(await first, { zone: "bl.test", code: "127.0.0.2", reason: "See here" });
  assert.equal(await checker.check("127.0.0.3", lists), null);
  const failures = logger.records.filter((e) => e.event === "session.dnsbl" && e.level === "warn");
  assert.equal(failures.length, 1, "a failing list is logged once");
  const hits = logger.records.filter((e) => e.event === "session.dnsbl" && e.level === "info");
  assert.equal(hits.length, 1);
});

Deno.test("the dnsbl key: zones and { zone, codes }, with clear errors", () => {
  const options = { file: null, baseDir: "/srv/tern" };
  const config = validateConfig({
    dnsbl: ["zen.example", { zone: "b.example", codes: ["127.0.0.2", "127.0.0.3"] }],
  }, options);
  assert.deepEqual(config.dnsbl, [
    { zone: "zen.example", codes: null },
    { zone: "b.example", codes: ["127.0.0.2", "127.0.0.3"] },
  ]);
  assert.equal(validateConfig({}, options).dnsbl, undefined);
  assert.throws(
    () =>
      validateConfig({
        dnsbl: ["bad zone", { zone: "b.example", codes: ["10.0.0.1"] }, { codez: [] }, 7],
      }, options),
    (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      const text = error.message;
      for (const path of ["dnsbl[0]", "dnsbl[1].codes[0]", "dnsbl[2]", "dnsbl[3]"]) {
        assert.ok(text.includes(path), `${path} in ${text}`);
      }
      return true;
    },
  );
});

Deno.test("DnsblChecker: a client on an allow list is refused by no block list", async () => {
  const q = "2.0.0.127";
  const resolver = new FakeResolver({
    [`${q}.bl.test A`]: a(`${q}.bl.test`, "127.0.0.2"),
    [`${q}.wl.test A`]: a(`${q}.wl.test`, "127.0.10.2"),
  });
  const logger = new MemoryLogger();
  const checker = new DnsblChecker({ resolver, logger });
  const lists = [{ zone: "bl.test", codes: null }, { zone: "wl.test", codes: null, allow: true }];
  assert.equal(await checker.check("127.0.0.2", lists), null);
  assert.ok(logger.records.some((e) => e.event === "session.dnswl"));
  // Not on the allow list: the block list refuses.
  assert.equal((await checker.check("127.0.0.2", [lists[0]!]))?.zone, "bl.test");
  // An allow list's TXT is never asked.
  assert.ok(!resolver.queries.includes(`${q}.wl.test TXT`));
});

Deno.test("DnsblChecker: a list that failed is not asked again for a while, then is", async () => {
  let now = 1_000_000;
  const resolver = new FakeResolver({ "2.0.0.127.down.test A": "fail" });
  const checker = new DnsblChecker({ resolver, now: () => now });
  const lists = [{ zone: "down.test", codes: null }];
  assert.equal(await checker.check("127.0.0.2", lists), null);
  assert.equal(await checker.check("127.0.0.2", lists), null);
  assert.equal(resolver.queries.length, 1, "the second connection does not wait for it");
  now += 61_000;
  await checker.check("127.0.0.2", lists);
  assert.equal(resolver.queries.length, 2);
});
