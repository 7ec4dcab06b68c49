/**
 * The client session in LMTP mode (RFC 2033): LHLO, DATA only, and one
 * reply per accepted recipient after the end of the content.
 */

import assert from "node:assert/strict";
import { type ClientEvent, ClientSession, type TransactionResult } from "./client_session.ts";

const latin1 = new TextDecoder("latin1");
const bytes = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0));

/** A session in LMTP mode, with what it wrote and the results it gave. */
function lmtpSession() {
  const session = new ClientSession({ hostname: "tern.example.test", lmtp: true });
  const out = { sent: "", results: [] as TransactionResult[], events: [] as string[] };
  const handle = (events: ClientEvent[]): void => {
    for (const e of events) {
      if (e.type === "send") out.sent += latin1.decode(e.bytes);
      else if (e.type === "result") out.results.push(e.result);
      else if (e.type === "refused") out.events.push(`refused ${e.reply.code}`);
      else if (e.type !== "reply") out.events.push(e.type);
    }
  };
  return {
    session,
    out,
    server: (text: string) => handle(session.receive(bytes(text))),
    start: (addresses: string[]) =>
      handle(session.startTransaction({
        reversePath: "bob@remote.test",
        recipients: addresses.map((address) => ({ address })),
        body: "8BITMIME",
        smtputf8: false,
        size: 20,
      })),
    content: (text: string) => {
      handle(session.content(bytes(text)));
      handle(session.endContent());
    },
  };
}

const LHLO_REPLY = "250-lmtp.example.test\r\n250-8BITMIME\r\n250-CHUNKING\r\n" +
  "250-ENHANCEDSTATUSCODES\r\n250 PIPELINING\r\n";

function lastLines(text: string, n: number): string[] {
  return text.split("\r\n").filter((l) => l !== "").slice(-n);
}

Deno.test("LMTP session says LHLO, and has no HELO to fall back to (RFC 2033 §4.1)", () => {
  const s = lmtpSession();
  s.server("220 lmtp.example.test ready\r\n");
  assert.equal(s.out.sent, "LHLO tern.example.test\r\n");
  const refused = lmtpSession();
  refused.server("220 lmtp.example.test ready\r\n500 5.5.1 Unknown command\r\n");
  assert.ok(!refused.out.sent.includes("HELO tern"), "no HELO after a refused LHLO");
  assert.deepEqual(refused.out.events, ["refused 500"]);
});

Deno.test("LMTP session maps one reply per accepted recipient after the dot (RFC 2033 §4.2)", () => {
  const s = lmtpSession();
  s.server("220 lmtp.example.test ready\r\n" + LHLO_REPLY);
  s.start(["alice@example.test", "nobody@example.test", "carol@example.test"]);
  // CHUNKING is offered, but LMTP mode sends DATA (its replies are per recipient).
  assert.deepEqual(lastLines(s.out.sent, 5), [
    "MAIL FROM:<bob@remote.test> BODY=8BITMIME",
    "RCPT TO:<alice@example.test>",
    "RCPT TO:<nobody@example.test>",
    "RCPT TO:<carol@example.test>",
    "DATA",
  ]);
  s.server("250 2.1.0 OK\r\n250 2.1.5 OK\r\n550 5.1.1 User doesn't exist\r\n250 2.1.5 OK\r\n");
  s.server("354 OK\r\n");
  s.content("Subject: hi\r\n\r\nbody\r\n");
  s.server("250 2.0.0 <alice@example.test> Saved\r\n");
  assert.equal(s.out.results.length, 0, "no result until every accepted recipient has its reply");
  s.server("452 4.2.2 <carol@example.test> Quota exceeded\r\n");
  const result = s.out.results[0]!;
  assert.deepEqual(
    result.recipients.map((r) => [r.address, r.reply.code, r.reply.enhancedStatus]),
    [
      ["alice@example.test", 250, "2.0.0"],
      ["nobody@example.test", 550, "5.1.1"],
      ["carol@example.test", 452, "4.2.2"],
    ],
  );
  assert.equal(s.session.state, "ready");
});

Deno.test("LMTP session starts each later transaction with RSET", () => {
  const s = lmtpSession();
  s.server("220 lmtp.example.test ready\r\n" + LHLO_REPLY);
  s.start(["alice@example.test"]);
  s.server("250 2.1.0 OK\r\n250 2.1.5 OK\r\n354 OK\r\n");
  s.content("x\r\n");
  s.server("250 2.0.0 <alice@example.test> Saved\r\n");
  s.start(["carol@example.test"]);
  assert.deepEqual(lastLines(s.out.sent, 4), [
    "RSET",
    "MAIL FROM:<bob@remote.test> BODY=8BITMIME",
    "RCPT TO:<carol@example.test>",
    "DATA",
  ]);
  s.server("250 2.0.0 OK\r\n250 2.1.0 OK\r\n250 2.1.5 OK\r\n354 OK\r\n");
  s.content("y\r\n");
  s.server("250 2.0.0 <carol@example.test> Saved\r\n");
  assert.equal(s.out.results[1]!.recipients[0]!.reply.code, 250);
});

Deno.test("LMTP session keeps replies already given when the server closes with 421", () => {
  const s = lmtpSession();
  s.server("220 lmtp.example.test ready\r\n" + LHLO_REPLY);
  s.start(["alice@example.test", "carol@example.test"]);
  s.server("250 2.1.0 OK\r\n250 2.1.5 OK\r\n250 2.1.5 OK\r\n354 OK\r\n");
  s.content("x\r\n");
  s.server("250 2.0.0 <alice@example.test> Saved\r\n421 4.3.2 Shutting down\r\n");
  const result = s.out.results[0]!;
  assert.deepEqual(result.recipients.map((r) => r.reply.code), [250, 421]);
  assert.equal(s.session.state, "closed");
});

Deno.test("LMTP session gives a refused DATA's reply to every accepted recipient", () => {
  const s = lmtpSession();
  s.server("220 lmtp.example.test ready\r\n" + LHLO_REPLY);
  s.start(["alice@example.test", "nobody@example.test"]);
  s.server("250 2.1.0 OK\r\n250 2.1.5 OK\r\n550 5.1.1 no\r\n451 4.3.0 Temporary failure\r\n");
  const result = s.out.results[0]!;
  assert.deepEqual(result.recipients.map((r) => r.reply.code), [451, 550]);
});

Deno.test("LMTP session abandoned mid-replies keeps the replies read, the rest 451 4.4.2", () => {
  const s = lmtpSession();
  s.server("220 lmtp.example.test ready\r\n" + LHLO_REPLY);
  s.start(["alice@example.test", "carol@example.test"]);
  s.server("250 2.1.0 OK\r\n250 2.1.5 OK\r\n250 2.1.5 OK\r\n354 OK\r\n");
  s.content("x\r\n");
  s.server("250 2.0.0 <alice@example.test> Saved\r\n");
  const partial = s.session.abandon(); // the connection dropped here
  assert.deepEqual(partial?.recipients.map((r) => [r.reply.code, r.reply.enhancedStatus]), [
    [250, "2.0.0"],
    [451, "4.4.2"],
  ]);
  assert.equal(s.session.state, "closed");
  // Before any recipient had its own reply, nothing is known.
  const early = lmtpSession();
  early.server("220 lmtp.example.test ready\r\n" + LHLO_REPLY);
  early.start(["alice@example.test"]);
  assert.equal(early.session.abandon(), null);
});
