/**
 * The data phase decoder: turns the octets a client sends after `354` (or in
 * BDAT chunks) into message content.
 *
 * After DATA (RFC 5321 §4.1.1.4) the content is a series of CRLF-terminated
 * lines ending with a line holding a single dot: `<CRLF>.<CRLF>`. The CRLF
 * that ends the DATA command itself counts, so a first line of `.` means an
 * empty message (docs/smtp-pitfalls.md: end of data). Any line of content that starts with a dot was
 * sent with one more dot in front (§4.5.2, "transparency"); the decoder strips
 * exactly that one.
 *
 * Only CRLF ends a line (§2.3.8). A bare LF or a bare CR does not end a line
 * and can never end the data: `<LF>.<LF>`, `<LF>.<CRLF>` and `<CR>.<CR>` are
 * content, not the end (the "SMTP smuggling" attacks, CVE-2023-51764 and
 * kin). Stricter than required: the decoder notes any bare CR or LF so the
 * session can refuse the message after its end, because a downstream parser
 * that splits on LF could read such content as a second message.
 *
 * BDAT chunks (RFC 3030) are taken as they are, with no dot processing, but
 * the same line-ending check applies.
 *
 * The decoder keeps a few bytes of state and no content: memory stays
 * constant whatever the message size. Any split of the same bytes into
 * chunks gives the same content.
 *
 * @module
 */

import { concatBytes } from "../bytes/concat.ts";

const CR = 0x0d;
const LF = 0x0a;
const DOT = 0x2e;

const enum State {
  /** At the start of a line (after CRLF, or at the very start). */
  LineStart,
  /** Inside a line. */
  InLine,
  /** Inside a line, just after a CR (already passed on). */
  AfterCr,
  /** A dot at the start of a line, held back. */
  Dot,
  /** A dot and a CR at the start of a line, both held back. */
  DotCr,
}

const RECEIVED = new TextEncoder().encode("received:");
const CR_BYTES = new Uint8Array([CR]);

/** What one call of {@linkcode DataDecoder.decode} produced. */
export interface DecodeResult {
  /** Octets of the input used, from `start`. */
  readonly consumed: number;
  /** Content decoded from them (may be empty; may share memory with the input). */
  readonly content: Uint8Array;
  /** Whether the end of data was reached (DATA only). */
  readonly ended: boolean;
}

/**
 * Decodes the data phase of one message, chunk by chunk.
 *
 * @example Dot-stuffing and the end of data
 * ```ts
 * import { DataDecoder } from "./data_decoder.ts";
 * const d = new DataDecoder({ dotStuffed: true });
 * const input = new TextEncoder().encode("Subject: x\r\n\r\n..hidden\r\n.\r\nQUIT\r\n");
 * const r = d.decode(input, 0, input.length);
 * console.log(new TextDecoder().decode(r.content)); // "Subject: x\r\n\r\n.hidden\r\n"
 * console.log(r.ended, r.consumed); // true 27
 * ```
 */
export class DataDecoder {
  #state = State.LineStart;
  #dotStuffed: boolean;
  #bare = false;
  #inHeaders = true;
  #lineHead = 0; // how many leading octets of the line matched "received:"
  #lineLength = 0;
  #received = 0;
  #size = 0;

  /**
   * Makes a decoder for one message.
   *
   * @param options `dotStuffed`: true for DATA (RFC 5321 §4.5.2), false for BDAT (RFC 3030 §2).
   */
  constructor(options: { dotStuffed: boolean }) {
    this.#dotStuffed = options.dotStuffed;
  }

  /** Whether a bare CR or bare LF was seen in the content (RFC 5321 §2.3.8). */
  get hasBareLineEnding(): boolean {
    return this.#bare;
  }

  /** How many `Received:` header fields the header section holds so far (RFC 5321 §6.3 loop check). */
  get receivedCount(): number {
    return this.#received;
  }

  /** Content octets produced so far. */
  get size(): number {
    return this.#size;
  }

  /**
   * Ends BDAT content: a CR left at the very end is a bare CR.
   */
  finish(): void {
    if (this.#state === State.AfterCr) this.#bare = true;
  }

  /**
   * Decodes `input[start, end)`.
   *
   * @param input The octets received.
   * @param start Where to begin.
   * @param end Where to stop (DATA stops earlier, at the end of data).
   * @returns What was consumed and produced.
   */
  decode(input: Uint8Array, start: number, end: number): DecodeResult {
    const pieces: Uint8Array[] = [];
    let runStart = start;
    let state = this.#state;
    const stuffed = this.#dotStuffed;
    let i = start;
    let ended = false;
    let words: Words | null = null;
    for (; i < end; i++) {
      const b = input[i]!;
      switch (state) {
        case State.LineStart:
          if (stuffed && b === DOT) {
            if (i > runStart) pieces.push(input.subarray(runStart, i));
            state = State.Dot;
            continue;
          }
          state = this.#inLine(b);
          break;
        case State.InLine: {
          if (this.#inHeaders) {
            state = this.#inLine(b);
            break;
          }
          // In the body only CR, LF and a dot after CRLF matter: skip to the
          // next octet below 14 four octets at a time (see nextControl).
          words ??= wordView(input, start, end);
          let pos = i;
          state = State.InLine;
          while (pos < end) {
            pos = nextControl(input, words, pos, end);
            if (pos >= end) break;
            const c = input[pos];
            if (c === CR) {
              if (pos + 1 >= end) {
                state = State.AfterCr; // the LF may come in the next input
                pos = end;
                break;
              }
              if (input[pos + 1] !== LF) {
                this.#bare = true; // bare CR
                pos++;
                continue;
              }
              pos += 2; // CRLF: a line starts here
              if (pos >= end || (stuffed && input[pos] === DOT)) {
                state = State.LineStart; // the caller's loop looks at it
                break;
              }
              continue;
            }
            if (c === LF) this.#bare = true; // bare LF: the line goes on (§2.3.8)
            pos++;
          }
          i = pos - 1; // the loop's i++ moves to pos
          continue;
        }
        case State.AfterCr:
          if (b === LF) {
            this.#lineEnded();
            state = State.LineStart;
          } else {
            this.#bare = true; // bare CR
            state = this.#inLine(b);
          }
          break;
        case State.Dot:
          // The held dot is dropped: a stuffed dot (§4.5.2), or the end marker.
          runStart = i;
          if (b === CR) {
            state = State.DotCr;
            continue;
          }
          state = this.#inLine(b);
          break;
        case State.DotCr:
          if (b === LF) {
            ended = true; // <CRLF>.<CRLF>
            i++;
            break;
          }
          // ".<CR>x": the dot was stuffing; the CR was bare.
          pieces.push(CR_BYTES);
          this.#bare = true;
          runStart = i;
          this.#lineLength = 1;
          state = this.#inLine(b);
          break;
      }
      if (ended) break;
    }
    if (!ended && state !== State.Dot && state !== State.DotCr && i > runStart) {
      pieces.push(input.subarray(runStart, i));
    }
    this.#state = ended ? State.LineStart : state;
    const content = pieces.length === 1 ? pieces[0]! : concatBytes(pieces);
    this.#size += content.length;
    return { consumed: i - start, content, ended };
  }

  #inLine(b: number): State {
    if (b === CR) return State.AfterCr;
    if (b === LF) {
      this.#bare = true; // bare LF
      return State.InLine;
    }
    if (
      this.#inHeaders && this.#lineHead === this.#lineLength && this.#lineHead < RECEIVED.length
    ) {
      const lower = b >= 0x41 && b <= 0x5a ? b + 0x20 : b;
      if (lower === RECEIVED[this.#lineHead]) this.#lineHead++;
    }
    this.#lineLength++;
    return State.InLine;
  }

  #lineEnded(): void {
    if (this.#inHeaders) {
      if (this.#lineLength === 0) this.#inHeaders = false;
      else if (this.#lineHead === RECEIVED.length) this.#received++;
    }
    this.#lineLength = 0;
    this.#lineHead = 0;
  }
}

/** The 4-octet-aligned part of an input, as words, and where it starts. */
interface Words {
  readonly words: Uint32Array;
  /** The index in the input of the first octet of `words[0]`. */
  readonly first: number;
}

const NO_WORDS = new Uint32Array(0);

/** Views `input[start, end)` as 32-bit words from its first 4-aligned octet (no copy). */
function wordView(input: Uint8Array, start: number, end: number): Words {
  const first = Math.min(end, start + ((4 - ((input.byteOffset + start) & 3)) & 3));
  const count = (end - first) >>> 2;
  // With no whole word, `first` may be `end`, not aligned: no view at all.
  if (count === 0) return { words: NO_WORDS, first };
  return { words: new Uint32Array(input.buffer, input.byteOffset + first, count), first };
}

/**
 * The index of the first octet below 14 (CR, LF, and a few other controls
 * that are looked at and passed over) in `input[from, end)`, or `end`.
 * Whole words go by in one test: `(x - 0x0e0e0e0e) & ~x & 0x80808080` is
 * non-zero exactly when one of the word's octets is below 0x0e ("hasless"
 * from Sean Anderson's Bit Twiddling Hacks). Body lines are mostly
 * printable text, so this looks at a quarter of the octets.
 */
function nextControl(input: Uint8Array, view: Words, from: number, end: number): number {
  const { words, first } = view;
  let k = from;
  // Octets before the aligned part, and up to the next word boundary.
  while (k < end && (k < first || ((k - first) & 3) !== 0)) {
    if (input[k]! < 14) return k;
    k++;
  }
  const lastWord = Math.min(words.length, (end - first) >> 2);
  for (let w = (k - first) >> 2; w < lastWord; w++) {
    const x = words[w]!;
    if (((x - 0x0e0e0e0e) & ~x & 0x80808080) !== 0) {
      const at = first + (w << 2);
      for (let j = at; j < at + 4; j++) if (input[j]! < 14) return j;
    }
  }
  for (k = Math.max(k, first + (lastWord << 2)); k < end; k++) {
    if (input[k]! < 14) return k;
  }
  return end;
}
