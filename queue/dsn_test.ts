import assert from "node:assert/strict";
import { type DsnAction, type DsnRecipient, dsnStatus, dsnStream } from "./dsn.ts";
import type { QueuedMessage, RecipientState, ReplySummary } from "./types.ts";

const encoder = new TextEncoder();

function state(reply: ReplySummary | null, extra: Partial<RecipientState> = {}): RecipientState {
  return {
    address: "b@example.net",
    originalRecipient: "b@example.net",
    mailbox: null,
    status: "bounced",
    attempts: 1,
    lastAttempt: 0,
    lastReply: reply,
    ...extra,
  };
}

function message(envelope: Partial<QueuedMessage["envelope"]> = {}): QueuedMessage {
  return {
    queueId: "Q1",
    arrival: 0,
    nextAttempt: 0,
    held: false,
    size: 20,
    clientAddress: "127.0.0.1",
    envelope: {
      reversePath: "a@example.test",
      forwardPaths: ["b@example.net"],
      body: "7BIT",
      smtputf8: false,
      ...envelope,
    },
    recipients: [],
  };
}

async function render(m: QueuedMessage, recipients: DsnRecipient[]): Promise<string> {
  const stream = dsnStream({
    message: m,
    recipients,
    reportingMta: "mx.example.test",
    now: new Date(0),
    content: () => new Blob(["Subject: hi\r\n\r\nbody\r\n"]).stream(),
    boundary: "B",
  });
  return await new Response(stream).text();
}

/** The report's lines: CRLF only, none over 998 octets, no control character. */
function assertClean(text: string): string[] {
  assert.ok(text.endsWith("\r\n"));
  const lines = text.slice(0, -2).split("\r\n");
  for (const line of lines) {
    assert.ok(encoder.encode(line).length <= 998, `${encoder.encode(line).length} octets`);
    // deno-lint-ignore no-control-regex
    assert.doesNotMatch(line, /[\x00-\x08\x0a-\x1f\x7f-\x9f]/, JSON.stringify(line));
  }
  return lines;
}

/** The fields of the delivery-status part, unfolded (RFC 5322 §2.2.3). */
function statusFields(text: string): string[] {
  const part = text.split("--B\r\n")[2]!;
  const body = part.slice(part.indexOf("\r\n\r\n") + 4);
  return body.replace(/\r\n(?=[ \t])/g, "").split("\r\n").filter(Boolean);
}

Deno.test("dsnStatus: the Status class follows the Action (RFC 3464 §2.3.4)", () => {
  const cases: [string | null, DsnAction, string][] = [
    ["5.1.1", "failed", "5.1.1"],
    ["4.3.0", "failed", "5.3.0"], // a deferral that gave up at max_age
    ["4.4.1", "delayed", "4.4.1"],
    ["5.1.1", "delayed", "4.1.1"],
    ["2.0.0", "delivered", "2.0.0"],
    ["4.3.0", "relayed", "2.0.0"],
    ["x.y.z", "failed", "5.0.0"],
    [null, "failed", "5.0.0"],
    [null, "delayed", "4.0.0"],
  ];
  for (const [status, action, want] of cases) {
    const reply = status === null ? null : { code: 451, enhancedStatus: status, text: "t" };
    assert.equal(dsnStatus(state(reply), action), want, `${status} ${action}`);
  }
});

Deno.test("a CR LF stored in ENVID, ORCPT or a reply cannot forge a field of the report", async () => {
  const text = await render(
    message({ envid: "x\r\nAction: delivered" }),
    [{
      action: "failed",
      remoteMta: "hop\r\nAction: delivered",
      state: state(
        { code: 550, enhancedStatus: "5.1.1", text: "no\r\nAction: delivered\x1b[2J\x9b" },
        { orcpt: "rfc822;x\r\nAction: delivered@example.net" },
      ),
    }],
  );
  assertClean(text);
  const fields = statusFields(text);
  assert.deepEqual(fields.filter((f) => f.startsWith("Action:")), ["Action: failed"]);
  assert.ok(fields.includes("Original-Envelope-Id: x+0D+0AAction:+20delivered"));
  assert.ok(fields.includes("Original-Recipient: rfc822; x+0D+0AAction:+20delivered@example.net"));
  assert.ok(fields.includes("Remote-MTA: dns; hop??Action:?delivered"));
  assert.ok(fields.includes("Diagnostic-Code: smtp; 550 5.1.1 no Action: delivered?[2J?"));
});

Deno.test("a long reply is folded at spaces near 78 columns and cut at 1,000 octets", async () => {
  const long = "5yz text ".repeat(100) + "y".repeat(1500) + " tail";
  const text = await render(message(), [{
    action: "failed",
    state: state({ code: 550, enhancedStatus: "5.7.1", text: long }),
  }]);
  const lines = assertClean(text);
  const diagnostic = statusFields(text).find((f) => f.startsWith("Diagnostic-Code: "))!;
  assert.match(diagnostic, /^Diagnostic-Code: smtp; 550 5\.7\.1 5yz text 5yz/);
  assert.match(diagnostic, /\.\.\.$/);
  assert.doesNotMatch(diagnostic, /tail/);
  assert.ok(encoder.encode(diagnostic).length <= 1100);
  // Folded lines are short, but for the one cut out of a 1,500-octet word.
  const start = lines.findIndex((l) => l.startsWith("Diagnostic-Code: "));
  assert.ok(lines[start]!.length <= 78);
  assert.ok(lines[start + 1]!.startsWith(" ") && lines[start + 1]!.length <= 78);
  // The text part is wrapped too.
  const human = text.split("--B\r\n")[1]!;
  assert.ok(human.split("\r\n").every((l) => l.length <= 600));
  assert.match(human, /<b@example\.net>: 550 5yz text/);
});

Deno.test("a UTF-8 reply is kept in an SMTPUTF8 report and made ASCII in a plain one", async () => {
  const reply = { code: 550, enhancedStatus: "5.1.1", text: "d\u00e9j\u00e0 \u{1F4EC} vu" };
  const plain = await render(message(), [{ action: "failed", state: state(reply) }]);
  assert.ok(statusFields(plain).includes("Diagnostic-Code: smtp; 550 5.1.1 d?j? ? vu"));
  const global = await render(message({ smtputf8: true }), [{
    action: "failed",
    state: state(reply),
  }]);
  assert.ok(
    statusFields(global).includes("Diagnostic-Code: smtp; 550 5.1.1 d\u00e9j\u00e0 \u{1F4EC} vu"),
  );
  assert.match(global, /Content-Type: message\/global-delivery-status/);
});
