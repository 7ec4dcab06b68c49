// A private PostgreSQL 15 cluster for the tests of the PostgreSQL queue store:
// initdb in a temporary directory owned by the unprivileged `postgres` user
// (initdb and the server refuse root), listening on 127.0.0.1 on a free port
// with its Unix socket in that directory, trust authentication for loopback.
// Needs the Debian package postgresql-15.

import { join } from "node:path";

const BIN = "/usr/lib/postgresql/15/bin";
const USER = "postgres";

/** A running cluster. */
export interface PgCluster {
  /** `postgres://postgres@127.0.0.1:PORT/postgres`. */
  readonly url: string;
  readonly port: number;
  /** Stops the server (`pg_ctl stop -m fast`); the data stay. */
  stop(): Promise<void>;
  /** Starts it again on the same port. */
  start(): Promise<void>;
  /** `pg_ctl restart -m fast`. */
  restart(): Promise<void>;
  /** A `postgres://` URL of a new, empty database of this cluster. */
  createDatabase(name: string): Promise<string>;
  /** Stops the server and removes the cluster. */
  [Symbol.asyncDispose](): Promise<void>;
}

async function run(command: string, args: string[], asUser: boolean): Promise<string> {
  const isRoot = Deno.uid() === 0;
  const [cmd, argv] = asUser && isRoot
    ? ["runuser", ["-u", USER, "--", command, ...args]]
    : [command, args];
  const out = await new Deno.Command(cmd, { args: argv, stdout: "piped", stderr: "piped" })
    .output();
  const d = new TextDecoder();
  if (!out.success) {
    throw new Error(
      `${command} ${args.join(" ")} failed: ${d.decode(out.stderr)}${d.decode(out.stdout)}`,
    );
  }
  return d.decode(out.stdout);
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Starts a fresh cluster; dispose of it with `await using`. */
export async function startPostgres(): Promise<PgCluster> {
  try {
    await Deno.stat(join(BIN, "initdb"));
  } catch {
    throw new Error(
      `PostgreSQL 15 is not installed (${BIN}/initdb): apt-get install postgresql-15`,
    );
  }
  const dir = await Deno.makeTempDir({ prefix: "tern-pg-" });
  await Deno.chmod(dir, 0o755);
  const data = join(dir, "data");
  if (Deno.uid() === 0) await run("chown", [USER, dir], false);
  await run(join(BIN, "initdb"), [
    "-D",
    data,
    "-U",
    "postgres",
    "--auth=trust",
    "--no-sync",
    "-E",
    "UTF8",
    "--locale=C",
  ], true);
  const port = freePort();
  const options = [
    `-c listen_addresses=127.0.0.1`,
    `-c port=${port}`,
    `-c unix_socket_directories=${dir}`,
    `-c fsync=on`,
    `-c synchronous_commit=on`,
    `-c max_connections=200`,
    `-c shared_buffers=32MB`,
  ].join(" ");
  const log = join(dir, "server.log");
  const ctl = (args: string[]) =>
    run(
      join(BIN, "pg_ctl"),
      ["-D", data, "-l", log, "-o", options, "-w", "-t", "30", ...args],
      true,
    );
  await ctl(["start"]);
  // A test that stops early (a filter, a failure) must not leave a server behind.
  const stopAtExit = () => {
    new Deno.Command(Deno.uid() === 0 ? "runuser" : join(BIN, "pg_ctl"), {
      args: [
        ...(Deno.uid() === 0 ? ["-u", USER, "--", join(BIN, "pg_ctl")] : []),
        "-D",
        data,
        "stop",
        "-m",
        "immediate",
      ],
      stdout: "null",
      stderr: "null",
    }).outputSync();
    Deno.removeSync(dir, { recursive: true });
  };
  globalThis.addEventListener("unload", stopAtExit);
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  let running = true;
  return {
    url,
    port,
    async stop() {
      await ctl(["stop", "-m", "fast"]);
      running = false;
    },
    async start() {
      await ctl(["start"]);
      running = true;
    },
    async restart() {
      await ctl(["restart", "-m", "fast"]);
      running = true;
    },
    async createDatabase(name: string) {
      await run(
        join(BIN, "createdb"),
        ["-h", dir, "-p", String(port), "-U", "postgres", name],
        true,
      );
      return `postgres://postgres@127.0.0.1:${port}/${name}`;
    },
    async [Symbol.asyncDispose]() {
      globalThis.removeEventListener("unload", stopAtExit);
      if (running) await ctl(["stop", "-m", "immediate"]).catch(() => {});
      await Deno.remove(dir, { recursive: true });
    },
  };
}
