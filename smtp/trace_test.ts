import assert from "node:assert/strict";
import { ServerSession, type SessionEvent } from "./server_session.ts";
import { ServerTrace, traceReply } from "./trace.ts";
import type { ConnectionInfo } from "./server.ts";
import { REPLIES } from "./reply.ts";

const connection: ConnectionInfo = {
  id: "0001",
  remoteAddress: "192.0.2.1",
  remotePort: 40000,
  localAddress: "192.0.2.2",
  localPort: 25,
  clientName: "client.test",
  isExtended: true,
  tls: null,
  authenticatedAs: null,
};

/** Runs a session over some client lines and returns the trace it makes. */
function traced(lines: string, options: ConstructorParameters<typeof ServerSession>[0]): string[] {
  const out: string[] = [];
  const trace = new ServerTrace((l) => out.push(l));
  const session = new ServerSession(options);
  trace.event({ type: "connect", connection });
  const handle = (events: SessionEvent[]): void => {
    for (const e of events) {
      if (e.type === "send") {
        for (const r of e.replies) trace.event({ type: "reply", connection, reply: r });
      } else if (e.type === "command") trace.event({ type: "command", connection, line: e.line });
      else if (e.type === "sender") handle(session.answer(REPLIES.senderOk));
      else if (e.type === "recipient") handle(session.answer(REPLIES.recipientOk));
      else if (e.type === "open") handle(session.answer(REPLIES.startData));
      else if (e.type === "message") {
        trace.event({ type: "data", connection, octets: 17 });
        handle(session.answer(REPLIES.ok));
      } else if (e.type === "auth") handle(session.answer(REPLIES.authFailed));
    }
  };
  handle(session.start());
  handle(session.receive(new TextEncoder().encode(lines)));
  return out;
}

Deno.test("the trace annotates each command and reply with its RFC rule and never shows content", () => {
  const out = traced(
    "EHLO c.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@y.test>\r\nDATA\r\nSubject: secret\r\n\r\nsecret\r\n.\r\nQUIT\r\n",
    { hostname: "mx.test" },
  );
  const text = out.join("\n");
  assert.match(text, /\[0001\] C: MAIL FROM:<a@x\.test> +; RFC 5321 §4\.1\.1\.2 MAIL: /);
  assert.match(text, /\[0001\] S: 250-SIZE 26214400 +; RFC 1870 SIZE: /);
  assert.match(text, /\[0001\] S: 354 [^;]+; RFC 5321 §4\.1\.1\.4 354: /);
  assert.match(text, /C: \(message content: 17 octets/);
  assert.doesNotMatch(text, /secret/);
});

Deno.test("AUTH secrets are masked in the trace", () => {
  const out = traced(
    "EHLO c.test\r\nAUTH PLAIN AGFsaWNlAHMzY3IzdA==\r\nAUTH LOGIN\r\nYWxpY2U=\r\n",
    {
      hostname: "mx.test",
      authMechanisms: ["PLAIN", "LOGIN"],
      authRequiresTls: false,
    },
  );
  const text = out.join("\n");
  assert.match(text, /C: AUTH PLAIN \*\*\*\*/);
  assert.match(text, /C: \*\*\*\* \(AUTH response, masked\)/);
  assert.doesNotMatch(text, /AGFsaWNl|YWxpY2U/);
});

Deno.test("traceReply annotates the last line of a reply", () => {
  const lines = traceReply({ code: 452, enhancedStatus: "4.5.3", lines: ["Too many recipients"] }, {
    answers: "RCPT",
  });
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /^S: 452 4\.5\.3 Too many recipients +; RFC /);
});
