// Bounces that cannot be forged, dirtied, lost or made wrong: ENVID and
// ORCPT must decode to printable US-ASCII (RFC 3461 §4), a next hop's reply
// reaches the DSN without control characters and folded into lines of at
// most 998 octets (RFC 5322 §2.1.1), and a "failed" Action always comes with
// a 5.x.x Status (RFC 3464 §2.3.4), also when a 4.x.x deferral gave up at
// queue.max_age.
import assert from "node:assert/strict";
import { join } from "node:path";
import { maildirFiles, python, rawExchange, startMta, waitFor } from "./_helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A next hop on loopback that answers every RCPT with `rcptReply` (raw, with its CRLF). */
interface NextHop extends AsyncDisposable {
  readonly port: number;
  /** How many RCPT commands it answered. */
  readonly rcpts: () => number;
}

function startNextHop(rcptReply: string): NextHop {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  let rcpts = 0;
  const answer = (line: string): string | null => {
    const verb = line.slice(0, 4).toUpperCase();
    if (verb === "EHLO" || verb === "HELO") return "250 hop.example.net\r\n";
    if (verb === "RCPT") {
      rcpts++;
      return rcptReply;
    }
    if (verb === "DATA") return "503 5.5.1 No valid recipients\r\n";
    if (verb === "QUIT") return null;
    return "250 2.0.0 Ok\r\n";
  };
  const serve = async (conn: Deno.Conn) => {
    conns.add(conn);
    try {
      await conn.write(encoder.encode("220 hop.example.net ESMTP\r\n"));
      let buffer = "";
      for await (const chunk of conn.readable) {
        buffer += decoder.decode(chunk, { stream: true });
        for (let end = buffer.indexOf("\r\n"); end >= 0; end = buffer.indexOf("\r\n")) {
          const reply = answer(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
          if (reply === null) {
            await conn.write(encoder.encode("221 2.0.0 Bye\r\n"));
            return;
          }
          await conn.write(encoder.encode(reply));
        }
      }
    } catch {
      // the client went away
    } finally {
      conns.delete(conn);
      try {
        conn.close();
      } catch {
        // already closed
      }
    }
  };
  const accepting = (async () => {
    try {
      for await (const conn of listener) void serve(conn);
    } catch {
      // closed
    }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    rcpts: () => rcpts,
    async [Symbol.asyncDispose]() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch {
          // already closed
        }
      }
      await accepting;
    },
  };
}

/** An MTA taking mail for alice at example.test, polling its queue often. */
async function startRelayMta(extra: string) {
  const running = await startMta(
    `local_domains: [example.test]\naccounts:\n  alice@example.test: {}\n${extra}`,
    { pollMs: 100 },
  );
  return { ...running, alice: join(running.dir, "data", "mail", "example.test", "alice") };
}

const SEND = `
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1])) as s:
    s.sendmail("alice@example.test", [sys.argv[2]], b"Subject: to a hostile hop\\r\\nMessage-ID: <h1@example.test>\\r\\n\\r\\nbody\\r\\n")
`;

const PARSE = `
import email, sys, json, re
msg = email.message_from_binary_file(open(sys.argv[1], "rb"))
parts = msg.get_payload()
status = parts[1].get_payload()
unfold = lambda b: {k: re.sub(r"\\r?\\n(?=[ \\t])", "", v) for k, v in b.items()}  # RFC 5322 §2.2.3
print(json.dumps({"text": parts[0].get_payload(decode=True).decode("utf-8"),
                  "message": unfold(status[0]), "recipients": [unfold(b) for b in status[1:]]}))
`;

/** Every line of a delivered bounce: CRLF-terminated, at most 998 octets, no control characters. */
function assertCleanLines(bytes: Uint8Array): void {
  const text = decoder.decode(bytes);
  assert.ok(text.endsWith("\r\n"));
  const lines = text.slice(0, -2).split("\r\n");
  for (const [i, line] of lines.entries()) {
    assert.ok(
      encoder.encode(line).length <= 998,
      `line ${i + 1} is ${encoder.encode(line).length} octets`,
    );
    // Bare CR or LF, ESC, other C0 and C1 controls (TAB may fold a field).
    // deno-lint-ignore no-control-regex
    assert.doesNotMatch(line, /[\x00-\x08\x0a-\x1f\x7f-\x9f]/, `line ${i + 1}: ${line}`);
  }
}

async function firstMail(mailbox: string): Promise<string> {
  const [file] = await waitFor(async () => {
    const f = await maildirFiles(mailbox);
    return f.length > 0 ? f : undefined;
  }, 15_000);
  return file!;
}

Deno.test("ENVID and ORCPT that decode to CR LF or other controls are refused with 501 5.5.4", async () => {
  await using t = await startRelayMta("");
  const transcript = await rawExchange(
    t.port,
    "EHLO client.example.test\r\n" +
      "MAIL FROM:<a@b> ENVID=x+0D+0AAction:+20delivered\r\n" +
      "MAIL FROM:<a@b> ENVID=x+1B[2J\r\n" +
      "MAIL FROM:<a@b> ENVID=ok+20id\r\n" +
      "RCPT TO:<alice@example.test> ORCPT=rfc822;x+0D+0AAction:+20delivered@example.test\r\n" +
      "RCPT TO:<alice@example.test> ORCPT=rfc822;x+7F@example.test\r\n" +
      "RCPT TO:<alice@example.test> ORCPT=rfc822;alice+2Btag@example.test\r\n" +
      "QUIT\r\n",
  );
  const replies = transcript.split("\r\n").filter((l) => /^\d{3} /.test(l)).slice(2);
  assert.match(replies[0]!, /^501 5\.5\.4 ENVID/);
  assert.match(replies[1]!, /^501 5\.5\.4 ENVID/);
  assert.match(replies[2]!, /^250 /);
  assert.match(replies[3]!, /^501 5\.5\.4 ORCPT/);
  assert.match(replies[4]!, /^501 5\.5\.4 ORCPT/);
  assert.match(replies[5]!, /^250 /);
});

Deno.test("a 550 with a 2,000-character text full of escapes bounces folded, clean and 5.x.x", async () => {
  const evil = "5.1.1 \x1b]0;owned\x07\x1b[2J\x1b[31mred\x1b[0m bare\rAction: delivered " +
    "words of a very chatty server ".repeat(50) + "x".repeat(600) + " \x9b31m end";
  assert.ok(evil.length > 2000);
  await using hop = startNextHop(`550 ${evil}\r\n`);
  await using t = await startRelayMta(
    `relay: { routes: { example.net: "127.0.0.1:${hop.port}" } }\n`,
  );
  await python(SEND, [String(t.port), "victim@example.net"]);
  const file = await firstMail(t.alice);
  assertCleanLines(await Deno.readFile(file));
  const dsn = JSON.parse(await python(PARSE, [file]));
  assert.equal(dsn.recipients.length, 1);
  const r = dsn.recipients[0];
  assert.equal(r["Action"], "failed");
  assert.match(r["Status"], /^5\.\d{1,3}\.\d{1,3}$/);
  assert.equal(r["Final-Recipient"], "rfc822; victim@example.net");
  const diagnostic = r["Diagnostic-Code"];
  assert.match(diagnostic, /^smtp; 550 5\.1\.1 /);
  assert.match(diagnostic, /Action: delivered/); // kept as text, inside the folded field
  assert.ok(encoder.encode(diagnostic).length <= 1100, `${diagnostic.length}`);
  assert.match(dsn.text, /victim@example\.net/);
  // deno-lint-ignore no-control-regex
  assert.doesNotMatch(dsn.text, /\x1b|\r/);
});

Deno.test("a 4.x.x deferral that gives up at queue.max_age bounces with Action failed and a 5.x.x Status", async () => {
  await using hop = startNextHop("451 4.3.0 Try again later\r\n");
  await using t = await startRelayMta(
    `relay: { routes: { example.net: "127.0.0.1:${hop.port}" } }\nqueue: { retry: [1s], max_age: 2s }\n`,
  );
  await python(SEND, [String(t.port), "slow@example.net"]);
  const file = await firstMail(t.alice);
  assertCleanLines(await Deno.readFile(file));
  const dsn = JSON.parse(await python(PARSE, [file]));
  const r = dsn.recipients[0];
  assert.equal(r["Action"], "failed");
  assert.equal(r["Status"], "5.3.0");
  assert.match(r["Diagnostic-Code"], /^smtp; 451 4\.3\.0 Try again later \(gave up after/);
  assert.ok(hop.rcpts() >= 2);
});
