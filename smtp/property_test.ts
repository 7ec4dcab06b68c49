// Property tests (fast-check) of the protocol core: no input makes the
// parsers or the session throw anything they do not document, and the data
// decoder gives the same content however the bytes are split.
import assert from "node:assert/strict";
import fc from "fast-check";
import { parseCommand } from "./command.ts";
import { DataDecoder } from "./data_decoder.ts";
import { parsePath, PathSyntaxError } from "./path.ts";
import { REPLIES, reply } from "./reply.ts";
import { ServerSession } from "./server_session.ts";
import { heloNameProblem } from "./helo.ts";
import { formatReceived } from "./received.ts";

/** Bytes rich in what matters to SMTP framing: CR, LF, dots, spaces, NUL, high bytes. */
const smtpBytes = fc.array(
  fc.oneof(
    { weight: 4, arbitrary: fc.integer({ min: 0x20, max: 0x7e }) },
    { weight: 2, arbitrary: fc.constantFrom(0x0d, 0x0a, 0x2e) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }) },
  ),
  { maxLength: 400 },
).map((a) => Uint8Array.from(a));

/** Cuts bytes at the given points. */
function split(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let last = 0;
  for (const p of points) {
    out.push(bytes.subarray(last, p));
    last = p;
  }
  out.push(bytes.subarray(last));
  return out;
}

function decodeAll(pieces: Uint8Array[], dotStuffed: boolean) {
  const d = new DataDecoder({ dotStuffed });
  const content: number[] = [];
  let consumed = 0;
  let ended = false;
  for (const piece of pieces) {
    let offset = 0;
    while (offset < piece.length && !ended) {
      const r = d.decode(piece, offset, piece.length);
      content.push(...r.content);
      offset += r.consumed;
      consumed += r.consumed;
      ended = r.ended;
    }
    if (ended) break;
  }
  return { content, consumed, ended, bare: d.hasBareLineEnding, received: d.receivedCount };
}

Deno.test("the data decoder gives the same result for any split of the same bytes", () => {
  fc.assert(
    fc.property(
      smtpBytes,
      fc.array(fc.nat(), { maxLength: 20 }),
      fc.boolean(),
      (bytes, cuts, dotStuffed) => {
        assert.deepEqual(decodeAll(split(bytes, cuts), dotStuffed), decodeAll([bytes], dotStuffed));
      },
    ),
    { numRuns: 2000 },
  );
});

/**
 * The data phase as the RFCs state it, one octet at a time: the model the
 * decoder's line-at-a-time search must agree with. RFC 5321 §4.5.2: a line
 * starts after CRLF; a dot starting a line is dropped, and `.CRLF` there ends
 * the data. §2.3.8: a CR not followed by LF, or an LF not preceded by CR, is
 * bare, and a bare LF does not start a line. (The decoder also counts
 * `Received:` header lines; that octet-at-a-time path is not modelled here.)
 */
function referenceDecode(bytes: Uint8Array, dotStuffed: boolean) {
  const content: number[] = [];
  let bare = false;
  let lineStart = true;
  let i = 0;
  for (; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (lineStart && dotStuffed && b === 0x2e) {
      if (bytes[i + 1] === 0x0d && bytes[i + 2] === 0x0a) {
        return { content, consumed: i + 3, ended: true, bare };
      }
      if (i + 1 === bytes.length || (i + 2 === bytes.length && bytes[i + 1] === 0x0d)) {
        // Maybe the end marker, cut short: held back until more comes.
        return { content, consumed: bytes.length, ended: false, bare };
      }
      lineStart = false;
      continue; // the stuffed dot is dropped
    }
    lineStart = false;
    content.push(b);
    if (b === 0x0d && bytes[i + 1] === 0x0a) {
      content.push(0x0a);
      i++;
      lineStart = true;
      continue;
    }
    // A CR at the very end may yet be followed by LF: not bare until known.
    if (b === 0x0d && i + 1 < bytes.length) bare = true;
    if (b === 0x0a) bare = true;
  }
  return { content, consumed: i, ended: false, bare };
}

Deno.test("the data decoder agrees with the octet-at-a-time model of RFC 5321", () => {
  const lines = fc.array(
    fc.oneof(
      { weight: 3, arbitrary: fc.stringMatching(/^[a-z .:]{0,30}$/) },
      { weight: 1, arbitrary: fc.constantFrom("", ".", "..", "Received: x", "RECEIVED:", ".\r") },
      { weight: 1, arbitrary: smtpBytes.map((b) => new TextDecoder("latin1").decode(b)) },
    ),
    { maxLength: 30 },
  );
  const endings = fc.array(fc.constantFrom("\r\n", "\r\n", "\r\n", "\n", "\r", ""), {
    minLength: 30,
    maxLength: 30,
  });
  fc.assert(
    fc.property(
      lines,
      endings,
      fc.array(fc.nat(), { maxLength: 10 }),
      fc.boolean(),
      (ls, ends, cuts, dotStuffed) => {
        const text = ls.map((l, n) => l + ends[n]).join("");
        const bytes = Uint8Array.from(text, (c) => c.charCodeAt(0) & 0xff);
        const expected = referenceDecode(bytes, dotStuffed);
        const { content, consumed, ended, bare } = decodeAll(split(bytes, cuts), dotStuffed);
        assert.deepEqual({ content, consumed, ended, bare }, expected);
      },
    ),
    { numRuns: 3000 },
  );
});

Deno.test("the data decoder ends only at CRLF.CRLF and strips exactly one stuffed dot", () => {
  fc.assert(
    fc.property(fc.array(fc.stringMatching(/^[a-z. ]{0,20}$/), { maxLength: 20 }), (lines) => {
      // What an RFC-abiding client sends: each line stuffed, then the end marker.
      const body = lines.map((l) => (l.startsWith(".") ? "." + l : l) + "\r\n").join("");
      const bytes = new TextEncoder().encode(body + ".\r\nMAIL FROM:<x@y>\r\n");
      const r = decodeAll([bytes], true);
      assert.equal(r.ended, true);
      assert.equal(
        new TextDecoder().decode(Uint8Array.from(r.content)),
        lines.map((l) => l + "\r\n").join(""),
      );
      assert.equal(r.consumed, body.length + 3);
      assert.equal(r.bare, false);
    }),
    { numRuns: 1000 },
  );
});

Deno.test("parseCommand never throws, whatever the line", () => {
  fc.assert(
    fc.property(fc.string({ unit: "grapheme", maxLength: 300 }), (line) => {
      const c = parseCommand(line);
      assert.ok(typeof c.verb === "string");
    }),
    { numRuns: 3000 },
  );
  fc.assert(
    fc.property(
      fc.constantFrom("MAIL FROM:", "RCPT TO:", "mail from: ", "BDAT ", "EHLO ", "AUTH "),
      fc.string({ unit: "binary", maxLength: 200 }),
      (verb, rest) => {
        parseCommand(verb + rest);
      },
    ),
    { numRuns: 3000 },
  );
});

Deno.test("parsePath returns a mailbox or throws PathSyntaxError, nothing else", () => {
  const pathy = fc.array(
    fc.constantFrom(
      "<",
      ">",
      "@",
      ".",
      ",",
      ":",
      '"',
      "\\",
      "[",
      "]",
      "a",
      "b",
      "IPv6:",
      "1",
      " ",
      "é",
    ),
    {
      maxLength: 40,
    },
  ).map((a) => a.join(""));
  fc.assert(
    fc.property(fc.oneof(pathy, fc.string({ maxLength: 80 })), fc.boolean(), (text, allowNull) => {
      try {
        const p = parsePath(text, { allowNull });
        if (p.mailbox) assert.ok(p.mailbox.domain.length > 0);
      } catch (error: unknown) {
        if (!(error instanceof PathSyntaxError)) throw error;
      }
    }),
    { numRuns: 5000 },
  );
});

Deno.test("no byte sequence makes the server session throw, and it never answers out of turn", () => {
  const answers = [
    REPLIES.senderOk,
    REPLIES.recipientOk,
    REPLIES.noSuchUser,
    REPLIES.startData,
    REPLIES.storageFailed,
    reply(250, "2.0.0", "Ok: queued as X"),
  ];
  const script = fc.array(
    fc.oneof(
      smtpBytes,
      fc.constantFrom(
        "EHLO a\r\n",
        "HELO a\r\n",
        "MAIL FROM:<a@b.c>\r\n",
        "RCPT TO:<d@e.f>\r\n",
        "DATA\r\n",
        "BDAT 3\r\nabc",
        "BDAT 0 LAST\r\n",
        ".\r\n",
        "RSET\r\n",
        "QUIT\r\n",
        "STARTTLS\r\n",
        "AUTH PLAIN\r\n",
      ).map((s) => new TextEncoder().encode(s)),
    ),
    { maxLength: 30 },
  );
  fc.assert(
    fc.property(
      script,
      fc.array(fc.nat({ max: answers.length - 1 }), { minLength: 1, maxLength: 30 }),
      (pieces, picks) => {
        const session = new ServerSession({
          hostname: "mx.test",
          maxMessageSize: 200,
          maxRecipients: 3,
        });
        let k = 0;
        const handle = (events: ReturnType<ServerSession["receive"]>): void => {
          for (const e of events) {
            if (
              e.type === "sender" || e.type === "recipient" || e.type === "open" ||
              e.type === "message"
            ) {
              assert.ok(session.isWaiting);
              handle(session.answer(answers[picks[k++ % picks.length]!]!));
            }
          }
        };
        handle(session.start());
        for (const p of pieces) {
          if (session.isWaiting) break;
          handle(session.receive(p));
        }
      },
    ),
    { numRuns: 2000 },
  );
});

/** Greeting names rich in what a Domain or address literal is made of, and what breaks them. */
const heloNames = fc.oneof(
  fc.array(
    fc.constantFrom("a", "Z", "0", "9", "-", "_", ".", "[", "]", ":", "IPv6:", "1.2.3.4", "xn--"),
    { maxLength: 20 },
  ).map((a) => a.join("")),
  fc.string({ unit: "binary", maxLength: 80 }),
);

Deno.test("an accepted greeting name is made only of domain and literal characters", () => {
  fc.assert(
    fc.property(heloNames, (name) => {
      if (heloNameProblem(name) === null) assert.match(name, /^[A-Za-z0-9._:\[\]-]{1,255}$/);
    }),
    { numRuns: 5000 },
  );
});

Deno.test("EHLO with any argument: accepted and named, or 501 and the state unchanged", () => {
  fc.assert(
    fc.property(heloNames, fc.boolean(), (name, inTransaction) => {
      if (/[\r\n]/.test(name)) return; // a line end makes it two commands
      const session = new ServerSession({ hostname: "mx.test" });
      const talk = (line: string) => {
        for (const e of session.receive(new TextEncoder().encode(line + "\r\n"))) {
          if (e.type === "sender") session.answer(REPLIES.senderOk);
        }
      };
      session.start();
      talk("EHLO before.test");
      if (inTransaction) talk("MAIL FROM:<a@b.test>");
      const before = session.state;
      talk(`EHLO ${name}`);
      if (session.state === "ready" && session.clientName !== "before.test") {
        assert.equal(heloNameProblem(session.clientName), null);
      } else {
        assert.equal(session.state, before);
        assert.equal(session.clientName, "before.test");
      }
    }),
    { numRuns: 3000 },
  );
});

Deno.test("the Received field stays one well-formed header whatever the greeting name", () => {
  fc.assert(
    fc.property(heloNames, (clientName) => {
      const field = formatReceived({
        clientName,
        clientAddress: "192.0.2.1",
        hostname: "mx.test",
        queueId: "Q1",
        isExtended: true,
        smtputf8: false,
        tls: null,
        authenticated: false,
        recipient: "b@example.test",
        date: new Date(0),
      });
      assert.match(field, /^Received: from \S+ \(\[192\.0\.2\.1\]\)/);
      assert.match(field, /^[\x20-\x7e]*(\r\n\t[\x20-\x7e]*)*\r\n$/);
      assert.equal(field.split(";").length, 2);
    }),
    { numRuns: 3000 },
  );
});
