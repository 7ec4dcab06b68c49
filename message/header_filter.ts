/**
 * A streaming pass over a message's header section (RFC 5322 §2.2): it
 * notes which fields are present and drops the fields a predicate refuses,
 * while the content streams through in chunks split anywhere. The body, and
 * every field the predicate does not look at, pass through line by line
 * without being held; only the fields the caller names (such as
 * `Authentication-Results`) are held until complete, so the predicate sees
 * their unfolded value.
 *
 * @module
 */

import { concatBytes } from "../bytes/concat.ts";

/** Options of {@linkcode HeaderFilter}. */
export interface HeaderFilterOptions {
  /** Lower-case names of the fields to hold and show to `drop`. @default {none} */
  readonly inspect?: readonly string[];
  /**
   * Whether to drop a field of an inspected name.
   *
   * @param name The field name, lower case.
   * @param value The value, unfolded (CRLF before white space removed), trimmed.
   * @returns `true` to leave the field out.
   */
  readonly drop?: (name: string, value: string) => boolean;
}

/** A field held longer than this is dropped whatever it says: no real one is this long. */
const MAX_HELD_FIELD = 64 * 1024;
/** A line not ended within this many octets is passed on as it is. */
const MAX_LINE = 8 * 1024;

const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;
const COLON = 0x3a;

const decoder = new TextDecoder();

/**
 * Filters the header section of one message.
 *
 * @example Drop a forged result, keep the rest
 * ```ts
 * import assert from "node:assert/strict";
 * import { HeaderFilter } from "./header_filter.ts";
 * const filter = new HeaderFilter({
 *   inspect: ["authentication-results"],
 *   drop: (_name, value) => value.startsWith("mx.example.test;"),
 * });
 * const input = "Authentication-Results: mx.example.test; spf=pass\r\nSubject: hi\r\n\r\nBody\r\n";
 * const out = new TextDecoder().decode(filter.push(new TextEncoder().encode(input)));
 * assert.equal(out, "Subject: hi\r\n\r\nBody\r\n");
 * assert.ok(filter.has("subject"));
 * assert.equal(filter.dropped, 1);
 * ```
 */
export class HeaderFilter {
  readonly #inspect: ReadonlySet<string>;
  readonly #drop: (name: string, value: string) => boolean;
  readonly #names = new Set<string>();
  #inBody = false;
  /** The current line, not yet ended. */
  #line: Uint8Array[] = [];
  #lineLength = 0;
  /** The field being held (an inspected name), line by line. */
  #held: Uint8Array[] | null = null;
  #heldLength = 0;
  /** What the current field's continuation lines do: pass on, or join the held field. */
  #continuation: "pass" | "hold" = "pass";
  #dropped = 0;
  /** The rest of a line too long to hold is being passed on. */
  #inLongLine = false;

  /** @param options Which fields to look at, and which of them to drop. */
  constructor(options: HeaderFilterOptions = {}) {
    this.#inspect = new Set(options.inspect ?? []);
    this.#drop = options.drop ?? (() => false);
  }

  /** Whether the header section has ended (the empty line was seen). */
  get isBodyReached(): boolean {
    return this.#inBody;
  }

  /** How many fields were dropped. */
  get dropped(): number {
    return this.#dropped;
  }

  /**
   * Whether a field of this name was seen (dropped ones included).
   *
   * @param name The name, lower case.
   * @returns `true` when present so far.
   */
  has(name: string): boolean {
    return this.#names.has(name);
  }

  /**
   * Takes the next piece of the message.
   *
   * @param chunk Octets as received.
   * @returns What to keep of them (possibly held back from earlier pieces).
   */
  push(chunk: Uint8Array): Uint8Array {
    if (this.#inBody) return chunk;
    const out: Uint8Array[] = [];
    let start = 0;
    while (start < chunk.length && !this.#inBody) {
      const lf = chunk.indexOf(LF, start);
      const end = lf < 0 ? chunk.length : lf + 1;
      if (this.#inLongLine) {
        out.push(chunk.subarray(start, end));
        start = end;
        if (lf >= 0) this.#inLongLine = false;
        continue;
      }
      this.#line.push(chunk.subarray(start, end));
      this.#lineLength += end - start;
      start = end;
      if (lf >= 0) this.#endLine(out);
      else if (this.#lineLength > MAX_LINE) this.#flushLongLine(out);
    }
    if (start < chunk.length) out.push(chunk.subarray(start));
    return out.length === 1 ? out[0]! : concatBytes(out);
  }

  /**
   * The message ended: returns what is still held (a header section with no
   * body and no final line break).
   *
   * @returns The last octets to keep.
   */
  end(): Uint8Array {
    const out: Uint8Array[] = [];
    if (this.#lineLength > 0) this.#endLine(out);
    this.#settleHeld(out);
    return concatBytes(out);
  }

  #endLine(out: Uint8Array[]): void {
    const line = this.#line.length === 1 ? this.#line[0]! : concatBytes(this.#line);
    this.#line = [];
    this.#lineLength = 0;
    const first = line[0];
    if (first === SP || first === HTAB) {
      // RFC 5322 §2.2.3: a folded continuation of the field above.
      if (this.#continuation === "hold") this.#hold(line);
      else out.push(line);
      return;
    }
    this.#settleHeld(out);
    if (isEmptyLine(line)) {
      this.#inBody = true;
      out.push(line);
      return;
    }
    const colon = line.indexOf(COLON);
    const name = colon > 0 ? decoder.decode(line.subarray(0, colon)).trim().toLowerCase() : "";
    if (name !== "") this.#names.add(name);
    if (name !== "" && this.#inspect.has(name)) {
      this.#held = [];
      this.#heldLength = 0;
      this.#continuation = "hold";
      this.#hold(line);
    } else {
      this.#continuation = "pass";
      out.push(line);
    }
  }

  /** A line too long to hold: pass it on, and its continuations too. */
  #flushLongLine(out: Uint8Array[]): void {
    this.#settleHeld(out);
    out.push(...this.#line);
    this.#line = [];
    this.#lineLength = 0;
    this.#continuation = "pass";
    this.#inLongLine = true;
  }

  #hold(line: Uint8Array): void {
    if (this.#held === null) return;
    this.#heldLength += line.length;
    if (this.#heldLength > MAX_HELD_FIELD) {
      // Nothing real is this long: it goes, whatever it said.
      this.#held = null;
      this.#dropped++;
      this.#continuation = "hold";
      return;
    }
    this.#held.push(line);
  }

  /** Decides on the held field, if any: out, or dropped. */
  #settleHeld(out: Uint8Array[]): void {
    const held = this.#held;
    if (held === null) return;
    this.#held = null;
    const text = decoder.decode(concatBytes(held));
    const colon = text.indexOf(":");
    const name = text.slice(0, colon).trim().toLowerCase();
    const value = text.slice(colon + 1).replace(/\r?\n(?=[ \t])/g, "").trim();
    if (this.#drop(name, value)) this.#dropped++;
    else out.push(...held);
  }
}

function isEmptyLine(line: Uint8Array): boolean {
  return line.length === 1 || (line.length === 2 && line[0] === 0x0d);
}
