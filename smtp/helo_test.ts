import assert from "node:assert/strict";
import { heloNameProblem } from "./helo.ts";

// RFC 5321 §4.1.1.1: Domain (§4.1.2) or address literal (§4.1.3), with the
// leniency real MTAs show (underscores, one label, a trailing dot).
const ACCEPTED: readonly string[] = [
  "mail.example.test",
  "localhost",
  "DESKTOP_4F2K", // Windows hosts
  "_dmarc.example.test",
  "host-1.example.test",
  "mx.example.test.",
  "xn--bcher-kva.example",
  "192.0.2.1", // a numeric Domain: many clients send their address bare
  "[192.0.2.1]",
  "[IPv6:2001:db8::1]",
  "[ipv6:::1]",
  "[IPv6:::ffff:192.0.2.1]",
  `${"a".repeat(63)}.example`,
];

const REFUSED: readonly string[] = [
  "",
  "<script>",
  "a<b",
  "(comment)",
  "bad;name",
  '"quoted"',
  "it's",
  "a,b",
  "user@example.test",
  "a\x00b",
  "a\x01b",
  "a\x1bb",
  "a\x7fb",
  "-dash.example",
  "dash-.example",
  "a..b",
  ".example",
  "example..",
  "bücher.example", // before SMTPUTF8 can be negotiated: A-labels only
  "[300.1.1.1]",
  "[192.0.2]",
  "[IPv6:nonsense]",
  "[tag:content]", // a general literal: no tag is registered
  "[192.0.2.1",
  "192.0.2.1]",
  "[]",
  `${"a".repeat(64)}.example`,
  `${"a.".repeat(128)}a`, // 257 octets
];

Deno.test("EHLO/HELO names: domains (leniently) and IPv4/IPv6 literals are accepted", () => {
  for (const name of ACCEPTED) assert.equal(heloNameProblem(name), null, JSON.stringify(name));
});

Deno.test("EHLO/HELO names: anything else is refused with a reason for the 501", () => {
  for (const name of REFUSED) {
    const problem = heloNameProblem(name);
    assert.ok(problem?.startsWith("needs "), `${JSON.stringify(name)}: ${problem}`);
  }
});
