// buildMessage() output parsed by Python's email package (policy=default), an
// independent RFC 5322 / MIME parser: structure, decoded names and subjects,
// attachment bytes, and the 998-octet line limit.

import assert from "node:assert/strict";
import { buildMessage, type MailOptions } from "../message/mod.ts";

/** Parses the message with Python and returns what it decoded, as JSON. */
async function parseWithPython(content: Uint8Array): Promise<Record<string, unknown>> {
  const script = `
import sys, json, email, email.policy, base64
msg = email.message_from_bytes(sys.stdin.buffer.read(), policy=email.policy.default)
def tree(part):
    if part.is_multipart():
        return [part.get_content_type(), [tree(p) for p in part.iter_parts()]]
    return part.get_content_type()
parts = []
for part in msg.walk():
    if part.is_multipart():
        continue
    parts.append({
        "type": part.get_content_type(),
        "filename": part.get_filename(),
        "cid": part.get("Content-ID"),
        "disposition": part.get_content_disposition(),
        "bytes": base64.b64encode(part.get_payload(decode=True)).decode(),
        "defects": [type(d).__name__ for d in part.defects],
    })
def addrs(name):
    h = msg.get(name)
    return None if h is None else [[a.display_name, a.addr_spec] for a in h.addresses]
print(json.dumps({
    "tree": tree(msg),
    "subject": msg.get("Subject"),
    "from": addrs("From"), "to": addrs("To"), "cc": addrs("Cc"), "replyTo": addrs("Reply-To"),
    "bcc": msg.get("Bcc"),
    "date": str(msg.get("Date")),
    "messageId": msg.get("Message-ID"),
    "custom": msg.get("X-Custom"),
    "defects": [type(d).__name__ for d in msg.defects],
    "parts": parts,
}))
`;
  const child = new Deno.Command("python3", {
    args: ["-c", script],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(content);
  await writer.close();
  const out = await child.output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

function b64(data: Uint8Array): string {
  return btoa(String.fromCharCode(...data));
}

const binary = Uint8Array.from({ length: 3000 }, (_, i) => (i * 37 + 11) % 256);
const png = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d]);

const everything: MailOptions = {
  from: { name: "Zoë Ångström", address: "zoe@example.org" },
  to: ["Ann Doe <ann@example.net>", { name: "日本語の名前", address: "taro@example.jp" }],
  cc: '"Doe, John (QA)" <john@example.net>',
  bcc: ["secret@example.com", "ann@EXAMPLE.net"],
  replyTo: { name: "Support 🎧", address: "help@example.org" },
  subject: "Café ☕ — 日本語のテキスト and a rather long subject line that must be folded 😀",
  text: "Hello Zoë,\nthe report is attached.\n" + "long line ".repeat(40) + "\n",
  html: '<p>Hello <b>Zoë</b></p><img src="cid:logo@example.org">',
  attachments: [
    { filename: "data.bin", content: binary },
    { filename: "Prüfbericht für das Jahr 2026 – endgültige Fassung 日本語.pdf", content: binary },
    { filename: "logo.png", content: png, cid: "logo@example.org" },
    { filename: "notes.txt", content: "line one\nline two\r\nno final newline" },
  ],
  headers: { "X-Custom": "value with ümlaut", "List-Id": "<list.example.org>" },
  date: new Date(Date.UTC(2026, 0, 2, 3, 4, 5)),
};

Deno.test("message build: every option, parsed by Python's email package", async () => {
  const built = buildMessage(everything, { hostname: "mail.example.org" });
  const parsed = await parseWithPython(built.content);
  assert.deepEqual(parsed.tree, [
    "multipart/mixed",
    [
      ["multipart/alternative", ["text/plain", ["multipart/related", ["text/html", "image/png"]]]],
      "application/octet-stream",
      "application/pdf",
      "text/plain",
    ],
  ]);
  assert.deepEqual(parsed.subject, everything.subject);
  assert.deepEqual(parsed.from, [["Zoë Ångström", "zoe@example.org"]]);
  assert.deepEqual(parsed.to, [["Ann Doe", "ann@example.net"], [
    "日本語の名前",
    "taro@example.jp",
  ]]);
  assert.deepEqual(parsed.cc, [["Doe, John (QA)", "john@example.net"]]);
  assert.deepEqual(parsed.replyTo, [["Support 🎧", "help@example.org"]]);
  assert.deepEqual(parsed.bcc, null);
  assert.deepEqual(parsed.custom, "value with ümlaut");
  assert.deepEqual(parsed.date, "Fri, 02 Jan 2026 03:04:05 +0000");
  assert.deepEqual(parsed.messageId, `<${built.messageId}>`);
  assert.ok(built.messageId.endsWith("@mail.example.org"));
  assert.deepEqual(parsed.defects, []);

  const parts = parsed.parts as {
    type: string;
    filename: string | null;
    cid: string | null;
    disposition: string | null;
    bytes: string;
    defects: string[];
  }[];
  for (const part of parts) assert.deepEqual(part.defects, [], part.type);
  const dec = (s: string) =>
    new TextDecoder().decode(Uint8Array.from(atob(s), (c) => c.charCodeAt(0)));
  assert.deepEqual(dec(parts[0]!.bytes), everything.text!.replaceAll("\n", "\r\n"));
  assert.deepEqual(dec(parts[1]!.bytes), everything.html);
  assert.deepEqual(parts[2]!.cid, "<logo@example.org>");
  assert.deepEqual(parts[2]!.disposition, "inline");
  assert.deepEqual(parts[2]!.bytes, b64(png));
  assert.deepEqual(parts[3]!.filename, "data.bin");
  assert.deepEqual(parts[3]!.bytes, b64(binary));
  assert.deepEqual(parts[4]!.filename, everything.attachments![1]!.filename);
  assert.deepEqual(parts[4]!.disposition, "attachment");
  assert.deepEqual(parts[4]!.bytes, b64(binary));
  assert.deepEqual(
    parts[5]!.bytes,
    b64(new TextEncoder().encode("line one\nline two\r\nno final newline")),
  );

  // Bcc only in the envelope; duplicates (domain case aside) collapse.
  const text = new TextDecoder().decode(built.content);
  assert.ok(!text.includes("secret@"));
  assert.ok(!/^bcc:/im.test(text));
  assert.deepEqual(built.envelope, {
    from: "zoe@example.org",
    to: ["ann@example.net", "taro@example.jp", "john@example.net", "secret@example.com"],
  });
  assert.deepEqual(built.eightBit, false);
  assert.deepEqual(built.smtputf8, false);
  for (const line of text.split("\r\n")) assert.ok(line.length <= 998);
  // Only CRLF line ends, and header lines are folded at 78 where words allow.
  assert.ok(!/[^\r]\n|\r[^\n]/.test(text));
  const header = text.slice(0, text.indexOf("\r\n\r\n"));
  for (const line of header.split("\r\n")) assert.ok(line.length <= 78, line);
});

Deno.test("message build: a subject in Japanese only is folded within 78 characters", async () => {
  const subject = "日本語のテキスト".repeat(6);
  const built = buildMessage({ from: "a@example.org", to: "b@example.org", subject, text: "x" });
  const text = new TextDecoder().decode(built.content);
  const header = text.slice(0, text.indexOf("\r\n\r\n"));
  for (const line of header.split("\r\n")) assert.ok(line.length <= 78, line);
  assert.equal((await parseWithPython(built.content)).subject, subject);
});

Deno.test("message build: single parts and alternatives", async () => {
  const cases: [MailOptions, unknown][] = [
    [{ from: "a@example.org", to: "b@example.org", text: "hi" }, "text/plain"],
    [{ from: "a@example.org", to: "b@example.org", html: "<p>hi</p>" }, "text/html"],
    [{ from: "a@example.org", to: "b@example.org" }, "text/plain"],
    [
      { from: "a@example.org", to: "b@example.org", text: "t", html: "<p>h</p>" },
      ["multipart/alternative", ["text/plain", "text/html"]],
    ],
    [
      {
        from: "a@example.org",
        to: "b@example.org",
        attachments: [{ filename: "x.csv", content: "a,b\n" }],
      },
      ["multipart/mixed", ["text/csv"]],
    ],
  ];
  for (const [options, tree] of cases) {
    const parsed = await parseWithPython(buildMessage(options).content);
    assert.deepEqual(parsed.tree, tree);
    assert.deepEqual(parsed.defects, []);
  }
});

Deno.test("message build: a 5000-character line and a 2000-character word stay within 998 octets", async () => {
  const body = "x".repeat(5000) + "\n" + "é".repeat(3000);
  const built = buildMessage({
    from: "a@example.org",
    to: "b@example.org",
    subject: "y".repeat(2000),
    text: body,
  });
  const text = new TextDecoder().decode(built.content);
  for (const line of text.split("\r\n")) assert.ok(new TextEncoder().encode(line).length <= 998);
  const parsed = await parseWithPython(built.content);
  assert.deepEqual(parsed.subject, "y".repeat(2000));
  const parts = parsed.parts as { bytes: string }[];
  assert.deepEqual(parts[0]!.bytes, b64(new TextEncoder().encode(body.replaceAll("\n", "\r\n"))));
});

Deno.test("message build: CR or LF in a custom header is refused, naming the header", () => {
  for (const value of ["a\r\nBcc: x@example.org", "a\nb", "a\rb"]) {
    assert.throws(
      () =>
        buildMessage({ from: "a@example.org", to: "b@example.org", headers: { "X-Tag": value } }),
      (e) => e instanceof TypeError && e.message.includes("X-Tag"),
    );
  }
  for (
    const name of [
      "Bcc",
      "Content-Type",
      "MIME-Version",
      "Content-Transfer-Encoding",
      "Bad Name",
      "A:b",
    ]
  ) {
    assert.throws(
      () => buildMessage({ from: "a@example.org", to: "b@example.org", headers: { [name]: "x" } }),
      (e) => e instanceof TypeError && e.message.includes(name),
    );
  }
  assert.throws(
    () => buildMessage({ from: "a@example.org", to: "b@example.org", subject: "a\r\nBcc: c@d" }),
    TypeError,
  );
  assert.throws(() => buildMessage({ from: "not an address", to: "b@example.org" }), TypeError);
  assert.throws(() => buildMessage({ from: "a@example.org", to: "b@@example.org" }), TypeError);
});

Deno.test("message build: non-ASCII addresses are flagged for SMTPUTF8", () => {
  const built = buildMessage(
    { from: "a@example.org", to: "josé@exämple.org", text: "x" },
    { hostname: "h.example.org", random: () => "fixed" },
  );
  assert.deepEqual(built.smtputf8, true);
  assert.deepEqual(built.eightBit, true);
  assert.deepEqual(built.messageId, "fixed@h.example.org");
  assert.deepEqual(built.envelope.to, ["josé@exämple.org"]);
});
