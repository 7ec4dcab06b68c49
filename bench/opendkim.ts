/**
 * OpenDKIM as Postfix's signing milter for the `sign` scenario: a private
 * instance per run, with its own configuration, key, pid file and socket
 * under the run's directory, stopped afterwards.
 *
 * The milter socket is a UNIX-domain socket (Debian's default for
 * OpenDKIM), not TCP on loopback: measured here, Postfix talking to
 * OpenDKIM over `inet:127.0.0.1:PORT` stalls about 90 ms per message (one
 * session sent 200 messages in 18 s with the milter, 0.6 s without; the
 * milter protocol's small writes meet delayed acknowledgements), which would
 * measure a socket choice rather than signing; over the UNIX socket the
 * same took 1 s.
 *
 * OpenDKIM runs as its own user (as Debian runs it), and the key file
 * belongs to that user, mode 0600. Its check of the key's whole path
 * (`RequireSafeKeys`) is turned off, since the path goes through /tmp.
 *
 * @module
 */

import { join } from "node:path";
import { stopChild } from "./_process.ts";

/** Debian's opendkim package. */
export const OPENDKIM = "/usr/sbin/opendkim";
/** The user Debian's package runs it as. */
const OPENDKIM_USER = "opendkim";

/** How the private OpenDKIM signs. */
export interface OpenDkimOptions {
  /** A directory of its own (config, key copy, pid file, log). */
  readonly dir: string;
  /** The signing domain (`d=`): mail whose From: is in it is signed. */
  readonly domain: string;
  /** The selector (`s=`). */
  readonly selector: string;
  /** The private key, PEM. */
  readonly keyPem: string;
}

/**
 * The `opendkim.conf` of the private instance: sign only, with the same
 * algorithm, canonicalisation and From oversigning as tern.
 *
 * @param options The benchmark's settings.
 * @param keyFile Where the key was written.
 * @returns The file's text.
 */
export function openDkimConf(options: OpenDkimOptions, keyFile: string): string {
  return `# A private OpenDKIM for tern's benchmarks (bench/opendkim.ts).
# Sign only (no verification of inbound mail, as tern on a trusted network).
Mode s
Domain ${options.domain}
Selector ${options.selector}
KeyFile ${keyFile}
# The key is 0600 to opendkim, but the run directory is under /tmp, which
# anyone may write: OpenDKIM's check of the whole path would refuse it.
RequireSafeKeys false
# As tern signs: rsa-sha256, relaxed/relaxed, From listed once more than present.
SignatureAlgorithm rsa-sha256
Canonicalization relaxed/relaxed
OversignHeaders From
# The load comes from loopback, which is "internal": its mail is signed.
InternalHosts 127.0.0.0/8
# A UNIX socket (see bench/opendkim.ts); smtpd runs as postfix and must write to it.
Socket local:${socketPath(options.dir)}
UMask 000
PidFile ${join(options.dir, "opendkim.pid")}
# No syslog daemon here; errors at start go to stderr (opendkim.log).
Syslog no
`;
}

/** The milter socket in the instance's directory. */
function socketPath(dir: string): string {
  return join(dir, "milter.sock");
}

/** A running private OpenDKIM. */
export class OpenDkim {
  /** The socket's path. */
  readonly socket: string;
  /** `unix:PATH`, for Postfix's `smtpd_milters`. */
  readonly milter: string;
  /** Its stderr. */
  readonly logFile: string;
  readonly #child: Deno.ChildProcess;

  private constructor(child: Deno.ChildProcess, socket: string, logFile: string) {
    this.#child = child;
    this.socket = socket;
    this.milter = `unix:${socket}`;
    this.logFile = logFile;
  }

  /** OpenDKIM's pid (`-f` keeps it in the foreground, one process with its threads). */
  get pid(): number {
    return this.#child.pid;
  }

  /**
   * Writes the key and configuration and starts `opendkim -f -x CONF` as
   * user opendkim; resolves once the milter socket accepts connections.
   *
   * @param options Where and how.
   * @returns The running filter.
   * @throws {Error} When OpenDKIM is missing, or exits or does not listen in time (with its stderr).
   */
  static async start(options: OpenDkimOptions): Promise<OpenDkim> {
    try {
      await Deno.stat(OPENDKIM);
    } catch {
      throw new Error(
        `${OPENDKIM} is missing: the sign scenario needs Debian's opendkim (apt-get install opendkim)`,
      );
    }
    const dir = options.dir;
    await Deno.mkdir(dir, { recursive: true });
    const uid = Number((await idOf(["-u", OPENDKIM_USER])).trim());
    const gid = Number((await idOf(["-g", OPENDKIM_USER])).trim());
    // The user must reach its files; the run directory above it is made searchable by the caller.
    await Deno.chown(dir, uid, gid);
    await Deno.chmod(dir, 0o755);
    const keyFile = join(dir, "key.pem");
    await Deno.writeTextFile(keyFile, options.keyPem, { mode: 0o600 });
    await Deno.chown(keyFile, uid, gid);
    const confFile = join(dir, "opendkim.conf");
    await Deno.writeTextFile(confFile, openDkimConf(options, keyFile));
    const logFile = join(dir, "opendkim.log");
    // Spawned as the user directly (no runuser in between): the pid is
    // OpenDKIM's own, for its CPU time and for stopping it. sh, already that
    // user, sends stderr to the log and execs it.
    const child = new Deno.Command("/bin/sh", {
      args: ["-c", 'exec "$@" >>"$BENCH_LOG" 2>&1', "sh", OPENDKIM, "-f", "-x", confFile],
      env: { BENCH_LOG: logFile },
      uid,
      gid,
      cwd: "/", // the user may not enter the directory the bench runs from
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const socket = socketPath(dir);
    const filter = new OpenDkim(child, socket, logFile);
    let exited = false;
    child.status.then(() => exited = true);
    const end = performance.now() + 10_000;
    while (true) {
      try {
        (await Deno.connect({ transport: "unix", path: socket })).close();
        return filter;
      } catch (error: unknown) {
        if (exited || performance.now() > end) {
          await filter.stop();
          const log = (await Deno.readTextFile(logFile).catch(() => "")).trim();
          throw new Error(
            `OpenDKIM does not listen on ${socket} (${exited ? "it exited" : String(error)})${
              log === "" ? "" : `: ${log.split("\n").slice(-5).join(" / ")}`
            }`,
          );
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }

  /**
   * SIGTERM, then SIGKILL if it has not exited in 10 s.
   *
   * @returns When it has exited.
   */
  async stop(): Promise<void> {
    await stopChild(this.#child);
  }
}

async function idOf(args: readonly string[]): Promise<string> {
  const out = await new Deno.Command("id", { args: [...args], stdout: "piped", stderr: "piped" })
    .output();
  if (!out.success) {
    throw new Error(
      `user ${OPENDKIM_USER} is missing (Debian's opendkim package creates it): ${
        new TextDecoder().decode(out.stderr).trim()
      }`,
    );
  }
  return new TextDecoder().decode(out.stdout);
}
