/**
 * `tern check-config [--config FILE]`: validates the configuration and the
 * files it names (directories, certificate and key), and prints it in full,
 * defaults included, or prints every problem and fails.
 *
 * @module
 */

import { createPrivateKey, X509Certificate } from "node:crypto";
import { parseArgs } from "node:util";
import {
  type Config,
  ConfigError,
  type ConfigProblem,
  formatConfig,
  formatProblem,
  loadConfig,
  type LoadConfigOptions,
} from "../config/mod.ts";
import { describeArgsError } from "./_common.ts";

const USAGE = `usage: tern check-config [--config FILE]
  Validate the configuration and the files it names, and print it in full.
  --config FILE   the configuration (default ./tern.yaml, else the defaults)
  -h, --help      this help`;

const HELP_HINT = '(see "tern check-config --help")';

/** What {@linkcode checkConfigFiles} found: problems that stop a start, and warnings. */
export interface FileProblems {
  /** Files that cannot be used: a server must not start (or reload) with them. */
  readonly errors: ConfigProblem[];
  /**
   * Files that work today but not for long, or not at all for clients: an
   * expired certificate. `tern check-config` fails on them; `tern serve`
   * starts (and reloads) with a warning line, so a renewal that lands a
   * minute late does not take every listener down (the renewed file is
   * picked up without a restart).
   */
  readonly warnings: ConfigProblem[];
}

/** Says why a path could not be used, in a few plain words. */
function describeFsError(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "no such file";
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (error instanceof Deno.errors.IsADirectory) return "is a directory";
  if (error instanceof Deno.errors.NotCapable) return "no read permission (run with --allow-read)";
  return error instanceof Error ? error.message.split("\n")[0] ?? "" : String(error);
}

/** A directory key (`data_dir`, `mail_root`) whose path exists but is not a directory. */
async function checkDirectory(path: string): Promise<string | null> {
  try {
    const info = await Deno.stat(path);
    return info.isDirectory ? null : `${path} exists and is not a directory`;
  } catch (error: unknown) {
    // Missing is fine: tern serve creates it.
    if (error instanceof Deno.errors.NotFound) return null;
    return `cannot use ${path}: ${describeFsError(error)}`;
  }
}

/** Reads a PEM file; a problem line instead when it cannot be read. */
async function readPem(path: string): Promise<{ text: string } | { problem: string }> {
  try {
    return { text: await Deno.readTextFile(path) };
  } catch (error: unknown) {
    return { problem: `cannot read ${path}: ${describeFsError(error)}` };
  }
}

/**
 * Checks what the configuration names on disk, which the schema cannot:
 * `data_dir` and `mail_root` are directories (or do not exist yet), the TLS
 * certificate and key can be read and parsed, belong together, and the
 * certificate is valid now.
 *
 * @param config The configuration, validated.
 * @param shownAs The file's name in problem lines, as the user gave it.
 * @param now The clock, for the certificate's validity. @default {Date.now()}
 * @returns Errors and warnings, as `FILE: key.path: what is wrong` problems.
 *
 * @example A data_dir that is a file
 * ```ts
 * import { checkConfigFiles } from "./check_config.ts";
 * import { validateConfig } from "../config/schema.ts";
 * const file = await Deno.makeTempFile();
 * const config = validateConfig({ data_dir: file }, { file: "tern.yaml", baseDir: "/" });
 * const { errors } = await checkConfigFiles(config, "tern.yaml");
 * console.log(errors[0]?.keyPath); // "data_dir"
 * await Deno.remove(file);
 * ```
 */
export async function checkConfigFiles(
  config: Config,
  shownAs: string,
  now: number = Date.now(),
): Promise<FileProblems> {
  const errors: ConfigProblem[] = [];
  const warnings: ConfigProblem[] = [];
  const error = (keyPath: string, message: string) =>
    errors.push({ file: shownAs, keyPath, message });
  const dataDir = await checkDirectory(config.dataDir);
  if (dataDir !== null) error("data_dir", dataDir);
  // A mail root in the way is a warning: local delivery defers (4.3.5) until
  // the operator fixes it, while intake and relaying go on.
  const mailRoot = dataDir === null ? await checkDirectory(config.mailRoot) : null;
  if (mailRoot !== null) warnings.push({ file: shownAs, keyPath: "mail_root", message: mailRoot });
  // With tls.acme the files are tern's own, made at start when missing.
  if (config.tls === null || config.tls.acme !== undefined) return { errors, warnings };

  const certFile = await readPem(config.tls.cert);
  const keyFile = await readPem(config.tls.key);
  let cert: X509Certificate | null = null;
  if ("problem" in certFile) error("tls.cert", certFile.problem);
  else {
    try {
      cert = new X509Certificate(certFile.text);
    } catch {
      error("tls.cert", `${config.tls.cert} is not a PEM certificate`);
    }
  }
  let key: ReturnType<typeof createPrivateKey> | null = null;
  if ("problem" in keyFile) error("tls.key", keyFile.problem);
  else {
    try {
      key = createPrivateKey(keyFile.text);
    } catch {
      error("tls.key", `${config.tls.key} is not a PEM private key (or it needs a passphrase)`);
    }
  }
  if (cert !== null && key !== null && !cert.checkPrivateKey(key)) {
    error("tls.key", `${config.tls.key} does not belong to the certificate in ${config.tls.cert}`);
  }
  if (cert !== null) {
    const validTo = new Date(cert.validTo);
    const validFrom = new Date(cert.validFrom);
    if (validTo.getTime() < now) {
      warnings.push({
        file: shownAs,
        keyPath: "tls.cert",
        message: `the certificate expired on ${validTo.toISOString()} (${
          cert.subject.replaceAll("\n", ", ")
        })`,
      });
    } else if (validFrom.getTime() > now) {
      warnings.push({
        file: shownAs,
        keyPath: "tls.cert",
        message: `the certificate is not valid before ${validFrom.toISOString()}`,
      });
    }
  }
  return { errors, warnings };
}

/**
 * Runs `tern check-config`: loads the configuration (`--config FILE`, else
 * `./tern.yaml`, else the built-in defaults), prints it as YAML on standard
 * output and returns 0; or prints the problems, one `FILE: key.path: what is
 * wrong` line each, on standard error and returns 1.
 *
 * @param args The arguments after `check-config`.
 * @returns The exit code: 0 valid, 1 invalid (or bad arguments).
 *
 * @example Check the configuration from main.ts
 * ```ts
 * import { checkConfig } from "./check_config.ts";
 *
 * // What main.ts does for `tern check-config --config tern.yaml`:
 * async function run(): Promise<void> {
 *   Deno.exitCode = await checkConfig(["--config", "tern.yaml"]);
 * }
 * console.log(typeof run); // "function"
 * ```
 */
export async function checkConfig(args: string[]): Promise<number> {
  let file: string | undefined;
  try {
    const { values } = parseArgs({
      args,
      options: { config: { type: "string" }, help: { type: "boolean", short: "h" } },
      strict: true,
      allowPositionals: false,
    });
    if (values.help === true) {
      console.log(USAGE);
      return 0;
    }
    file = values.config;
  } catch (error: unknown) {
    const line = describeArgsError(error, 'option "--config" needs a FILE');
    console.error(`tern check-config: ${line} ${HELP_HINT}`);
    return 1;
  }
  const options: LoadConfigOptions = file === undefined ? {} : { file };
  try {
    const config = await loadConfig(options);
    // What breaks only at run time: files that are missing, expired or do not match.
    const { errors, warnings } = await checkConfigFiles(
      config,
      file ?? (config.file === null ? "(defaults)" : "tern.yaml"),
    );
    if (errors.length > 0 || warnings.length > 0) {
      console.error([...errors, ...warnings].map(formatProblem).join("\n"));
      return 1;
    }
    console.log(formatConfig(config).trimEnd());
    return 0;
  } catch (error: unknown) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(error.message);
    return 1;
  }
}
