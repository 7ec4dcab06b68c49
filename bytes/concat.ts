/**
 * Joins byte arrays into one: the queue, the Maildir writer and the SMTP
 * data decoder all assemble messages from chunks.
 *
 * @module
 */

/**
 * Joins byte arrays into a new one, in order.
 *
 * @param pieces The arrays.
 * @returns A new array holding them all.
 *
 * @example
 * ```ts
 * import { concatBytes } from "./concat.ts";
 * console.log(concatBytes([new Uint8Array([1]), new Uint8Array([2, 3])])); // Uint8Array(3) [ 1, 2, 3 ]
 * ```
 */
export function concatBytes(pieces: readonly Uint8Array[]): Uint8Array<ArrayBuffer> {
  let total = 0;
  for (const piece of pieces) total += piece.length;
  const out = new Uint8Array(total);
  let offset = 0;
  for (const piece of pieces) {
    out.set(piece, offset);
    offset += piece.length;
  }
  return out;
}
