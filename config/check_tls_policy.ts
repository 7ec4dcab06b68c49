/**
 * Validation of the transport security keys of `relay`: `ca_file` (read and
 * parsed here, so a bad file is a one-line error at load, not a deferral at
 * the first delivery), `mta_sts` and `dane`.
 *
 * @module
 */

import { X509Certificate } from "node:crypto";
import { type Checker, isMapping } from "./checker.ts";
import type { Config } from "./types.ts";

/** The transport security part of `relay`, only the keys that differ from the defaults. */
export type TlsPolicyConfig = Pick<Config["relay"], "caFile" | "caCerts" | "mtaSts" | "dane">;

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/**
 * Reads `relay.ca_file`, `relay.mta_sts` and `relay.dane`. Other keys of
 * `relay` are left to `checkRelay`.
 *
 * @param c Where problems go.
 * @param value The raw `relay` value.
 * @param baseDir Where relative paths start.
 * @returns The fields to merge into `relay`; defaults are left out.
 */
export function checkTlsPolicy(c: Checker, value: unknown, baseDir: string): TlsPolicyConfig {
  if (!isMapping(value)) return {};
  const out: { caFile?: string; caCerts?: string[]; mtaSts?: boolean; dane?: boolean } = {};
  if (value.ca_file !== undefined && value.ca_file !== null) {
    const file = c.path(value.ca_file, "relay.ca_file", baseDir, "a PEM file of CA certificates");
    const certs = file === undefined ? undefined : readCaFile(c, file);
    if (file !== undefined && certs !== undefined) {
      out.caFile = file;
      out.caCerts = certs;
    }
  }
  if (value.mta_sts !== undefined) {
    if (c.boolean(value.mta_sts, "relay.mta_sts") === false) out.mtaSts = false;
  }
  if (value.dane !== undefined) {
    if (c.boolean(value.dane, "relay.dane") === false) out.dane = false;
  }
  return out;
}

/** The certificates of a PEM file, each checked to parse; `undefined` after reporting. */
function readCaFile(c: Checker, file: string): string[] | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(file);
  } catch (error: unknown) {
    const why = error instanceof Error ? error.message.replace(/\s+/g, " ") : String(error);
    c.report("relay.ca_file", `cannot read ${file}: ${why}`);
    return undefined;
  }
  const blocks = text.match(PEM_BLOCK) ?? [];
  if (blocks.length === 0) {
    c.report("relay.ca_file", `${file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
    return undefined;
  }
  for (const [i, block] of blocks.entries()) {
    try {
      new X509Certificate(block);
    } catch {
      c.report("relay.ca_file", `${file}: certificate ${i + 1} cannot be parsed`);
      return undefined;
    }
  }
  return blocks;
}
