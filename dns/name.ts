/**
 * DNS names in text and as labels (RFC 1035 §2.3.4, §3.1): splitting a name
 * into length-limited labels (with the master-file escapes of §5.1 and
 * A-labels for internationalized names, RFC 5891), writing labels back as
 * text, and comparing names as DNS does (RFC 4343). Compression on the wire
 * lives with the reader and the writer (`decode.ts`, `encode.ts`).
 *
 * @module
 */

import { domainToASCII } from "node:url";
import { DnsFormatError } from "./types.ts";

// RFC 1035 §2.3.4: labels of at most 63 octets, names of at most 255 octets.
const MAX_LABEL = 63;
/** The longest name on the wire, length octets included (RFC 1035 §2.3.4). */
export const MAX_NAME = 255;

/**
 * Splits a name in text form into its labels, as bytes. Accepts the escapes
 * `\.`, `\\` and `\DDD` (RFC 1035 §5.1); a name with characters beyond ASCII
 * is first converted to A-labels (RFC 5891 §5, through `domainToASCII`).
 */
export function nameToLabels(name: string): Uint8Array[] {
  let text = name;
  // deno-lint-ignore no-control-regex
  if (/[^\x00-\x7f]/.test(text)) {
    // RFC 5890/5891: a U-label goes on the wire as its A-label ("xn--...").
    const ascii = domainToASCII(text);
    if (ascii === "") {
      throw new DnsFormatError(`Cannot encode name "${name}": not a valid internationalized name`);
    }
    text = ascii;
  }
  if (text === "." || text === "") return [];
  const labels: Uint8Array[] = [];
  let current: number[] = [];
  let total = 1; // the root label's length octet
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (ch === 0x2e) { // "."
      if (current.length === 0) {
        throw new DnsFormatError(`Cannot encode name "${name}": empty label`);
      }
      labels.push(Uint8Array.from(current));
      total += current.length + 1;
      current = [];
      if (i === text.length - 1) break; // a trailing dot: the name is absolute anyway
      continue;
    }
    if (ch === 0x5c) { // "\"
      const digits = /^\d{3}/.exec(text.slice(i + 1, i + 4));
      if (digits !== null) {
        const value = Number(digits[0]);
        if (value > 255) throw new DnsFormatError(`Cannot encode name "${name}": bad escape`);
        current.push(value);
        i += 3;
      } else if (i + 1 < text.length) {
        current.push(text.charCodeAt(i + 1));
        i += 1;
      } else {
        throw new DnsFormatError(`Cannot encode name "${name}": dangling backslash`);
      }
    } else {
      current.push(ch);
    }
    if (current.length > MAX_LABEL) {
      throw new DnsFormatError(`Cannot encode name "${name}": a label is longer than 63 octets`);
    }
  }
  if (current.length > 0) {
    labels.push(Uint8Array.from(current));
    total += current.length + 1;
  }
  if (total > MAX_NAME) {
    throw new DnsFormatError(`Cannot encode name "${name}": longer than 255 octets`);
  }
  return labels;
}

/** Writes labels as text, escaping what would be ambiguous or unprintable. */
export function labelsToName(labels: readonly Uint8Array[]): string {
  if (labels.length === 0) return ".";
  return labels.map((label) => {
    let out = "";
    for (const byte of label) {
      if (byte === 0x2e || byte === 0x5c) out += "\\" + String.fromCharCode(byte);
      else if (byte > 0x20 && byte < 0x7f) out += String.fromCharCode(byte);
      else out += "\\" + String(byte).padStart(3, "0");
    }
    return out;
  }).join(".");
}

/**
 * Puts a name in the one form used for comparing and caching: A-labels, ASCII
 * lower case (RFC 4343: DNS names compare case-insensitively, ASCII only), no
 * trailing dot; the root is `"."`.
 *
 * @param name A name in text form, with or without the trailing dot, U-labels allowed.
 * @returns The normalized name.
 * @throws {DnsFormatError} When the name cannot be a DNS name.
 *
 * @example Normalize names
 * ```ts
 * import assert from "node:assert/strict";
 * import { normalizeName } from "./message.ts";
 * assert.equal(normalizeName("MX1.Example.TEST."), "mx1.example.test");
 * assert.equal(normalizeName("bücher.example"), "xn--bcher-kva.example");
 * assert.equal(normalizeName("."), ".");
 * ```
 */
export function normalizeName(name: string): string {
  const labels = nameToLabels(name).map((label) =>
    label.map((b) => (b >= 0x41 && b <= 0x5a ? b + 0x20 : b))
  );
  return labelsToName(labels);
}

/**
 * Compares two names as DNS does: ignoring ASCII case and a trailing dot.
 *
 * @param a One name.
 * @param b The other.
 * @returns Whether they name the same node. A name that cannot be encoded equals nothing.
 *
 * @example Compare names
 * ```ts
 * import assert from "node:assert/strict";
 * import { namesEqual } from "./message.ts";
 * assert.ok(namesEqual("Example.TEST.", "example.test"));
 * assert.ok(!namesEqual("example.test", "example.test.invalid"));
 * ```
 */
export function namesEqual(a: string, b: string): boolean {
  try {
    return normalizeName(a) === normalizeName(b);
  } catch (error: unknown) {
    if (error instanceof DnsFormatError) return false;
    throw error;
  }
}
