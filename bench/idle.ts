/**
 * Idle SMTP connections for the memory scenario: opens `count` connections
 * to a server, reads each banner, says EHLO and reads the reply, then holds
 * them all open doing nothing. It runs as a process of its own (its own
 * open-file limit, its memory not mixed with the harness's): it prints
 * `ready`, opens the connections when it reads a line, prints `open N` once
 * every connection is idle, and closes them all when its standard input
 * closes.
 *
 * ```sh
 * deno run -A bench/idle.ts --port 2525 --count 1000
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Reads until a complete reply (its last line has a space after the code). */
async function readReply(conn: Deno.Conn): Promise<string> {
  const buffer = new Uint8Array(4096);
  let text = "";
  while (true) {
    const n = await conn.read(buffer);
    if (n === null) throw new Error(`connection closed after "${text.trim()}"`);
    text += decoder.decode(buffer.subarray(0, n));
    const lines = text.split("\r\n");
    const last = lines.at(-2);
    if (last !== undefined && /^\d{3} /.test(last)) return text;
  }
}

/**
 * Opens one connection and brings it to the idle state after EHLO.
 *
 * @param port The server's port on 127.0.0.1.
 * @returns The idle connection.
 */
export async function openIdle(port: number): Promise<Deno.Conn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const banner = await readReply(conn);
    if (!banner.startsWith("220")) throw new Error(`banner: ${banner.trim()}`);
    await conn.write(encoder.encode("EHLO idle.bench.test\r\n"));
    const ehlo = await readReply(conn);
    if (!ehlo.startsWith("250")) throw new Error(`EHLO: ${ehlo.trim()}`);
    return conn;
  } catch (error: unknown) {
    conn.close();
    throw error;
  }
}

/**
 * Opens `count` idle connections, `parallel` at a time.
 *
 * @param port The server's port.
 * @param count How many.
 * @param parallel Handshakes in flight at once.
 * @returns The connections.
 */
export async function openMany(port: number, count: number, parallel = 20): Promise<Deno.Conn[]> {
  const conns: Deno.Conn[] = [];
  let next = 0;
  const worker = async () => {
    while (next < count) {
      next++;
      conns.push(await openIdle(port));
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(parallel, count) }, worker));
  } catch (error: unknown) {
    for (const c of conns) c.close();
    throw error;
  }
  return conns;
}

/**
 * One whole transaction of a normal client, timed from connect to the reply
 * to QUIT: banner, EHLO, MAIL, RCPT, DATA, the content, the 250 that says
 * the message is queued, QUIT (one command at a time, no pipelining).
 *
 * @param port The server's port on 127.0.0.1.
 * @param from The reverse-path.
 * @param to The forward-path (a mailbox the server takes).
 * @returns Milliseconds.
 * @throws {Error} On any reply that is not the expected one.
 */
export async function probeTransaction(port: number, from: string, to: string): Promise<number> {
  const started = performance.now();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const expect = async (code: string, command: string | null): Promise<void> => {
      if (command !== null) await conn.write(encoder.encode(command));
      const r = await readReply(conn);
      if (!r.startsWith(code)) throw new Error(`${command?.trim() ?? "banner"}: ${r.trim()}`);
    };
    await expect("220", null);
    await expect("250", "EHLO probe.bench.test\r\n");
    await expect("250", `MAIL FROM:<${from}>\r\n`);
    await expect("250", `RCPT TO:<${to}>\r\n`);
    await expect("354", "DATA\r\n");
    await expect("250", `Subject: probe\r\n\r\nA probe among idle connections.\r\n.\r\n`);
    await expect("221", "QUIT\r\n");
    return performance.now() - started;
  } finally {
    conn.close();
  }
}

/**
 * A child process that holds idle connections: started first (so that the
 * baseline memory is read with it already running: a deno process maps the
 * same binary as tern, which changes how tern's shared pages are divided in
 * PSS), then told to {@linkcode IdleHolder.open} the connections.
 */
export class IdleHolder {
  readonly #child: Deno.ChildProcess;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  readonly #lines: ReadableStreamDefaultReader<string>;
  #text = "";

  private constructor(child: Deno.ChildProcess) {
    this.#child = child;
    this.#stdin = child.stdin.getWriter();
    this.#lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  }

  /**
   * Starts the child (with the hard open-file limit) and waits until it is ready.
   *
   * @param port The server's port on 127.0.0.1.
   * @param count How many connections it will open.
   * @returns The waiting holder.
   */
  static async start(port: number, count: number): Promise<IdleHolder> {
    const child = new Deno.Command("/bin/sh", {
      args: [
        "-c",
        'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"',
        "sh",
        Deno.execPath(),
        "run",
        "-A",
        new URL(import.meta.url).pathname,
        "--port",
        String(port),
        "--count",
        String(count),
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const holder = new IdleHolder(child);
    await holder.#expect(/^ready$/m);
    return holder;
  }

  async #expect(pattern: RegExp): Promise<RegExpExecArray> {
    while (true) {
      const match = pattern.exec(this.#text);
      if (match) return match;
      const { value, done } = await this.#lines.read();
      if (done) {
        await this.#stdin.close().catch(() => {});
        const { code } = await this.#child.status;
        const errors = await new Response(this.#child.stderr).text();
        throw new Error(`Idle connection holder exited (code ${code}): ${errors.trim()}`);
      }
      this.#text += value;
    }
  }

  /**
   * Opens the connections and waits until each has had its EHLO reply.
   *
   * @returns How many are open.
   */
  async open(): Promise<number> {
    await this.#stdin.write(encoder.encode("open\n"));
    return Number((await this.#expect(/^open (\d+)$/m))[1]);
  }

  /**
   * Closes the connections and waits for the child to exit.
   *
   * @returns When it has exited.
   */
  async close(): Promise<void> {
    await this.#stdin.close().catch(() => {});
    await this.#lines.cancel().catch(() => {});
    await this.#child.stderr.cancel().catch(() => {});
    await this.#child.status;
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: { port: { type: "string" }, count: { type: "string" } },
    strict: true,
  });
  const port = Number(values.port);
  const count = Number(values.count ?? 1000);
  console.log("ready");
  const input = Deno.stdin.readable.getReader();
  // Wait for the word "open" (or end of input: nothing to do).
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await input.read();
    if (done) return;
    text += decoder.decode(value);
  }
  const conns = await openMany(port, count);
  console.log(`open ${conns.length}`);
  // Hold until the harness closes our standard input.
  while (!(await input.read()).done) { /* wait */ }
  for (const c of conns) {
    try {
      c.close();
    } catch {
      // closed by the server
    }
  }
}

if (import.meta.main) await main();
