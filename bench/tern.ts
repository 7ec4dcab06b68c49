/**
 * Starts and stops `tern serve` for the benchmarks: a configuration file, a
 * data directory and a mail root of its own under a bench directory, one mx
 * listener on a loopback port, its log written to a file.
 *
 * @module
 */

import { join } from "node:path";
import { waitForBanner } from "./_net.ts";
import { stopChild } from "./_process.ts";
import denoJson from "../deno.json" with { type: "json" };

/**
 * The V8 flags tern runs with: those of `deno task start` (the compiled
 * binary has the same, a test checks it), so that the bench measures tern
 * as it is run.
 */
export const TERN_V8_FLAGS: readonly string[] = denoJson.tasks.start.split(/\s+/).filter((word) =>
  word.startsWith("--v8-flags=")
);

/** The tern CLI entry point. */
export const TERN_MAIN: string = new URL("../main.ts", import.meta.url).pathname;

/** How tern is configured for a benchmark. */
export interface TernOptions {
  /** A directory of its own: config, data, mail and log go in it. */
  readonly dir: string;
  /** The mx listener's port. */
  readonly port: number;
  /** The mx listener's address. @default {"127.0.0.1"} */
  readonly address?: string;
  /** `mail_root`, when several nodes share one. @default {DIR/mail} */
  readonly mailRoot?: string;
  /** `queue.store`: a `postgres://` URL. @default {Deno KV in DIR/data} */
  readonly queueStore?: string;
  /**
   * `queue.deliver_at_acceptance`: `false` makes local mail go through the
   * store, for the scenarios that measure the store. @default {tern's default, true}
   */
  readonly deliverAtAcceptance?: boolean;
  /** The local domain (mail to any local part of it lands in a Maildir). */
  readonly localDomain: string;
  /** Next hops by recipient domain, `"host:port"` (no MX lookup). */
  readonly routes?: Readonly<Record<string, string>>;
  /** `limits.max_connections` and `limits.max_connections_per_ip`. @default {12000} */
  readonly maxConnections?: number;
  /** `queue.retry`, e.g. `["1h"]`. @default {tern's default} */
  readonly retry?: readonly string[];
  /** Extra flags for `deno run`, e.g. `["--cpu-prof"]`. @default {[]} */
  readonly denoFlags?: readonly string[];
  /** `dkim.keys`: mail from the trusted load is signed by these. @default {none} */
  readonly dkimKeys?: readonly { domain: string; selector: string; key: string }[];
  /** `milters`: addresses (`host:port`) every message is passed to. @default {none} */
  readonly milters?: readonly string[];
  /** `workers` of its configuration. @default {its default, `auto`} */
  readonly workers?: number;
  /** The cores tern may run on (`taskset -c`), from its start. @default {every core} */
  readonly cpus?: string;
}

/**
 * The configuration file tern gets, as an object (written as JSON, which is
 * YAML too).
 *
 * @param options The benchmark's settings.
 * @returns The `tern.yaml` content.
 */
export function ternConfig(options: TernOptions): Record<string, unknown> {
  const max = options.maxConnections ?? 12_000;
  return {
    hostname: "tern.bench.test",
    data_dir: join(options.dir, "data"),
    mail_root: options.mailRoot ?? join(options.dir, "mail"),
    listeners: [{ address: options.address ?? "127.0.0.1", port: options.port, mode: "mx" }],
    local_domains: [options.localDomain],
    relay: {
      // The load comes from loopback; tern does no client DNS lookups at all.
      trusted_networks: ["127.0.0.0/8"],
      routes: { ...(options.routes ?? {}) },
    },
    ...(options.retry || options.queueStore || options.deliverAtAcceptance !== undefined
      ? {
        queue: {
          ...(options.retry ? { retry: options.retry } : {}),
          ...(options.queueStore ? { store: options.queueStore } : {}),
          ...(options.deliverAtAcceptance === undefined
            ? {}
            : { deliver_at_acceptance: options.deliverAtAcceptance }),
        },
      }
      : {}),
    // The load comes from a trusted network: tern signs it when a key covers its From: domain.
    ...(options.dkimKeys ? { dkim: { keys: options.dkimKeys.map((k) => ({ ...k })) } } : {}),
    ...(options.milters ? { milters: [...options.milters] } : {}),
    // Raised so that 10,000 idle connections from one address are accepted
    // (idle-10k), however the kernel spreads them among session workers.
    limits: { max_connections: max, max_connections_per_ip: max },
    log: { level: "info", format: "text" },
    ...(options.workers === undefined ? {} : { workers: options.workers }),
  };
}

/**
 * Runs a `tern` CLI command (`queue list`, ...) on a config file.
 *
 * @param args The command words and flags, e.g. `["queue", "list", "--config", FILE]`.
 * @returns The command, for the caller to spawn or run.
 */
export function ternCommand(args: readonly string[]): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-kv", ...TERN_V8_FLAGS, TERN_MAIN, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

/** A running `tern serve`. */
export class Tern {
  /** The deno process's pid (the whole of tern: one process). */
  readonly pid: number;
  /** The listener's port. */
  readonly port: number;
  /** The listener's address. */
  readonly address: string;
  /** The config file. */
  readonly configFile: string;
  /** `data_dir`: holds `queue.sqlite3`. */
  readonly dataDir: string;
  /** `mail_root`. */
  readonly mailRoot: string;
  /** stdout and stderr of tern. */
  readonly logFile: string;
  readonly #child: Deno.ChildProcess;

  private constructor(child: Deno.ChildProcess, options: TernOptions, configFile: string) {
    this.#child = child;
    this.pid = child.pid;
    this.port = options.port;
    this.address = options.address ?? "127.0.0.1";
    this.configFile = configFile;
    this.dataDir = join(options.dir, "data");
    this.mailRoot = options.mailRoot ?? join(options.dir, "mail");
    this.logFile = join(options.dir, "tern.log");
  }

  /**
   * Writes the config and starts `tern serve`; resolves once it greets.
   *
   * @param options Where and how.
   * @returns The running tern.
   * @throws {Error} When it exits or does not greet in time (with its log's tail).
   */
  static async start(options: TernOptions): Promise<Tern> {
    await Deno.mkdir(options.dir, { recursive: true });
    const configFile = join(options.dir, "tern.yaml");
    await Deno.writeTextFile(configFile, JSON.stringify(ternConfig(options), null, 2) + "\n");
    const logFile = join(options.dir, "tern.log");
    // sh raises the open-file limit to the hard limit (1,000 connections
    // need 1,000 descriptors), then execs deno: the pid stays tern's.
    const child = new Deno.Command("/bin/sh", {
      args: [
        "-c",
        'ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@" >>"$BENCH_LOG" 2>&1',
        "sh",
        ...(options.cpus ? ["taskset", "-c", options.cpus] : []),
        Deno.execPath(),
        "run",
        "-A",
        "--unstable-kv",
        ...TERN_V8_FLAGS,
        ...(options.denoFlags ?? []),
        TERN_MAIN,
        "serve",
        "--config",
        configFile,
      ],
      env: { BENCH_LOG: logFile, NO_COLOR: "1" },
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const tern = new Tern(child, options, configFile);
    const exited = child.status.then((s) => {
      throw new Error(`tern serve exited with code ${s.code}`);
    });
    try {
      await Promise.race([
        waitForBanner(options.port, 30_000, options.address ?? "127.0.0.1"),
        exited,
      ]);
      // With session workers the first to listen answers the banner while
      // the others may still be starting, and the load's long sessions would
      // all land on it: the listening line comes once every worker listens.
      await Promise.race([waitForListening(logFile, options.port, 30_000), exited]);
    } catch (error: unknown) {
      await tern.stop();
      const log = await Deno.readTextFile(logFile).catch(() => "");
      throw new Error(
        `Cannot start tern: ${error instanceof Error ? error.message : String(error)}\n${
          log.split("\n").slice(-10).join("\n")
        }`,
      );
    }
    exited.catch(() => {});
    return tern;
  }

  /**
   * The Maildir `new/` of a local address.
   *
   * @param address `local@domain`.
   * @returns The directory where delivered messages appear.
   */
  newDir(address: string): string {
    const [local, domain] = address.split("@") as [string, string];
    return join(this.mailRoot, domain, local, "new");
  }

  /**
   * SIGTERM (graceful stop), then SIGKILL if it has not exited in 20 s.
   *
   * @returns When the process has exited.
   */
  async stop(): Promise<void> {
    await stopChild(this.#child, 20_000);
  }
}

/** Waits until tern's log says the listener on `port` is bound (`server.listening ... port=N`). */
async function waitForListening(logFile: string, port: number, timeoutMs: number): Promise<void> {
  const line = new RegExp(`server\\.listening .*port=${port}( |$)`, "m");
  const deadline = Date.now() + timeoutMs;
  while (!line.test(await Deno.readTextFile(logFile).catch(() => ""))) {
    if (Date.now() > deadline) throw new Error(`no server.listening line for port ${port}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
