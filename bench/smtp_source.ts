/**
 * Postfix's test tools as load generator and remote MTA: `smtp-source`
 * sends the load, `smtp-sink` plays the next hop of the relay scenario and
 * counts what it receives.
 *
 * @module
 */

import { SMTP_SINK, SMTP_SOURCE } from "./postfix.ts";

/** What {@linkcode runSmtpSource} sends. */
export interface SourceOptions {
  /** Server port. */
  readonly port: number;
  /** Server address. @default {"127.0.0.1"} */
  readonly host?: string;
  /** Parallel sessions (`-s`). */
  readonly sessions: number;
  /** Messages in all (`-m`). */
  readonly messages: number;
  /** Payload octets per message, headers not counted (`-l`). */
  readonly size: number;
  /** Envelope sender (`-f`). */
  readonly from: string;
  /** Recipient (`-t`). */
  readonly to: string;
  /** Give up after this long. @default {600000} */
  readonly timeoutMs?: number;
  /** The cores it may run on (`taskset -c`). @default {every core} */
  readonly cpus?: string;
}

/** What {@linkcode runSmtpSource} measured. */
export interface SourceResult {
  /** Milliseconds from start until smtp-source exited. */
  readonly elapsedMs: number;
  /** `performance.now()` when it started (for delivered rates). */
  readonly startedAt: number;
  /** Messages whose DATA completed, from smtp-source's `-c` counter. */
  readonly completed: number;
}

const decoder = new TextDecoder();

/**
 * Runs `smtp-source -c -d -s N -m M -l SIZE -f FROM -t TO -M HELO
 * 127.0.0.1:PORT`. `-d` keeps each session's connection for all its
 * messages (as a busy MTA-to-MTA link does); smtp-source does not pipeline.
 * It stops at the first reply that is not positive, so all `messages`
 * completing means all were accepted.
 *
 * @param options What to send where.
 * @returns The time taken.
 * @throws {Error} When smtp-source fails or not every message completed.
 */
export async function runSmtpSource(options: SourceOptions): Promise<SourceResult> {
  const args = [
    "-c",
    "-d",
    "-s",
    String(options.sessions),
    "-m",
    String(options.messages),
    "-l",
    String(options.size),
    "-f",
    options.from,
    "-t",
    options.to,
    "-M",
    "client.bench.test",
    `${options.host ?? "127.0.0.1"}:${options.port}`,
  ];
  const startedAt = performance.now();
  const child = new Deno.Command(options.cpus ? "taskset" : SMTP_SOURCE, {
    args: options.cpus ? ["-c", options.cpus, SMTP_SOURCE, ...args] : args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 600_000);
  const { code, stdout, stderr } = await child.output();
  const elapsedMs = performance.now() - startedAt;
  clearTimeout(timer);
  // -c prints the running count, each update ending in a carriage return.
  const counts = decoder.decode(stdout).split(/[\r\n]+/).filter((s) => /^\d+$/.test(s.trim()));
  const completed = Number(counts.at(-1) ?? 0);
  const errors = decoder.decode(stderr).trim();
  if (code !== 0 || completed < options.messages) {
    throw new Error(
      `smtp-source ${args.join(" ")}: exit ${code}, ${completed} of ${options.messages} done${
        errors ? `: ${errors.split("\n").slice(-3).join(" / ")}` : ""
      }`,
    );
  }
  return { elapsedMs, startedAt, completed };
}

/**
 * `smtp-sink` on a loopback port, counting received messages: its `-c`
 * counters (`mesg=N` each time a final "." is received) are read as they
 * are printed.
 */
export class SmtpSink {
  /** The port it listens on. */
  readonly port: number;
  readonly #child: Deno.ChildProcess;
  #received = 0;
  #done: Promise<void>;

  private constructor(port: number, child: Deno.ChildProcess) {
    this.port = port;
    this.#child = child;
    this.#done = this.#read();
  }

  async #read(): Promise<void> {
    let text = "";
    for await (const chunk of this.#child.stdout.pipeThrough(new TextDecoderStream())) {
      text += chunk;
      const last = text.lastIndexOf("mesg=");
      if (last >= 0) {
        const match = /^mesg=(\d+)/.exec(text.slice(last));
        if (match) this.#received = Number(match[1]);
        text = text.slice(last);
      }
    }
  }

  /**
   * Starts `smtp-sink -c -u nobody 127.0.0.1:PORT 1024` (smtp-sink refuses
   * to run as root without `-u`); it accepts up to 1,024 connections at once.
   *
   * @param port The port on 127.0.0.1.
   * @param options `dumpDir`: a directory user nobody can write, where each
   *   message received is dumped to a file of its own (`-d DIR/%H%M%S.`,
   *   smtp-sink appends a random number to the name).
   * @returns The running sink, once it listens.
   */
  static async start(port: number, options: { dumpDir?: string } = {}): Promise<SmtpSink> {
    const dump = options.dumpDir === undefined ? [] : ["-d", `${options.dumpDir}/%H%M%S.`];
    const child = new Deno.Command(SMTP_SINK, {
      args: ["-c", "-m", "1024", "-u", "nobody", ...dump, `127.0.0.1:${port}`, "1024"],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const sink = new SmtpSink(port, child);
    const end = performance.now() + 10_000;
    while (true) {
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port })).close();
        break;
      } catch (error: unknown) {
        if (performance.now() > end) {
          await sink.stop();
          throw new Error(`smtp-sink does not listen on ${port}: ${String(error)}`);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    return sink;
  }

  /** Messages received so far (the connection test above sends none). */
  get received(): number {
    return this.#received;
  }

  /**
   * Stops the sink.
   *
   * @returns When it has exited.
   */
  async stop(): Promise<void> {
    try {
      this.#child.kill("SIGTERM");
    } catch {
      // gone
    }
    await this.#child.status;
    await this.#done.catch(() => {});
  }
}
