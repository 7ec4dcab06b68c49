/**
 * A message kept in memory while it may still be delivered at acceptance
 * (direct_delivery.ts): it reaches the queue store only when it has to,
 * because it outgrew its share of memory or because it is committed to the
 * queue after all. Until then nothing is written anywhere, so a message that
 * goes straight into its mailboxes costs the store nothing.
 *
 * @module
 */

import type { QueueRecipient } from "../queue/types.ts";
import type { CommitOptions, IncomingMessage, Queue, ReceiveInit } from "../queue/queue.ts";
import type { ClaimedMessage } from "../queue/types.ts";

/** Octets of held content shared by every message of a process (or thread). */
export class MemoryBudget {
  #used = 0;

  /**
   * Makes a budget.
   *
   * @param limit The most octets held at once.
   */
  constructor(readonly limit: number) {}

  /** Octets held now. */
  get used(): number {
    return this.#used;
  }

  /**
   * Takes some octets of the budget.
   *
   * @param octets How many.
   * @returns `false`, taking nothing, when they do not fit.
   */
  reserve(octets: number): boolean {
    if (this.#used + octets > this.limit) return false;
    this.#used += octets;
    return true;
  }

  /**
   * Gives octets back.
   *
   * @param octets How many, as reserved.
   */
  release(octets: number): void {
    this.#used = Math.max(0, this.#used - octets);
  }
}

/**
 * An {@linkcode IncomingMessage} whose content stays in memory, up to
 * `limit` octets and within a shared {@linkcode MemoryBudget}; past either,
 * or at {@linkcode commit}, it opens the store's own upload (with the same
 * queue id, made up front) and hands it everything so far.
 */
export class HeldUpload implements IncomingMessage {
  readonly queueId: string;
  readonly #queue: Pick<Queue, "receive">;
  readonly #budget: MemoryBudget;
  readonly #limit: number;
  #init: ReceiveInit;
  #pieces: Uint8Array[] = [];
  #size = 0;
  #reserved = 0;
  /** The store's upload, once opened. */
  #stored: IncomingMessage | null = null;
  #finished = false;
  /** Serializes writes with the opening of the store's upload. */
  #chain: Promise<unknown> = Promise.resolve();

  /**
   * Starts holding a message.
   *
   * @param init What the store's upload would get; `queueId` must be set.
   * @param queue Where the message goes if it must be stored.
   * @param budget The memory shared with other held messages.
   * @param limit The most octets this message holds.
   */
  constructor(
    init: ReceiveInit & { readonly queueId: string },
    queue: Pick<Queue, "receive">,
    budget: MemoryBudget,
    limit: number,
  ) {
    this.queueId = init.queueId;
    this.#init = init;
    this.#queue = queue;
    this.#budget = budget;
    this.#limit = limit;
  }

  /** Octets written so far. */
  get size(): number {
    return this.#size;
  }

  /** Whether the whole content is still in memory (nothing stored). */
  get isHeld(): boolean {
    return this.#stored === null && !this.#finished;
  }

  /**
   * The content in the pieces it was written in, with header fields on top
   * (not copied: a megabyte's fresh copy costs more than writing pieces).
   *
   * @param header Octets to put first.
   * @returns The header, then the pieces.
   * @throws {Error} When the content is no longer held.
   */
  content(header: Uint8Array): readonly Uint8Array[] {
    if (!this.isHeld) throw new Error(`Message ${this.queueId} is not held in memory`);
    return [header, ...this.#pieces];
  }

  /**
   * Changes the recipients the store will get, while nothing is stored:
   * those not delivered at acceptance.
   *
   * @param recipients At least one.
   */
  narrow(recipients: readonly QueueRecipient[]): void {
    if (!this.isHeld) throw new Error(`Message ${this.queueId} is stored already`);
    this.#init = { ...this.#init, recipients };
  }

  write(chunk: Uint8Array): Promise<void> {
    return this.#serialize(async () => {
      if (this.#stored !== null) {
        await this.#stored.write(chunk);
        this.#size += chunk.byteLength;
        return;
      }
      if (this.#finished) throw new Error(`Cannot write to message ${this.queueId}: it is done`);
      const fits = this.#size + chunk.byteLength <= this.#limit &&
        this.#budget.reserve(chunk.byteLength);
      if (fits) {
        this.#reserved += chunk.byteLength;
        // The caller may reuse its buffer.
        this.#pieces.push(chunk.slice());
        this.#size += chunk.byteLength;
        return;
      }
      const stored = await this.#store();
      await stored.write(chunk);
      this.#size += chunk.byteLength;
    });
  }

  async commit(options?: CommitOptions): Promise<void> {
    const stored = await this.#serialize(() => this.#store());
    await stored.commit(options);
  }

  async commitAndClaim(now: number, options?: CommitOptions): Promise<ClaimedMessage> {
    const stored = await this.#serialize(() => this.#store());
    return await stored.commitAndClaim(now, options);
  }

  abort(): Promise<void> {
    return this.#serialize(async () => {
      this.#drop();
      this.#finished = true;
      await this.#stored?.abort();
    });
  }

  /** Opens the store's upload (once) and moves the held content into it. */
  async #store(): Promise<IncomingMessage> {
    if (this.#stored !== null) return this.#stored;
    if (this.#finished) throw new Error(`Cannot store message ${this.queueId}: it is done`);
    const stored = await this.#queue.receive(this.#init);
    this.#stored = stored;
    try {
      for (const piece of this.#pieces) await stored.write(piece);
    } finally {
      this.#drop();
    }
    return stored;
  }

  /** Lets the held content go. */
  #drop(): void {
    this.#pieces = [];
    this.#budget.release(this.#reserved);
    this.#reserved = 0;
  }

  #serialize<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#chain.then(task);
    this.#chain = result.catch(() => {});
    return result;
  }
}
