// The LMTP mailbox transport against a real Dovecot (RFC 2033): mail through
// `tern serve` filed by Dovecot's LMTP server and read back over IMAP; an
// unknown user bounced; one reply per recipient after DATA (a user over
// quota deferred while another is delivered); Dovecot down, then back; and
// LMTP over Dovecot's Unix socket with the deliveries metric.

import assert from "node:assert/strict";
import net from "node:net";
import { python, spawnServe, startMta, tempConfig, waitFor } from "./_helpers.ts";
import { DOVECOT_USERS, readInbox, startDovecot } from "./_dovecot.ts";
import { registry } from "../metrics/tern.ts";
import { MemoryLogger } from "../log/logger.ts";
import { LmtpTransport } from "../mta/lmtp_transport.ts";

const [ALICE, BOB] = DOVECOT_USERS;

/** Sends one message with smtplib; returns smtplib's refusals (empty: all taken). */
function send(port: number, from: string, to: string[], body: string): Promise<string> {
  return python(
    `
import smtplib, sys, json
with smtplib.SMTP("127.0.0.1", int(sys.argv[1])) as s:
    print(json.dumps(s.sendmail(sys.argv[2], json.loads(sys.argv[3]), sys.argv[4].encode())))
`,
    [String(port), from, JSON.stringify(to), body],
  );
}

function message(subject: string, text: string): string {
  return `From: sender@remote.test\r\nTo: alice@example.test\r\nSubject: ${subject}\r\n` +
    `Message-ID: <${subject}@remote.test>\r\n\r\n${text}`;
}

/** The log lines of one event for one recipient. */
function lines(log: string, event: string, rcpt: string): string[] {
  return log.split("\n").filter((l) => l.includes(event) && l.includes(`rcpt=<${rcpt}>`));
}

Deno.test("LMTP transport: tern serve hands local mail to a real Dovecot", async (t) => {
  await using dovecot = await startDovecot();
  const { dir, file } = await tempConfig(
    `listeners: [{ address: 127.0.0.1, port: 0, mode: mx }]
local_domains: [example.test]
mailbox_transport: "lmtp:127.0.0.1:${dovecot.lmtpPort}"
queue: { retry: [1s] }
`,
  );
  const serve = await spawnServe(file);
  try {
    await t.step("a message is filed by Dovecot and read back over IMAP intact", async () => {
      const text =
        "Hello over LMTP.\r\n.A line that starts with a dot\r\n..two dots\r\nLast line\r\n";
      assert.equal(
        await send(serve.port, "sender@remote.test", [ALICE!.address], message("m1", text)),
        "{}\n",
      );
      await waitFor(() => lines(serve.log(), "delivery.sent", ALICE!.address).length > 0, 15_000);
      const sent = lines(serve.log(), "delivery.sent", ALICE!.address)[0]!;
      assert.match(sent, /transport=lmtp/);
      assert.match(sent, new RegExp(`next_hop=lmtp:127\\.0\\.0\\.1:${dovecot.lmtpPort}`));
      const inbox = await readInbox(dovecot, ALICE!);
      assert.equal(inbox.length, 1);
      const got = inbox[0]!;
      assert.ok(got.endsWith(text), `content intact:\n${got}`);
      // Dovecot writes Return-Path and Delivered-To; tern must not add its own too.
      assert.equal(got.match(/^Return-Path:/gm)?.length, 1, got);
      assert.match(got, /^Return-Path: <sender@remote\.test>$/m);
      assert.equal(got.match(/^Delivered-To:/gm)?.length, 1, got);
      assert.match(got, /^Received: from [^\r]*\r\n\tby mx\.example\.test/m); // tern's own line
    });

    await t.step("a user Dovecot does not know is bounced to the sender", async () => {
      await send(serve.port, BOB!.address, ["nobody@example.test"], message("m2", "Hi\r\n"));
      await waitFor(
        () => lines(serve.log(), "delivery.bounced", "nobody@example.test").length > 0,
        15_000,
      );
      const bounced = lines(serve.log(), "delivery.bounced", "nobody@example.test")[0]!;
      assert.match(bounced, /status=5\.1\.1/);
      assert.match(bounced, /transport=lmtp/);
      // The DSN goes to bob, over LMTP too.
      const dsn = await waitFor(async () => {
        const inbox = await readInbox(dovecot, BOB!);
        return inbox.find((m) => m.includes("nobody@example.test"));
      }, 15_000);
      assert.match(dsn, /Action: failed/);
      assert.match(dsn, /Status: 5\.1\.1/);
    });

    await t.step("each recipient gets its own reply after DATA (RFC 2033 §4.2)", async () => {
      await send(
        serve.port,
        "sender@remote.test",
        [ALICE!.address, "full@example.test"],
        message("m3", "Two\r\n"),
      );
      await waitFor(
        () => lines(serve.log(), "delivery.deferred", "full@example.test").length > 0,
        15_000,
      );
      await waitFor(() => lines(serve.log(), "delivery.sent", ALICE!.address).length >= 2, 15_000);
      assert.match(
        lines(serve.log(), "delivery.deferred", "full@example.test")[0]!,
        /status=4\.2\.2/,
      );
      const inbox = await readInbox(dovecot, ALICE!);
      assert.ok(inbox.some((m) => m.includes("Subject: m3")), "alice got the message");
    });

    await t.step(
      "Dovecot down: deferred with a 4xx reason, delivered once it is back",
      async () => {
        const sentBefore = lines(serve.log(), "delivery.sent", BOB!.address).length;
        await dovecot.stop();
        await send(serve.port, "sender@remote.test", [BOB!.address], message("m4", "Later\r\n"));
        await waitFor(
          () => lines(serve.log(), "delivery.deferred", BOB!.address).length > 0,
          15_000,
        );
        const deferred = lines(serve.log(), "delivery.deferred", BOB!.address)[0]!;
        assert.match(deferred, /status=4\.4\.1/);
        assert.match(deferred, /Cannot connect/);
        await dovecot.start();
        await waitFor(
          () => lines(serve.log(), "delivery.sent", BOB!.address).length > sentBefore,
          20_000,
        );
        const inbox = await readInbox(dovecot, BOB!);
        assert.ok(inbox.some((m) => m.includes("Subject: m4")));
      },
    );
  } finally {
    await serve.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("LMTP transport over Dovecot's Unix socket, counted as transport=lmtp", async () => {
  await using dovecot = await startDovecot();
  await using tern = await startMta(
    `local_domains: [example.test]\nmailbox_transport: "lmtp:${dovecot.lmtpSocket}"\n`,
  );
  const metric = async () => {
    const m = /tern_deliveries_total\{transport="lmtp",result="sent"\} (\d+)/.exec(
      await registry.render(),
    );
    return Number(m?.[1] ?? -1);
  };
  const before = await metric();
  for (const subject of ["u1", "u2"]) {
    await send(
      tern.port,
      "sender@remote.test",
      [ALICE!.address],
      message(subject, "Via the socket\r\n"),
    );
  }
  await waitFor(
    () =>
      tern.logger.records.filter((r) =>
        r.event === "delivery.sent" && r.fields.transport === "lmtp"
      )
        .length === 2,
    15_000,
  );
  const sent = tern.logger.records.find((r) => r.event === "delivery.sent")!;
  assert.equal(sent.fields.next_hop, `lmtp:${dovecot.lmtpSocket}`);
  assert.equal(await metric(), before + 2);
  // One connection for both messages: the second reused it after an RSET.
  const connects = (await dovecot.log()).match(/lmtp\(\d+\): Info: Connect from local/g) ?? [];
  assert.equal(connects.length, 1, await dovecot.log());
  const inbox = await readInbox(dovecot, ALICE!);
  assert.deepEqual(inbox.map((m) => /Subject: (\w+)/.exec(m)?.[1]).sort(), ["u1", "u2"]);
});

Deno.test("LMTP transport to [::1]:port, one reply per recipient", async () => {
  await using dovecot = await startDovecot();
  const logger = new MemoryLogger();
  const lmtp = new LmtpTransport({
    endpoint: () => ({ host: "::1", port: dovecot.lmtpPort }),
    hostname: "mx.example.test",
    logger,
  });
  const recipient = (address: string) => ({
    address,
    originalRecipient: address,
    mailbox: address,
    status: "queued" as const,
    attempts: 0,
    lastAttempt: null,
    lastReply: null,
  });
  const content = new TextEncoder().encode("Subject: v6\r\n\r\nOver IPv6\r\n");
  const message = {
    queueId: "V6TEST",
    envelope: {
      reversePath: "sender@remote.test",
      forwardPaths: [ALICE!.address, "nobody@example.test", "full@example.test"],
      body: "8BITMIME" as const,
      smtputf8: false,
    },
    recipients: [ALICE!.address, "nobody@example.test", "full@example.test"].map(recipient),
    size: content.length,
    arrival: Date.now(),
    nextAttempt: Date.now(),
    held: false,
    clientAddress: "::1",
  };
  try {
    const outcomes = await lmtp.deliver(
      { message },
      [0, 1, 2],
      () => ReadableStream.from([content]),
    );
    assert.deepEqual(outcomes.map((o) => [o.index, o.status, o.reply.enhancedStatus]), [
      [0, "sent", "2.0.0"],
      [1, "bounced", "5.1.1"],
      [2, "deferred", "4.2.2"],
    ]);
    assert.equal(logger.records[0]!.fields.next_hop, `lmtp:[::1]:${dovecot.lmtpPort}`);
  } finally {
    await lmtp.close();
  }
  const inbox = await readInbox(dovecot, ALICE!);
  assert.ok(inbox[0]!.endsWith("Over IPv6\r\n"));
});

/** An LMTP peer that files the first recipient, then drops the line before the second reply. */
async function droppingPeer(): Promise<net.Server & { port: number }> {
  const server = net.createServer((socket) => {
    socket.setEncoding("utf8");
    socket.write("220 dropping LMTP\r\n");
    let buffer = "";
    let inData = false;
    socket.on("data", (chunk: string) => {
      buffer += chunk;
      let lf: number;
      while ((lf = buffer.indexOf("\r\n")) >= 0) {
        const line = buffer.slice(0, lf);
        buffer = buffer.slice(lf + 2);
        if (inData) {
          if (line !== ".") continue;
          socket.end("250 2.0.0 <alice@example.test> Saved\r\n"); // and no second reply
          return;
        }
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === "LHLO") socket.write("250-dropping\r\n250 ENHANCEDSTATUSCODES\r\n");
        else if (verb === "DATA") {
          inData = true;
          socket.write("354 OK\r\n");
        } else socket.write("250 2.0.0 OK\r\n");
      }
    });
    socket.on("error", () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return Object.assign(server, { port: (server.address() as net.AddressInfo).port });
}

Deno.test("LMTP transport: a line lost after one reply retries only the recipients without one", async () => {
  const peer = await droppingPeer();
  const logger = new MemoryLogger();
  const lmtp = new LmtpTransport({
    endpoint: () => ({ host: "127.0.0.1", port: peer.port }),
    hostname: "mx.example.test",
    logger,
  });
  const content = new TextEncoder().encode("Subject: x\r\n\r\nx\r\n");
  const addresses = ["alice@example.test", "bob@example.test"];
  const message = {
    queueId: "DROP1",
    envelope: {
      reversePath: "sender@remote.test",
      forwardPaths: addresses,
      body: "7BIT" as const,
      smtputf8: false,
    },
    recipients: addresses.map((address) => ({
      address,
      originalRecipient: address,
      mailbox: address,
      status: "queued" as const,
      attempts: 0,
      lastAttempt: null,
      lastReply: null,
    })),
    size: content.length,
    arrival: Date.now(),
    nextAttempt: Date.now(),
    held: false,
    clientAddress: "127.0.0.1",
  };
  try {
    const outcomes = await lmtp.deliver({ message, content }, [0, 1], () => {
      throw new Error("content is in memory");
    });
    assert.deepEqual(outcomes.map((o) => [o.status, o.reply.enhancedStatus]), [
      ["sent", "2.0.0"], // filed: never sent again
      ["deferred", "4.4.2"],
    ]);
    assert.match(outcomes[1]!.reply.text, /LMTP server 127\.0\.0\.1:\d+: Connection closed/);
  } finally {
    await lmtp.close();
    await new Promise<void>((resolve) => peer.close(() => resolve()));
  }
});
