// The SMTP client over real sockets on 127.0.0.1: against tern's own
// SmtpServer with recording handlers, against Python's aiosmtpd (Debian
// python3-aiosmtpd: DATA only, no PIPELINING, no CHUNKING), with and
// without STARTTLS, and against small scripted servers that misbehave.

import { makeCertificate } from "./_tls.ts";
import { waitFor } from "./_helpers.ts";
import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import {
  SmtpClient,
  type SmtpClientOptions,
  SmtpConnectionError,
  TlsHandshakeError,
} from "../smtp/client.ts";
import type { OutgoingMessage } from "../smtp/client_session.ts";
import type { Envelope } from "../smtp/envelope.ts";
import { queuedReply, REPLIES, type Reply } from "../smtp/reply.ts";
import { SmtpServer } from "../smtp/server.ts";

const PYTHON = "/usr/bin/python3"; // Debian's, where python3-aiosmtpd is installed
const encoder = new TextEncoder();
const latin1 = new TextDecoder("latin1");

// --- helpers ---------------------------------------------------------------------

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/** Content as a stream of `piece`-sized chunks, produced only as it is read. */
function streamOf(bytes: Uint8Array, piece = 16384): () => ReadableStream<Uint8Array> {
  return () => {
    let offset = 0;
    return new ReadableStream<Uint8Array>({
      pull(controller) {
        if (offset >= bytes.length) {
          controller.close();
          return;
        }
        controller.enqueue(bytes.slice(offset, offset + piece));
        offset += piece;
      },
    }, { highWaterMark: 0 });
  };
}

function envelope(recipients: string[], content: Uint8Array, more: Partial<OutgoingMessage> = {}) {
  return {
    reversePath: "alice@client.test",
    recipients: recipients.map((address) => ({ address })),
    body: "7BIT" as const,
    smtputf8: false,
    size: content.length,
    ...more,
  };
}

/** A CRLF-clean message of about `size` octets, with dot lines to stuff. */
function bigMessage(size: number): Uint8Array {
  const lines = ["Subject: big\r\n", "\r\n"];
  let total = lines.join("").length;
  for (let i = 0; total < size; i++) {
    const line = i % 97 === 0
      ? `.${i} a line that starts with a dot\r\n`
      : i % 101 === 0
      ? ".\r\n"
      : `${i} ${"abcdefghijklmnopqrstuvwxyz0123456789".repeat(2)}\r\n`;
    lines.push(line);
    total += line.length;
  }
  return encoder.encode(lines.join(""));
}

interface Recorded {
  envelope: Envelope;
  content: Uint8Array;
  connection: string;
}

/** tern's own SmtpServer on a free port, recording what it accepts. */
async function startTern(options: {
  commit?: (n: number) => Reply;
  maxMessageSize?: number;
} = {}) {
  const messages: Recorded[] = [];
  const commands: string[] = [];
  const connections = new Set<string>();
  const server = new SmtpServer({
    hostname: "mx.tern.test",
    address: "127.0.0.1",
    port: 0,
    ...(options.maxMessageSize === undefined ? {} : { maxMessageSize: options.maxMessageSize }),
    onEvent: (e) => {
      if (e.type === "connect") connections.add(e.connection.id);
      if (e.type === "command") commands.push(e.line);
    },
    handlers: {
      recipient: (path) => path.startsWith("nobody@") ? REPLIES.noSuchUser : REPLIES.recipientOk,
      open: (env, connection) => {
        const parts: Uint8Array[] = [];
        return Promise.resolve({
          write: (chunk) => {
            parts.push(chunk.slice());
            return Promise.resolve();
          },
          commit: () => {
            messages.push({ envelope: env, content: concat(parts), connection: connection.id });
            return Promise.resolve(
              options.commit?.(messages.length) ?? queuedReply(`Q${messages.length}`),
            );
          },
          abort: () => Promise.resolve(),
        });
      },
    },
  });
  const { port } = await server.listen();
  return {
    port,
    messages,
    commands,
    connections,
    async [Symbol.asyncDispose]() {
      await server.close(1000);
    },
  };
}

const AIOSMTPD = `
import asyncio, base64, json, ssl, sys
from aiosmtpd.smtp import SMTP

class Recorder:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("nobody@"):
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        print(json.dumps({
            "from": envelope.mail_from,
            "to": envelope.rcpt_tos,
            "options": envelope.mail_options,
            "content": base64.b64encode(envelope.original_content).decode(),
            "tls": session.ssl is not None,
        }), flush=True)
        return "250 2.0.0 OK: stored"

async def main():
    context = None
    if len(sys.argv) > 2:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(sys.argv[1], sys.argv[2])
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(Recorder(), tls_context=context, enable_SMTPUTF8=True, hostname="aiosmtpd.test"),
        "127.0.0.1", 0)
    print("PORT", server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()

asyncio.run(main())
`;

interface AiosmtpdMessage {
  from: string;
  to: string[];
  options: string[];
  content: string;
  tls: boolean;
}

/** aiosmtpd in a child process, with STARTTLS when given a certificate. */
async function startAiosmtpd(tls?: { cert: string; key: string }) {
  const child = new Deno.Command(PYTHON, {
    args: ["-c", AIOSMTPD, ...(tls ? [tls.cert, tls.key] : [])],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const messages: AiosmtpdMessage[] = [];
  let stderr = "";
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
        else if (line.startsWith("{")) messages.push(JSON.parse(line));
      }
    }
    resolvePort(0);
  })();
  const readErr = (async () => {
    for await (const text of child.stderr.pipeThrough(new TextDecoderStream())) stderr += text;
  })();
  const stop = async () => {
    try {
      child.kill("SIGTERM");
    } catch {
      // already gone
    }
    await child.status;
    await Promise.all([readOut, readErr]);
  };
  const port = await portReady;
  if (port === 0) {
    await stop();
    throw new Error(`aiosmtpd did not start (is python3-aiosmtpd installed?): ${stderr}`);
  }
  return {
    port,
    messages,
    async [Symbol.asyncDispose]() {
      await stop();
    },
  };
}

/** A self-signed certificate for localhost in a temporary directory, removed afterwards. */
async function selfSignedCertificate() {
  const certificate = await makeCertificate();
  return {
    ...certificate,
    async [Symbol.asyncDispose]() {
      await Deno.remove(certificate.dir, { recursive: true });
    },
  };
}

/**
 * A scripted server: sends `greeting`, then answers each command line with
 * what `answer` returns (`null`: say nothing), and records the lines.
 */
async function scriptedServer(
  greeting: string,
  answer: (line: string, socket: net.Socket) => string | null,
) {
  const lines: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    let buffer = "";
    socket.on("data", (data: Uint8Array) => {
      buffer += latin1.decode(data);
      let nl: number;
      while ((nl = buffer.indexOf("\r\n")) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 2);
        lines.push(line);
        const out = answer(line, socket);
        if (out !== null && !socket.destroyed) socket.write(out);
      }
    });
    socket.write(greeting);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    lines,
    async [Symbol.asyncDispose]() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      await Promise.all([...sockets].map((s) =>
        new Promise<void>((resolve) => {
          s.once("close", () => resolve());
          s.destroy();
        })
      ));
      await closed;
    },
  };
}

function connect(port: number, more: Partial<SmtpClientOptions> = {}): Promise<SmtpClient> {
  return SmtpClient.connect({
    host: "127.0.0.1",
    port,
    helo: "client.test",
    commandTimeoutMs: 5000,
    dataInitiationTimeoutMs: 5000,
    dataBlockTimeoutMs: 5000,
    dataTerminationTimeoutMs: 5000,
    ...more,
  });
}

// --- against tern's SmtpServer ---------------------------------------------------

Deno.test("SmtpClient pipelines and sends BDAT to tern byte-exact, with one result per recipient", async () => {
  await using tern = await startTern();
  const trace: string[] = [];
  await using client = await connect(tern.port, { onTrace: (l) => trace.push(l) });
  assert.equal(client.extensions?.chunking, true);
  assert.equal(client.isTls, false); // tern offers no STARTTLS
  const content = encoder.encode(
    "Subject: BDAT\r\n\r\n.a leading dot, not stuffed\r\n.\r\nend\r\n",
  );
  const result = await client.send(
    envelope(["bob@mx.tern.test", "nobody@mx.tern.test", "carol@mx.tern.test"], content),
    streamOf(content, 7),
  );
  assert.deepEqual(result.recipients.map((r) => [r.address, r.reply.code]), [
    ["bob@mx.tern.test", 250],
    ["nobody@mx.tern.test", 550],
    ["carol@mx.tern.test", 250],
  ]);
  assert.equal(result.reply?.lines[0], "Ok: queued as Q1");
  assert.deepEqual(tern.messages[0]!.content, content);
  assert.deepEqual(tern.messages[0]!.envelope.forwardPaths, [
    "bob@mx.tern.test",
    "carol@mx.tern.test",
  ]);
  // One group: MAIL and every RCPT written before the first reply was read.
  const group = trace.slice(
    trace.indexOf("C: MAIL FROM:<alice@client.test> SIZE=" + content.length),
  );
  assert.deepEqual(group.slice(0, 4), [
    `C: MAIL FROM:<alice@client.test> SIZE=${content.length}`,
    "C: RCPT TO:<bob@mx.tern.test>",
    "C: RCPT TO:<nobody@mx.tern.test>",
    "C: RCPT TO:<carol@mx.tern.test>",
  ]);
  assert.ok(trace.includes(`C: BDAT ${content.length} LAST`));
});

Deno.test("SmtpClient sends DATA to tern dot-stuffed, with bare line endings rewritten", async () => {
  await using tern = await startTern();
  await using client = await connect(tern.port, { useChunking: false });
  const content = encoder.encode("Subject: DATA\r\n\r\n.dot\nbare LF\rbare CR\r\n.\r\nlast line");
  const result = await client.send(envelope(["bob@mx.tern.test"], content), streamOf(content, 3));
  assert.equal(result.reply?.code, 250);
  assert.equal(
    latin1.decode(tern.messages[0]!.content),
    "Subject: DATA\r\n\r\n.dot\r\nbare LF\r\nbare CR\r\n.\r\nlast line\r\n",
  );
});

for (const useChunking of [true, false]) {
  Deno.test(`SmtpClient sends a 5 MiB message byte-exact (${useChunking ? "BDAT" : "DATA"})`, async () => {
    await using tern = await startTern();
    await using client = await connect(tern.port, { useChunking });
    const content = bigMessage(5 * 1024 * 1024);
    let opened = 0;
    const result = await client.send(envelope(["bob@mx.tern.test"], content), () => {
      opened++;
      return streamOf(content, 65536)();
    });
    assert.equal(result.reply?.code, 250);
    assert.equal(opened, 1);
    assert.equal(tern.messages[0]!.content.length, content.length);
    assert.deepEqual(tern.messages[0]!.content, content);
  });
}

Deno.test("SmtpClient gives a 451 final reply to the accepted recipients and stays usable", async () => {
  await using tern = await startTern({
    commit: (n) => (n === 1 ? REPLIES.storageFailed : queuedReply("OK2")),
  });
  await using client = await connect(tern.port);
  const content = encoder.encode("Subject: x\r\n\r\nx\r\n");
  const first = await client.send(
    envelope(["bob@mx.tern.test", "nobody@mx.tern.test"], content),
    streamOf(content),
  );
  assert.deepEqual(first.recipients.map((r) => [r.reply.code, r.reply.enhancedStatus]), [
    [451, "4.3.0"],
    [550, "5.1.1"],
  ]);
  assert.equal(client.isUsable, true);
  const second = await client.send(envelope(["bob@mx.tern.test"], content), streamOf(content));
  assert.equal(second.reply?.code, 250);
});

Deno.test("SmtpClient sends 3 messages on one connection", async () => {
  await using tern = await startTern();
  const client = await connect(tern.port);
  for (let i = 1; i <= 3; i++) {
    assert.equal(client.isUsable, true);
    const content = encoder.encode(`Subject: ${i}\r\n\r\nmessage ${i}\r\n`);
    const result = await client.send(envelope([`r${i}@mx.tern.test`], content), streamOf(content));
    assert.equal(result.reply?.lines[0], `Ok: queued as Q${i}`);
  }
  await client.close();
  assert.equal(client.isUsable, false);
  await client.close(); // twice is fine
  assert.equal(tern.messages.length, 3);
  assert.equal(tern.connections.size, 1);
  assert.equal(new Set(tern.messages.map((m) => m.connection)).size, 1);
  assert.equal(tern.commands.at(-1), "QUIT");
});

Deno.test("SmtpClient refuses a message over the server's SIZE before MAIL", async () => {
  await using tern = await startTern({ maxMessageSize: 1000 });
  await using client = await connect(tern.port);
  assert.equal(client.extensions?.size, 1000);
  const content = new Uint8Array(2000).fill(0x61);
  let opened = false;
  const result = await client.send(envelope(["bob@mx.tern.test"], content), () => {
    opened = true;
    return streamOf(content)();
  });
  assert.deepEqual(result.recipients.map((r) => [r.reply.code, r.reply.enhancedStatus]), [[
    552,
    "5.3.4",
  ]]);
  assert.equal(opened, false);
  assert.ok(!tern.commands.some((c) => c.startsWith("MAIL")));
  assert.equal(client.isUsable, true);
});

Deno.test("SmtpClient with tls: required fails against a server without STARTTLS", async () => {
  await using tern = await startTern();
  await assert.rejects(
    () => connect(tern.port, { tls: "required" }),
    (error: unknown) =>
      error instanceof SmtpConnectionError && !(error instanceof TlsHandshakeError) &&
      /STARTTLS is not offered/.test(error.message),
  );
});

// --- against aiosmtpd --------------------------------------------------------------

Deno.test("SmtpClient sends DATA to aiosmtpd one command at a time", async () => {
  await using smtpd = await startAiosmtpd();
  const trace: string[] = [];
  await using client = await connect(smtpd.port, { onTrace: (l) => trace.push(l) });
  assert.equal(client.extensions?.pipelining, false);
  assert.equal(client.extensions?.chunking, false);
  const content = encoder.encode("Subject: hi\r\n\r\n.dot line\n..two dots\r\n.\r\nend\r\n");
  const result = await client.send(
    envelope(["bob@aiosmtpd.test", "nobody@aiosmtpd.test"], content, { body: "8BITMIME" }),
    streamOf(content, 5),
  );
  assert.deepEqual(result.recipients.map((r) => r.reply.code), [250, 550]);
  assert.equal(result.reply?.lines[0], "OK: stored");
  // aiosmtpd prints the message before it answers 250, but the pipe may
  // bring the line after the reply: wait for it.
  const m = await waitFor(() => smtpd.messages[0]);
  assert.deepEqual(m.to, ["bob@aiosmtpd.test"]);
  assert.deepEqual(m.options, [`SIZE=${content.length}`, "BODY=8BITMIME"]);
  assert.equal(
    latin1.decode(Uint8Array.from(atob(m.content), (c) => c.charCodeAt(0))),
    "Subject: hi\r\n\r\n.dot line\r\n..two dots\r\n.\r\nend\r\n",
  );
  assert.equal(m.tls, false);
  // Without PIPELINING, every command waits for the reply to the one before.
  const sent = trace.filter((l) => l.startsWith("C: ") || l.startsWith("S: "));
  const mail = sent.findIndex((l) => l.startsWith("C: MAIL"));
  assert.deepEqual(sent.slice(mail, mail + 8).map((l) => l.slice(0, 7)), [
    "C: MAIL",
    "S: 250 ",
    "C: RCPT",
    "S: 250 ",
    "C: RCPT",
    "S: 550 ",
    "C: DATA",
    "S: 354 ",
  ]);
});

Deno.test("SmtpClient upgrades to TLS with STARTTLS and delivers over it", async () => {
  await using certificate = await selfSignedCertificate();
  await using smtpd = await startAiosmtpd(certificate);
  const trace: string[] = [];
  await using client = await connect(smtpd.port, { onTrace: (l) => trace.push(l) });
  assert.equal(client.isTls, true);
  assert.match(client.tls!.protocol, /^TLSv1\.[23]$/);
  assert.ok(client.tls!.cipher.length > 0);
  assert.equal(client.tls!.isVerified, false); // opportunistic: a self-signed certificate is fine
  assert.ok(client.tls!.verifyError !== null);
  assert.equal(client.extensions?.startTls, false, "not offered again over TLS");
  assert.equal(trace.filter((l) => l.startsWith("C: EHLO")).length, 2);
  const content = encoder.encode("Subject: secret\r\n\r\nover TLS\r\n");
  const result = await client.send(envelope(["bob@aiosmtpd.test"], content), streamOf(content));
  assert.equal(result.reply?.code, 250);
  assert.equal((await waitFor(() => smtpd.messages[0])).tls, true);
});

Deno.test("SmtpClient verifies the certificate against caCerts when required", async () => {
  await using certificate = await selfSignedCertificate();
  await using smtpd = await startAiosmtpd(certificate);
  {
    await using client = await connect(smtpd.port, {
      tls: "required",
      servername: "localhost",
      caCerts: [certificate.pem],
    });
    assert.equal(client.tls?.isVerified, true);
    assert.equal(client.tls?.verifyError, null);
  }
  // Required, and the certificate is not trusted: the handshake fails.
  await assert.rejects(
    () => connect(smtpd.port, { tls: "required", servername: "localhost" }),
    TlsHandshakeError,
  );
  // Plaintext on request.
  await using plain = await connect(smtpd.port, { tls: "none" });
  assert.equal(plain.isTls, false);
  assert.equal(plain.extensions?.startTls, true);
});

Deno.test("SmtpClient never reads replies injected after the 220 to STARTTLS (response injection)", async () => {
  await using certificate = await selfSignedCertificate();
  const secureContext = tls.createSecureContext({
    key: await Deno.readTextFile(certificate.key),
    cert: certificate.pem,
  });
  const sockets = new Set<net.Socket>();
  const server = net.createServer((plain) => {
    sockets.add(plain);
    plain.on("error", () => {});
    const serve = (socket: net.Socket, onLine: (line: string) => void) => {
      let buffer = "";
      const onData = (data: Uint8Array) => {
        buffer += latin1.decode(data);
        let nl: number;
        while ((nl = buffer.indexOf("\r\n")) >= 0) {
          const line = buffer.slice(0, nl);
          buffer = buffer.slice(nl + 2);
          onLine(line);
        }
      };
      socket.on("data", onData);
      return () => socket.off("data", onData);
    };
    const stop = serve(plain, (line) => {
      if (line.startsWith("EHLO")) plain.write("250-inject.test\r\n250 STARTTLS\r\n");
      if (line !== "STARTTLS") return;
      stop();
      // The attack: plaintext "replies" right behind the 220, in the same write.
      plain.write("220 2.0.0 Go ahead\r\n250-inject.test\r\n250 INJECTED\r\n", () => {
        const secure = new tls.TLSSocket(plain, { isServer: true, secureContext });
        sockets.add(secure);
        secure.on("error", () => {});
        serve(secure, (l) => {
          if (l.startsWith("EHLO")) secure.write("250-inject.test\r\n250 SIZE 1000\r\n");
          if (l === "QUIT") secure.end("221 2.0.0 Bye\r\n");
        });
      });
    });
    plain.write("220 inject.test ESMTP\r\n");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    const trace: string[] = [];
    const client = await connect((server.address() as net.AddressInfo).port, {
      onTrace: (l) => trace.push(l),
    });
    assert.equal(client.isTls, true);
    assert.equal(client.extensions?.keywords.has("INJECTED"), false);
    assert.equal(client.extensions?.size, 1000); // from the EHLO over TLS
    assert.ok(trace.some((l) => /^\* \d+ bytes after the 220 to STARTTLS thrown away$/.test(l)));
    await client.close();
  } finally {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of sockets) s.destroy();
    await closed;
  }
});

// --- against misbehaving servers ------------------------------------------------------

const brokenTls = [
  { after: "sends garbage", why: /corrupt message|wrong version/ },
  { after: "closes", why: /disconnected|closed/ },
  { after: "goes silent", why: /timed out after 300 ms/ },
];
for (const { after, why } of brokenTls) {
  Deno.test(`SmtpClient reports a TlsHandshakeError when the server ${after} after 220`, async () => {
    // After the 220 nothing is answered: a ClientHello that happens to hold
    // CRLF must not draw a "500" the client would take for a TLS record.
    const handshaking = new WeakSet<net.Socket>();
    await using server = await scriptedServer("220 broken.test ESMTP\r\n", (line, socket) => {
      if (handshaking.has(socket)) return null;
      if (line.startsWith("EHLO")) return "250-broken.test\r\n250 STARTTLS\r\n";
      if (line === "STARTTLS") {
        handshaking.add(socket);
        socket.write("220 2.0.0 Go ahead\r\n");
        if (after === "sends garbage") socket.write("this is not a TLS record\r\n".repeat(20));
        if (after === "closes") socket.end();
        return null;
      }
      return "500 5.5.2 What?\r\n";
    });
    await assert.rejects(
      () => connect(server.port, { commandTimeoutMs: 300 }),
      (error: unknown) => {
        assert.ok(error instanceof TlsHandshakeError, String(error));
        assert.match(error.message, /^TLS handshake with 127\.0\.0\.1:\d+ failed: /);
        assert.match(error.message, why);
        return true;
      },
    );
    // The caller retries in plaintext.
    await using client = await connect(server.port, { tls: "none" });
    assert.equal(client.isTls, false);
  });
}

Deno.test("SmtpClient reports a 554 greeting as a refusal, after QUIT", async () => {
  await using server = await scriptedServer("554 5.7.1 No SMTP service here\r\n", (line) => {
    return line === "QUIT" ? "221 2.0.0 Bye\r\n" : "503 5.5.1 Only QUIT now\r\n";
  });
  await assert.rejects(() => connect(server.port), (error: unknown) => {
    assert.ok(error instanceof SmtpConnectionError);
    assert.equal(error.reply?.code, 554);
    return true;
  });
  assert.deepEqual(server.lines, ["QUIT"]);
});

Deno.test("SmtpClient reports a 421 greeting with its reply, so the caller can try the next MX", async () => {
  await using server = await scriptedServer("421 4.3.2 Too busy\r\n", () => null);
  await assert.rejects(() => connect(server.port), (error: unknown) => {
    assert.ok(error instanceof SmtpConnectionError);
    assert.equal(error.reply?.code, 421);
    return true;
  });
  assert.deepEqual(server.lines, []);
});

Deno.test("SmtpClient times out a silent server with a SmtpConnectionError", async () => {
  await using server = await scriptedServer("220 slow.test ESMTP\r\n", (line) => {
    if (line.startsWith("EHLO")) return "250-slow.test\r\n250 PIPELINING\r\n";
    return null; // never answers MAIL
  });
  await using client = await connect(server.port, { commandTimeoutMs: 200 });
  const content = encoder.encode("x\r\n");
  const started = Date.now();
  await assert.rejects(
    () => client.send(envelope(["bob@slow.test"], content), streamOf(content)),
    (error: unknown) =>
      error instanceof SmtpConnectionError &&
      /Timed out after 200 ms waiting for the reply to MAIL/.test(error.message),
  );
  assert.ok(Date.now() - started < 3000);
  assert.equal(client.isUsable, false);
  await assert.rejects(
    () => client.send(envelope(["bob@slow.test"], content), streamOf(content)),
    SmtpConnectionError,
  );
});

Deno.test("SmtpClient reports a connection dropped mid-transaction as a SmtpConnectionError", async () => {
  await using server = await scriptedServer("220 flaky.test ESMTP\r\n", (line, socket) => {
    if (line.startsWith("EHLO")) return "250-flaky.test\r\n250 PIPELINING\r\n";
    if (line.startsWith("MAIL")) return "250 ok\r\n";
    if (line.startsWith("RCPT")) return "250 ok\r\n";
    if (line === "DATA") {
      socket.end("354 go\r\n");
      return null;
    }
    return null;
  });
  await using client = await connect(server.port);
  const content = bigMessage(256 * 1024);
  await assert.rejects(
    () => client.send(envelope(["bob@flaky.test"], content), streamOf(content)),
    SmtpConnectionError,
  );
  assert.equal(client.isUsable, false);
});

Deno.test("SmtpClient does not finish a message whose content fails to read", async () => {
  await using tern = await startTern();
  await using client = await connect(tern.port, { useChunking: false });
  const content = encoder.encode("x\r\n");
  const failing = () =>
    new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(encoder.encode("Subject: half\r\n"));
        controller.error(new Error("disk on fire"));
      },
    });
  await assert.rejects(
    () => client.send(envelope(["bob@mx.tern.test"], content), failing),
    (error: unknown) => error instanceof Error && error.message === "disk on fire",
  );
  assert.equal(client.isUsable, false);
  assert.equal(tern.messages.length, 0);
});

Deno.test("SmtpClient cannot connect to a closed port", async () => {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  await assert.rejects(() => connect(port), (error: unknown) => {
    assert.ok(error instanceof SmtpConnectionError);
    assert.match(error.message, /^Cannot connect to 127\.0\.0\.1:\d+/);
    assert.equal(error.reply, null);
    return true;
  });
});
