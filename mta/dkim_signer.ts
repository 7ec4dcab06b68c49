/**
 * The DKIM signer of the configuration in force: one per loaded
 * configuration (a reload brings new keys), made from the keys read at load.
 * A process that loaded the configuration without its secrets (`tern send`
 * writing to the store itself) reads the key files here, and signs with
 * those it can read.
 *
 * @module
 */

import { parseDkimKey } from "../auth/dkim_keys.ts";
import type { DkimKey } from "../auth/dkim_keys.ts";
import type { DkimSigner } from "../auth/dkim_sign.ts";
import { CountingDkimSigner } from "../metrics/observers.ts";
import type { Config } from "../config/schema.ts";

const signers = new WeakMap<Config, DkimSigner | null>();

/**
 * The signer for a configuration, or `null` when it has no usable key.
 *
 * @param config The configuration in force.
 * @returns Its signer.
 */
export function signerOf(config: Config): DkimSigner | null {
  if (signers.has(config)) return signers.get(config)!;
  const keys: DkimKey[] = [];
  for (const k of config.dkim?.keys ?? []) {
    const parsed = k.parsed ?? readKey(k.key, k.domain, k.selector);
    if (parsed !== null) keys.push(parsed);
  }
  const signer = keys.length === 0 ? null : new CountingDkimSigner(keys);
  signers.set(config, signer);
  return signer;
}

function readKey(path: string, domain: string, selector: string): DkimKey | null {
  try {
    return parseDkimKey(Deno.readTextFileSync(path), domain, selector);
  } catch {
    return null; // not ours to read: the server signs what it takes in
  }
}
