/**
 * Reading the KV queue back: a message's meta and lease, its recipients,
 * its envelope (with forward-paths from their pages) and its content (from
 * its chunks or its spool file). Every read starts from the meta, the commit
 * marker, so an upload that never committed is never seen.
 *
 * @module
 */

import type { Envelope } from "../smtp/envelope.ts";
import type { QueuedMessage, RecipientState } from "./types.ts";
import { QueueNotFoundError } from "./errors.ts";
import { retryLocked } from "./kv_atomic.ts";
import { KEY, PREFIX, type StoredLease, type StoredMeta, toMessage } from "./kv_keys.ts";
import type { Spool } from "./spool.ts";

/** Reads a message's meta and lease in one snapshot. */
export function readMetaAndLease(
  kv: Deno.Kv,
  id: string,
): Promise<[Deno.KvEntryMaybe<StoredMeta>, Deno.KvEntryMaybe<StoredLease>]> {
  return retryLocked(() => kv.getMany<[StoredMeta, StoredLease]>([KEY.msg(id), KEY.lease(id)]));
}

/** Reads a message's recipients; `null` when some are missing (removed meanwhile). */
export async function readRecipients(
  kv: Deno.Kv,
  id: string,
  count: number,
): Promise<RecipientState[] | null> {
  const recipients: RecipientState[] = [];
  const entries = kv.list<RecipientState>({ prefix: PREFIX.rcpt(id) }, { batchSize: 500 });
  for await (const entry of entries) recipients.push(entry.value);
  return recipients.length === count ? recipients : null;
}

/** The envelope with its forward-paths, from the meta or its path pages. */
export async function readEnvelope(kv: Deno.Kv, meta: StoredMeta): Promise<Envelope> {
  if (meta.pathPages === 0) return meta.envelope;
  const forwardPaths: string[] = [];
  const pages = kv.list<string[]>({ prefix: PREFIX.path(meta.queueId) });
  for await (const page of pages) forwardPaths.push(...page.value);
  return { ...meta.envelope, forwardPaths };
}

/** A meta and its recipients as a public record; `null` when removed meanwhile. */
export async function readMessage(kv: Deno.Kv, meta: StoredMeta): Promise<QueuedMessage | null> {
  const recipients = await readRecipients(kv, meta.queueId, meta.recipients);
  if (recipients === null) return null;
  return toMessage({ ...meta, envelope: await readEnvelope(kv, meta) }, recipients);
}

/** Entries read per batch by {@linkcode listMessages}, from each of its two listings. */
const LIST_BATCH = 500;

/**
 * Streams every committed message, in queue id (arrival) order, as public
 * records. The metas and the recipients are two listings in the same id
 * order, walked side by side (a merge on the id) a batch at a time: a
 * message costs no store query of its own, so a million messages take a few
 * thousand queries instead of a million, and memory holds two batches
 * whatever the queue's depth. A message whose recipients the recipient
 * listing did not show in full (committed, changed or removed between the
 * two reads) is read on its own, and passed over when it is gone.
 *
 * @param kv The store.
 * @returns The messages, one at a time.
 */
export async function* listMessages(kv: Deno.Kv): AsyncGenerator<QueuedMessage> {
  const metas = kv.list<StoredMeta>({ prefix: PREFIX.msg }, { batchSize: LIST_BATCH });
  const recipients = new RecipientCursor(
    kv.list<RecipientState>({ prefix: PREFIX.rcpts }, { batchSize: LIST_BATCH }),
  );
  for await (const { key, value: meta } of metas) {
    const id = key[2];
    if (typeof id !== "string") continue;
    const seen = await recipients.take(id);
    const states = seen.length === meta.recipients
      ? seen
      : await readRecipients(kv, id, meta.recipients);
    if (states === null) continue; // removed meanwhile
    yield toMessage({ ...meta, envelope: await readEnvelope(kv, meta) }, states);
  }
}

/** The recipient listing of {@linkcode listMessages}, read up to a given id. */
class RecipientCursor {
  readonly #entries: Deno.KvListIterator<RecipientState>;
  /** The entry read but not yet taken (a later message's), or `null`. */
  #ahead: Deno.KvEntry<RecipientState> | null = null;
  #done = false;

  constructor(entries: Deno.KvListIterator<RecipientState>) {
    this.#entries = entries;
  }

  /**
   * The recipients listed under `id`, passing over those of smaller ids
   * (uploads not committed, messages removed since). Queue ids are ASCII, so
   * JavaScript's string order is the store's key order.
   */
  async take(id: string): Promise<RecipientState[]> {
    const found: RecipientState[] = [];
    for (;;) {
      const entry = this.#ahead ?? await this.#next();
      this.#ahead = null;
      if (entry === null) return found;
      const owner = entry.key[2];
      if (typeof owner !== "string" || owner < id) continue;
      if (owner > id) {
        this.#ahead = entry;
        return found;
      }
      found.push(entry.value);
    }
  }

  async #next(): Promise<Deno.KvEntry<RecipientState> | null> {
    if (this.#done) return null;
    const result = await this.#entries.next();
    if (result.done) {
      this.#done = true;
      return null;
    }
    return result.value;
  }
}

/**
 * Streams a message's stored content: the header added at commit, then
 * chunk by chunk (or from its spool file), reading a few chunks at a time so memory stays bounded.
 *
 * @returns The content; the stream fails with a {@linkcode QueueNotFoundError}
 *   if the message does not exist or is removed while being read.
 */
export function readContent(
  kv: Deno.Kv,
  spool: Spool,
  queueId: string,
): ReadableStream<Uint8Array> {
  let file: ReadableStreamDefaultReader<Uint8Array> | null = null;
  let chunks: Deno.KvListIterator<Uint8Array> | null = null;
  let expectedSize = 0;
  let expectedChunks = 0;
  let size = 0;
  let next = 0;
  return new ReadableStream<Uint8Array>({
    async start(controller) {
      const meta = (await retryLocked(() => kv.get<StoredMeta>(KEY.msg(queueId)))).value;
      if (meta === null) {
        throw new QueueNotFoundError(queueId, `Cannot read message ${queueId}: no such message`);
      }
      const header = meta.header ?? new Uint8Array();
      expectedSize = meta.size - header.length;
      expectedChunks = meta.chunks;
      if (header.length > 0) controller.enqueue(header);
      if (meta.spool) {
        file = spool.open(queueId, expectedSize).getReader();
      } else {
        chunks = kv.list<Uint8Array>({ prefix: PREFIX.chunk(queueId) }, { batchSize: 4 });
      }
    },
    async pull(controller) {
      if (file !== null) {
        const piece = await file.read();
        if (piece.done) controller.close();
        else controller.enqueue(piece.value);
        return;
      }
      const result = await chunks?.next();
      if (result === undefined || result.done) {
        if (size !== expectedSize || next !== expectedChunks) {
          controller.error(
            new QueueNotFoundError(
              queueId,
              `Cannot read message ${queueId}: its content is gone (removed meanwhile?)`,
            ),
          );
        } else {
          controller.close();
        }
        return;
      }
      const { key, value } = result.value;
      if (key[3] !== next) {
        controller.error(
          new QueueNotFoundError(
            queueId,
            `Cannot read message ${queueId}: chunk ${next} is missing`,
          ),
        );
        return;
      }
      next++;
      size += value.byteLength;
      controller.enqueue(value);
    },
    async cancel(reason) {
      await file?.cancel(reason);
    },
  }, { highWaterMark: 0 });
}
