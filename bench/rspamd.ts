/**
 * rspamd as the milter of the `milter` scenario: a private instance per
 * run, with its own configuration, pid file and log under the run's
 * directory, the same configuration whichever MTA it serves, stopped
 * afterwards.
 *
 * rspamd's proxy worker in milter mode scans each message itself
 * (`self_scan`, no separate normal worker), with the stock rules and
 * modules, except: a TLD list of five names (the full list takes half a
 * minute to compile at each start), no Redis (the modules that need it stay
 * off), and DNS through a private dnsmasq on loopback that answers every
 * name at once with NXDOMAIN, so no lookup waits for the Internet and the
 * scan costs the same for both MTAs. Its milter headers (`X-Spam-Status`,
 * `X-Spamd-Result`, `X-Rspamd-*`) go on every message, also on mail from
 * loopback, so that each delivered message shows it was scanned.
 *
 * rspamd's main process starts as root and its worker drops to `_rspamd`
 * (`-u`/`-g`, as Debian's service does); the files it reads belong to that
 * user.
 *
 * @module
 */

import { join } from "node:path";
import { StubResolver } from "../dns/resolver.ts";
import { freePort } from "./_net.ts";
import { stopChild } from "./_process.ts";
import { treeCpuSeconds } from "./memory.ts";

/** Debian's rspamd package. */
export const RSPAMD = "/usr/bin/rspamd";
/** Debian's dnsmasq package (rspamd's DNS). */
export const DNSMASQ = "/usr/sbin/dnsmasq";
/** The user Debian's package runs rspamd's workers as. */
const RSPAMD_USER = "_rspamd";

/**
 * Which of rspamd's milter sockets the MTAs use: TCP on loopback, or the
 * UNIX-domain socket of the same worker.
 */
export type MilterSocket = "inet" | "unix";

/** How the private rspamd runs. */
export interface RspamdOptions {
  /** A directory of its own (config, pid file, logs); made `_rspamd`'s. */
  readonly dir: string;
  /** Proxy worker processes (`count`). @default {1} */
  readonly workers?: number;
}

/**
 * The `rspamd.conf` of the private instance.
 *
 * @param dir Its directory.
 * @param port The milter port on 127.0.0.1.
 * @param nameserver `ip:port` of the private DNS.
 * @param workers Proxy worker processes.
 * @returns The file's text.
 */
export function rspamdConf(
  dir: string,
  port: number,
  nameserver: string,
  workers: number,
): string {
  return `# A private rspamd for tern's benchmarks (bench/rspamd.ts).
.include "$CONFDIR/common.conf"
options {
  pidfile = "${join(dir, "rspamd.pid")}";
  # Five TLDs: the full list takes half a minute to compile at each start.
  url_tld = "${join(dir, "tld.dat")}";
  # A private dnsmasq answering NXDOMAIN at once: no scan waits for the Internet.
  dns { nameserver = ["${nameserver}"]; timeout = 1s; retransmits = 1; }
}
logging { type = "file"; filename = "${join(dir, "rspamd.log")}"; level = "error"; }
# Only the proxy, in milter mode, scanning itself: the one process that does the work.
worker "rspamd_proxy" {
  bind_socket = "127.0.0.1:${port}";
  # The same worker on a UNIX socket too; smtpd runs as postfix and must write to it.
  bind_socket = "${socketPath(dir)} mode=0666";
  milter = yes;
  timeout = 120s;
  upstream "local" { default = yes; self_scan = yes; }
  count = ${workers};
  reject_message = "Spam message rejected";
}
`;
}

/**
 * `local.d/milter_headers.conf`: rspamd's header fields on every message,
 * loopback mail included (it skips "local" mail by default).
 */
const MILTER_HEADERS =
  `use = ["x-spam-status", "x-spamd-result", "x-rspamd-queue-id", "x-rspamd-server"];
skip_local = false;
skip_authenticated = false;
`;

/**
 * `local.d/actions.conf`: no greylisting (it needs Redis, which this rspamd
 * has not, and the load is the same message again and again); the other
 * thresholds are rspamd's.
 */
const ACTIONS = `greylist = null;
`;

/** The milter's UNIX socket in the instance's directory. */
function socketPath(dir: string): string {
  return join(dir, "milter.sock");
}

/** A running private rspamd and its DNS. */
export class Rspamd {
  /** The milter port on 127.0.0.1. */
  readonly port: number;
  /** `127.0.0.1:PORT`, for tern's `milters:`. */
  readonly address: string;
  /** `inet:127.0.0.1:PORT`, for Postfix's `smtpd_milters`. */
  readonly milter: string;
  /** The same worker's UNIX socket, `unix:PATH` (both tern and Postfix read this form). */
  readonly unixMilter: string;
  /** Its directory. */
  readonly dir: string;
  readonly #rspamd: Deno.ChildProcess;
  readonly #dns: Deno.ChildProcess;

  private constructor(
    rspamd: Deno.ChildProcess,
    dns: Deno.ChildProcess,
    dir: string,
    port: number,
  ) {
    this.#rspamd = rspamd;
    this.#dns = dns;
    this.dir = dir;
    this.port = port;
    this.address = `127.0.0.1:${port}`;
    this.milter = `inet:127.0.0.1:${port}`;
    this.unixMilter = `unix:${socketPath(dir)}`;
  }

  /**
   * The milter's address as an MTA's configuration writes it.
   *
   * @param socket TCP or the UNIX socket.
   * @param mta Whose configuration: tern's `milters:` or Postfix's `smtpd_milters`.
   * @returns The address.
   */
  addressFor(socket: MilterSocket, mta: "tern" | "postfix"): string {
    if (socket === "unix") return this.unixMilter;
    return mta === "tern" ? this.address : this.milter;
  }

  /** rspamd's main process (its workers are its children). */
  get pid(): number {
    return this.#rspamd.pid;
  }

  /**
   * CPU seconds of rspamd's main process and workers (its exited children
   * included). The DNS server's is not counted: an MTA's resolver is not
   * part of it either, and it only answers NXDOMAIN.
   *
   * @returns The seconds so far.
   */
  cpuSeconds(): Promise<number> {
    return treeCpuSeconds(this.#rspamd.pid);
  }

  /** The tail of rspamd's log (and of its stderr), for error messages. */
  async logTail(lines = 8): Promise<string> {
    const read = (name: string) => Deno.readTextFile(join(this.dir, name)).catch(() => "");
    const text = `${await read("rspamd.log")}\n${await read("out.log")}`.trim();
    return text.split("\n").slice(-lines).join(" / ");
  }

  /**
   * Writes the configuration, starts dnsmasq and `rspamd -f`; resolves once
   * the milter port accepts connections.
   *
   * @param options Where and how.
   * @returns The running rspamd.
   * @throws {Error} When rspamd or dnsmasq is missing, or rspamd does not listen in time (with its log).
   */
  static async start(options: RspamdOptions): Promise<Rspamd> {
    for (const [path, pkg] of [[RSPAMD, "rspamd"], [DNSMASQ, "dnsmasq"]]) {
      try {
        await Deno.stat(path!);
      } catch {
        throw new Error(
          `${path} is missing: the milter scenario needs Debian's ${pkg} (apt-get install ${pkg})`,
        );
      }
    }
    const dir = options.dir;
    const local = join(dir, "local");
    await Deno.mkdir(join(local, "local.d"), { recursive: true });
    await Deno.mkdir(join(dir, "db"), { recursive: true });
    await Deno.writeTextFile(join(dir, "tld.dat"), "com\norg\nnet\ntest\nexample\n");
    await Deno.writeTextFile(join(local, "local.d", "milter_headers.conf"), MILTER_HEADERS);
    await Deno.writeTextFile(join(local, "local.d", "actions.conf"), ACTIONS);
    const dnsPort = freePort();
    const dns = startDnsmasq(dnsPort, dir);
    // rspamd marks a nameserver that does not answer its first queries as down for a while.
    await waitForDns(dnsPort, dns);
    const port = freePort();
    await Deno.writeTextFile(
      join(dir, "rspamd.conf"),
      rspamdConf(dir, port, `127.0.0.1:${dnsPort}`, options.workers ?? 1),
    );
    const uid = await idOf("-u");
    const gid = await idOf("-g");
    await chownTree(dir, uid, gid);
    const child = new Deno.Command("/bin/sh", {
      args: [
        "-c",
        'exec "$@" >>"$BENCH_LOG" 2>&1',
        "sh",
        RSPAMD,
        "-f",
        "-u",
        RSPAMD_USER,
        "-g",
        RSPAMD_USER,
        "-c",
        join(dir, "rspamd.conf"),
        "--var",
        `LOCAL_CONFDIR=${local}`,
        "--var",
        `DBDIR=${join(dir, "db")}`,
        "--var",
        `RUNDIR=${dir}`,
      ],
      env: { BENCH_LOG: join(dir, "out.log") },
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const rspamd = new Rspamd(child, dns, dir, port);
    let exited = false;
    child.status.then(() => exited = true);
    const end = performance.now() + 60_000;
    while (true) {
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port })).close();
        (await Deno.connect({ transport: "unix", path: socketPath(dir) })).close();
        return rspamd;
      } catch (error: unknown) {
        if (exited || performance.now() > end) {
          const log = await rspamd.logTail();
          await rspamd.stop();
          throw new Error(
            `rspamd does not listen on 127.0.0.1:${port} (${
              exited ? "it exited" : String(error)
            }): ${log}`,
          );
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  /**
   * SIGTERM to rspamd and dnsmasq, then SIGKILL if they have not exited in 10 s.
   *
   * @returns When both have exited.
   */
  async stop(): Promise<void> {
    await Promise.all([stopChild(this.#rspamd), stopChild(this.#dns)]);
  }
}

/**
 * dnsmasq on a loopback port, with no upstream and every name local
 * (`--local=/#/`): NXDOMAIN for everything, at once. In the foreground
 * (`--keep-in-foreground`) but not `--no-daemon`: that debug mode serves
 * TCP queries in its one process, and rspamd keeps TCP connections to its
 * nameservers open, which then starves every UDP query.
 */
function startDnsmasq(port: number, dir: string): Deno.ChildProcess {
  return new Deno.Command(DNSMASQ, {
    args: [
      "--keep-in-foreground",
      "--conf-file=/dev/null",
      "--no-resolv",
      "--no-hosts",
      "--bind-interfaces",
      "--listen-address=127.0.0.1",
      `--port=${port}`,
      "--user=root",
      `--pid-file=${join(dir, "dnsmasq.pid")}`,
      "--local=/#/",
    ],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
}

/**
 * Waits until dnsmasq answers a query (NXDOMAIN, as it answers everything).
 *
 * @throws {Error} When it exits or does not answer within 10 s.
 */
async function waitForDns(port: number, dns: Deno.ChildProcess): Promise<void> {
  let exited = false;
  dns.status.then(() => exited = true);
  const probe = new StubResolver({
    nameservers: [`127.0.0.1:${port}`],
    timeoutMs: 200,
    attempts: 1,
    cacheSize: 0,
  });
  const end = performance.now() + 10_000;
  while (!exited && performance.now() < end) {
    const answer = await probe.query("bench.test", "A").catch(() => null);
    if (answer !== null) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`dnsmasq does not answer on 127.0.0.1:${port}${exited ? " (it exited)" : ""}`);
}

async function chownTree(dir: string, uid: number, gid: number): Promise<void> {
  await Deno.chown(dir, uid, gid);
  await Deno.chmod(dir, 0o755);
  for await (const entry of Deno.readDir(dir)) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) await chownTree(path, uid, gid);
    else await Deno.chown(path, uid, gid);
  }
}

async function idOf(flag: "-u" | "-g"): Promise<number> {
  const out = await new Deno.Command("id", {
    args: [flag, RSPAMD_USER],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(
      `user ${RSPAMD_USER} is missing (Debian's rspamd package creates it): ${
        new TextDecoder().decode(out.stderr).trim()
      }`,
    );
  }
  return Number(new TextDecoder().decode(out.stdout).trim());
}
