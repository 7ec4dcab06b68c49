// Milters end to end with a real libmilter milter: the Python milter of
// tests/_milter.ts (Debian's python3-milter) on a loopback port, tern in
// process with `milters:`, python3 smtplib as the client, real Maildir
// delivery. Each edit a milter may ask for, each refusal, a slow milter and
// a dead one.

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  maildirFiles,
  python,
  type RunningMta,
  startMta,
  waitFor,
  waitForMail,
} from "./_helpers.ts";
import { freePort, type Peer, startPythonMilter } from "./_milter.ts";

const DIRECTORY = `
limits: { greeting_delay: 0s }
local_domains: [example.test]
accounts:
  alice@example.test: {}
  bob@example.test: {}
  carol@example.test: {}
  refused@example.test: {}
`;

function mailbox(dir: string, address: string): string {
  const [local, domain] = address.split("@");
  return join(dir, "data", "mail", domain!, local!);
}

/** Sends messages in one session; prints one JSON line per message with every reply. */
const SEND = `
import json, smtplib, sys
port, messages = int(sys.argv[1]), json.loads(sys.argv[2])
s = smtplib.SMTP("127.0.0.1", port, timeout=60)
s.ehlo("client.example")
for m in messages:
    out = {}
    code, text = s.mail(m["from"])
    out["mail"] = "%d %s" % (code, text.decode())
    if code == 250:
        out["rcpt"] = []
        ok = 0
        for to in m["to"]:
            code, text = s.rcpt(to)
            out["rcpt"].append("%d %s" % (code, text.decode()))
            ok += code == 250
        if ok:
            headers = "".join("%s: %s\\r\\n" % tuple(h) for h in m.get("headers", []))
            body = "From: a@example.org\\r\\nSubject: %s\\r\\n%s\\r\\n%s" % (
                m["subject"], headers, m.get("body", "Hello.\\r\\n") * m.get("repeat", 1))
            code, text = s.data(body.encode())
            out["data"] = "%d %s" % (code, text.decode().replace("\\n", " "))
    s.rset()
    print(json.dumps(out), flush=True)
s.quit()
`;

interface Sent {
  readonly mail: string;
  readonly rcpt?: string[];
  readonly data?: string;
}

interface Message {
  readonly from: string;
  readonly to: readonly string[];
  readonly subject: string;
  readonly headers?: ReadonlyArray<readonly [string, string]>;
  readonly body?: string;
  readonly repeat?: number;
}

async function send(port: number, messages: readonly Message[]): Promise<Sent[]> {
  const out = await python(SEND, [String(port), JSON.stringify(messages)]);
  return out.trim().split("\n").map((line) => JSON.parse(line) as Sent);
}

function queueIdOf(reply: string | undefined): string {
  const match = /queued as (\S+)/.exec(reply ?? "");
  assert.ok(match, `no queue id in ${reply}`);
  return match[1]!;
}

/** The Python milter and a tern using it, for one test. */
async function withMilter(
  extra: string,
  body: (t: RunningMta, milter: Peer) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "tern-milter-" });
  const milter = await startPythonMilter(dir);
  try {
    await using t = await startMta(
      `${DIRECTORY}milters:\n  - { address: "127.0.0.1:${milter.port}"${extra} }\n`,
    );
    await body(t, milter);
  } catch (error: unknown) {
    throw new Error(
      `${error instanceof Error ? error.message : error}\nmilter log: ${await milter.log()}`,
      {
        cause: error,
      },
    );
  } finally {
    await milter.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("milter edits: header fields added, inserted, changed and removed, body replaced, macros sent", async () => {
  await withMilter("", async (t) => {
    const [sent] = await send(t.port, [{
      from: "sender@example.org",
      to: ["alice@example.test"],
      subject: "addheader insheader chgheader delheader replbody",
      headers: [["X-Change-Me", "old"], ["X-Delete-Me", "gone"], ["X-Keep", "kept"]],
    }]);
    const id = queueIdOf(sent!.data);
    const [mail] = await waitForMail(mailbox(t.dir, "alice@example.test"), 1);
    const text = new TextDecoder().decode(mail);
    const [header, body] = text.split("\r\n\r\n", 2) as [string, string];
    assert.match(header, /^X-Milter-Added: yes$/m);
    assert.match(header, /^X-Change-Me: changed$/m);
    assert.doesNotMatch(header, /X-Delete-Me/);
    assert.match(header, /^X-Keep: kept$/m);
    // Inserted at index 0: above every field of the message (under tern's own trace field).
    assert.match(header, /Received: [^]*?\r\nX-Milter-Top: first\r\nFrom: a@example\.org\r\n/);
    assert.equal(body, "The body was replaced by the milter.\r\n");
    // The macros: i (the queue id) at end of message, the client, j, the sender.
    const seen = /^X-Milter-Seen: (.*)$/m.exec(header)?.[1] ?? "";
    assert.match(seen, new RegExp(`\\bi=${id}\\b`));
    assert.match(seen, /client_addr=127\.0\.0\.1/);
    assert.match(seen, /j=mx\.example\.test/);
    assert.match(seen, /mail_addr=sender@example\.org/);
    const accepted = t.logger.records.find((r) => r.event === "message.accepted");
    assert.match(String(accepted?.fields.milters), /^127\.0\.0\.1:\d+=continue$/);
  });
});

Deno.test("milter envelope edits: sender changed, recipient added and deleted, under a new queue id", async () => {
  await withMilter("", async (t) => {
    const [sent] = await send(t.port, [{
      from: "sender@example.org",
      to: ["alice@example.test", "carol@example.test"],
      subject: "chgfrom addrcpt delrcpt",
    }]);
    const id = queueIdOf(sent!.data);
    const [forAlice] = await waitForMail(mailbox(t.dir, "alice@example.test"), 1);
    await waitForMail(mailbox(t.dir, "bob@example.test"), 1);
    assert.match(new TextDecoder().decode(forAlice), /^Return-Path: <new-sender@example\.org>\r\n/);
    assert.deepEqual(await maildirFiles(mailbox(t.dir, "carol@example.test")), []);
    const requeued = t.logger.records.find((r) => r.event === "message.requeued");
    assert.equal(requeued?.queueId, id);
    assert.ok(typeof requeued?.fields.replaces === "string" && requeued.fields.replaces !== id);
  });
});

Deno.test("milter quarantine: the message is stored held, with the reason logged", async () => {
  await withMilter("", async (t) => {
    const [sent] = await send(t.port, [{
      from: "sender@example.org",
      to: ["alice@example.test"],
      subject: "quarantine",
    }]);
    const id = queueIdOf(sent!.data);
    const message = await t.mta.queue.get(id);
    assert.equal(message?.held, true);
    const accepted = t.logger.records.find((r) => r.event === "message.accepted");
    assert.match(String(accepted?.fields.held), /milter 127\.0\.0\.1:\d+: looks suspicious/);
    assert.match(String(accepted?.fields.milters), /=quarantine$/);
  });
});

Deno.test("milter refusals: tempfail at MAIL, custom reply at RCPT, reject, tempfail and discard at the end", async () => {
  await withMilter("", async (t) => {
    const sent = await send(t.port, [
      { from: "tempfail@example.org", to: ["alice@example.test"], subject: "x" },
      {
        from: "a@example.org",
        to: ["refused@example.test", "alice@example.test"],
        subject: "reject",
      },
      { from: "a@example.org", to: ["alice@example.test"], subject: "tempfail" },
      { from: "a@example.org", to: ["alice@example.test"], subject: "discard" },
      { from: "a@example.org", to: ["alice@example.test"], subject: "plain" },
    ]);
    assert.equal(
      sent[0]!.mail,
      "451 4.7.1 The content filter cannot check this now, try again later",
    );
    assert.match(
      sent[1]!.rcpt![0]!,
      /^550 5\.7\.1 Refused by the test milter for <refused@example\.test>$/,
    );
    assert.match(sent[1]!.rcpt![1]!, /^250 /);
    assert.equal(sent[1]!.data, "554 5.7.0 Rejected by the test milter: reject");
    assert.equal(
      sent[2]!.data,
      "451 4.7.1 The content filter cannot check this now, try again later",
    );
    assert.match(sent[3]!.data!, /^250 2\.0\.0 Ok: queued as /);
    assert.match(sent[4]!.data!, /^250 2\.0\.0 Ok: queued as /);
    // Only the plain one is stored and delivered; the discarded one is logged.
    const [mail] = await waitForMail(mailbox(t.dir, "alice@example.test"), 1);
    assert.match(new TextDecoder().decode(mail), /Subject: plain/);
    assert.equal(await t.mta.queue.get(queueIdOf(sent[3]!.data)), null);
    assert.ok(t.logger.records.some((r) => r.event === "message.discarded"));
  });
});

Deno.test("a slow milter: default_action applies at its timeout, and another session completes meanwhile", async () => {
  await withMilter(", eom_timeout: 2s", async (t, milter) => {
    const order: string[] = [];
    const slow = send(t.port, [{
      from: "a@example.org",
      to: ["alice@example.test"],
      subject: "slow",
    }])
      .then((r) => (order.push("slow"), r));
    try {
      // The slow message is at its end of message, the milter holding it.
      await waitFor(() =>
        Deno.stat(join(milter.dir, "slow.reached")).then(() => true, () => false)
      );
      const quick = await send(t.port, [{
        from: "b@example.org",
        to: ["bob@example.test"],
        subject: "quick",
      }]);
      order.push("quick");
      assert.match(quick[0]!.data!, /^250 /);
      const [slowSent] = await slow;
      assert.equal(
        slowSent!.data,
        "451 4.7.1 The content filter cannot check this now, try again later",
      );
      assert.deepEqual(order, ["quick", "slow"]);
      const failed = t.logger.records.find((r) => r.event === "milter.failed");
      assert.match(String(failed?.fields.reason), /^timeout/);
    } finally {
      await Deno.writeTextFile(join(milter.dir, "slow.release"), "");
      await slow.catch(() => {});
    }
  });
});

Deno.test("a dead milter: tempfail gives 451 and stores nothing; accept delivers", async () => {
  const port = freePort(); // nobody listens there
  {
    await using t = await startMta(`${DIRECTORY}milters: ["127.0.0.1:${port}"]\n`);
    const [sent] = await send(t.port, [{
      from: "a@example.org",
      to: ["alice@example.test"],
      subject: "x",
    }]);
    assert.equal(sent!.mail, "451 4.7.1 The content filter cannot check this now, try again later");
    assert.equal(await t.mta.queue.count(), 0);
    assert.match(
      String(t.logger.records.find((r) => r.event === "milter.failed")?.fields.reason),
      /^unreachable/,
    );
  }
  {
    await using t = await startMta(
      `${DIRECTORY}milters: [{ address: "127.0.0.1:${port}", default_action: accept }]\n`,
    );
    const [sent] = await send(t.port, [{
      from: "a@example.org",
      to: ["alice@example.test"],
      subject: "x",
    }]);
    assert.match(sent!.data!, /^250 /);
    await waitForMail(mailbox(t.dir, "alice@example.test"), 1);
    const accepted = t.logger.records.find((r) => r.event === "message.accepted");
    assert.match(String(accepted?.fields.milters), /=failed$/);
  }
});

Deno.test("a message over 1 MiB goes to the milter from a 0600 temp file, is stored whole, and the file goes", async () => {
  await withMilter("", async (t) => {
    const line = "0123456789".repeat(7) + "\r\n";
    const repeat = Math.ceil(1.5 * 1024 * 1024 / line.length);
    const [sent] = await send(t.port, [{
      from: "a@example.org",
      to: ["alice@example.test"],
      subject: "addheader",
      body: line,
      repeat,
    }]);
    assert.match(sent!.data!, /^250 /);
    const [mail] = await waitForMail(mailbox(t.dir, "alice@example.test"), 1);
    const text = new TextDecoder().decode(mail);
    assert.match(text, /^X-Milter-Added: yes$/m);
    assert.ok(text.endsWith("\r\n\r\n" + line.repeat(repeat)), "the body arrives whole");
    assert.deepEqual(await Array.fromAsync(Deno.readDir(join(t.dir, "data", "tmp"))), []);
  });
});
