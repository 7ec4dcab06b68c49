/**
 * Durations (`30s`, `5m`, `4h`, `5d`, `250ms`) and sizes (`26214400`, `25M`,
 * `25MiB`, `10k`) as people write them in `tern.yaml`, and back.
 *
 * Sizes use binary multiples: `k` is 1024 bytes, `M` is 1024 × 1024 and `G`
 * 1024 × 1024 × 1024, whether written `M` or `MiB`. A plain integer is bytes.
 *
 * @module
 */

/** Milliseconds per duration unit, largest first (the order {@linkcode formatDuration} tries them). */
const DURATION_UNITS: readonly (readonly [string, number])[] = [
  ["d", 86_400_000],
  ["h", 3_600_000],
  ["m", 60_000],
  ["s", 1_000],
  ["ms", 1],
];

/** Bytes per size suffix; `k`, `M` and `G` are 1024-based, like `KiB`, `MiB` and `GiB`. */
const SIZE_UNITS: Readonly<Record<string, number>> = {
  "": 1,
  k: 1024,
  K: 1024,
  KiB: 1024,
  m: 1024 ** 2,
  M: 1024 ** 2,
  MiB: 1024 ** 2,
  g: 1024 ** 3,
  G: 1024 ** 3,
  GiB: 1024 ** 3,
};

/** The suffixes {@linkcode formatSize} writes, largest first. */
const SIZE_FORMATS: readonly (readonly [string, number])[] = [
  ["G", 1024 ** 3],
  ["M", 1024 ** 2],
  ["k", 1024],
];

/**
 * Reads a duration: a whole number followed by one unit, `ms`, `s`, `m`, `h`
 * or `d` (`250ms`, `30s`, `5m`, `4h`, `5d`).
 *
 * @param text The duration as written.
 * @returns The duration in milliseconds.
 * @throws {SyntaxError} When the text is not such a duration, or too large.
 *
 * @example Read durations
 * ```ts
 * import { parseDuration } from "./duration.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(parseDuration("5m"), 300_000);
 * assert.equal(parseDuration("250ms"), 250);
 * assert.throws(() => parseDuration("5 days"), SyntaxError);
 * ```
 */
export function parseDuration(text: string): number {
  const match = /^(\d+)(ms|s|m|h|d)$/.exec(text);
  if (match === null) {
    throw new SyntaxError(
      `Cannot parse duration ${JSON.stringify(text)}: ` +
        `expected a whole number and a unit (ms, s, m, h or d), like "30s" or "5m"`,
    );
  }
  const [, digits = "", unit = ""] = match;
  const factor = DURATION_UNITS.find(([suffix]) => suffix === unit)?.[1] ?? 1;
  const ms = Number(digits) * factor;
  if (!Number.isSafeInteger(ms)) {
    throw new SyntaxError(`Cannot parse duration ${JSON.stringify(text)}: too large`);
  }
  return ms;
}

/**
 * Writes a duration in its shortest exact form: the largest unit that divides
 * it (`300000` → `"5m"`, `90000` → `"90s"`, `1500` → `"1500ms"`). The result
 * reads back with {@linkcode parseDuration}.
 *
 * @param ms The duration in milliseconds, a non-negative integer.
 * @returns The duration as a person would write it; `"0s"` for zero.
 * @throws {RangeError} When `ms` is negative or not an integer.
 *
 * @example Write durations
 * ```ts
 * import { formatDuration } from "./duration.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(formatDuration(300_000), "5m");
 * assert.equal(formatDuration(432_000_000), "5d");
 * assert.equal(formatDuration(90_000), "90s");
 * ```
 */
export function formatDuration(ms: number): string {
  if (!Number.isSafeInteger(ms) || ms < 0) {
    throw new RangeError(`Cannot format duration ${ms}: expected a non-negative integer of ms`);
  }
  if (ms === 0) return "0s";
  for (const [suffix, factor] of DURATION_UNITS) {
    if (ms % factor === 0) return `${ms / factor}${suffix}`;
  }
  return `${ms}ms`; // unreachable: every integer is a whole number of ms
}

/**
 * Reads a size in bytes: a plain non-negative integer is bytes; a string is a
 * whole number with an optional suffix `k`, `M` or `G` (also `KiB`, `MiB`,
 * `GiB`). The suffixes are 1024-based: `25M` is 26214400 bytes.
 *
 * @param value The size as written.
 * @returns The size in bytes.
 * @throws {SyntaxError} When the value is not such a size, or too large.
 *
 * @example Read sizes
 * ```ts
 * import { parseSize } from "./duration.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(parseSize(26214400), 26214400);
 * assert.equal(parseSize("25M"), 26214400);
 * assert.equal(parseSize("25MiB"), 26214400);
 * assert.equal(parseSize("10k"), 10240);
 * assert.throws(() => parseSize("25 megabytes"), SyntaxError);
 * ```
 */
export function parseSize(value: number | string): number {
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new SyntaxError(`Cannot parse size ${value}: expected a whole number of bytes`);
    }
    return value;
  }
  const match = /^(\d+)([A-Za-z]*)$/.exec(value);
  const factor = match === null ? undefined : SIZE_UNITS[match[2] ?? ""];
  if (match === null || factor === undefined) {
    throw new SyntaxError(
      `Cannot parse size ${JSON.stringify(value)}: expected a whole number of bytes, ` +
        `optionally with k, M or G (1024-based), like "25M"`,
    );
  }
  const bytes = Number(match[1]) * factor;
  if (!Number.isSafeInteger(bytes)) {
    throw new SyntaxError(`Cannot parse size ${JSON.stringify(value)}: too large`);
  }
  return bytes;
}

/**
 * Writes a size in its shortest exact form with 1024-based suffixes
 * (`26214400` → `"25M"`, `10240` → `"10k"`, `1000` → `"1000"`). The result
 * reads back with {@linkcode parseSize}.
 *
 * @param bytes The size, a non-negative integer.
 * @returns The size as a person would write it; no suffix means bytes.
 * @throws {RangeError} When `bytes` is negative or not an integer.
 *
 * @example Write sizes
 * ```ts
 * import { formatSize } from "./duration.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(formatSize(26214400), "25M");
 * assert.equal(formatSize(1000), "1000");
 * ```
 */
export function formatSize(bytes: number): string {
  if (!Number.isSafeInteger(bytes) || bytes < 0) {
    throw new RangeError(`Cannot format size ${bytes}: expected a non-negative integer of bytes`);
  }
  if (bytes === 0) return "0";
  for (const [suffix, factor] of SIZE_FORMATS) {
    if (bytes % factor === 0) return `${bytes / factor}${suffix}`;
  }
  return String(bytes);
}
