/**
 * Slowing down password guessing: AUTH attempts counted per client address
 * (across connections, and across listeners when they share one limiter) and
 * per account (the user name the client gave), in two separate counters with
 * the same window. Each failure is answered after a delay that doubles with
 * every failure still remembered; after `maxFailures` from one address, the
 * client is disconnected and AUTH from that address is refused until the
 * failures are forgotten (`windowMs` after the last one). After
 * `maxAccountFailures` at one account, from anywhere, AUTH as that account is
 * refused unchecked in the same way, so a guesser who spreads over many
 * addresses still gets few guesses at one account.
 *
 * An attempt is counted before its password is checked, as a failure, until
 * it is known to have succeeded: a client that sends many attempts at once
 * (on parallel connections) gets no more checks than the limit, since the
 * later ones see the earlier ones in flight.
 *
 * A success does not wipe the count (it only takes back its own attempt): a
 * guesser who owns one account must not be able to reset it between guesses
 * at another.
 *
 * The session knows nothing of this (it has no clock); the socket adapter
 * asks the limiter before it checks a password and waits the delay before it
 * answers.
 *
 * @module
 */

/** Options of {@linkcode AuthLimiter}. */
export interface AuthLimiterOptions {
  /** Failures from one client address before it is disconnected and locked out. @default {5} */
  maxFailures?: number;
  /**
   * Failures at one account, from any address, before AUTH as that account
   * is refused unchecked. Higher than `maxFailures`, so a user who mistypes
   * from home locks out home first, not their account everywhere.
   * @default {twice maxFailures}
   */
  maxAccountFailures?: number;
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
  /** Clients (and, apart, accounts) remembered at most; the oldest are forgotten first. @default {100000} */
  maxClients?: number;
  /** The clock. @default {Date.now} */
  now?: () => number;
}

/** What a failure means for the client. */
export interface AuthFailure {
  /** Failures remembered for this client address, this one included (0 when the address is not counted). */
  readonly failures: number;
  /** Failures remembered for the account, this one included (0 when no account is counted). */
  readonly accountFailures: number;
  /** How long to wait before answering, ms (the longer of the two counters' delays). */
  readonly delayMs: number;
  /** Whether the client address is now locked out (disconnect it). */
  readonly isLocked: boolean;
}

/**
 * An AUTH attempt let through by {@linkcode AuthLimiter.begin}. Until it is
 * settled it counts as a failure; settle it exactly once (later calls do nothing).
 */
export interface AuthAttempt {
  /** The password was right: the attempt no longer counts (earlier failures do). */
  succeeded(): void;
  /**
   * The password was wrong: the attempt stays counted.
   *
   * @returns The counts, the delay to wait before answering, and whether to disconnect.
   */
  failed(): AuthFailure;
  /** Nothing was checked (a temporary failure, `454`): the attempt no longer counts. */
  abandoned(): void;
}

/** Which counter refused an attempt. */
export type AuthLock = "address" | "account";

/** The answer of {@linkcode AuthLimiter.begin}. */
export type AuthAdmission =
  /** Go on and check the password, then settle the attempt. */
  | { readonly attempt: AuthAttempt; readonly locked: null }
  /**
   * Refuse unchecked: the address (disconnect it at once) or the account
   * (answer as for a wrong password, after `delayMs`, so the guesser learns
   * nothing) has reached its limit.
   */
  | { readonly attempt: null; readonly locked: AuthLock; readonly delayMs: number };

/** Longer user names are cut to this for counting (RFC 5321 §4.5.3.1: 64 + 1 + 255). */
const MAX_ACCOUNT_KEY = 320;

/** What the account counter keys on: the user name as accounts are looked up. */
function accountKey(account: string): string {
  return account.normalize("NFC").toLowerCase().slice(0, MAX_ACCOUNT_KEY);
}

interface Failures {
  failures: number;
  last: number;
}

/** Failures per key within a window, the most recent last. */
class FailureCounter {
  readonly #windowMs: number;
  readonly #maxKeys: number;
  readonly #now: () => number;
  readonly #records = new Map<string, Failures>();

  constructor(windowMs: number, maxKeys: number, now: () => number) {
    this.#windowMs = windowMs;
    this.#maxKeys = maxKeys;
    this.#now = now;
  }

  /** The record of a key, unless forgotten (window over). */
  current(key: string): Failures | undefined {
    const record = this.#records.get(key);
    if (record !== undefined && this.#now() - record.last >= this.#windowMs) {
      this.#records.delete(key);
      return undefined;
    }
    return record;
  }

  count(key: string): number {
    return this.current(key)?.failures ?? 0;
  }

  /** Counts one more; returns the record, to take it back or touch it later. */
  add(key: string): Failures {
    const record = this.current(key) ?? { failures: 0, last: 0 };
    record.failures++;
    record.last = this.#now();
    // Most recent last, so the oldest is first when the map must shrink.
    this.#records.delete(key);
    this.#records.set(key, record);
    if (this.#records.size > this.#maxKeys) {
      const oldest = this.#records.keys().next().value;
      if (oldest !== undefined) this.#records.delete(oldest);
    }
    return record;
  }

  /** Takes one back, unless its record was forgotten meanwhile (then there is nothing to take). */
  remove(key: string, record: Failures): void {
    if (this.#records.get(key) === record && record.failures > 0) record.failures--;
  }

  /** A failure confirmed now: the window runs from here. */
  touch(key: string, record: Failures): void {
    if (this.#records.get(key) === record) record.last = this.#now();
  }
}

/**
 * Counts AUTH attempts per client address and per account.
 *
 * @example Three failures with a limit of three
 * ```ts
 * import { AuthLimiter } from "./auth_limiter.ts";
 * let now = 0;
 * const limiter = new AuthLimiter({ maxFailures: 3, delayMs: 100, now: () => now });
 * console.log(limiter.recordFailure("192.0.2.1").delayMs); // 100
 * console.log(limiter.recordFailure("192.0.2.1").delayMs); // 200
 * console.log(limiter.recordFailure("192.0.2.1").isLocked); // true
 * console.log(limiter.isLocked("192.0.2.1")); // true
 * now += 15 * 60_000;
 * console.log(limiter.isLocked("192.0.2.1")); // false
 * ```
 *
 * @example Attempts in flight count: the third of three parallel ones is refused
 * ```ts
 * import { AuthLimiter } from "./auth_limiter.ts";
 * const limiter = new AuthLimiter({ maxFailures: 2 });
 * const [a, b, c] = [1, 2, 3].map(() => limiter.begin("192.0.2.1", "alice@example.test"));
 * console.log(a?.locked, b?.locked, c?.locked); // null null address
 * a?.attempt?.succeeded(); // the right password: it no longer counts
 * console.log(b?.attempt?.failed().isLocked); // false (one failure)
 * ```
 */
export class AuthLimiter {
  #maxFailures: number;
  #maxAccountFailures: number;
  #delayMs: number;
  #maxDelayMs: number;
  #keyOf: (address: string) => string;
  #addresses: FailureCounter;
  #accounts: FailureCounter;

  /**
   * Makes a limiter.
   *
   * @param options The limits.
   */
  constructor(options: AuthLimiterOptions = {}) {
    this.#maxFailures = options.maxFailures ?? 5;
    this.#maxAccountFailures = options.maxAccountFailures ?? 2 * this.#maxFailures;
    this.#delayMs = options.delayMs ?? 1000;
    this.#maxDelayMs = options.maxDelayMs ?? 30_000;
    this.#keyOf = options.keyOf ?? ((address) => address);
    const windowMs = options.windowMs ?? 900_000;
    const maxKeys = options.maxClients ?? 100_000;
    const now = options.now ?? Date.now;
    this.#addresses = new FailureCounter(windowMs, maxKeys, now);
    this.#accounts = new FailureCounter(windowMs, maxKeys, now);
  }

  #delayAfter(failures: number): number {
    return failures === 0 ? 0 : Math.min(this.#delayMs * 2 ** (failures - 1), this.#maxDelayMs);
  }

  /**
   * Whether AUTH from this address is refused for now.
   *
   * @param address The client's IP address.
   * @returns Whether it has reached the limit within the window (attempts in flight included).
   */
  isLocked(address: string): boolean {
    return this.#addresses.count(this.#keyOf(address)) >= this.#maxFailures;
  }

  /**
   * Whether AUTH as this account is refused for now, from anywhere.
   *
   * @param account The user name (any case).
   * @returns Whether it has reached the account limit within the window.
   */
  isAccountLocked(account: string): boolean {
    return this.#accounts.count(accountKey(account)) >= this.#maxAccountFailures;
  }

  /**
   * Counts an attempt before its password is checked, as a failure until it
   * is settled, or refuses it unchecked when the address or the account has
   * reached its limit.
   *
   * @param address The client's IP address, or `null` not to count the
   *   address (for clients exempt from the address limit).
   * @param account The user name the client gave (any case).
   * @returns The attempt to settle, or which limit refused it.
   */
  begin(address: string | null, account: string): AuthAdmission {
    const addressKey = address === null ? null : this.#keyOf(address);
    const userKey = accountKey(account);
    if (addressKey !== null && this.#addresses.count(addressKey) >= this.#maxFailures) {
      return { attempt: null, locked: "address", delayMs: 0 };
    }
    const accountFailures = this.#accounts.count(userKey);
    if (accountFailures >= this.#maxAccountFailures) {
      return { attempt: null, locked: "account", delayMs: this.#delayAfter(accountFailures) };
    }
    const addressRecord = addressKey === null ? null : this.#addresses.add(addressKey);
    const accountRecord = this.#accounts.add(userKey);
    let settled: AuthFailure | null | undefined;
    const takeBack = () => {
      if (settled !== undefined) return;
      settled = null;
      if (addressKey !== null && addressRecord !== null) {
        this.#addresses.remove(addressKey, addressRecord);
      }
      this.#accounts.remove(userKey, accountRecord);
    };
    const attempt: AuthAttempt = {
      succeeded: takeBack,
      abandoned: takeBack,
      failed: () => {
        if (settled === undefined) {
          if (addressKey !== null && addressRecord !== null) {
            this.#addresses.touch(addressKey, addressRecord);
          }
          this.#accounts.touch(userKey, accountRecord);
          settled = this.#failure(addressRecord?.failures ?? 0, accountRecord.failures);
        }
        return settled ?? this.#failure(0, 0);
      },
    };
    return { attempt, locked: null };
  }

  #failure(failures: number, accountFailures: number): AuthFailure {
    return {
      failures,
      accountFailures,
      delayMs: this.#delayAfter(Math.max(failures, accountFailures)),
      isLocked: failures >= this.#maxFailures,
    };
  }

  /**
   * Counts one failure from an address, after the fact (no account, no
   * attempt in flight); {@linkcode AuthLimiter.begin} is what the server uses.
   *
   * @param address The client's IP address.
   * @returns The count, the delay to wait before answering, and whether to disconnect.
   */
  recordFailure(address: string): AuthFailure {
    return this.#failure(this.#addresses.add(this.#keyOf(address)).failures, 0);
  }
}
