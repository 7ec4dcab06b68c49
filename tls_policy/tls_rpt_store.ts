/**
 * Keeping TLS-RPT counts (RFC 8460 §4): sessions are added up in memory,
 * per UTC day and policy domain, and written to the queue's small shared
 * store every minute (and at shutdown) by a read-merge-write of
 * `tls-rpt/<day>/<domain>`; `tls-rpt/<day>` lists the domains of the day.
 *
 * The store's values are last-write-wins: two nodes flushing the same
 * domain at the same instant can lose one side's counts of that minute.
 * Reports are statistics, and that loss is accepted rather than a lock
 * taken on every delivery.
 *
 * @module
 */

import type { Logger } from "../log/logger.ts";
import type { PolicyStore } from "./mta_sts_cache.ts";
import {
  countSession,
  countsName,
  type DomainCounts,
  indexName,
  mergeCounts,
  parseCounts,
  type TlsRptSession,
  utcDay,
} from "./tls_rpt.ts";

/** The largest value the store takes (the queue's MAX_STATE_VALUE), with room to spare. */
const MAX_VALUE_OCTETS = 60 * 1024 - 512;

/** How often counts go to the store, ms. */
export const FLUSH_MS = 60_000;

/** The most domains kept in memory between flushes (a bound on memory under a flood of domains). */
const MAX_PENDING_DOMAINS = 10_000;

/** Options of {@linkcode TlsRptRecorder}. */
export interface TlsRptRecorderOptions {
  /** Where counts are kept: the queue. */
  readonly store: PolicyStore;
  /** Where a failed flush is logged. */
  readonly logger?: Logger;
  /** The clock. @default {Date.now} */
  readonly now?: () => number;
  /** How often to flush, ms. @default {60000} */
  readonly flushMs?: number;
}

/** Adds up TLS sessions and writes the counts to the store now and then. */
export class TlsRptRecorder {
  readonly #options: TlsRptRecorderOptions;
  readonly #now: () => number;
  /** Per `day\ndomain`, the counts since the last flush. */
  #pending = new Map<string, DomainCounts>();
  #timer: ReturnType<typeof setInterval> | null = null;
  #flushing: Promise<void> = Promise.resolve();

  /**
   * Makes the recorder; nothing is written until {@linkcode flush}.
   *
   * @param options The store, logger, clock.
   */
  constructor(options: TlsRptRecorderOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Counts one session, for the UTC day it ends in.
   *
   * @param session The outcome.
   */
  record(session: TlsRptSession): void {
    const key = `${utcDay(this.#now())}\n${session.domain}`;
    let counts = this.#pending.get(key);
    if (counts === undefined) {
      if (this.#pending.size >= MAX_PENDING_DOMAINS) return;
      counts = { policies: {} };
      this.#pending.set(key, counts);
    }
    countSession(counts, session);
  }

  /** Flushes every `flushMs` until {@linkcode close}. */
  start(): void {
    if (this.#timer !== null) return;
    this.#timer = setInterval(() => void this.flush(), this.#options.flushMs ?? FLUSH_MS);
    Deno.unrefTimer(this.#timer);
  }

  /**
   * Writes the counts gathered so far to the store (read, merge, write).
   * One flush at a time; a failure is logged and those counts are dropped.
   *
   * @returns When written.
   */
  flush(): Promise<void> {
    this.#flushing = this.#flushing.then(() => this.#write());
    return this.#flushing;
  }

  /**
   * Stops the timer and flushes what is left.
   *
   * @returns When written.
   */
  async close(): Promise<void> {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    await this.flush();
  }

  async #write(): Promise<void> {
    const pending = this.#pending;
    if (pending.size === 0) return;
    this.#pending = new Map();
    const byDay = new Map<string, Map<string, DomainCounts>>();
    for (const [key, counts] of pending) {
      const [day, domain] = key.split("\n") as [string, string];
      const domains = byDay.get(day) ?? new Map<string, DomainCounts>();
      domains.set(domain, counts);
      byDay.set(day, domains);
    }
    for (const [day, domains] of byDay) {
      try {
        const listed = await this.#index(day, [...domains.keys()]);
        for (const [domain, counts] of domains) {
          if (!listed.has(domain)) continue;
          await this.#merge(day, domain, counts);
        }
      } catch (error: unknown) {
        this.#options.logger?.log("warn", "tls_rpt.error", undefined, {
          day,
          reason: "cannot store TLS report counts",
          error: error instanceof Error ? error.message : String(error),
        });
      }
    }
  }

  /** Adds domains to the day's list; returns those listed (a full list takes no more). */
  async #index(day: string, domains: readonly string[]): Promise<Set<string>> {
    const store = this.#options.store;
    const listed = new Set(parseIndex(await store.getState(indexName(day))));
    const before = listed.size;
    let size = JSON.stringify([...listed]).length;
    for (const domain of domains) {
      if (listed.has(domain)) continue;
      size += domain.length + 3;
      if (size > MAX_VALUE_OCTETS) break;
      listed.add(domain);
    }
    if (listed.size !== before) await store.setState(indexName(day), JSON.stringify([...listed]));
    return listed;
  }

  async #merge(day: string, domain: string, counts: DomainCounts): Promise<void> {
    const store = this.#options.store;
    const name = countsName(day, domain);
    const stored = parseCounts(await store.getState(name));
    mergeCounts(stored, counts);
    await store.setState(name, fitted(stored));
  }
}

/**
 * Reads a day's domain list.
 *
 * @param text The stored JSON array, or `null`.
 * @returns The domains; `[]` when absent or malformed.
 */
export function parseIndex(text: string | null): string[] {
  if (text === null) return [];
  try {
    const value: unknown = JSON.parse(text);
    return Array.isArray(value) ? value.filter((d): d is string => typeof d === "string") : [];
  } catch {
    return [];
  }
}

/** The counts as JSON within the store's limit: details dropped from the longest lists first. */
function fitted(counts: DomainCounts): string {
  let text = JSON.stringify(counts);
  while (new TextEncoder().encode(text).length > MAX_VALUE_OCTETS) {
    const longest = Object.values(counts.policies)
      .sort((a, b) => Object.keys(b.details).length - Object.keys(a.details).length)[0];
    const keys = longest === undefined ? [] : Object.keys(longest.details);
    if (longest === undefined || keys.length === 0) {
      // Only policies left: keep the first ones.
      const entries = Object.entries(counts.policies);
      counts.policies = Object.fromEntries(entries.slice(0, Math.max(1, entries.length - 1)));
      if (entries.length <= 1) break;
    } else {
      delete longest.details[keys[keys.length - 1]!];
    }
    text = JSON.stringify(counts);
  }
  return text;
}
