// A DNSSEC test bed on loopback for the DANE tests: nsd serves zones (one
// signed with ldns-signzone, others unsigned), and unbound, a validating
// resolver with the signed zone's key as its trust anchor, forwards to it
// (stub-zone) and sets AD on what it validated. tern asks unbound, on a
// loopback address, so it may trust AD. Both run as root (`username: ""`),
// each on a free port, with their files in a temporary directory; stopped
// and removed on dispose.
//
// Debian packages: nsd, unbound, ldnsutils.

import { join } from "node:path";
import { StubResolver } from "../dns/resolver.ts";
import { freePort } from "./_relay_fixtures.ts";

const decoder = new TextDecoder();

/** One zone: its origin, its records (zone-file lines, names relative or absolute), and whether to sign it. */
export interface TestZone {
  origin: string;
  records: string[];
  signed: boolean;
  /**
   * Edits the signed zone file before nsd loads it (to make a record bogus:
   * change data its RRSIG covers).
   */
  tamper?: (signedZone: string) => string;
}

/** The running bed: the validating resolver to give tern. */
export interface DnssecBed extends AsyncDisposable {
  /** `127.0.0.1:<port>` of unbound. */
  nameserver: string;
}

async function run(command: string, args: string[], cwd: string): Promise<string> {
  const out = await new Deno.Command(command, { args, cwd, stdout: "piped", stderr: "piped" })
    .output()
    .catch((error: unknown) => {
      throw new Error(
        `${command} cannot run (is its Debian package installed? nsd, unbound, ldnsutils): ${error}`,
      );
    });
  if (!out.success) {
    throw new Error(`${command} ${args.join(" ")} failed: ${decoder.decode(out.stderr)}`);
  }
  return decoder.decode(out.stdout);
}

function zoneText(zone: TestZone): string {
  const o = zone.origin;
  return [
    `$ORIGIN ${o}.`,
    "$TTL 300",
    `@ IN SOA ns.${o}. hostmaster.${o}. 1 3600 600 86400 300`,
    `@ IN NS ns.${o}.`,
    `ns IN A 127.0.0.1`,
    ...zone.records,
    "",
  ].join("\n");
}

/** Writes, signs (when asked) and returns the zone file's name and, if signed, its DS record. */
async function prepareZone(
  dir: string,
  zone: TestZone,
): Promise<{ file: string; ds: string | null }> {
  const file = join(dir, `${zone.origin}.zone`);
  await Deno.writeTextFile(file, zoneText(zone));
  if (!zone.signed) return { file, ds: null };
  const key = (await run("ldns-keygen", ["-a", "ECDSAP256SHA256", "-k", zone.origin], dir)).trim();
  await run("ldns-signzone", ["-o", zone.origin, "-f", `${file}.signed`, file, key], dir);
  if (zone.tamper) {
    await Deno.writeTextFile(
      `${file}.signed`,
      zone.tamper(await Deno.readTextFile(`${file}.signed`)),
    );
  }
  const ds = (await Deno.readTextFile(join(dir, `${key}.ds`))).trim().replace(/\s+/g, " ");
  return { file: `${file}.signed`, ds };
}

/** Starts a long-running child and returns how to stop it. */
function spawn(
  command: string,
  args: string[],
): { stop: () => Promise<void>; exited: () => boolean } {
  const child = new Deno.Command(command, { args, stdout: "null", stderr: "null" }).spawn();
  let done = false;
  const status = child.status.then((s) => {
    done = true;
    return s;
  });
  return {
    exited: () => done,
    stop: async () => {
      if (!done) child.kill("SIGTERM");
      const timer = setTimeout(() => {
        if (!done) child.kill("SIGKILL");
      }, 3000);
      await status;
      clearTimeout(timer);
    },
  };
}

/** Waits until `nameserver` answers `name` `type`; throws with `what` if it never does. */
async function waitAnswering(
  nameserver: string,
  name: string,
  what: string,
  exited: () => boolean,
  logFile: string,
): Promise<void> {
  const probe = new StubResolver({
    nameservers: [nameserver],
    timeoutMs: 200,
    attempts: 1,
    cacheSize: 0,
  });
  for (let i = 0; i < 50; i++) {
    if (exited()) break;
    const answer = await probe.query(name, "SOA").catch(() => null);
    if (answer?.kind === "answer") return;
    await new Promise((r) => setTimeout(r, 100));
  }
  const log = await Deno.readTextFile(logFile).catch(() => "(no log)");
  throw new Error(`${what} did not answer ${name} on ${nameserver}: ${log.slice(-2000)}`);
}

/**
 * Starts nsd with the zones and unbound validating them.
 *
 * @param zones The zones; signed ones become unbound's trust anchors, unsigned ones `domain-insecure`.
 */
export async function startDnssec(zones: TestZone[]): Promise<DnssecBed> {
  const dir = await Deno.makeTempDir({ prefix: "tern-dnssec-" });
  const stops: (() => Promise<void>)[] = [];
  const dispose = async () => {
    for (const stop of stops.reverse()) await stop();
    await Deno.remove(dir, { recursive: true });
  };
  try {
    const prepared = [];
    for (const zone of zones) prepared.push({ zone, ...await prepareZone(dir, zone) });
    const nsdPort = await freePort();
    await Deno.writeTextFile(
      join(dir, "nsd.conf"),
      [
        "server:",
        `  ip-address: 127.0.0.1@${nsdPort}`,
        '  username: ""',
        '  chroot: ""',
        `  zonesdir: "${dir}"`,
        `  pidfile: "${dir}/nsd.pid"`,
        `  xfrdfile: "${dir}/xfrd.state"`,
        `  zonelistfile: "${dir}/zone.list"`,
        `  logfile: "${dir}/nsd.log"`,
        '  database: ""',
        "  server-count: 1",
        "  do-ip6: no",
        "  verbosity: 1",
        "remote-control:",
        "  control-enable: no",
        ...prepared.flatMap((
          { zone, file },
        ) => ["zone:", `  name: ${zone.origin}`, `  zonefile: "${file}"`]),
        "",
      ].join("\n"),
    );
    const nsd = spawn("/usr/sbin/nsd", ["-d", "-c", join(dir, "nsd.conf")]);
    stops.push(nsd.stop);
    await waitAnswering(
      `127.0.0.1:${nsdPort}`,
      zones[0]!.origin,
      "nsd",
      nsd.exited,
      join(dir, "nsd.log"),
    );

    const unboundPort = await freePort();
    await Deno.writeTextFile(
      join(dir, "unbound.conf"),
      [
        "server:",
        "  interface: 127.0.0.1",
        `  port: ${unboundPort}`,
        "  do-ip6: no",
        "  access-control: 127.0.0.0/8 allow",
        "  do-not-query-localhost: no",
        '  username: ""',
        '  chroot: ""',
        `  directory: "${dir}"`,
        `  pidfile: "${dir}/unbound.pid"`,
        "  use-syslog: no",
        `  logfile: "${dir}/unbound.log"`,
        "  verbosity: 1",
        "  num-threads: 1",
        "  so-reuseport: no",
        "  qname-minimisation: no",
        // RFC 6761 names are blocked by default: the test zones live under test.
        '  local-zone: "test." nodefault',
        '  module-config: "validator iterator"',
        "  val-log-level: 2",
        ...prepared.flatMap(({ zone, ds }) =>
          ds === null ? [`  domain-insecure: "${zone.origin}"`] : [`  trust-anchor: "${ds}"`]
        ),
        "remote-control:",
        "  control-enable: no",
        ...prepared.flatMap(({ zone }) => [
          "stub-zone:",
          `  name: "${zone.origin}"`,
          `  stub-addr: 127.0.0.1@${nsdPort}`,
        ]),
        "",
      ].join("\n"),
    );
    const unbound = spawn("/usr/sbin/unbound", ["-d", "-c", join(dir, "unbound.conf")]);
    stops.push(unbound.stop);
    const nameserver = `127.0.0.1:${unboundPort}`;
    await waitAnswering(
      nameserver,
      zones[0]!.origin,
      "unbound",
      unbound.exited,
      join(dir, "unbound.log"),
    );
    return { nameserver, [Symbol.asyncDispose]: dispose };
  } catch (error: unknown) {
    await dispose();
    throw error;
  }
}
