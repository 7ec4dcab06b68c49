/**
 * Keeps a message's content while milters read it: in memory up to a
 * limit, then in a file of its own (mode 0600, removed when done), so a
 * large message costs disk, not memory. The content can be read back any
 * number of times, from any offset.
 *
 * @module
 */

import { join } from "node:path";

/** Content kept in memory up to this many octets; beyond, a temp file takes it all. */
export const MEMORY_LIMIT = 1024 * 1024;

/** Read back in pieces of this size from the file. */
const READ_SIZE = 64 * 1024;

/**
 * The content of one message, written once, read back as often as needed.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { ContentSpool } from "./spool.ts";
 * const spool = new ContentSpool(await Deno.makeTempDir());
 * await spool.write(new TextEncoder().encode("Subject: x\r\n\r\nHi\r\n"));
 * const parts = await Array.fromAsync(spool.read(14));
 * assert.equal(new TextDecoder().decode(parts[0]), "Hi\r\n");
 * await spool.dispose();
 * ```
 */
export class ContentSpool {
  readonly #dir: string;
  readonly #limit: number;
  #chunks: Uint8Array[] = [];
  #size = 0;
  #path: string | null = null;
  #file: Deno.FsFile | null = null;

  /**
   * Makes an empty spool.
   *
   * @param dir Where a temp file goes when the content outgrows memory.
   * @param limit The memory limit. @default {MEMORY_LIMIT}
   */
  constructor(dir: string, limit = MEMORY_LIMIT) {
    this.#dir = dir;
    this.#limit = limit;
  }

  /** Octets written. */
  get size(): number {
    return this.#size;
  }

  /**
   * Appends content.
   *
   * @param chunk The octets (copied: the caller may reuse its buffer).
   */
  async write(chunk: Uint8Array): Promise<void> {
    if (this.#file === null && this.#size + chunk.length > this.#limit) await this.#spill();
    if (this.#file !== null) await writeAll(this.#file, chunk);
    else this.#chunks.push(chunk.slice());
    this.#size += chunk.length;
  }

  async #spill(): Promise<void> {
    await Deno.mkdir(this.#dir, { recursive: true, mode: 0o700 });
    const path = join(this.#dir, `milter-${crypto.randomUUID()}`);
    // 0600: the content is the sender's and the recipients' business only.
    const file = await Deno.open(path, { read: true, write: true, createNew: true, mode: 0o600 });
    this.#path = path;
    this.#file = file;
    for (const chunk of this.#chunks) await writeAll(file, chunk);
    this.#chunks = [];
  }

  /**
   * Reads the content back.
   *
   * @param from The offset to start at. @default {0}
   * @returns The octets from there to the end, in pieces.
   */
  async *read(from = 0): AsyncGenerator<Uint8Array> {
    if (this.#file === null) {
      let at = 0;
      for (const chunk of this.#chunks) {
        const end = at + chunk.length;
        if (end > from) yield chunk.subarray(Math.max(from - at, 0));
        at = end;
      }
      return;
    }
    const buffer = new Uint8Array(READ_SIZE);
    for (let at = from; at < this.#size;) {
      await this.#file.seek(at, Deno.SeekMode.Start);
      const n = await this.#file.read(buffer.subarray(0, Math.min(READ_SIZE, this.#size - at)));
      if (n === null || n === 0) break;
      yield buffer.slice(0, n);
      at += n;
    }
  }

  /** Removes the temp file, if any; never throws. */
  async dispose(): Promise<void> {
    this.#chunks = [];
    const file = this.#file;
    const path = this.#path;
    this.#file = null;
    this.#path = null;
    try {
      file?.close();
    } catch {
      // already closed
    }
    if (path !== null) await Deno.remove(path).catch(() => {});
  }
}

async function writeAll(file: Deno.FsFile, data: Uint8Array): Promise<void> {
  for (let done = 0; done < data.length;) done += await file.write(data.subarray(done));
}
