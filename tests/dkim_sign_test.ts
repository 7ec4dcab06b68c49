// tern's DKIM signatures checked by an independent verifier: dkimpy (Debian's
// python3-dkim, with python3-nacl for ed25519), given our public keys as its
// DNS answers.

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { generateKeyPairSync } from "node:crypto";
import { type DkimKey, dkimRecordText, parseDkimKey } from "../auth/dkim_keys.ts";
import { DkimSigner } from "../auth/dkim_sign.ts";

const PYTHON = "/usr/bin/python3";

/**
 * Verifies every DKIM-Signature of each message with dkimpy; the DNS answers
 * come from `records` (name with a final dot: TXT text). Prints, per message,
 * the list of results (true, or the reason it failed).
 */
const VERIFY_SCRIPT = `
import base64, json, sys
try:
    import dkim
    import nacl  # dkimpy needs it for ed25519-sha256
except ImportError as e:
    sys.exit("python3-dkim and python3-nacl are needed (apt-get install python3-dkim python3-nacl): %s" % e)
job = json.load(sys.stdin)
records = {k.encode(): v.encode() for k, v in job["records"].items()}
def dnsfunc(name, timeout=5):
    return records.get(name)
out = []
for m in job["messages"]:
    msg = base64.b64decode(m)
    headers, _ = dkim.rfc822_parse(msg)
    count = len([h for h in headers if h[0].lower() == b"dkim-signature"])
    results = []
    for i in range(count):
        d = dkim.DKIM(msg, minkey=1024)
        try:
            ok = d.verify(idx=i, dnsfunc=dnsfunc)
            results.append(True if ok else "fail")
        except dkim.DKIMException as e:
            results.append("error: %s" % e)
    out.append(results)
print(json.dumps(out))
`;

async function dkimpyVerify(
  keys: readonly DkimKey[],
  messages: readonly Uint8Array[],
): Promise<(true | string)[][]> {
  const records: Record<string, string> = {};
  for (const key of keys) {
    records[`${key.selector}._domainkey.${key.domain}.`] = dkimRecordText(key);
  }
  const job = JSON.stringify({
    records,
    messages: messages.map((m) => Buffer.from(m).toString("base64")),
  });
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(PYTHON, {
      args: ["-c", VERIFY_SCRIPT],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (error: unknown) {
    throw new Error(`${PYTHON} is needed to run dkimpy (apt-get install python3-dkim): ${error}`);
  }
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(job));
  await writer.close();
  const out = await child.output();
  const stderr = new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`dkimpy failed: ${stderr}`);
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

function pem(type: "rsa" | "ed25519"): string {
  const pair = type === "rsa"
    ? generateKeyPairSync("rsa", { modulusLength: 2048 })
    : generateKeyPairSync("ed25519");
  return pair.privateKey.export({ type: "pkcs8", format: "pem" }).toString();
}

const RSA = parseDkimKey(pem("rsa"), "example.test", "r2026");
const ED = parseDkimKey(pem("ed25519"), "example.test", "e2026");
const RSA_ONLY = parseDkimKey(pem("rsa"), "rsa.test", "r1");
const ED_ONLY = parseDkimKey(pem("ed25519"), "ed.test", "e1");
const ALL = [RSA, ED, RSA_ONLY, ED_ONLY];

/** Signs a message (a binary string) fed in chunks of `chunkSize`, and returns the signed message. */
function signed(message: string | Uint8Array, added = "", chunkSize = 7): Uint8Array {
  const bytes = typeof message === "string" ? Buffer.from(message, "latin1") : message;
  const signing = new DkimSigner(ALL).begin();
  for (let i = 0; i < bytes.length; i += chunkSize) {
    signing.update(bytes.subarray(i, i + chunkSize));
  }
  const fields = signing.finish(added);
  assert.notEqual(fields, "", "no signature");
  return Buffer.concat([Buffer.from(fields + added, "latin1"), bytes]);
}

const utf8 = (text: string) => Buffer.from(text, "utf8").toString("latin1");

const MESSAGES: Record<string, string> = {
  "folded headers":
    "From: Alice\r\n <alice@example.test>\r\nTo: bob@x.test,\r\n\tcarol@x.test\r\n" +
    "Subject: a subject\r\n  folded twice\r\n\t and thrice\r\n\r\nHello\r\n",
  "trailing white space": "From: alice@example.test  \r\nSubject:   spaced \t \r\n\r\n" +
    "line with spaces   \r\n\tindented\t\r\n  \r\n\r\n",
  "empty body": "From: alice@example.test\r\nSubject: nothing\r\n\r\n",
  "no blank line, no body": "From: alice@example.test\r\nSubject: header only\r\n",
  "no final CRLF": "From: alice@example.test\r\nSubject: cut\r\n\r\nlast line without CRLF",
  "8-bit UTF-8 headers": utf8(
    "From: Zoë Ångström <zoe@example.test>\r\nSubject: Grüße, 日本語\r\nTo: Jörg <j@x.test>\r\n" +
      "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nHéllo wörld\r\n",
  ),
  "rsa-only subdomain": "From: a@mail.rsa.test\r\nSubject: parent key\r\n\r\nbody\r\n",
  "ed25519-only domain": "From: a@ed.test\r\nSubject: ed only\r\n\r\nbody\r\n",
  "two To fields and MIME": "From: a@example.test\r\nTo: one@x.test\r\nTo: two@x.test\r\n" +
    "MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n",
};

Deno.test("dkimpy verifies tern's rsa-sha256 and ed25519-sha256 signatures", async () => {
  const names = Object.keys(MESSAGES);
  const messages = names.map((name) => signed(MESSAGES[name]!));
  const results = await dkimpyVerify(ALL, messages);
  names.forEach((name, i) => {
    const expected = name.includes("only") ? [true] : [true, true];
    assert.deepEqual(results[i], expected, name);
  });
});

Deno.test("dkimpy verifies the fields the MTA adds (Message-ID, Date) as signed", async () => {
  const added = "Message-ID: <added@example.test>\r\nDate: Thu, 1 Jan 2026 00:00:00 +0000\r\n";
  const message = signed("From: a@example.test\r\nSubject: s\r\n\r\nbody\r\n", added);
  const text = Buffer.from(message).toString("latin1");
  assert.match(text, /h=from:from:subject:date:message-id;/);
  const tampered = text.replace("<added@", "<changed@");
  const results = await dkimpyVerify(ALL, [message, Buffer.from(tampered, "latin1")]);
  assert.deepEqual(results[0], [true, true]);
  assert.ok(results[1]?.every((r) => r !== true), "a changed Message-ID must fail");
});

Deno.test("dkimpy verifies a 1 MiB body, and fails a changed body or an added From", async () => {
  const line = "0123456789 abcdefghijklmnopqrstuvwxyz \t ABCDEFGHIJKLMNOPQRSTUVWXYZ  \r\n";
  const body = line.repeat(Math.ceil((1 << 20) / line.length));
  const header = "From: big@example.test\r\nSubject: one megabyte\r\n\r\n";
  const message = signed(header + body, "", 65536);
  const text = Buffer.from(message).toString("latin1");
  const changed = Buffer.from(text.replace(/ABC(?=[^]*$)/, "ABD"), "latin1");
  const extraFrom = Buffer.from(`From: evil@example.test\r\n${text}`, "latin1");
  const results = await dkimpyVerify(ALL, [message, changed, extraFrom]);
  assert.deepEqual(results[0], [true, true]);
  assert.ok(results[1]?.every((r) => r !== true), "a changed body must fail");
  assert.ok(results[2]?.every((r) => r !== true), "a second From must fail (oversigned)");
});
