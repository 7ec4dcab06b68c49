import assert from "node:assert/strict";
import {
  annotateCommand,
  annotateExtension,
  annotateReply,
  ANNOTATIONS,
  describeStatus,
  formatAnnotation,
  formatReference,
  parseEnhancedStatus,
  rfcUrl,
} from "./annotations.ts";
import { queuedReply, REPLIES, type Reply, REPLY_TABLE } from "./reply.ts";

const commands = [
  {
    line: "EHLO client.test",
    text: "RFC 5321 §4.1.1.1 EHLO: greets the server and asks for its extensions",
  },
  {
    line: "helo client.test",
    text: "RFC 5321 §4.1.1.1 HELO: greets the server, plain SMTP without extensions",
  },
  { line: "MAIL FROM:<a@x.test>", text: "RFC 5321 §4.1.1.2 MAIL: starts a mail transaction" },
  {
    line: "rcpt to:<b@y.test>",
    text: "RFC 5321 §4.1.1.3 RCPT: adds one recipient to the transaction",
  },
  { line: "DATA", text: "RFC 5321 §4.1.1.4 DATA: asks to send the content" },
  { line: "RSET", text: "RFC 5321 §4.1.1.5 RSET: drops the transaction in progress" },
  { line: "QUIT", text: "RFC 5321 §4.1.1.10 QUIT: ends the session" },
  { line: "STARTTLS", text: "RFC 3207 §4 STARTTLS: upgrades the connection to TLS" },
  {
    line: "BDAT 100 LAST",
    text: "RFC 3030 §2 BDAT: sends a chunk of exactly chunk-size octets of content",
  },
  {
    line: "AUTH PLAIN AGFsaWNlAHNlY3JldA==",
    text: "RFC 4954 §4 AUTH: logs in with a SASL mechanism",
  },
  {
    line: "XYZZY now",
    text:
      "RFC 5321 §4.2.4 XYZZY: not a command this server knows: answered 500, and the session goes on",
  },
];
for (const c of commands) {
  Deno.test(`annotateCommand() explains "${c.line}"`, () => {
    assert.equal(formatAnnotation(annotateCommand(c.line)), c.text);
  });
}

Deno.test("annotateCommand() explains MAIL and RCPT parameters as details", () => {
  const mail = annotateCommand("MAIL FROM:<> SIZE=1000 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=x");
  assert.deepEqual(mail.details.map((d) => d.subject), [
    "SIZE=",
    "BODY=",
    "SMTPUTF8",
    "RET=",
    "ENVID=",
    "<>",
  ]);
  assert.equal(formatReference(mail.details.at(-1)!.reference), "RFC 5321 §4.5.5");
  const rcpt = annotateCommand("RCPT TO:<b@y.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@y.test");
  assert.deepEqual(rcpt.details.map(formatAnnotation), [
    "RFC 3461 §4.1 NOTIFY=: when to send a delivery report: NEVER, or SUCCESS, FAILURE, DELAY",
    "RFC 3461 §4.2 ORCPT=: the original recipient address, for delivery reports",
  ]);
});

Deno.test("annotateCommand() never repeats what follows AUTH", () => {
  const a = annotateCommand("AUTH PLAIN AGFsaWNlAHNlY3JldA==");
  assert.ok(!JSON.stringify(a).includes("AGFsaWNl"));
});

const replies = [
  {
    reply: REPLIES.tooManyRecipients,
    text:
      "RFC 5321 §4.5.3.1.10 452 4.5.3: too many recipients: send the others in another transaction",
  },
  { reply: REPLIES.noSuchUser, text: "RFC 3463 §3.2 550 5.1.1: no such mailbox here" },
  {
    reply: REPLIES.relayDenied,
    text: "RFC 3463 §3.8 554 5.7.1: not relayed: this domain is not ours and you are not our user",
  },
  {
    reply: REPLIES.startData,
    text: "RFC 5321 §4.1.1.4 354: send the content, end it with a line holding only a dot",
  },
  {
    reply: REPLIES.badSequence("Need MAIL before RCPT"),
    text: "RFC 5321 §4.1.4 503 5.5.1: not now: commands out of order",
  },
  {
    reply: REPLIES.bareLineEnding,
    text:
      "RFC 5321 §2.3.8 550 5.6.11: lines must end with CRLF: bare CR or LF refused (SMTP smuggling)",
  },
  { reply: REPLIES.authFailed, text: "RFC 4954 §6 535 5.7.8: AUTH: wrong user name or password" },
  { reply: REPLIES.encryptionRequired, text: "RFC 4954 §6 538 5.7.11: AUTH: use STARTTLS first" },
  {
    reply: { code: 556, enhancedStatus: "5.1.10", lines: ["null MX"] },
    text: "RFC 7505 556 5.1.10: the domain publishes a null MX: it takes no mail",
  },
  // A code with a status the table has no combination for: the code's own rule.
  {
    reply: { code: 451, enhancedStatus: "4.4.3", lines: ["DNS"] },
    text: "RFC 5321 §4.2.3 451 4.4.3: server error, try again later",
  },
  // A code no RFC defines: its first digit still says something (RFC 5321 §4.2.1).
  { reply: { code: 299, lines: ["?"] }, text: "RFC 5321 §4.2.1 299: positive completion: done" },
];
for (const c of replies) {
  Deno.test(`annotateReply() explains ${c.reply.code} ${c.reply.enhancedStatus ?? ""}`, () => {
    assert.equal(formatAnnotation(annotateReply(c.reply)), c.text);
  });
}

Deno.test("annotateReply() tells the 250 that ends a transaction from any other 250", () => {
  const r = queuedReply("4F2A9C");
  assert.equal(
    formatReference(annotateReply(r, { answers: "content" }).reference),
    "RFC 5321 §6.1",
  );
  assert.equal(formatReference(annotateReply(r).reference), "RFC 5321 §4.2.3");
});

Deno.test("annotateReply() annotates each EHLO keyword of an EHLO reply", () => {
  const ehlo = {
    code: 250,
    lines: ["mx.example.test greets c", "PIPELINING", "SIZE 1000", "X-UNKNOWN"],
  };
  const a = annotateReply(ehlo);
  assert.equal(formatReference(a.reference), "RFC 5321 §4.1.1.1");
  assert.deepEqual(a.details.map((d) => d.subject), ["250", "PIPELINING", "SIZE"]);
  assert.equal(annotateExtension("auth plain login")?.subject, "AUTH");
  assert.equal(annotateExtension("X-UNKNOWN"), null);
});

Deno.test("parseEnhancedStatus() reads class.subject.detail and nothing else (RFC 3463 §2)", () => {
  assert.deepEqual(parseEnhancedStatus("4.7.30"), { class: 4, subject: 7, detail: 30 });
  for (const bad of ["3.1.1", "5.1", "5.1.1.1", "x.1.1", "5.1000.1", " 5.1.1"]) {
    assert.equal(parseEnhancedStatus(bad), null, bad);
  }
});

Deno.test("describeStatus() names class, subject and detail", () => {
  const d = describeStatus("5.7.1")!;
  assert.equal(d.class.title, "Permanent Failure");
  assert.equal(d.subject?.title, "Security or Policy Status");
  assert.equal(d.detail?.title, "Delivery not authorized, message refused");
  assert.equal(describeStatus("5.9.1")?.subject, undefined);
  assert.equal(describeStatus("5.1.99")?.detail, undefined);
  assert.equal(describeStatus("3.1.1"), null);
});

Deno.test("rfcUrl() links the section on the RFC Editor's site", () => {
  assert.equal(
    rfcUrl({ rfc: 5321, section: "4.5.3.1.10" }),
    "https://www.rfc-editor.org/rfc/rfc5321.html#section-4.5.3.1.10",
  );
  assert.equal(rfcUrl({ rfc: 1870 }), "https://www.rfc-editor.org/rfc/rfc1870.html");
});

// --- the table is consistent with itself ---------------------------------------

Deno.test("ANNOTATIONS: every code-and-status rule names a known code and status of the same class", () => {
  for (const key of Object.keys(ANNOTATIONS.replies)) {
    const m = /^([0-9]{3})(?: ([245]\.[0-9]+\.[0-9]+)| after [a-z]+)?$/i.exec(key);
    assert.ok(m, `bad key "${key}"`);
    const code = Number(m[1]);
    assert.ok(ANNOTATIONS.replyCodes[code], `"${key}": code ${code} is not in replyCodes`);
    if (m[2] !== undefined) {
      assert.ok(describeStatus(m[2])?.detail, `"${key}": ${m[2]} is not in statusDetails`);
      assert.equal(Number(m[2][0]), Math.floor(code / 100), `"${key}": class and code disagree`);
    }
  }
});

Deno.test("ANNOTATIONS: every detail has a subject, every note has its texts and an RFC", () => {
  for (const key of Object.keys(ANNOTATIONS.statusDetails)) {
    const m = /^X\.([0-9]{1,3})\.([0-9]{1,3})$/.exec(key);
    assert.ok(m, `bad key "${key}"`);
    assert.ok(ANNOTATIONS.statusSubjects[m[1]!], `${key}: no subject ${m[1]}`);
  }
  const all = [
    ...Object.values(ANNOTATIONS.replyCodes),
    ...Object.values(ANNOTATIONS.replies),
    ...Object.values(ANNOTATIONS.statusClasses),
    ...Object.values(ANNOTATIONS.statusSubjects),
    ...Object.values(ANNOTATIONS.statusDetails),
    ...Object.values(ANNOTATIONS.commands),
    ...Object.values(ANNOTATIONS.extensions),
    ...Object.values(ANNOTATIONS.parameters),
  ];
  for (const note of all) {
    assert.ok(note.title !== "" && note.rule !== "" && note.meaning !== "", JSON.stringify(note));
    assert.ok(Number.isInteger(note.reference.rfc) && note.reference.rfc > 0, note.title);
    if (note.reference.section !== undefined) {
      assert.match(note.reference.section, /^[0-9]+(\.[0-9]+)*$/, note.title);
    }
    // Rules start in lower case (they follow a colon in an annotation), or with a name like AUTH.
    assert.match(note.rule, /^([a-z]|[A-Z0-9]{2,}\b)/, note.rule);
  }
  for (const [verb, note] of Object.entries(ANNOTATIONS.commands)) {
    assert.match(note.syntax, new RegExp(`^${verb}\\b`), verb);
  }
  for (const key of Object.keys(ANNOTATIONS.parameters)) {
    assert.match(key, /^(MAIL|RCPT) [A-Z0-9-]+$/, key);
    assert.ok(ANNOTATIONS.commands[key.split(" ")[0]!], key);
  }
});

// --- the reply table carries the notes of the replies tern sends ------------------

Deno.test("REPLY_TABLE: replies sharing a code and status share one note, and it reaches ANNOTATIONS", () => {
  const annotated = new Map<string, string>();
  for (const [name, entry] of Object.entries(REPLY_TABLE)) {
    const key = entry.enhancedStatus === undefined
      ? String(entry.code)
      : `${entry.code} ${entry.enhancedStatus}`;
    if (entry.note === undefined) continue;
    assert.ok(!annotated.has(key), `${name} and ${annotated.get(key)} both annotate "${key}"`);
    annotated.set(key, name);
    assert.equal(
      ANNOTATIONS.replies[key],
      entry.note,
      `${name}: its note is not the one for "${key}"`,
    );
  }
  // The notes the trace shows for REPLIES come from the table, through annotateReply.
  assert.equal(
    formatAnnotation(annotateReply(REPLIES.noSuchUser)),
    `${formatReference(REPLY_TABLE.noSuchUser.note!.reference)} 550 5.1.1: ` +
      REPLY_TABLE.noSuchUser.note!.rule,
  );
});

Deno.test("REPLIES are the REPLY_TABLE entries made ready", () => {
  for (const [name, entry] of Object.entries(REPLY_TABLE)) {
    const value: unknown = (REPLIES as unknown as Record<string, unknown>)[name];
    const r = (typeof value === "function" ? value("x", "y") : value) as Reply;
    assert.equal(r.code, entry.code, name);
    assert.equal(r.enhancedStatus, entry.enhancedStatus, name);
  }
  assert.deepEqual(REPLIES.help.lines, REPLY_TABLE.help.text);
  assert.deepEqual(REPLIES.senderNotOwned("a@x.test").lines, [
    "Sender address not owned by user <a@x.test>",
  ]);
});
