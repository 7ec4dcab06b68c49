import assert from "node:assert/strict";
import {
  type ClientEvent,
  ClientSession,
  type ClientSessionOptions,
  NO_EXTENSIONS,
  type OutgoingMessage,
  parseEhlo,
  type TransactionResult,
  xtext,
} from "./client_session.ts";

const latin1 = new TextDecoder("latin1");
const bytes = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0));

/** One step of a scripted dialogue. */
type Step =
  | { server: string }
  | { start: OutgoingMessage }
  | { content: string }
  | { end: true }
  | { startTls: true }
  | { tls: true }
  | { quit: true };

type Split = "whole" | "line" | "byte";

interface Played {
  /** Everything the client wrote, content included. */
  sent: string;
  /** The other events, one line each. */
  log: string[];
  results: TransactionResult[];
  session: ClientSession;
}

function pieces(text: string, split: Split): string[] {
  if (split === "whole") return [text];
  if (split === "byte") return Array.from(text);
  return text.split(/(?<=\n)/);
}

/** Runs a dialogue against the session in memory, feeding the server's bytes as `split` says. */
function play(steps: Step[], split: Split = "whole", options: Partial<ClientSessionOptions> = {}) {
  const session = new ClientSession({ hostname: "client.example.test", ...options });
  const played: Played = { sent: "", log: [], results: [], session };
  const handle = (events: ClientEvent[]): void => {
    for (const e of events) {
      switch (e.type) {
        case "send":
          played.sent += latin1.decode(e.bytes);
          break;
        case "reply":
          played.log.push(`reply ${e.command} ${e.reply.code}`);
          break;
        case "result":
          played.results.push(e.result);
          played.log.push(`result ${JSON.stringify(e.result)}`);
          break;
        case "ready":
          played.log.push(`ready ${[...e.extensions.keywords.keys()].join(",")}`);
          break;
        case "starttls":
          played.log.push(`starttls ${e.discarded}`);
          break;
        case "starttls-refused":
        case "refused":
          played.log.push(`${e.type} ${e.reply.code}`);
          break;
        case "error":
          played.log.push(`error ${e.message}`);
          break;
        default:
          played.log.push(e.type);
      }
    }
  };
  for (const step of steps) {
    if ("server" in step) {
      for (const p of pieces(step.server, split)) handle(session.receive(bytes(p)));
    } else if ("start" in step) {
      handle(session.startTransaction(step.start));
    } else if ("content" in step) {
      handle(session.content(bytes(step.content)));
    } else if ("end" in step) {
      handle(session.endContent());
    } else if ("startTls" in step) {
      handle(session.startTls());
    } else if ("tls" in step) {
      handle(session.tlsEstablished());
    } else {
      handle(session.quit());
    }
  }
  return played;
}

function ehlo(...keywords: string[]): string {
  const lines = ["mx.example.test greets client.example.test", ...keywords];
  return lines.map((l, i) => `250${i === lines.length - 1 ? " " : "-"}${l}\r\n`).join("");
}

const GREETING = "220 mx.example.test ESMTP\r\n";

function message(overrides: Partial<OutgoingMessage> = {}): OutgoingMessage {
  return {
    reversePath: "alice@example.test",
    recipients: [{ address: "bob@example.test" }, { address: "carol@example.test" }],
    body: "7BIT",
    smtputf8: false,
    size: 100,
    ...overrides,
  };
}

/** The commands the client sent, content left out by the caller's choice of step. */
function lines(text: string): string[] {
  return text.split("\r\n").filter((l) => l !== "");
}

// --- fed whole, by line, by byte ---------------------------------------------

const dialogues: { name: string; steps: Step[]; options?: Partial<ClientSessionOptions> }[] = [
  {
    name: "a pipelined DATA transaction with one recipient refused",
    steps: [
      { server: GREETING + ehlo("PIPELINING", "SIZE 1000", "8BITMIME") },
      { start: message() },
      { server: "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 No such user\r\n354 Go\r\n" },
      { content: ".leading dot\r\nbody\r\n" },
      { end: true },
      { server: "250 2.0.0 Ok: queued as 1\r\n" },
      { quit: true },
      { server: "221 2.0.0 Bye\r\n" },
    ],
  },
  {
    name: "a transaction one command at a time",
    steps: [
      { server: GREETING + ehlo("SIZE") },
      { start: message() },
      { server: "250 Ok\r\n" },
      { server: "250 Ok\r\n" },
      { server: "250 Ok\r\n" },
      { server: "354 Go\r\n" },
      { content: "x\r\n" },
      { end: true },
      { server: "250 Ok\r\n" },
    ],
  },
  {
    name: "a BDAT transaction in small chunks without pipelining",
    options: { chunkSize: 4 },
    steps: [
      { server: GREETING + ehlo("CHUNKING") },
      { start: message({ recipients: [{ address: "bob@example.test" }] }) },
      { server: "250 Ok\r\n" },
      { server: "250 Ok\r\n" },
      { content: "abcdefghij" },
      { server: "250 Ok\r\n" },
      { server: "250 Ok\r\n" },
      { end: true },
      { server: "250 2.0.0 Ok: queued\r\n" },
    ],
  },
  {
    name: "a HELO fallback",
    steps: [
      { server: "220-mx.example.test\r\n220 old software\r\n" },
      { server: "502 5.5.1 What?\r\n" },
      { server: "250 mx.example.test\r\n" },
      { start: message({ recipients: [{ address: "bob@example.test" }] }) },
      { server: "250 Ok\r\n250 Ok\r\n354 Go\r\n" },
      { end: true },
      { server: "250 Ok\r\n" },
    ],
  },
  {
    name: "a STARTTLS with injected replies",
    steps: [
      { server: GREETING + ehlo("STARTTLS", "PIPELINING") },
      { startTls: true },
      { server: "220 2.0.0 Ready to start TLS\r\n250-injected\r\n250 PIPELINING\r\n" },
      { tls: true },
      { server: ehlo("PIPELINING", "AUTH PLAIN") },
    ],
  },
];

for (const d of dialogues) {
  Deno.test(`ClientSession gives the same result for ${d.name}, fed whole, by line and by byte`, () => {
    const run = (split: Split): Played => play(d.steps, split, d.options);
    const whole = run("whole");
    for (const split of ["line", "byte"] as const) {
      const other = run(split);
      assert.equal(other.sent, whole.sent, split);
      // Fed in pieces, the injected lines come after the 220 has been read, and
      // are dropped on arrival rather than counted as discarded: never read either way.
      const normalize = (l: string[]) => l.map((x) => x.replace(/^starttls \d+$/, "starttls"));
      assert.deepEqual(normalize(other.log), normalize(whole.log), split);
      assert.equal(other.session.state, whole.session.state);
    }
  });
}

// --- the greeting and EHLO ---------------------------------------------------

Deno.test("ClientSession sends EHLO after a 220 and is ready with the extensions", () => {
  const p = play([{ server: GREETING + ehlo("PIPELINING", "SIZE 1000") }]);
  assert.equal(p.sent, "EHLO client.example.test\r\n");
  assert.equal(p.session.state, "ready");
  assert.equal(p.session.isExtended, true);
  assert.equal(p.session.extensions?.size, 1000);
  assert.equal(p.session.greeting?.code, 220);
});

const ehloCases: {
  name: string;
  keywords: string[];
  check: (e: ReturnType<typeof parseEhlo>) => void;
}[] = [
  {
    name: "keywords in any case",
    keywords: ["pipelining", "8bitmime", "SmtpUtf8", "chunking", "starttls", "dsn"],
    check: (e) => {
      assert.equal(e.pipelining && e.eightBitMime && e.smtputf8 && e.chunking, true);
      assert.equal(e.startTls && e.dsn, true);
      assert.equal(e.enhancedStatusCodes, false);
    },
  },
  {
    name: "AUTH and the legacy AUTH=, merged",
    keywords: ["AUTH PLAIN login", "AUTH=LOGIN CRAM-MD5"],
    check: (e) => assert.deepEqual(e.auth, ["PLAIN", "LOGIN", "CRAM-MD5"]),
  },
  {
    name: "SIZE with a limit",
    keywords: ["SIZE 52428800"],
    check: (e) => assert.equal(e.size, 52428800),
  },
  {
    name: "SIZE with no value: no limit",
    keywords: ["SIZE"],
    check: (e) => assert.equal(e.size, 0),
  },
  { name: "SIZE 0: no limit", keywords: ["SIZE 0"], check: (e) => assert.equal(e.size, 0) },
  { name: "no SIZE", keywords: ["HELP"], check: (e) => assert.equal(e.size, null) },
  {
    name: "ENHANCEDSTATUSCODES and BINARYMIME",
    keywords: ["ENHANCEDSTATUSCODES", "BINARYMIME"],
    check: (e) => assert.equal(e.enhancedStatusCodes && e.binaryMime, true),
  },
  {
    name: "unknown keywords with parameters, and junk lines",
    keywords: ["X-EXPS GSSAPI NTLM", "  ", "!!!"],
    check: (e) => assert.deepEqual(e.keywords.get("X-EXPS"), ["GSSAPI", "NTLM"]),
  },
];

for (const c of ehloCases) {
  Deno.test(`parseEhlo() reads ${c.name}`, () => {
    const e = parseEhlo({ code: 250, lines: ["mx.example.test", ...c.keywords] });
    c.check(e);
    // And the same through the session, from the wire.
    const p = play([{ server: GREETING + ehlo(...c.keywords) }]);
    c.check(p.session.extensions!);
  });
}

for (const code of [500, 502]) {
  Deno.test(`ClientSession falls back to HELO when EHLO gets ${code}`, () => {
    const p = play([
      { server: GREETING + `${code} 5.5.1 Unrecognized\r\n` },
      { server: "250 mx.example.test\r\n" },
    ]);
    assert.deepEqual(lines(p.sent), ["EHLO client.example.test", "HELO client.example.test"]);
    assert.equal(p.session.state, "ready");
    assert.equal(p.session.isExtended, false);
    assert.equal(p.session.extensions, NO_EXTENSIONS);
  });
}

Deno.test("ClientSession after HELO sends MAIL with no parameters, one command at a time", () => {
  const p = play([
    { server: GREETING + "500 What?\r\n250 mx\r\n" },
    { start: message({ recipients: [{ address: "bob@example.test", notify: ["NEVER"] }] }) },
  ]);
  assert.deepEqual(lines(p.sent).slice(2), ["MAIL FROM:<alice@example.test>"]);
});

Deno.test("ClientSession refuses a session whose EHLO and HELO are both refused", () => {
  const p = play([{ server: GREETING + "502 no\r\n554 go away\r\n" }, { server: "221 bye\r\n" }]);
  assert.deepEqual(lines(p.sent).at(-1), "QUIT");
  assert.ok(p.log.includes("refused 554"));
  assert.equal(p.session.state, "closed");
});

Deno.test("ClientSession answers a 554 greeting with QUIT and reports it (RFC 5321 §3.1)", () => {
  const p = play([{ server: "554 5.7.1 No SMTP service here\r\n" }]);
  assert.equal(p.sent, "QUIT\r\n");
  assert.equal(p.session.state, "quit");
  assert.equal(p.session.awaiting, "QUIT");
  assert.ok(p.log.includes("refused 554"));
  const after = play([{ server: "554 5.7.1 No\r\n" }, { server: "221 2.0.0 Bye\r\n" }]);
  assert.equal(after.session.state, "closed");
  assert.equal(after.log.at(-1), "close");
});

Deno.test("ClientSession closes at once on a 421 greeting, with no QUIT", () => {
  const p = play([{ server: "421 4.3.2 Busy, try later\r\n" }]);
  assert.equal(p.sent, "");
  assert.deepEqual(p.log, ["reply greeting 421", "refused 421", "close"]);
});

Deno.test("ClientSession treats a malformed reply as a protocol error", () => {
  const p = play([{ server: "HTTP/1.1 400 Bad Request\r\n" }]);
  assert.equal(p.session.state, "closed");
  assert.match(p.log[0]!, /^error Cannot parse reply line/);
});

Deno.test("ClientSession treats a reply nobody asked for as a protocol error, except 421", () => {
  const chatty = play([{ server: GREETING + ehlo() + "250 surprise\r\n" }]);
  assert.match(chatty.log.at(-2)!, /^error Unexpected reply 250/);
  const closing = play([{ server: GREETING + ehlo() + "421 4.4.2 Idle too long\r\n" }]);
  assert.deepEqual(closing.log.slice(-2), ["refused 421", "close"]);
  assert.equal(closing.session.state, "closed");
});

Deno.test("ClientSession sends upper-case verbs and reads replies over 512 octets", () => {
  const long = "x".repeat(2000);
  const p = play([{ server: `220-${long}\r\n220 ok\r\n` + ehlo(`X-LONG ${long}`) }]);
  assert.equal(p.session.state, "ready");
  assert.equal(p.session.extensions?.keywords.get("X-LONG")?.[0], long);
});

// --- transactions --------------------------------------------------------------

Deno.test("ClientSession pipelines MAIL, every RCPT and DATA in one group (RFC 2920)", () => {
  const p = play([
    { server: GREETING + ehlo("PIPELINING", "SIZE 1000", "8BITMIME", "SMTPUTF8") },
    { start: message({ body: "8BITMIME" }) },
  ]);
  assert.equal(
    p.sent.slice("EHLO client.example.test\r\n".length),
    "MAIL FROM:<alice@example.test> SIZE=100 BODY=8BITMIME\r\n" +
      "RCPT TO:<bob@example.test>\r\nRCPT TO:<carol@example.test>\r\nDATA\r\n",
  );
  assert.equal(p.session.awaiting, "MAIL");
  assert.equal(p.session.isWantingContent, false); // the body waits for 354
});

Deno.test("ClientSession with PIPELINING and CHUNKING waits for the RCPT replies before BDAT", () => {
  const p = play([
    { server: GREETING + ehlo("PIPELINING", "CHUNKING") },
    { start: message() },
  ]);
  assert.deepEqual(lines(p.sent).slice(1), [
    "MAIL FROM:<alice@example.test>",
    "RCPT TO:<bob@example.test>",
    "RCPT TO:<carol@example.test>",
  ]);
  assert.equal(p.session.isWantingContent, false);
  p.session.receive(bytes("250 ok\r\n250 ok\r\n"));
  assert.equal(p.session.isWantingContent, false);
  const events = p.session.receive(bytes("250 ok\r\n"));
  assert.ok(events.some((e) => e.type === "content"));
  assert.equal(p.session.state, "bdat");
});

Deno.test("ClientSession without PIPELINING sends one command per reply", () => {
  const session = new ClientSession({ hostname: "c.test" });
  const sent: string[] = [];
  const feed = (events: ClientEvent[]) => {
    for (const e of events) if (e.type === "send") sent.push(...e.commands);
  };
  feed(session.receive(bytes(GREETING + ehlo("8BITMIME"))));
  feed(session.startTransaction(message()));
  assert.deepEqual(sent.slice(1), ["MAIL FROM:<alice@example.test>"]);
  feed(session.receive(bytes("250 ok\r\n")));
  assert.deepEqual(sent.slice(2), ["RCPT TO:<bob@example.test>"]);
  feed(session.receive(bytes("250 ok\r\n")));
  feed(session.receive(bytes("250 ok\r\n")));
  assert.deepEqual(sent.slice(3), ["RCPT TO:<carol@example.test>", "DATA"]);
  assert.equal(session.awaiting, "DATA");
});

Deno.test("ClientSession gives a refused MAIL's reply to every recipient", () => {
  const p = play([
    { server: GREETING + ehlo("PIPELINING") },
    { start: message() },
    { server: "550 5.7.1 Sender rejected\r\n503 5.5.1 Need MAIL\r\n503 5.5.1 Need MAIL\r\n" },
    { server: "503 5.5.1 Need RCPT\r\n" },
  ]);
  assert.equal(p.results.length, 1);
  assert.deepEqual(p.results[0]!.recipients.map((r) => r.reply.code), [550, 550]);
  assert.equal(p.results[0]!.reply, null);
  assert.equal(p.session.state, "ready");
});

Deno.test("ClientSession sends a lone dot when DATA is accepted with no valid recipient (RFC 2920 §3.1)", () => {
  const p = play([
    { server: GREETING + ehlo("PIPELINING") },
    { start: message() },
    { server: "250 ok\r\n550 no\r\n551 no\r\n354 go\r\n" },
  ]);
  assert.ok(p.sent.endsWith("DATA\r\n.\r\n"));
  assert.equal(p.session.isWantingContent, false);
  p.session.receive(bytes("554 no valid recipients\r\n"));
  assert.equal(p.session.state, "ready");
});

Deno.test("ClientSession resets before the next MAIL when every recipient was refused", () => {
  const p = play([
    { server: GREETING + ehlo("PIPELINING") },
    { start: message() },
    { server: "250 ok\r\n550 5.1.1 no\r\n550 5.1.1 no\r\n554 5.5.1 No valid recipients\r\n" },
    { start: message({ recipients: [{ address: "dave@example.test" }] }) },
  ]);
  assert.deepEqual(p.results[0]!.recipients.map((r) => r.reply.code), [550, 550]);
  assert.equal(p.results[0]!.reply, null);
  assert.deepEqual(lines(p.sent).slice(-4), [
    "RSET",
    "MAIL FROM:<alice@example.test>",
    "RCPT TO:<dave@example.test>",
    "DATA",
  ]);
  assert.equal(p.session.awaiting, "RSET");
});

Deno.test("ClientSession resets alone first without PIPELINING", () => {
  const p = play([
    { server: GREETING + ehlo() },
    { start: message({ recipients: [{ address: "bob@example.test" }] }) },
    { server: "250 ok\r\n" },
    { server: "550 no\r\n" },
    { start: message({ recipients: [{ address: "dave@example.test" }] }) },
  ]);
  assert.equal(lines(p.sent).at(-1), "RSET");
  p.session.receive(bytes("250 ok\r\n"));
  assert.equal(p.session.awaiting, "MAIL");
});

Deno.test("ClientSession gives a refused DATA's reply to the accepted recipients, and resets", () => {
  const p = play([
    { server: GREETING + ehlo("PIPELINING") },
    { start: message() },
    { server: "250 ok\r\n250 ok\r\n550 5.1.1 no\r\n451 4.3.0 Try later\r\n" },
  ]);
  const r = p.results[0]!;
  assert.deepEqual(r.recipients.map((x) => x.reply.code), [451, 550]);
  assert.equal(r.reply?.code, 451);
  const again = play([
    { server: GREETING + ehlo("PIPELINING") },
    { start: message() },
    { server: "250 ok\r\n250 ok\r\n550 5.1.1 no\r\n451 4.3.0 Try later\r\n" },
    { start: message() },
  ]);
  assert.equal(lines(again.sent).at(-5), "RSET");
});

Deno.test("ClientSession gives the final reply to every accepted recipient", () => {
  const p = play(dialogues[0]!.steps);
  const r = p.results[0]!;
  assert.deepEqual(r.recipients.map((x) => [x.address, x.reply.code]), [
    ["bob@example.test", 250],
    ["carol@example.test", 550],
  ]);
  assert.equal(r.reply?.enhancedStatus, "2.0.0");
  assert.equal(p.session.state, "closed"); // after QUIT
});

Deno.test("ClientSession ends a transaction on a 421 with a transient reply for everyone", () => {
  const p = play([
    { server: GREETING + ehlo("PIPELINING") },
    { start: message() },
    { server: "250 ok\r\n421 4.7.0 Too busy, closing\r\n" },
  ]);
  assert.deepEqual(p.results[0]!.recipients.map((x) => x.reply.code), [421, 421]);
  assert.equal(p.session.state, "closed");
  assert.deepEqual(p.log.slice(-2), ["refused 421", "close"]);
});

// --- content -----------------------------------------------------------------

Deno.test("ClientSession dot-stuffs and rewrites bare CR and LF across chunk boundaries", () => {
  const content = ["Subject: x\r", "\n\r\n.", "dot\nbare LF\r", "bare CR\r\n", ".", "\r\n", "end"];
  const p = play([
    { server: GREETING + ehlo("PIPELINING") },
    { start: message({ recipients: [{ address: "bob@example.test" }] }) },
    { server: "250 ok\r\n250 ok\r\n354 go\r\n" },
    ...content.map((c): Step => ({ content: c })),
    { end: true },
  ]);
  const data = p.sent.slice(p.sent.indexOf("DATA\r\n") + 6);
  assert.equal(data, "Subject: x\r\n\r\n..dot\r\nbare LF\r\nbare CR\r\n..\r\nend\r\n.\r\n");
  assert.equal(p.session.awaiting, ".");
});

Deno.test("ClientSession sends empty content as a lone dot after DATA, and BDAT 0 LAST", () => {
  const data = play([
    { server: GREETING + ehlo() },
    { start: message({ recipients: [{ address: "bob@example.test" }] }) },
    { server: "250 ok\r\n" },
    { server: "250 ok\r\n" },
    { server: "354 go\r\n" },
    { end: true },
  ]);
  assert.ok(data.sent.endsWith("DATA\r\n.\r\n"));
  const bdat = play([
    { server: GREETING + ehlo("CHUNKING", "PIPELINING") },
    { start: message({ recipients: [{ address: "bob@example.test" }] }) },
    { server: "250 ok\r\n250 ok\r\n" },
    { end: true },
  ]);
  assert.ok(bdat.sent.endsWith("RCPT TO:<bob@example.test>\r\nBDAT 0 LAST\r\n"));
  assert.equal(bdat.session.awaiting, "BDAT LAST");
});

Deno.test("ClientSession sends BDAT chunks unstuffed, pipelined when offered (RFC 3030)", () => {
  const p = play(
    [
      { server: GREETING + ehlo("CHUNKING", "PIPELINING") },
      { start: message({ recipients: [{ address: "bob@example.test" }] }) },
      { server: "250 ok\r\n250 ok\r\n" },
      { content: ".ab" },
      { content: "cd\nef" },
      { end: true },
    ],
    "whole",
    { chunkSize: 4 },
  );
  const chunks = p.sent.slice(p.sent.indexOf("BDAT"));
  assert.equal(chunks, "BDAT 4\r\n.abc" + "BDAT 4\r\nd\r\ne" + "BDAT 3 LAST\r\nf\r\n");
  p.session.receive(bytes("250 ok\r\n250 ok\r\n"));
  const events = p.session.receive(bytes("250 2.0.0 queued\r\n"));
  const result = events.find((e) => e.type === "result");
  assert.equal(result?.type === "result" && result.result.reply?.code, 250);
});

Deno.test("ClientSession without PIPELINING sends one BDAT chunk per reply", () => {
  const p = play(dialogues[2]!.steps.slice(0, 5), "whole", { chunkSize: 4 });
  assert.ok(p.sent.endsWith("BDAT 4\r\nabcd"));
  assert.equal(p.session.isWantingContent, false); // "efgh" waits for the 250
  const more = p.session.receive(bytes("250 ok\r\n"));
  assert.deepEqual(more.flatMap((e) => (e.type === "send" ? e.commands : [])), ["BDAT 4"]);
  assert.equal(p.session.isWantingContent, true); // "ij" is not a full chunk yet
  const done = play(dialogues[2]!.steps, "whole", { chunkSize: 4 });
  assert.equal(
    done.sent.slice(done.sent.indexOf("BDAT")),
    "BDAT 4\r\nabcd" + "BDAT 4\r\nefgh" + "BDAT 4 LAST\r\nij\r\n",
  );
  assert.equal(done.results[0]!.reply?.code, 250);
});

Deno.test("ClientSession stops sending chunks after a refused BDAT, and resets", () => {
  const p = play(
    [
      { server: GREETING + ehlo("CHUNKING") },
      { start: message({ recipients: [{ address: "bob@example.test" }] }) },
      { server: "250 ok\r\n250 ok\r\n" },
      { content: "abcdefghij" },
    ],
    "whole",
    { chunkSize: 4 },
  );
  const events = p.session.receive(bytes("552 5.3.4 Too big\r\n"));
  const result = events.find((e) => e.type === "result");
  assert.equal(result?.type === "result" && result.result.recipients[0]!.reply.code, 552);
  assert.equal(p.session.isWantingContent, false);
  assert.deepEqual(p.session.endContent(), []);
  const next = p.session.startTransaction(message());
  const first = next.find((e) => e.type === "send");
  assert.deepEqual(first?.type === "send" && first.commands, ["RSET"]);
});

Deno.test("ClientSession sends BINARYMIME content as it is, in BDAT", () => {
  const p = play([
    { server: GREETING + ehlo("CHUNKING", "BINARYMIME", "8BITMIME") },
    { start: message({ body: "BINARYMIME", recipients: [{ address: "bob@example.test" }] }) },
    { server: "250 ok\r\n250 ok\r\n" },
    { content: "a\nb\r." },
    { end: true },
  ]);
  assert.ok(p.sent.includes("MAIL FROM:<alice@example.test> BODY=BINARYMIME\r\n"));
  assert.ok(p.sent.endsWith("BDAT 5 LAST\r\na\nb\r."));
});

// --- refusals before MAIL ----------------------------------------------------------

function refusedBeforeMail(keywords: string[], m: OutgoingMessage): TransactionResult {
  const p = play([{ server: GREETING + ehlo(...keywords) }, { start: m }]);
  assert.equal(p.sent, "EHLO client.example.test\r\n", "nothing sent after EHLO");
  assert.equal(p.session.state, "ready");
  return p.results[0]!;
}

Deno.test("ClientSession refuses a message over the server's SIZE before MAIL (552 5.3.4)", () => {
  const r = refusedBeforeMail(["SIZE 1000", "PIPELINING"], message({ size: 1001 }));
  assert.deepEqual(r.recipients.map((x) => [x.reply.code, x.reply.enhancedStatus]), [
    [552, "5.3.4"],
    [552, "5.3.4"],
  ]);
  assert.equal(r.reply, null);
  // SIZE with no value, or SIZE 0, is no limit; SIZE= is still declared.
  for (const size of ["SIZE", "SIZE 0"]) {
    const p = play([{ server: GREETING + ehlo(size) }, { start: message({ size: 10 ** 9 }) }]);
    assert.ok(p.sent.includes(`MAIL FROM:<alice@example.test> SIZE=${10 ** 9}\r\n`));
  }
});

Deno.test("ClientSession refuses 8-bit content for a server without 8BITMIME (554 5.6.3)", () => {
  const r = refusedBeforeMail(["SIZE"], message({ body: "8BITMIME" }));
  assert.equal(r.recipients[0]!.reply.code, 554);
  assert.equal(r.recipients[0]!.reply.enhancedStatus, "5.6.3");
  const binary = refusedBeforeMail(["8BITMIME", "BINARYMIME"], message({ body: "BINARYMIME" }));
  assert.equal(binary.recipients[0]!.reply.enhancedStatus, "5.6.3"); // no CHUNKING
});

Deno.test("ClientSession refuses a message needing SMTPUTF8 for a server without it (553 5.6.7)", () => {
  for (
    const m of [
      message({ smtputf8: true }),
      message({ reversePath: "j\u00f6rg@example.test" }),
      message({ recipients: [{ address: "\u7528\u6237@example.test" }] }),
    ]
  ) {
    const r = refusedBeforeMail(["8BITMIME"], m);
    assert.deepEqual([r.recipients[0]!.reply.code, r.recipients[0]!.reply.enhancedStatus], [
      553,
      "5.6.7",
    ]);
  }
  const p = play([
    { server: GREETING + ehlo("SMTPUTF8", "8BITMIME") },
    { start: message({ recipients: [{ address: "\u7528\u6237@example.test" }] }) },
  ]);
  assert.ok(
    new TextDecoder().decode(bytes(p.sent)).includes("MAIL FROM:<alice@example.test> SMTPUTF8\r\n"),
  );
  const ascii = play([{ server: GREETING + ehlo("SMTPUTF8") }, { start: message() }]);
  assert.ok(ascii.sent.includes("MAIL FROM:<alice@example.test>\r\n"), "only when needed");
});

Deno.test("ClientSession never sends an address that could break the command line", () => {
  const p = play([
    { server: GREETING + ehlo("PIPELINING") },
    {
      start: message({
        recipients: [{ address: "bob@example.test>\r\nRCPT TO:<evil@example.test" }, {
          address: "ok@example.test",
        }],
      }),
    },
  ]);
  assert.ok(!p.sent.includes("evil"));
  assert.ok(p.sent.includes("RCPT TO:<ok@example.test>\r\nDATA\r\n"));
  p.session.receive(bytes("250 ok\r\n250 ok\r\n354 go\r\n"));
  p.session.endContent();
  const events = p.session.receive(bytes("250 ok\r\n"));
  const result = events.find((e) => e.type === "result");
  assert.deepEqual(
    result?.type === "result" && result.result.recipients.map((r) => r.reply.code),
    [553, 250],
  );
  const badSender = refusedBeforeMail([], message({ reversePath: "a@b\r\nRSET" }));
  assert.equal(badSender.recipients[0]!.reply.enhancedStatus, "5.1.7");
});

// --- DSN -----------------------------------------------------------------------

Deno.test("ClientSession sends DSN parameters only to a server that offers DSN (RFC 3461)", () => {
  const m = message({
    ret: "HDRS",
    envid: "QQ314159",
    recipients: [
      {
        address: "bob@example.test",
        notify: ["success", "FAILURE"],
        orcpt: "rfc822;bob@example.test",
      },
      { address: "carol@example.test", notify: ["NEVER"], orcpt: "carol+x@example.test" },
    ],
  });
  const withDsn = play([{ server: GREETING + ehlo("DSN", "PIPELINING") }, { start: m }]);
  assert.deepEqual(lines(withDsn.sent).slice(1), [
    "MAIL FROM:<alice@example.test> RET=HDRS ENVID=QQ314159",
    "RCPT TO:<bob@example.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.test",
    "RCPT TO:<carol@example.test> NOTIFY=NEVER ORCPT=rfc822;carol+2Bx@example.test",
    "DATA",
  ]);
  const without = play([{ server: GREETING + ehlo("PIPELINING") }, { start: m }]);
  assert.deepEqual(lines(without.sent).slice(1), [
    "MAIL FROM:<alice@example.test>",
    "RCPT TO:<bob@example.test>",
    "RCPT TO:<carol@example.test>",
    "DATA",
  ]);
});

Deno.test("ClientSession refuses a recipient with a NOTIFY that mixes NEVER with others", () => {
  const p = play([
    { server: GREETING + ehlo("DSN") },
    {
      start: message({ recipients: [{ address: "bob@example.test", notify: ["NEVER", "DELAY"] }] }),
    },
  ]);
  assert.equal(p.results[0]!.recipients[0]!.reply.code, 501);
});

Deno.test("xtext() escapes plus, equals, space, controls and non-ASCII", () => {
  assert.equal(xtext("a+b=c d\u00e9"), "a+2Bb+3Dc+20d+C3+A9");
});

// --- STARTTLS ----------------------------------------------------------------------

Deno.test("ClientSession discards bytes after the 220 to STARTTLS and says EHLO again (RFC 3207 §4.2)", () => {
  const session = new ClientSession({ hostname: "client.example.test" });
  session.receive(bytes(GREETING + ehlo("STARTTLS", "PIPELINING")));
  const start = session.startTls();
  assert.deepEqual(start.flatMap((e) => (e.type === "send" ? e.commands : [])), ["STARTTLS"]);
  const injected = "250-mx.example.test\r\n250 AUTH PLAIN\r\n";
  const events = session.receive(bytes("220 2.0.0 Ready to start TLS\r\n" + injected));
  const tls = events.find((e) => e.type === "starttls");
  assert.equal(tls?.type === "starttls" && tls.discarded, injected.length);
  assert.equal(session.state, "handshake");
  // Plaintext that arrives during the handshake is never read either.
  assert.deepEqual(session.receive(bytes("250 more injection\r\n")), []);
  const after = session.tlsEstablished();
  assert.deepEqual(after.flatMap((e) => (e.type === "send" ? e.commands : [])), [
    "EHLO client.example.test",
  ]);
  assert.equal(session.extensions === null, true, "forgotten");
  session.receive(bytes(ehlo("PIPELINING", "SIZE 2000")));
  assert.equal(session.state, "ready");
  assert.equal(session.isTls, true);
  assert.equal(session.extensions?.auth.length, 0, "the injected AUTH never counted");
  assert.equal(session.extensions?.size, 2000);
  assert.throws(() => session.startTls(), /already encrypted/);
});

Deno.test("ClientSession goes on in plaintext when STARTTLS is refused", () => {
  const session = new ClientSession({ hostname: "client.example.test" });
  session.receive(bytes(GREETING + ehlo("STARTTLS")));
  session.startTls();
  const events = session.receive(bytes("454 4.7.0 TLS not available\r\n"));
  assert.ok(events.some((e) => e.type === "starttls-refused"));
  assert.equal(session.state, "ready");
  assert.equal(session.isTls, false);
});

Deno.test("ClientSession refuses calls made in the wrong state", () => {
  const session = new ClientSession({ hostname: "client.example.test" });
  assert.throws(() => session.startTransaction(message()), /Cannot start a transaction/);
  assert.throws(() => session.quit(), /Cannot quit/);
  assert.throws(() => session.tlsEstablished(), /Cannot go on after TLS/);
  assert.deepEqual(session.content(bytes("x")), []);
});

// --- the table of expectations ----------------------------------------------------

Deno.test("the table of expectations covers every reply the session can await", async () => {
  const { CLIENT_EXPECTATIONS, CLIENT_STATES } = await import("./client_expectations.ts");
  const awaited = [
    "greeting",
    "EHLO",
    "HELO",
    "STARTTLS",
    "AUTH",
    "RSET",
    "MAIL",
    "RCPT",
    "DATA",
    "BDAT",
    ".",
    "QUIT",
  ];
  assert.deepEqual(Object.keys(CLIENT_EXPECTATIONS).sort(), [...awaited].sort());
  for (const [kind, e] of Object.entries(CLIENT_EXPECTATIONS)) {
    for (const t of e.next) {
      assert.ok(t.from in CLIENT_STATES && t.to in CLIENT_STATES, `${kind}: ${t.from} → ${t.to}`);
    }
  }
});
