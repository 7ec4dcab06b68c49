/**
 * The group committer: shares one Deno KV commit (one fsync) among the
 * writes that arrive while another commit is in flight, so a burst of
 * uploads, claims and records costs a few fsyncs instead of one each.
 *
 * Every entry keeps its own checks: a shared operation that fails is split
 * back into its entries, each committed alone, so one entry's lost race
 * never fails another.
 *
 * A write that no client's reply waits on (the record of a delivery attempt)
 * may be submitted as *deferrable*: it rides along with the next commit that
 * goes, or goes on its own a few milliseconds later. With one SMTP session,
 * the record of message N then shares the fsync of message N+1's commit,
 * instead of making that commit wait for an fsync of its own.
 *
 * @module
 */

import {
  addCost,
  commitOp,
  type Cost,
  costOf,
  fitsBudget,
  keyText,
  type Mutation,
} from "./kv_atomic.ts";

/**
 * How long a deferrable write waits for a commit to ride along with, ms.
 * Under load a commit comes sooner; idle, the record is this much later.
 */
const DEFER_MS = 5;
/** Deferrable writes waiting past this many go at once, together. */
const MAX_DEFERRED = 64;

interface CommitEntry {
  readonly checks: readonly Deno.AtomicCheck[];
  readonly mutations: readonly Mutation[];
  readonly cost: Cost;
  /** Set after a shared commit failed: retried alone, to find whose check failed. */
  solo: boolean;
  /** Settles with the versionstamp of the commit that held the entry, or `null` when a check failed. */
  readonly resolve: (versionstamp: string | null) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * Shares one KV commit (one fsync) among the commits that arrive while
 * another is in flight. The first commit on an idle store goes at once;
 * those arriving meanwhile wait for it and then go together, as many as fit
 * in one atomic operation. A caller's promise settles only after the
 * operation holding its entry has committed or failed.
 */
export class GroupCommitter {
  readonly #kv: Deno.Kv;
  readonly #pending: CommitEntry[] = [];
  /** Deferrable entries, waiting for a commit to join or for their timer. */
  #deferred: CommitEntry[] = [];
  #deferTimer: ReturnType<typeof setTimeout> | undefined;
  #running: Promise<void> | null = null;

  constructor(kv: Deno.Kv) {
    this.#kv = kv;
  }

  /** Commits checks and mutations, possibly with others; `false` when a check failed. */
  async submit(
    checks: readonly Deno.AtomicCheck[],
    mutations: readonly Mutation[],
    cost?: Cost,
  ): Promise<boolean> {
    return (await this.submitStamped(checks, mutations, cost)) !== null;
  }

  /**
   * Commits checks and mutations, possibly with others.
   *
   * @returns The versionstamp of the shared commit (every key it wrote has it), or `null` when a check failed.
   */
  submitStamped(
    checks: readonly Deno.AtomicCheck[],
    mutations: readonly Mutation[],
    cost: Cost = costOf(checks, mutations),
  ): Promise<string | null> {
    return new Promise((resolve, reject) => {
      this.#pending.push({ checks, mutations, cost, solo: false, resolve, reject });
      this.#running ??= this.#run();
    });
  }

  /**
   * Commits checks and mutations with the next commit that goes, or on their
   * own after a few milliseconds: for writes whose durability nobody awaits
   * before answering a client (a crash before they are durable repeats what
   * they record, as a crash just before them would).
   *
   * @returns The versionstamp of the shared commit, or `null` when a check failed.
   */
  submitDeferred(
    checks: readonly Deno.AtomicCheck[],
    mutations: readonly Mutation[],
    cost: Cost = costOf(checks, mutations),
  ): Promise<string | null> {
    return new Promise((resolve, reject) => {
      this.#deferred.push({ checks, mutations, cost, solo: false, resolve, reject });
      if (this.#deferred.length >= MAX_DEFERRED) this.#releaseDeferred();
      else this.#deferTimer ??= setTimeout(() => this.#releaseDeferred(), DEFER_MS);
    });
  }

  /** Resolves once nothing is pending, deferred or in flight. */
  async drain(): Promise<void> {
    this.#releaseDeferred();
    while (this.#running) await this.#running;
  }

  /** Moves the deferred entries to the pending ones, and starts committing. */
  #releaseDeferred(): void {
    clearTimeout(this.#deferTimer);
    this.#deferTimer = undefined;
    if (this.#deferred.length === 0) return;
    this.#pending.push(...this.#deferred);
    this.#deferred = [];
    this.#running ??= this.#run();
  }

  async #run(): Promise<void> {
    try {
      // Commits issued in the same tick share the first operation too.
      await Promise.resolve();
      while (this.#pending.length > 0) await this.#commit(this.#take());
    } finally {
      this.#running = null;
    }
  }

  #take(): CommitEntry[] {
    const first = this.#pending.shift();
    if (first === undefined) return [];
    const batch = [first];
    if (first.solo) return batch;
    let cost = first.cost;
    // Every check of a shared operation is made against the store as it was
    // before the operation. So an entry that checks a key an earlier entry of
    // the batch writes must wait for the next operation: side by side, both
    // checks would pass and the second write would silently replace the
    // first (two uploads that drew the same queue id).
    let written: Set<string> | null = null; // made once a second entry is in view
    while (this.#pending.length > 0) {
      const next = this.#pending[0];
      if (next === undefined || next.solo) break;
      const total = addCost(cost, next.cost);
      if (!fitsBudget(total)) break;
      const seen = written ??= new Set(first.mutations.map((m) => keyText(m.key)));
      if (next.checks.some((c) => seen.has(keyText(c.key)))) break;
      this.#pending.shift();
      batch.push(next);
      for (const m of next.mutations) seen.add(keyText(m.key));
      cost = total;
    }
    this.#joinDeferred(batch, cost);
    return batch;
  }

  /** Adds to a batch the deferred entries that fit in its operation, oldest first. */
  #joinDeferred(batch: CommitEntry[], cost: Cost): void {
    if (this.#deferred.length === 0) return;
    const seen = new Set(batch.flatMap((e) => e.mutations.map((m) => keyText(m.key))));
    let taken = 0;
    for (const next of this.#deferred) {
      const total = addCost(cost, next.cost);
      if (!fitsBudget(total) || next.checks.some((c) => seen.has(keyText(c.key)))) break;
      batch.push(next);
      for (const m of next.mutations) seen.add(keyText(m.key));
      cost = total;
      taken++;
    }
    this.#deferred = this.#deferred.slice(taken);
    if (this.#deferred.length === 0) {
      clearTimeout(this.#deferTimer);
      this.#deferTimer = undefined;
    }
  }

  async #commit(batch: CommitEntry[]): Promise<void> {
    let versionstamp: string | null = null;
    let failure: unknown = null;
    try {
      const checks = batch.flatMap((entry) => entry.checks);
      const mutations = batch.flatMap((entry) => entry.mutations);
      versionstamp = await commitOp(this.#kv, checks, mutations);
    } catch (error: unknown) {
      failure = error;
    }
    if (versionstamp !== null) {
      for (const entry of batch) entry.resolve(versionstamp);
    } else if (batch.length > 1) {
      // One entry's check (or size) spoiled the shared operation: commit each
      // alone, in the same order, ahead of anything that arrived since.
      for (const entry of batch) entry.solo = true;
      this.#pending.unshift(...batch);
    } else {
      for (const entry of batch) failure === null ? entry.resolve(null) : entry.reject(failure);
    }
  }
}
