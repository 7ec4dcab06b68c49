import assert from "node:assert/strict";
import { decodeEncodedWords, decodeQuotedPrintable } from "./encoded_words.ts";
import { parseMessage } from "./parse_message.ts";

const bytes = (s: string) => new TextEncoder().encode(s);

Deno.test("decodeEncodedWords: adjacent words join, even mid-character; others stay as written", () => {
  // "ü" is C3 BC, split across two words (RFC 2047 §6.2: the space between is dropped).
  assert.equal(decodeEncodedWords("=?UTF-8?Q?Gr=C3?= =?utf-8?Q?=BC=C3=9Fe?= !"), "Grüße !");
  assert.equal(decodeEncodedWords("a =?iso-8859-1?q?caf=E9?= b"), "a café b");
  assert.equal(decodeEncodedWords("=?utf-8*fr?B?w6dh?="), "ça"); // RFC 2231 language
  assert.equal(decodeEncodedWords("=?x-unknown?Q?abc?="), "=?x-unknown?Q?abc?=");
  assert.equal(decodeEncodedWords("=?utf-8?Q?bad=Z?="), "=?utf-8?Q?bad=Z?=");
  assert.equal(decodeEncodedWords("no words here"), "no words here");
});

Deno.test("decodeQuotedPrintable: soft breaks, trailing padding, a stray =", () => {
  const out = new TextDecoder().decode(decodeQuotedPrintable("a=3Db =\r\nc  \r\nd=x"));
  assert.equal(out, "a=b c\r\nd=x"); // the space before a soft break is content
});

Deno.test("parseMessage: the first text/plain inside nested multiparts, skipping attachments", () => {
  const raw = bytes(
    "Subject: =?utf-8?B?w5xiZXI=?=\r\n  folded\r\nMIME-Version: 1.0\r\n" +
      'Content-Type: multipart/mixed; boundary="outer"\r\n\r\npreamble\r\n' +
      "--outer\r\nContent-Type: text/plain\r\nContent-Disposition: attachment\r\n\r\nnot this\r\n" +
      "--outer\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n" +
      "--inner\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
      "w4RwZmVs\r\nCg==\r\n--inner\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--inner--\r\n" +
      "--outer--\r\n",
  );
  const parsed = parseMessage(raw);
  assert.equal(parsed.subject, "Über  folded"); // unfolding drops only the CRLF (RFC 5322 §2.2.3)
  assert.equal(parsed.text, "Äpfel\n");
  assert.equal(parsed.messageId, undefined);
});

Deno.test("parseMessage: a message that is not MIME: the body is the text", () => {
  const parsed = parseMessage(
    bytes("Subject: hi\r\nMessage-ID: <1@x>\r\n\r\nline 1\r\nline 2\r\n"),
  );
  assert.deepEqual(parsed.headers.map((h) => h.name), ["Subject", "Message-ID"]);
  assert.equal(parsed.text, "line 1\nline 2\n");
  assert.equal(parsed.messageId, "<1@x>");
  // Only HTML: no text.
  assert.equal(
    parseMessage(bytes("MIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n")).text,
    undefined,
  );
  // 8-bit Latin-1 in a single part keeps its charset.
  const latin = Uint8Array.from([
    ...bytes("Content-Type: text/plain; charset=iso-8859-1\r\n\r\ncaf"),
    0xe9,
    13,
    10,
  ]);
  assert.equal(parseMessage(latin).text, "café\n");
});
