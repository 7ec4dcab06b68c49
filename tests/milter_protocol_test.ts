// Milters that misbehave, played by a small fake milter on a loopback port:
// one that answers MAIL with a packet the protocol does not have, one that
// never finishes option negotiation. Each gets its default_action, the SMTP
// session never hangs, and the milter conversation is dropped.

import assert from "node:assert/strict";
import { python, startMta } from "./_helpers.ts";

/** A fake milter: negotiates, then answers each command with `answer(code)` (or nothing for null). */
function fakeMilter(
  answer: (code: string) => Uint8Array | null,
  negotiate = true,
): { port: number; close(): void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  (async () => {
    for await (const conn of listener) {
      conns.push(conn);
      void serve(conn).catch(() => {});
    }
  })().catch(() => {});
  async function serve(conn: Deno.Conn): Promise<void> {
    let buffer = new Uint8Array(0);
    const chunk = new Uint8Array(65536);
    for (;;) {
      const n = await conn.read(chunk);
      if (n === null) return;
      const joined = new Uint8Array(buffer.length + n);
      joined.set(buffer);
      joined.set(chunk.subarray(0, n), buffer.length);
      buffer = joined;
      while (buffer.length >= 4) {
        const length = new DataView(buffer.buffer).getUint32(0);
        if (buffer.length < 4 + length) break;
        const code = String.fromCharCode(buffer[4]!);
        buffer = buffer.slice(4 + length);
        if (code === "O") {
          if (!negotiate) continue;
          await conn.write(packet("O", [0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0]));
        } else if (code !== "D" && code !== "A" && code !== "Q") {
          const reply = answer(code);
          if (reply !== null) await conn.write(reply);
        }
      }
    }
  }
  return {
    port: (listener.addr as Deno.NetAddr).port,
    close() {
      listener.close();
      for (const conn of conns) {
        try {
          conn.close();
        } catch {
          // closed by tern already
        }
      }
    },
  };
}

function packet(code: string, data: number[] = []): Uint8Array {
  const length = data.length + 1;
  return new Uint8Array([0, 0, length >> 8, length & 0xff, code.charCodeAt(0), ...data]);
}

const SEND = `
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=30)
s.ehlo("client.example")
code, text = s.mail("a@example.org")
print(code, text.decode())
if code == 250:
    print(*s.rcpt("alice@example.test"))
    code, text = s.data(b"Subject: x\\r\\n\\r\\nHi\\r\\n")
    print(code, text.decode())
s.quit()
`;

const BASE = "limits: { greeting_delay: 0s }\nlocal_domains: [example.test]\n";

Deno.test("a milter that answers with nonsense gets its default action: tempfail, then accept", async () => {
  const milter = fakeMilter((code) => code === "M" ? packet("Z") : packet("c"));
  try {
    {
      await using t = await startMta(`${BASE}milters: ["127.0.0.1:${milter.port}"]\n`);
      const out = await python(SEND, [String(t.port)]);
      assert.equal(
        out.trim(),
        "451 4.7.1 The content filter cannot check this now, try again later",
      );
      const failed = t.logger.records.find((r) => r.event === "milter.failed");
      assert.match(String(failed?.fields.reason), /^protocol: unknown response 'Z'/);
    }
    {
      await using t = await startMta(
        `${BASE}milters: [{ address: "127.0.0.1:${milter.port}", default_action: accept }]\n`,
      );
      const lines = (await python(SEND, [String(t.port)])).trim().split("\n");
      assert.match(lines[2]!, /^250 2\.0\.0 Ok: queued as /);
      const accepted = t.logger.records.find((r) => r.event === "message.accepted");
      assert.match(String(accepted?.fields.milters), /=failed$/);
    }
  } finally {
    milter.close();
  }
});

Deno.test("a milter that never finishes negotiation: connect_timeout, then 451 4.7.1", async () => {
  const milter = fakeMilter(() => null, false);
  try {
    await using t = await startMta(
      `${BASE}milters: [{ address: "127.0.0.1:${milter.port}", connect_timeout: 300ms }]\n`,
    );
    const out = await python(SEND, [String(t.port)]);
    assert.equal(out.trim(), "451 4.7.1 The content filter cannot check this now, try again later");
    const failed = t.logger.records.find((r) => r.event === "milter.failed");
    assert.match(String(failed?.fields.reason), /^timeout/);
  } finally {
    milter.close();
  }
});
