/**
 * Writing a file through a bounded buffer: small pieces (socket reads,
 * header lines) are gathered into one write(2), big ones go straight to the
 * file without a copy. Maildir delivery and the queue's spool both write
 * that way.
 *
 * @module
 */

/**
 * Writes all of `bytes` (a write may take only part).
 *
 * @param file An open file.
 * @param bytes What to write.
 */
export async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await file.write(bytes.subarray(offset));
}

/** Buffers given back by writers, by size, for the next writers to take. */
const spareBuffers = new Map<number, Uint8Array[]>();
/** The most spare buffers kept of each size. */
const MAX_SPARE = 32;
/** The most octets kept in spare buffers of all sizes (a writer may take a big one). */
const MAX_SPARE_OCTETS = 32 * 1024 * 1024;
let spareOctets = 0;

/**
 * A file written through a buffer of fixed size: memory does not grow with
 * the file. The buffer is taken on the first small write, and given back by
 * {@linkcode BufferedWriter.release} for the next writer: a busy server
 * writes a file per message, and a fresh zeroed buffer for each one costs
 * more than the copy it saves.
 */
export class BufferedWriter {
  readonly #file: Deno.FsFile;
  readonly #size: number;
  #buffer: Uint8Array | null = null;
  #used = 0;

  /**
   * Wraps an open file; nothing is written until the buffer fills or
   * {@linkcode BufferedWriter.flush}.
   *
   * @param file An open file, written from its current position.
   * @param size The buffer's size in octets.
   */
  constructor(file: Deno.FsFile, size: number) {
    this.#file = file;
    this.#size = size;
  }

  /**
   * Appends octets: buffered, or written at once when they fill the buffer.
   *
   * @param bytes The next octets.
   */
  async write(bytes: Uint8Array): Promise<void> {
    if (this.#used + bytes.length > this.#size) await this.flush();
    if (bytes.length >= this.#size) {
      await writeAll(this.#file, bytes); // big enough on its own: no copy
      return;
    }
    this.#buffer ??= this.#spare() ?? new Uint8Array(this.#size);
    this.#buffer.set(bytes, this.#used);
    this.#used += bytes.length;
  }

  /** Writes what is buffered. */
  async flush(): Promise<void> {
    if (this.#used === 0 || this.#buffer === null) return;
    await writeAll(this.#file, this.#buffer.subarray(0, this.#used));
    this.#used = 0;
  }

  /**
   * Gives the buffer back for other writers to use; what it still holds
   * (nothing, after {@linkcode BufferedWriter.flush}) is dropped. A later
   * write takes a buffer again.
   */
  release(): void {
    const buffer = this.#buffer;
    this.#buffer = null;
    this.#used = 0;
    if (buffer === null) return;
    const spares = spareBuffers.get(this.#size) ?? [];
    if (spares.length < MAX_SPARE && spareOctets + this.#size <= MAX_SPARE_OCTETS) {
      spares.push(buffer);
      spareOctets += this.#size;
    }
    spareBuffers.set(this.#size, spares);
  }

  /** A spare buffer of this writer's size, or `undefined`. */
  #spare(): Uint8Array | undefined {
    const spare = spareBuffers.get(this.#size)?.pop();
    if (spare !== undefined) spareOctets -= this.#size;
    return spare;
  }
}
