/**
 * The host part of the Maildir file names a node writes.
 *
 * @module
 */

import type { Config } from "../config/types.ts";

/**
 * The host part of the Maildir file names this node writes. A Maildir name
 * is derived from the queue id, the recipient and this host part, so that a
 * retry after a crash finds the copy an earlier attempt wrote. With a store
 * shared by a fleet, the node that takes over a dead node's claim is another
 * host: every node then writes the same fixed host part, so it finds the
 * dead node's copy instead of writing a second one (the queue id, unique in
 * the whole store, already keeps the names of different messages apart).
 *
 * @param config The configuration.
 * @returns `hostname` with a node-local store; `tern-fleet` with a shared one.
 */
export function maildirHostName(config: Config): string {
  return config.queue.store === undefined ? config.hostname : "tern-fleet";
}

/**
 * Whether deliveries at acceptance may leave the fsync of `new/` until after
 * the `250` (`deliverToMaildir`'s `syncName: "later"`), with the start-up's
 * `recoverMaildirs` to finish a rename a crash undid. Only with a node-local
 * store: a fleet shares its mail root, and one node's start-up must not
 * touch the files another node is writing at that moment.
 *
 * @param config The configuration.
 * @returns `true` with a node-local store.
 */
export function recoversMaildirs(config: Config): boolean {
  return config.queue.store === undefined;
}
