// Shared by the end-to-end tests: temporary configurations, an MTA started
// in-process or as a child process, real clients (python3 smtplib, swaks).

import { join } from "node:path";
import { loadConfig } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { MemoryLogger } from "../log/logger.ts";
import { Mta } from "../mta/mta.ts";
import { queuedReply, REPLIES } from "../smtp/reply.ts";
import { SmtpServer, type SmtpServerOptions } from "../smtp/server.ts";

export const ROOT = new URL("..", import.meta.url).pathname;
export const MAIN = join(ROOT, "main.ts");

/** A temporary directory holding `tern.yaml` with `body` plus data_dir under it. */
export async function tempConfig(
  body: string,
): Promise<{ dir: string; file: string; config: Config }> {
  const dir = await Deno.makeTempDir({ prefix: "tern-test-" });
  const file = join(dir, "tern.yaml");
  await Deno.writeTextFile(file, `hostname: mx.example.test\ndata_dir: ./data\n${body}`);
  return { dir, file, config: await loadConfig({ file }) };
}

export interface RunningMta {
  mta: Mta;
  port: number;
  dir: string;
  config: Config;
  logger: MemoryLogger;
  [Symbol.asyncDispose](): Promise<void>;
}

/** Starts an MTA in this process on a free loopback port (one mx listener, then `body`). */
export async function startMta(body = "", options: { pollMs?: number } = {}): Promise<RunningMta> {
  const { dir, config } = await tempConfig(
    `listeners: [{ address: 127.0.0.1, port: 0, mode: mx }]\n${body}`,
  );
  const logger = new MemoryLogger();
  const mta = await Mta.start(config, { logger, pollMs: options.pollMs ?? 200 });
  return {
    mta,
    port: mta.listeners[0]!.port,
    dir,
    config,
    logger,
    async [Symbol.asyncDispose]() {
      await mta.stop(1000);
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Runs a Python 3 script; returns its stdout, throws with stderr on failure. */
export async function python(script: string, args: string[] = []): Promise<string> {
  const out = await new Deno.Command("python3", {
    args: ["-c", script, ...args],
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(`python3 failed: ${new TextDecoder().decode(out.stderr)}\n${text}`);
  }
  return text;
}

/**
 * Runs a script with Debian's Python (`/usr/bin/python3`, where the Debian
 * packages the tests use are: dkimpy, aiosmtpd, prometheus_client), with
 * optional standard input; returns its stdout, throws with stderr on failure.
 */
export async function debianPython(
  script: string,
  args: string[] = [],
  stdin?: string | Uint8Array,
): Promise<string> {
  const child = new Deno.Command("/usr/bin/python3", {
    args: ["-c", script, ...args],
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(typeof stdin === "string" ? new TextEncoder().encode(stdin) : stdin);
    await writer.close();
  }
  const out = await child.output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(`python3 failed: ${new TextDecoder().decode(out.stderr)}\n${text}`);
  }
  return text;
}

/** Runs swaks; returns its whole transcript. */
export async function swaks(args: string[]): Promise<{ success: boolean; output: string }> {
  const out = await new Deno.Command("swaks", { args, stdout: "piped", stderr: "piped" }).output();
  const d = new TextDecoder();
  return { success: out.success, output: d.decode(out.stdout) + d.decode(out.stderr) };
}

/** Waits until `check` returns a value other than undefined/false, or throws after `ms`. */
export async function waitFor<T>(
  check: () => Promise<T | undefined | false> | T | undefined | false,
  ms = 10_000,
): Promise<T> {
  const end = Date.now() + ms;
  while (true) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`Timed out after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The files in a Maildir's new/ (absolute paths), or [] when it does not exist. */
export async function maildirFiles(mailbox: string): Promise<string[]> {
  const dir = join(mailbox, "new");
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) if (e.isFile) out.push(join(dir, e.name));
  } catch (error: unknown) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return out.sort();
}

/** Waits for `count` messages in a mailbox's new/ and returns their contents. */
export async function waitForMail(
  mailbox: string,
  count: number,
  ms = 10_000,
): Promise<Uint8Array[]> {
  const files = await waitFor(async () => {
    const f = await maildirFiles(mailbox);
    return f.length >= count ? f : undefined;
  }, ms);
  return await Promise.all(files.map((f) => Deno.readFile(f)));
}

/** mulberry32: a small seeded PRNG, so a failing run can be repeated. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Reads a connection until the peer closes it; everything it said, as text. */
export async function readAll(conn: Deno.Conn): Promise<string> {
  let out = "";
  const decoder = new TextDecoder();
  for await (const chunk of conn.readable) out += decoder.decode(chunk, { stream: true });
  return out;
}

/** Sends raw bytes over TCP after the banner and returns everything the server says until it closes. */
export async function rawExchange(port: number, bytes: Uint8Array | string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const decoder = new TextDecoder();
  const reader = conn.readable.getReader();
  let out = "";
  // The banner first: we are not an early talker.
  while (!out.includes("\r\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    out += decoder.decode(value, { stream: true });
  }
  const writer = conn.writable.getWriter();
  await writer.write(typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes);
  while (true) {
    const { value, done } = await reader.read();
    if (done) break;
    out += decoder.decode(value, { stream: true });
  }
  try {
    conn.close();
  } catch {
    // already closed
  }
  return out;
}

/** Splits a delivered file into the headers tern added and the rest. */
export function splitDelivered(bytes: Uint8Array): { added: string; rest: Uint8Array } {
  const text = new TextDecoder("latin1").decode(bytes);
  // Return-Path, Delivered-To, then the Received field (folded) that tern added.
  const m = /^Return-Path: [^\r]*\r\nDelivered-To: [^\r]*\r\nReceived: [^\r]*(\r\n\t[^\r]*)*\r\n/
    .exec(text);
  if (!m) throw new Error(`Not a tern delivery: ${text.slice(0, 200)}`);
  return { added: m[0], rest: bytes.subarray(m[0].length) };
}

/** A `tern serve` child process. */
export interface ServeProcess {
  child: Deno.ChildProcess;
  port: number;
  /** Everything it has logged so far. */
  log(): string;
  /** SIGKILL, and wait for it to be gone. */
  kill(): Promise<void>;
  /** SIGTERM, and the exit code. */
  stop(): Promise<number>;
}

/** Starts `tern serve --config FILE` as a child process and waits until it listens. */
export async function spawnServe(
  file: string,
  options: { cwd?: string } = {},
): Promise<ServeProcess> {
  const args = [
    "run",
    "-A",
    "--unstable-kv",
    MAIN,
    "serve",
    ...(file === "" ? [] : ["--config", file]),
  ];
  const child = new Deno.Command(Deno.execPath(), {
    args,
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
  }).spawn();
  let text = "";
  const decoder = new TextDecoder();
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) text += decoder.decode(chunk, { stream: true });
  };
  const draining = Promise.all([drain(child.stdout), drain(child.stderr)]);
  const port = await waitFor(() => {
    const m = /server\.listening address=\S+ port=(\d+)/.exec(text);
    return m ? Number(m[1]) : undefined;
  }, 20_000).catch((error) => {
    throw new Error(`tern serve did not start: ${text}`, { cause: error });
  });
  return {
    child,
    port,
    log: () => text,
    async kill() {
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
      await child.status;
      await draining;
    },
    async stop() {
      child.kill("SIGTERM");
      const status = await child.status;
      await draining;
      return status.code;
    },
  };
}

/** Runs `tern <args>` as a child process, with optional stdin. */
export async function tern(
  args: string[],
  stdin?: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-kv", MAIN, ...args],
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(stdin));
    await w.close();
  }
  const out = await child.output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

/** An SMTP server on a free loopback port that accepts every recipient and queues nothing ("Q1"). */
export function sinkServer(options: Partial<SmtpServerOptions> = {}): SmtpServer {
  return new SmtpServer({
    hostname: "mx.example.test",
    address: "127.0.0.1",
    port: 0,
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
