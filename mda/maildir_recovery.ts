/**
 * Finishing Maildir deliveries a crash interrupted.
 *
 * A delivery at acceptance (`mta/direct_delivery.ts`) answers the client as
 * soon as each Maildir file is synced and renamed into `new/`; the fsync of
 * `new/` that makes the rename durable runs after the `250`
 * (`deliverToMaildir`'s `syncName: "later"`). If the machine goes down in
 * that window, the file system may come back with the rename undone: the
 * message, synced, is still in `tmp/`. No reader looks there, and a Maildir
 * reader deletes old files from `tmp/`, so without this step the message
 * would be lost although its `250` was sent.
 *
 * So such a file is named `<unique>,S=<size>` in `tmp/` (`pendingName`): the
 * size is the file's whole size, known before the first octet is written.
 * At start-up, before any listener opens, {@linkcode recoverMaildirs} looks
 * in every Maildir's `tmp/` under the mail root for this host's pending
 * names:
 *
 * - a file of exactly that size was synced (the rename comes only after the
 *   fsync, and the file system writes the size only with the data): it is
 *   renamed into `new/<unique>`, and `new/` fsynced;
 * - a shorter one was cut short by the crash before its fsync, so its `250`
 *   was never sent: it is removed (the client sends the message again).
 *
 * A complete file may also be one whose `250` the crash prevented. Moving it
 * into the mailbox can then make a duplicate when the client sends the
 * message again, which RFC 5321 §6.1 prefers to a loss, and which a crash
 * between a queue's commit and its `250` can cause as well.
 *
 * Only names made on this host are touched (`isUniqueNameOf`): another
 * host's deliveries into a shared mail root are its own to finish.
 *
 * @module
 */

import { syncDirectory } from "../fs/sync_directory.ts";
import { isUniqueNameOf, parsePendingName, renameIntoNew } from "./maildir.ts";

/** What {@linkcode recoverMaildirs} did with one file. */
export interface RecoveredFile {
  /** The file in `tmp/`. */
  readonly from: string;
  /** `delivered`: renamed into `new/` (`to`); `removed`: incomplete, deleted. */
  readonly action: "delivered" | "removed";
  /** Where it went (`new/<unique>`), when delivered. */
  readonly to?: string;
  /** For a removed file: its size against the size in its name. */
  readonly reason?: string;
}

/** A Maildir the recovery could not look into, or a file it could not move. */
export interface RecoveryProblem {
  /** The directory or file. */
  readonly path: string;
  /** The file system's error. */
  readonly error: string;
}

/** What {@linkcode recoverMaildirs} found. */
export interface MaildirRecovery {
  /** The files it delivered or removed. */
  readonly files: readonly RecoveredFile[];
  /** What it could not do (left as it was). */
  readonly problems: readonly RecoveryProblem[];
  /** How many Maildirs it looked into. */
  readonly maildirs: number;
}

function isMissing(error: unknown): boolean {
  return error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory;
}

/** The entries of a directory that may be directories, or `[]` when it is missing. */
async function subdirectories(path: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(path)) {
      if (entry.isDirectory || entry.isSymlink) names.push(entry.name);
    }
  } catch (error: unknown) {
    if (!isMissing(error)) throw error;
  }
  return names;
}

/**
 * Finishes the renames into `new/` that a crash may have undone, in every
 * Maildir under `mailRoot` (`<mail_root>/<domain>/<local-part>/`, as
 * `maildirPath` lays them out). Run before anything delivers: a file being
 * written right now looks like one cut short.
 *
 * @param mailRoot The mail root.
 * @param hostname This host's name in Maildir file names (`maildirHostName`).
 * @returns The files handled, the problems met, the Maildirs looked into.
 *
 * @example Nothing to do in an empty mail root
 * ```ts
 * import { recoverMaildirs } from "./maildir_recovery.ts";
 * const root = await Deno.makeTempDir();
 * const result = await recoverMaildirs(root, "mx.example.test");
 * console.log(result.files.length); // 0
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export async function recoverMaildirs(
  mailRoot: string,
  hostname: string,
): Promise<MaildirRecovery> {
  const files: RecoveredFile[] = [];
  const problems: RecoveryProblem[] = [];
  let maildirs = 0;
  const root = mailRoot.length > 1 && mailRoot.endsWith("/") ? mailRoot.slice(0, -1) : mailRoot;
  for (const domain of await subdirectories(root)) {
    let locals: string[];
    try {
      locals = await subdirectories(`${root}/${domain}`);
    } catch (error: unknown) {
      problems.push({ path: `${root}/${domain}`, error: String(error) });
      continue;
    }
    for (const local of locals) {
      maildirs++;
      try {
        await recoverMaildir(`${root}/${domain}/${local}`, hostname, files, problems);
      } catch (error: unknown) {
        problems.push({ path: `${root}/${domain}/${local}/tmp`, error: String(error) });
      }
    }
  }
  return { files, problems, maildirs };
}

/** One Maildir's `tmp/`: moves complete pending files into `new/`, removes incomplete ones. */
async function recoverMaildir(
  maildir: string,
  hostname: string,
  files: RecoveredFile[],
  problems: RecoveryProblem[],
): Promise<void> {
  const pending: { name: string; uniqueName: string; size: number }[] = [];
  try {
    for await (const entry of Deno.readDir(`${maildir}/tmp`)) {
      if (!entry.isFile) continue;
      const parsed = parsePendingName(entry.name);
      if (parsed === null || !isUniqueNameOf(parsed.uniqueName, hostname)) continue;
      pending.push({ name: entry.name, ...parsed });
    }
  } catch (error: unknown) {
    if (isMissing(error)) return; // not a Maildir (or not yet one)
    throw error;
  }
  // In name order, which is arrival order: the log reads in a fixed order.
  pending.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  let moved = false;
  for (const { name, uniqueName, size } of pending) {
    const from = `${maildir}/tmp/${name}`;
    try {
      const actual = (await Deno.lstat(from)).size;
      if (actual === size) {
        const to = `${maildir}/new/${uniqueName}`;
        await renameIntoNew(maildir, from, to);
        moved = true;
        files.push({ from, action: "delivered", to });
      } else {
        await Deno.remove(from);
        files.push({
          from,
          action: "removed",
          reason: `incomplete: ${actual} of ${size} octets`,
        });
      }
    } catch (error: unknown) {
      problems.push({ path: from, error: String(error) });
    }
  }
  if (moved) await syncDirectory(`${maildir}/new`);
}
