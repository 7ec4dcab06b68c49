/**
 * The store as an SMTP session worker sees it: the incoming message's
 * `write`, `commit` and `abort` are questions to the main thread, which owns
 * the store (queue_bridge.ts answers them). A commit resolves only when the
 * main thread's commit has, so the `250` that follows means what it means on
 * the main thread: the message is on disk.
 *
 * The worker names each message (`newQueueId`, which the store checks is
 * not taken) and gathers its content, which travels with the commit: one
 * request for a message of a few kilobytes. A message larger than
 * {@linkcode FLUSH_OCTETS} is sent in pieces of that size as it comes, each
 * awaited before the next is gathered, so neither thread holds more than a
 * piece of a large message in transit.
 *
 * @module
 */

import { QueueConflictError, QueueNotFoundError, QueueUnavailableError } from "../queue/errors.ts";
import type { CommitOptions, IncomingMessage, ReceiveInit } from "../queue/queue.ts";
import type { ClaimedMessage } from "../queue/types.ts";
import { newQueueId } from "../queue/queue_id.ts";
import type { Answer, ErrorData, StoreRequest } from "./worker_protocol.ts";

/** Content is sent to the main thread in pieces of this many octets (a 4 KiB message goes whole with its commit). */
export const FLUSH_OCTETS = 256 * 1024;

/** Sends a request to the main thread, transferring the buffers listed. */
export type PostRequest = (request: StoreRequest, transfer: ArrayBuffer[]) => void;

/** The main thread's error, as the same class where the server tells them apart. */
function errorOf(error: ErrorData, queueId: string): Error {
  switch (error.name) {
    case "QueueUnavailableError":
      return new QueueUnavailableError(error.message);
    case "QueueConflictError":
      return new QueueConflictError(queueId, error.message);
    case "QueueNotFoundError":
      return new QueueNotFoundError(queueId, error.message);
    case "RangeError":
      return new RangeError(error.message);
    default:
      return new Error(error.message);
  }
}

/** The receiving side of the store, in a worker: `Queue.receive` asked of the main thread. */
export class RemoteQueue {
  readonly #post: PostRequest;
  readonly #waiting = new Map<
    number,
    { resolve: () => void; reject: (e: Error) => void; queueId: string }
  >();
  #nextId = 1;
  #closed: Error | null = null;

  /**
   * Makes the queue.
   *
   * @param post Sends a request to the main thread.
   */
  constructor(post: PostRequest) {
    this.#post = post;
  }

  /**
   * Starts a message: named here, opened in the main thread's store by its
   * first request (its commit, for most).
   *
   * @param init The envelope, recipients, client and arrival time.
   * @returns The incoming message, its queue id known.
   */
  receive(init: ReceiveInit): Promise<IncomingMessage> {
    if (this.#closed !== null) return Promise.reject(this.#closed);
    const queueId = newQueueId(init.now);
    return Promise.resolve(new RemoteIncoming(this, this.#nextId++, { ...init, queueId }));
  }

  /** A new request id. */
  nextId(): number {
    return this.#nextId++;
  }

  /**
   * Sends a request and waits for its answer.
   *
   * @param request The request.
   * @param transfer Buffers that move to the main thread with it.
   * @param queueId The message it is about, for errors.
   * @returns When the main thread has done it.
   */
  ask(request: StoreRequest, transfer: ArrayBuffer[], queueId: string): Promise<void> {
    if (this.#closed !== null) return Promise.reject(this.#closed);
    return new Promise((resolve, reject) => {
      this.#waiting.set(request.id, { resolve, reject, queueId });
      this.#post(request, transfer);
    });
  }

  /**
   * Takes an answer from the main thread.
   *
   * @param answer The answer.
   */
  answer(answer: Answer): void {
    const waiting = this.#waiting.get(answer.id);
    if (waiting === undefined) return;
    this.#waiting.delete(answer.id);
    if ("error" in answer) waiting.reject(errorOf(answer.error, waiting.queueId));
    else waiting.resolve();
  }

  /**
   * Fails every question still waiting, and every later one (the main
   * thread is gone or stopping): their sessions answer 451.
   *
   * @param reason Why.
   */
  close(reason: string): void {
    this.#closed = new QueueUnavailableError(reason);
    for (const waiting of this.#waiting.values()) waiting.reject(this.#closed);
    this.#waiting.clear();
  }
}

/** A message being received in a worker, stored by the main thread. */
class RemoteIncoming implements IncomingMessage {
  readonly queueId: string;
  #queue: RemoteQueue;
  #handle: number;
  /** What opens it in the store, until its first request is sent. */
  #open: ReceiveInit | null;
  #size = 0;
  /** Content not sent yet, `#filled` octets of it. */
  #buffer: Uint8Array | null = null;
  #filled = 0;
  #done = false;

  constructor(queue: RemoteQueue, handle: number, init: ReceiveInit & { queueId: string }) {
    this.#queue = queue;
    this.#handle = handle;
    this.#open = init;
    this.queueId = init.queueId;
  }

  get size(): number {
    return this.#size;
  }

  /** The `open` of the next request: set for the first only. */
  #opening(): ReceiveInit | null {
    const open = this.#open;
    this.#open = null;
    return open;
  }

  async write(chunk: Uint8Array): Promise<void> {
    this.#size += chunk.length;
    let offset = 0;
    while (offset < chunk.length) {
      const n = Math.min(chunk.length - offset, FLUSH_OCTETS - this.#filled);
      this.#append(chunk.subarray(offset, offset + n));
      offset += n;
      if (this.#filled === FLUSH_OCTETS) {
        const piece = this.#take()!;
        const id = this.#queue.nextId();
        await this.#queue.ask(
          { type: "write", id, handle: this.#handle, open: this.#opening(), chunk: piece },
          [piece.buffer as ArrayBuffer],
          this.queueId,
        );
      }
    }
  }

  /** Appends to the buffer, which grows by doubling up to a piece's size. */
  #append(octets: Uint8Array): void {
    const needed = this.#filled + octets.length;
    if (this.#buffer === null || this.#buffer.length < needed) {
      let capacity = this.#buffer?.length ?? 8192;
      while (capacity < needed) capacity *= 2;
      const grown = new Uint8Array(Math.min(capacity, FLUSH_OCTETS));
      if (this.#buffer !== null) grown.set(this.#buffer.subarray(0, this.#filled));
      this.#buffer = grown;
    }
    this.#buffer.set(octets, this.#filled);
    this.#filled = needed;
  }

  /** The content gathered, in a buffer of its own (to transfer), or `null`. */
  #take(): Uint8Array | null {
    const buffer = this.#buffer;
    if (buffer === null || this.#filled === 0) return null;
    const piece = this.#filled === buffer.length ? buffer : buffer.slice(0, this.#filled);
    this.#buffer = null;
    this.#filled = 0;
    return piece;
  }

  async commit(options: CommitOptions = {}): Promise<void> {
    this.#done = true;
    const tail = this.#take();
    const header = options.header === undefined || options.header.length === 0
      ? null
      : options.header.slice();
    const transfer = [tail, header].flatMap((b) => b === null ? [] : [b.buffer as ArrayBuffer]);
    const id = this.#queue.nextId();
    await this.#queue.ask(
      {
        type: "commit",
        id,
        handle: this.#handle,
        open: this.#opening(),
        tail,
        header,
        hold: options.hold ?? false,
      },
      transfer,
      this.queueId,
    );
  }

  commitAndClaim(): Promise<ClaimedMessage> {
    // The main thread claims at commit itself, when its delivery loop has room.
    return Promise.reject(new TypeError("a session worker commits; the main thread claims"));
  }

  async abort(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    this.#buffer = null;
    // Never opened in the store: nothing to drop there.
    if (this.#open !== null) return;
    const id = this.#queue.nextId();
    await this.#queue.ask({ type: "abort", id, handle: this.#handle }, [], this.queueId);
  }
}
