/**
 * The data phase encoder, the client's mirror of `data_decoder.ts`: turns
 * message content into the octets sent after `354` (or in BDAT chunks).
 *
 * Two rules apply on the way out:
 *
 * - **Line endings** (RFC 5321 §2.3.8, RFC 5322 §2.3). Only CRLF ends a line,
 *   and a client must never send a bare CR or a bare LF. Each stray one is
 *   rewritten to CRLF, as Postfix 3.9 does (docs/smtp-pitfalls.md: line endings), so that no
 *   downstream parser splitting on LF can find a line the next server did
 *   not see ("SMTP smuggling").
 * - **Dot-stuffing** (RFC 5321 §4.5.2, DATA only). Every line that starts
 *   with `.` gets one more in front, so that no line of content can read as
 *   the end of data; the server takes exactly one off. The end of data is
 *   then `<CRLF>.<CRLF>`; a message whose last line lacks its CRLF gets one
 *   first (docs/smtp-pitfalls.md: end of data, dot-stuffing). BDAT content is never stuffed (RFC 3030 §2).
 *
 * The encoder keeps two flags of state and no content: any split of the same
 * input into chunks gives the same output, and memory stays constant.
 *
 * @module
 */

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;
const END_OF_DATA = new Uint8Array([DOT, CR, LF]);

/** Options of {@linkcode DataEncoder}. */
export interface DataEncoderOptions {
  /** Double a leading dot on every line and end with `.CRLF` (DATA); false for BDAT. */
  dotStuffing: boolean;
}

/**
 * Encodes the content of one message, chunk by chunk.
 *
 * @example Dot-stuffing and a bare LF, split across chunks
 * ```ts
 * import { DataEncoder } from "./data_encoder.ts";
 * const e = new DataEncoder({ dotStuffing: true });
 * const enc = new TextEncoder();
 * const dec = new TextDecoder();
 * let out = dec.decode(e.encode(enc.encode("Subject: x\r\n\r\nline\n")));
 * out += dec.decode(e.encode(enc.encode(".hidden")));
 * out += dec.decode(e.end());
 * console.log(JSON.stringify(out)); // "Subject: x\r\n\r\nline\r\n..hidden\r\n.\r\n"
 * console.log(e.rewrittenLineEndings); // 1
 * ```
 */
export class DataEncoder {
  #dotStuffing: boolean;
  #atLineStart = true;
  #pendingCr = false; // a CR ended the last chunk: CRLF or bare, the next byte tells
  #size = 0;
  #rewritten = 0;
  #ended = false;

  /**
   * Makes an encoder for one message.
   *
   * @param options Whether to dot-stuff (DATA) or not (BDAT).
   */
  constructor(options: DataEncoderOptions) {
    this.#dotStuffing = options.dotStuffing;
  }

  /** Octets of content produced so far, line endings rewritten, stuffing dots not counted (what RFC 1870 SIZE measures). */
  get size(): number {
    return this.#size;
  }

  /** How many bare CRs and LFs were rewritten to CRLF. */
  get rewrittenLineEndings(): number {
    return this.#rewritten;
  }

  /**
   * Encodes the next chunk of content.
   *
   * @param chunk Content octets, in order.
   * @returns The octets to send (possibly empty; a CR at the end is held back until the next byte is known).
   */
  encode(chunk: Uint8Array): Uint8Array {
    if (this.#ended) throw new Error("Cannot encode content: the encoder has ended");
    // Each input octet gives at most two, plus a held-back CR.
    const out = new Uint8Array(chunk.length * 2 + 2);
    let n = 0;
    let dots = 0;
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      if (this.#pendingCr) {
        this.#pendingCr = false;
        out[n++] = CR;
        out[n++] = LF;
        this.#atLineStart = true;
        if (b === LF) continue;
        this.#rewritten++; // a bare CR: RFC 5321 §2.3.8
      }
      if (b === CR) {
        this.#pendingCr = true;
      } else if (b === LF) {
        out[n++] = CR; // a bare LF: RFC 5321 §2.3.8
        out[n++] = LF;
        this.#rewritten++;
        this.#atLineStart = true;
      } else {
        if (this.#atLineStart && b === DOT && this.#dotStuffing) {
          out[n++] = DOT; // RFC 5321 §4.5.2: transparency
          dots++;
        }
        out[n++] = b;
        this.#atLineStart = false;
      }
    }
    this.#size += n - dots;
    return out.subarray(0, n);
  }

  /**
   * Ends the content: completes the last line, and with dot-stuffing adds
   * the end of data (`.CRLF`; the CRLF before it ends the last line).
   *
   * @returns The last octets to send.
   */
  end(): Uint8Array {
    if (this.#ended) return new Uint8Array(0);
    this.#ended = true;
    const parts: number[] = [];
    if (this.#pendingCr) {
      this.#rewritten++;
      this.#pendingCr = false;
      this.#atLineStart = false;
    }
    // RFC 5321 §4.1.1.4: <CRLF>.<CRLF>, where the first CRLF ends the last line.
    // Empty content needs none: the CRLF after the DATA command counts.
    if (!this.#atLineStart) parts.push(CR, LF);
    this.#size += parts.length;
    const tail = new Uint8Array(parts);
    if (!this.#dotStuffing) return tail;
    const out = new Uint8Array(tail.length + END_OF_DATA.length);
    out.set(tail);
    out.set(END_OF_DATA, tail.length);
    return out;
  }
}
