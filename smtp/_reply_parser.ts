/**
 * Reading SMTP replies (RFC 5321 §4.2) out of the bytes a server sends.
 *
 * ```
 * Reply-line = *( Reply-code "-" [ textstring ] CRLF )
 *              Reply-code [ SP textstring ] CRLF
 * Reply-code = %x32-35 %x30-35 %x30-39
 * ```
 *
 * A reply is one or more lines; every line but the last has a hyphen after
 * the code, and every line carries the same code. The text is optional, so a
 * bare `250` is a whole reply. Control characters in the text (ESC, a bare
 * CR, C1 controls) are replaced with `?`. When the text starts with an
 * enhanced status code (RFC 2034, `2.1.5`) whose class matches the reply
 * code, it is taken out of every line into {@linkcode Reply.enhancedStatus},
 * so that `formatReply(parsed, true)` gives the wire text back.
 *
 * Folder-private: the client session is its only user.
 *
 * @module
 */

import type { Reply } from "./reply.ts";

export type { Reply } from "./reply.ts";

/** A reply line that does not follow RFC 5321 §4.2; the client cannot go on after it. */
export class ReplySyntaxError extends SyntaxError {
  /**
   * Makes the error.
   *
   * @param message What is wrong, with the offending line quoted.
   */
  constructor(message: string) {
    super(message);
    this.name = "ReplySyntaxError";
  }
}

/**
 * Longest reply line kept, in octets. RFC 5321 §4.5.3.1.5 sets 512 with the
 * CRLF, but servers overstep it (long EHLO keyword lists, chatty 5yz texts),
 * so more is read and kept; past this the rest of the line is skipped, which
 * keeps the memory a hostile server can make us use bounded.
 */
export const MAX_REPLY_LINE = 4096;

/** Lines kept of one reply; more are read and dropped, for the same reason. */
export const MAX_REPLY_LINES = 256;

const LF = 0x0a;
const CR = 0x0d;
const EMPTY = new Uint8Array(0);
const text = new TextDecoder(); // RFC 6531 §3.7.4: replies may carry UTF-8; bad octets become U+FFFD
const LINE = /^([2-5][0-9][0-9])(?:([ -])(.*))?$/s;
const ENHANCED = /^([245])\.([0-9]{1,3})\.([0-9]{1,3})(?: |$)/;
/** C0 controls but TAB, DEL, and the C1 controls (U+0080–U+009F, e.g. CSI). */
// deno-lint-ignore no-control-regex
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f-\x9f]/g;

/**
 * Replaces control characters in a reply line with `?`. A reply's text goes
 * on to logs, `tern queue list` and the bounces we send; a next hop must not
 * be able to put a terminal escape there, nor a bare CR (RFC 5321 §2.3.8),
 * which a bounce carrying it would be refused for.
 */
function printable(line: string): string {
  return line.replace(CONTROL, "?");
}

/**
 * Cuts a server's byte stream into replies, whatever the chunking.
 *
 * @example Two replies arriving in three pieces
 * ```ts
 * import { ReplyParser } from "./_reply_parser.ts";
 * const p = new ReplyParser();
 * const e = new TextEncoder();
 * p.push(e.encode("250-mx.example.test\r\n250 PIPE"));
 * console.log(p.next()); // null: the last line is not complete
 * p.push(e.encode("LINING\r\n354 Go on\r\n"));
 * console.log(p.next()?.lines); // ["mx.example.test", "PIPELINING"]
 * console.log(p.next()?.code); // 354
 * ```
 */
export class ReplyParser {
  #buffer: Uint8Array = EMPTY;
  /** The kept start of an over-long line, while the rest of it is skipped. */
  #head: Uint8Array | null = null;
  #code: number | null = null;
  #lines: string[] = [];

  /** Whether no part of a reply is waiting for more bytes. */
  get isEmpty(): boolean {
    return this.#buffer.length === 0 && this.#head === null && this.#code === null;
  }

  /**
   * Adds bytes that arrived.
   *
   * @param bytes The bytes, in order.
   */
  push(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    if (this.#buffer.length === 0) {
      this.#buffer = bytes;
      return;
    }
    const joined = new Uint8Array(this.#buffer.length + bytes.length);
    joined.set(this.#buffer);
    joined.set(bytes, this.#buffer.length);
    this.#buffer = joined;
  }

  /**
   * Takes the next complete reply.
   *
   * @returns The reply, or `null` until more bytes arrive.
   * @throws {ReplySyntaxError} When a line is not a reply line, or changes the code.
   */
  next(): Reply | null {
    while (true) {
      const lf = this.#buffer.indexOf(LF);
      if (lf < 0) {
        if (this.#head !== null) {
          this.#buffer = EMPTY; // still inside the over-long line
        } else if (this.#buffer.length > MAX_REPLY_LINE) {
          this.#head = this.#buffer.slice(0, MAX_REPLY_LINE);
          this.#buffer = EMPTY;
        }
        return null;
      }
      let line: Uint8Array;
      if (this.#head !== null) {
        line = this.#head;
        this.#head = null;
      } else {
        // Laxer than the letter of RFC 5321 §2.3.8: a reply line ending in a
        // bare LF is read too. Reading a server's replies this way cannot
        // smuggle anything, and refusing would only stall until a timeout.
        const end = lf > 0 && this.#buffer[lf - 1] === CR ? lf - 1 : lf;
        line = this.#buffer.subarray(0, Math.min(end, MAX_REPLY_LINE));
      }
      this.#buffer = lf + 1 === this.#buffer.length ? EMPTY : this.#buffer.subarray(lf + 1);
      const reply = this.#line(printable(text.decode(line)));
      if (reply !== null) return reply;
    }
  }

  /**
   * Throws away every byte not yet read into a reply (RFC 3207 §4.2: after
   * the 220 to STARTTLS, nothing sent in plaintext may be believed).
   *
   * @returns How many bytes were thrown away.
   */
  clear(): number {
    const dropped = this.#buffer.length + (this.#head?.length ?? 0) +
      this.#lines.reduce((n, l) => n + l.length + 6, 0);
    this.#buffer = EMPTY;
    this.#head = null;
    this.#code = null;
    this.#lines = [];
    return dropped;
  }

  #line(line: string): Reply | null {
    const m = LINE.exec(line);
    if (m === null) {
      throw new ReplySyntaxError(`Cannot parse reply line "${shorten(line)}": no reply code`);
    }
    const code = Number(m[1]);
    if (this.#code !== null && code !== this.#code) {
      // RFC 5321 §4.2.1: every line of a multi-line reply has the same code.
      throw new ReplySyntaxError(
        `Cannot parse reply line "${shorten(line)}": code ${code} inside a ${this.#code} reply`,
      );
    }
    this.#code = code;
    if (this.#lines.length < MAX_REPLY_LINES) this.#lines.push(m[3] ?? "");
    if (m[2] === "-") return null;
    const lines = this.#lines;
    this.#code = null;
    this.#lines = [];
    return withEnhancedStatus(code, lines);
  }
}

/** RFC 2034 §4: takes a leading `class.subject.detail` out of the text, if the class fits the code. */
function withEnhancedStatus(code: number, lines: string[]): Reply {
  const m = ENHANCED.exec(lines[0] ?? "");
  if (m === null || Number(m[1]) !== Math.floor(code / 100)) return { code, lines };
  const enhancedStatus = `${m[1]}.${m[2]}.${m[3]}`;
  const stripped = lines.map((l) =>
    l === enhancedStatus
      ? ""
      : l.startsWith(enhancedStatus + " ")
      ? l.slice(enhancedStatus.length + 1)
      : l
  );
  return { code, enhancedStatus, lines: stripped };
}

function shorten(line: string): string {
  return line.length > 60 ? line.slice(0, 60) + "…" : line;
}
