/**
 * The {@linkcode Checker}: collects every problem of a configuration with its
 * key path (`relay.routes.example.test.host`) and reads typed values, so the
 * section checkers stay declarative.
 *
 * @module
 */

import { resolve } from "node:path";
import { parseDuration, parseSize } from "./duration.ts";
import type { ConfigProblem } from "./errors.ts";

/** Levenshtein distance, for "did you mean". */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current[j] = Math.min(
        (previous[j] ?? 0) + 1,
        (current[j - 1] ?? 0) + 1,
        (previous[j - 1] ?? 0) + cost,
      );
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

/**
 * The known key closest to an unknown one: at edit distance 2 or less, the
 * same words in camelCase or kebab-case, or a known key with letters added.
 */
export function suggestKey(key: string, known: readonly string[]): string | undefined {
  const snake = key.replace(/([a-z0-9])([A-Z])/g, "$1_$2").replace(/-/g, "_").toLowerCase();
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of known) {
    // `keyfile` for `key`, `logging` for `log`: a known name with a tail added.
    const isExtended = candidate.length >= 3 && snake.startsWith(candidate);
    const distance = snake === candidate ? 0 : isExtended ? 2 : editDistance(key, candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

/** How a found value is shown in a message: strings quoted, collections by kind. */
export function describe(value: unknown): string {
  if (value === null || value === undefined) return "nothing";
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "number" || typeof value === "boolean" || typeof value === "bigint") {
    return String(value);
  }
  if (Array.isArray(value)) return value.length === 0 ? "an empty list" : "a list";
  if (value instanceof Date) return "a date";
  if (value instanceof Uint8Array) return "binary data";
  return "a mapping";
}

export function isMapping(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const prototype: unknown = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

export function child(path: string, key: string): string {
  return path === "" ? key : `${path}.${key}`;
}

/** Collects problems while the validator walks the raw value, so every one is reported. */
export class Checker {
  readonly problems: ConfigProblem[] = [];
  readonly #file: string;
  /** Whether secret files are read (see `ValidateConfigOptions.readSecrets`). */
  readSecrets = true;

  constructor(file: string) {
    this.#file = file;
  }

  report(keyPath: string, message: string): void {
    this.problems.push({ file: this.#file, keyPath, message });
  }

  /** Reports keys that are not in `known`, with a suggestion when one is near. */
  unknownKeys(map: Record<string, unknown>, path: string, known: readonly string[]): void {
    for (const key of Object.keys(map)) {
      if (known.includes(key)) continue;
      const suggestion = suggestKey(key, known);
      const hint = suggestion === undefined ? "" : ` (did you mean ${JSON.stringify(suggestion)}?)`;
      this.report(child(path, key), `unknown key${hint}`);
    }
  }

  /**
   * A section (`limits:`): a mapping whose keys are all known. Left empty
   * (`limits:` alone, which YAML reads as null), it means all defaults.
   */
  section(value: unknown, path: string, known: readonly string[]): Record<string, unknown> {
    if (value === undefined || value === null) return {};
    if (!isMapping(value)) {
      this.report(path, `expected a mapping (key: value lines), found ${describe(value)}`);
      return {};
    }
    this.unknownKeys(value, path, known);
    return value;
  }

  /** A value that must be a list; `undefined` after reporting when it is not. */
  list(value: unknown, path: string, expected: string): unknown[] | undefined {
    if (Array.isArray(value)) return value;
    this.report(path, `expected ${expected}, found ${describe(value)}`);
    return undefined;
  }

  /** A value that must be a string; `undefined` after reporting when it is not. */
  string(value: unknown, path: string, expected: string): string | undefined {
    if (typeof value === "string") return value;
    this.report(path, `expected ${expected}, found ${describe(value)}`);
    return undefined;
  }

  oneOf<T extends string>(value: unknown, path: string, choices: readonly T[]): T | undefined {
    const found = choices.find((choice) => choice === value);
    if (found === undefined) {
      this.report(path, `expected one of ${choices.join(", ")}, found ${describe(value)}`);
    }
    return found;
  }

  positiveInteger(value: unknown, path: string): number | undefined {
    if (typeof value === "number" && Number.isSafeInteger(value) && value > 0) return value;
    this.report(path, `expected a positive integer, found ${describe(value)}`);
    return undefined;
  }

  /** A duration longer than zero, in ms. */
  duration(value: unknown, path: string): number | undefined {
    if (typeof value !== "string") {
      this.report(
        path,
        `expected a duration like "30s", "5m", "4h" or "5d", found ${describe(value)}`,
      );
      return undefined;
    }
    let ms: number;
    try {
      ms = parseDuration(value);
    } catch {
      this.report(path, `not a duration: ${describe(value)}`);
      return undefined;
    }
    if (ms > 0) return ms;
    this.report(path, `must be longer than 0, found ${describe(value)}`);
    return undefined;
  }

  /** A duration of zero or more, in ms (`0s` turns a delay off). */
  durationOrZero(value: unknown, path: string): number | undefined {
    if (value === 0 || value === "0") return 0;
    if (typeof value === "string") {
      try {
        return parseDuration(value);
      } catch {
        this.report(path, `not a duration: ${describe(value)}`);
        return undefined;
      }
    }
    this.report(
      path,
      `expected a duration like "500ms", "1s" or "0s", found ${describe(value)}`,
    );
    return undefined;
  }

  /** `true` or `false`. */
  boolean(value: unknown, path: string): boolean | undefined {
    if (typeof value === "boolean") return value;
    this.report(path, `expected true or false, found ${describe(value)}`);
    return undefined;
  }

  /** A size larger than zero, in bytes. */
  size(value: unknown, path: string): number | undefined {
    if (typeof value === "number" || typeof value === "string") {
      try {
        const bytes = parseSize(value);
        if (bytes > 0) return bytes;
      } catch {
        // reported below
      }
    }
    this.report(
      path,
      `expected a size in bytes like 26214400 or "25M" (k, M, G are 1024-based), found ${
        describe(value)
      }`,
    );
    return undefined;
  }

  /** A file or directory path, resolved against `baseDir`. */
  path(
    value: unknown,
    path: string,
    baseDir: string,
    expected = "a file path",
  ): string | undefined {
    if (typeof value === "string" && value !== "") return resolve(baseDir, value);
    this.report(path, `expected ${expected}, found ${describe(value)}`);
    return undefined;
  }
}
