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
import { DkimSigner } from "../auth/dkim_sign.ts";
import { dkimSignatures } from "../metrics/tern.ts";
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
  const signer = keys.length === 0 ? null : countedSigner(keys);
  signers.set(config, signer);
  return signer;
}

/**
 * A signer whose signatures are counted in `tern_dkim_signatures_total`.
 *
 * @param keys The keys.
 * @returns The signer.
 */
export function countedSigner(keys: readonly DkimKey[]): DkimSigner {
  return new DkimSigner(keys, {
    onSignature: (key) => dkimSignatures.labels(key.algorithm).inc(),
  });
}

function readKey(path: string, domain: string, selector: string): DkimKey | null {
  try {
    return parseDkimKey(Deno.readTextFileSync(path), domain, selector);
  } catch {
    return null; // not ours to read: the server signs what it takes in
  }
}
