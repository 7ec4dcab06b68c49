/**
 * `tern version`.
 *
 * @module
 */

import meta from "../deno.json" with { type: "json" };

/** tern's version, from deno.json. */
export const VERSION: string = meta.version;

/**
 * Prints the version.
 *
 * @returns 0.
 */
export function versionCommand(): number {
  console.log(`tern ${VERSION}`);
  return 0;
}
