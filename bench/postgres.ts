/**
 * A private PostgreSQL 15 cluster for the `local-pg*` scenarios: initdb in a
 * directory of the run (owned by the `postgres` user, since initdb and the
 * server refuse root), listening on 127.0.0.1 on a free port, trust
 * authentication on loopback, stopped and removed with the run.
 *
 * Tuned as a dedicated queue database would be, never at the cost of
 * durability: `fsync = on`, `synchronous_commit = on` (tern sets it on every
 * connection anyway), `full_page_writes = on`; `shared_buffers` and
 * `wal_buffers` sized so that the working set and a burst of commits stay in
 * memory; `commit_delay` lets a commit wait a few microseconds for others to
 * share its WAL flush (group commit in the server) when enough transactions
 * are open; checkpoints spaced out so that none lands in a run.
 *
 * Needs the Debian package postgresql-15.
 *
 * @module
 */

import { join } from "node:path";
import { freePort } from "./_net.ts";
import { treeCpuSeconds } from "./memory.ts";
import { Tern } from "./tern.ts";

const BIN = "/usr/lib/postgresql/15/bin";
const USER = "postgres";

/** The server settings of the bench's cluster (`-c name=value`). */
export const PG_SETTINGS: Readonly<Record<string, string>> = {
  // Durability stays as PostgreSQL ships it (RFC 5321 §6.1: 250 only once on disk).
  fsync: "on",
  synchronous_commit: "on",
  full_page_writes: "on",
  wal_sync_method: "fdatasync",
  // Memory: the queue's working set is small; a real deployment gives a quarter of RAM.
  shared_buffers: "256MB",
  wal_buffers: "16MB",
  // Group commit in the server: with 3 or more other transactions open, a commit
  // waits 200 µs so that one WAL flush covers several commits.
  commit_delay: "200",
  commit_siblings: "3",
  // No checkpoint in the middle of a run.
  max_wal_size: "4GB",
  checkpoint_timeout: "30min",
  max_connections: "200",
  // Per-statement statistics, for profiling (`pg_stat_statements`).
  shared_preload_libraries: "pg_stat_statements",
};

/** A running cluster. */
export class PgCluster {
  /** `postgres://postgres@127.0.0.1:PORT/postgres`. */
  readonly url: string;
  /** The port on 127.0.0.1. */
  readonly port: number;
  /** The cluster's directory (data, socket, log). */
  readonly dir: string;
  #running = true;

  private constructor(dir: string, port: number) {
    this.dir = dir;
    this.port = port;
    this.url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  }

  /**
   * Creates a cluster in `dir` (made here) and starts it.
   *
   * @param dir A directory that does not exist yet; its parent must be traversable by `postgres`.
   * @param settings Overrides of {@linkcode PG_SETTINGS}.
   * @returns The running cluster.
   * @throws {Error} When PostgreSQL 15 is missing or does not start (with its log's tail).
   */
  static async start(
    dir: string,
    settings: Readonly<Record<string, string>> = {},
  ): Promise<PgCluster> {
    try {
      await Deno.stat(join(BIN, "initdb"));
    } catch {
      throw new Error(
        `PostgreSQL 15 is not installed (${BIN}/initdb): apt-get install postgresql-15`,
      );
    }
    await Deno.mkdir(dir, { recursive: true, mode: 0o755 });
    if (Deno.uid() === 0) await run("chown", [USER, dir], false);
    await run(join(BIN, "initdb"), [
      "-D",
      join(dir, "data"),
      "-U",
      "postgres",
      "--auth=trust",
      "--no-sync",
      "-E",
      "UTF8",
      "--locale=C",
    ], true);
    const port = freePort();
    const all: Record<string, string> = {
      ...PG_SETTINGS,
      ...settings,
      listen_addresses: "127.0.0.1",
      port: String(port),
      unix_socket_directories: dir,
    };
    const conf = Object.entries(all).map(([k, v]) => `${k} = '${v}'`).join("\n") + "\n";
    await Deno.writeTextFile(join(dir, "data", "postgresql.auto.conf"), conf, { append: true });
    const cluster = new PgCluster(dir, port);
    try {
      await cluster.#ctl(["start", "-w", "-t", "60"]);
      await cluster.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
    } catch (error: unknown) {
      const log = await Deno.readTextFile(join(dir, "server.log")).catch(() => "");
      await cluster.stop().catch(() => {});
      throw new Error(
        `Cannot start PostgreSQL: ${error instanceof Error ? error.message : String(error)}\n${
          log.split("\n").slice(-10).join("\n")
        }`,
      );
    }
    return cluster;
  }

  /** The postmaster's pid: the root of the server's process tree (for its CPU time). */
  async pid(): Promise<number> {
    const text = await Deno.readTextFile(join(this.dir, "data", "postmaster.pid"));
    return Number(text.split("\n")[0]);
  }

  /**
   * Runs SQL with psql over the cluster's socket.
   *
   * @param sql One or more statements.
   * @returns psql's output (unaligned, tuples only).
   */
  psql(sql: string): Promise<string> {
    return run(join(BIN, "psql"), [
      "-h",
      this.dir,
      "-p",
      String(this.port),
      "-U",
      "postgres",
      "-X",
      "-A",
      "-t",
      "-v",
      "ON_ERROR_STOP=1",
      "-c",
      sql,
    ], true);
  }

  /** The statements that took the most time since start (`pg_stat_statements`), as text. */
  topStatements(limit = 12): Promise<string> {
    return this.psql(
      `SELECT calls, round(total_exec_time::numeric, 1) AS ms, round(mean_exec_time::numeric, 3),
         wal_records, left(regexp_replace(query, '\\s+', ' ', 'g'), 140)
       FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT ${limit}`,
    );
  }

  /** Stops the server (`-m fast`); the files stay until the run's directory goes. */
  async stop(): Promise<void> {
    if (!this.#running) return;
    this.#running = false;
    await this.#ctl(["stop", "-m", "fast", "-w", "-t", "60"]);
  }

  #ctl(args: string[]): Promise<string> {
    return run(
      join(BIN, "pg_ctl"),
      ["-D", join(this.dir, "data"), "-l", join(this.dir, "server.log"), ...args],
      true,
    );
  }
}

/** Runs a command (as `postgres` when asked and root), returns its stdout or throws with its stderr. */
async function run(command: string, args: string[], asUser: boolean): Promise<string> {
  const [cmd, argv] = asUser && Deno.uid() === 0
    ? ["runuser", ["-u", USER, "--", command, ...args]]
    : [command, args];
  const out = await new Deno.Command(cmd, {
    args: argv,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  if (!out.success) {
    throw new Error(
      `${command} ${args.join(" ")} failed: ${d.decode(out.stderr)}${d.decode(out.stdout)}`,
    );
  }
  return d.decode(out.stdout);
}

/** What the bench needs of tern nodes on a PostgreSQL store (an `Instance` of main.ts). */
export interface PgTernOptions {
  /** The run's directory: the cluster, each node's files and the shared mail root go in it. */
  readonly dir: string;
  /** How many tern nodes: 1 on 127.0.0.1, or more on 127.0.0.2, .3, ... */
  readonly nodes: number;
  /** The local domain. */
  readonly localDomain: string;
  /** Relay routes, as for one tern. */
  readonly routes: Readonly<Record<string, string>>;
  /** Extra flags for `deno run` of every node. */
  readonly denoFlags: readonly string[];
}

/** tern nodes sharing one PostgreSQL store and one mail root, seen as one MTA. */
export class PgTern {
  /** The first node's pid. */
  readonly pid: number;
  /** The first node's port. */
  readonly port: number;
  /** Every node's listener: the load is spread over them. */
  readonly targets: readonly { host: string; port: number }[];
  /** The cluster. */
  readonly cluster: PgCluster;
  readonly #nodes: readonly Tern[];
  readonly #dir: string;

  private constructor(cluster: PgCluster, nodes: readonly Tern[], dir: string) {
    this.cluster = cluster;
    this.#nodes = nodes;
    this.#dir = dir;
    this.pid = nodes[0]!.pid;
    this.port = nodes[0]!.port;
    this.targets = nodes.map((n) => ({ host: n.address, port: n.port }));
  }

  /**
   * Starts a cluster in `DIR/pg`, then the nodes (one after the other: the
   * first creates the tables).
   *
   * @param options Where and how many.
   * @returns The running nodes and their store.
   */
  static async start(options: PgTernOptions): Promise<PgTern> {
    const cluster = await PgCluster.start(join(options.dir, "pg"));
    const nodes: Tern[] = [];
    try {
      const mailRoot = join(options.dir, "mail");
      for (let i = 0; i < options.nodes; i++) {
        const address = options.nodes === 1 ? "127.0.0.1" : `127.0.0.${i + 2}`;
        nodes.push(
          await Tern.start({
            dir: join(options.dir, `node${i + 1}`),
            address,
            port: freePort(),
            localDomain: options.localDomain,
            routes: options.routes,
            denoFlags: options.denoFlags,
            mailRoot,
            queueStore: cluster.url,
            // Every message through the store: these scenarios measure it.
            deliverAtAcceptance: false,
          }),
        );
      }
    } catch (error: unknown) {
      for (const node of nodes) await node.stop();
      await cluster.stop().catch(() => {});
      throw error;
    }
    return new PgTern(cluster, nodes, options.dir);
  }

  /**
   * CPU seconds of every node and of the whole PostgreSQL server (postmaster,
   * backends, WAL writer, checkpointer, and the children it reaped).
   */
  async cpuSeconds(): Promise<number> {
    let total = await this.serverCpuSeconds();
    for (const node of this.#nodes) total += await treeCpuSeconds(node.pid);
    return total;
  }

  /** CPU seconds of the PostgreSQL server alone. */
  async serverCpuSeconds(): Promise<number> {
    return await treeCpuSeconds(await this.cluster.pid());
  }

  /**
   * The Maildir `new/` of a local address, in the shared mail root.
   *
   * @param address `local@domain`.
   * @returns The directory.
   */
  newDir(address: string): string {
    return this.#nodes[0]!.newDir(address);
  }

  /** Stops the nodes, saves `pg_stat_statements` into `DIR/pg/statements.txt`, stops the server. */
  async stop(): Promise<void> {
    await Promise.all(this.#nodes.map((n) => n.stop()));
    const top = await this.cluster.topStatements(20).catch((e: unknown) => String(e));
    const wal = await this.cluster.psql(
      `SELECT 'wal: records ' || wal_records || ', bytes ' || wal_bytes || ', writes ' ||
         wal_write || ', syncs ' || wal_sync || '; commits ' ||
         (SELECT sum(xact_commit) FROM pg_stat_database) FROM pg_stat_wal`,
    ).catch((e: unknown) => String(e));
    await Deno.writeTextFile(join(this.#dir, "pg", "statements.txt"), wal + top)
      .catch(() => {});
    await this.cluster.stop();
  }
}
