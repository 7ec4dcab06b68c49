/**
 * The relay's outgoing connections: kept a few seconds for the next message
 * to the same host, within limits per destination and in total, and the
 * list of hosts that gave no answer (RFC 5321 §4.5.4.1), so a dead or
 * tarpitting host costs one timeout, not one per queued message.
 *
 * @module
 */

import { type SmtpClient, SmtpConnectionError, TlsHandshakeError } from "../smtp/client.ts";

/**
 * Why a destination was not tried: it is on the unreachable list, or its
 * connections are all stuck waiting for a greeting. Becomes a deferral of
 * the recipients (try the next MX first), never a wait in a delivery slot.
 */
export class DestinationUnavailable extends Error {
  /**
   * @param message What the deferred recipients' reply says.
   */
  constructor(message: string) {
    super(message);
    this.name = "DestinationUnavailable";
  }
}

/** The waiting was given up because the delivery loop is stopping. */
class WaitAbandoned extends Error {
  constructor() {
    super("Stopped waiting for a connection: shutting down");
    this.name = "WaitAbandoned";
  }
}

/** The most destinations kept on the unreachable list (a bound on its memory). */
const MAX_UNREACHABLE = 10_000;

/** Limits of a {@linkcode ConnectionPool}. */
export interface PoolLimits {
  readonly maxTotal: number;
  readonly maxPer: number;
  readonly idleMs: number;
  /** How long a destination that did not answer stays on the unreachable list, ms. */
  readonly unreachableMs: number;
  /** How long every connection to a destination may wait for its greeting before new messages stop queueing behind them, ms. */
  readonly stallMs: number;
  readonly now: () => number;
}

/** A delivery waiting for room: its destination, and how to wake it. */
interface Waiter {
  readonly key: string;
  readonly wake: () => void;
}

/**
 * Connections to reuse, and the limits on how many are open. It also keeps
 * RFC 5321 §4.5.4.1's list of hosts it cannot reach: a destination whose
 * connection failed with no reply (refused, reset, or no greeting before the
 * timeout) is not tried again for `unreachableMs`, so messages queued to a
 * dead or tarpitting host do not each sit out the timeout in turn.
 */
export class ConnectionPool {
  readonly #limits: PoolLimits;
  readonly #idle = new Map<
    string,
    { client: SmtpClient; timer: ReturnType<typeof setTimeout> }[]
  >();
  readonly #open = new Map<string, number>(); // per key: connecting + active + idle
  /** Per key, when each connection still waiting for its greeting began. */
  readonly #connecting = new Map<string, number[]>();
  /** The unreachable list: per key, until when, and why. */
  readonly #down = new Map<string, { until: number; since: number; reason: string }>();
  #total = 0;
  #waiters: Waiter[] = [];

  constructor(limits: PoolLimits) {
    this.#limits = limits;
  }

  /**
   * Borrows an idle connection to `key`, or opens one within the limits.
   * When the destination is at its limit it waits (the caller runs outside
   * the delivery loop's slots), unless the destination is unreachable or its
   * connections are all stuck before the greeting: then it throws
   * {@linkcode DestinationUnavailable} at once.
   */
  async acquire(
    key: string,
    connect: () => Promise<SmtpClient>,
    signal?: AbortSignal,
  ): Promise<SmtpClient> {
    while (true) {
      if (signal?.aborted) throw new WaitAbandoned();
      this.#throwIfDown(key);
      const idle = this.#idle.get(key);
      while (idle && idle.length > 0) {
        const entry = idle.pop()!;
        clearTimeout(entry.timer);
        if (entry.client.isUsable) return entry.client;
        this.#forget(key);
        void entry.client.close().catch(() => {});
      }
      const open = this.#open.get(key) ?? 0;
      if (open < this.#limits.maxPer && this.#total >= this.#limits.maxTotal) this.#closeOneIdle();
      if (open < this.#limits.maxPer && this.#total < this.#limits.maxTotal) {
        return await this.#openNew(key, connect, signal);
      }
      const stalledFor = this.#stalledFor(key);
      if (stalledFor >= this.#limits.stallMs) {
        throw new DestinationUnavailable(
          `not tried: ${open} connection(s) have waited ${
            Math.round(stalledFor / 1000)
          }s for its greeting`,
        );
      }
      await this.#wait(key, stalledFor >= 0 ? this.#limits.stallMs - stalledFor : null, signal);
    }
  }

  /** Opens a connection to `key`, counting it while it waits for the greeting. */
  async #openNew(
    key: string,
    connect: () => Promise<SmtpClient>,
    signal?: AbortSignal,
  ): Promise<SmtpClient> {
    this.#open.set(key, (this.#open.get(key) ?? 0) + 1);
    this.#total++;
    const started = this.#limits.now();
    const connecting = this.#connecting.get(key) ?? [];
    connecting.push(started);
    this.#connecting.set(key, connecting);
    try {
      const client = await connect();
      this.#down.delete(key);
      return client;
    } catch (error: unknown) {
      // No reply at all (refused, reset, timed out): the unreachable list.
      // A reply (a 421 or 554 greeting) means the host is there.
      const noAnswer = error instanceof SmtpConnectionError && error.reply === null &&
        !(error instanceof TlsHandshakeError);
      if (noAnswer && !signal?.aborted) {
        const now = this.#limits.now();
        if (this.#down.size >= MAX_UNREACHABLE) this.#sweepDown(now);
        this.#down.set(key, {
          until: now + this.#limits.unreachableMs,
          since: now,
          reason: error instanceof Error
            ? error.message.replace(/\s+/g, " ").slice(0, 500)
            : String(error),
        });
      }
      this.#forget(key);
      throw error;
    } finally {
      const i = connecting.indexOf(started);
      if (i >= 0) connecting.splice(i, 1);
      if (connecting.length === 0) this.#connecting.delete(key);
      // Waiters of a destination just put on the list leave at once.
      if (this.#down.has(key)) this.#wakeAll(key);
    }
  }

  /** Forgets expired entries of the unreachable list, or the oldest when none has expired. */
  #sweepDown(now: number): void {
    for (const [key, down] of this.#down) if (now >= down.until) this.#down.delete(key);
    if (this.#down.size >= MAX_UNREACHABLE) {
      const oldest = this.#down.keys().next();
      if (!oldest.done) this.#down.delete(oldest.value);
    }
  }

  #throwIfDown(key: string): void {
    const down = this.#down.get(key);
    if (down === undefined) return;
    const now = this.#limits.now();
    if (now >= down.until) {
      this.#down.delete(key);
      return;
    }
    throw new DestinationUnavailable(
      `not tried: it did not answer ${Math.round((now - down.since) / 1000)}s ago (${down.reason})`,
    );
  }

  /**
   * How long every open connection to `key` has been waiting for its
   * greeting (the youngest's wait), or -1 when one of them got through.
   */
  #stalledFor(key: string): number {
    const connecting = this.#connecting.get(key);
    if (connecting === undefined || connecting.length < (this.#open.get(key) ?? 0)) return -1;
    return this.#limits.now() - Math.max(...connecting);
  }

  /** Waits for room, at most `ms` (then the caller looks again), or until `signal`. */
  #wait(key: string, ms: number | null, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      const waiter: Waiter = {
        key,
        wake: () => {
          if (timer !== undefined) clearTimeout(timer);
          signal?.removeEventListener("abort", onAbort);
          const i = this.#waiters.indexOf(waiter);
          if (i >= 0) this.#waiters.splice(i, 1);
          resolve();
        },
      };
      const onAbort = (): void => waiter.wake();
      const timer = ms === null ? undefined : setTimeout(waiter.wake, Math.max(1, ms));
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  /** Gives a connection back: kept for reuse if it can take more, else closed. */
  release(key: string, client: SmtpClient): void {
    if (client.isUsable && this.#limits.idleMs > 0) {
      const list = this.#idle.get(key) ?? [];
      const entry = {
        client,
        timer: setTimeout(() => {
          const i = list.indexOf(entry);
          if (i >= 0) list.splice(i, 1);
          this.#forget(key);
          void client.close().catch(() => {});
        }, this.#limits.idleMs),
      };
      list.push(entry);
      this.#idle.set(key, list);
      this.#wakeOne(key);
      return;
    }
    this.#forget(key);
    void client.close().catch(() => {});
  }

  /** Closes every idle connection. */
  async close(): Promise<void> {
    const closing: Promise<void>[] = [];
    for (const [key, list] of this.#idle) {
      for (const entry of list.splice(0)) {
        clearTimeout(entry.timer);
        this.#forget(key);
        closing.push(entry.client.close().catch(() => {}));
      }
    }
    await Promise.all(closing);
  }

  #closeOneIdle(): void {
    for (const [key, list] of this.#idle) {
      const entry = list.shift();
      if (entry) {
        clearTimeout(entry.timer);
        this.#forget(key);
        void entry.client.close().catch(() => {});
        return;
      }
    }
  }

  #forget(key: string): void {
    const n = (this.#open.get(key) ?? 1) - 1;
    if (n <= 0) this.#open.delete(key);
    else this.#open.set(key, n);
    this.#total--;
    this.#wakeOne(key);
  }

  /**
   * Wakes the first waiter for `key`, else the first waiter for a
   * destination with room; a wake given to a waiter that cannot use it would
   * leave one that can asleep.
   */
  #wakeOne(key: string): void {
    const waiter = this.#waiters.find((w) => w.key === key) ??
      this.#waiters.find((w) => (this.#open.get(w.key) ?? 0) < this.#limits.maxPer);
    waiter?.wake();
  }

  #wakeAll(key: string): void {
    for (const waiter of this.#waiters.filter((w) => w.key === key)) waiter.wake();
  }
}
