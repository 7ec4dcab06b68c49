/**
 * Password hashes for `accounts` in `tern.yaml`, made by `tern hash-password`
 * and checked when a client authenticates (AUTH PLAIN or LOGIN).
 *
 * The hash is scrypt (RFC 7914) with N = 2^15, r = 8, p = 1, a 16-byte random
 * salt and a 32-byte key, written as
 * `$scrypt$ln=15,r=8,p=1$<salt>$<key>` with both parts in base64 (no
 * padding). The password is normalized to Unicode NFC first (as RFC 8265's
 * OpaqueString profile does), so the same password typed on two systems that
 * compose accents differently still matches.
 *
 * Each check takes about 32 MiB for a tenth of a second, so checks run
 * through a {@linkcode HashingGate}: a few at once, the others wait their turn
 * in order, and past a bounded number of waiters a check is refused with
 * {@linkcode PasswordCheckBusyError} (AUTH answers `454 4.7.0`, try later).
 * Memory stays flat however many clients try at once.
 *
 * @module
 */

import { randomBytes, scrypt, type ScryptOptions, timingSafeEqual } from "node:crypto";
import { Buffer } from "node:buffer";

/** The cost parameters of new hashes. */
const LOG2_N = 15;
const BLOCK_SIZE = 8;
const PARALLELISM = 1;
const SALT_BYTES = 16;
const KEY_BYTES = 32;

/** Limits on what a stored hash may ask for, so a hand-edited hash cannot exhaust memory or time. */
const MAX_LOG2_N = 20;
const MAX_BLOCK_SIZE = 32;
const MAX_PARALLELISM = 16;

const HASH_PATTERN =
  /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2})$/;

/** A hash string taken apart. */
interface ScryptHash {
  readonly log2N: number;
  readonly blockSize: number;
  readonly parallelism: number;
  readonly salt: Buffer;
  readonly key: Buffer;
}

function decodeHash(hash: string): ScryptHash | null {
  const match = HASH_PATTERN.exec(hash);
  if (match === null) return null;
  const [, ln = "", r = "", p = "", salt = "", key = ""] = match;
  const parsed = {
    log2N: Number(ln),
    blockSize: Number(r),
    parallelism: Number(p),
    salt: Buffer.from(salt, "base64"),
    key: Buffer.from(key, "base64"),
  };
  const isSane = parsed.log2N >= 1 && parsed.log2N <= MAX_LOG2_N &&
    parsed.blockSize >= 1 && parsed.blockSize <= MAX_BLOCK_SIZE &&
    parsed.parallelism >= 1 && parsed.parallelism <= MAX_PARALLELISM &&
    parsed.salt.length >= 8 && parsed.key.length >= 16 && parsed.key.length <= 64;
  return isSane ? parsed : null;
}

function deriveKey(
  password: string,
  hash: Omit<ScryptHash, "key">,
  length: number,
): Promise<Buffer> {
  const n = 2 ** hash.log2N;
  const options: ScryptOptions = {
    N: n,
    r: hash.blockSize,
    p: hash.parallelism,
    // scrypt needs about 128 · N · r · p bytes; Node's default ceiling (32 MiB) is just too low for N = 2^15, r = 8.
    maxmem: 128 * n * hash.blockSize * hash.parallelism + 16 * 1024 * 1024,
  };
  return new Promise((resolve, reject) => {
    scrypt(password.normalize("NFC"), hash.salt, length, options, (error, key) => {
      if (error === null) resolve(key);
      else reject(error);
    });
  });
}

/** The password checks are all busy and too many are waiting: try again later. */
export class PasswordCheckBusyError extends Error {
  /** Makes the error. */
  constructor() {
    super("Too many password checks at once, try again later");
    this.name = "PasswordCheckBusyError";
  }
}

/** Options of {@linkcode HashingGate}. */
export interface HashingGateOptions {
  /** Hashes computed at once (each takes about 32 MiB). @default {2} */
  readonly concurrency?: number;
  /** Checks that may wait for their turn; more are refused. @default {32} */
  readonly maxWaiting?: number;
}

/**
 * Bounds how many scrypt computations run at once: the rest wait in a FIFO
 * queue, and a check that would make the queue longer than `maxWaiting` is
 * refused at once with {@linkcode PasswordCheckBusyError}. One gate serves
 * the whole process by default, so memory for hashing is bounded by
 * `concurrency` × 32 MiB whatever the number of connections.
 *
 * @example Two at once, one waiting, the fourth refused
 * ```ts
 * import { HashingGate, PasswordCheckBusyError } from "./password.ts";
 * import assert from "node:assert/strict";
 *
 * const gate = new HashingGate({ concurrency: 2, maxWaiting: 1 });
 * const { promise: hold, resolve: release } = Promise.withResolvers<void>();
 * const three = [1, 2, 3].map(() => gate.run(() => hold));
 * assert.equal(gate.running, 2);
 * assert.equal(gate.waiting, 1);
 * await assert.rejects(gate.run(() => hold), PasswordCheckBusyError);
 * release();
 * await Promise.all(three);
 * assert.equal(gate.running, 0);
 * ```
 */
export class HashingGate {
  #concurrency: number;
  #maxWaiting: number;
  #running = 0;
  #waiting: (() => void)[] = [];

  /**
   * Makes a gate.
   *
   * @param options How many at once, and how many may wait.
   * @throws {RangeError} When `concurrency` is below 1 or `maxWaiting` below 0.
   */
  constructor(options: HashingGateOptions = {}) {
    this.#concurrency = options.concurrency ?? 2;
    this.#maxWaiting = options.maxWaiting ?? 32;
    if (!(this.#concurrency >= 1) || !(this.#maxWaiting >= 0)) {
      throw new RangeError("A hashing gate needs concurrency ≥ 1 and maxWaiting ≥ 0");
    }
  }

  /** Computations running now. */
  get running(): number {
    return this.#running;
  }

  /** Computations waiting for their turn. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /**
   * Runs a task when its turn comes (first come, first served).
   *
   * @param task The computation.
   * @param options `mayRefuse: false` waits however long the queue is (for
   *   `hashPassword`, which an operator runs, never a client). @default {{ mayRefuse: true }}
   * @returns What the task returns.
   * @throws {PasswordCheckBusyError} When the queue is full.
   */
  async run<T>(task: () => Promise<T>, options: { mayRefuse?: boolean } = {}): Promise<T> {
    if (this.#running < this.#concurrency) {
      this.#running++;
    } else if ((options.mayRefuse ?? true) && this.#waiting.length >= this.#maxWaiting) {
      throw new PasswordCheckBusyError();
    } else {
      // The slot is handed over by #release, so #running stays as it is.
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    }
    try {
      return await task();
    } finally {
      this.#release();
    }
  }

  #release(): void {
    const next = this.#waiting.shift();
    if (next === undefined) this.#running--;
    else next();
  }
}

/** The gate of this process: every hash and check goes through it unless told otherwise. */
const DEFAULT_GATE = new HashingGate();

function toBase64(bytes: Buffer): string {
  return bytes.toString("base64").replace(/=+$/, "");
}

/**
 * Hashes a password for an account in `tern.yaml` (what `tern hash-password`
 * prints). Each call uses a fresh random salt, so the same password gives a
 * different string every time. Takes about a tenth of a second, on purpose.
 *
 * @param password The password, not empty.
 * @returns The hash, `$scrypt$ln=15,r=8,p=1$<salt>$<key>`.
 * @throws {RangeError} When the password is empty.
 *
 * @example Hash a password
 * ```ts
 * import { hashPassword } from "./password.ts";
 * import assert from "node:assert/strict";
 *
 * const hash = await hashPassword("correct horse battery staple");
 * assert.match(hash, /^\$scrypt\$ln=15,r=8,p=1\$/);
 * ```
 */
export async function hashPassword(password: string): Promise<string> {
  if (password === "") throw new RangeError("Cannot hash an empty password");
  const params = {
    log2N: LOG2_N,
    blockSize: BLOCK_SIZE,
    parallelism: PARALLELISM,
    salt: randomBytes(SALT_BYTES),
  };
  const key = await DEFAULT_GATE.run(() => deriveKey(password, params, KEY_BYTES), {
    mayRefuse: false,
  });
  return `$scrypt$ln=${LOG2_N},r=${BLOCK_SIZE},p=${PARALLELISM}$${toBase64(params.salt)}$${
    toBase64(key)
  }`;
}

/** Options of {@linkcode verifyPassword}. */
export interface VerifyPasswordOptions {
  /** Where the computation waits its turn. @default {the gate of this process} */
  readonly gate?: HashingGate;
}

/**
 * Checks a password against a hash made by {@linkcode hashPassword}, in
 * constant time for a given hash. A malformed hash never matches (and never
 * throws), so a broken `accounts` entry locks the account rather than opening it.
 * The computation waits its turn at a {@linkcode HashingGate}.
 *
 * @param password The password the client sent.
 * @param hash The stored hash.
 * @param options The gate to wait at.
 * @returns Whether the password matches.
 * @throws {PasswordCheckBusyError} When too many checks are waiting already:
 *   nothing was checked, so the answer is "try again later".
 *
 * @example Check a password
 * ```ts
 * import { hashPassword, verifyPassword } from "./password.ts";
 * import assert from "node:assert/strict";
 *
 * const hash = await hashPassword("s3cret");
 * assert.equal(await verifyPassword("s3cret", hash), true);
 * assert.equal(await verifyPassword("guess", hash), false);
 * assert.equal(await verifyPassword("s3cret", "not a hash"), false);
 * ```
 */
export async function verifyPassword(
  password: string,
  hash: string,
  options: VerifyPasswordOptions = {},
): Promise<boolean> {
  const stored = decodeHash(hash);
  if (stored === null) return false;
  const gate = options.gate ?? DEFAULT_GATE;
  const key = await gate.run(() =>
    deriveKey(password, stored, stored.key.length).catch(() => null)
  );
  return key !== null && timingSafeEqual(key, stored.key);
}

/**
 * Tells whether a string is a well-formed hash as made by
 * {@linkcode hashPassword} (without checking any password against it). The
 * configuration uses it to refuse a plain-text password in `accounts`.
 *
 * @param hash The string to look at.
 * @returns Whether {@linkcode verifyPassword} could ever accept it.
 *
 * @example Tell a hash from a plain password
 * ```ts
 * import { isPasswordHash } from "./password.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(isPasswordHash("hunter2"), false);
 * assert.equal(
 *   isPasswordHash("$scrypt$ln=15,r=8,p=1$c2FsdHNhbHRzYWx0c2FsdA$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U"),
 *   true,
 * );
 * ```
 */
export function isPasswordHash(hash: string): boolean {
  return decodeHash(hash) !== null;
}
