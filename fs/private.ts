/**
 * Private files and directories, whatever the umask. The queue store holds
 * whole messages (SQLite keeps recent ones in its `-wal` file), so it must be
 * as private as the Maildirs and the spool: a umask of 022 would otherwise
 * leave it readable by every local user.
 *
 * @module
 */

/** Owner only: read, write, search. */
export const PRIVATE_DIRECTORY_MODE = 0o700;
/** Owner only: read, write. */
export const PRIVATE_FILE_MODE = 0o600;

/** Permission bits mean nothing to `chmod` on Windows: nothing to do there. */
const HAS_MODES = Deno.build.os !== "windows";

/**
 * Makes a directory (and missing parents) owner-only, and makes an existing
 * one owner-only too: `mkdir`'s mode is filtered by the umask and says
 * nothing about a directory that is already there.
 *
 * @param path The directory.
 * @throws {Deno.errors.PermissionDenied} When it cannot be made or is not ours to chmod.
 *
 * @example Make a private directory
 * ```ts
 * import { makePrivateDirectory } from "./private.ts";
 * const dir = await Deno.makeTempDir();
 * await makePrivateDirectory(`${dir}/data`);
 * console.log(((await Deno.stat(`${dir}/data`)).mode ?? 0) & 0o777); // 448 (0o700)
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function makePrivateDirectory(path: string): Promise<void> {
  await Deno.mkdir(path, { recursive: true, mode: PRIVATE_DIRECTORY_MODE });
  if (HAS_MODES) await Deno.chmod(path, PRIVATE_DIRECTORY_MODE);
}

/**
 * Makes existing files or directories owner-only (`0600` for a file, `0700`
 * for a directory); a path that does not exist is skipped. Symbolic links are
 * not followed: a link is left alone, so this never changes a file elsewhere.
 *
 * @param paths The paths.
 *
 * @example Tighten a file left readable
 * ```ts
 * import { makePrivate } from "./private.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/store`, "x", { mode: 0o644 });
 * await makePrivate([`${dir}/store`, `${dir}/missing`]);
 * console.log(((await Deno.stat(`${dir}/store`)).mode ?? 0) & 0o777); // 384 (0o600)
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function makePrivate(paths: readonly string[]): Promise<void> {
  if (!HAS_MODES) return;
  for (const path of paths) {
    let info: Deno.FileInfo;
    try {
      info = await Deno.lstat(path);
    } catch (error: unknown) {
      if (error instanceof Deno.errors.NotFound) continue;
      throw error;
    }
    if (info.isSymlink) continue;
    const mode = info.isDirectory ? PRIVATE_DIRECTORY_MODE : PRIVATE_FILE_MODE;
    if (((info.mode ?? 0) & 0o777) !== mode) await Deno.chmod(path, mode);
  }
}

/**
 * Creates a file owner-only (`0600`) if it does not exist, leaving its
 * content alone if it does, and makes it `0600` either way. SQLite gives the
 * `-wal` and `-shm` files it creates the mode of the database file, so a
 * store created this way stays private.
 *
 * @param path The file.
 *
 * @example Prepare a store file before opening it
 * ```ts
 * import { createPrivateFile } from "./private.ts";
 * const dir = await Deno.makeTempDir();
 * await createPrivateFile(`${dir}/queue.sqlite3`);
 * console.log(((await Deno.stat(`${dir}/queue.sqlite3`)).mode ?? 0) & 0o777); // 384 (0o600)
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function createPrivateFile(path: string): Promise<void> {
  const file = await Deno.open(path, { create: true, write: true, mode: PRIVATE_FILE_MODE });
  file.close();
  await makePrivate([path]);
}
