import assert from "node:assert/strict";
import { ServerSession, type SessionEvent } from "./server_session.ts";
import { REPLIES } from "./reply.ts";
import {
  assertServerReplies,
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
    assertServerReplies(whole.output, t);
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

// --- STARTTLS, AUTH and abuse, in memory (RFC 3207, RFC 4954) ----------------

const encoder = new TextEncoder();

/** Feeds text and collects what the session says, answering AUTH with `auth`. */
function talk(
  session: ServerSession,
  text: string,
  auth: (user: string) => boolean = () => true,
): { text: string; events: SessionEvent[] } {
  let out = "";
  const all: SessionEvent[] = [];
  const handle = (events: SessionEvent[]): void => {
    for (const e of events) {
      all.push(e);
      if (e.type === "send") out += decoder.decode(e.bytes);
      else if (e.type === "auth") {
        handle(
          session.answer(auth(e.credentials.username) ? REPLIES.authSucceeded : REPLIES.authFailed),
        );
      } else if (e.type === "sender") handle(session.answer(REPLIES.senderOk));
    }
  };
  handle(session.receive(encoder.encode(text)));
  return { text: out, events: all };
}

function submissionSession(options: Partial<ConstructorParameters<typeof ServerSession>[0]> = {}) {
  const session = new ServerSession({
    hostname: "mx.example.test",
    startTls: true,
    authMechanisms: ["PLAIN", "LOGIN"],
    ...options,
  });
  session.start();
  return session;
}

Deno.test("STARTTLS: the 220 comes before the starttls event, and pipelined plaintext is dropped", () => {
  const session = submissionSession();
  talk(session, "EHLO c.test\r\n");
  const { text, events } = talk(session, "STARTTLS\r\nRSET\r\nMAIL FROM:<a@b.test>\r\n");
  assert.equal(text, "220 2.0.0 Ready to start TLS\r\n");
  const kinds = events.map((e) => e.type);
  assert.deepEqual(kinds.slice(-2), ["send", "starttls"]);
  const starttls = events.at(-1);
  assert.equal(
    starttls?.type === "starttls" && starttls.discarded,
    "RSET\r\nMAIL FROM:<a@b.test>\r\n".length,
  );
  // The session starts over: no EHLO yet, STARTTLS gone, AUTH offered.
  assert.equal(session.state, "connected");
  assert.equal(session.clientName, "");
  assert.equal(session.isTls, true);
  const ehlo = talk(session, "EHLO c.test\r\n").text;
  assert.ok(!ehlo.includes("STARTTLS"));
  assert.match(ehlo, /250-AUTH PLAIN LOGIN\r\n/);
});

Deno.test("STARTTLS drops a transaction and an authentication (RFC 3207 §4.2)", () => {
  const session = submissionSession({ authRequiresTls: false });
  talk(session, "EHLO c.test\r\n");
  talk(session, `AUTH PLAIN ${btoa("\0alice@x.test\0pw")}\r\n`);
  assert.equal(session.authenticatedAs, "alice@x.test");
  talk(session, "STARTTLS\r\n");
  assert.equal(session.authenticatedAs, null);
});

Deno.test("AUTH lines and SASL responses are reported for traces only with their secrets masked", () => {
  const session = submissionSession({ implicitTls: true });
  const secret = btoa("\0alice@x.test\0hunter2");
  const { events } = talk(
    session,
    `EHLO c.test\r\nAUTH PLAIN\r\n${secret}\r\nAUTH LOGIN\r\n*\r\nNOOP\r\n`,
    () => false,
  );
  const lines = events.filter((e) => e.type === "command").map((e) =>
    e.type === "command" && e.line
  );
  assert.deepEqual(lines, ["EHLO c.test", "AUTH PLAIN", "****", "AUTH LOGIN", "****", "NOOP"]);
  assert.ok(!JSON.stringify(events.filter((e) => e.type !== "auth")).includes("hunter2"));
});

Deno.test("a 334 challenge keeps its space even when empty, and carries no enhanced code", () => {
  const session = submissionSession({ implicitTls: true });
  talk(session, "EHLO c.test\r\n");
  assert.equal(talk(session, "AUTH PLAIN\r\n").text, "334 \r\n");
  assert.equal(talk(session, "*\r\n").text, "501 5.7.0 Authentication cancelled\r\n");
  assert.equal(talk(session, "AUTH LOGIN\r\n").text, "334 VXNlcm5hbWU6\r\n");
});

Deno.test("an AUTH line may reach 12,288 octets; a longer one gets 500 5.5.6 and the session goes on", () => {
  const session = submissionSession({ implicitTls: true });
  talk(session, "EHLO c.test\r\n");
  // A long but valid initial response: a 9,000-character password.
  const long = btoa("\0alice@x.test\0" + "p".repeat(9000));
  assert.ok(`AUTH PLAIN ${long}\r\n`.length <= 12288);
  assert.match(talk(session, `AUTH PLAIN ${long}\r\n`, () => false).text, /^535 5\.7\.8 /);
  const tooLong = "A".repeat(12288);
  assert.equal(
    talk(session, `AUTH PLAIN ${tooLong}\r\n`).text,
    "500 5.5.6 Authentication exchange line is too long\r\n",
  );
  talk(session, "AUTH LOGIN\r\n");
  assert.equal(
    talk(session, `${tooLong}\r\nNOOP\r\n`).text,
    "500 5.5.6 Authentication exchange line is too long\r\n250 2.0.0 Ok\r\n",
  );
  // Other commands keep the ordinary limit.
  assert.match(talk(session, `NOOP ${"x".repeat(3000)}\r\n`).text, /^500 5\.5\.2 Line too long/);
});

Deno.test("AUTH is refused inside a transaction, twice, unknown, or not offered", () => {
  const session = submissionSession({ implicitTls: true });
  talk(session, "EHLO c.test\r\n");
  assert.match(talk(session, "AUTH SCRAM-SHA-256\r\n").text, /^504 5\.5\.4 /);
  assert.match(talk(session, "AUTH\r\n").text, /^501 5\.5\.4 /);
  talk(session, `AUTH PLAIN ${btoa("\0alice@x.test\0pw")}\r\n`);
  assert.match(talk(session, "AUTH LOGIN\r\n").text, /^503 5\.5\.1 Already authenticated/);
  const mx = new ServerSession({ hostname: "mx.example.test" });
  mx.start();
  talk(mx, "EHLO c.test\r\n");
  assert.match(talk(mx, "AUTH PLAIN\r\n").text, /^502 5\.5\.1 /);
  assert.match(talk(mx, "STARTTLS\r\n").text, /^502 5\.5\.1 /);
});

Deno.test("an early talker, which sends before the greeting, is closed with 421 4.7.0", () => {
  const session = new ServerSession({ hostname: "mx.example.test" });
  const events = session.receive(encoder.encode("EHLO bot.test\r\n"));
  assert.equal(
    decoder.decode((events[0] as { bytes: Uint8Array }).bytes),
    "421 You talked before the greeting (RFC 5321 §4.3.1), closing connection\r\n",
  );
  assert.equal(events.at(-1)?.type, "close");
  assert.deepEqual(session.start(), []);
});

Deno.test("the input buffer stays bounded while a line grows without end (slowloris)", () => {
  const session = new ServerSession({ hostname: "mx.example.test" });
  session.start();
  let most = 0;
  for (let i = 0; i < 2000; i++) {
    session.receive(encoder.encode("x".repeat(997)));
    most = Math.max(most, session.bufferedOctets);
  }
  assert.ok(most <= 12288 + 997, `buffered ${most} octets`);
  const events = session.receive(encoder.encode("\r\n"));
  assert.equal(
    decoder.decode((events[0] as { bytes: Uint8Array }).bytes),
    "500 Line too long (see RFC 5321 §4.5.3.1)\r\n",
  );
});

Deno.test("answering a question with 421 closes the session", () => {
  const session = submissionSession({ implicitTls: true });
  talk(session, "EHLO c.test\r\n");
  const events = session.receive(
    encoder.encode(`AUTH PLAIN ${btoa("\0a@x.test\0pw")}\r\nNOOP\r\n`),
  );
  assert.equal(events.at(-1)?.type, "auth");
  const after = session.answer(REPLIES.tooManyAuthFailures);
  assert.equal(after.at(-1)?.type, "close");
  assert.equal(session.state, "closed");
});

// --- the EHLO/HELO argument (RFC 5321 §4.1.1.1, §4.1.4) -----------------------

/** A session fed `lines` with every question answered yes; its replies, one per line. */
function greet(lines: string[]): { session: ServerSession; replies: string[] } {
  const session = new ServerSession({ hostname: "mx.example.test", maxErrors: 100 });
  const replies: string[] = [];
  const handle = (events: SessionEvent[]): void => {
    for (const e of events) {
      if (e.type === "send") replies.push(...decoder.decode(e.bytes).split("\r\n").slice(0, -1));
      else if (e.type === "sender") handle(session.answer(REPLIES.senderOk));
      else if (e.type === "recipient") handle(session.answer(REPLIES.recipientOk));
    }
  };
  handle(session.start());
  for (const line of lines) handle(session.receive(new TextEncoder().encode(line + "\r\n")));
  return { session, replies };
}

const BAD_GREETINGS: readonly string[] = [
  "<script>",
  "a(b)",
  "bad;name",
  '"quoted"',
  "a\x01b",
  "a\x7fb",
  "a\x00b",
  "[tag:content]",
  "[999.1.1.1]",
  "bücher.example",
  "a..b",
];

Deno.test("a refused EHLO or HELO gets 501 and leaves the session as it was, before a greeting", () => {
  for (const verb of ["EHLO", "HELO"]) {
    for (const name of BAD_GREETINGS) {
      const { session, replies } = greet([`${verb} ${name}`]);
      const what = `${verb} ${JSON.stringify(name)}`;
      assert.match(replies.at(-1) ?? "", new RegExp(`^501 ${verb} needs `), what);
      assert.equal(session.state, "connected", what);
      assert.equal(session.clientName, "", what);
    }
  }
});

Deno.test("a refused EHLO inside a transaction keeps the transaction and the earlier name (§4.1.4)", () => {
  for (const name of BAD_GREETINGS) {
    const { session, replies } = greet([
      "EHLO client.test",
      "MAIL FROM:<a@client.test>",
      "RCPT TO:<b@example.test>",
      `EHLO ${name}`,
    ]);
    const what = JSON.stringify(name);
    assert.match(replies.at(-1) ?? "", /^501 5\.5\.4 EHLO needs /, what);
    assert.equal(session.state, "rcpt", what);
    assert.equal(session.clientName, "client.test", what);
    assert.equal(session.isExtended, true, what);
  }
});

Deno.test("EHLO takes names real clients send, whatever the client's address (§4.1.4)", () => {
  for (
    const name of [
      "client.test",
      "localhost",
      "DESKTOP_4F2K",
      "mx.example.test.",
      "192.0.2.1",
      "[192.0.2.99]",
      "[IPv6:2001:db8::1]",
    ]
  ) {
    const { session, replies } = greet([`EHLO ${name}`]);
    assert.equal(replies[1], `250-mx.example.test greets ${name}`);
    assert.equal(session.state, "ready");
    assert.equal(session.clientName, name);
  }
});

Deno.test("refused greetings count as errors: a client cannot guess forever", () => {
  const session = new ServerSession({ hostname: "mx.example.test", maxErrors: 3 });
  session.start();
  const events = session.receive(new TextEncoder().encode("EHLO <a>\r\nEHLO <b>\r\nEHLO <c>\r\n"));
  assert.equal(events.at(-1)?.type, "close");
  assert.equal(session.state, "closed");
});

// --- the command table ----------------------------------------------------------

Deno.test("the command table: every arrow leaves a state where its command is legal", async () => {
  const { COMMAND_STATES, SERVER_COMMANDS } = await import("./server_commands.ts");
  for (const [verb, rule] of Object.entries(SERVER_COMMANDS)) {
    const legal = rule.legal ?? COMMAND_STATES;
    for (const from of Object.keys(rule.next)) {
      assert.ok(legal.some((s) => s === from), `${verb} leads out of ${from}, where it is illegal`);
    }
    assert.equal(rule.otherwise.code, 503, `${verb}: out of sequence is 503 (RFC 5321 §4.1.4)`);
  }
});

Deno.test("an out-of-order command gets its 503 from the table, and the state stays", async () => {
  const { SERVER_COMMANDS } = await import("./server_commands.ts");
  const session = new ServerSession({ hostname: "mx.example.test" });
  session.start();
  const out = session.receive(
    new TextEncoder().encode("EHLO c.test\r\nRCPT TO:<b@example.test>\r\n"),
  );
  const sent = out.flatMap((e) => e.type === "send" ? e.replies : []);
  assert.deepEqual(sent.at(-1), SERVER_COMMANDS.RCPT.otherwise);
  assert.equal(session.state, "ready");
});

Deno.test("docs/state-machine.md is drawn from the tables (run `deno task docs`)", async () => {
  const { renderDocs } = await import("../docs/gen.ts");
  const path = "docs/state-machine.md";
  const expected = (await renderDocs())[path];
  const current = await Deno.readTextFile(new URL(`../${path}`, import.meta.url));
  assert.ok(current === expected, `${path} is out of date: run "deno task docs"`);
});
