/**
 * `tern version`.
 *
 * @module
 */

import meta from "../deno.json" with { type: "json" };

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
  const [first] = args;
  if (first === "--help" || first === "-h") {
    console.log(USAGE);
    return 0;
  }
  if (first !== undefined) {
    const what = first.startsWith("-") ? "unknown option" : "unexpected argument";
    console.error(`tern version: ${what} ${JSON.stringify(first)} (see "tern version --help")`);
    return 1;
  }
  console.log(`tern ${VERSION}`);
  return 0;
}
