// The stub resolver against real servers on loopback: dnsmasq (Debian) for
// real zone data, and tiny responders of our own for the failures a real
// server will not produce on demand (SERVFAIL, silence, TC, spoofed replies).
//
// dnsmasq options that matter (checked with dnsmasq 2.90):
// - `--no-resolv` and no `--server`: dnsmasq has no upstream, so a name
//   outside its local data is answered REFUSED (a temporary failure for us);
// - `--local=/example.test/`: names in that domain that dnsmasq does not know
//   are answered NXDOMAIN, and known names without the asked type NODATA;
// - `--mx-host=nullmx.test,.,0` is accepted and gives the RFC 7505 null MX;
// - `--local-ttl=60`: local records carry TTL 60 (the default is 0);
// - `--no-daemon`: stays in the foreground and, unlike `--keep-in-foreground`
//   alone, answers TCP in the same process (no forked children to clean up);
// - a TXT record over 512 bytes makes dnsmasq set TC over UDP and answer
//   in full over TCP.

import assert from "node:assert/strict";
import dgram from "node:dgram";
import {
  decodeMessage,
  type DnsMessage,
  type DnsMessageInit,
  type DnsRecord,
  DnsTemporaryError,
  encodeMessage,
  resolveAddresses,
  resolveMx,
  StubResolver,
  type StubResolverOptions,
} from "../dns/mod.ts";
import { MemoryLogger } from "../log/logger.ts";
import { type Dnsmasq, startDnsmasq as startSharedDnsmasq } from "./_relay_fixtures.ts";

const DNSMASQ = "/usr/sbin/dnsmasq";
const hasDnsmasq = await Deno.stat(DNSMASQ).then(() => true, () => false);

// ---------------------------------------------------------------------------
// Helpers

function udpSocket(type: "udp4" | "udp6" = "udp4"): dgram.Socket {
  return dgram.createSocket({ type });
}

function bindUdp(socket: dgram.Socket, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(port, host, () => {
      socket.off("error", reject);
      resolve(socket.address().port);
    });
  });
}

function closeUdp(socket: dgram.Socket): Promise<void> {
  return new Promise((resolve) => {
    try {
      socket.close(() => resolve());
    } catch {
      resolve();
    }
  });
}

function toBytes(data: Uint8Array): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** A reply to `query`: same id and question, QR and RA set, plus what `init` adds. */
function replyTo(query: DnsMessage, init: Partial<DnsMessageInit> = {}): Uint8Array {
  return encodeMessage({
    questions: query.questions,
    ...init,
    id: init.id ?? query.id,
    flags: { qr: true, rd: query.flags.rd, ra: true, ...init.flags },
  });
}

function aRecord(name: string, data: string, ttl = 60): DnsRecord {
  return { name, type: "A", class: 1, ttl, data };
}

/** What a responder is told about each UDP query. */
interface UdpExchange {
  readonly query: DnsMessage;
  /** Sends bytes back to where the query came from. */
  send(bytes: Uint8Array): void;
  /** Where the query came from. */
  readonly from: { readonly address: string; readonly port: number };
}

/** A DNS server of our own on loopback. */
interface Responder extends AsyncDisposable {
  /** `127.0.0.1:port` (or `[::1]:port`). */
  readonly nameserver: string;
  readonly port: number;
  /** UDP queries received. */
  readonly udpQueries: DnsMessage[];
  /** TCP queries received. */
  readonly tcpQueries: DnsMessage[];
}

interface ResponderOptions {
  /** Answers one UDP query, or stays silent. */
  udp: (exchange: UdpExchange) => void;
  /** Answers one TCP query with the reply bytes; without it, nothing listens on TCP. */
  tcp?: (query: DnsMessage) => Uint8Array;
  /** Bind to ::1 instead of 127.0.0.1. */
  ipv6?: boolean;
}

async function readExactly(conn: Deno.Conn, length: number): Promise<Uint8Array | null> {
  const buffer = new Uint8Array(length);
  for (let filled = 0; filled < length;) {
    const n = await conn.read(buffer.subarray(filled));
    if (n === null) return null;
    filled += n;
  }
  return buffer;
}

async function serveTcp(
  conn: Deno.Conn,
  answer: (query: DnsMessage) => Uint8Array,
  log: DnsMessage[],
) {
  try {
    const prefix = await readExactly(conn, 2);
    if (prefix === null) return;
    const body = await readExactly(conn, (prefix[0]! << 8) | prefix[1]!);
    if (body === null) return;
    const query = decodeMessage(body);
    log.push(query);
    const reply = answer(query);
    const framed = new Uint8Array(2 + reply.length);
    new DataView(framed.buffer).setUint16(0, reply.length);
    framed.set(reply, 2);
    for (let written = 0; written < framed.length;) {
      written += await conn.write(framed.subarray(written));
    }
  } finally {
    conn.close();
  }
}

async function startResponder(options: ResponderOptions): Promise<Responder> {
  const host = options.ipv6 ? "::1" : "127.0.0.1";
  for (let tries = 0;; tries++) {
    const socket = udpSocket(options.ipv6 ? "udp6" : "udp4");
    const port = await bindUdp(socket, host, 0);
    let listener: Deno.TcpListener | null = null;
    if (options.tcp !== undefined) {
      try {
        listener = Deno.listen({ hostname: host, port });
      } catch (error: unknown) {
        await closeUdp(socket);
        if (error instanceof Deno.errors.AddrInUse && tries < 10) continue;
        throw error;
      }
    }
    const udpQueries: DnsMessage[] = [];
    const tcpQueries: DnsMessage[] = [];
    socket.on("message", (data: Uint8Array, from: { address: string; port: number }) => {
      const query = decodeMessage(toBytes(data));
      udpQueries.push(query);
      options.udp({ query, from, send: (bytes) => socket.send(bytes, from.port, from.address) });
    });
    const handlers: Promise<void>[] = [];
    const accepting = listener === null ? Promise.resolve() : (async () => {
      try {
        for await (const conn of listener) handlers.push(serveTcp(conn, options.tcp!, tcpQueries));
      } catch {
        // closed
      }
    })();
    return {
      nameserver: options.ipv6 ? `[::1]:${port}` : `127.0.0.1:${port}`,
      port,
      udpQueries,
      tcpQueries,
      async [Symbol.asyncDispose]() {
        listener?.close();
        await accepting;
        await Promise.allSettled(handlers);
        await closeUdp(socket);
      },
    };
  }
}

function resolverFor(nameservers: string[], options: StubResolverOptions = {}): StubResolver {
  return new StubResolver({ nameservers, timeoutMs: 300, attempts: 1, cacheSize: 0, ...options });
}

async function rejectsTemporary(
  promise: Promise<unknown>,
  reason: DnsTemporaryError["reason"],
): Promise<DnsTemporaryError> {
  try {
    await promise;
  } catch (error: unknown) {
    assert.ok(error instanceof DnsTemporaryError, `expected DnsTemporaryError, got ${error}`);
    assert.equal(error.reason, reason, error.message);
    return error;
  }
  assert.fail("expected a DnsTemporaryError");
}

// ---------------------------------------------------------------------------
// dnsmasq

const X200 = "x".repeat(200);

const DNSMASQ_RECORDS = [
  "--local=/example.test/",
  "--local=/nullmx.test/",
  "--local-ttl=60",
  "--mx-host=example.test,mx1.example.test,10",
  "--mx-host=example.test,mx2.example.test,20",
  "--host-record=mx1.example.test,127.0.0.2",
  "--host-record=mx2.example.test,127.0.0.4",
  "--host-record=v6.example.test,::1",
  "--host-record=noMX.example.test,127.0.0.3",
  "--host-record=dual.example.test,127.0.0.5,::5",
  "--host-record=xn--bcher-kva.example.test,127.0.0.6",
  "--cname=alias.example.test,mx1.example.test",
  "--mx-host=nullmx.test,.,0",
  "--txt-record=txtonly.example.test,hello",
  `--txt-record=big.example.test,${X200},${X200},${X200}`,
  ...Array.from({ length: 40 }, (_, i) => `--host-record=many.example.test,127.0.1.${i + 1}`),
];

/** dnsmasq serving the records above with their own TTLs, ready once it answers. */
function startDnsmasq(): Promise<Dnsmasq> {
  return startSharedDnsmasq(DNSMASQ_RECORDS, [], { localTtl: null, ready: "mx1.example.test" });
}

Deno.test({
  name: "the stub resolver reads real zone data from dnsmasq",
  ignore: !hasDnsmasq,
  async fn(t) {
    await using dnsmasq = await startDnsmasq();
    const resolver = resolverFor([dnsmasq.nameserver], { timeoutMs: 500 });

    await t.step("MX records come back with their TTL", async () => {
      const answer = await resolver.query("example.test", "MX");
      assert.equal(answer.kind, "answer");
      if (answer.kind !== "answer") return;
      assert.equal(answer.ttl, 60);
      assert.deepEqual(
        answer.records.map((r) => r.data).toSorted((a, b) =>
          JSON.stringify(a) < JSON.stringify(b) ? -1 : 1
        ),
        [{ preference: 10, exchange: "mx1.example.test" }, {
          preference: 20,
          exchange: "mx2.example.test",
        }],
      );
    });

    await t.step("resolveMx() orders the MX hosts by preference", async () => {
      assert.deepEqual(await resolveMx("example.test", resolver), {
        kind: "hosts",
        hosts: [
          { name: "mx1.example.test", preference: 10, implicit: false },
          { name: "mx2.example.test", preference: 20, implicit: false },
        ],
      });
    });

    await t.step("resolveMx() falls back to the implicit MX for a host without MX", async () => {
      assert.deepEqual(await resolveMx("nomx.example.test", resolver), {
        kind: "hosts",
        hosts: [{ name: "nomx.example.test", preference: 0, implicit: true }],
      });
    });

    await t.step("resolveMx() reports an unknown name in the zone as nxdomain", async () => {
      assert.deepEqual(await resolver.query("unknown.example.test", "MX"), { kind: "nxdomain" });
      assert.deepEqual(await resolveMx("unknown.example.test", resolver), { kind: "nxdomain" });
    });

    await t.step("resolveMx() reports the null MX (RFC 7505)", async () => {
      assert.deepEqual(await resolveMx("nullmx.test", resolver), { kind: "nullmx" });
    });

    await t.step(
      "resolveMx() reports noaddress for a name with neither MX nor address",
      async () => {
        assert.deepEqual(await resolver.query("txtonly.example.test", "MX"), { kind: "nodata" });
        assert.deepEqual(await resolveMx("txtonly.example.test", resolver), { kind: "noaddress" });
      },
    );

    await t.step(
      "resolveAddresses() finds A, AAAA, both (IPv6 first), and through a CNAME",
      async () => {
        assert.deepEqual(await resolveAddresses("mx1.example.test", resolver), ["127.0.0.2"]);
        assert.deepEqual(await resolveAddresses("v6.example.test", resolver), ["::1"]);
        assert.deepEqual(await resolveAddresses("dual.example.test", resolver), [
          "::5",
          "127.0.0.5",
        ]);
        assert.deepEqual(await resolveAddresses("alias.example.test", resolver), ["127.0.0.2"]);
        assert.deepEqual(await resolveAddresses("unknown.example.test", resolver), []);
      },
    );

    await t.step("a CNAME is followed to the records of its target", async () => {
      const answer = await resolver.query("alias.example.test", "A");
      assert.equal(answer.kind, "answer");
      if (answer.kind === "answer") {
        assert.deepEqual(answer.records, [aRecord("mx1.example.test", "127.0.0.2")]);
      }
    });

    await t.step("an internationalized name is asked as A-labels", async () => {
      assert.deepEqual(await resolveAddresses("bücher.example.test", resolver), ["127.0.0.6"]);
    });

    await t.step("a reply too big for UDP is asked again over TCP", async () => {
      const txt = await resolver.query("big.example.test", "TXT");
      assert.equal(txt.kind, "answer");
      if (txt.kind === "answer") assert.deepEqual(txt.records[0]?.data, [X200, X200, X200]);
      const many = await resolver.query("many.example.test", "A");
      assert.equal(many.kind === "answer" && many.records.length, 40);
    });

    await t.step("a name outside dnsmasq's data is REFUSED: a temporary failure", async () => {
      await rejectsTemporary(resolver.query("elsewhere.invalid", "MX"), "refused");
      await assert.rejects(resolveMx("elsewhere.invalid", resolver), DnsTemporaryError);
    });
  },
});

// ---------------------------------------------------------------------------
// Our own responders

Deno.test("SERVFAIL is a temporary failure, on every server in every round", async () => {
  await using server = await startResponder({
    udp: ({ query, send }) => send(replyTo(query, { flags: { rcode: 2 } })),
  });
  const logger = new MemoryLogger();
  const resolver = resolverFor([server.nameserver], { attempts: 2, logger });
  const started = Date.now();
  const error = await rejectsTemporary(resolver.query("example.test", "MX"), "servfail");
  assert.ok(Date.now() - started < 300, "no waiting for a timeout");
  assert.equal(server.udpQueries.length, 2);
  assert.equal(error.failures.length, 2);
  assert.match(
    error.message,
    /^Cannot resolve "example\.test" MX: 127\.0\.0\.1:\d+ answered SERVFAIL$/,
  );
  assert.deepEqual(
    logger.records.map((r) => [r.level, r.fields.reason]),
    [["debug", "servfail"], ["debug", "servfail"]],
  );
});

Deno.test("REFUSED is a temporary failure", async () => {
  await using server = await startResponder({
    udp: ({ query, send }) => send(replyTo(query, { flags: { rcode: 5 } })),
  });
  await rejectsTemporary(resolverFor([server.nameserver]).query("example.test", "MX"), "refused");
});

Deno.test("FORMERR without a question section is a temporary failure", async () => {
  await using server = await startResponder({
    udp: ({ query, send }) => send(replyTo(query, { questions: [], flags: { rcode: 1 } })),
  });
  await rejectsTemporary(resolverFor([server.nameserver]).query("example.test", "MX"), "formerr");
});

Deno.test("every RCODE maps to an answer, nxdomain, nodata or a temporary failure", async () => {
  let rcode = 0;
  await using server = await startResponder({
    udp: ({ query, send }) => send(replyTo(query, { flags: { rcode } })),
  });
  const resolver = resolverFor([server.nameserver]);
  const reasons: Record<number, DnsTemporaryError["reason"]> = {
    1: "formerr",
    2: "servfail",
    4: "notimp",
    5: "refused",
  };
  for (rcode = 0; rcode < 16; rcode++) {
    const result = resolver.query("example.test", "MX");
    if (rcode === 0) assert.deepEqual(await result, { kind: "nodata" });
    else if (rcode === 3) assert.deepEqual(await result, { kind: "nxdomain" });
    else await rejectsTemporary(result, reasons[rcode] ?? "rcode");
  }
});

Deno.test("a server that never answers times out within the configured time", async () => {
  await using server = await startResponder({ udp: () => {} });
  const resolver = resolverFor([server.nameserver], { timeoutMs: 150, attempts: 2 });
  const started = Date.now();
  const error = await rejectsTemporary(resolver.query("example.test", "MX"), "timeout");
  const elapsed = Date.now() - started;
  assert.ok(elapsed >= 290 && elapsed < 1000, `two tries of 150 ms took ${elapsed} ms`);
  assert.equal(server.udpQueries.length, 2);
  assert.match(error.message, /did not reply within 150 ms/);
});

Deno.test("each query goes out with a fresh random id", async () => {
  await using server = await startResponder({
    udp: ({ query, send }) => send(replyTo(query, { flags: { rcode: 2 } })),
  });
  const resolver = resolverFor([server.nameserver], { attempts: 5 });
  await rejectsTemporary(resolver.query("example.test", "A"), "servfail");
  const ids = new Set(server.udpQueries.map((q) => q.id));
  assert.ok(ids.size >= 4, `ids ${[...ids]}`);
});

Deno.test("replies with the wrong id, the wrong question or garbage are ignored (spoofing defence)", async () => {
  await using server = await startResponder({
    udp: ({ query, send }) => {
      const good = replyTo(query, { answers: [aRecord("example.test", "192.0.2.1")] });
      send(
        replyTo(query, { id: query.id ^ 0x5555, answers: [aRecord("example.test", "6.6.6.6")] }),
      );
      send(
        replyTo(query, {
          questions: [{ name: "evil.test", type: "A", class: 1 }],
          answers: [aRecord("evil.test", "6.6.6.6")],
        }),
      );
      send(Uint8Array.from([0xde, 0xad]));
      setTimeout(() => send(good), 20);
    },
  });
  const answer = await resolverFor([server.nameserver]).query("example.test", "A");
  assert.deepEqual(answer, {
    kind: "answer",
    records: [aRecord("example.test", "192.0.2.1")],
    ttl: 60,
  });
});

Deno.test("a server that only sends replies to other queries times out, and says so", async () => {
  await using server = await startResponder({
    udp: ({ query, send }) => send(replyTo(query, { id: query.id ^ 1 })),
  });
  const error = await rejectsTemporary(
    resolverFor([server.nameserver], { timeoutMs: 100 }).query("example.test", "A"),
    "timeout",
  );
  assert.match(error.message, /ignored a reply with another id or question$/);
});

Deno.test("a reply from another port is ignored", async () => {
  const spoofer = udpSocket();
  await bindUdp(spoofer, "127.0.0.1", 0);
  try {
    await using server = await startResponder({
      udp: ({ query, from }) => {
        const reply = replyTo(query, { answers: [aRecord("example.test", "6.6.6.6")] });
        spoofer.send(reply, from.port, from.address);
      },
    });
    const error = await rejectsTemporary(
      resolverFor([server.nameserver], { timeoutMs: 150 }).query("example.test", "A"),
      "timeout",
    );
    assert.equal(error.failures.length, 1);
  } finally {
    await closeUdp(spoofer);
  }
});

Deno.test("a truncated UDP reply is asked again over TCP (RFC 1035 §4.2.2)", async () => {
  const records = [1, 2, 3].map((i) => aRecord("example.test", `192.0.2.${i}`));
  await using server = await startResponder({
    udp: ({ query, send }) =>
      send(replyTo(query, { flags: { tc: true }, answers: records.slice(0, 1) })),
    tcp: (query) => replyTo(query, { answers: records }),
  });
  const answer = await resolverFor([server.nameserver]).query("example.test", "A");
  assert.deepEqual(answer, { kind: "answer", records, ttl: 60 });
  assert.equal(server.udpQueries.length, 1);
  assert.equal(server.tcpQueries.length, 1);
  assert.equal(server.tcpQueries[0]?.id, server.udpQueries[0]?.id);
});

Deno.test("a truncated reply without a working TCP service is a temporary failure", async () => {
  await using server = await startResponder({
    udp: ({ query, send }) => send(replyTo(query, { flags: { tc: true } })),
  });
  await rejectsTemporary(resolverFor([server.nameserver]).query("example.test", "A"), "truncated");
});

Deno.test("the next server is asked after a SERVFAIL and after a timeout", async () => {
  await using failing = await startResponder({
    udp: ({ query, send }) => send(replyTo(query, { flags: { rcode: 2 } })),
  });
  await using silent = await startResponder({ udp: () => {} });
  await using good = await startResponder({
    udp: ({ query, send }) =>
      send(replyTo(query, { answers: [aRecord("example.test", "192.0.2.1")] })),
  });
  const resolver = resolverFor([failing.nameserver, silent.nameserver, good.nameserver], {
    timeoutMs: 150,
  });
  const answer = await resolver.query("example.test", "A");
  assert.equal(answer.kind, "answer");
  assert.deepEqual(
    [failing.udpQueries.length, silent.udpQueries.length, good.udpQueries.length],
    [1, 1, 1],
  );
});

Deno.test("a failure names the most telling reason and every server", async () => {
  await using failing = await startResponder({
    udp: ({ query, send }) => send(replyTo(query, { flags: { rcode: 2 } })),
  });
  await using silent = await startResponder({ udp: () => {} });
  const resolver = resolverFor([failing.nameserver, silent.nameserver], { timeoutMs: 100 });
  const error = await rejectsTemporary(resolver.query("example.test", "A"), "servfail");
  assert.ok(error.message.includes(`${failing.nameserver} answered SERVFAIL`));
  assert.ok(error.message.includes(`${silent.nameserver} did not reply within 100 ms`));
});

Deno.test("a CNAME chain in the answer section is followed; a loop is a temporary failure", async () => {
  await using server = await startResponder({
    udp: ({ query, send }) => {
      const name = query.questions[0]?.name ?? "";
      const cname = (from: string, to: string, ttl = 60): DnsRecord => ({
        name: from,
        type: "CNAME",
        class: 1,
        ttl,
        data: to,
      });
      if (name === "a.example.test") {
        send(replyTo(query, {
          answers: [
            cname("a.example.test", "B.example.test", 30),
            cname("b.example.test", "c.example.test"),
            aRecord("c.example.test", "192.0.2.3"),
          ],
        }));
      } else {
        send(replyTo(query, {
          answers: [cname(name, "other.example.test"), cname("other.example.test", name)],
        }));
      }
    },
  });
  const resolver = resolverFor([server.nameserver]);
  assert.deepEqual(await resolver.query("a.example.test", "A"), {
    kind: "answer",
    records: [aRecord("c.example.test", "192.0.2.3")],
    ttl: 30,
  });
  await rejectsTemporary(resolver.query("loop.example.test", "A"), "malformed");
});

Deno.test("answers are cached for their TTL, negative answers for the SOA minimum", async () => {
  let now = 1_000_000;
  await using server = await startResponder({
    udp: ({ query, send }) => {
      const name = query.questions[0]?.name;
      if (name === "gone.example.test") {
        const soa: DnsRecord = {
          name: "example.test",
          type: "SOA",
          class: 1,
          ttl: 600,
          data: {
            mname: "ns.example.test",
            rname: "hostmaster.example.test",
            serial: 1,
            refresh: 1,
            retry: 1,
            expire: 1,
            minimum: 30,
          },
        };
        send(replyTo(query, { flags: { rcode: 3 }, authorities: [soa] }));
      } else if (name === "nosoa.example.test") {
        send(replyTo(query, { flags: { rcode: 3 } }));
      } else {
        send(replyTo(query, { answers: [aRecord(name ?? "", "192.0.2.1", 60)] }));
      }
    },
  });
  const resolver = resolverFor([server.nameserver], { cacheSize: 2, now: () => now });
  const ask = async (name: string) => {
    const before = server.udpQueries.length;
    const answer = await resolver.query(name, "A");
    return { answer, fromServer: server.udpQueries.length > before };
  };

  assert.equal((await ask("a.example.test")).fromServer, true);
  now += 10_000;
  const cached = await ask("A.Example.Test.");
  assert.equal(cached.fromServer, false, "same name in another case is the same entry");
  assert.equal(cached.answer.kind === "answer" && cached.answer.ttl, 50);
  now += 51_000;
  assert.equal((await ask("a.example.test")).fromServer, true, "expired after 60 s");

  assert.deepEqual(await ask("gone.example.test"), {
    answer: { kind: "nxdomain" },
    fromServer: true,
  });
  assert.deepEqual(await ask("gone.example.test"), {
    answer: { kind: "nxdomain" },
    fromServer: false,
  });
  now += 31_000;
  assert.equal(
    (await ask("gone.example.test")).fromServer,
    true,
    "negative entry expired after 30 s",
  );

  assert.equal((await ask("nosoa.example.test")).fromServer, true);
  assert.equal(
    (await ask("nosoa.example.test")).fromServer,
    true,
    "no SOA: not cached (RFC 2308 §5)",
  );

  // cacheSize 2: "gone" and "b" are kept, "a" (least recently used) is dropped.
  await ask("b.example.test");
  assert.equal((await ask("gone.example.test")).fromServer, false);
  assert.equal((await ask("a.example.test")).fromServer, true);
});

Deno.test("identical queries in flight share one exchange", async () => {
  await using server = await startResponder({
    udp: ({ query, send }) =>
      setTimeout(
        () => send(replyTo(query, { answers: [aRecord("example.test", "192.0.2.1")] })),
        30,
      ),
  });
  const resolver = resolverFor([server.nameserver]);
  const [a, b] = await Promise.all([
    resolver.query("example.test", "A"),
    resolver.query("EXAMPLE.test", "A"),
  ]);
  assert.deepEqual(a, b);
  assert.equal(server.udpQueries.length, 1);
});

Deno.test("an IPv6 name server is reached over udp6", async (t) => {
  let server: Responder;
  try {
    server = await startResponder({
      ipv6: true,
      udp: ({ query, send }) =>
        send(replyTo(query, { answers: [aRecord("example.test", "192.0.2.1")] })),
    });
  } catch (error: unknown) {
    await t.step({ name: `skipped: no ::1 here (${error})`, ignore: true, fn() {} });
    return;
  }
  await using _ = server;
  const answer = await resolverFor([server.nameserver]).query("example.test", "A");
  assert.equal(answer.kind, "answer");
});

Deno.test("StubResolver refuses unusable options", () => {
  assert.throws(() => new StubResolver({ nameservers: [] }), TypeError);
  assert.throws(() => new StubResolver({ nameservers: ["dns.example.test:53"] }), TypeError);
  assert.throws(() => new StubResolver({ nameservers: ["127.0.0.1:99999"] }), TypeError);
  assert.throws(() => new StubResolver({ timeoutMs: 0 }), TypeError);
  assert.throws(() => new StubResolver({ attempts: 0 }), TypeError);
  // Accepted forms: those of Config.dns.nameservers, and bare addresses.
  new StubResolver({ nameservers: ["127.0.0.1:5353", "[::1]:5353", "192.0.2.53", "2001:db8::53"] });
});

Deno.test("a query for a name that cannot exist fails before anything is sent", async () => {
  const resolver = new StubResolver({ nameservers: ["127.0.0.1:9"] });
  await assert.rejects(resolver.query("a..b", "A"), SyntaxError);
});

Deno.test("without nameservers, the servers of resolv.conf are asked", async () => {
  const path = await Deno.makeTempFile();
  try {
    // resolv.conf has no port: this asks 127.0.0.254:53, where normally nobody listens.
    await Deno.writeTextFile(path, "nameserver 127.0.0.254\noptions timeout:30\n");
    const resolver = new StubResolver({ resolvConfPath: path, timeoutMs: 100, attempts: 1 });
    try {
      await resolver.query("example.test", "A");
      // Something does answer on port 53 of this machine: nothing more to check.
    } catch (error: unknown) {
      assert.ok(error instanceof DnsTemporaryError, String(error));
      assert.equal(error.failures[0]?.nameserver, "127.0.0.254:53");
    }
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("an unreadable resolv.conf is a temporary failure", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const resolver = new StubResolver({ resolvConfPath: dir, timeoutMs: 100 });
    await rejectsTemporary(resolver.query("example.test", "A"), "config");
  } finally {
    await Deno.remove(dir);
  }
});
