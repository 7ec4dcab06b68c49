import assert from "node:assert/strict";
import { ServerSession, type SessionEvent } from "./server_session.ts";
import { REPLIES } from "./reply.ts";
import {
  loadTranscripts,
  queuedAs,
  recipientPolicy,
  type Transcript,
} from "../tests/_transcript.ts";

const decoder = new TextDecoder();

/** Runs a transcript against the session in memory, feeding the given pieces. */
function play(t: Transcript, pieces: Uint8Array[]): { output: string; content: string[] } {
  const session = new ServerSession({ hostname: "mx.example.test", ...t.options });
  let output = "";
  let queued = 0;
  const content: string[] = [];
  let current = "";
  const handle = (events: SessionEvent[]): void => {
    for (const e of events) {
      switch (e.type) {
        case "send":
          output += decoder.decode(e.bytes);
          break;
        case "sender":
          handle(session.answer(REPLIES.senderOk));
          break;
        case "recipient":
          handle(session.answer(recipientPolicy(e.forwardPath)));
          break;
        case "open":
          current = "";
          handle(session.answer(REPLIES.startData));
          break;
        case "content":
          current += decoder.decode(e.chunk, { stream: true });
          break;
        case "discard":
          current = "";
          break;
        case "message":
          content.push(current);
          handle(session.answer(queuedAs(++queued)));
          break;
      }
    }
  };
  handle(session.start());
  for (const p of pieces) handle(session.receive(p));
  return { output, content };
}

function bytewise(bytes: Uint8Array): Uint8Array[] {
  return Array.from(bytes, (_, i) => bytes.subarray(i, i + 1));
}

for (const t of await loadTranscripts()) {
  Deno.test(`transcript ${t.name} gets the same replies fed whole, by line and by byte`, () => {
    const whole = play(t, [t.client]);
    assert.equal(whole.output, t.server);
    assert.deepEqual(play(t, t.clientLines), whole);
    assert.deepEqual(play(t, bytewise(t.client)), whole);
  });
}

Deno.test("a message's content arrives unstuffed and byte-exact", async () => {
  const t = (await loadTranscripts()).find((x) => x.name === "basic.txt")!;
  const { content } = play(t, [t.client]);
  assert.deepEqual(content, ["Subject: hello\r\n\r\n.a line that starts with a dot\r\n"]);
});

Deno.test("BDAT chunks are joined without dot processing", async () => {
  const t = (await loadTranscripts()).find((x) => x.name === "bdat.txt")!;
  assert.deepEqual(play(t, [t.client]).content, ["Subject: a\r\n\r\n.x\r\n.\r\n"]);
});

Deno.test("a session with too many errors is closed with 421", () => {
  const session = new ServerSession({ hostname: "mx.example.test", maxErrors: 3 });
  session.start();
  const events = session.receive(new TextEncoder().encode("A\r\nB\r\nC\r\nD\r\n"));
  const text = events.filter((e) => e.type === "send").map((e) => decoder.decode(e.bytes)).join("");
  assert.equal(
    text,
    "500 Command not recognized\r\n500 Command not recognized\r\n500 Command not recognized\r\n" +
      "421 Too many errors, closing connection\r\n",
  );
  assert.equal(events.at(-1)?.type, "close");
  assert.equal(session.state, "closed");
});

Deno.test("a command line ended by a bare LF is refused, and the session goes on", () => {
  const session = new ServerSession({ hostname: "mx.example.test" });
  session.start();
  const events = session.receive(new TextEncoder().encode("NOOP\nNOOP\r\n"));
  const text = events.filter((e) => e.type === "send").map((e) => decoder.decode(e.bytes)).join("");
  assert.equal(
    text,
    "500 5.5.2 Line must end with CRLF (RFC 5321 §2.3.8)\r\n250 Ok\r\n".replace("500 5.5.2", "500"),
  );
});

Deno.test("stop() closes an idle session with 421 4.3.2 at once", () => {
  const session = new ServerSession({ hostname: "mx.example.test" });
  session.start();
  const events = session.stop();
  assert.equal(
    decoder.decode((events[0] as { bytes: Uint8Array }).bytes),
    "421 Service shutting down, try again later\r\n",
  );
  assert.equal(events[1]?.type, "close");
});
