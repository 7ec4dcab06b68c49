/**
 * Sizing and committing Deno KV atomic operations: the toolkit the KV queue
 * writes with. It knows nothing of messages, only of keys, values and the
 * limits of one atomic operation.
 *
 * A KV value holds at most 64 KiB; an atomic operation at most 1,000
 * mutations, 100 checks, 800 KiB of keys and values and 80 KiB of keys. A
 * write is described as a list of {@linkcode Mutation}s, its {@linkcode Cost}
 * is bounded from above before it is sent, and a write too big for one
 * operation is split ({@linkcode splitIntoOps}). Deno KV's SQLite store fails
 * at once when another connection holds the write lock, so every call goes
 * through {@linkcode retryLocked}.
 *
 * @module
 */

import { utf8Length } from "../bytes/utf8_length.ts";
import { QueueUnavailableError } from "./errors.ts";

/** One write of an atomic operation: set a key to a value, or delete it. */
export type Mutation =
  | { readonly kind: "set"; readonly key: Deno.KvKey; readonly value: unknown }
  | { readonly kind: "delete"; readonly key: Deno.KvKey };

/** What an atomic operation uses of each limit. */
export interface Cost {
  readonly mutations: number;
  readonly checks: number;
  readonly bytes: number;
  readonly keyBytes: number;
}

/** An operation that uses nothing: the reserve of a write with no checks. */
export const NO_COST: Cost = { mutations: 0, checks: 0, bytes: 0, keyBytes: 0 };

/**
 * What one atomic operation may use. Deno KV refuses more than 1,000
 * mutations, 100 checks, 819,200 bytes of mutated keys and values and 81,920
 * bytes of keys; the byte budgets keep a margin under the last two.
 */
export const BUDGET: Cost = { mutations: 1000, checks: 100, bytes: 780_000, keyBytes: 76_000 };

/**
 * A key as text, for sets of keys that may conflict: equal keys give equal
 * texts. Different keys rarely do (a number and its decimal string, a part
 * holding NUL): a false match only makes a write wait for the next
 * operation, and this runs for every key of every shared commit.
 */
export function keyText(key: Deno.KvKey): string {
  return key.join("\u0000");
}

/** An upper bound of a key's encoded size. */
function keySize(key: Deno.KvKey): number {
  let size = 0;
  for (const part of key) {
    size += typeof part === "string" ? utf8Length(part) + 2 : 10;
  }
  return size;
}

/**
 * An upper bound of a value's stored size. Bytes are stored as they are;
 * anything else goes through the V8 serializer, bounded by
 * {@linkcode serializedBound} (walked, not stringified: the queue sizes
 * every value of every commit, and a JSON text of a header's bytes is a
 * number per octet).
 */
export function valueSize(value: unknown): number {
  if (value instanceof Uint8Array) return value.byteLength;
  return serializedBound(value, 0) + 32;
}

/** Nesting past which {@linkcode serializedBound} falls back to the JSON text. */
const MAX_WALK_DEPTH = 16;

/**
 * An upper bound of what the V8 serializer writes for a value: a tag and a
 * varint length (at most 6 octets) around two octets per UTF-16 unit of a
 * string, 9 octets for a number, the octets of a byte array with its buffer
 * and view tags, and for arrays and plain objects their parts plus their own
 * tags and counts. Anything else (a Date, a Map) counts twice its JSON text.
 */
function serializedBound(value: unknown, depth: number): number {
  switch (typeof value) {
    case "string":
      return 2 * value.length + 6;
    case "number":
    case "boolean":
    case "undefined":
      return 10;
    case "bigint":
      return 2 * value.toString(16).length + 12;
    case "object": {
      if (value === null) return 1;
      if (value instanceof Uint8Array) return value.byteLength + 32;
      if (depth >= MAX_WALK_DEPTH) break;
      let size = 16;
      if (Array.isArray(value)) {
        for (const item of value) size += serializedBound(item, depth + 1);
        return size;
      }
      const proto = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) break;
      for (const [k, v] of Object.entries(value)) {
        size += 2 * k.length + 6 + serializedBound(v, depth + 1);
      }
      return size;
    }
  }
  return 2 * (JSON.stringify(value) ?? "").length + 32;
}

function mutationCost(m: Mutation): Cost {
  const k = keySize(m.key);
  return {
    mutations: 1,
    checks: 0,
    bytes: k + (m.kind === "set" ? valueSize(m.value) : 0),
    keyBytes: k,
  };
}

/** The cost of two parts of one operation. */
export function addCost(a: Cost, b: Cost): Cost {
  return {
    mutations: a.mutations + b.mutations,
    checks: a.checks + b.checks,
    bytes: a.bytes + b.bytes,
    keyBytes: a.keyBytes + b.keyBytes,
  };
}

/** An upper bound of what an operation of these checks and mutations uses. */
export function costOf(checks: readonly Deno.AtomicCheck[], mutations: readonly Mutation[]): Cost {
  let bytes = 0;
  let keyBytes = 0;
  for (const c of checks) keyBytes += keySize(c.key);
  for (const m of mutations) {
    const k = keySize(m.key);
    keyBytes += k;
    bytes += k + (m.kind === "set" ? valueSize(m.value) : 0);
  }
  return { mutations: mutations.length, checks: checks.length, bytes, keyBytes };
}

/** Whether an operation of this cost stays within every limit of {@linkcode BUDGET}. */
export function fitsBudget(cost: Cost): boolean {
  return cost.mutations <= BUDGET.mutations && cost.checks <= BUDGET.checks &&
    cost.bytes <= BUDGET.bytes && cost.keyBytes <= BUDGET.keyBytes;
}

/** Splits mutations into groups that each fit in one operation beside `reserved`. */
export function splitIntoOps(mutations: readonly Mutation[], reserved: Cost): Mutation[][] {
  const ops: Mutation[][] = [];
  let current: Mutation[] = [];
  let cost = reserved;
  for (const m of mutations) {
    const next = addCost(cost, mutationCost(m));
    if (current.length > 0 && !fitsBudget(next)) {
      ops.push(current);
      current = [];
      cost = addCost(reserved, mutationCost(m));
    } else {
      cost = next;
    }
    current.push(m);
  }
  if (current.length > 0) ops.push(current);
  return ops;
}

/** A mutation setting `key` to `value`. */
export function set(key: Deno.KvKey, value: unknown): Mutation {
  return { kind: "set", key, value };
}

/** A mutation deleting `key`. */
export function del(key: Deno.KvKey): Mutation {
  return { kind: "delete", key };
}

function buildOp(
  kv: Deno.Kv,
  checks: readonly Deno.AtomicCheck[],
  mutations: readonly Mutation[],
): Deno.AtomicOperation {
  const op = kv.atomic();
  if (checks.length > 0) op.check(...checks);
  for (const m of mutations) {
    if (m.kind === "set") op.set(m.key, m.value);
    else op.delete(m.key);
  }
  return op;
}

/** How long a write waits out other connections' writes before giving up. */
const LOCK_WAIT_MS = 30_000;

function isLocked(error: unknown): boolean {
  return error instanceof Error && /database is (locked|busy)/i.test(error.message);
}

/**
 * Runs a KV call, trying again while SQLite says the database is locked.
 *
 * Deno KV's SQLite store does not wait for a write lock held by another
 * connection: when the server and `tern send` write at the same moment, one
 * of them fails at once with "database is locked" (measured: most commits of
 * three processes writing in a loop). Nothing was written then, so trying
 * again after a short random pause is safe.
 *
 * @throws {QueueUnavailableError} When the store stayed locked for
 *   30 seconds; other errors pass through unchanged.
 */
export async function retryLocked<T>(call: () => Promise<T>): Promise<T> {
  const deadline = performance.now() + LOCK_WAIT_MS;
  let pause = 1;
  for (;;) {
    try {
      return await call();
    } catch (error: unknown) {
      if (!isLocked(error)) throw error;
      if (performance.now() > deadline) {
        throw new QueueUnavailableError((error as Error).message, { cause: error });
      }
    }
    await new Promise((resolve) => setTimeout(resolve, Math.random() * pause));
    pause = Math.min(pause * 2, 25);
  }
}

/**
 * Commits one atomic operation (retrying while the file is locked).
 *
 * @returns The versionstamp, or `null` when a check failed.
 */
export async function commitOp(
  kv: Deno.Kv,
  checks: readonly Deno.AtomicCheck[],
  mutations: readonly Mutation[],
): Promise<string | null> {
  const result = await retryLocked(() => buildOp(kv, checks, mutations).commit());
  return result.ok ? result.versionstamp : null;
}
