/**
 * Open connections, in total and per client, against the limits of a
 * listener (`limits.max_connections`, `limits.max_connections_per_ip`).
 *
 * A listener served by one thread counts in a map. When several threads
 * accept on the same port (SO_REUSEPORT), the counts must be the port's,
 * not each thread's, or a client would get the limit once per thread:
 * {@linkcode SharedConnectionCounts} keeps them in shared memory, updated
 * with atomic operations, so every thread sees every other's connections
 * at once and without a message.
 *
 * @module
 */

/** Whether a connection may be served, and if not, which limit it met. */
export type Admission = "admitted" | "total" | "per-client";

/** Counts of a listener's open connections. */
export interface ConnectionCounts {
  /**
   * Counts one more connection from `key`, unless a limit is reached.
   *
   * @param key The client (its address, or its IPv6 /64).
   * @param maxTotal Connections at once in total.
   * @param maxPerClient Connections at once from one client.
   * @returns `admitted` (counted: call {@linkcode ConnectionCounts.release} when it closes), or the limit met.
   */
  admit(key: string, maxTotal: number, maxPerClient: number): Admission;
  /**
   * Counts one connection of `key` less.
   *
   * @param key As given to `admit`.
   */
  release(key: string): void;
}

/** The counts of a listener served by one thread. */
export class LocalConnectionCounts implements ConnectionCounts {
  #total = 0;
  readonly #perClient = new Map<string, number>();

  /**
   * Counts one more connection from `key`, unless a limit is reached.
   *
   * @param key The client.
   * @param maxTotal Connections at once in total.
   * @param maxPerClient Connections at once from one client.
   * @returns `admitted`, or the limit met.
   */
  admit(key: string, maxTotal: number, maxPerClient: number): Admission {
    if (this.#total >= maxTotal) return "total";
    const n = this.#perClient.get(key) ?? 0;
    if (n >= maxPerClient) return "per-client";
    this.#perClient.set(key, n + 1);
    this.#total++;
    return "admitted";
  }

  /**
   * Counts one connection of `key` less.
   *
   * @param key As given to `admit`.
   */
  release(key: string): void {
    const n = (this.#perClient.get(key) ?? 1) - 1;
    if (n <= 0) this.#perClient.delete(key);
    else this.#perClient.set(key, n);
    if (this.#total > 0) this.#total--;
  }
}

/** Counters per hash row: a power of two. */
const SLOTS = 1 << 16;

/** Int32 cells of one thread's section: its total, then two hash rows. */
const SECTION = 1 + 2 * SLOTS;

/** FNV-1a, 32 bits, from a seed: two seeds give two independent rows. */
function hash(key: string, seed: number): number {
  let h = seed >>> 0;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

const SEEDS = [0x811c9dc5, 0x9e3779b9] as const;

/**
 * Counts shared by the threads of one listening port, in a
 * `SharedArrayBuffer`. Each thread counts in a section of its own (its
 * total, and each client in two rows of 65,536 counters: a count-min
 * sketch, where a client's count is the smaller of its two counters, so two
 * clients share a count only when they collide in both rows, and a
 * collision can only count too many, never too few); a limit is checked
 * against the sum of every thread's section. A thread that dies leaves no
 * count behind: its section is cleared ({@linkcode SharedConnectionCounts.clear}).
 *
 * A connection is counted first and checked afterwards, taken back when
 * over a limit: two threads admitting at once may both refuse at the edge,
 * never both admit past it.
 *
 * @example Two threads' views of one port
 * ```ts
 * import { SharedConnectionCounts } from "./connection_counts.ts";
 *
 * const a = new SharedConnectionCounts({ threads: 2, thread: 0 });
 * const b = new SharedConnectionCounts({ buffer: a.buffer, thread: 1 }); // in a worker
 * console.log(a.admit("192.0.2.1", 100, 1)); // admitted
 * console.log(b.admit("192.0.2.1", 100, 1)); // per-client
 * ```
 */
export class SharedConnectionCounts implements ConnectionCounts {
  /** The shared memory, to send to the other threads. */
  readonly buffer: SharedArrayBuffer;
  readonly #cells: Int32Array;
  readonly #threads: number;
  /** Where this thread's section starts. */
  readonly #own: number;

  /**
   * Makes new counts for some threads, or a view of counts another thread made.
   *
   * @param options `threads` for new counts, or the other thread's `buffer`;
   *   and which thread this one is (from 0).
   */
  constructor(
    options: { readonly threads: number; readonly thread: number } | {
      readonly buffer: SharedArrayBuffer;
      readonly thread: number;
    },
  ) {
    this.buffer = "buffer" in options
      ? options.buffer
      : new SharedArrayBuffer(options.threads * SECTION * 4);
    this.#cells = new Int32Array(this.buffer);
    this.#threads = this.#cells.length / SECTION;
    if (!(options.thread >= 0 && options.thread < this.#threads)) {
      throw new RangeError(`thread ${options.thread} of ${this.#threads}`);
    }
    this.#own = options.thread * SECTION;
  }

  /** The sum of one cell over every thread's section. */
  #sum(offset: number): number {
    let n = 0;
    for (let t = 0; t < this.#threads; t++) n += Atomics.load(this.#cells, t * SECTION + offset);
    return n;
  }

  #rows(key: string): [number, number] {
    return [
      1 + (hash(key, SEEDS[0]) & (SLOTS - 1)),
      1 + SLOTS + (hash(key, SEEDS[1]) & (SLOTS - 1)),
    ];
  }

  /**
   * Counts one more connection from `key`, unless a limit is reached.
   *
   * @param key The client.
   * @param maxTotal Connections at once in total.
   * @param maxPerClient Connections at once from one client.
   * @returns `admitted`, or the limit met.
   */
  admit(key: string, maxTotal: number, maxPerClient: number): Admission {
    const cells = this.#cells;
    const own = this.#own;
    Atomics.add(cells, own, 1);
    if (this.#sum(0) > maxTotal) {
      Atomics.sub(cells, own, 1);
      return "total";
    }
    const [first, second] = this.#rows(key);
    Atomics.add(cells, own + first, 1);
    Atomics.add(cells, own + second, 1);
    if (Math.min(this.#sum(first), this.#sum(second)) > maxPerClient) {
      Atomics.sub(cells, own + first, 1);
      Atomics.sub(cells, own + second, 1);
      Atomics.sub(cells, own, 1);
      return "per-client";
    }
    return "admitted";
  }

  /**
   * Counts one connection of `key` less.
   *
   * @param key As given to `admit`.
   */
  release(key: string): void {
    const [first, second] = this.#rows(key);
    Atomics.sub(this.#cells, this.#own + first, 1);
    Atomics.sub(this.#cells, this.#own + second, 1);
    Atomics.sub(this.#cells, this.#own, 1);
  }

  /**
   * Forgets one thread's connections (it died, and they with it).
   *
   * @param thread The thread.
   */
  clear(thread: number): void {
    const start = thread * SECTION;
    for (let i = start; i < start + SECTION; i++) Atomics.store(this.#cells, i, 0);
  }
}
