import assert from "node:assert/strict";
import { cleanText, MessageIdScanner, remoteQueueId } from "./fields.ts";

Deno.test("remoteQueueId reads the usual forms of a remote 250, and nothing from other texts", () => {
  const cases: [string, string | undefined][] = [
    ["2.0.0 Ok: queued as 4F2A9C", "4F2A9C"],
    ["Ok: queued as ABC123", "ABC123"],
    ["OK id=1rAbCd-000123-Xy", "1rAbCd-000123-Xy"],
    ["OK 1700000000 d2e1a72f5b.42 - gsmtp", "d2e1a72f5b.42"],
    ["2.0.0 4BFx1a2b3c Message accepted for delivery", "4BFx1a2b3c"],
    ["4BFx1a2b3c Message accepted for delivery", "4BFx1a2b3c"],
    ["2.0.0 OK: recorded", undefined],
    ["Ok", undefined],
  ];
  for (const [text, id] of cases) assert.equal(remoteQueueId(text), id, text);
});

Deno.test("MessageIdScanner: folded, split across chunks, in the header only, cleaned", () => {
  const scan = (...parts: string[]) => {
    const s = new MessageIdScanner();
    for (const p of parts) s.push(new TextEncoder().encode(p));
    return s.messageId;
  };
  assert.equal(scan("Subject: x\r\nMessage-", "ID:\r\n\t<a@b>\r\n\r\nbody"), "<a@b>");
  assert.equal(scan("message-id: <A@B> (comment)\r\n\r\n"), "<A@B>");
  assert.equal(scan("Subject: x\r\n\r\nMessage-ID: <body@x>\r\n"), "none");
  assert.equal(scan("Resent-Message-ID: <r@x>\r\n\r\n"), "none");
  assert.equal(scan("Message-ID: <\x1b[31m@x>\r\n\r\n"), "<[31m@x>");
  assert.equal(scan("Subject: only a header, no end"), "none");
  // The empty line split between pieces still ends the header section.
  assert.equal(scan("Subject: x\r\n\r", "\nMessage-ID: <body@x>\r\n"), "none");
  assert.equal(scan("Subject: x\n", "\nMessage-ID: <body@x>\n"), "none");
  assert.equal(scan("Subject: \u00e9\r\nMessage-ID: <a@b>\r\n\r\n\u00e9"), "<a@b>");
});

Deno.test("MessageIdScanner decodes the header section only, not the body behind it", () => {
  const decoded: number[] = [];
  const original = TextDecoder.prototype.decode;
  TextDecoder.prototype.decode = function (input, options) {
    decoded.push(input?.byteLength ?? 0);
    return original.call(this, input, options);
  };
  try {
    const s = new MessageIdScanner();
    const header = "Message-ID: <a@b>\r\n\r\n";
    s.push(new TextEncoder().encode(header + "x".repeat(60_000)));
    assert.equal(s.messageId, "<a@b>");
  } finally {
    TextDecoder.prototype.decode = original;
  }
  assert.ok(decoded.every((n) => n < 100), `decoded ${decoded.join(", ")} octets`);
});

Deno.test("cleanText makes one printable line", () => {
  assert.equal(cleanText("a\r\n  b\x00c"), "a b c");
  assert.equal(cleanText("x".repeat(400)).length, 301);
});
