import assert from "node:assert/strict";
import fc from "fast-check";
import {
  canonicalIpv6,
  decodeMessage,
  DnsFormatError,
  type DnsMessageInit,
  type DnsRecord,
  encodeMessage,
  encodeQuery,
  namesEqual,
  normalizeName,
  RCODES,
  recordTypeCode,
  recordTypeName,
} from "./message.ts";

const IN = 1;

/** A reply header: id 0xbeef, QR RD RA, the given counts. */
function header(counts: [number, number, number, number], flags = 0x8180): number[] {
  return [0xbe, 0xef, flags >> 8, flags & 0xff, ...counts.flatMap((n) => [n >> 8, n & 0xff])];
}

/** Labels as wire bytes, ending with the root label. */
function wireName(...labels: string[]): number[] {
  return [...labels.flatMap((l) => [l.length, ...new TextEncoder().encode(l)]), 0];
}

// ---------------------------------------------------------------------------
// Round trips

const records: DnsRecord[] = [
  { name: "example.test", type: "A", class: IN, ttl: 300, data: "192.0.2.1" },
  { name: "example.test", type: "AAAA", class: IN, ttl: 300, data: "2001:db8::1" },
  {
    name: "example.test",
    type: "MX",
    class: IN,
    ttl: 3600,
    data: { preference: 10, exchange: "mx1.example.test" },
  },
  {
    name: "example.test",
    type: "MX",
    class: IN,
    ttl: 3600,
    data: { preference: 0, exchange: "." },
  },
  { name: "www.example.test", type: "CNAME", class: IN, ttl: 60, data: "example.test" },
  { name: "example.test", type: "NS", class: IN, ttl: 86400, data: "ns1.example.test" },
  { name: "1.2.0.192.in-addr.arpa", type: "PTR", class: IN, ttl: 60, data: "mail.example.test" },
  {
    name: "example.test",
    type: "TXT",
    class: IN,
    ttl: 60,
    data: ["v=spf1 ", "mx -all", "", "héllo"],
  },
  {
    name: "example.test",
    type: "SOA",
    class: IN,
    ttl: 60,
    data: {
      mname: "ns1.example.test",
      rname: "hostmaster.example.test",
      serial: 2024010101,
      refresh: 7200,
      retry: 900,
      expire: 1209600,
      minimum: 4294967295,
    },
  },
  {
    name: "_25._tcp.mx1.example.test",
    type: "TLSA",
    class: IN,
    ttl: 60,
    data: Uint8Array.from([3, 1, 1, 0xab, 0xcd]),
  },
  { name: "example.test", type: "TYPE65280", class: IN, ttl: 1, data: new Uint8Array(0) },
];

for (const record of records) {
  Deno.test(`encodeMessage() and decodeMessage() round-trip a ${record.type} record`, () => {
    const message: DnsMessageInit = {
      id: 0x4242,
      flags: { qr: true, rd: true, ra: true },
      questions: [{ name: record.name, type: record.type, class: IN }],
      answers: [record],
      authorities: [record],
      additionals: [record],
    };
    const decoded = decodeMessage(encodeMessage(message));
    assert.equal(decoded.id, 0x4242);
    assert.deepEqual(decoded.questions, message.questions);
    assert.deepEqual(decoded.answers, [record]);
    assert.deepEqual(decoded.authorities, [record]);
    assert.deepEqual(decoded.additionals, [record]);
  });
}

const flagNames = ["qr", "aa", "tc", "rd", "ra", "ad", "cd"] as const;
for (const flag of flagNames) {
  Deno.test(`decodeMessage() reads the ${flag.toUpperCase()} flag alone`, () => {
    const { flags } = decodeMessage(encodeMessage({ id: 1, flags: { [flag]: true } }));
    for (const other of flagNames) assert.equal(flags[other], other === flag, other);
    assert.equal(flags.opcode, 0);
    assert.equal(flags.rcode, 0);
  });
}

Deno.test("decodeMessage() reads the opcode", () => {
  assert.equal(decodeMessage(encodeMessage({ id: 1, flags: { opcode: 2 } })).flags.opcode, 2);
});

// RFC 1035 §4.1.1 and RFC 2136 §2.2: RCODE is 4 bits; every value must come through.
for (let rcode = 0; rcode < 16; rcode++) {
  Deno.test(`decodeMessage() reads RCODE ${rcode}`, () => {
    const bytes = Uint8Array.from(header([0, 0, 0, 0], 0x8180 | rcode));
    assert.equal(decodeMessage(bytes).flags.rcode, rcode);
    assert.equal(
      decodeMessage(encodeMessage({ id: 1, flags: { qr: true, rcode } })).flags.rcode,
      rcode,
    );
  });
}

Deno.test("RCODES names the response codes of RFC 1035", () => {
  assert.deepEqual(
    [
      RCODES.NOERROR,
      RCODES.FORMERR,
      RCODES.SERVFAIL,
      RCODES.NXDOMAIN,
      RCODES.NOTIMP,
      RCODES.REFUSED,
    ],
    [0, 1, 2, 3, 4, 5],
  );
});

// ---------------------------------------------------------------------------
// Queries and names

Deno.test("encodeQuery() writes RFC 1035 §4.1 bytes for an MX question", () => {
  const bytes = encodeQuery({ id: 0xabcd, name: "example.test", type: "MX" });
  assert.deepEqual(
    [...bytes],
    [0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, ...wireName("example", "test"), 0, 15, 0, 1],
  );
});

Deno.test("encodeQuery() can leave recursion off", () => {
  const bytes = encodeQuery({ id: 1, name: "example.test", type: 1, recursionDesired: false });
  assert.equal(decodeMessage(bytes).flags.rd, false);
});

Deno.test("encodeQuery() ignores a trailing dot", () => {
  assert.deepEqual(
    encodeQuery({ id: 1, name: "example.test.", type: "A" }),
    encodeQuery({ id: 1, name: "example.test", type: "A" }),
  );
});

Deno.test("encodeQuery() sends U-labels as A-labels (RFC 5891)", () => {
  const message = decodeMessage(encodeQuery({ id: 1, name: "Bücher.example", type: "MX" }));
  assert.equal(message.questions[0]?.name, "xn--bcher-kva.example");
});

Deno.test("encodeQuery() asks for the root", () => {
  const message = decodeMessage(encodeQuery({ id: 1, name: ".", type: "NS" }));
  assert.equal(message.questions[0]?.name, ".");
});

const badNames = [
  { name: "a..example", why: "an empty label" },
  { name: ".example", why: "an empty first label" },
  { name: `${"a".repeat(64)}.example`, why: "a label of 64 octets" },
  { name: Array(128).fill("a").join("."), why: "a name of 257 octets" },
  { name: "a\\", why: "a dangling backslash" },
  { name: "a\\300b", why: "an escape above 255" },
  { name: "xn--ü.example", why: "an invalid IDN" },
];
for (const c of badNames) {
  Deno.test(`encodeQuery() refuses ${c.why}`, () => {
    assert.throws(() => encodeQuery({ id: 1, name: c.name, type: "A" }), DnsFormatError);
  });
}

Deno.test("encodeQuery() accepts a name of exactly 255 octets and a label of 63", () => {
  // 3 × (1 + 63) + (1 + 61) + root = 255
  const name = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61)].join(".");
  assert.equal(encodeQuery({ id: 1, name, type: "A" }).length, 12 + 255 + 4);
});

Deno.test("encodeQuery() refuses an unknown type", () => {
  assert.throws(() => encodeQuery({ id: 1, name: "example.test", type: 70000 }), DnsFormatError);
  // @ts-expect-error: not a type name
  assert.throws(() => encodeQuery({ id: 1, name: "example.test", type: "BOGUS" }), DnsFormatError);
});

Deno.test("recordTypeName() and recordTypeCode() agree (RFC 3597 §5 for unknown types)", () => {
  for (const code of [1, 15, 28, 52, 99, 65535]) {
    assert.equal(recordTypeCode(recordTypeName(code)), code);
  }
  assert.equal(recordTypeCode("type99" as "TYPE99"), 99);
});

Deno.test("names compare ignoring ASCII case and the trailing dot (RFC 4343)", () => {
  assert.ok(namesEqual("MX1.Example.Test.", "mx1.example.test"));
  assert.ok(namesEqual("bücher.example", "XN--BCHER-KVA.example"));
  assert.ok(!namesEqual("mx1.example.test", "mx2.example.test"));
  assert.ok(!namesEqual("a..b", "a..b"), "an invalid name equals nothing");
  assert.equal(normalizeName("Example.TEST"), "example.test");
});

Deno.test("a label holding a dot or a control byte survives a round trip as an escape", () => {
  const owner = "a\\.b\\000.example.test";
  const bytes = encodeMessage({
    id: 1,
    answers: [{ name: owner, type: "A", class: IN, ttl: 1, data: "192.0.2.1" }],
  });
  assert.deepEqual([...bytes.subarray(12, 12 + 5)], [4, 0x61, 0x2e, 0x62, 0]);
  assert.equal(decodeMessage(bytes).answers[0]?.name, owner);
});

// ---------------------------------------------------------------------------
// Compression (RFC 1035 §4.1.4)

Deno.test("encodeMessage() compresses repeated names", () => {
  const mx = (n: number): DnsRecord => ({
    name: "example.test",
    type: "MX",
    class: IN,
    ttl: 60,
    data: { preference: n, exchange: `mx${n}.example.test` },
  });
  const bytes = encodeMessage({
    id: 1,
    questions: [{ name: "example.test", type: "MX", class: IN }],
    answers: [mx(1), mx(2)],
  });
  // Header 12, question 14 + 4; each answer: pointer 2, fixed 10, preference 2, "mx1" 4 + pointer 2.
  assert.equal(bytes.length, 12 + 18 + 2 * (2 + 10 + 2 + 4 + 2));
  assert.deepEqual(decodeMessage(bytes).answers, [mx(1), mx(2)]);
});

Deno.test("decodeMessage() follows pointers, also inside RDATA and from one pointer to another", () => {
  const bytes = Uint8Array.from([
    ...header([1, 2, 0, 0]),
    ...wireName("example", "test"), // offset 12: the question name
    0,
    15,
    0,
    1,
    // answer 1 at offset 30: owner = pointer to 12, MX 10 mx1.<pointer to 12>
    0xc0,
    12,
    0,
    15,
    0,
    1,
    0,
    0,
    0,
    60,
    0,
    8,
    0,
    10,
    3,
    ...new TextEncoder().encode("mx1"),
    0xc0,
    12,
    // answer 2 at offset 50: owner = pointer to the "mx1" name at 44, A record
    0xc0,
    44,
    0,
    1,
    0,
    1,
    0,
    0,
    0,
    60,
    0,
    4,
    192,
    0,
    2,
    1,
  ]);
  const message = decodeMessage(bytes);
  assert.deepEqual(message.answers, [
    {
      name: "example.test",
      type: "MX",
      class: IN,
      ttl: 60,
      data: { preference: 10, exchange: "mx1.example.test" },
    },
    { name: "mx1.example.test", type: "A", class: IN, ttl: 60, data: "192.0.2.1" },
  ]);
});

const malformed = [
  {
    why: "a pointer to itself",
    bytes: [...header([1, 0, 0, 0]), 0xc0, 12, 0, 1, 0, 1],
  },
  {
    why: "a pointer forwards",
    bytes: [...header([1, 0, 0, 0]), 0xc0, 14, 0, 0, 1, 0, 1],
  },
  {
    why: "two names whose pointers point at each other",
    // 12: "a" then a pointer to 16; 16: "b" then a pointer back to 12.
    bytes: [...header([1, 0, 0, 0]), 1, 0x61, 0xc0, 16, 1, 0x62, 0xc0, 12, 0, 1, 0, 1],
  },
  {
    why: "a pointer that points backwards but into a loop",
    // Answer 1 (owner root, TYPE99) holds at offset 23 the labels "b", "c" and
    // at 27 a pointer back to "c" (25): each jump goes back, yet they cycle.
    // Answer 2's owner points at 23.
    bytes: [
      ...header([0, 2, 0, 0]),
      0,
      0,
      99,
      0,
      1,
      0,
      0,
      0,
      0,
      0,
      6,
      1,
      0x62,
      1,
      0x63,
      0xc0,
      25,
      0xc0,
      23,
      0,
      99,
      0,
      1,
      0,
      0,
      0,
      0,
      0,
      0,
    ],
  },
  {
    why: "a pointer cut off by the end of the message",
    bytes: [...header([1, 0, 0, 0]), 0xc0],
  },
  {
    why: "the reserved label type 0x40",
    bytes: [...header([1, 0, 0, 0]), 0x41, 0x61, 0, 0, 1, 0, 1],
  },
  {
    why: "the reserved label type 0x80",
    bytes: [...header([1, 0, 0, 0]), 0x81, 0x61, 0, 0, 1, 0, 1],
  },
  {
    why: "a label running past the end",
    bytes: [...header([1, 0, 0, 0]), 10, 0x61],
  },
  {
    why: "a name longer than 255 octets",
    bytes: [
      ...header([1, 0, 0, 0]),
      ...wireName(...Array<string>(5).fill("x".repeat(63))),
      0,
      1,
      0,
      1,
    ],
  },
  {
    why: "an A record of 5 bytes",
    bytes: [...header([0, 1, 0, 0]), 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 5, 1, 2, 3, 4, 5],
  },
  {
    why: "an AAAA record of 4 bytes",
    bytes: [...header([0, 1, 0, 0]), 0, 0, 28, 0, 1, 0, 0, 0, 0, 0, 4, 1, 2, 3, 4],
  },
  {
    why: "an MX exchange running past its RDATA",
    bytes: [...header([0, 1, 0, 0]), 0, 0, 15, 0, 1, 0, 0, 0, 0, 0, 4, 0, 10, 1, 0x61, 0],
  },
  {
    why: "an MX record with room to spare after the exchange",
    bytes: [...header([0, 1, 0, 0]), 0, 0, 15, 0, 1, 0, 0, 0, 0, 0, 5, 0, 10, 0, 0xff, 0xff],
  },
  {
    why: "an MX record of 2 bytes",
    bytes: [...header([0, 1, 0, 0]), 0, 0, 15, 0, 1, 0, 0, 0, 0, 0, 2, 0, 10],
  },
  {
    why: "a TXT string running past its RDATA",
    bytes: [...header([0, 1, 0, 0]), 0, 0, 16, 0, 1, 0, 0, 0, 0, 0, 2, 5, 0x61, 0x61, 0x61],
  },
  {
    why: "an SOA record missing its numbers",
    bytes: [...header([0, 1, 0, 0]), 0, 0, 6, 0, 1, 0, 0, 0, 0, 0, 6, 0, 0, 1, 2, 3, 4],
  },
  {
    why: "RDLENGTH beyond the end of the message",
    bytes: [...header([0, 1, 0, 0]), 0, 0, 99, 0, 1, 0, 0, 0, 0, 0xff, 0xff, 1],
  },
  {
    why: "more questions announced than present",
    bytes: [...header([0xffff, 0, 0, 0])],
  },
];
for (const c of malformed) {
  Deno.test(`decodeMessage() throws DnsFormatError on ${c.why}`, () => {
    assert.throws(() => decodeMessage(Uint8Array.from(c.bytes)), DnsFormatError);
  });
}

Deno.test("decodeMessage() throws DnsFormatError on every truncation of a valid message", () => {
  const bytes = encodeMessage({
    id: 7,
    flags: { qr: true },
    questions: [{ name: "example.test", type: "MX", class: IN }],
    answers: records,
  });
  decodeMessage(bytes);
  for (let length = 0; length < bytes.length; length++) {
    assert.throws(
      () => decodeMessage(bytes.subarray(0, length)),
      DnsFormatError,
      `length ${length}`,
    );
  }
});

Deno.test("decodeMessage() ignores bytes after the last record", () => {
  const bytes = encodeQuery({ id: 3, name: "example.test", type: "A" });
  const padded = Uint8Array.from([...bytes, 0xde, 0xad]);
  assert.deepEqual(decodeMessage(padded), decodeMessage(bytes));
});

Deno.test("decodeMessage() reads a TTL with the top bit set as 0 (RFC 2181 §8)", () => {
  const bytes = Uint8Array.from([
    ...header([0, 1, 0, 0]),
    0,
    0,
    1,
    0,
    1,
    0x80,
    0,
    0,
    1,
    0,
    4,
    1,
    2,
    3,
    4,
  ]);
  assert.equal(decodeMessage(bytes).answers[0]?.ttl, 0);
});

// ---------------------------------------------------------------------------
// IPv6 text (RFC 5952)

const ipv6 = [
  { input: "2001:0db8:0000:0000:0000:0000:0000:0001", canonical: "2001:db8::1" },
  { input: "2001:db8:0:0:1:0:0:1", canonical: "2001:db8::1:0:0:1" }, // §4.2.3: the first of equal runs
  { input: "2001:db8:0:1:1:1:1:1", canonical: "2001:db8:0:1:1:1:1:1" }, // §4.2.2: one zero group stays
  { input: "2001:db8::0:0:1", canonical: "2001:db8::1" },
  { input: "2001:DB8::AB", canonical: "2001:db8::ab" },
  { input: "0:0:0:0:0:0:0:0", canonical: "::" },
  { input: "::FFFF:c000:0201", canonical: "::ffff:192.0.2.1" }, // §5: IPv4-mapped
  { input: "1:0:0:2:0:0:0:3", canonical: "1:0:0:2::3" }, // the longest run wins
];
for (const c of ipv6) {
  Deno.test(`an AAAA record of ${c.input} decodes as ${c.canonical}`, () => {
    assert.equal(canonicalIpv6(c.input), c.canonical);
    const bytes = encodeMessage({
      id: 1,
      answers: [{ name: "v6.test", type: "AAAA", class: IN, ttl: 1, data: c.input }],
    });
    assert.equal(decodeMessage(bytes).answers[0]?.data, c.canonical);
  });
}

Deno.test("encodeMessage() refuses addresses and strings that do not fit", () => {
  const encode = (record: DnsRecord) => () => encodeMessage({ id: 1, answers: [record] });
  assert.throws(
    encode({ name: "a.test", type: "A", class: IN, ttl: 1, data: "192.0.2" }),
    DnsFormatError,
  );
  assert.throws(
    encode({ name: "a.test", type: "AAAA", class: IN, ttl: 1, data: "192.0.2.1" }),
    DnsFormatError,
  );
  assert.throws(
    encode({ name: "a.test", type: "TXT", class: IN, ttl: 1, data: ["x".repeat(256)] }),
    DnsFormatError,
  );
});

// ---------------------------------------------------------------------------
// Properties

Deno.test("decodeMessage() on random bytes returns or throws DnsFormatError, nothing else", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
      try {
        decodeMessage(bytes);
      } catch (error: unknown) {
        if (!(error instanceof DnsFormatError)) throw error;
      }
    }),
    { numRuns: 5000 },
  );
});

Deno.test("decodeMessage() on a damaged valid message returns or throws DnsFormatError", () => {
  const valid = encodeMessage({
    id: 7,
    flags: { qr: true },
    questions: [{ name: "example.test", type: "MX", class: IN }],
    answers: records,
  });
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat({ max: valid.length - 1 }), fc.integer({ min: 0, max: 255 })), {
        minLength: 1,
        maxLength: 8,
      }),
      fc.nat({ max: valid.length }),
      (edits, cut) => {
        const bytes = valid.slice(0, Math.max(cut, 12));
        for (const [at, value] of edits) if (at < bytes.length) bytes[at] = value;
        try {
          decodeMessage(bytes);
        } catch (error: unknown) {
          if (!(error instanceof DnsFormatError)) throw error;
        }
      },
    ),
    { numRuns: 5000 },
  );
});

const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?$/);
const hostName = fc.array(label, { minLength: 1, maxLength: 5 }).map((labels) => labels.join("."));

Deno.test("encodeMessage() then decodeMessage() gives back any MX and A records", () => {
  fc.assert(
    fc.property(
      hostName,
      fc.array(fc.tuple(fc.integer({ min: 0, max: 65535 }), hostName), { maxLength: 6 }),
      fc.array(fc.tuple(hostName, fc.ipV4()), { maxLength: 6 }),
      (owner, mxs, as) => {
        const answers: DnsRecord[] = [
          ...mxs.map(([preference, exchange]): DnsRecord => ({
            name: owner,
            type: "MX",
            class: IN,
            ttl: 60,
            data: { preference, exchange },
          })),
          ...as.map(([name, data]): DnsRecord => ({ name, type: "A", class: IN, ttl: 60, data })),
        ];
        const id = mxs.length;
        const decoded = decodeMessage(
          encodeMessage({ id, questions: [{ name: owner, type: "MX", class: IN }], answers }),
        );
        assert.deepEqual(decoded.answers, answers);
      },
    ),
  );
});

Deno.test("encodeQuery() with dnssecOk adds an EDNS0 OPT record with the DO bit (RFC 6891 §6.1, RFC 3225 §3)", () => {
  const plain = encodeQuery({ id: 1, name: "example.test", type: "TLSA" });
  const bytes = encodeQuery({ id: 1, name: "example.test", type: "TLSA", dnssecOk: true });
  // ARCOUNT 1; the OPT: root name, type 41, class = payload 1232, TTL with DO (0x8000), no data.
  assert.deepEqual([...bytes.subarray(10, 12)], [0, 1]);
  assert.deepEqual(
    [...bytes.subarray(plain.length)],
    [0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0],
  );
  const message = decodeMessage(bytes);
  assert.equal(message.additionals[0]?.type, "OPT");
  assert.equal(message.additionals[0]?.ttl, 0x8000);
});
