import assert from "node:assert/strict";
import { MilterProtocolError, type Negotiated, SMFIF, SMFIP } from "./codec.ts";
import { MilterSession, parseReplyCode } from "./session.ts";

function negotiated(protocol = 0, actions = 0x1ff): Negotiated {
  return { version: 6, actions, protocol, symbols: new Map([[2, ["{mail_addr}"]]]) };
}

function connected(session: MilterSession): MilterSession {
  session.begin("connect");
  session.respond("connect", { type: "continue" });
  session.begin("helo");
  session.respond("helo", { type: "continue" });
  return session;
}

Deno.test("session: flags say which events are sent and which answered", () => {
  const session = connected(new MilterSession(negotiated(SMFIP.NOHDRS | SMFIP.NR_RCPT)));
  assert.deepEqual(session.begin("mail"), { send: true, expectsReply: true });
  session.respond("mail", { type: "continue" });
  assert.deepEqual(session.begin("rcpt"), { send: true, expectsReply: false });
  assert.deepEqual(session.begin("header"), { send: false, expectsReply: false });
  // Only the macros the milter listed for MAIL.
  const macros = session.macros("mail", [["{mail_addr}", "a@b"], ["i", "Q"]]);
  assert.ok(macros !== null && new TextDecoder().decode(macros).includes("{mail_addr}"));
  assert.ok(!new TextDecoder().decode(macros!).includes("\0i\0"));
});

Deno.test("session: accept ends the message for the milter; skip ends the body", () => {
  const session = connected(new MilterSession(negotiated()));
  session.begin("mail");
  session.respond("mail", { type: "continue" });
  session.begin("body");
  assert.deepEqual(session.respond("body", { type: "skip" }), {
    done: true,
    decision: { kind: "continue" },
  });
  assert.equal(session.begin("body").send, false);
  assert.equal(session.begin("eom").send, true);
  session.respond("eom", { type: "continue" });
  assert.equal(session.state, "ready");
  session.begin("mail");
  assert.deepEqual(session.respond("mail", { type: "accept" }), {
    done: true,
    decision: { kind: "accept" },
  });
  assert.equal(session.begin("rcpt").send, false);
  assert.equal(session.begin("eom").send, false);
});

Deno.test("session: a refused connection answers every later command; a refused RCPT only itself", () => {
  const refused = new MilterSession(negotiated());
  refused.begin("connect");
  refused.respond("connect", { type: "tempfail" });
  assert.deepEqual(refused.begin("mail"), {
    send: false,
    expectsReply: false,
    rejected: { kind: "tempfail" },
  });
  const session = connected(new MilterSession(negotiated()));
  session.begin("mail");
  session.respond("mail", { type: "continue" });
  session.begin("rcpt");
  session.respond("rcpt", { type: "reject" });
  assert.equal(session.isInMessage, true);
});

Deno.test("session: changes only at end of message, and only those negotiated", () => {
  const session = connected(new MilterSession(negotiated(0, SMFIF.ADDHDRS)));
  session.begin("mail");
  assert.throws(
    () => session.respond("mail", { type: "addheader", name: "X", value: "y" }),
    MilterProtocolError,
  );
  session.begin("eom");
  assert.deepEqual(session.respond("eom", { type: "addheader", name: "X", value: "y" }), {
    done: false,
  });
  assert.throws(
    () => session.respond("eom", { type: "delrcpt", recipient: "<a@b>" }),
    MilterProtocolError,
  );
  session.respond("eom", { type: "progress" });
  session.respond("eom", { type: "continue" });
  assert.deepEqual(session.changes, [{ type: "addheader", name: "X", value: "y" }]);
});

Deno.test("session: out-of-order events, newer versions and unknown flags are refused", () => {
  assert.throws(() => new MilterSession({ ...negotiated(), version: 7 }), MilterProtocolError);
  assert.throws(() => new MilterSession(negotiated(1 << 25)), MilterProtocolError);
  const session = new MilterSession(negotiated());
  assert.throws(() => session.begin("mail"), MilterProtocolError);
  session.begin("connect");
  assert.throws(() => session.begin("eom"), MilterProtocolError);
});

Deno.test("parseReplyCode: code, status, %% and multi-line; nonsense refused", () => {
  assert.deepEqual(parseReplyCode("550-5.7.1 Line one\r\n550 5.7.1 Line two"), {
    kind: "reply",
    code: 550,
    enhancedStatus: "5.7.1",
    lines: ["Line one", "Line two"],
  });
  assert.deepEqual(parseReplyCode("451 Try later"), {
    kind: "reply",
    code: 451,
    lines: ["Try later"],
  });
  assert.throws(() => parseReplyCode("250 ok"), MilterProtocolError);
  assert.throws(() => parseReplyCode("550 a\r\n451 b"), MilterProtocolError);
});

Deno.test("session: any final answer to the end of message leaves the milter ready for the next MAIL", () => {
  for (const type of ["reject", "tempfail", "discard", "accept", "continue"] as const) {
    const session = connected(new MilterSession(negotiated()));
    session.begin("mail");
    session.respond("mail", { type: "continue" });
    session.begin("eom");
    session.respond("eom", { type });
    assert.equal(session.state, "ready", type);
  }
});
