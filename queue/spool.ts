/**
 * The spool: content too big for one KV value, one file per message beside
 * the store (`<store>-spool/<queue id>`).
 *
 * A KV value holds at most 64 KiB, so a big message in KV is many values, and
 * SQLite writes each twice (its write-ahead log, then the database) and
 * fsyncs every operation. A file is written once and fsynced once, as
 * Postfix and Maildir do. The KV meta stays the commit marker: the file is
 * fsynced, and its directory entry made durable, before the meta that names
 * it is committed, so a committed message always has its file. A file with
 * neither a meta nor an upload record is an orphan (a crash between the
 * store's removal and the unlink) and is swept by `KvQueue.recover`.
 *
 * @module
 */

import { BufferedWriter } from "../fs/buffered_writer.ts";
import { errorReason } from "../fs/error_text.ts";
import { syncDirectory } from "../fs/sync_directory.ts";

/** Octets collected before one write(2). */
const WRITE_BUFFER_SIZE = 256 * 1024;
/** Octets per read when streaming a file out. */
const READ_SIZE = 64 * 1024;

/** A queue id as it may appear in a file name (what `newQueueId` makes). */
const ID_PATTERN = /^[0-9A-Za-z]{1,64}$/;

/** The spool directory of one store. */
export class Spool {
  /** The directory, `<store>-spool`. */
  readonly dir: string;
  #made = false;

  /**
   * Names the spool of a store; nothing is created until a file is.
   *
   * @param storePath The KV file, e.g. `data/queue.sqlite3`.
   */
  constructor(storePath: string) {
    this.dir = `${storePath}-spool`;
  }

  /** The file of one message. */
  path(queueId: string): string {
    if (!ID_PATTERN.test(queueId)) throw new TypeError(`Not a queue id: "${queueId}"`);
    return `${this.dir}/${queueId}`;
  }

  /**
   * Creates the file of a message being received.
   *
   * @param queueId The message.
   * @returns A writer; `finish` it before the commit, or `discard` it.
   */
  async create(queueId: string): Promise<SpoolWriter> {
    const path = this.path(queueId);
    if (!this.#made) {
      await Deno.mkdir(this.dir, { recursive: true, mode: 0o700 });
      this.#made = true;
    }
    const file = await Deno.open(path, { write: true, createNew: true, mode: 0o600 });
    return new SpoolWriter(file, path, this.dir);
  }

  /**
   * Streams a message's file.
   *
   * @param queueId The message.
   * @param size The size the meta records: a file of another size is an error.
   * @returns The content, read a piece at a time.
   */
  open(queueId: string, size: number): ReadableStream<Uint8Array> {
    const path = this.path(queueId);
    let file: Deno.FsFile | null = null;
    let read = 0;
    const close = (): void => {
      try {
        file?.close();
      } catch {
        // Already closed.
      }
      file = null;
    };
    return new ReadableStream<Uint8Array>({
      async start() {
        try {
          file = await Deno.open(path, { read: true });
        } catch (error: unknown) {
          // The reason without the path: this text can reach a DSN.
          throw new Error(
            `Cannot read message ${queueId}: its spool file is gone (${errorReason(error)})`,
          );
        }
      },
      async pull(controller) {
        const buffer = new Uint8Array(READ_SIZE);
        const n = await file!.read(buffer);
        if (n === null) {
          close();
          if (read !== size) {
            controller.error(
              new Error(
                `Cannot read message ${queueId}: its spool file has ${read} of ${size} octets`,
              ),
            );
          } else {
            controller.close();
          }
          return;
        }
        read += n;
        controller.enqueue(buffer.subarray(0, n));
      },
      cancel() {
        close();
      },
    }, { highWaterMark: 0 });
  }

  /**
   * Deletes a message's file; a file already gone is fine.
   *
   * @param queueId The message.
   */
  async remove(queueId: string): Promise<void> {
    try {
      await Deno.remove(this.path(queueId));
    } catch (error: unknown) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }

  /**
   * The queue ids that have a file (none when the directory does not exist).
   *
   * @returns The ids, in directory order.
   */
  async *ids(): AsyncIterable<string> {
    try {
      for await (const entry of Deno.readDir(this.dir)) {
        if (entry.isFile && ID_PATTERN.test(entry.name)) yield entry.name;
      }
    } catch (error: unknown) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
}

/** A spool file being written: buffered, then fsynced with its name. */
export class SpoolWriter {
  readonly #file: Deno.FsFile;
  readonly #path: string;
  readonly #dir: string;
  readonly #out: BufferedWriter;
  #closed = false;

  /** @internal Made by {@linkcode Spool.create}. */
  constructor(file: Deno.FsFile, path: string, dir: string) {
    this.#file = file;
    this.#path = path;
    this.#dir = dir;
    this.#out = new BufferedWriter(file, WRITE_BUFFER_SIZE);
  }

  /**
   * Appends octets (buffered).
   *
   * @param bytes The next octets.
   */
  async write(bytes: Uint8Array): Promise<void> {
    if (this.#closed) throw new Error(`Cannot write to ${this.#path}: it is closed`);
    await this.#out.write(bytes);
  }

  /**
   * Writes what is buffered, fsyncs the file, closes it and makes its name
   * durable (a shared fsync of the spool directory): after this the file
   * survives a crash.
   */
  async finish(): Promise<void> {
    await this.#out.flush();
    await this.#file.sync();
    this.#close();
    await syncDirectory(this.#dir);
  }

  /** Closes and deletes the file (an upload given up). */
  async discard(): Promise<void> {
    this.#close();
    try {
      await Deno.remove(this.#path);
    } catch (error: unknown) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }

  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#out.release();
    try {
      this.#file.close();
    } catch {
      // Already closed.
    }
  }
}
