/**
 * Validation of `workers`: how many threads run the mx listeners' SMTP
 * sessions (mta/session_workers.ts).
 *
 * @module
 */

import { type Checker, describe } from "./checker.ts";

/** More threads than this buy nothing but memory: the main thread's store commits are the limit. */
const MAX_WORKERS = 64;

/**
 * Reads `workers`: `auto`, or a count from 0 to 64.
 *
 * @param c Where problems go.
 * @param value The raw value.
 * @returns The count or `auto`; `auto` when the key is left out.
 */
export function checkWorkers(c: Checker, value: unknown): number | "auto" {
  if (value === undefined || value === null || value === "auto") return "auto";
  if (
    typeof value === "number" && Number.isSafeInteger(value) && value >= 0 && value <= MAX_WORKERS
  ) {
    return value;
  }
  c.report(
    "workers",
    `expected auto or a number of threads from 0 to ${MAX_WORKERS}, found ${describe(value)}`,
  );
  return "auto";
}
