// DNS block lists end to end: dnsmasq on loopback serves the lists (through
// `dns.nameservers`), python3 smtplib connects from a chosen loopback source
// address (127.0.0.2 listed, 127.0.0.3 not), and the MTA refuses at RCPT.

import assert from "node:assert/strict";
import dgram from "node:dgram";
import { python, startMta } from "./_helpers.ts";
import { type Dnsmasq, startDnsmasq as startSharedDnsmasq } from "./_relay_fixtures.ts";

const DNSMASQ = "/usr/sbin/dnsmasq";
const hasDnsmasq = await Deno.stat(DNSMASQ).then(() => true, () => false);

const LISTS = [
  "--local=/bl.test/",
  "--local=/codes.test/",
  "--local=/err.test/",
  "--local-ttl=60",
  "--host-record=2.0.0.127.bl.test,127.0.0.2",
  "--txt-record=2.0.0.127.bl.test,Listed for spam; see https://bl.test/q?127.0.0.2",
  // Only 127.0.0.2 is acted on for codes.test.
  "--host-record=2.0.0.127.codes.test,127.0.0.10",
  // A list's own error code (Spamhaus: public resolver), never a listing.
  "--host-record=2.0.0.127.err.test,127.255.255.254",
  // An allow list (DNSWL) that lists 127.0.0.4, which bl.test lists too.
  "--local=/wl.test/",
  "--host-record=4.0.0.127.wl.test,127.0.10.2",
  "--host-record=4.0.0.127.bl.test,127.0.0.2",
];

/** A UDP socket on loopback that reads queries and never answers. */
async function silentServer(): Promise<{ address: string; close(): Promise<void> }> {
  const socket = dgram.createSocket("udp4");
  socket.on("message", () => {});
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  return {
    address: `127.0.0.1:${socket.address().port}`,
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

/** dnsmasq serving the lists above, ready once it answers a listing. */
function startDnsmasq(): Promise<Dnsmasq> {
  return startSharedDnsmasq(LISTS, [], { localTtl: null, ready: "2.0.0.127.bl.test" });
}

/** From a source address: EHLO, MAIL, then RCPT to each; prints each RCPT reply. */
const RCPT_FROM = `
import smtplib, sys
port, source = int(sys.argv[1]), sys.argv[2]
s = smtplib.SMTP("127.0.0.1", port, source_address=(source, 0), timeout=30)
s.ehlo("client.example")
s.mail("a@example.org")
for rcpt in sys.argv[3:]:
    code, text = s.rcpt(rcpt)
    print(code, text.decode().replace("\\n", " "))
s.quit()
`;

async function rcptFrom(port: number, source: string, ...rcpts: string[]): Promise<string[]> {
  const out = await python(RCPT_FROM, [String(port), source, ...rcpts]);
  return out.trim().split("\n");
}

const CONFIG = (nameserver: string) =>
  `relay: { trusted_networks: [] }
limits: { greeting_delay: 0s }
dns: { nameservers: ["${nameserver}"] }
dnsbl:
  - { zone: codes.test, codes: [127.0.0.2] }
  - err.test
  - bl.test
`;

Deno.test({
  name: "dnsbl: a listed client is refused at RCPT naming the list, postmaster still reachable",
  ignore: !hasDnsmasq,
  async fn() {
    await using dns = await startDnsmasq();
    await using t = await startMta(CONFIG(dns.nameserver));
    const listed = await rcptFrom(t.port, "127.0.0.2", "bob@localhost", "postmaster@localhost");
    assert.match(
      listed[0]!,
      /^554 5\.7\.1 Client 127\.0\.0\.2 is listed by bl\.test: Listed for spam; see https:\/\/bl\.test\/q\?127\.0\.0\.2$/,
    );
    assert.match(listed[1]!, /^250 /, "RFC 5782: postmaster takes mail from a listed client");
    const clean = await rcptFrom(t.port, "127.0.0.3", "bob@localhost");
    assert.match(clean[0]!, /^250 /);
    const hit = t.logger.records.find((r) => r.event === "session.dnsbl");
    assert.equal(hit?.fields.list, "bl.test");
    assert.equal(hit?.fields.code, "127.0.0.2");
    assert.ok(
      t.logger.records.some((r) =>
        r.event === "message.rejected" && r.fields.code === 554 && r.fields.stage === "rcpt"
      ),
    );
  },
});

Deno.test({
  name: "dnsbl: a client on an allow list is taken though a block list lists it",
  ignore: !hasDnsmasq,
  async fn() {
    await using dns = await startDnsmasq();
    await using t = await startMta(
      CONFIG(dns.nameserver) + "  - { zone: wl.test, allow: true }\n",
    );
    assert.match((await rcptFrom(t.port, "127.0.0.4", "bob@localhost"))[0]!, /^250 /);
    assert.match((await rcptFrom(t.port, "127.0.0.2", "bob@localhost"))[0]!, /^554 5\.7\.1 /);
    assert.ok(t.logger.records.some((r) => r.event === "session.dnswl"));
  },
});

Deno.test({
  name: "dnsbl: trusted networks are not looked up",
  ignore: !hasDnsmasq,
  async fn() {
    await using dns = await startDnsmasq();
    await using t = await startMta(
      CONFIG(dns.nameserver).replace("trusted_networks: []", "trusted_networks: [127.0.0.2/32]"),
    );
    const replies = await rcptFrom(t.port, "127.0.0.2", "bob@localhost");
    assert.match(replies[0]!, /^250 /);
    assert.ok(!t.logger.records.some((r) => r.event === "session.dnsbl"));
  },
});

Deno.test("dnsbl: a list that does not answer never blocks mail (fail open, logged once)", async () => {
  const silent = await silentServer();
  try {
    await using t = await startMta(CONFIG(silent.address));
    const first = await rcptFrom(t.port, "127.0.0.2", "bob@localhost");
    assert.match(first[0]!, /^250 /);
    const second = await rcptFrom(t.port, "127.0.0.2", "bob@localhost");
    assert.match(second[0]!, /^250 /);
    const warned = t.logger.records.filter((r) =>
      r.event === "session.dnsbl" && r.level === "warn"
    );
    // One line per list that failed, not one per connection.
    assert.deepEqual(warned.map((r) => r.fields.list).sort(), [
      "bl.test",
      "codes.test",
      "err.test",
    ]);
  } finally {
    await silent.close();
  }
});
