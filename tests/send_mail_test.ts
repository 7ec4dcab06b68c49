// sendMail() against real peers on loopback: aiosmtpd requiring STARTTLS and
// AUTH, a tern SmtpServer with implicit TLS on port 465, tern itself as a
// submission smarthost, and direct delivery by MX through dnsmasq.

import assert from "node:assert/strict";
import { join } from "node:path";
import tls from "node:tls";
import { hashPassword } from "../config/password.ts";
import { MemoryLogger } from "../log/logger.ts";
import { Mta } from "../mta/mta.ts";
import { SendError, sendMail } from "../send/mod.ts";
import type { Envelope } from "../smtp/envelope.ts";
import { queuedReply, REPLIES } from "../smtp/reply.ts";
import { type ConnectionInfo, SmtpServer } from "../smtp/server.ts";
import { tempConfig, waitForMail } from "./_helpers.ts";
import { freePort, startDnsmasq, startReceiver } from "./_relay_fixtures.ts";
import { CERT } from "./_tls.ts";

const PYTHON = "/usr/bin/python3"; // Debian's, where python3-aiosmtpd is installed
const latin1 = new TextDecoder("latin1");

/** The header block of a message: everything before the first empty line. */
function headerOf(content: string): string {
  return content.slice(0, content.indexOf("\r\n\r\n") + 2);
}

// --- aiosmtpd: STARTTLS required, then AUTH ---------------------------------

const AIOSMTPD = `
import asyncio, base64, json, ssl, sys
from aiosmtpd.smtp import SMTP, AuthResult

class Recorder:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("nobody@"):
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        print(json.dumps({
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "content": base64.b64encode(envelope.original_content).decode(),
            "tls": session.ssl is not None,
            "authenticated": bool(session.authenticated),
        }), flush=True)
        return "250 2.0.0 OK: stored"

def authenticator(server, session, envelope, mechanism, auth_data):
    print(json.dumps({"mechanism": mechanism, "login": auth_data.login.decode()}), flush=True)
    ok = auth_data.login == b"alice" and auth_data.password == b"s3cret"
    return AuthResult(success=ok, handled=False, auth_data=auth_data)

async def main():
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(sys.argv[1], sys.argv[2])
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(Recorder(), tls_context=context, require_starttls=True,
                     auth_required=True, auth_require_tls=True,
                     authenticator=authenticator, hostname="aiosmtpd.test"),
        "127.0.0.1", 0)
    print("PORT", server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()

asyncio.run(main())
`;

interface AiosmtpdRecord {
  from?: string;
  to?: string[];
  content?: string;
  tls?: boolean;
  authenticated?: boolean;
  login?: string;
  mechanism?: string;
}

/** aiosmtpd in a child process; its records (messages, AUTH mechanisms) in order. */
async function startAiosmtpd() {
  const child = new Deno.Command(PYTHON, {
    args: ["-c", AIOSMTPD, CERT.cert, CERT.key],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const records: AiosmtpdRecord[] = [];
  let resolvePort!: (port: number) => void;
  const portReady = new Promise<number>((resolve) => (resolvePort = resolve));
  const readOut = (async () => {
    let buffer = "";
    for await (const text of child.stdout.pipeThrough(new TextDecoderStream())) {
      buffer += text;
      let nl: number;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        if (line.startsWith("PORT ")) resolvePort(Number(line.slice(5)));
        else if (line.startsWith("{")) records.push(JSON.parse(line));
      }
    }
    resolvePort(0);
  })();
  const stderr = new Response(child.stderr).text();
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // already gone
    }
    await child.status;
    await Promise.all([readOut, stderr]);
  };
  const port = await portReady;
  if (port === 0) {
    await stop();
    throw new Error(`aiosmtpd did not start: ${await stderr}`);
  }
  return { port, records, [Symbol.asyncDispose]: stop };
}

Deno.test("sendMail: STARTTLS and AUTH PLAIN at an aiosmtpd smarthost, a refusal as a value, Bcc in the envelope only", async () => {
  await using smtpd = await startAiosmtpd();
  const [user, pass] = ["alice", "s3cret"];
  const result = await sendMail(
    {
      from: { name: "Alice", address: "alice@example.org" },
      to: ["bob@example.net", "nobody@example.net"],
      cc: "carol@example.net",
      bcc: "dave@example.net",
      subject: "Hi",
      text: "Hello",
    },
    {
      smarthost: `127.0.0.1:${smtpd.port}`,
      auth: { user, pass },
      caCerts: [CERT.pem],
      hostname: "client.example.org",
    },
  );
  assert.deepEqual(result.accepted, ["bob@example.net", "carol@example.net", "dave@example.net"]);
  assert.equal(result.rejected.length, 1);
  const refused = result.rejected[0]!;
  assert.equal(refused.address, "nobody@example.net");
  assert.equal(refused.reply.code, 550);
  assert.equal(refused.reply.enhancedStatus, "5.1.1");
  assert.equal(refused.explanation, "RFC 3463 §3.2 550 5.1.1: no such mailbox here");
  assert.equal(result.reply?.code, 250);
  assert.match(result.messageId, /^[^<>@]+@client\.example\.org$/);

  const message = smtpd.records.find((r) => r.content !== undefined)!;
  assert.equal(message.tls, true);
  assert.equal(message.authenticated, true);
  const logins = smtpd.records.filter((r) => r.mechanism !== undefined);
  assert.deepEqual(logins.map((r) => [r.mechanism, r.login]), [["PLAIN", "alice"]]);
  assert.equal(message.from, "alice@example.org");
  assert.deepEqual(message.to, ["bob@example.net", "carol@example.net", "dave@example.net"]);
  const header = headerOf(
    latin1.decode(Uint8Array.from(atob(message.content!), (c) => c.charCodeAt(0))),
  );
  assert.match(header, /^To: .*bob@example\.net/m);
  assert.match(header, /^Cc: .*carol@example\.net/m);
  assert.match(header, new RegExp(`^Message-ID: <${result.messageId}>\r$`, "mi"));
  assert.doesNotMatch(header, /^Bcc:/mi);
  assert.doesNotMatch(header, /dave/);
});

Deno.test("sendMail: the five lines of the README, through the package's own name", async () => {
  await using smtpd = await startAiosmtpd();
  const [user, pass] = ["alice", "s3cret"];
  // As a program using the package writes it; only the smarthost and the test CA differ.
  const { sendMail } = await import("@tern/mta");
  await sendMail({ from: "me@example.org", to: "you@example.net", subject: "Hi", text: "Hello" }, {
    smarthost: `127.0.0.1:${smtpd.port}`,
    auth: { user, pass },
    caCerts: [CERT.pem],
  });
  assert.deepEqual(smtpd.records.find((r) => r.content !== undefined)?.to, ["you@example.net"]);
});

Deno.test("sendMail: a refused login, an unverifiable certificate and a closed port throw SendError naming the host", async () => {
  await using smtpd = await startAiosmtpd();
  const mail = { from: "alice@example.org", to: "bob@example.net", subject: "Hi", text: "Hello" };
  const smarthost = `127.0.0.1:${smtpd.port}`;

  const badLogin = await sendMail(mail, {
    smarthost,
    auth: { user: "alice", pass: "wrong" },
    caCerts: [CERT.pem],
  }).catch((e: unknown) => e);
  assert.ok(badLogin instanceof SendError, String(badLogin));
  assert.equal(badLogin.failures.length, 1);
  assert.equal(badLogin.failures[0]!.host, smarthost);
  assert.match(badLogin.failures[0]!.reason, /refused AUTH: 535/);
  assert.equal(badLogin.failures[0]!.reply?.code, 535);

  // "required" verifies the certificate: a self-signed one not in caCerts fails the handshake.
  const untrusted = await sendMail(mail, { smarthost, auth: { user: "alice", pass: "s3cret" } })
    .catch((e: unknown) => e);
  assert.ok(untrusted instanceof SendError, String(untrusted));
  assert.match(untrusted.message, /TLS handshake .* failed/);
  // ...unless told to accept any certificate.
  const skipped = await sendMail(mail, {
    smarthost,
    auth: { user: "alice", pass: "s3cret" },
    insecureSkipVerify: true,
  });
  assert.deepEqual(skipped.accepted, ["bob@example.net"]);
  assert.equal(smtpd.records.filter((r) => r.content !== undefined).length, 1);

  const closed = await freePort();
  const refused = await sendMail(mail, { smarthost: `127.0.0.1:${closed}` }).catch((e) => e);
  assert.ok(refused instanceof SendError);
  assert.match(
    refused.message,
    new RegExp(`^Cannot send: 127\\.0\\.0\\.1:${closed}: Cannot connect`),
  );

  await assert.rejects(sendMail(mail, { smarthost: "smtp.example.org" }), TypeError);
});

// --- implicit TLS on port 465 -------------------------------------------------

Deno.test("sendMail: port 465 means implicit TLS (RFC 8314), the certificate verified", async () => {
  const seen: { envelope: Envelope; connection: ConnectionInfo; content: Uint8Array[] }[] = [];
  const server = new SmtpServer({
    hostname: "smtps.example.test",
    address: "127.0.0.1",
    port: 465,
    implicitTls: true,
    tls: {
      secureContext: tls.createSecureContext({
        key: await Deno.readTextFile(CERT.key),
        cert: CERT.pem,
      }),
    },
    handlers: {
      recipient: () => REPLIES.recipientOk,
      open: (envelope, connection) => {
        const content: Uint8Array[] = [];
        seen.push({ envelope, connection, content });
        return Promise.resolve({
          write: (chunk) => {
            content.push(chunk.slice());
            return Promise.resolve();
          },
          commit: () => Promise.resolve(queuedReply("S1")),
          abort: () => Promise.resolve(),
        });
      },
    },
  });
  await server.listen();
  try {
    const result = await sendMail(
      { from: "alice@example.org", to: "bob@example.test", subject: "Hi", text: "Hello" },
      {
        smarthost: "127.0.0.1:465",
        caCerts: [CERT.pem],
        hostname: "client.example.org",
        timeoutMs: 5000,
      },
    );
    assert.deepEqual(result.accepted, ["bob@example.test"]);
    assert.equal(seen.length, 1);
    assert.notEqual(seen[0]!.connection.tls, null);
    // Without the test CA the handshake fails: the certificate is checked.
    const untrusted = await sendMail(
      { from: "alice@example.org", to: "bob@example.test", text: "Hello" },
      { smarthost: "127.0.0.1:465" },
    ).catch((e: unknown) => e);
    assert.ok(untrusted instanceof SendError, String(untrusted));
  } finally {
    await server.close(1000);
  }
});

// --- tern itself as the smarthost ----------------------------------------------

Deno.test("sendMail: tern's submission listener as smarthost, STARTTLS, AUTH, Maildir delivery", async () => {
  const hash = await hashPassword("tern pass");
  const { dir, config } = await tempConfig(`
listeners:
  - { address: 127.0.0.1, port: 0, mode: submission }
tls: { cert: "${CERT.cert}", key: "${CERT.key}" }
local_domains: [example.test]
accounts:
  alice@example.test: { password: "${hash}" }
  bob@example.test: {}
  carol@example.test: {}
limits: { greeting_delay: 0s }
`);
  const mta = await Mta.start(config, { logger: new MemoryLogger(), pollMs: 200 });
  try {
    const result = await sendMail(
      {
        from: "alice@example.test",
        to: ["bob@example.test", "nobody@example.test"],
        bcc: "carol@example.test",
        subject: "Via tern",
        text: "Hello",
      },
      {
        smarthost: `127.0.0.1:${mta.listeners[0]!.port}`,
        auth: { user: "alice@example.test", pass: "tern pass" },
        caCerts: [CERT.pem],
        hostname: "client.example.test",
      },
    );
    assert.deepEqual(result.accepted, ["bob@example.test", "carol@example.test"]);
    assert.equal(result.rejected[0]?.address, "nobody@example.test");
    assert.equal(result.rejected[0]?.reply.code, 550);
    assert.match(result.rejected[0]?.explanation ?? "", /^RFC \d+ §[\d.]+ 550/);
    const [bob] = await waitForMail(join(dir, "data", "mail", "example.test", "bob"), 1);
    const [carol] = await waitForMail(join(dir, "data", "mail", "example.test", "carol"), 1);
    for (const delivered of [bob!, carol!]) {
      const text = latin1.decode(delivered);
      assert.match(text, /ESMTPSA/); // RFC 3848: received over TLS, authenticated
      assert.match(text, new RegExp(`^Message-ID: <${result.messageId}>\r$`, "mi"));
      // What tern added on delivery (Delivered-To, Received) comes before the message's own From.
      const own = headerOf(text.slice(text.indexOf("\r\nFrom:")));
      assert.doesNotMatch(own, /^Bcc:|carol/mi);
    }
  } finally {
    await mta.stop(1000);
    await Deno.remove(dir, { recursive: true });
  }
});

// --- direct delivery by MX ---------------------------------------------------------

Deno.test("sendMail: direct delivery by MX through dnsmasq, per domain, the next MX when one is down", async () => {
  const port = await freePort();
  await using dns = await startDnsmasq([
    "--mx-host=example.net,mx1.example.net,10",
    "--host-record=mx1.example.net,127.0.0.2",
    // example.org's first MX does not answer; its second does.
    "--mx-host=example.org,dead.example.org,10",
    "--mx-host=example.org,mx2.example.org,20",
    "--host-record=dead.example.org,127.0.0.9",
    "--host-record=mx2.example.org,127.0.0.3",
    "--mx-host=nomail.example,.,0",
    "--mx-host=down.example,dead.example.org,10",
  ], ["example.net", "example.org", "nomail.example", "down.example"]);
  await using one = await startReceiver("127.0.0.2", port);
  await using two = await startReceiver("127.0.0.3", port);
  const options = {
    nameservers: [dns.nameserver],
    mxPort: port,
    hostname: "client.example.test",
    timeoutMs: 5000,
  };
  const result = await sendMail({
    from: "alice@example.test",
    to: ["someone@example.net", "fail550@example.net", "other@example.org", "x@nomail.example"],
    bcc: "hidden@example.org",
    subject: "Direct",
    text: "Hello",
  }, options);
  assert.deepEqual(result.accepted.sort(), [
    "hidden@example.org",
    "other@example.org",
    "someone@example.net",
  ]);
  const byAddress = new Map(result.rejected.map((r) => [r.address, r]));
  assert.equal(byAddress.get("fail550@example.net")?.reply.code, 550);
  assert.equal(
    byAddress.get("fail550@example.net")?.explanation,
    "RFC 3463 §3.2 550 5.1.1: no such mailbox here",
  );
  // RFC 7505: a null MX refuses mail; that is a refusal, not an exception.
  assert.equal(byAddress.get("x@nomail.example")?.reply.code, 556);
  assert.equal(byAddress.get("x@nomail.example")?.reply.enhancedStatus, "5.1.10");

  const [net] = await one.messages();
  assert.deepEqual(net?.to, ["someone@example.net"]);
  const [org] = await two.messages();
  assert.deepEqual(org?.to.sort(), ["hidden@example.org", "other@example.org"]);
  assert.doesNotMatch(headerOf(org!.data), /^Bcc:|hidden/mi);

  // A domain whose only MX does not answer: nothing reached a server, so an exception.
  const down = await sendMail(
    { from: "alice@example.test", to: "someone@down.example", text: "Hello" },
    { ...options, timeoutMs: 2000 },
  ).catch((e: unknown) => e);
  assert.ok(down instanceof SendError, String(down));
  assert.match(down.failures[0]!.host, /^dead\.example\.org\[127\.0\.0\.9\]:\d+$/);
});
