/**
 * Outbound signing end to end: mail from a trusted client, from a
 * submission user and from `tern send` leaves signed with rsa-sha256 and
 * ed25519-sha256 at once, and Debian's dkimpy verifies both signatures of
 * what the next hop received. Third-party mail relayed through tern is not
 * signed.
 */

import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { join } from "node:path";
import { dkimRecordText, parseDkimKey } from "../auth/dkim_keys.ts";
import { sendMail } from "../send/mod.ts";
import { hashPassword } from "../config/password.ts";
import { MemoryLogger } from "../log/logger.ts";
import { Mta } from "../mta/mta.ts";
import { debianPython, python, spawnServe, startMta, tempConfig, tern } from "./_helpers.ts";
import { CERT } from "./_tls.ts";
import { freePort, startReceiver } from "./_relay_fixtures.ts";

interface Keys {
  /** tern.yaml lines for `dkim`. */
  yaml: string;
  /** DNS name to TXT value, for dkimpy's dnsfunc. */
  records: Record<string, string>;
}

async function makeKeys(dir: string): Promise<Keys> {
  const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey
    .export({ type: "pkcs8", format: "pem" }).toString();
  const ed = generateKeyPairSync("ed25519").privateKey
    .export({ type: "pkcs8", format: "pem" }).toString();
  const records: Record<string, string> = {};
  for (const [selector, pem] of [["r2026", rsa], ["e2026", ed]] as const) {
    await Deno.writeTextFile(join(dir, `${selector}.pem`), pem, { mode: 0o600 });
    const key = parseDkimKey(pem, "example.org", selector);
    records[`${selector}._domainkey.example.org.`] = dkimRecordText(key);
  }
  const yaml = `dkim:\n  keys:\n` +
    `    - { domain: example.org, selector: r2026, key: ${join(dir, "r2026.pem")} }\n` +
    `    - { domain: example.org, selector: e2026, key: ${join(dir, "e2026.pem")} }\n`;
  return { yaml, records };
}

/** Verifies every DKIM-Signature with dkimpy; returns one "d s a result" line per signature. */
async function dkimpyVerify(message: string, records: Record<string, string>): Promise<string[]> {
  const script = `
import dkim, json, sys
records = json.loads(sys.argv[1])
msg = sys.stdin.buffer.read()
def dns(name, timeout=5):
    return records.get(name.decode(), "").encode()
d = dkim.DKIM(msg)
sigs = [h for h in d.headers if h[0].lower() == b"dkim-signature"]
for i in range(len(sigs)):
    tags = dkim.util.parse_tag_value(sigs[i][1])
    ok = d.verify(idx=i, dnsfunc=dns)
    print(tags[b"d"].decode(), tags[b"s"].decode(), tags[b"a"].decode(), "pass" if ok else "fail")
`;
  const out = await debianPython(script, [JSON.stringify(records)], message);
  return out.trim().split("\n").filter((l) => l !== "");
}

const MESSAGE = "From: Alice <alice@news.example.org>\r\nTo: <bob@example.net>\r\n" +
  "Subject: signed  and\r\n folded\r\nDate: Sat, 5 Dec 2026 10:00:00 +0000\r\n" +
  "Message-ID: <1@example.org>\r\n\r\nHello,   world  \r\n\r\n\r\n";

async function smtplib(port: number, from: string, message: string): Promise<void> {
  const script = `
import smtplib, sys
with smtplib.SMTP("127.0.0.1", int(sys.argv[1])) as s:
    s.sendmail(sys.argv[2], ["bob@example.net"], sys.stdin.buffer.read())
`;
  await debianPython(script, [String(port), from], message);
}

async function waitForMessages(receiver: { messages(): Promise<{ data: string }[]> }, n: number) {
  for (let i = 0; i < 200; i++) {
    const got = await receiver.messages();
    if (got.length >= n) return got;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("the next hop received nothing");
}

Deno.test("mail from a trusted client leaves with rsa and ed25519 signatures dkimpy verifies", async () => {
  const port = await freePort();
  await using receiver = await startReceiver("127.0.0.1", port);
  const dir = await Deno.makeTempDir();
  try {
    const keys = await makeKeys(dir);
    await using t = await startMta(
      `relay: { routes: { example.net: "127.0.0.1:${port}" } }\n${keys.yaml}`,
    );
    await smtplib(t.port, "alice@news.example.org", MESSAGE);
    const [got] = await waitForMessages(receiver, 1);
    const verdicts = await dkimpyVerify(got!.data, keys.records);
    assert.deepEqual(verdicts.sort(), [
      "example.org e2026 ed25519-sha256 pass",
      "example.org r2026 rsa-sha256 pass",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("third-party mail relayed for a trusted client is not signed for another domain", async () => {
  const port = await freePort();
  await using receiver = await startReceiver("127.0.0.1", port);
  const dir = await Deno.makeTempDir();
  try {
    const keys = await makeKeys(dir);
    await using t = await startMta(
      `relay: { routes: { example.net: "127.0.0.1:${port}" } }\n${keys.yaml}`,
    );
    await smtplib(t.port, "x@other.test", MESSAGE.replace("news.example.org", "other.test"));
    const [got] = await waitForMessages(receiver, 1);
    assert.doesNotMatch(got!.data, /^DKIM-Signature:/im);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("tern send signs what it queues; dkimpy verifies it at the next hop", async () => {
  const port = await freePort();
  await using receiver = await startReceiver("127.0.0.1", port);
  const dir = await Deno.makeTempDir();
  try {
    const keys = await makeKeys(dir);
    const config = join(dir, "tern.yaml");
    await Deno.writeTextFile(
      config,
      `hostname: mx.example.test\ndata_dir: ${join(dir, "data")}\n` +
        `listeners: [{ address: 127.0.0.1, port: ${await freePort()}, mode: mx }]\n` +
        `relay: { routes: { example.net: "127.0.0.1:${port}" } }\n${keys.yaml}`,
    );
    // No server running: tern send writes the store; a server started after delivers it.
    const sent = await tern(
      ["send", "--config", config, "-f", "alice@news.example.org", "bob@example.net"],
      MESSAGE.replace("Message-ID: <1@example.org>\r\n", ""),
    );
    assert.equal(sent.code, 0, sent.stderr);
    const serve = await spawnServe(config);
    try {
      // With the server running, tern send hands the message to it (the pickup socket).
      const again = await tern(
        ["send", "--config", config, "-f", "alice@news.example.org", "bob@example.net"],
        MESSAGE,
      );
      assert.equal(again.code, 0, again.stderr);
      const got = await waitForMessages(receiver, 2);
      assert.match(got[0]!.data + got[1]!.data, /^Message-ID: <(?!1@)/im); // completed before signing
      for (const message of got) {
        const verdicts = await dkimpyVerify(message.data, keys.records);
        assert.equal(verdicts.length, 2);
        assert.ok(verdicts.every((v) => v.endsWith(" pass")), verdicts.join("; "));
      }
    } finally {
      await serve.stop();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sendMail signs with the same code: dkimpy verifies both signatures", async () => {
  const port = await freePort();
  await using receiver = await startReceiver("127.0.0.1", port);
  const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey
    .export({ type: "pkcs8", format: "pem" }).toString();
  const ed = generateKeyPairSync("ed25519").privateKey
    .export({ type: "pkcs8", format: "pem" }).toString();
  await sendMail(
    { from: "alice@example.org", to: "bob@example.net", subject: "Signed", text: "Hello" },
    {
      smarthost: `127.0.0.1:${port}`,
      tls: "none",
      hostname: "client.example.org",
      dkim: [
        { domain: "example.org", selector: "r1", privateKey: rsa },
        { domain: "example.org", selector: "e1", privateKey: ed },
      ],
    },
  );
  const [got] = await waitForMessages(receiver, 1);
  const records = {
    "r1._domainkey.example.org.": dkimRecordText(parseDkimKey(rsa, "example.org", "r1")),
    "e1._domainkey.example.org.": dkimRecordText(parseDkimKey(ed, "example.org", "e1")),
  };
  assert.deepEqual((await dkimpyVerify(got!.data, records)).sort(), [
    "example.org e1 ed25519-sha256 pass",
    "example.org r1 rsa-sha256 pass",
  ]);
  await assert.rejects(
    sendMail({ from: "a@example.org", to: "b@example.net", text: "x" }, {
      smarthost: `127.0.0.1:${port}`,
      tls: "none",
      dkim: { domain: "example.org", selector: "bad", privateKey: "not a key" },
    }),
    TypeError,
  );
});

Deno.test("submission: a message without Message-ID and Date gets both, then signatures over them", async () => {
  const port = await freePort();
  await using receiver = await startReceiver("127.0.0.1", port);
  const dir = await Deno.makeTempDir();
  try {
    const keys = await makeKeys(dir);
    const password = "battery staple";
    const { dir: tdir, config } = await tempConfig(
      `listeners: [{ address: 127.0.0.1, port: 0, mode: submission }]\n` +
        `tls: { cert: "${CERT.cert}", key: "${CERT.key}" }\n` +
        `local_domains: [example.org]\n` +
        `accounts: { alice@example.org: { password: "${await hashPassword(password)}" } }\n` +
        `relay: { trusted_networks: [], routes: { example.net: "127.0.0.1:${port}" } }\n` +
        keys.yaml,
    );
    const mta = await Mta.start(config, { logger: new MemoryLogger(), pollMs: 200 });
    try {
      await python(
        `
import smtplib, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
ctx.check_hostname = False
with smtplib.SMTP("127.0.0.1", int(sys.argv[1])) as s:
    s.starttls(context=ctx)
    s.login("alice@example.org", sys.argv[3])
    s.sendmail("alice@example.org", ["bob@example.net"],
               b"From: Alice <alice@example.org>\\r\\nTo: bob@example.net\\r\\nSubject: bare\\r\\n\\r\\nHi\\r\\n")
`,
        [String(mta.listeners[0]!.port), CERT.cert, password],
      );
      const [got] = await waitForMessages(receiver, 1);
      const header = got!.data.slice(0, got!.data.indexOf("\r\n\r\n"));
      assert.match(header, /^Message-ID: <[^>]+@mx\.example\.test>$/m);
      assert.match(header, /^Date: \w{3}, \d{2} \w{3} \d{4} /m);
      assert.match(header, /^DKIM-Signature: .*h=[^;]*message-id/ims);
      const verdicts = await dkimpyVerify(got!.data, keys.records);
      assert.deepEqual(verdicts.sort(), [
        "example.org e2026 ed25519-sha256 pass",
        "example.org r2026 rsa-sha256 pass",
      ]);
    } finally {
      await mta.stop(1000);
      await Deno.remove(tdir, { recursive: true });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
