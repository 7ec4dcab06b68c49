/**
 * `tern dkim keygen --domain D --selector S [--algorithm rsa|ed25519] --out FILE`:
 * makes a DKIM signing key, writes it (PKCS#8 PEM, mode 0600) and prints
 * the DNS record that publishes its public half.
 *
 * ```sh
 * tern dkim keygen --domain example.test --selector s2026 --out dkim/example.test.s2026.pem
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  type DkimKeyType,
  dkimRecordLine,
  generateDkimKey,
  parseDkimKey,
} from "../auth/dkim_keys.ts";
import { CliError, describeArgsError, runCommand } from "./_common.ts";

const USAGE =
  `usage: tern dkim keygen --domain DOMAIN --selector SELECTOR [--algorithm rsa|ed25519] --out FILE
  Make a DKIM signing key, write it to FILE (PKCS#8 PEM, mode 0600; an
  existing file is never overwritten) and print its DNS record, to publish
  before the key is added to dkim.keys in the configuration.
  --domain DOMAIN       the signing domain (d=), like example.test
  --selector SELECTOR   the selector (s=), like s2026: a new one for each key
  --algorithm ALG       rsa (2048 bits, the default: every verifier knows it)
                        or ed25519 (RFC 8463; publish it beside an rsa key)
  --out FILE            where the private key goes
  -h, --help            this help`;

const HELP_HINT = '(see "tern dkim keygen --help")';

/**
 * Runs `tern dkim …`: `keygen` is the one subcommand.
 *
 * @param args The arguments after `dkim`.
 * @returns The exit code.
 *
 * @example From main.ts
 * ```ts
 * import { dkimCommand } from "./dkim.ts";
 *
 * // What main.ts does for `tern dkim keygen --domain example.test --selector s1 --out k.pem`:
 * async function run(): Promise<void> {
 *   Deno.exitCode = await dkimCommand(["keygen", "--domain", "example.test", "--selector", "s1", "--out", "k.pem"]);
 * }
 * console.log(typeof run); // "function"
 * ```
 */
export function dkimCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === "--help" || sub === "-h") {
    console.log(USAGE);
    return Promise.resolve(0);
  }
  return runCommand("dkim", async () => {
    if (sub === undefined) throw new CliError(`missing subcommand: keygen ${HELP_HINT}`);
    if (sub.startsWith("-")) {
      throw new CliError(`unknown option ${JSON.stringify(sub)} (see "tern dkim --help")`);
    }
    if (sub !== "keygen") {
      throw new CliError(
        `unknown subcommand ${JSON.stringify(sub)}: keygen is the one there is ${HELP_HINT}`,
      );
    }
    return await keygen(rest);
  });
}

async function keygen(args: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args,
      options: {
        domain: { type: "string" },
        selector: { type: "string" },
        algorithm: { type: "string" },
        out: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error: unknown) {
    throw new CliError(`${describeArgsError(error)} ${HELP_HINT}`);
  }
  if (values.help === true) {
    console.log(USAGE);
    return 0;
  }
  const { domain, selector, out } = values;
  if (domain === undefined) throw new CliError(`--domain is missing ${HELP_HINT}`);
  if (selector === undefined) throw new CliError(`--selector is missing ${HELP_HINT}`);
  if (out === undefined) throw new CliError(`--out FILE is missing ${HELP_HINT}`);
  const algorithm = values.algorithm ?? "rsa";
  if (algorithm !== "rsa" && algorithm !== "ed25519") {
    throw new CliError(`--algorithm must be rsa or ed25519, found ${JSON.stringify(algorithm)}`);
  }
  const pem = generateDkimKey(algorithm satisfies DkimKeyType);
  let key;
  try {
    key = parseDkimKey(pem, domain, selector); // checks the domain and selector too
  } catch (error: unknown) {
    throw new CliError(error instanceof Error ? error.message : String(error));
  }
  await writeKey(out, pem);
  console.log(dkimRecordLine(key));
  return 0;
}

/** Writes the key readable by its owner only, and never over an existing file (an old key may still sign). */
async function writeKey(file: string, pem: string): Promise<void> {
  try {
    await Deno.writeTextFile(file, pem, { createNew: true, mode: 0o600 });
  } catch (error: unknown) {
    if (error instanceof Deno.errors.AlreadyExists) {
      throw new CliError(`${file} already exists: not overwritten (choose another --out)`);
    }
    if (error instanceof Deno.errors.NotFound) {
      throw new CliError(`cannot write ${file}: its directory does not exist`);
    }
    if (error instanceof Deno.errors.PermissionDenied) {
      throw new CliError(`cannot write ${file}: permission denied`);
    }
    throw new CliError(`cannot write ${file}: ${error instanceof Error ? error.message : error}`);
  }
}
