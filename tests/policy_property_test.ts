// tern relays exactly when the policy says so. The space: listener mode ×
// TLS × AUTH asked for × client network × sender × recipient domain (×
// sender_must_match). An oracle written apart from mta/policy.ts says what
// must happen; the pure policy is checked against it exhaustively and with
// fast-check, and a sample runs over real sockets against a running MTA.
import assert from "node:assert/strict";
import net from "node:net";
import fc from "fast-check";
import { hashPassword } from "../config/password.ts";
import { type ListenerMode, validateConfig } from "../config/schema.ts";
import { MemoryLogger } from "../log/logger.ts";
import {
  checkRecipient,
  checkSender,
  clientBlock,
  isInNetwork,
  isTrustedClient,
  parseIpAddress,
  type PolicyConfig,
} from "../mta/policy.ts";
import { Mta } from "../mta/mta.ts";
import { tempConfig, waitFor } from "./_helpers.ts";
import { CERT, plainResponse, TestClient } from "./_tls.ts";

const MODES: readonly ListenerMode[] = ["mx", "submission", "submissions"];
const TRUSTED = ["10.0.0.0/8", "2001:db8::/32", "127.0.0.1"];

/** Client addresses, and whether TRUSTED holds them (worked out by hand). */
const CLIENTS: readonly { address: string; isTrusted: boolean }[] = [
  { address: "127.0.0.1", isTrusted: true },
  { address: "127.0.0.2", isTrusted: false },
  { address: "10.200.3.4", isTrusted: true },
  { address: "::ffff:10.1.1.1", isTrusted: true }, // IPv4-mapped IPv6
  { address: "::ffff:a01:101", isTrusted: true }, // the same, in hex
  { address: "2001:db8:ffff::1", isTrusted: true },
  { address: "2001:DB8::", isTrusted: true },
  { address: "2001:db9::1", isTrusted: false },
  { address: "192.0.2.1", isTrusted: false },
  { address: "::1", isTrusted: false },
  { address: "::ffff:192.0.2.1", isTrusted: false },
];

/** Senders, and whether alice owns them. */
const SENDERS: readonly { reversePath: string; isAlices: boolean }[] = [
  { reversePath: "", isAlices: false }, // <>
  { reversePath: "alice@example.test", isAlices: true },
  { reversePath: "ALICE+news@Example.Test", isAlices: true },
  { reversePath: "sales@example.test", isAlices: true }, // alias → alice
  { reversePath: "bob@example.test", isAlices: false },
  { reversePath: "alice@example.net", isAlices: false },
];

type RecipientKind = "local" | "unknown" | "remote";
const RECIPIENTS: readonly { forwardPath: string; kind: RecipientKind }[] = [
  { forwardPath: "bob@example.test", kind: "local" },
  { forwardPath: "Postmaster", kind: "local" },
  { forwardPath: "nobody@example.test", kind: "unknown" },
  { forwardPath: "carol@example.net", kind: "remote" },
  { forwardPath: "dave@[192.0.2.7]", kind: "remote" },
];

function policyConfig(senderMustMatch: boolean, trusted = TRUSTED): PolicyConfig {
  return validateConfig({
    local_domains: ["example.test"],
    accounts: { "alice@example.test": {}, "bob@example.test": {} },
    aliases: { "sales@example.test": "alice@example.test" },
    relay: { trusted_networks: trusted },
    submission: { sender_must_match: senderMustMatch },
  }, { file: null, baseDir: "/srv/tern" });
}
const CONFIGS = { strict: policyConfig(true), relaxed: policyConfig(false) };

interface Case {
  mode: ListenerMode;
  isTls: boolean;
  wantsAuth: boolean;
  client: { address: string; isTrusted: boolean };
  sender: { reversePath: string; isAlices: boolean };
  recipient: { forwardPath: string; kind: RecipientKind };
  senderMustMatch: boolean;
}

/**
 * The oracle, in the words. AUTH happens only on submission
 * listeners, only under TLS. Submission needs AUTH before MAIL. An
 * authenticated user sends as their own addresses unless relaxed. Mail to
 * other domains goes out for authenticated users and trusted networks only.
 */
function expected(c: Case): { sender: number; recipient: number; relays: boolean } {
  const isSubmission = c.mode !== "mx";
  const isAuthenticated = c.wantsAuth && c.isTls && isSubmission;
  let sender = 250;
  if (isSubmission && !isAuthenticated) sender = 530;
  else if (isAuthenticated && c.senderMustMatch && !c.sender.isAlices) sender = 553;
  let recipient: number;
  if (isSubmission && !isAuthenticated) recipient = 530;
  else if (c.recipient.kind === "local") recipient = 250;
  else if (c.recipient.kind === "unknown") recipient = 550;
  else recipient = isAuthenticated || c.client.isTrusted ? 250 : 554;
  const relays = sender === 250 && recipient === 250 && c.recipient.kind === "remote";
  return { sender, recipient, relays };
}

/** What the policy answers, for the user the server would have authenticated. */
function actual(c: Case): { sender: number; recipient: number; relays: boolean } {
  const config = c.senderMustMatch ? CONFIGS.strict : CONFIGS.relaxed;
  const isAuthenticated = c.wantsAuth && c.isTls && c.mode !== "mx";
  const who = {
    mode: c.mode,
    address: c.client.address,
    authenticatedAs: isAuthenticated ? "alice@example.test" : null,
  };
  const sender = checkSender({ ...who, reversePath: c.sender.reversePath }, config).code;
  const recipient = checkRecipient({ ...who, forwardPath: c.recipient.forwardPath }, config).code;
  return {
    sender,
    recipient,
    relays: sender === 250 && recipient === 250 && c.recipient.kind === "remote",
  };
}

function* allCases(): Generator<Case> {
  for (const mode of MODES) {
    for (const isTls of [false, true]) {
      for (const wantsAuth of [false, true]) {
        for (const client of CLIENTS) {
          for (const sender of SENDERS) {
            for (const recipient of RECIPIENTS) {
              for (const senderMustMatch of [true, false]) {
                yield { mode, isTls, wantsAuth, client, sender, recipient, senderMustMatch };
              }
            }
          }
        }
      }
    }
  }
}

Deno.test("the policy relays exactly when the oracle says so, in every case of the space", () => {
  let count = 0;
  for (const c of allCases()) {
    assert.deepEqual(actual(c), expected(c), JSON.stringify(c));
    count++;
  }
  assert.equal(count, 3 * 2 * 2 * CLIENTS.length * SENDERS.length * RECIPIENTS.length * 2);
});

Deno.test("no open relay: an unauthenticated client outside trusted_networks never reaches another domain", () => {
  for (const c of allCases()) {
    const isAuthenticated = c.wantsAuth && c.isTls && c.mode !== "mx";
    if (!isAuthenticated && !c.client.isTrusted) assert.equal(actual(c).relays, false);
  }
});

Deno.test("empty trusted_networks trusts nobody, not even loopback", () => {
  const config = policyConfig(true, []);
  for (const address of ["127.0.0.1", "::1", "10.0.0.1"]) {
    const reply = checkRecipient({
      mode: "mx",
      address,
      authenticatedAs: null,
      forwardPath: "x@example.net",
    }, config);
    assert.equal(reply.code, 554);
  }
});

// --- fast-check -----------------------------------------------------------------

/**
 * An IPv4-mapped IPv6 address (::ffff:a.b.c.d) as the IPv4 address it stands
 * for, through the URL parser's normal form ([::ffff:a01:101]); else `null`.
 */
function unmapped(address: string): string | null {
  if (!net.isIPv6(address)) return null;
  const host = new URL(`http://[${address}]/`).hostname;
  const m = /^\[::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})\]$/.exec(host);
  if (m === null) return null;
  const high = parseInt(m[1]!, 16);
  const low = parseInt(m[2]!, 16);
  return [high >> 8, high & 255, low >> 8, low & 255].join(".");
}

/**
 * The reference for CIDR matching: node:net's BlockList, an implementation
 * apart from ours, after the rule tern adds: an IPv4 client is one client
 * however written (::ffff:a.b.c.d is a.b.c.d), so it is matched as IPv4, by
 * IPv4 networks and by networks inside ::ffff:0:0/96; wider IPv6 networks
 * hold IPv6 clients only.
 */
function referenceIsTrusted(address: string, networks: readonly string[]): boolean {
  const list = new net.BlockList();
  for (const network of networks) {
    const [base = "", bits] = network.split("/");
    const family = net.isIPv4(base) ? "ipv4" : "ipv6";
    const prefix = bits === undefined ? (family === "ipv4" ? 32 : 128) : Number(bits);
    const v4 = family === "ipv6" && prefix >= 96 ? unmapped(base) : null;
    if (v4 !== null) list.addSubnet(v4, prefix - 96, "ipv4");
    else list.addSubnet(base, prefix, family);
  }
  const v4 = net.isIPv4(address) ? address : unmapped(address);
  return v4 !== null ? list.check(v4, "ipv4") : list.check(address, "ipv6");
}

const arbitraryAddress = fc.oneof(
  fc.constantFrom(...CLIENTS.map((c) => c.address)),
  fc.ipV4(),
  fc.ipV4().map((a) => `::ffff:${a}`),
  fc.ipV6(),
  fc.tuple(fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 0xffff }))
    .map(([a, b]) => `2001:db8:${a.toString(16)}::${b.toString(16)}`),
  fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }))
    .map(([a, b]) => `10.${a}.${b}.1`),
);

Deno.test("fast-check: trusted-network matching agrees with node:net BlockList", () => {
  const arbitraryNetwork = fc.oneof(
    fc.tuple(fc.ipV4(), fc.integer({ min: 0, max: 32 })).map(([a, n]) => `${a}/${n}`),
    fc.tuple(fc.ipV6(), fc.integer({ min: 0, max: 128 })).map(([a, n]) => `${a}/${n}`),
    fc.constantFrom(...TRUSTED),
  );
  fc.assert(
    fc.property(arbitraryAddress, fc.array(arbitraryNetwork, { maxLength: 4 }), (a, networks) => {
      const frozen = Object.freeze([...networks]);
      assert.equal(
        isTrustedClient(a, frozen),
        referenceIsTrusted(a, frozen),
        `${a} in ${networks}`,
      );
      for (const n of networks) assert.equal(isInNetwork(a, n), referenceIsTrusted(a, [n]));
    }),
    { numRuns: 2000 },
  );
});

Deno.test("fast-check: an IPv4 client and its IPv4-mapped IPv6 form are one client", () => {
  fc.assert(
    fc.property(fc.ipV4(), fc.ipV4(), fc.integer({ min: 0, max: 32 }), (a, b, n) => {
      assert.equal(parseIpAddress(a), parseIpAddress(`::ffff:${a}`));
      assert.equal(isInNetwork(`::ffff:${a}`, `${b}/${n}`), isInNetwork(a, `${b}/${n}`));
      assert.equal(clientBlock(`::ffff:${a}`), clientBlock(a));
    }),
  );
});

Deno.test("fast-check: over random clients, the policy relays exactly when the oracle says so", () => {
  fc.assert(
    fc.property(
      fc.constantFrom(...MODES),
      fc.boolean(),
      fc.boolean(),
      arbitraryAddress,
      fc.constantFrom(...SENDERS),
      fc.constantFrom(...RECIPIENTS),
      fc.boolean(),
      (mode, isTls, wantsAuth, address, sender, recipient, senderMustMatch) => {
        const client = { address, isTrusted: referenceIsTrusted(address, TRUSTED) };
        const c = { mode, isTls, wantsAuth, client, sender, recipient, senderMustMatch };
        assert.deepEqual(actual(c), expected(c));
      },
    ),
    { numRuns: 3000 },
  );
});

// --- a sample over real sockets -----------------------------------------------

const PASSWORD = "s3cret";

async function startPolicyMta(trusted: readonly string[]) {
  const { dir, config } = await tempConfig(`
listeners:
  - { address: 127.0.0.1, port: 0, mode: mx }
  - { address: 127.0.0.1, port: 0, mode: submission }
  - { address: 127.0.0.1, port: 0, mode: submissions }
tls: { cert: "${CERT.cert}", key: "${CERT.key}" }
local_domains: [example.test]
accounts:
  alice@example.test: { password: "${await hashPassword(PASSWORD)}" }
  bob@example.test: {}
aliases: { sales@example.test: alice@example.test }
relay:
  trusted_networks: ${JSON.stringify(trusted)}
  routes: { example.net: "127.0.0.1:1", "*": "127.0.0.1:1" }
limits: { greeting_delay: 0s }
`);
  const mta = await Mta.start(config, { logger: new MemoryLogger(), pollMs: 60_000 });
  return {
    mta,
    port: (mode: ListenerMode) => mta.listeners.find((l) => l.mode === mode)!.port,
    async [Symbol.asyncDispose]() {
      await mta.stop(1000);
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Runs one case over a socket: the RCPT reply code, and the queued recipient if it was relayed. */
async function runOverSocket(
  port: number,
  c: Case,
  mta: Mta,
): Promise<{ sender: number; recipient: number; relays: boolean }> {
  const implicitTls = c.mode === "submissions";
  const client = await TestClient.connect(port, { implicitTls });
  const code = (r: string | null) => Number(r?.slice(0, 3) ?? 0);
  try {
    if (c.isTls && !implicitTls) await client.secure();
    else await client.command("EHLO client.test");
    if (c.wantsAuth) {
      await client.command(`AUTH PLAIN ${plainResponse("alice@example.test", PASSWORD)}`);
    }
    const sender = code(await client.command(`MAIL FROM:<${c.sender.reversePath}>`));
    if (sender !== 250) return { sender, recipient: 0, relays: false };
    const recipient = code(await client.command(`RCPT TO:<${c.recipient.forwardPath}>`));
    let relays = false;
    if (recipient === 250 && c.recipient.kind === "remote") {
      await client.command("DATA");
      const done = await client.command("Subject: sample\r\n\r\nx\r\n.");
      const queueId = /queued as ([0-9A-Z]+)/.exec(done ?? "")?.[1];
      assert.ok(queueId, done ?? "no reply");
      const message = await waitFor(() => mta.queue.get(queueId).then((m) => m ?? undefined));
      relays = message.recipients.some((r) =>
        r.address === c.recipient.forwardPath && r.mailbox === null
      );
    }
    await client.command("QUIT");
    return { sender, recipient, relays };
  } finally {
    client.close();
  }
}

for (const trusted of [[] as string[], ["127.0.0.0/8"]]) {
  Deno.test(`over real sockets, a sample of the space relays exactly as the policy says (trusted_networks ${JSON.stringify(trusted)})`, async () => {
    await using t = await startPolicyMta(trusted);
    const space = fc.record({
      mode: fc.constantFrom(...MODES),
      isTls: fc.boolean(),
      wantsAuth: fc.boolean(),
      sender: fc.constantFrom(...SENDERS.filter((s) => s.reversePath !== "alice@example.net")),
      recipient: fc.constantFrom(...RECIPIENTS.filter((r) => r.forwardPath !== "Postmaster")),
      senderMustMatch: fc.constant(true),
    });
    const sample = fc.sample(space, { numRuns: 14, seed: trusted.length === 0 ? 42 : 7 });
    // Always include the cases that matter most.
    sample.push(
      {
        mode: "submission",
        isTls: true,
        wantsAuth: true,
        sender: SENDERS[1]!,
        recipient: RECIPIENTS[3]!,
        senderMustMatch: true,
      },
      {
        mode: "mx",
        isTls: false,
        wantsAuth: false,
        sender: SENDERS[0]!,
        recipient: RECIPIENTS[3]!,
        senderMustMatch: true,
      },
      {
        mode: "submission",
        isTls: false,
        wantsAuth: true,
        sender: SENDERS[1]!,
        recipient: RECIPIENTS[3]!,
        senderMustMatch: true,
      },
    );
    for (const s of sample) {
      const c: Case = { ...s, client: { address: "127.0.0.1", isTrusted: trusted.length > 0 } };
      const isTls = c.mode === "submissions" || c.isTls;
      const want = expected({ ...c, isTls });
      const got = await runOverSocket(t.port(c.mode), { ...c, isTls }, t.mta);
      const label = JSON.stringify({ ...c, isTls });
      assert.equal(got.sender, want.sender, label);
      if (want.sender === 250) assert.equal(got.recipient, want.recipient, label);
      assert.equal(got.relays, want.relays, label);
    }
  });
}
