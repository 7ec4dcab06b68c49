/**
 * A process's budget of file descriptors for client connections, shared by
 * every listener.
 *
 * A process that reaches its open-file limit cannot accept: `accept()` fails
 * with EMFILE. Under Deno's `node:net` a listener that once failed that way
 * never accepts again and says nothing, so tern must not get there. The
 * budget keeps client sockets (those being refused included) below the soft
 * limit, with room left for the queue store, deliveries and DNS; past it new
 * connections are closed at once, which frees the descriptor before the next
 * accept. A periodic count of the descriptors really open catches what the
 * rest of the process uses beyond that room.
 *
 * @module
 */

/** Options of {@linkcode FdBudget}. */
export interface FdBudgetOptions {
  /** The open-file limit. @default {the soft limit in /proc/self/limits; none when unknown} */
  readonly limit?: number;
  /** Descriptors open before any client connects. @default {the count of /proc/self/fd} */
  readonly baseline?: number;
  /**
   * Descriptors kept for everything but client connections (deliveries, the
   * store, DNS). @default {the larger of 128 and an eighth of the limit}
   */
  readonly reserve?: number;
  /** Counts the descriptors open now, or `null` when it cannot tell. @default {counts /proc/self/fd} */
  readonly countOpen?: () => number | null;
  /**
   * Another thread's budget of this process ({@linkcode FdBudget.shared}):
   * this one then counts in the same shared memory, with its limits, so the
   * threads of a process draw from one budget. @default {a budget of its own}
   */
  readonly shared?: FdBudgetShare;
  /** Threads that will share this budget (a new one), each counting in a slot of its own. @default {1} */
  readonly threads?: number;
  /** Which of them this one is, from 0 (the one that made the budget). @default {0} */
  readonly thread?: number;
}

/** A budget as another thread adopts it: its limits, and its count in shared memory. */
export interface FdBudgetShare {
  /** The count of open client sockets, an `Int32Array` of one element. */
  readonly buffer: SharedArrayBuffer;
  /** The open-file limit. */
  readonly limit: number;
  /** Client sockets allowed at once, all threads together. */
  readonly capacity: number;
  /** Descriptors kept for everything but client connections. */
  readonly reserve: number;
}

/** Calls of {@linkcode FdBudget.check} that may go without a count, at most. */
const MAX_CHECKS_SKIPPED = 10;

/** The smallest number of client sockets allowed, however low the limit. */
const MIN_CAPACITY = 16;

/**
 * The soft open-file limit of this process, from `/proc/self/limits`.
 *
 * @returns The limit, or `null` when unknown (not Linux) or unlimited.
 */
export function readOpenFileLimit(): number | null {
  try {
    const text = Deno.readTextFileSync("/proc/self/limits");
    const m = /^Max open files\s+(\d+|unlimited)\s/m.exec(text);
    if (!m || m[1] === "unlimited") return null;
    return Number(m[1]);
  } catch {
    return null;
  }
}

/**
 * How many descriptors this process has open, from `/proc/self/fd`.
 *
 * @returns The count; the limit itself when even that read fails for want of
 *   a descriptor (EMFILE); `null` when it cannot tell (not Linux).
 */
export function countOpenFiles(): number | null {
  try {
    let n = 0;
    for (const _ of Deno.readDirSync("/proc/self/fd")) n++;
    return n - 1; // the directory being read
  } catch (error: unknown) {
    if (error instanceof Error && /os error 24\b/.test(error.message)) return Infinity;
    return null;
  }
}

/**
 * Counts client sockets against the open-file limit.
 *
 * @example A budget of 100 descriptors
 * ```ts
 * import { FdBudget } from "./fd_budget.ts";
 *
 * const budget = new FdBudget({ limit: 256, baseline: 28, reserve: 128, countOpen: () => null });
 * console.log(budget.capacity); // 100
 * console.log(budget.tryAcquire()); // true
 * budget.release();
 * ```
 */
export class FdBudget {
  /** The open-file limit, or `Infinity` when unknown. */
  readonly limit: number;
  /** Client sockets allowed at once. */
  readonly capacity: number;
  #reserve: number;
  /**
   * Client sockets open, in shared memory: one count per thread (a thread
   * that dies is cleared without touching the others'), updated atomically.
   */
  #open: Int32Array;
  /** This thread's count in `#open`. */
  #slot: number;
  #countOpen: () => number | null;
  #pressure = false;
  /** Calls of `check` left before the next count. */
  #checksToSkip = 0;

  /**
   * Makes a budget; without options, from this process's limits.
   *
   * @param options The limit and what to keep aside.
   */
  constructor(options: FdBudgetOptions = {}) {
    const countOpen = options.countOpen ?? countOpenFiles;
    this.#countOpen = countOpen;
    const shared = options.shared;
    this.#open = new Int32Array(
      shared?.buffer ?? new SharedArrayBuffer(4 * (options.threads ?? 1)),
    );
    this.#slot = options.thread ?? 0;
    if (shared !== undefined) {
      this.limit = shared.limit;
      this.capacity = shared.capacity;
      this.#reserve = shared.reserve;
      return;
    }
    this.limit = options.limit ?? readOpenFileLimit() ?? Infinity;
    this.#reserve = options.reserve ?? Math.max(128, Math.ceil(this.limit / 8));
    if (!Number.isFinite(this.limit)) {
      this.capacity = Infinity;
      return;
    }
    const baseline = options.baseline ?? countOpen() ?? 0;
    this.capacity = Math.max(MIN_CAPACITY, this.limit - baseline - this.#reserve);
  }

  /**
   * Forgets one thread's sockets (it died, and they with it).
   *
   * @param thread Its slot.
   */
  clear(thread: number): void {
    Atomics.store(this.#open, thread, 0);
  }

  /** This budget for another thread of the process to adopt (`new FdBudget({ shared, thread })`). */
  get shared(): FdBudgetShare {
    return {
      buffer: this.#open.buffer as SharedArrayBuffer,
      limit: this.limit,
      capacity: this.capacity,
      reserve: this.#reserve,
    };
  }

  /** Client sockets open now. */
  get open(): number {
    let n = 0;
    for (let i = 0; i < this.#open.length; i++) n += Atomics.load(this.#open, i);
    return n;
  }

  /** Whether the last {@linkcode FdBudget.check} found the process short of descriptors. */
  get isShort(): boolean {
    return this.#pressure;
  }

  /**
   * Takes one descriptor for a new client socket.
   *
   * @returns `true` when it fits (call {@linkcode FdBudget.release} once it is
   *   closed); `false` when the socket must be closed at once.
   */
  tryAcquire(): boolean {
    if (this.#pressure) return false;
    Atomics.add(this.#open, this.#slot, 1);
    if (this.open > this.capacity) {
      Atomics.sub(this.#open, this.#slot, 1);
      return false;
    }
    return true;
  }

  /** Counts a socket that is closed (or refused after {@linkcode FdBudget.take}). */
  release(): void {
    if (Atomics.sub(this.#open, this.#slot, 1) <= 0) Atomics.add(this.#open, this.#slot, 1);
  }

  /**
   * Counts a socket kept only long enough to be refused: it is allowed past
   * the capacity, up to half the reserve, so that a refusal can still be
   * written while the process stays clear of its limit.
   *
   * @returns Whether it fits; if not, close it without a word.
   */
  take(): boolean {
    Atomics.add(this.#open, this.#slot, 1);
    if (this.open > this.capacity + this.#reserve / 2) {
      Atomics.sub(this.#open, this.#slot, 1);
      return false;
    }
    return true;
  }

  /**
   * Counts the descriptors really open: when the rest of the process uses
   * more than half the reserve beyond the client sockets, new connections are
   * refused until it drops again.
   *
   * @returns Whether the process is short of descriptors now.
   */
  check(): boolean {
    if (!Number.isFinite(this.limit)) return false;
    // A count reads /proc/self/fd, about 1.7 ms per 1,000 descriptors: with
    // thousands of idle clients, and well clear of the limit, count every
    // few calls only (one more per 1,000 descriptors, at most one in 10).
    if (this.#checksToSkip > 0) {
      this.#checksToSkip--;
      return this.#pressure;
    }
    const open = this.#countOpen();
    this.#pressure = open !== null && open >= this.limit - this.#reserve / 2;
    const clear = open !== null && open < this.limit - this.#reserve;
    this.#checksToSkip = clear ? Math.min(MAX_CHECKS_SKIPPED, Math.floor(open / 1000)) : 0;
    return this.#pressure;
  }
}
