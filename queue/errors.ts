/**
 * The errors a queue throws, one class per cause, so a caller can tell what
 * went wrong without reading the message: the message is gone, someone else
 * changed it first, or the store itself cannot be used. Every store (Deno KV
 * today) throws these; the messages stay one plain line for logs and replies.
 *
 * Operations whose "not there" or "lost the race" answer is a normal outcome
 * say so in their return value instead (`get` gives `null`, `hold` gives
 * `false`, `recordAttempt` gives `null` for a lost claim): these errors are
 * for the cases that end an operation.
 *
 * @module
 */

/** A queue operation failed because the message it names does not exist (or was removed meanwhile). */
export class QueueNotFoundError extends Error {
  /** The queue id that was not found. */
  readonly queueId: string;

  /**
   * Makes the error for a message that is not there.
   *
   * @param queueId The queue id that was not found.
   * @param message What was being done, in one line.
   * @param options The underlying error, if any.
   */
  constructor(queueId: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "QueueNotFoundError";
    this.queueId = queueId;
  }
}

/**
 * A queue operation lost to a concurrent change: another process or worker
 * changed (or took) the message first, again and again, or the upload was
 * removed under it. Nothing was written by the failed operation.
 */
export class QueueConflictError extends Error {
  /** The queue id the conflict was on. */
  readonly queueId: string;

  /**
   * Makes the error for a change that lost to a concurrent one.
   *
   * @param queueId The queue id the conflict was on.
   * @param message What was being done, in one line.
   * @param options The underlying error, if any.
   */
  constructor(queueId: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "QueueConflictError";
    this.queueId = queueId;
  }
}

/**
 * The store cannot be read or written: it is closed, or it stayed locked by
 * other processes longer than the queue waits. Trying again later may work.
 */
export class QueueUnavailableError extends Error {
  /**
   * Makes the error for a store that cannot be used.
   *
   * @param message What was being done, in one line.
   * @param options The underlying error, if any.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "QueueUnavailableError";
  }
}
