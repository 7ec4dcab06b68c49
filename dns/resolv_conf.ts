/**
 * Reads `/etc/resolv.conf` the way glibc's stub resolver does (resolv.conf(5)),
 * for the parts an MTA needs: the name servers and the `options` line.
 *
 * `domain` and `search` lines are read past on purpose: mail domains are fully
 * qualified (RFC 5321 §2.3.5), so tern never appends a search domain.
 *
 * @module
 */

import { ipVersion } from "../net/ip.ts";

/** The `options` of resolv.conf that a stub resolver uses, with glibc's defaults. */
export interface ResolvConfOptions {
  /** Seconds to wait for one server, at most 30. glibc's default: 5. */
  readonly timeout: number;
  /** Rounds over all servers, at most 5. glibc's default: 2. */
  readonly attempts: number;
  /** Dots a name needs before it is tried as absolute first, at most 15. glibc's default: 1. */
  readonly ndots: number;
  /** Spread queries over the servers instead of always starting with the first. */
  readonly rotate: boolean;
}

/** What {@linkcode parseResolvConf} finds. */
export interface ResolvConf {
  /** `ip:port` or `[ipv6]:port`, port 53, at most 3 (glibc's MAXNS), in file order. */
  readonly nameservers: readonly string[];
  /** The `options` line(s), defaults filled in. */
  readonly options: ResolvConfOptions;
}

/** glibc: with no usable `nameserver` line, the local host is asked (`INADDR_LOOPBACK`). */
export const FALLBACK_NAMESERVER = "127.0.0.1:53";

/** glibc's MAXNS: further `nameserver` lines are ignored. */
const MAX_NAMESERVERS = 3;

function clampedNumber(value: string, max: number): number | null {
  if (!/^\d+$/.test(value)) return null;
  return Math.min(Number(value), max);
}

/**
 * Parses the text of a resolv.conf file. Lines that cannot be understood are
 * skipped, as glibc does; comments start with `#` or `;`.
 *
 * @param text The file's content.
 * @returns Name servers (possibly none) and options.
 *
 * @example Parse a resolv.conf
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseResolvConf } from "./resolv_conf.ts";
 * const conf = parseResolvConf(
 *   "# generated\nsearch example.test\nnameserver 192.0.2.53\nnameserver 2001:db8::53\noptions timeout:1 rotate\n",
 * );
 * assert.deepEqual(conf.nameservers, ["192.0.2.53:53", "[2001:db8::53]:53"]);
 * assert.deepEqual(conf.options, { timeout: 1, attempts: 2, ndots: 1, rotate: true });
 * ```
 */
export function parseResolvConf(text: string): ResolvConf {
  const nameservers: string[] = [];
  let timeout = 5;
  let attempts = 2;
  let ndots = 1;
  let rotate = false;
  for (const rawLine of text.split(/\r?\n/)) {
    const line = rawLine.replace(/[#;].*$/, "").trim();
    const [keyword, ...values] = line.split(/\s+/);
    if (keyword === "nameserver") {
      const address = values[0];
      if (address === undefined || nameservers.length >= MAX_NAMESERVERS) continue;
      const version = ipVersion(address);
      if (version === 4) nameservers.push(`${address}:53`);
      // A scope (fe80::1%eth0) is kept: the socket layer understands it.
      else if (version === 6) nameservers.push(`[${address.toLowerCase()}]:53`);
    } else if (keyword === "options") {
      for (const option of values) {
        const colon = option.indexOf(":");
        const name = colon === -1 ? option : option.slice(0, colon);
        const value = colon === -1 ? "" : option.slice(colon + 1);
        // The caps are glibc's (RES_MAXRETRANS, RES_MAXRETRY, RES_MAXNDOTS).
        if (name === "timeout") timeout = Math.max(1, clampedNumber(value, 30) ?? timeout);
        else if (name === "attempts") attempts = Math.max(1, clampedNumber(value, 5) ?? attempts);
        else if (name === "ndots") ndots = clampedNumber(value, 15) ?? ndots;
        else if (name === "rotate") rotate = true;
      }
    }
  }
  return { nameservers, options: { timeout, attempts, ndots, rotate } };
}

/**
 * Reads and parses a resolv.conf file. A missing file is read as an empty
 * one (glibc behaves the same); other read errors are thrown.
 *
 * @param path The file.
 * @returns Its name servers and options; `nameservers` may be empty.
 *
 * @example Read a resolv.conf file
 * ```ts
 * import assert from "node:assert/strict";
 * import { readResolvConf } from "./resolv_conf.ts";
 * const path = await Deno.makeTempFile();
 * await Deno.writeTextFile(path, "nameserver 192.0.2.53\noptions attempts:3\n");
 * const conf = await readResolvConf(path);
 * await Deno.remove(path);
 * assert.deepEqual(conf.nameservers, ["192.0.2.53:53"]);
 * assert.equal(conf.options.attempts, 3);
 * ```
 */
export async function readResolvConf(path = "/etc/resolv.conf"): Promise<ResolvConf> {
  let text = "";
  try {
    text = await Deno.readTextFile(path);
  } catch (error: unknown) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return parseResolvConf(text);
}

/**
 * The system's name servers: those of `/etc/resolv.conf`, or
 * {@linkcode FALLBACK_NAMESERVER} when it names none or is missing (as glibc does).
 *
 * @param path The file to read.
 * @returns One or more `ip:port` / `[ipv6]:port` entries.
 *
 * @example Fall back to the local host when no server is named
 * ```ts
 * import assert from "node:assert/strict";
 * import { readSystemNameservers } from "./resolv_conf.ts";
 * const path = await Deno.makeTempFile(); // empty
 * assert.deepEqual(await readSystemNameservers(path), ["127.0.0.1:53"]);
 * await Deno.remove(path);
 * ```
 */
export async function readSystemNameservers(path = "/etc/resolv.conf"): Promise<string[]> {
  const { nameservers } = await readResolvConf(path);
  return nameservers.length > 0 ? [...nameservers] : [FALLBACK_NAMESERVER];
}
