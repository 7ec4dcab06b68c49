/**
 * Messages between the main thread and a session worker, sent in batches:
 * everything one thread has for the other in one turn of its event loop
 * (the answers to a group commit's messages, a session's request and its
 * log lines) goes in one `postMessage`, since each costs a copy, a wake-up
 * of the other thread and a turn of its event loop, whatever it carries.
 *
 * @module
 */

/** Queues messages and posts them together at the end of the current turn. */
export class Outbox<T> {
  readonly #post: (batch: T[], transfer: ArrayBuffer[]) => void;
  #messages: T[] = [];
  #transfer: ArrayBuffer[] = [];

  /**
   * Makes an outbox.
   *
   * @param post Posts one batch (`worker.postMessage` or `self.postMessage`).
   */
  constructor(post: (batch: T[], transfer: ArrayBuffer[]) => void) {
    this.#post = post;
  }

  /**
   * Queues a message; the batch goes at the end of this turn (a microtask).
   *
   * @param message The message.
   * @param transfer Buffers that move with it (they are unusable here afterwards).
   */
  send(message: T, transfer: readonly ArrayBuffer[] = []): void {
    if (this.#messages.length === 0) queueMicrotask(() => this.flush());
    this.#messages.push(message);
    for (const buffer of transfer) this.#transfer.push(buffer);
  }

  /** The last message queued and not yet posted, to add to it. */
  get last(): T | undefined {
    return this.#messages.at(-1);
  }

  /** Posts what is queued now. */
  flush(): void {
    if (this.#messages.length === 0) return;
    const messages = this.#messages;
    const transfer = this.#transfer;
    this.#messages = [];
    this.#transfer = [];
    this.#post(messages, transfer);
  }
}
