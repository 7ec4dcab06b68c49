// Real peers for the relay tests: recording SMTP receivers (Python's
// aiosmtpd, tests/fixtures/receiver.py) and dnsmasq serving MX records, all
// on loopback.

import { join } from "node:path";
import net from "node:net";
import { StubResolver } from "../dns/resolver.ts";
import type { MemoryLogger } from "../log/logger.ts";
import { waitFor } from "./_helpers.ts";

const RECEIVER = new URL("./fixtures/receiver.py", import.meta.url).pathname;

/** A free TCP port on an address (best effort: bound, then released). */
export function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen({ host, port: 0 }, () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

/** What a receiver recorded for one message. */
export interface Received {
  host: string;
  from: string;
  to: string[];
  mail_options: string[];
  rcpt_options: string[];
  tls: boolean;
  peer_port: number;
  data: string;
}

export interface Receiver extends AsyncDisposable {
  host: string;
  port: number;
  /** Every message recorded so far, in order. */
  messages(): Promise<Received[]>;
  /**
   * The same records one at a time, read from the log as they are yielded, so
   * a long run (hundreds of thousands of messages) is never held in memory.
   */
  records(): AsyncGenerator<Received>;
}

/**
 * Yields a receiver's JSON-lines log one record at a time. Read line by line:
 * after a long run the log outgrows the longest string V8 can make (512 MiB).
 * Only a missing log means "nothing yet"; a last line without its newline is
 * still being written and is not yielded.
 */
async function* readLog(log: string): AsyncGenerator<Received> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(log);
  } catch (error: unknown) {
    if (error instanceof Deno.errors.NotFound) return;
    throw error;
  }
  const decoder = new TextDecoder();
  let rest = "";
  // file.readable closes the file when it ends or when the loop is left early.
  for await (const chunk of file.readable) {
    const lines = (rest + decoder.decode(chunk, { stream: true })).split("\n");
    rest = lines.pop() ?? "";
    for (const line of lines) if (line.trim() !== "") yield JSON.parse(line) as Received;
  }
}

/** Starts a recording receiver; `mode` adds STARTTLS (good or broken). */
export async function startReceiver(
  host: string,
  port: number,
  options: { tls?: { cert: string; key: string }; brokenTls?: boolean } = {},
): Promise<Receiver> {
  const dir = await Deno.makeTempDir({ prefix: "tern-receiver-" });
  const log = join(dir, "log.jsonl");
  const args = [RECEIVER, host, String(port), log];
  if (options.tls) {
    args.push(options.brokenTls ? "--broken-tls" : "--tls", options.tls.cert, options.tls.key);
  }
  const child = new Deno.Command("/usr/bin/python3", {
    args,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  })
    .spawn();
  const reader = child.stdout.getReader();
  const { value } = await reader.read();
  if (!new TextDecoder().decode(value).includes("ready")) {
    throw new Error(
      `receiver did not start: ${new TextDecoder().decode((await child.output()).stderr)}`,
    );
  }
  reader.releaseLock();
  return {
    host,
    port,
    async messages() {
      const out: Received[] = [];
      for await (const record of readLog(log)) out.push(record);
      return out;
    },
    records: () => readLog(log),
    async [Symbol.asyncDispose]() {
      await child.stdin.close();
      const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
      await child.output();
      clearTimeout(timer);
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** A self-signed certificate made for the test (never committed). */
export { makeCertificate as testCertificate } from "./_tls.ts";

/**
 * Waits for the line that logs the outcome of a delivery attempt to `to`
 * (`delivery.sent`, `delivery.deferred`, `delivery.bounced`), up to 20 s.
 */
export function deliveryOutcome(
  logger: MemoryLogger,
  to: string,
): Promise<MemoryLogger["records"][number]> {
  return waitFor(
    () =>
      logger.records.find((r) =>
        r.event.startsWith("delivery.") && r.event !== "delivery.error" &&
        r.fields.rcpt === `<${to}>`
      ),
    20_000,
  );
}

/** The messages a receiver recorded for one recipient. */
export async function messagesTo(receiver: Receiver, to: string): Promise<Received[]> {
  return (await receiver.messages()).filter((m) => m.to.includes(to));
}

export interface Dnsmasq extends AsyncDisposable {
  nameserver: string;
}

/** How {@linkcode startDnsmasq} runs. */
export interface DnsmasqOptions {
  /** `--local-ttl`: the TTL of its answers; `null` leaves dnsmasq's own. @default {1} */
  localTtl?: number | null;
  /** A name with an A record among `records`: dnsmasq is ready once it answers it. @default {a short wait} */
  ready?: string;
}

/**
 * dnsmasq on a loopback port with the given records (`--mx-host=...`,
 * `--host-record=...`), answering only for them (`--local=/zone/` for each of
 * `localZones`, no upstream). Tried again on another port when the one drawn
 * was taken meanwhile.
 */
export async function startDnsmasq(
  records: string[],
  localZones: string[] = [],
  options: DnsmasqOptions = {},
): Promise<Dnsmasq> {
  const localTtl = options.localTtl === undefined ? 1 : options.localTtl;
  for (let tries = 0;; tries++) {
    const port = await freePort();
    const dir = await Deno.makeTempDir({ prefix: "tern-dnsmasq-" });
    const child = new Deno.Command("/usr/sbin/dnsmasq", {
      args: [
        // Not --no-daemon: in that mode dnsmasq answers TCP in its one process,
        // and a client keeping a TCP connection open (rspamd does) stalls UDP.
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--listen-address=127.0.0.1",
        `--port=${port}`,
        "--user=root",
        `--pid-file=${dir}/dnsmasq.pid`,
        ...(localTtl === null ? [] : [`--local-ttl=${localTtl}`]),
        ...localZones.map((z) => `--local=/${z}/`),
        ...records,
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
    let exited = false;
    const status = child.status.then((s) => {
      exited = true;
      return s;
    });
    const stop = async () => {
      if (!exited) child.kill("SIGTERM");
      await status;
      await Deno.remove(dir, { recursive: true });
    };
    const nameserver = `127.0.0.1:${port}`;
    if (await isAnswering(nameserver, options.ready, () => exited)) {
      return { nameserver, [Symbol.asyncDispose]: stop };
    }
    await stop();
    if (tries > 5) throw new Error("dnsmasq would not start");
  }
}

/** Waits until dnsmasq answers `ready` (or, without a name, a short while); `false` if it exited or never answered. */
async function isAnswering(
  nameserver: string,
  ready: string | undefined,
  hasExited: () => boolean,
): Promise<boolean> {
  if (ready === undefined) {
    await new Promise((r) => setTimeout(r, 150));
    return !hasExited();
  }
  const probe = new StubResolver({ nameservers: [nameserver], timeoutMs: 100, cacheSize: 0 });
  for (let i = 0; i < 50 && !hasExited(); i++) {
    const answer = await probe.query(ready, "A").catch(() => null);
    if (answer?.kind === "answer") return true;
  }
  return false;
}
