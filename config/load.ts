/**
 * Reads `tern.yaml` (or the file given with `--config`) and turns it into a
 * complete, frozen {@linkcode Config}; see `schema.ts` for the rules.
 *
 * @module
 */

import { isNode, isScalar, LineCounter, parseDocument, visit, type YAMLError } from "yaml";
import { dirname, resolve } from "node:path";
import { ConfigError, type ConfigProblem } from "./errors.ts";
import { type Config, validateConfig } from "./schema.ts";

/** The file looked for in the working directory when no file is given. */
export const DEFAULT_CONFIG_FILE = "tern.yaml";

/** Options of {@linkcode loadConfig}. */
export interface LoadConfigOptions {
  /**
   * The config file, as the user gave it (`--config FILE`); relative to `cwd`.
   * It must exist.
   *
   * @default {`./tern.yaml` when it exists, else the built-in defaults}
   */
  file?: string;
  /**
   * The working directory: where a relative `file` and `./tern.yaml` are
   * looked for, and what relative paths are resolved against when there is
   * no file.
   *
   * @default {Deno.cwd()}
   */
  cwd?: string;
  /**
   * Whether to read secret files (passwords of smarthost routes, the SRS
   * secret): the server needs them, a CLI command run by another user does
   * not and may not be able to. @default {true}
   */
  readSecrets?: boolean;
}

/** Says why a file could not be read, in a few plain words. */
function describeReadError(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "no such file";
  if (error instanceof Deno.errors.IsADirectory) return "is a directory";
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (error instanceof Deno.errors.NotCapable) return "no read permission (run with --allow-read)";
  if (error instanceof Error) return error.message;
  return String(error);
}

/** The file's text, or a ConfigError `FILE: cannot read: why`. */
async function readConfigText(path: string, shownAs: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (error: unknown) {
    throw new ConfigError(
      [{ file: shownAs, keyPath: "", message: `cannot read: ${describeReadError(error)}` }],
      { cause: error },
    );
  }
}

/**
 * Parses YAML text into plain values; a syntax error is a ConfigError with
 * one `FILE: line L, column C: what is wrong` line per error.
 *
 * @param text The file's content.
 * @param shownAs The file's name in messages.
 * @returns The parsed value: `null` for an empty file.
 */
function parseYaml(text: string, shownAs: string): unknown {
  const lineCounter = new LineCounter();
  const document = parseDocument(text, { lineCounter, prettyErrors: false });
  // Warnings (an unknown !tag, say) mean the file does not say what its author thinks: refuse them too.
  const trouble: YAMLError[] = [...document.errors, ...document.warnings];
  const problems: ConfigProblem[] = trouble.map((error) => {
    const { line, col } = lineCounter.linePos(error.pos[0]);
    return { file: shownAs, keyPath: "", message: `line ${line}, column ${col}: ${error.message}` };
  });
  if (problems.length > 0) throw new ConfigError(problems);
  // A key that is itself a list or a mapping (`? [a, b]`) has no name to report it by.
  visit(document, {
    Pair(_, pair) {
      if (pair.key === null || isScalar(pair.key)) return;
      const { line, col } = lineCounter.linePos(isNode(pair.key) ? pair.key.range?.[0] ?? 0 : 0);
      problems.push({
        file: shownAs,
        keyPath: "",
        message: `line ${line}, column ${col}: a key must be a plain name, not a list or mapping`,
      });
    },
  });
  if (problems.length > 0) throw new ConfigError(problems);
  try {
    return document.toJS({ maxAliasCount: 1000 });
  } catch (error: unknown) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new ConfigError([{ file: shownAs, keyPath: "", message: reason }], { cause: error });
  }
}

/**
 * Loads the configuration. With `file`, reads that file (it must exist).
 * Without, reads `./tern.yaml` from `cwd` when it exists, else uses the
 * built-in defaults (a working server on 127.0.0.1:2525). An empty file also
 * means all defaults. Relative paths in the file are resolved against the
 * file's own directory; with no file, against `cwd`.
 *
 * Needs read access to the file (and `--allow-sys` for the default
 * `hostname`, else `localhost` is used), and environment access to
 * `LOG_TOKENS` and `LOG_STREAM`, which the YAML parser reads.
 *
 * @param options Which file, and the working directory.
 * @returns The complete configuration, deeply frozen.
 * @throws {ConfigError} When the file cannot be read, is not valid YAML, or
 * breaks a rule; with every problem found, as `FILE: key.path: what is wrong`
 * lines (FILE as the user gave it).
 *
 * @example Load the configuration and start from it
 * ```ts
 * import { loadConfig } from "./load.ts";
 * import { ConfigError } from "./errors.ts";
 *
 * // A sketch of a command's start; called with a real file it reads the disk.
 * async function start(file: string): Promise<number> {
 *   try {
 *     const config = await loadConfig({ file });
 *     console.log(`${config.hostname}: ${config.listeners.length} listener(s)`);
 *     return 0;
 *   } catch (error: unknown) {
 *     if (!(error instanceof ConfigError)) throw error;
 *     console.error(error.message); // one "FILE: key.path: what is wrong" line per problem
 *     return 1;
 *   }
 * }
 * console.log(typeof start); // "function"
 * ```
 */
export async function loadConfig(options: LoadConfigOptions = {}): Promise<Config> {
  const cwd = resolve(options.cwd ?? Deno.cwd());
  const readSecrets = options.readSecrets ?? true;
  let shownAs: string;
  let text: string;
  if (options.file !== undefined) {
    shownAs = options.file;
    text = await readConfigText(resolve(cwd, options.file), shownAs);
  } else {
    shownAs = DEFAULT_CONFIG_FILE;
    try {
      text = await Deno.readTextFile(resolve(cwd, DEFAULT_CONFIG_FILE));
    } catch (error: unknown) {
      if (!(error instanceof Deno.errors.NotFound)) {
        throw new ConfigError(
          [{ file: shownAs, keyPath: "", message: `cannot read: ${describeReadError(error)}` }],
          { cause: error },
        );
      }
      return validateConfig(null, { file: null, baseDir: cwd, readSecrets });
    }
  }
  const raw = parseYaml(text, shownAs);
  return validateConfig(raw, {
    file: shownAs,
    baseDir: dirname(resolve(cwd, options.file ?? DEFAULT_CONFIG_FILE)),
    readSecrets,
  });
}
