/**
 * Validation of `queue.store` (a shared PostgreSQL store) and `queue.lease`.
 *
 * @module
 */

import { type Checker, describe, isMapping } from "./checker.ts";
import type { Config } from "./types.ts";

/** The store part of `queue`, only the keys that are set. */
export type StoreConfig = Pick<Config["queue"], "store" | "lease">;

/** The shortest lease: a delivery renews its claim at a fraction of it. */
const MIN_LEASE_MS = 1_000;

/**
 * Reads `queue.store` and `queue.lease`. Other keys of `queue` are left to
 * `checkQueue`.
 *
 * @param c Where problems go.
 * @param value The raw `queue` value.
 * @returns The fields to merge into `queue`; absent keys are left out.
 */
export function checkStore(c: Checker, value: unknown): StoreConfig {
  if (!isMapping(value)) return {};
  const out: { store?: string; lease?: number } = {};
  if (value.store !== undefined && value.store !== null) {
    const store = checkStoreUrl(c, value.store);
    if (store !== undefined) out.store = store;
  }
  if (value.lease !== undefined && value.lease !== null) {
    const lease = c.duration(value.lease, "queue.lease");
    if (lease !== undefined && lease < MIN_LEASE_MS) {
      c.report("queue.lease", `expected at least 1s, found ${describe(value.lease)}`);
    } else if (lease !== undefined) out.lease = lease;
  }
  return out;
}

/** A `postgres://` or `postgresql://` URL with a host and a database; `undefined` after reporting. */
function checkStoreUrl(c: Checker, value: unknown): string | undefined {
  const expected = "a PostgreSQL URL like postgres://tern@db.example.net:5432/tern";
  if (typeof value !== "string") {
    c.report("queue.store", `expected ${expected}, found ${describe(value)}`);
    return undefined;
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    c.report("queue.store", `not a URL: expected ${expected}`);
    return undefined;
  }
  if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") {
    c.report(
      "queue.store",
      `expected a postgres:// or postgresql:// URL, found a ${url.protocol}// one`,
    );
    return undefined;
  }
  const hasHost = url.hostname !== "" || url.searchParams.has("host");
  if (!hasHost) {
    c.report("queue.store", `the URL names no host: expected ${expected}`);
    return undefined;
  }
  if (url.pathname.replace(/^\//, "") === "") {
    c.report("queue.store", `the URL names no database: expected ${expected}`);
    return undefined;
  }
  return value;
}
