/**
 * The main thread's side of a session worker's store requests
 * (remote_queue.ts): a message's first request opens it in the store under
 * the queue id the worker chose, its `write`s go to it in order, its
 * `commit` makes it durable and only then is answered. When the delivery loop has room, the commit also claims the
 * message; it is handed to the loop when the worker reports it logged
 * (`queued`), so a delivery's log line never comes before the acceptance's.
 *
 * @module
 */

import type { ClaimedMessage } from "../queue/types.ts";
import type { IncomingMessage, Queue } from "../queue/queue.ts";
import type { DeliveryLoop } from "../queue/delivery_loop.ts";
import { type Answer, errorData, type StoreRequest } from "./worker_protocol.ts";
import { KEEP_FOR_HAND_OFF } from "./intake.ts";

/** What a {@linkcode QueueBridge} needs. */
export interface QueueBridgeOptions {
  /** The store. */
  readonly queue: Pick<Queue, "receive">;
  /** The delivery loop, which takes messages claimed at commit; without it, messages wait for `onQueued`'s wake-up. */
  readonly handOff?: Pick<DeliveryLoop, "acceptsHandOff" | "handOff">;
  /** Called for a committed message that was not claimed (the delivery loop's wake-up). */
  readonly onQueued: () => void;
  /** The clock. @default {Date.now} */
  readonly now?: () => number;
}

/** One message open in the store for a worker, and the chain its requests run on. */
interface Open {
  readonly incoming: Promise<IncomingMessage>;
  chain: Promise<void>;
}

/** Answers one worker's store requests. */
export class QueueBridge {
  readonly #options: QueueBridgeOptions;
  readonly #now: () => number;
  readonly #open = new Map<number, Open>();
  /** Claimed at commit, handed to the loop once the worker has logged them. */
  readonly #claimed = new Map<string, ClaimedMessage>();

  /**
   * Makes a bridge.
   *
   * @param options The store and the delivery loop.
   */
  constructor(options: QueueBridgeOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Serves one request; the answer goes to `reply` when it is known.
   *
   * @param request The request.
   * @param reply Sends the answer to the worker.
   */
  handle(request: StoreRequest, reply: (answer: Answer) => void): void {
    let open = this.#open.get(request.handle);
    if (open === undefined && request.type !== "abort" && request.open !== null) {
      // The message's first request: open it in the store, under the worker's queue id.
      const opening = this.#options.queue.receive({
        ...request.open,
        ...(this.#options.handOff === undefined ? {} : { keepContent: KEEP_FOR_HAND_OFF }),
      });
      open = { incoming: opening, chain: opening.then(() => {}) };
      this.#open.set(request.handle, open);
    }
    // After its commit or abort, nothing more comes for the message.
    if (request.type !== "write") this.#open.delete(request.handle);
    let work: Promise<void>;
    if (open === undefined) {
      work = Promise.reject(new Error("no such message in progress"));
    } else {
      // Requests of one message run in order, each after the last has finished.
      const current = open;
      work = current.chain.then(async () => this.#run(request, await current.incoming));
      current.chain = work.catch(() => {});
    }
    work.then(
      () => reply({ type: "answer", id: request.id }),
      (error: unknown) =>
        reply({
          type: "answer",
          id: request.id,
          error: errorData(error),
        }),
    );
  }

  async #run(request: StoreRequest, incoming: IncomingMessage): Promise<void> {
    switch (request.type) {
      case "write":
        return await incoming.write(request.chunk);
      case "abort":
        return await incoming.abort();
      case "commit": {
        try {
          if (request.tail !== null) await incoming.write(request.tail);
          const header = request.header ?? undefined;
          const options = header === undefined ? {} : { header };
          const handOff = this.#options.handOff;
          const size = incoming.size + (header?.length ?? 0);
          if (!request.hold && handOff?.acceptsHandOff(size)) {
            this.#claimed.set(
              incoming.queueId,
              await incoming.commitAndClaim(this.#now(), options),
            );
          } else {
            await incoming.commit(request.hold ? { ...options, hold: true } : options);
          }
        } catch (error: unknown) {
          await incoming.abort().catch(() => {});
          throw error;
        }
      }
    }
  }

  /**
   * The worker logged a committed message: deliver it now.
   *
   * @param queueId Its queue id.
   */
  queued(queueId: string): void {
    const claim = this.#claimed.get(queueId);
    this.#claimed.delete(queueId);
    if (claim !== undefined) this.#options.handOff!.handOff(claim);
    else this.#options.onQueued();
  }

  /**
   * The worker is gone: drops the messages it had not committed, and
   * delivers those it had (their `250` may or may not have reached the client:
   * as after any lost connection, the client may send them again).
   *
   * @returns When the uncommitted ones are dropped.
   */
  async close(): Promise<void> {
    const open = [...this.#open.values()];
    this.#open.clear();
    await Promise.all(
      open.map((o) => o.chain.then(async () => (await o.incoming).abort()).catch(() => {})),
    );
    for (const queueId of [...this.#claimed.keys()]) this.queued(queueId);
  }
}
