import assert from "node:assert/strict";
import type { MxResult } from "../dns/mx.ts";
import { mxHops, relayRoute, routeAddress } from "./routing.ts";
import { srsForward } from "./srs.ts";

const DIRECTORY = {
  localDomains: ["example.test"],
  accounts: { "alice@example.test": {}, "bob@example.test": {} },
  aliases: {
    "team@example.test": ["alice@example.test", "bob@example.test"],
    "out@example.test": ["carol@example.net"],
  },
};

Deno.test("routeAddress: mailbox, alias, remote, refusal", () => {
  const cases: ReadonlyArray<readonly [string, ReadonlyArray<[string, string | null]>]> = [
    ["alice@example.test", [["alice@example.test", "alice@example.test"]]],
    ["Alice+news@Example.test", [["Alice+news@Example.test", "alice@example.test"]]],
    ["team@example.test", [
      ["alice@example.test", "alice@example.test"],
      ["bob@example.test", "bob@example.test"],
    ]],
    ["out@example.test", [["carol@example.net", null]]],
    ["carol@example.net", [["carol@example.net", null]]],
    ["nobody@example.test", []],
  ];
  for (const [address, expected] of cases) {
    const got = routeAddress(DIRECTORY, address).map((r) => [r.address, r.mailbox]);
    assert.deepEqual(got, expected, address);
  }
});

Deno.test("routeAddress: an SRS address goes back to the sender it encodes", () => {
  const srs = { secret: "s3cret", secretFile: "/dev/null", domain: "example.test" };
  const config = { ...DIRECTORY, srs };
  const now = 1_700_000_000_000;
  const rewritten = srsForward("carol@example.org", srs, now);
  assert.deepEqual(routeAddress(config, rewritten, now), [
    { address: "carol@example.org", originalRecipient: rewritten, mailbox: null },
  ]);
  // A forged hash goes nowhere.
  const forged = rewritten.replace(/^SRS0=[^=]+=/, "SRS0=AAAA=");
  assert.deepEqual(routeAddress(config, forged, now), []);
});

Deno.test("relayRoute: configured hop with its policy, else MX", () => {
  const policy = { tls: "require" as const, auth: null };
  const relay = {
    routes: {
      "*": "smarthost.example.net:587",
      "v6.example": "[2001:db8::25]:25",
      "mx.example": "mx",
    },
    routePolicies: { "*": policy },
  };
  const cases: ReadonlyArray<readonly [string, unknown]> = [
    ["example.com", { kind: "hop", hop: { name: "smarthost.example.net", port: 587, policy } }],
    ["v6.example", { kind: "hop", hop: { name: "[IPv6:2001:db8::25]", port: 25 } }],
    ["mx.example", { kind: "mx", domain: "mx.example" }],
  ];
  for (const [domain, expected] of cases) {
    assert.deepEqual(relayRoute({ relay }, domain), expected, domain);
  }
  assert.deepEqual(relayRoute({ relay: { routes: {} } }, "any.example"), {
    kind: "mx",
    domain: "any.example",
  });
});

Deno.test("mxHops: hosts, null MX, missing domain, loop to self", () => {
  const host = (name: string, preference: number) => ({ name, preference, implicit: false });
  const cases: ReadonlyArray<readonly [MxResult, unknown]> = [
    [{ kind: "hosts", hosts: [host("a.example", 10), host("b.example", 20)] }, {
      hosts: [{ name: "a.example", port: 25 }, { name: "b.example", port: 25 }],
    }],
    // We are b: only hosts preferred over us are tried (RFC 5321 §5.1).
    [{ kind: "hosts", hosts: [host("a.example", 10), host("me.example", 20)] }, {
      hosts: [{ name: "a.example", port: 25 }],
    }],
    [{ kind: "hosts", hosts: [host("ME.example", 10)] }, {
      status: "bounced",
      reply: { code: 0, enhancedStatus: "5.4.6", text: "Mail for d.example loops back to myself" },
    }],
    [{ kind: "nullmx" }, {
      status: "bounced",
      reply: {
        code: 556,
        enhancedStatus: "5.1.10",
        text: "Domain d.example does not accept mail (null MX)",
      },
    }],
    [{ kind: "nxdomain" }, {
      status: "bounced",
      reply: {
        code: 0,
        enhancedStatus: "5.1.2",
        text: "Domain d.example does not exist (NXDOMAIN)",
      },
    }],
    [{ kind: "noaddress" }, {
      status: "bounced",
      reply: {
        code: 0,
        enhancedStatus: "5.1.2",
        text: "Domain d.example has no MX and no address records",
      },
    }],
  ];
  for (const [mx, expected] of cases) {
    assert.deepEqual(mxHops("me.example", "d.example", mx, 25), expected, mx.kind);
  }
});
