/**
 * A small SMTP load generator for the benchmarks: `sessions` connections,
 * each sending its share of `messages` with PIPELINING (MAIL, RCPT and DATA
 * in one write, the content after 354), timing each message from the end of
 * its data to the 250 reply.
 *
 * @module
 */

/** What {@linkcode runLoad} sends. */
export interface LoadOptions {
  /** Server address. */
  readonly host: string;
  /** Server port. */
  readonly port: number;
  /** Messages in all. */
  readonly messages: number;
  /** Concurrent sessions. */
  readonly sessions: number;
  /** Size of each message's content in octets. */
  readonly size: number;
  /** The recipient of every message. */
  readonly recipient: string;
}

/** What {@linkcode runLoad} measured. */
export interface LoadResult {
  /** Messages acknowledged with 250. */
  readonly accepted: number;
  /** Messages refused. */
  readonly refused: number;
  /** Milliseconds from the first connection to the last 250. */
  readonly elapsedMs: number;
  /** End of data to 250, per message, in ms, sorted. */
  readonly latenciesMs: readonly number[];
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Builds a message of about `size` octets: headers, then 76-character lines. */
export function makeMessage(size: number, n: number): Uint8Array {
  const head = `From: <load@bench.test>\r\nTo: <sink@bench.test>\r\nSubject: load ${n}\r\n\r\n`;
  const lines: string[] = [];
  let length = head.length;
  while (length + 78 <= size) {
    lines.push("x".repeat(76));
    length += 78;
  }
  return encoder.encode(head + lines.join("\r\n") + (lines.length ? "\r\n" : "") + ".\r\n");
}

class ReplyReader {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #buffer = "";
  constructor(conn: Deno.Conn) {
    this.#reader = conn.readable.getReader();
  }
  /** Reads one whole reply (multi-line aware); returns its code. */
  async next(): Promise<number> {
    while (true) {
      let start = 0;
      let nl: number;
      while ((nl = this.#buffer.indexOf("\r\n", start)) >= 0) {
        const line = this.#buffer.slice(start, nl);
        start = nl + 2;
        if (line[3] !== "-") {
          this.#buffer = this.#buffer.slice(start);
          return Number(line.slice(0, 3));
        }
      }
      const { value, done } = await this.#reader.read();
      if (done) throw new Error("connection closed");
      this.#buffer += decoder.decode(value);
    }
  }
  release(): void {
    this.#reader.releaseLock();
  }
}

async function session(
  options: LoadOptions,
  count: number,
  first: number,
  latencies: number[],
): Promise<[number, number]> {
  const conn = await Deno.connect({ hostname: options.host, port: options.port });
  const replies = new ReplyReader(conn);
  let accepted = 0;
  let refused = 0;
  try {
    if (await replies.next() !== 220) throw new Error("no greeting");
    await conn.write(encoder.encode("EHLO load.bench.test\r\n"));
    await replies.next();
    for (let i = 0; i < count; i++) {
      await conn.write(
        encoder.encode(`MAIL FROM:<load@bench.test>\r\nRCPT TO:<${options.recipient}>\r\nDATA\r\n`),
      );
      const mail = await replies.next();
      const rcpt = await replies.next();
      const data = await replies.next();
      if (mail !== 250 || rcpt !== 250 || data !== 354) {
        refused++;
        if (data === 354) await conn.write(encoder.encode(".\r\n"));
        if (data === 354) await replies.next();
        await conn.write(encoder.encode("RSET\r\n"));
        await replies.next();
        continue;
      }
      await conn.write(makeMessage(options.size, first + i));
      const sent = performance.now();
      const code = await replies.next();
      latencies.push(performance.now() - sent);
      if (code === 250) accepted++;
      else refused++;
    }
    await conn.write(encoder.encode("QUIT\r\n"));
    await replies.next().catch(() => 0);
  } finally {
    replies.release();
    try {
      conn.close();
    } catch {
      // closed by the server
    }
  }
  return [accepted, refused];
}

/**
 * Sends the load and measures it.
 *
 * @param options What to send where.
 * @returns The counts, the time taken and the latencies.
 */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const latencies: number[] = [];
  const per = Math.floor(options.messages / options.sessions);
  const extra = options.messages % options.sessions;
  const started = performance.now();
  const results = await Promise.all(
    Array.from({ length: options.sessions }, (_, s) => {
      const count = per + (s < extra ? 1 : 0);
      return session(options, count, s * (per + 1), latencies);
    }),
  );
  const elapsedMs = performance.now() - started;
  latencies.sort((a, b) => a - b);
  return {
    accepted: results.reduce((n, [a]) => n + a, 0),
    refused: results.reduce((n, [, r]) => n + r, 0),
    elapsedMs,
    latenciesMs: latencies,
  };
}
