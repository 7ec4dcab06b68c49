/**
 * DKIM "relaxed" canonicalisation (RFC 6376 §3.4.2 for header fields, §3.4.4
 * for the body), written for streaming: the body goes through
 * {@linkcode RelaxedBodyHasher} chunk by chunk, split anywhere, and is never
 * held whole; header fields are small and canonicalised as strings.
 *
 * Header text is handled as "binary strings" (one character per octet, as
 * `latin1` decodes), so 8-bit UTF-8 header fields are hashed octet for octet.
 *
 * @module
 */

import { createHash, type Hash } from "node:crypto";

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;
const CRLF = new Uint8Array([CR, LF]);
const SPACE = new Uint8Array([SP]);

/** How many body octets are collected before they go to the hash at once. */
const OUTPUT_BUFFER = 16 * 1024;

/**
 * The relaxed body canonicalisation of RFC 6376 §3.4.4, fed in chunks, into
 * a SHA-256 hash: white space at the end of each line removed, runs of
 * white space inside a line reduced to one space, empty lines at the end
 * removed, and a final CRLF added to a non-empty body that lacks one. An
 * empty body canonicalises to nothing (RFC 6376 §3.4.4, as verifiers do).
 *
 * Only CRLF ends a line; a lone CR or LF is an ordinary character, as the
 * RFC's rules are written for CRLF lines.
 *
 * @example Hash a body given in pieces
 * ```ts
 * import { RelaxedBodyHasher } from "./dkim_canon.ts";
 * import { createHash } from "node:crypto";
 * import assert from "node:assert/strict";
 *
 * const hasher = new RelaxedBodyHasher();
 * hasher.update(new TextEncoder().encode(" C \r"));
 * hasher.update(new TextEncoder().encode("\nD \t E\r\n\r\n\r\n"));
 * // The same as hashing " C\r\nD E\r\n" (RFC 6376 §3.4.5).
 * assert.equal(hasher.digest(), createHash("sha256").update(" C\r\nD E\r\n").digest("base64"));
 * assert.equal(hasher.canonicalLength(), 9);
 * ```
 */
export class RelaxedBodyHasher {
  readonly #hash: Hash = createHash("sha256");
  readonly #out = new Uint8Array(OUTPUT_BUFFER);
  #outLength = 0;
  /** Canonical octets produced so far (for tests and `l=`-free accounting). */
  #total = 0;
  /** White space seen since the last character of the current line. */
  #pendingSpace = false;
  /** A CR seen last: a line end if LF follows, else an ordinary character. */
  #pendingCr = false;
  /** Whether the current line has a character other than white space yet. */
  #lineHasText = false;
  /** Empty lines seen and not yet written: kept back in case they end the body. */
  #emptyLines = 0;
  #finished = false;

  /**
   * Adds a piece of the body.
   *
   * @param chunk Body octets, split anywhere (even between CR and LF).
   */
  update(chunk: Uint8Array): void {
    if (this.#finished) throw new Error("RelaxedBodyHasher: update after digest");
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i]!;
      if (this.#pendingCr) {
        this.#pendingCr = false;
        if (byte === LF) {
          this.#endLine();
          continue;
        }
        this.#text(CR);
      }
      if (byte === CR) this.#pendingCr = true;
      else if (byte === SP || byte === HTAB) this.#pendingSpace = true;
      else this.#text(byte);
    }
  }

  /**
   * Ends the body and returns its SHA-256, base64 (the `bh=` value).
   *
   * @returns The body hash.
   */
  digest(): string {
    this.#finish();
    return this.#hash.digest("base64");
  }

  /**
   * The number of canonical octets hashed, once
   * {@linkcode RelaxedBodyHasher.digest} has been called.
   *
   * @returns The count.
   */
  canonicalLength(): number {
    return this.#total;
  }

  #finish(): void {
    if (this.#finished) return;
    if (this.#pendingCr) {
      this.#pendingCr = false;
      this.#text(CR);
    }
    // A last line without its CRLF gets one; trailing white space and empty lines go.
    if (this.#lineHasText) this.#put(CRLF);
    this.#flush();
    this.#finished = true;
  }

  #text(byte: number): void {
    if (!this.#lineHasText) {
      // This line has text, so the empty lines before it are not the end of the body.
      for (; this.#emptyLines > 0; this.#emptyLines--) this.#put(CRLF);
      this.#lineHasText = true;
    }
    if (this.#pendingSpace) {
      this.#pendingSpace = false;
      this.#put(SPACE);
    }
    if (this.#outLength === OUTPUT_BUFFER) this.#flush();
    this.#out[this.#outLength++] = byte;
  }

  #endLine(): void {
    this.#pendingSpace = false; // trailing white space is removed
    if (this.#lineHasText) this.#put(CRLF);
    else this.#emptyLines++;
    this.#lineHasText = false;
  }

  #put(bytes: Uint8Array): void {
    if (this.#outLength + bytes.length > OUTPUT_BUFFER) this.#flush();
    this.#out.set(bytes, this.#outLength);
    this.#outLength += bytes.length;
  }

  #flush(): void {
    if (this.#outLength === 0) return;
    this.#hash.update(this.#out.subarray(0, this.#outLength));
    this.#total += this.#outLength;
    this.#outLength = 0;
  }
}

/**
 * The relaxed canonical form of one header field (RFC 6376 §3.4.2): name in
 * lower case, unfolded, runs of white space reduced to one space, white
 * space around the colon and at the end of the value removed, ending in CRLF.
 *
 * @param field One header field as a binary string, with its folding and
 *   with or without its final CRLF.
 * @returns The canonical field, ending in CRLF.
 *
 * @example The RFC 6376 §3.4.5 example
 * ```ts
 * import { relaxedHeader } from "./dkim_canon.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(relaxedHeader("A: X\r\n"), "a:X\r\n");
 * assert.equal(relaxedHeader("B : Y\t\r\n\tZ  \r\n"), "b:Y Z\r\n");
 * ```
 */
export function relaxedHeader(field: string): string {
  const colon = field.indexOf(":");
  const name = colon < 0 ? field : field.slice(0, colon);
  const value = colon < 0 ? "" : field.slice(colon + 1);
  return `${name.replace(/[ \t\r\n]+$/, "").toLowerCase()}:${relaxedValue(value)}\r\n`;
}

/** A header value unfolded (RFC 6376 §3.4.2: CRLF removed where it folds), white space compressed and trimmed. */
function relaxedValue(value: string): string {
  return value.replace(/\r\n(?=[ \t])/g, "").replace(/\r\n$/, "").replace(/[ \t]+/g, " ")
    .replace(/^ | $/g, "");
}

/**
 * Splits a header block into its fields, each with its folding and final
 * CRLF (the last one may lack it when the message ends there). A line that
 * starts with white space continues the field above it.
 *
 * @param block Header fields as a binary string.
 * @returns The fields, top first.
 *
 * @example
 * ```ts
 * import { splitHeaderFields } from "./dkim_canon.ts";
 * import assert from "node:assert/strict";
 *
 * assert.deepEqual(splitHeaderFields("A: 1\r\n 2\r\nB: 3\r\n"), ["A: 1\r\n 2\r\n", "B: 3\r\n"]);
 * ```
 */
export function splitHeaderFields(block: string): string[] {
  const fields: string[] = [];
  let start = 0;
  while (start < block.length) {
    let end = start;
    for (;;) {
      const lineEnd = block.indexOf("\r\n", end);
      if (lineEnd < 0) {
        end = block.length;
        break;
      }
      end = lineEnd + 2;
      const next = block.charCodeAt(end);
      if (next !== SP && next !== HTAB) break;
    }
    fields.push(block.slice(start, end));
    start = end;
  }
  return fields;
}

/**
 * The name of a header field as written (before its colon, trailing white
 * space removed), in lower case.
 *
 * @param field One header field.
 * @returns Its name, lower case.
 */
export function headerName(field: string): string {
  const colon = field.indexOf(":");
  return (colon < 0 ? field : field.slice(0, colon)).replace(/[ \t\r\n]+$/, "").toLowerCase();
}
