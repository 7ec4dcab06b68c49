/**
 * The KV queue's key layout and the records stored under it: what each key
 * holds, when it is written, and the helpers that build the writes touching
 * several of them. The public shapes (`QueuedMessage`, `RecipientState`) are
 * in types.ts; these are the stored ones.
 *
 * Every key starts with `"queue"`, so the store can hold other things too.
 * `id` is the queue id, `n` a number counting from 0, `t` epoch ms.
 *
 * | key                       | holds                                          | written                                        |
 * | ------------------------- | ---------------------------------------------- | ---------------------------------------------- |
 * | `["queue","incoming",id]` | an upload in progress: pid, start time, last   | with the first chunk (or recipient batch)      |
 * |                           | activity, how many chunks/recipients/path      | stored before the commit, and again with each; |
 * |                           | pages it has stored                            | deleted by the commit                          |
 * | `["queue","chunk",id,n]`  | content of at most 60,000 bytes: one chunk,    | in the commit                                  |
 * |                           | `n` = 0 (stores of older versions: several)    |                                                |
 * | `["queue","rcpt",id,n]`   | one `RecipientState`                           | in the commit, or before it when too many      |
 * | `["queue","path",id,n]`   | a page of forward-paths                        | only when they would not fit in the meta       |
 * | `["queue","msg",id]`      | the meta: envelope, size, arrival, schedule,   | **last**: in the commit operation              |
 * |                           | held, counts. **The commit marker**            |                                                |
 * | `["queue","due",t,id]`    | nothing: the schedule, in time order. `t` is   | always with the meta; absent while held        |
 * |                           | the next attempt, or the lease's end while     |                                                |
 * |                           | leased                                         |                                                |
 * | `["queue","lease",id]`    | token, pid, claim time, expiry                 | by `claimDue`; deleted by `recordAttempt`      |
 * | `["queue","removing",id]` | counts of what is left to delete               | by a removal too big for one operation         |
 *
 * A message that fits in one chunk (with its recipients) writes nothing
 * before its commit: no `incoming` key, one KV commit in all.
 *
 * **Bigger content goes to a spool file**, `<store>-spool/<id>` (spool.ts),
 * not into KV: SQLite would write every octet twice (log, then database) and
 * fsync each operation. When the content outgrows one chunk the upload writes
 * its `incoming` key (marked `spool`), then creates the file; the commit
 * fsyncs the file and its directory before it writes the meta (marked
 * `spool`, no chunks). A removal deletes the keys, then the file; a file that
 * neither a meta nor an `incoming` key names is swept by `recover`.
 *
 * **Why the meta is written last.** Every reader starts from a meta key
 * (`list`, `get`, `count`) or from a due key (`claimDue`), and the due key is
 * only ever written together with its meta. Chunks, recipients and path pages
 * without a meta are therefore invisible. The commit writes the meta in the
 * same atomic operation as the last chunk and the due key, and only after
 * every earlier chunk and recipient operation has committed, so when the meta
 * exists everything it points to exists too. Before it exists, the `incoming`
 * key (written atomically with every earlier write) says what to clean up.
 *
 * @module
 */

import type { Envelope } from "../smtp/envelope.ts";
import type { QueuedMessage, RecipientState } from "./types.ts";
import { del, type Mutation, set } from "./kv_atomic.ts";

/** Bytes of content per chunk key: under the 64 KiB value limit, with room to spare. */
export const CHUNK_SIZE = 60_000;

/** The first part of every key of the queue. */
const ROOT = "queue";

/** The keys of the layout table above. */
export const KEY = {
  incoming: (id: string): Deno.KvKey => [ROOT, "incoming", id],
  chunk: (id: string, n: number): Deno.KvKey => [ROOT, "chunk", id, n],
  rcpt: (id: string, n: number): Deno.KvKey => [ROOT, "rcpt", id, n],
  path: (id: string, n: number): Deno.KvKey => [ROOT, "path", id, n],
  msg: (id: string): Deno.KvKey => [ROOT, "msg", id],
  due: (t: number, id: string): Deno.KvKey => [ROOT, "due", t, id],
  lease: (id: string): Deno.KvKey => [ROOT, "lease", id],
  removing: (id: string): Deno.KvKey => [ROOT, "removing", id],
  state: (name: string): Deno.KvKey => [ROOT, "state", name],
} as const;

/** Prefixes to list the keys of one kind (of one message, for content). */
export const PREFIX = {
  incoming: [ROOT, "incoming"],
  chunk: (id: string): Deno.KvKey => [ROOT, "chunk", id],
  rcpt: (id: string): Deno.KvKey => [ROOT, "rcpt", id],
  /** Every message's recipients, in queue id order (as `msg`), then by index. */
  rcpts: [ROOT, "rcpt"],
  path: (id: string): Deno.KvKey => [ROOT, "path", id],
  msg: [ROOT, "msg"],
  due: [ROOT, "due"],
  lease: [ROOT, "lease"],
  removing: [ROOT, "removing"],
} as const;

/** How much content a message has under its id, to delete it without listing. */
export interface ContentCounts {
  readonly chunks: number;
  readonly recipients: number;
  readonly pathPages: number;
  /** The content is in the spool file (spool.ts), not in chunks. */
  readonly spool?: boolean;
}

/** `["queue","msg",id]`: the commit marker. */
export interface StoredMeta extends ContentCounts {
  /** Layout version, for a future migration. */
  readonly v: 1;
  readonly queueId: string;
  /** The envelope; `forwardPaths` is empty when they live in `path` pages. */
  readonly envelope: Envelope;
  /** Octets of content, the commit header included. */
  readonly size: number;
  /** Header fields added at commit (`CommitOptions.header`), read before the written content. */
  readonly header?: Uint8Array;
  readonly arrival: number;
  readonly nextAttempt: number;
  readonly held: boolean;
  readonly clientAddress: string;
  /** The `t` of this message's due key, or `null` when it has none (held). */
  readonly due: number | null;
}

/** `["queue","incoming",id]`: an upload that has written content but not committed. */
export interface IncomingRecord extends ContentCounts {
  readonly pid: number;
  /** The host name of the uploading process (absent in records from older versions). */
  readonly host?: string;
  readonly started: number;
  /** Last write, on the same clock as `started` (the `now` given to `receive`). */
  readonly touched: number;
}

/** `["queue","lease",id]`. */
export interface StoredLease {
  readonly token: string;
  readonly pid: number;
  /** The host name of the claiming process (absent in leases from older versions). */
  readonly host?: string;
  readonly claimed: number;
  readonly expires: number;
}

/** This host's name, recorded in leases so a restart here can tell its own dead workers. */
export const HOST: string = (() => {
  try {
    return Deno.hostname();
  } catch {
    return "";
  }
})();

/**
 * Whether a lease belongs to a process of this host that no longer runs.
 * Linux only (`/proc`); elsewhere, and for a pid that was reused, the lease
 * simply runs out.
 */
export function isDeadLocalProcess(
  lease: { readonly host?: string; readonly pid: number },
): boolean {
  if (lease.host !== HOST || HOST === "" || lease.pid === Deno.pid) return false;
  try {
    Deno.statSync("/proc/self");
  } catch {
    return false; // no /proc: cannot tell
  }
  try {
    Deno.statSync(`/proc/${lease.pid}`);
    return false;
  } catch {
    return true;
  }
}

/**
 * Moves a message's due key to `due` and records it in the meta; nothing
 * for a held message, which has no due key.
 */
export function rescheduled(id: string, meta: StoredMeta, due: number): Mutation[] {
  if (meta.due === null) return [];
  return [
    del(KEY.due(meta.due, id)),
    set(KEY.due(due, id), null),
    set(KEY.msg(id), { ...meta, due } satisfies StoredMeta),
  ];
}

/** The deletes that remove a message's content, recipients and path pages. */
export function contentDeletes(id: string, counts: ContentCounts): Mutation[] {
  const out: Mutation[] = [];
  for (let n = 0; n < counts.chunks; n++) out.push(del(KEY.chunk(id, n)));
  for (let n = 0; n < counts.recipients; n++) out.push(del(KEY.rcpt(id, n)));
  for (let n = 0; n < counts.pathPages; n++) out.push(del(KEY.path(id, n)));
  return out;
}

/** A stored meta (with its forward-paths) and its recipients as the public record. */
export function toMessage(meta: StoredMeta, recipients: readonly RecipientState[]): QueuedMessage {
  return {
    queueId: meta.queueId,
    envelope: meta.envelope,
    recipients,
    size: meta.size,
    arrival: meta.arrival,
    nextAttempt: meta.nextAttempt,
    held: meta.held,
    clientAddress: meta.clientAddress,
  };
}
