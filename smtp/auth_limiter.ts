/**
 * Slowing down password guessing: failed AUTH attempts counted per client
 * address across connections (and across listeners, when they share one
 * limiter). Each failure is answered after a delay that doubles with every
 * failure still remembered; after `maxFailures`, the client is disconnected
 * and AUTH from that address is refused until the failures are forgotten
 * (`windowMs` after the last one).
 *
 * A success does not wipe the count: a guesser who owns one account must not
 * be able to reset it between guesses at another.
 *
 * The session knows nothing of this (it has no clock); the socket adapter
 * asks the limiter before it checks a password and waits the delay before it
 * answers.
 *
 * @module
 */

/** Options of {@linkcode AuthLimiter}. */
export interface AuthLimiterOptions {
  /** Failures from one client before it is disconnected and locked out. @default {5} */
  maxFailures?: number;
  /** The delay after the first failure, ms; it doubles with each further one. @default {1000} */
  delayMs?: number;
  /** The longest delay, ms. @default {30000} */
  maxDelayMs?: number;
  /** How long a failure is remembered, ms (and so how long a lockout lasts). @default {900000} */
  windowMs?: number;
  /**
   * Which addresses count as one client (an IPv6 client usually holds a
   * whole /64). @default {the address itself}
   */
  keyOf?: (address: string) => string;
  /** Clients remembered at most; the oldest are forgotten first. @default {100000} */
  maxClients?: number;
  /** The clock. @default {Date.now} */
  now?: () => number;
}

/** What a failure means for the client. */
export interface AuthFailure {
  /** Failures remembered for this client, this one included. */
  readonly failures: number;
  /** How long to wait before answering, ms. */
  readonly delayMs: number;
  /** Whether the client is now locked out (disconnect it). */
  readonly isLocked: boolean;
}

interface ClientFailures {
  failures: number;
  last: number;
}

/**
 * Counts failed AUTH attempts per client address.
 *
 * @example Three failures with a limit of three
 * ```ts
 * import { AuthLimiter } from "./auth_limiter.ts";
 * let now = 0;
 * const limiter = new AuthLimiter({ maxFailures: 3, delayMs: 100, now: () => now });
 * console.log(limiter.recordFailure("192.0.2.1")); // { failures: 1, delayMs: 100, isLocked: false }
 * console.log(limiter.recordFailure("192.0.2.1").delayMs); // 200
 * console.log(limiter.recordFailure("192.0.2.1").isLocked); // true
 * console.log(limiter.isLocked("192.0.2.1")); // true
 * now += 15 * 60_000;
 * console.log(limiter.isLocked("192.0.2.1")); // false
 * ```
 */
export class AuthLimiter {
  #maxFailures: number;
  #delayMs: number;
  #maxDelayMs: number;
  #windowMs: number;
  #keyOf: (address: string) => string;
  #maxClients: number;
  #now: () => number;
  #clients = new Map<string, ClientFailures>();

  /**
   * Makes a limiter.
   *
   * @param options The limits.
   */
  constructor(options: AuthLimiterOptions = {}) {
    this.#maxFailures = options.maxFailures ?? 5;
    this.#delayMs = options.delayMs ?? 1000;
    this.#maxDelayMs = options.maxDelayMs ?? 30_000;
    this.#windowMs = options.windowMs ?? 900_000;
    this.#keyOf = options.keyOf ?? ((address) => address);
    this.#maxClients = options.maxClients ?? 100_000;
    this.#now = options.now ?? Date.now;
  }

  #current(key: string): ClientFailures | undefined {
    const record = this.#clients.get(key);
    if (record !== undefined && this.#now() - record.last >= this.#windowMs) {
      this.#clients.delete(key);
      return undefined;
    }
    return record;
  }

  /**
   * Whether AUTH from this address is refused for now.
   *
   * @param address The client's IP address.
   * @returns Whether it has reached the limit within the window.
   */
  isLocked(address: string): boolean {
    return (this.#current(this.#keyOf(address))?.failures ?? 0) >= this.#maxFailures;
  }

  /**
   * Counts one failure.
   *
   * @param address The client's IP address.
   * @returns The count, the delay to wait before answering, and whether to disconnect.
   */
  recordFailure(address: string): AuthFailure {
    const key = this.#keyOf(address);
    const record = this.#current(key) ?? { failures: 0, last: 0 };
    record.failures++;
    record.last = this.#now();
    // Most recent last, so the oldest is first when the map must shrink.
    this.#clients.delete(key);
    this.#clients.set(key, record);
    if (this.#clients.size > this.#maxClients) {
      const oldest = this.#clients.keys().next().value;
      if (oldest !== undefined) this.#clients.delete(oldest);
    }
    const delayMs = Math.min(this.#delayMs * 2 ** (record.failures - 1), this.#maxDelayMs);
    return {
      failures: record.failures,
      delayMs,
      isLocked: record.failures >= this.#maxFailures,
    };
  }
}
