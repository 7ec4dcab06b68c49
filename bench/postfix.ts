/**
 * A private Postfix for the benchmarks: installed from Debian when missing,
 * run with its own configuration directory, queue and data directory under
 * a bench directory (`postfix -c DIR start`), listening on one loopback
 * port, and stopped afterwards. /etc/postfix is never written: the Debian
 * package is installed with debconf answering "No configuration", and every
 * command here names the private configuration directory.
 *
 * What the private instance does, to match tern's benchmark configuration:
 * mail for the local domain is delivered by virtual(8) into a Maildir
 * (`virtual_mailbox_maps` entries ending in `/`), mail for the relay domain
 * goes by smtp(8) to smtp-sink on loopback (`transport_maps`).
 *
 * @module
 */

import { join } from "node:path";
import { waitForBanner } from "./_net.ts";

const POSTFIX = "/usr/sbin/postfix";
/** smtp-source and smtp-sink come in Debian's postfix package. */
export const SMTP_SOURCE = "/usr/sbin/smtp-source";
/** See {@linkcode SMTP_SOURCE}. */
export const SMTP_SINK = "/usr/sbin/smtp-sink";

/** The Debian instance's pid file (only looked at, never written). */
const SYSTEM_MASTER_PID = "/var/spool/postfix/pid/master.pid";

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Runs a command; throws with its output when it fails. */
async function run(
  command: string,
  args: readonly string[],
  options: { env?: Record<string, string>; stdin?: string } = {},
): Promise<string> {
  const child = new Deno.Command(command, {
    args: [...args],
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    ...(options.env ? { env: options.env } : {}),
  }).spawn();
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(options.stdin));
    await writer.close();
  }
  const { code, stdout, stderr } = await child.output();
  const text = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
  if (code !== 0) {
    throw new Error(`${command} ${args.join(" ")} failed (exit ${code}):\n${text.trim()}`);
  }
  return text;
}

/** Whether the Debian (system) Postfix master runs. */
async function isSystemPostfixRunning(): Promise<boolean> {
  try {
    const pid = Number((await Deno.readTextFile(SYSTEM_MASTER_PID)).trim());
    return pid > 0 && await exists(`/proc/${pid}`);
  } catch {
    return false;
  }
}

/**
 * Installs Debian's postfix package when `postfix`, `smtp-source` or
 * `smtp-sink` is missing. debconf is preseeded with "No configuration", so
 * the package writes no main.cf and sets up no system mail; if the install
 * started the Debian service all the same, it is stopped again.
 *
 * @param log Where progress lines go.
 * @returns When the tools are there.
 * @throws {Error} When they cannot be installed (not root, no network).
 */
export async function ensurePostfix(log: (line: string) => void): Promise<void> {
  const present = await exists(POSTFIX) && await exists(SMTP_SOURCE) && await exists(SMTP_SINK);
  if (present) return;
  if (Deno.uid() !== 0) {
    throw new Error("Postfix is missing and only root can install it (apt-get install postfix)");
  }
  log("installing Postfix from Debian (debconf: No configuration)");
  const wasRunning = await isSystemPostfixRunning();
  await run("debconf-set-selections", [], {
    stdin: "postfix postfix/main_mailer_type select No configuration\n",
  });
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  const install = ["install", "-y", "-q", "--no-install-recommends", "postfix"];
  try {
    await run("apt-get", install, { env });
  } catch {
    await run("apt-get", ["update", "-q"], { env });
    await run("apt-get", install, { env });
  }
  if (!wasRunning && await isSystemPostfixRunning()) {
    log("stopping the Debian postfix service the install started");
    await run("sh", [
      "-c",
      "invoke-rc.d postfix stop || service postfix stop || postfix -c /etc/postfix stop",
    ]).catch((error: unknown) => log(String(error)));
  }
}

/** The Postfix version, e.g. `3.7.11`. */
export async function postfixVersion(): Promise<string> {
  // postconf reads main.cf; -d prints defaults without one.
  const text = await run("/usr/sbin/postconf", ["-d", "-h", "mail_version"]).catch(() => "?");
  return text.trim();
}

/** How the private Postfix is configured. */
export interface PostfixOptions {
  /**
   * A directory of its own. It is made world-searchable (Postfix daemons
   * drop root); its parents must be searchable too.
   */
  readonly dir: string;
  /** The smtpd port on 127.0.0.1. */
  readonly port: number;
  /** The virtual mailbox domain. */
  readonly localDomain: string;
  /** Local parts that have a Maildir (`sink` for `sink@<localDomain>`). */
  readonly mailboxes: readonly string[];
  /** Next hops by recipient domain, `"host:port"`, for transport_maps. */
  readonly routes?: Readonly<Record<string, string>>;
  /** Enough smtpd processes and no per-client limits for this many connections. @default {2000} */
  readonly maxConnections?: number;
  /** A signing milter for smtpd, e.g. `unix:/path/milter.sock` (OpenDKIM). @default {none} */
  readonly milter?: string;
}

/** The uid and gid of `nobody`, owner of the virtual Maildirs. */
const MAIL_UID = 65534;

/**
 * The `main.cf` of the private instance. Every setting that departs from
 * Postfix's defaults says why.
 *
 * @param options The benchmark's settings.
 * @returns The file's text.
 */
export function mainCf(options: PostfixOptions): string {
  const dir = options.dir;
  const max = options.maxConnections ?? 2000;
  const mailboxes = options.mailboxes
    .map((m) => `{ ${m}@${options.localDomain} = ${options.localDomain}/${m}/ }`)
    .join(", ");
  const transports = Object.entries(options.routes ?? {})
    .map(([domain, hop]) => `{ ${domain} = smtp:[${hop.replace(/:(\d+)$/, "]:$1")} }`)
    .join(", ");
  return `# A private Postfix for tern's benchmarks (bench/postfix.ts); nothing here
# touches /etc/postfix. Durability is left at Postfix's defaults: cleanup(8)
# fsyncs each queue file before smtpd answers 250, virtual(8) fsyncs each
# Maildir file before it links it into new/.
compatibility_level = 3.6

# Its own queue, data directory and log, under ${dir}.
queue_directory = ${dir}/queue
data_directory = ${dir}/data
maillog_file = ${dir}/maillog
maillog_file_prefixes = ${dir}
# Both MTAs log one line per event to a file (tern: tern.log).

# Loopback only.
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = postfix.bench.test
mydomain = bench.test
# No local(8) delivery and no /etc/aliases: only the virtual domain below.
mydestination =
alias_maps =
alias_database =
local_recipient_maps =

# The load generator is on loopback: it may send and relay (as tern's
# relay.trusted_networks does); no other smtpd restriction runs.
mynetworks = 127.0.0.0/8
smtpd_client_restrictions =
smtpd_helo_restrictions =
smtpd_sender_restrictions =
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination

# No DNS for nothing: tern does no reverse lookup of the client, so neither
# does smtpd (smtpd_peername_lookup = no); the relay next hop is an address
# literal in both, and the smtp client makes no DNS queries at all
# (smtp_dns_support_level = disabled, which replaces disable_dns_lookups;
# smtp_host_lookup = native for the rest).
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
smtp_host_lookup = native

# Same size limit as tern (25 MiB); a Maildir file has no size limit.
message_size_limit = 26214400
virtual_mailbox_limit = 0

# Local delivery: virtual(8) into Maildirs (a trailing / in the map = Maildir).
virtual_mailbox_domains = ${options.localDomain}
virtual_mailbox_base = ${dir}/mail
virtual_mailbox_maps = inline:{ ${mailboxes} }
virtual_uid_maps = static:${MAIL_UID}
virtual_gid_maps = static:${MAIL_UID}

# Relay: the relay domain goes to smtp-sink on loopback (as tern's relay.routes).
transport_maps = ${transports === "" ? "" : `inline:{ ${transports} }`}

# 1,000 idle connections from one client: enough smtpd processes (one per
# connection), no per-client connection count or rate limits (0 = none;
# loopback is also exempt as mynetworks), as tern's raised limits.max_connections*.
default_process_limit = ${max + 100}
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_client_recipient_rate_limit = 0
smtpd_client_event_limit_exceptions = 127.0.0.0/8
${options.milter === undefined ? "" : milterSettings(options.milter)}`;
}

/**
 * The milter settings of the signing scenario: smtpd hands every message
 * to the milter (OpenDKIM) before it answers the end of DATA, as a
 * deployment that signs with OpenDKIM does; if the milter cannot be
 * reached, the message is refused for now (tempfail), never passed
 * unsigned. No non_smtpd_milters: all the load comes in by SMTP.
 */
function milterSettings(milter: string): string {
  return `
# DKIM signing by a milter (OpenDKIM, bench/opendkim.ts): every message
# goes through it before smtpd answers the end of DATA.
smtpd_milters = ${milter}
milter_default_action = tempfail
# Postfix's default since 2.6, written out: the version tern speaks too.
milter_protocol = 6
`;
}

/**
 * The `master.cf`: smtpd on the benchmark port and the services mail needs,
 * none chrooted (the private queue has no chroot files).
 *
 * @param options The benchmark's settings.
 * @returns The file's text.
 */
export function masterCf(options: PostfixOptions): string {
  const max = (options.maxConnections ?? 2000) + 50;
  return `# service type  private unpriv  chroot  wakeup  maxproc command
127.0.0.1:${options.port} inet n - n - ${max} smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`;
}

/** A running private Postfix. */
export class Postfix {
  /** The smtpd port. */
  readonly port: number;
  /** The configuration directory (`postfix -c`). */
  readonly configDir: string;
  /** `virtual_mailbox_base`. */
  readonly mailBase: string;
  /** The log file. */
  readonly logFile: string;
  /** The master daemon's pid: the root of the instance's process tree. */
  readonly pid: number;

  private constructor(options: PostfixOptions, pid: number) {
    this.port = options.port;
    this.configDir = join(options.dir, "conf");
    this.mailBase = join(options.dir, "mail");
    this.logFile = join(options.dir, "maillog");
    this.pid = pid;
  }

  /**
   * Writes the configuration, creates the queue and starts the instance;
   * resolves once smtpd greets.
   *
   * @param options Where and how.
   * @returns The running instance.
   * @throws {Error} When it does not start (with its log's tail).
   */
  static async start(options: PostfixOptions): Promise<Postfix> {
    const dir = options.dir;
    for (const sub of ["conf", "queue", "data", "mail"]) {
      await Deno.mkdir(join(dir, sub), { recursive: true });
    }
    // Postfix daemons run as "postfix" and virtual(8) as nobody: they must
    // reach into the directory (a temp dir is 0700). The queue belongs to
    // root (postfix fills it in), the data directory to postfix.
    await Deno.chmod(dir, 0o755);
    await Deno.chown(join(dir, "mail"), MAIL_UID, MAIL_UID);
    const postfixUser = (await run("id", ["-u", "postfix"])).trim();
    const postfixGroup = (await run("id", ["-g", "postfix"])).trim();
    await Deno.chown(join(dir, "data"), Number(postfixUser), Number(postfixGroup));
    await Deno.chmod(join(dir, "data"), 0o700);
    await Deno.writeTextFile(join(dir, "conf", "main.cf"), mainCf(options));
    await Deno.writeTextFile(join(dir, "conf", "master.cf"), masterCf(options));
    const conf = join(dir, "conf");
    const logTail = async () =>
      (await Deno.readTextFile(join(dir, "maillog")).catch(() => "")).split("\n").slice(-10).join(
        "\n",
      );
    try {
      // ulimit: master and smtpd inherit the hard open-file limit.
      await run("/bin/sh", [
        "-c",
        `ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"`,
        "sh",
        POSTFIX,
        "-c",
        conf,
        "start",
      ]);
    } catch (error: unknown) {
      throw new Error(`Cannot start Postfix: ${String(error)}\n${await logTail()}`);
    }
    const pidFile = join(dir, "queue", "pid", "master.pid");
    const pid = Number((await Deno.readTextFile(pidFile)).trim());
    const postfix = new Postfix(options, pid);
    try {
      await waitForBanner(options.port);
    } catch (error: unknown) {
      await postfix.stop();
      throw new Error(`Postfix does not answer: ${String(error)}\n${await logTail()}`);
    }
    return postfix;
  }

  /**
   * The Maildir `new/` of a local address.
   *
   * @param address `local@domain`.
   * @returns The directory where delivered messages appear.
   */
  newDir(address: string): string {
    const [local, domain] = address.split("@") as [string, string];
    return join(this.mailBase, domain, local, "new");
  }

  /**
   * `postfix -c DIR stop`, then waits for the master to exit (and kills it
   * after 20 s).
   *
   * @returns When the instance is gone.
   */
  async stop(): Promise<void> {
    await run(POSTFIX, ["-c", this.configDir, "stop"]).catch(() => {});
    const end = performance.now() + 20_000;
    while (await exists(`/proc/${this.pid}`)) {
      if (performance.now() > end) {
        await run(POSTFIX, ["-c", this.configDir, "abort"]).catch(() => {});
        try {
          Deno.kill(this.pid, "SIGKILL");
        } catch {
          // gone
        }
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
