/**
 * The durable queue of tern: messages are committed to a store before the
 * server answers 250 (RFC 5321 §6.1), then claimed, delivered and retried on
 * the RFC 5321 §4.5.4.1 schedule until every recipient is sent or bounced.
 *
 * - {@linkcode Queue}: the contract every store implements (receive, claim,
 *   record, inspect, recover), with its typed errors
 *   ({@linkcode QueueNotFoundError}, {@linkcode QueueConflictError},
 *   {@linkcode QueueUnavailableError});
 * - {@linkcode KvQueue}: the store in Deno KV;
 * - {@linkcode DeliveryLoop}: claims due messages and hands them to a deliverer;
 * - {@linkcode retryDelay} and {@linkcode isExpired}: the retry schedule;
 * - {@linkcode newQueueId}: queue ids that sort by arrival.
 *
 * @example Queue a message and read it back
 * ```ts
 * import { KvQueue } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * const dir = await Deno.makeTempDir();
 * const queue = await KvQueue.open(`${dir}/queue.sqlite3`, { retry: [60_000], maxAge: 5 * 86_400_000 });
 * const message = await queue.receive({
 *   envelope: { reversePath: "alice@example.test", forwardPaths: ["bob@example.test"], body: "7BIT", smtputf8: false },
 *   recipients: [{ address: "bob@example.test", originalRecipient: "bob@example.test", mailbox: "bob@example.test" }],
 *   clientAddress: "local",
 *   now: Date.now(),
 * });
 * await message.write(new TextEncoder().encode("Subject: hello\r\n\r\nHi Bob\r\n"));
 * await message.commit();
 * const queued = await queue.get(message.queueId);
 * assert.equal(queued?.recipients[0]?.status, "queued");
 * await queue.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */

export type {
  ClaimOptions,
  CommitOptions,
  DeliveryQueue,
  IncomingMessage,
  Queue,
  ReceiveInit,
  RecoverResult,
  StoreOptions,
} from "./queue.ts";
export { MAX_COMMIT_HEADER, MAX_STATE_VALUE } from "./queue.ts";
export { QueueConflictError, QueueNotFoundError, QueueUnavailableError } from "./errors.ts";
export { KvQueue, type KvQueueOptions } from "./kv_queue.ts";
export { PgQueue, type PgQueueOptions } from "./pg_queue.ts";
export { CHUNK_SIZE } from "./kv_keys.ts";
export {
  type Deliver,
  type DeliveryContext,
  DeliveryLoop,
  type DeliveryLoopOptions,
} from "./delivery_loop.ts";
export { isQueueId, newQueueId, QUEUE_ID_LENGTH } from "./queue_id.ts";
export { isExpired, retryDelay } from "./retry.ts";
export {
  type DsnAction,
  type DsnOptions,
  type DsnRecipient,
  dsnStream,
  readHeaderSection,
  shouldNotify,
} from "./dsn.ts";
export type {
  ClaimedMessage,
  DsnNotify,
  Lease,
  QueuedMessage,
  QueueRecipient,
  RecipientOutcome,
  RecipientState,
  RecipientStatus,
  ReplySummary,
} from "./types.ts";
// Types of other folders that appear in this API, so its documentation is whole.
export type { BodyType, Envelope } from "../smtp/envelope.ts";
export {
  LOG_EVENTS,
  type LogEvent,
  type Logger,
  type LogLevel,
  type LogSettings,
  type LogValue,
} from "../log/logger.ts";
