/**
 * `tern version`.
 *
 * @module
 */

import meta from "../deno.json" with { type: "json" };
import { refuseArguments } from "./_common.ts";

/** tern's version, from deno.json. */
export const VERSION: string = meta.version;

const USAGE = `usage: tern version
  Print tern's version (also: tern --version).
  -h, --help      this help`;

/**
 * Prints the version.
 *
 * @param args The arguments after `version`: none, or `--help`.
 * @returns 0, or 1 for an unexpected argument.
 */
export function versionCommand(args: string[] = []): number {
  const refused = refuseArguments("version", args, USAGE);
  if (refused !== null) return refused;
  console.log(`tern ${VERSION}`);
  return 0;
}
