/**
 * The error a bad configuration raises: every problem found, one per line,
 * each naming the file and the key so the user can go straight to it.
 *
 * @module
 */

/** One thing wrong with a configuration. */
export interface ConfigProblem {
  /** The file as the user named it (`tern.yaml`, `/etc/tern.yaml`), or `(defaults)`. */
  readonly file: string;
  /**
   * Where in the file, with the YAML names: `limits.max_recipients`,
   * `listeners[1].port`, `accounts.alice@example.test`; empty when the problem
   * is about the file as a whole (it cannot be read, it is not YAML).
   */
  readonly keyPath: string;
  /** What is wrong, sentence case without a final period: `expected a positive integer, found "lots"`. */
  readonly message: string;
}

/**
 * Formats one problem as the line `FILE: key.path: what is wrong` (or
 * `FILE: what is wrong` when the key path is empty).
 *
 * @param problem The problem.
 * @returns The line, without a line break.
 *
 * @example Format a problem
 * ```ts
 * import { formatProblem } from "./errors.ts";
 * import assert from "node:assert/strict";
 *
 * const line = formatProblem({
 *   file: "tern.yaml",
 *   keyPath: "queue.max_age",
 *   message: 'not a duration: "5 days"',
 * });
 * assert.equal(line, 'tern.yaml: queue.max_age: not a duration: "5 days"');
 * ```
 */
export function formatProblem(problem: ConfigProblem): string {
  return problem.keyPath === ""
    ? `${problem.file}: ${problem.message}`
    : `${problem.file}: ${problem.keyPath}: ${problem.message}`;
}

/**
 * A configuration that cannot be used. It carries every problem found, not just
 * the first; its `message` is all of them, one `FILE: key.path: what is wrong`
 * line each, ready to print.
 *
 * @example Catch a bad configuration
 * ```ts
 * import { ConfigError } from "./errors.ts";
 * import assert from "node:assert/strict";
 *
 * try {
 *   throw new ConfigError([
 *     { file: "tern.yaml", keyPath: "log.level", message: 'expected one of debug, info, warn, error, found "loud"' },
 *   ]);
 * } catch (error: unknown) {
 *   assert.ok(error instanceof ConfigError);
 *   assert.equal(error.problems.length, 1);
 *   assert.equal(error.message, 'tern.yaml: log.level: expected one of debug, info, warn, error, found "loud"');
 * }
 * ```
 */
export class ConfigError extends Error {
  /** Always `"ConfigError"`. */
  override name = "ConfigError";
  /** Every problem found, in the order the validator met them. */
  readonly problems: readonly ConfigProblem[];

  /**
   * Makes the error from its problems.
   *
   * @param problems What is wrong; at least one.
   * @param options `cause`, when a lower-level error led to this one.
   */
  constructor(problems: readonly ConfigProblem[], options?: ErrorOptions) {
    super(problems.map(formatProblem).join("\n"), options);
    this.problems = Object.freeze(problems.map((p) => Object.freeze({ ...p })));
  }
}
