// Milters for the tests: a Python milter written with Debian's python3-milter
// (pymilter, libmilter underneath) whose behaviour each message chooses in
// its Subject, and the helpers to start real milters on loopback ports and
// wait for them.

import { dirname, join } from "node:path";

/** The Python that has Debian's modules (Milter, dkim); the one on PATH may not. */
export const SYSTEM_PYTHON = "/usr/bin/python3";

/** A free TCP port on 127.0.0.1 (bound, then released for the peer to take). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Waits until something accepts TCP connections on the port, or throws with `why()`. */
export async function waitListening(
  port: number,
  exited: () => boolean,
  why: () => Promise<string>,
  ms = 15_000,
): Promise<void> {
  const end = Date.now() + ms;
  while (true) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch {
      if (exited() || Date.now() > end) {
        throw new Error(`nothing listens on 127.0.0.1:${port}: ${await why()}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** A peer process started by a test. */
export interface Peer {
  /** Its port on 127.0.0.1. */
  readonly port: number;
  /** Its directory (configuration, log). */
  readonly dir: string;
  /** Its output so far (stdout and stderr). */
  log(): Promise<string>;
  /** Stops it (SIGTERM, then SIGKILL) and waits for it. */
  stop(): Promise<void>;
}

/**
 * Starts a command whose output goes to `logFile`; resolves once it listens on `port`.
 *
 * @param command The program.
 * @param args Its arguments.
 * @param port The port it will listen on.
 * @param logFile Where its output goes.
 * @param options uid/gid to run as, env.
 */
export async function startPeer(
  command: string,
  args: readonly string[],
  port: number,
  logFile: string,
  options: {
    uid?: number;
    gid?: number;
    env?: Record<string, string>;
    ms?: number;
    stopSignal?: Deno.Signal;
  } = {},
): Promise<Peer> {
  try {
    await Deno.stat(command);
  } catch {
    throw new Error(`${command} is missing: install the Debian package that provides it`);
  }
  const child = new Deno.Command("/bin/sh", {
    args: ["-c", 'exec "$@" >>"$PEER_LOG" 2>&1', "sh", command, ...args],
    env: { ...options.env, PEER_LOG: logFile },
    // Another user may not enter the directory the tests run from (a clone under a 0700 folder).
    ...(options.uid === undefined ? {} : { uid: options.uid, cwd: "/" }),
    ...(options.gid === undefined ? {} : { gid: options.gid }),
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  let exited = false;
  const status = child.status.then(() => {
    exited = true;
  });
  const log = () => Deno.readTextFile(logFile).catch(() => "");
  const stop = async () => {
    if (exited) return;
    try {
      child.kill(options.stopSignal ?? "SIGTERM");
    } catch {
      // gone
    }
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch {
        // gone
      }
    }, 5_000);
    await status;
    clearTimeout(timer);
  };
  try {
    await waitListening(port, () => exited, async () => {
      const text = (await log()).trim().split("\n").slice(-8).join(" / ");
      return `${exited ? "it exited" : "no answer"}: ${text}`;
    }, options.ms);
  } catch (error: unknown) {
    await stop();
    throw error;
  }
  return { port, dir: dirname(logFile), log, stop };
}

/**
 * The Python milter. Each message asks for what it wants in its Subject,
 * words among: addheader insheader chgheader delheader chgfrom addrcpt
 * delrcpt replbody quarantine reject tempfail discard slow (at end of
 * message, writes `slow.reached` in its directory and waits for
 * `slow.release` there, 30 s at most). A sender
 * `tempfail@...` gets SMFIR_TEMPFAIL at MAIL; a recipient `refused@...`
 * gets a custom 550 at RCPT. Every message gets `X-Milter-Seen:` with the
 * macros it saw (`i`, `{client_addr}`, `j`, `{mail_addr}`).
 */
export const PY_MILTER = `
import os, sys, time, Milter
WORKDIR = sys.argv[2]

class TestMilter(Milter.Base):
    def __init__(self):
        self.subject = ""
        self.seen = {}

    @Milter.noreply
    def connect(self, hostname, family, hostaddr):
        self.seen["client_addr"] = self.getsymval("{client_addr}") or "-"
        self.seen["j"] = self.getsymval("j") or "-"
        return Milter.CONTINUE

    def envfrom(self, mailfrom, *args):
        self.subject = ""
        self.seen["mail_addr"] = self.getsymval("{mail_addr}") or "-"
        if mailfrom.lower().startswith("<tempfail@"):
            return Milter.TEMPFAIL
        return Milter.CONTINUE

    def envrcpt(self, to, *args):
        if to.lower().startswith("<refused@"):
            self.setreply("550", "5.7.1", "Refused by the test milter for %s" % to)
            return Milter.REJECT
        return Milter.CONTINUE

    def header(self, name, value):
        if name.lower() == "subject":
            self.subject = value
        return Milter.CONTINUE

    def eom(self):
        words = self.subject.split()
        self.seen["i"] = self.getsymval("i") or "-"
        if "slow" in words:
            # Tells the test it is here, then waits for its word (at most 30 s).
            open(os.path.join(WORKDIR, "slow.reached"), "w").close()
            for _ in range(600):
                if os.path.exists(os.path.join(WORKDIR, "slow.release")):
                    break
                time.sleep(0.05)
        if "reject" in words:
            self.setreply("554", "5.7.0", "Rejected by the test milter: %s" % self.subject)
            return Milter.REJECT
        if "tempfail" in words:
            return Milter.TEMPFAIL
        if "discard" in words:
            return Milter.DISCARD
        self.addheader("X-Milter-Seen", " ".join("%s=%s" % kv for kv in sorted(self.seen.items())))
        if "addheader" in words:
            self.addheader("X-Milter-Added", "yes")
        if "insheader" in words:
            self.addheader("X-Milter-Top", "first", 0)
        if "chgheader" in words:
            self.chgheader("X-Change-Me", 1, "changed")
        if "delheader" in words:
            self.chgheader("X-Delete-Me", 1, "")
        if "chgfrom" in words:
            self.chgfrom("<new-sender@example.org>")
        if "addrcpt" in words:
            self.addrcpt("<bob@example.test>")
        if "delrcpt" in words:
            self.delrcpt("<carol@example.test>")
        if "replbody" in words:
            self.replacebody(b"The body was replaced by the milter.\\r\\n")
        if "quarantine" in words:
            self.quarantine("looks suspicious")
        return Milter.CONTINUE

Milter.factory = TestMilter
Milter.set_flags(Milter.ADDHDRS | Milter.CHGHDRS | Milter.CHGBODY | Milter.ADDRCPT
                 | Milter.DELRCPT | Milter.QUARANTINE | Milter.CHGFROM)
sys.stdout.flush()
Milter.runmilter("tern-test", "inet:%s@127.0.0.1" % sys.argv[1], 240)
`;

/**
 * Starts the Python milter on a free port.
 *
 * @param dir A directory for its script and log.
 * @returns The running milter.
 */
export async function startPythonMilter(dir: string): Promise<Peer> {
  const script = join(dir, "test_milter.py");
  await Deno.writeTextFile(script, PY_MILTER);
  const port = freePort();
  return await startPeer(
    SYSTEM_PYTHON,
    ["-u", script, String(port), dir],
    port,
    join(dir, "milter.log"),
    // libmilter waits for its threads on SIGTERM; the test is done with it.
    { stopSignal: "SIGKILL" },
  );
}

/** Debian's rspamd. */
export const RSPAMD = "/usr/bin/rspamd";

/** Runs `id` for a system user's uid or gid (`-u` / `-g`). */
async function idOf(flag: "-u" | "-g", user: string): Promise<number> {
  const out = await new Deno.Command("id", { args: [flag, user], stdout: "piped", stderr: "piped" })
    .output();
  if (!out.success) {
    throw new Error(`user ${user} is missing (its Debian package creates it)`);
  }
  return Number(new TextDecoder().decode(out.stdout).trim());
}

/**
 * rspamd's proxy worker in milter mode, scanning itself (`self_scan`), with
 * the stock rules and modules but: a TLD list of five names (the full one
 * takes half a minute to compile), DNS through `nameserver` only, no Redis
 * (the modules that need it stay off), and its milter headers
 * (`X-Spam-Status`, `X-Spamd-Result`, `X-Rspamd-*`) on every message.
 *
 * @param dir A directory of its own (made readable to user _rspamd).
 * @param nameserver `ip:port` of a DNS server that answers at once.
 * @returns The running rspamd, once its milter port accepts connections.
 */
export async function startRspamd(dir: string, nameserver: string): Promise<Peer> {
  const port = freePort();
  const local = join(dir, "local");
  await Deno.mkdir(join(local, "local.d"), { recursive: true });
  await Deno.mkdir(join(dir, "db"), { recursive: true });
  await Deno.writeTextFile(join(dir, "tld.dat"), "com\norg\nnet\ntest\nexample\n");
  await Deno.writeTextFile(
    join(dir, "rspamd.conf"),
    `# A private rspamd for tern's milter tests (tests/_milter.ts).
.include "$CONFDIR/common.conf"
options {
  pidfile = "${dir}/rspamd.pid";
  url_tld = "${dir}/tld.dat";
  dns { nameserver = ["${nameserver}"]; timeout = 1s; retransmits = 1; }
}
logging { type = "file"; filename = "${dir}/rspamd.log"; level = "error"; }
worker "rspamd_proxy" {
  bind_socket = "127.0.0.1:${port}";
  milter = yes;
  timeout = 120s;
  upstream "local" { default = yes; self_scan = yes; }
  count = 1;
  reject_message = "Spam message rejected";
}
`,
  );
  await Deno.writeTextFile(
    join(local, "local.d", "milter_headers.conf"),
    `use = ["x-spam-status", "x-spamd-result", "x-rspamd-queue-id", "x-rspamd-server"];
skip_local = false;
skip_authenticated = false;
`,
  );
  const uid = await idOf("-u", "_rspamd");
  const gid = await idOf("-g", "_rspamd");
  for await (const path of walk(dir)) await Deno.chown(path, uid, gid);
  await Deno.chown(dir, uid, gid);
  return await startPeer(
    RSPAMD,
    [
      "-f",
      "-u",
      "_rspamd",
      "-g",
      "_rspamd",
      "-c",
      join(dir, "rspamd.conf"),
      "--var",
      `LOCAL_CONFDIR=${local}`,
      "--var",
      `DBDIR=${join(dir, "db")}`,
      "--var",
      `RUNDIR=${dir}`,
    ],
    port,
    join(dir, "out.log"),
    { ms: 40_000 },
  );
}

async function* walk(dir: string): AsyncGenerator<string> {
  for await (const entry of Deno.readDir(dir)) {
    const path = join(dir, entry.name);
    yield path;
    if (entry.isDirectory) yield* walk(path);
  }
}

/** Debian's opendkim. */
export const OPENDKIM = "/usr/sbin/opendkim";

/**
 * OpenDKIM signing as a milter on a loopback port (Mode s), run as user
 * opendkim, its key 0600 to that user.
 *
 * @param dir A directory of its own.
 * @param domain The signing domain.
 * @param selector The selector.
 * @param keyPem The private key.
 * @returns The running OpenDKIM.
 */
export async function startOpenDkim(
  dir: string,
  domain: string,
  selector: string,
  keyPem: string,
): Promise<Peer> {
  const port = freePort();
  const uid = await idOf("-u", "opendkim");
  const gid = await idOf("-g", "opendkim");
  await Deno.chown(dir, uid, gid);
  await Deno.chmod(dir, 0o755);
  const keyFile = join(dir, "key.pem");
  await Deno.writeTextFile(keyFile, keyPem, { mode: 0o600 });
  await Deno.chown(keyFile, uid, gid);
  const conf = join(dir, "opendkim.conf");
  await Deno.writeTextFile(
    conf,
    `# A private OpenDKIM for tern's milter tests (tests/_milter.ts).
Mode s
Domain ${domain}
Selector ${selector}
KeyFile ${keyFile}
# The key is 0600 to opendkim, but the directory is under /tmp, which anyone may write.
RequireSafeKeys false
SignatureAlgorithm rsa-sha256
Canonicalization relaxed/relaxed
# tern connects from loopback: "internal", so its mail is signed.
InternalHosts 127.0.0.0/8
Socket inet:${port}@127.0.0.1
PidFile ${join(dir, "opendkim.pid")}
Syslog no
`,
  );
  return await startPeer(OPENDKIM, ["-f", "-x", conf], port, join(dir, "opendkim.log"), {
    uid,
    gid,
  });
}
