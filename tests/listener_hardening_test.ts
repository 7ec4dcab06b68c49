// Listeners under connection floods: sockets that never complete a TLS
// handshake (or whose peer leaves before it) are reaped within seconds, a
// burst of connect-and-close under a low open-file limit leaves every
// listener accepting, a listener that stopped accepting is opened again, the
// per-address limit is not held by closed connections, and SIGTERM ends in
// time whatever the sockets are doing.
import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import { join } from "node:path";
import { MAIN, python, ROOT, tempConfig, waitFor } from "./_helpers.ts";
import { CERT, TestClient } from "./_tls.ts";
import { queuedReply, REPLIES } from "../smtp/reply.ts";
import { SmtpServer, type SmtpServerOptions } from "../smtp/server.ts";

const decoder = new TextDecoder();

/** An implicit-TLS (port 465 style) server on a free loopback port that accepts everything. */
function tlsServer(options: Partial<SmtpServerOptions> = {}): SmtpServer {
  const secureContext = tls.createSecureContext({
    cert: Deno.readTextFileSync(CERT.cert),
    key: Deno.readTextFileSync(CERT.key),
  });
  return new SmtpServer({
    hostname: "mx.example.test",
    address: "127.0.0.1",
    port: 0,
    tls: { secureContext },
    implicitTls: true,
    ...options,
    handlers: {
      recipient: () => REPLIES.recipientOk,
      open: () =>
        Promise.resolve({
          write: () => Promise.resolve(),
          commit: () => Promise.resolve(queuedReply("Q1")),
          abort: () => Promise.resolve(),
        }),
    },
  });
}

/** Connects and closes at once, without a byte or a handshake. */
async function connectAndClose(port: number, hostname = "127.0.0.1"): Promise<void> {
  const conn = await Deno.connect({ hostname, port });
  conn.close();
}

/** Whether the server closes the connection within `ms` (reads and ignores what comes). */
async function closedWithin(conn: Deno.Conn, ms: number): Promise<boolean> {
  const buffer = new Uint8Array(4096);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"open">((resolve) => (timer = setTimeout(() => resolve("open"), ms)));
  try {
    while (true) {
      const n = await Promise.race([conn.read(buffer).catch(() => null), timeout]);
      if (n === "open") return false;
      if (n === null) return true;
    }
  } finally {
    clearTimeout(timer);
  }
}

/** A `tern serve` child, run through bash so that `ulimit -n` can be set first. */
interface Child {
  child: Deno.ChildProcess;
  ports: Record<string, number>;
  log(): string;
  kill(): Promise<void>;
}

async function spawnTern(file: string, openFiles?: number): Promise<Child> {
  const command = `${openFiles === undefined ? "" : `ulimit -n ${openFiles} && `}exec "$0" "$@"`;
  const child = new Deno.Command("bash", {
    args: [
      "-c",
      command,
      Deno.execPath(),
      "run",
      "-A",
      "--unstable-kv",
      MAIN,
      "serve",
      "--config",
      file,
    ],
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
    cwd: ROOT,
  }).spawn();
  let text = "";
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) text += decoder.decode(chunk, { stream: true });
  };
  const draining = Promise.all([drain(child.stdout), drain(child.stderr)]);
  const ports: Record<string, number> = {};
  const kill = async () => {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
    await child.status;
    await draining;
  };
  try {
    await waitFor(() => {
      for (const m of text.matchAll(/server\.listening address=\S+ port=(\d+) mode=(\S+)/g)) {
        ports[m[2]!] = Number(m[1]);
      }
      return Object.keys(ports).length >= 2;
    }, 20_000);
  } catch (error: unknown) {
    await kill();
    throw new Error(`tern serve did not start: ${text}`, { cause: error });
  }
  return { child, ports, log: () => text, kill };
}

const TWO_LISTENERS = `
listeners:
  - { address: 127.0.0.1, port: 0, mode: mx }
  - { address: 127.0.0.1, port: 0, mode: submissions }
tls: { cert: ${CERT.cert}, key: ${CERT.key} }
local_domains: [example.test]
`;

/** Connects, reads the banner, says QUIT. */
async function banner(port: number, implicitTls = false): Promise<string | null> {
  const client = await TestClient.connect(port, { implicitTls });
  const first = client.received;
  await client.command("QUIT").catch(() => null);
  client.close();
  return first;
}

Deno.test("sockets that never complete the TLS handshake are closed within the handshake timeout", async () => {
  const server = tlsServer({ tlsHandshakeTimeout: 500, commandTimeout: 60_000 });
  const { port } = await server.listen();
  const silent: Deno.TcpConn[] = [];
  const halfClosed: Deno.TcpConn[] = [];
  try {
    for (let i = 0; i < 10; i++) silent.push(await Deno.connect({ hostname: "127.0.0.1", port }));
    for (let i = 0; i < 10; i++) {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      await c.closeWrite(); // the peer leaves before the handshake: CLOSE-WAIT on our side
      halfClosed.push(c);
    }
    await waitFor(() => server.connectionCount === 20 || server.connectionCount === 0);
    // Well before the command timeout (a minute here), every one of them is gone.
    await waitFor(() => server.connectionCount === 0, 5000);
    for (const c of [...silent, ...halfClosed]) assert.ok(await closedWithin(c, 2000));
    // A real client is not affected.
    assert.match((await banner(port, true)) ?? "", /^220 /);
  } finally {
    for (const c of [...silent, ...halfClosed]) {
      try {
        c.close();
      } catch {
        // closed by the server
      }
    }
    await server.close(100);
  }
});

Deno.test("60 connect-and-closes from one address on implicit TLS do not lock it out", async () => {
  const server = tlsServer({ commandTimeout: 60_000 }); // 50 per address by default
  const { port } = await server.listen();
  try {
    for (let i = 0; i < 60; i++) await connectAndClose(port);
    await waitFor(() => server.connectionCount === 0, 5000);
    assert.match((await banner(port, true)) ?? "", /^220 /);
  } finally {
    await server.close(100);
  }
});

Deno.test("the per-address limit counts the block given by keyOf, not the exact address", async () => {
  // 127.0.0.2 and 127.0.0.3 stand for two addresses of one IPv6 /64.
  const blocks: string[] = [];
  const server = tlsServer({
    implicitTls: false,
    maxConnectionsPerIp: 1,
    keyOf: (address) => {
      blocks.push(address);
      return address.replace(/\.\d+$/, ".0/24");
    },
  });
  const { port } = await server.listen();
  const first = await new Promise<net.Socket>((resolve) => {
    const s = net.connect({ host: "127.0.0.1", port, localAddress: "127.0.0.2" });
    s.once("data", () => resolve(s));
  });
  try {
    const second = net.connect({ host: "127.0.0.1", port, localAddress: "127.0.0.3" });
    const said = await new Promise<string>((resolve) => {
      let text = "";
      second.on("data", (d) => (text += d.toString()));
      second.on("close", () => resolve(text));
    });
    assert.equal(said, "421 4.7.0 Too many connections, try again later\r\n");
    assert.ok(blocks.includes("127.0.0.3"));
  } finally {
    first.destroy();
    await server.close(100);
  }
});

Deno.test("a burst of connect-and-close on implicit TLS under a low open-file limit leaves every listener accepting", async () => {
  const { dir, file } = await tempConfig(TWO_LISTENERS);
  const serve = await spawnTern(file, 256);
  try {
    const submissions = serve.ports.submissions!;
    // More than the 256 descriptors the process may open, a few dozen at a time.
    for (let i = 0; i < 400; i += 40) {
      await Promise.all(Array.from({ length: 40 }, () => connectAndClose(submissions)));
    }
    // Every listener answers again (within seconds, once the sockets are reaped).
    const mx = await waitFor(async () => {
      try {
        return await banner(serve.ports.mx!);
      } catch {
        return undefined;
      }
    }, 20_000);
    assert.match(mx ?? "", /^220 /);
    // Each listener recovers on its own (the mx sessions may run in other threads).
    const secure = await waitFor(async () => {
      try {
        return await banner(submissions, true);
      } catch {
        return undefined;
      }
    }, 20_000);
    assert.match(secure ?? "", /^220 /);
  } finally {
    await serve.kill();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a listener that stopped accepting after EMFILE is opened again by the watchdog", async () => {
  // No budget here on purpose: the listener is driven into EMFILE, and
  // Deno's node:net never accepts on it again; the watchdog must notice.
  const script = join(await Deno.makeTempDir({ prefix: "tern-emfile-" }), "server.ts");
  await Deno.writeTextFile(
    script,
    `
import { SmtpServer } from ${JSON.stringify(join(ROOT, "smtp", "server.ts"))};
import { REPLIES } from ${JSON.stringify(join(ROOT, "smtp", "reply.ts"))};
const server = new SmtpServer({
  hostname: "mx.example.test",
  address: "127.0.0.1",
  port: 0,
  maxConnections: 10_000,
  maxConnectionsPerIp: 10_000,
  watchdogInterval: 1000,
  handlers: { recipient: () => REPLIES.recipientOk, open: () => REPLIES.storageFailed },
  onEvent: (e) => { if (e.type === "relisten") console.log("relisten error=" + e.error); },
});
const { port } = await server.listen();
console.log("port=" + port);
`,
  );
  const child = new Deno.Command("bash", {
    args: ["-c", `ulimit -n 128 && exec "$0" run -A --unstable-kv "$1"`, Deno.execPath(), script],
    // Nothing that Deno loads lazily (extra CA certificates) at the worst moment.
    clearEnv: true,
    env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin", HOME: Deno.env.get("HOME") ?? "/tmp" },
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  let text = "";
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) text += decoder.decode(chunk, { stream: true });
  };
  const draining = Promise.all([drain(child.stdout), drain(child.stderr)]);
  const held: Deno.Conn[] = [];
  try {
    const port = await waitFor(() => Number(/port=(\d+)/.exec(text)?.[1]) || undefined, 20_000);
    // Hold more connections than the child has descriptors, then let go.
    await python(
      `
import socket, sys, time
held = [socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5) for _ in range(200)]
time.sleep(0.5)
for s in held: s.close()
`,
      [String(port)],
    );
    const greeting = await waitFor(async () => {
      // Refused for a moment while the listener is replaced.
      const c = await Deno.connect({ hostname: "127.0.0.1", port }).catch(() => null);
      if (c === null) return false;
      const out = await Promise.race([
        c.read(new Uint8Array(512)).then((n) => n !== null && n > 0, () => false),
        new Promise<false>((r) => setTimeout(() => r(false), 1000)),
      ]);
      c.close();
      return out;
    }, 30_000).catch((error) => {
      // Deno 2.9.6 itself sometimes panics at EMFILE (in its signal handling,
      // outside any code of ours): then there is no listener left to judge.
      if (text.includes("Deno has panicked")) return "panicked";
      throw new Error(`no greeting; the server said: ${text}`, { cause: error });
    });
    if (greeting === "panicked") {
      console.warn("skipped: Deno panicked at EMFILE before the watchdog could act");
      return;
    }
    assert.ok(greeting);
    assert.match(text, /relisten error=null/);
  } finally {
    for (const c of held) c.close();
    try {
      child.kill("SIGKILL");
    } catch {
      // gone
    }
    await child.status;
    await draining;
    await Deno.remove(join(script, ".."), { recursive: true });
  }
});

Deno.test("SIGTERM with many half-open and never-handshaken sockets exits within the grace period and a few seconds", async () => {
  const { dir, file } = await tempConfig(`${TWO_LISTENERS}limits: { shutdown_grace: 1s }\n`);
  const serve = await spawnTern(file);
  const conns: Deno.TcpConn[] = [];
  try {
    const { mx, submissions } = serve.ports as { mx: number; submissions: number };
    for (let i = 0; i < 30; i++) {
      // Silent on implicit TLS: no handshake ever.
      conns.push(await Deno.connect({ hostname: "127.0.0.1", port: submissions }));
      // Half-closed before the handshake.
      const half = await Deno.connect({ hostname: "127.0.0.1", port: submissions });
      await half.closeWrite();
      conns.push(half);
      // Half a command on mx, then nothing.
      const mxConn = await Deno.connect({ hostname: "127.0.0.1", port: mx });
      await mxConn.write(new TextEncoder().encode("EHLO half"));
      conns.push(mxConn);
    }
    await new Promise((r) => setTimeout(r, 300)); // let the server take them all
    const started = Date.now();
    serve.child.kill("SIGTERM");
    const exited = await Promise.race([
      serve.child.status.then((s) => s.code),
      new Promise<"late">((r) => setTimeout(() => r("late"), 1000 + 6000)),
    ]);
    assert.notEqual(exited, "late", `still running ${Date.now() - started} ms after SIGTERM`);
    assert.equal(exited, 0);
  } finally {
    for (const c of conns) {
      try {
        c.close();
      } catch {
        // closed
      }
    }
    await serve.kill();
    await Deno.remove(dir, { recursive: true });
  }
});
