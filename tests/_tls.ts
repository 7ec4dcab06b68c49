// Shared by the TLS, AUTH and policy tests: a throwaway certificate made with
// openssl (never committed), a small SMTP client that can switch to TLS, and
// the TLS transcripts (tests/transcripts/tls/*.txt) run in memory and over a
// real socket.
//
// A TLS transcript is a transcript (see _transcript.ts) with `T: tls` lines:
// there the client starts TLS. Everything the client says before that line is
// sent in one write, in plaintext; the server's lines before it must all have
// arrived (and nothing more) before the handshake. `# option: mode=...` picks
// the listener: mx (STARTTLS, no AUTH), submission (STARTTLS, AUTH after TLS)
// or submissions (implicit TLS, AUTH).

import { join } from "node:path";
import { validateConfig } from "../config/schema.ts";
import { checkRecipient, checkSender } from "../mta/policy.ts";
import type { ListenerMode } from "../config/schema.ts";
import { REPLIES, type Reply } from "../smtp/reply.ts";
import type { SaslCredentials } from "../smtp/sasl.ts";
import { SASL_MECHANISMS } from "../smtp/sasl.ts";
import { type ConnectionInfo, type ServerHandlers, SmtpServer } from "../smtp/server.ts";
import {
  ServerSession,
  type ServerSessionOptions,
  type SessionEvent,
} from "../smtp/server_session.ts";
import type { TlsContext } from "../smtp/tls_context.ts";
import { parseTranscript, queuedAs, type Transcript } from "./_transcript.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// --- the certificate --------------------------------------------------------

export interface TestCertificate {
  dir: string;
  cert: string;
  key: string;
  /** The certificate, PEM, for clients' caCerts. */
  pem: string;
}

/** Makes a self-signed certificate for localhost in a new temporary directory. */
export async function makeCertificate(cn = "localhost"): Promise<TestCertificate> {
  const dir = await Deno.makeTempDir({ prefix: "tern-tls-" });
  const cert = join(dir, "cert.pem");
  const key = join(dir, "key.pem");
  const out = await new Deno.Command("openssl", {
    args: [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-subj",
      `/CN=${cn}`,
      "-days",
      "1",
      "-keyout",
      key,
      "-out",
      cert,
      // rustls (Deno's client) wants a leaf certificate with the name in SAN.
      "-addext",
      "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1",
      "-addext",
      "basicConstraints=critical,CA:FALSE",
    ],
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`openssl failed: ${decoder.decode(out.stderr)}`);
  return { dir, cert, key, pem: await Deno.readTextFile(cert) };
}

/** One certificate for the whole test module, removed when the process ends. */
export const CERT: TestCertificate = await makeCertificate();
globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(CERT.dir, { recursive: true });
  } catch {
    // already gone
  }
});

// --- a small SMTP client ----------------------------------------------------

/** A line-reading SMTP client over TCP that can start TLS. */
export class TestClient {
  #conn: Deno.Conn;
  #buffer = "";
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  /** Everything received, in order. */
  received = "";

  private constructor(conn: Deno.Conn) {
    this.#conn = conn;
    this.#reader = conn.readable.getReader();
  }

  /** Connects (with implicit TLS when asked) and reads the banner. */
  static async connect(
    port: number,
    options: { implicitTls?: boolean; hostname?: string } = {},
  ): Promise<TestClient> {
    const hostname = options.hostname ?? "127.0.0.1";
    const conn = options.implicitTls
      ? await Deno.connectTls({ hostname, port, caCerts: [CERT.pem] })
      : await Deno.connect({ hostname, port });
    const client = new TestClient(conn);
    await client.reply();
    return client;
  }

  async #fill(deadline: number): Promise<boolean> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), Math.max(0, deadline - Date.now()));
    });
    try {
      const r = await Promise.race([this.#reader.read(), timeout]);
      if (r === "timeout") throw new Error(`No reply in time; so far: ${this.received}`);
      if (r.done) return false;
      const text = decoder.decode(r.value, { stream: true });
      this.#buffer += text;
      this.received += text;
      return true;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Reads one whole reply (all its lines), or `null` when the server closed. */
  async reply(ms = 10_000): Promise<string | null> {
    const deadline = Date.now() + ms;
    while (true) {
      const m = /^(?:\d{3}-[^\r]*\r\n)*\d{3}(?: [^\r]*)?\r\n/.exec(this.#buffer);
      if (m) {
        this.#buffer = this.#buffer.slice(m[0].length);
        return m[0];
      }
      if (!await this.#fill(deadline)) return null;
    }
  }

  /** Sends raw text. */
  async write(text: string): Promise<void> {
    await this.#conn.write(encoder.encode(text));
  }

  /** Sends one command and reads its reply. */
  async command(line: string): Promise<string | null> {
    await this.write(line + "\r\n");
    return await this.reply();
  }

  /** Reads until the server closes; returns what came. */
  async rest(ms = 10_000): Promise<string> {
    const deadline = Date.now() + ms;
    const start = this.received.length - this.#buffer.length;
    while (await this.#fill(deadline)) {
      // keep reading
    }
    this.#buffer = "";
    return this.received.slice(start);
  }

  /** Upgrades to TLS (after the server's 220 to STARTTLS). */
  async startTls(): Promise<void> {
    this.#reader.releaseLock();
    this.#conn = await Deno.startTls(this.#conn as Deno.TcpConn, {
      hostname: "localhost",
      caCerts: [CERT.pem],
    });
    this.#reader = this.#conn.readable.getReader();
    this.#buffer = "";
  }

  /** EHLO, then STARTTLS and EHLO again. */
  async secure(name = "client.test"): Promise<void> {
    await this.command(`EHLO ${name}`);
    const r = await this.command("STARTTLS");
    if (!r?.startsWith("220 ")) throw new Error(`STARTTLS refused: ${r}`);
    await this.startTls();
    await this.command(`EHLO ${name}`);
  }

  close(): void {
    try {
      this.#reader.releaseLock();
      this.#conn.close();
    } catch {
      // already closed
    }
  }
}

/** AUTH PLAIN's initial response for a user and password (UTF-8, RFC 4616). */
export function plainResponse(user: string, password: string, authzid = ""): string {
  let binary = "";
  for (const b of encoder.encode(`${authzid}\0${user}\0${password}`)) {
    binary += String.fromCharCode(b);
  }
  return btoa(binary);
}

// --- TLS transcripts ----------------------------------------------------------

export interface TlsTranscript {
  name: string;
  mode: ListenerMode;
  options: Partial<ServerSessionOptions>;
  /** Cut at each `T: tls`; the client starts TLS between segments. */
  segments: Transcript[];
}

export function parseTlsTranscript(name: string, text: string): TlsTranscript {
  const parts = text.split(/^T: tls$/m);
  const segments = parts.map((part, i) => parseTranscript(`${name}#${i}`, part));
  const m = /^# option: mode=(mx|submission|submissions)$/m.exec(text);
  const mode = (m?.[1] ?? "mx") as ListenerMode;
  return { name, mode, options: sessionOptions(mode), segments };
}

export async function loadTlsTranscripts(): Promise<TlsTranscript[]> {
  const dir = new URL("./transcripts/tls/", import.meta.url);
  const out: TlsTranscript[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (!entry.name.endsWith(".txt")) continue;
    out.push(parseTlsTranscript(entry.name, await Deno.readTextFile(new URL(entry.name, dir))));
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

/** What tern's listeners of each mode offer (mta.ts does the same). */
export function sessionOptions(mode: ListenerMode): Partial<ServerSessionOptions> {
  return {
    startTls: mode !== "submissions",
    implicitTls: mode === "submissions",
    authMechanisms: mode === "mx" ? [] : SASL_MECHANISMS,
  };
}

/** The directory every TLS transcript assumes. */
export const TRANSCRIPT_CONFIG = validateConfig({
  local_domains: ["example.test"],
  accounts: { "alice@example.test": {}, "bob@example.test": {}, "josé@example.test": {} },
  aliases: { "sales@example.test": "alice@example.test" },
  relay: { trusted_networks: [] },
}, { file: null, baseDir: "/srv/tern" });

/** The one password that works, for alice@example.test and josé@example.test. */
export const TRANSCRIPT_PASSWORD = "s3cret pässword";

function checkCredentials(c: SaslCredentials): Reply {
  const user = c.username.toLowerCase();
  const isKnown = user === "alice@example.test" || user === "josé@example.test";
  return isKnown && c.password === TRANSCRIPT_PASSWORD && c.authorizationId === ""
    ? REPLIES.authSucceeded
    : REPLIES.authFailed;
}

/** The transcripts' handlers: the real policy, a fake password check, a store that takes all. */
export function transcriptHandlers(mode: ListenerMode): ServerHandlers {
  let queued = 0;
  const who = (c: Pick<ConnectionInfo, "remoteAddress" | "authenticatedAs">) => ({
    mode,
    address: c.remoteAddress,
    authenticatedAs: c.authenticatedAs,
  });
  return {
    authenticate: (credentials) => checkCredentials(credentials),
    sender: (reversePath, _p, c) => checkSender({ ...who(c), reversePath }, TRANSCRIPT_CONFIG),
    recipient: (forwardPath, _p, c) =>
      checkRecipient({ ...who(c), forwardPath }, TRANSCRIPT_CONFIG),
    open: () =>
      Promise.resolve({
        write: () => Promise.resolve(),
        commit: () => Promise.resolve(queuedAs(++queued)),
        abort: () => Promise.resolve(),
      }),
  };
}

function bytewise(bytes: Uint8Array): Uint8Array[] {
  return Array.from(bytes, (_, i) => bytes.subarray(i, i + 1));
}

/**
 * Plays a TLS transcript against the session in memory. STARTTLS is
 * simulated: after the session's `starttls` event, the rest of that
 * segment's plaintext is dropped (as the adapter does) and the next
 * segment's bytes stand for the decrypted stream.
 */
export function playInMemory(t: TlsTranscript, split: "whole" | "line" | "byte"): string {
  const session = new ServerSession({ hostname: "mx.example.test", ...t.options });
  let output = "";
  let queued = 0;
  let upgraded = false;
  const client = () => ({
    mode: t.mode,
    address: "127.0.0.1",
    authenticatedAs: session.authenticatedAs,
  });
  const handle = (events: SessionEvent[]): void => {
    for (const e of events) {
      switch (e.type) {
        case "send":
          output += decoder.decode(e.bytes);
          break;
        case "auth":
          handle(session.answer(checkCredentials(e.credentials)));
          break;
        case "sender":
          handle(session.answer(
            checkSender({ ...client(), reversePath: e.reversePath }, TRANSCRIPT_CONFIG),
          ));
          break;
        case "recipient":
          handle(session.answer(
            checkRecipient({ ...client(), forwardPath: e.forwardPath }, TRANSCRIPT_CONFIG),
          ));
          break;
        case "open":
          handle(session.answer(REPLIES.startData));
          break;
        case "message":
          handle(session.answer(queuedAs(++queued)));
          break;
        case "starttls":
          upgraded = true;
          break;
      }
    }
  };
  handle(session.start());
  for (const segment of t.segments) {
    upgraded = false;
    const pieces = split === "whole"
      ? [segment.client]
      : split === "line"
      ? segment.clientLines
      : bytewise(segment.client);
    for (const piece of pieces) {
      if (upgraded) break; // plaintext after STARTTLS: dropped, never read
      handle(session.receive(piece));
    }
  }
  return output;
}

/** Starts a server for a TLS transcript's mode on a free loopback port. */
export async function transcriptServer(
  t: TlsTranscript,
  tls: TlsContext,
): Promise<{ server: SmtpServer; port: number }> {
  const server = new SmtpServer({
    hostname: "mx.example.test",
    address: "127.0.0.1",
    port: 0,
    ...t.options,
    tls,
    handlers: transcriptHandlers(t.mode),
  });
  const { port } = await server.listen();
  return { server, port };
}

/**
 * Plays a TLS transcript over a real socket: each segment's client bytes in
 * one write, the replies read until they are all there, then the handshake.
 */
export async function playOverTcp(t: TlsTranscript, port: number): Promise<string> {
  const implicitTls = t.mode === "submissions";
  const conn = implicitTls
    ? await Deno.connectTls({ hostname: "127.0.0.1", port, caCerts: [CERT.pem] })
    : await Deno.connect({ hostname: "127.0.0.1", port });
  let current: Deno.Conn = conn;
  let reader = current.readable.getReader();
  let output = "";
  const readUntil = async (length: number): Promise<void> => {
    const deadline = Date.now() + 10_000;
    while (output.length < length) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), Math.max(0, deadline - Date.now()));
      });
      const r = await Promise.race([reader.read(), timeout]);
      clearTimeout(timer);
      if (r === "timeout" || r.done) return;
      output += decoder.decode(r.value, { stream: true });
    }
  };
  try {
    let expected = 0;
    for (const [i, segment] of t.segments.entries()) {
      expected += segment.server.length;
      if (i === 0) await readUntil(segment.server.split("\r\n")[0]!.length + 2); // the banner
      await current.write(segment.client);
      if (i === t.segments.length - 1) {
        // The last segment ends with QUIT: read until the server closes.
        while (true) {
          const r = await reader.read();
          if (r.done) break;
          output += decoder.decode(r.value, { stream: true });
        }
      } else {
        await readUntil(expected);
        reader.releaseLock();
        current = await Deno.startTls(current as Deno.TcpConn, {
          hostname: "localhost",
          caCerts: [CERT.pem],
        });
        reader = current.readable.getReader();
      }
    }
  } finally {
    try {
      current.close();
    } catch {
      // closed by the server
    }
  }
  return output;
}
