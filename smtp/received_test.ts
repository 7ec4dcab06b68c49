import assert from "node:assert/strict";
import { formatReceived, type ReceivedInfo } from "./received.ts";

const BASE: ReceivedInfo = {
  clientName: "client.test",
  clientAddress: "192.0.2.1",
  hostname: "mx.example.test",
  queueId: "0J1Q2W3E4R5T6Y",
  isExtended: true,
  smtputf8: false,
  tls: null,
  authenticated: false,
  recipient: "bob@example.test",
  date: new Date(0),
};

/** The field's first line: the RFC 5321 §4.4 From-domain. */
function fromLine(clientName: string, clientAddress = "192.0.2.1"): string {
  return formatReceived({ ...BASE, clientName, clientAddress }).split("\r\n")[0]!;
}

Deno.test("Received: the greeting name as given, then the address literal, always present", () => {
  const cases: [string, string, string][] = [
    ["client.test", "192.0.2.1", "from client.test ([192.0.2.1])"],
    ["DESKTOP_4F2K", "192.0.2.1", "from DESKTOP_4F2K ([192.0.2.1])"],
    ["[192.0.2.99]", "192.0.2.1", "from [192.0.2.99] ([192.0.2.1])"],
    // §4.1.3: an IPv6 address literal carries its tag.
    ["[IPv6:::1]", "::1", "from [IPv6:::1] ([IPv6:::1])"],
    ["client.test", "2001:db8::25", "from client.test ([IPv6:2001:db8::25])"],
    ["", "192.0.2.1", "from unknown ([192.0.2.1])"],
  ];
  for (const [name, address, expected] of cases) {
    assert.equal(fromLine(name, address), `Received: ${expected}`);
  }
});

Deno.test("Received: an odd greeting name is kept in an escaped comment and cannot break the field", () => {
  const cases: [string, string][] = [
    ["a(b)", "from unknown ([192.0.2.1]) (HELO a\\(b\\))"],
    ["x) by evil.test (", "from unknown ([192.0.2.1]) (HELO x\\) by evil.test \\()"],
    ["a\\", "from unknown ([192.0.2.1]) (HELO a\\\\)"],
    ["x; Thu, 01 Jan 1970", "from unknown ([192.0.2.1]) (HELO x? Thu, 01 Jan 1970)"],
    ["a\r\nX-Injected: 1", "from unknown ([192.0.2.1]) (HELO a??X-Injected: 1)"],
    ["bücher", "from unknown ([192.0.2.1]) (HELO b?cher)"],
    ["<script>", "from unknown ([192.0.2.1]) (HELO <script>)"],
  ];
  for (const [name, expected] of cases) {
    assert.equal(fromLine(name), `Received: ${expected}`, JSON.stringify(name));
  }
  const long = fromLine("a b".repeat(200));
  assert.ok(long.length < 200, long);
  assert.ok(long.endsWith("...)"), long);
});

Deno.test("Received: whatever the name, the field is one header of folded ASCII lines", () => {
  for (const name of ["a\r\nb", "(((", ")))", "\\", "x;y", "\x00", "é", "a b c"]) {
    const field = formatReceived({ ...BASE, clientName: name });
    const lines = field.slice(0, -2).split("\r\n");
    assert.ok(lines[0]!.startsWith("Received: from "), JSON.stringify(name));
    for (const line of lines.slice(1)) assert.ok(line.startsWith("\t"), JSON.stringify(name));
    assert.match(field, /^[\x20-\x7e\t\r\n]*$/, JSON.stringify(name));
    // The date follows the only top-level ";" (RFC 5321 §4.4).
    assert.equal(field.split(";").length, 2, JSON.stringify(name));
  }
});
