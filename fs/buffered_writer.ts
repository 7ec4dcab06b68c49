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

/** The smallest buffer {@linkcode writePieces} joins pieces in, octets. */
const MIN_JOINED = 64 * 1024;
/** The most octets {@linkcode writePieces} joins; more are written piece by piece. */
const MAX_JOINED = 4 * 1024 * 1024;
/** The most octets of spare joining buffers kept for later writes. */
const MAX_SPARE_JOINED = 16 * 1024 * 1024;
/** Spare joining buffers, by size (powers of two from {@linkcode MIN_JOINED}). */
const spareJoined = new Map<number, Uint8Array[]>();
let spareJoinedOctets = 0;

/**
 * Writes pieces (a header and the socket reads of a message) in order, in
 * one write(2) when together they fit {@linkcode MAX_JOINED} octets: they
 * are joined in a buffer kept from earlier writes. A fresh megabyte costs
 * more in page faults than the copy, and sixteen writes of 64 KiB more than
 * one of a megabyte.
 *
 * @param file An open file.
 * @param pieces What to write, in order.
 */
export async function writePieces(
  file: Deno.FsFile,
  pieces: readonly Uint8Array[],
): Promise<void> {
  let total = 0;
  for (const piece of pieces) total += piece.length;
  if (total > MAX_JOINED) {
    for (const piece of pieces) await writeAll(file, piece);
    return;
  }
  let size = MIN_JOINED;
  while (size < total) size *= 2;
  const spare = spareJoined.get(size)?.pop();
  if (spare !== undefined) spareJoinedOctets -= size;
  const buffer = spare ?? new Uint8Array(size);
  let offset = 0;
  for (const piece of pieces) {
    buffer.set(piece, offset);
    offset += piece.length;
  }
  try {
    await writeAll(file, buffer.subarray(0, total));
  } finally {
    const spares = spareJoined.get(size) ?? [];
    if (spareJoinedOctets + size <= MAX_SPARE_JOINED) {
      spares.push(buffer);
      spareJoined.set(size, spares);
      spareJoinedOctets += size;
    }
  }
}

/** Buffers given back by writers, by size, for the next writers to take. */
const spareBuffers = new Map<number, Uint8Array[]>();
/** The most spare buffers kept of each size. */
const MAX_SPARE = 32;

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
    this.#buffer ??= spareBuffers.get(this.#size)?.pop() ?? new Uint8Array(this.#size);
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
    if (spares.length < MAX_SPARE) spares.push(buffer);
    spareBuffers.set(this.#size, spares);
  }
}
