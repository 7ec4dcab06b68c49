/**
 * The configuration as it travels to a session worker. `postMessage` copies
 * plain data only, and a loaded configuration holds the DKIM private keys
 * already parsed (`KeyObject`s, and an OpenSSL handle); they travel as PEM
 * text and are parsed again in the worker, with the same code.
 *
 * @module
 */

import { parseDkimKey } from "../auth/dkim_keys.ts";
import type { Config, DkimKeyConfig } from "../config/schema.ts";

/** A DKIM key entry with its key as PEM text instead of parsed. */
type PortableDkimKey = Omit<DkimKeyConfig, "parsed"> & { readonly pem?: string };

/** A configuration `postMessage` can copy. */
export type PortableConfig = Omit<Config, "dkim"> & {
  readonly dkim?: { readonly keys: readonly PortableDkimKey[] };
};

/**
 * Makes a configuration copyable to a worker.
 *
 * @param config The configuration in force.
 * @returns The same, the DKIM keys as PEM.
 */
export function toPortable(config: Config): PortableConfig {
  if (config.dkim === undefined) return config;
  const keys = config.dkim.keys.map(({ parsed, ...entry }): PortableDkimKey =>
    parsed === undefined
      ? entry
      : { ...entry, pem: parsed.privateKey.export({ type: "pkcs8", format: "pem" }).toString() }
  );
  return { ...config, dkim: { keys } };
}

/**
 * The configuration again, in the worker.
 *
 * @param portable What {@linkcode toPortable} made.
 * @returns The configuration, its DKIM keys parsed.
 */
export function fromPortable(portable: PortableConfig): Config {
  const { dkim, ...rest } = portable;
  if (dkim === undefined) return rest;
  const keys = dkim.keys.map(({ pem, ...entry }): DkimKeyConfig =>
    pem === undefined
      ? entry
      : { ...entry, parsed: parseDkimKey(pem, entry.domain, entry.selector) }
  );
  return { ...rest, dkim: { keys } };
}
