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

/** A file written through a buffer of fixed size: memory does not grow with the file. */
export class BufferedWriter {
  readonly #file: Deno.FsFile;
  readonly #buffer: Uint8Array;
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
    this.#buffer = new Uint8Array(size);
  }

  /**
   * Appends octets: buffered, or written at once when they fill the buffer.
   *
   * @param bytes The next octets.
   */
  async write(bytes: Uint8Array): Promise<void> {
    if (this.#used + bytes.length > this.#buffer.length) await this.flush();
    if (bytes.length >= this.#buffer.length) {
      await writeAll(this.#file, bytes); // big enough on its own: no copy
    } else {
      this.#buffer.set(bytes, this.#used);
      this.#used += bytes.length;
    }
  }

  /** Writes what is buffered. */
  async flush(): Promise<void> {
    if (this.#used === 0) return;
    await writeAll(this.#file, this.#buffer.subarray(0, this.#used));
    this.#used = 0;
  }
}
