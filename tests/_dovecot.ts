// A private Dovecot for the LMTP and SASL tests: its own configuration,
// base_dir, log and mail under a temporary directory, LMTP, IMAP and the
// auth service on loopback ports and Unix sockets. Needs the Debian packages
// dovecot-core, dovecot-lmtpd and dovecot-imapd, and root (Dovecot's master
// process runs as root and delivers as the `dovecot` user).

import { join } from "node:path";
import net from "node:net";
import { freePort } from "./_relay_fixtures.ts";
import { waitFor } from "./_helpers.ts";

const DOVECOT = "/usr/sbin/dovecot";

/** A test user: address, password and, optionally, a quota small enough to be full. */
export interface DovecotUser {
  readonly address: string;
  readonly password: string;
  /** Refuse every message for being over quota (after DATA: `452 4.2.2`). */
  readonly full?: boolean;
}

/** The users every private Dovecot knows. */
export const DOVECOT_USERS: readonly DovecotUser[] = [
  { address: "alice@example.test", password: "alice secret" },
  { address: "bob@example.test", password: "bob secret" },
  { address: "full@example.test", password: "full secret", full: true },
];

/** A running private Dovecot. */
export interface Dovecot extends AsyncDisposable {
  /** The temporary directory holding everything. */
  readonly dir: string;
  readonly lmtpPort: number;
  readonly imapPort: number;
  readonly authPort: number;
  /** The LMTP Unix socket. */
  readonly lmtpSocket: string;
  /** The auth service's `auth-client` Unix socket. */
  readonly authSocket: string;
  /** The Maildir of a user (`<dir>/mail/<domain>/<local>`). */
  maildir(address: string): string;
  /** Stops Dovecot (SIGTERM), and waits until it is gone. */
  stop(): Promise<void>;
  /** Starts it again with the same configuration and ports. */
  start(): Promise<void>;
  /** Its log, for failure messages. */
  log(): Promise<string>;
}

function config(dir: string, ports: { lmtp: number; imap: number; auth: number }): string {
  return `# tern tests: a private Dovecot
base_dir = ${dir}/run
state_dir = ${dir}/state
log_path = ${dir}/dovecot.log
ssl = no
protocols = lmtp imap
listen = 127.0.0.1, ::1
default_internal_user = dovecot
default_login_user = dovenull
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
auth_default_realm = example.test
mail_location = maildir:${dir}/mail/%d/%n
mail_uid = dovecot
mail_gid = dovecot
first_valid_uid = 0
mail_plugins = quota
quota_full_tempfail = yes
plugin {
  quota = maildir:User quota
}
passdb {
  driver = passwd-file
  args = ${dir}/users
}
userdb {
  driver = passwd-file
  args = ${dir}/users
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1 ::1
    port = ${ports.lmtp}
  }
  unix_listener lmtp {
    mode = 0666
  }
}
service auth {
  unix_listener auth-client {
    mode = 0666
  }
  inet_listener auth-inet {
    address = 127.0.0.1
    port = ${ports.auth}
  }
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = ${ports.imap}
  }
  inet_listener imaps {
    port = 0
  }
  chroot =
}
service anvil {
  chroot =
}
`;
}

function usersFile(): string {
  return DOVECOT_USERS.map((u) =>
    `${u.address}:{PLAIN}${u.password}::::::` + (u.full ? "userdb_quota_rule=*:storage=1B" : "")
  ).join("\n") + "\n";
}

/** Whether a TCP port on loopback takes connections. */
function isListening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** Fails with a clear message when Dovecot cannot run here. */
async function requireDovecot(): Promise<void> {
  if (!(await exists(DOVECOT))) {
    throw new Error(
      `${DOVECOT} is missing: install the Debian packages dovecot-core, dovecot-lmtpd and dovecot-imapd`,
    );
  }
  for (const [binary, pkg] of [["lmtp", "dovecot-lmtpd"], ["imap", "dovecot-imapd"]]) {
    if (!(await exists(`/usr/lib/dovecot/${binary}`))) {
      throw new Error(`/usr/lib/dovecot/${binary} is missing: install the Debian package ${pkg}`);
    }
  }
  if (Deno.uid() !== 0) throw new Error("the Dovecot tests run as root (Dovecot's master process)");
}

/**
 * Starts a private Dovecot and waits until LMTP, IMAP and the auth socket
 * answer.
 *
 * @returns The running Dovecot; dispose of it to stop it and remove its files.
 */
export async function startDovecot(): Promise<Dovecot> {
  await requireDovecot();
  const dir = await Deno.makeTempDir({ prefix: "tern-dovecot-" });
  // Dovecot's unprivileged processes walk into it.
  await Deno.chmod(dir, 0o755);
  const ports = { lmtp: await freePort(), imap: await freePort(), auth: await freePort() };
  const file = join(dir, "dovecot.conf");
  await Deno.writeTextFile(file, config(dir, ports));
  await Deno.writeTextFile(join(dir, "users"), usersFile());
  await Deno.mkdir(join(dir, "mail"));
  await Deno.mkdir(join(dir, "state"));
  const dovecotUser = await new Deno.Command("id", { args: ["-u", "dovecot"] }).output();
  const uid = Number(new TextDecoder().decode(dovecotUser.stdout).trim());
  await Deno.chown(join(dir, "mail"), uid, null);
  const authSocket = join(dir, "run", "auth-client");
  const lmtpSocket = join(dir, "run", "lmtp");
  let child: Deno.ChildProcess | null = null;

  const start = async (): Promise<void> => {
    child = new Deno.Command(DOVECOT, {
      args: ["-F", "-c", file],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const running = child;
    let stderr = "";
    void (async () => {
      for await (const chunk of running.stderr) stderr += new TextDecoder().decode(chunk);
    })();
    await waitFor(
      async () =>
        (await isListening(ports.lmtp)) && (await isListening(ports.imap)) &&
        (await isListening(ports.auth)) && (await exists(authSocket)) && (await exists(lmtpSocket)),
      15_000,
    )
      .catch(async (error: unknown) => {
        const log = await Deno.readTextFile(join(dir, "dovecot.log")).catch(() => "");
        throw new Error(`Dovecot did not start: ${stderr}\n${log}`, { cause: error });
      });
  };
  const stop = async (): Promise<void> => {
    const running = child;
    child = null;
    if (running === null) return;
    try {
      running.kill("SIGTERM");
    } catch {
      // already gone
    }
    await running.status;
    // The master is gone once its listeners are: wait for the ports to close.
    await waitFor(async () => !(await isListening(ports.lmtp)), 10_000);
  };

  await start();
  return {
    dir,
    lmtpPort: ports.lmtp,
    imapPort: ports.imap,
    authPort: ports.auth,
    lmtpSocket,
    authSocket,
    maildir: (address) => {
      const [local, domain] = address.split("@");
      return join(dir, "mail", domain!, local!);
    },
    stop,
    start,
    log: () => Deno.readTextFile(join(dir, "dovecot.log")).catch(() => ""),
    async [Symbol.asyncDispose]() {
      await stop();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/**
 * Reads every message of a user's INBOX over IMAP (python3 imaplib), as the
 * user, with the password: what a mail program would see.
 *
 * @returns The messages, as text.
 */
export async function readInbox(dovecot: Dovecot, user: DovecotUser): Promise<string[]> {
  const script = `
import imaplib, json, sys
m = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]))
m.login(sys.argv[2], sys.argv[3])
m.select("INBOX", readonly=True)
typ, data = m.search(None, "ALL")
out = []
for num in data[0].split():
    typ, msg = m.fetch(num, "(RFC822)")
    out.append(msg[0][1].decode("utf-8", "replace"))
m.logout()
print(json.dumps(out))
`;
  const out = await new Deno.Command("python3", {
    args: ["-c", script, String(dovecot.imapPort), user.address, user.password],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`imaplib failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return JSON.parse(new TextDecoder().decode(out.stdout)) as string[];
}
