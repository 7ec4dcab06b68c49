/**
 * A DNS message codec without I/O (RFC 1035 §4): bytes in, a plain object out,
 * and back. The stub resolver in `resolver.ts` does the sending and waiting.
 *
 * A message is a 12-byte header, then four sections: the question, the
 * answers, the authority records and the additional records (RFC 1035 §4.1).
 * Names are sequences of length-prefixed labels that may end in a pointer to
 * an earlier name in the same message (compression, RFC 1035 §4.1.4).
 *
 * Everything that arrives from the network is untrusted: every read is bounds
 * checked, compression pointers must point strictly backwards (so they cannot
 * loop), and any malformed input throws a {@linkcode DnsFormatError}.
 *
 * Names are written the usual way, without the trailing dot (`mx.example.test`);
 * the root is `"."`. A label byte that is a dot, a backslash or not printable
 * ASCII is escaped as in master files (`\.`, `\\`, `\DDD`, RFC 1035 §5.1).
 *
 * @module
 */

import { domainToASCII } from "node:url";
import { isIPv4, isIPv6 } from "node:net";

/** A message that is not valid DNS (RFC 1035 §4), or a name that cannot be encoded. */
export class DnsFormatError extends SyntaxError {
  /**
   * Makes the error.
   *
   * @param message What could not be read or written.
   * @param options The underlying error, if any.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "DnsFormatError";
  }
}

/** Record types by name (RFC 1035 §3.2.2 and the IANA registry). */
export const RECORD_TYPES = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  PTR: 12,
  MX: 15,
  TXT: 16,
  AAAA: 28, // RFC 3596
  SRV: 33,
  OPT: 41, // RFC 6891
  DS: 43,
  RRSIG: 46,
  NSEC: 47,
  DNSKEY: 48,
  TLSA: 52, // RFC 6698
  SVCB: 64,
  HTTPS: 65,
  ANY: 255,
  CAA: 257,
} as const;

/** A record type this module knows by name. */
export type RecordTypeName = keyof typeof RECORD_TYPES;

/**
 * A record type as text: a known name, or `TYPE<n>` for any other (the
 * notation of RFC 3597 §5).
 */
export type RecordType = RecordTypeName | `TYPE${number}`;

/** The record types whose data {@linkcode decodeMessage} parses. */
export type ParsedRecordType = "A" | "AAAA" | "MX" | "CNAME" | "NS" | "PTR" | "TXT" | "SOA";

/** Classes (RFC 1035 §3.2.4). Only `IN` is used on the Internet. */
export const RECORD_CLASSES = { IN: 1, CH: 3, HS: 4, ANY: 255 } as const;

/** Response codes (RFC 1035 §4.1.1; RFC 2136 §2.2 for 6 to 10). */
export const RCODES = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
  YXDOMAIN: 6,
  YXRRSET: 7,
  NXRRSET: 8,
  NOTAUTH: 9,
  NOTZONE: 10,
} as const;

/** The data of an MX record (RFC 1035 §3.3.9). */
export interface MxData {
  /** Lower is preferred. */
  readonly preference: number;
  /** The mail exchanger's name; `"."` in a null MX (RFC 7505). */
  readonly exchange: string;
}

/** The data of an SOA record (RFC 1035 §3.3.13). */
export interface SoaData {
  /** The primary name server. */
  readonly mname: string;
  /** The responsible mailbox, as a name (`hostmaster.example.test`). */
  readonly rname: string;
  /** The zone's version. */
  readonly serial: number;
  /** Seconds between refreshes of a secondary. */
  readonly refresh: number;
  /** Seconds between retries of a failed refresh. */
  readonly retry: number;
  /** Seconds after which a secondary stops answering. */
  readonly expire: number;
  /** The TTL of negative answers (RFC 2308 §4). */
  readonly minimum: number;
}

/** What every resource record has (RFC 1035 §4.1.3). */
export interface RecordBase {
  /** The owner name. */
  readonly name: string;
  /** The class, 1 (`IN`) in practice. In an OPT record: the UDP payload size. */
  readonly class: number;
  /** Seconds the record may be cached. */
  readonly ttl: number;
}

/** An IPv4 address (RFC 1035 §3.4.1), dotted quad. */
export interface ARecord extends RecordBase {
  /** The type. */
  readonly type: "A";
  /** The address, `192.0.2.1`. */
  readonly data: string;
}

/** An IPv6 address (RFC 3596), in the canonical text of RFC 5952. */
export interface AaaaRecord extends RecordBase {
  /** The type. */
  readonly type: "AAAA";
  /** The address, `2001:db8::1`. */
  readonly data: string;
}

/** A mail exchanger (RFC 1035 §3.3.9). */
export interface MxRecord extends RecordBase {
  /** The type. */
  readonly type: "MX";
  /** Preference and exchange. */
  readonly data: MxData;
}

/** A record whose data is one name: CNAME, NS or PTR (RFC 1035 §3.3). */
export interface NameRecord extends RecordBase {
  /** The type. */
  readonly type: "CNAME" | "NS" | "PTR";
  /** The name. */
  readonly data: string;
}

/** Text strings (RFC 1035 §3.3.14), each decoded as UTF-8. */
export interface TxtRecord extends RecordBase {
  /** The type. */
  readonly type: "TXT";
  /** The character-strings, in order; join them for SPF or DKIM. */
  readonly data: readonly string[];
}

/** The start of a zone of authority (RFC 1035 §3.3.13). */
export interface SoaRecord extends RecordBase {
  /** The type. */
  readonly type: "SOA";
  /** The fields. */
  readonly data: SoaData;
}

/** A record of a type whose data is not parsed (RFC 3597): the raw RDATA. */
export interface RawRecord extends RecordBase {
  /** The type. */
  readonly type: Exclude<RecordType, ParsedRecordType>;
  /** The RDATA bytes, as received. */
  readonly data: Uint8Array;
}

/** One resource record; narrow on `type` to reach typed `data`. */
export type DnsRecord =
  | ARecord
  | AaaaRecord
  | MxRecord
  | NameRecord
  | TxtRecord
  | SoaRecord
  | RawRecord;

/** The header flags (RFC 1035 §4.1.1; AD and CD from RFC 4035 §3.2). */
export interface DnsFlags {
  /** A response (true) or a query (false). */
  readonly qr: boolean;
  /** 0 for a standard query. */
  readonly opcode: number;
  /** Authoritative answer. */
  readonly aa: boolean;
  /** Truncated: the answer did not fit; ask again over TCP (RFC 1035 §4.2.1). */
  readonly tc: boolean;
  /** Recursion desired. */
  readonly rd: boolean;
  /** Recursion available. */
  readonly ra: boolean;
  /** Authentic data: the server validated the answer with DNSSEC. */
  readonly ad: boolean;
  /** Checking disabled. */
  readonly cd: boolean;
  /** The response code, see {@linkcode RCODES}. */
  readonly rcode: number;
}

/** One entry of the question section (RFC 1035 §4.1.2). */
export interface DnsQuestion {
  /** The name asked about. */
  readonly name: string;
  /** The type asked for. */
  readonly type: RecordType;
  /** The class, 1 (`IN`). */
  readonly class: number;
}

/** A decoded message. */
export interface DnsMessage {
  /** Matches a response to its query. */
  readonly id: number;
  /** The header flags. */
  readonly flags: DnsFlags;
  /** The question section. */
  readonly questions: readonly DnsQuestion[];
  /** The answer section. */
  readonly answers: readonly DnsRecord[];
  /** The authority section. */
  readonly authorities: readonly DnsRecord[];
  /** The additional section. */
  readonly additionals: readonly DnsRecord[];
}

/** What {@linkcode encodeMessage} takes: a message whose flags and sections may be left out. */
export interface DnsMessageInit {
  /** The id. */
  readonly id: number;
  /** Flags; each left out is false or 0. @default {all false, opcode 0, rcode 0} */
  readonly flags?: Partial<DnsFlags>;
  /** The question section. @default {[]} */
  readonly questions?: readonly DnsQuestion[];
  /** The answer section. @default {[]} */
  readonly answers?: readonly DnsRecord[];
  /** The authority section. @default {[]} */
  readonly authorities?: readonly DnsRecord[];
  /** The additional section. @default {[]} */
  readonly additionals?: readonly DnsRecord[];
}

/** What {@linkcode encodeQuery} takes. */
export interface QueryInit {
  /** The 16-bit id; the resolver picks it at random. */
  readonly id: number;
  /** The name asked about; U-labels are converted to A-labels. */
  readonly name: string;
  /** The type asked for: a name (`"MX"`), `TYPE<n>` or a number. */
  readonly type: RecordType | number;
  /** Ask the server to recurse (RFC 1035 §4.1.1 RD). @default {true} */
  readonly recursionDesired?: boolean;
}

// RFC 1035 §2.3.4: labels of at most 63 octets, names of at most 255 octets.
const MAX_LABEL = 63;
const MAX_NAME = 255;
const HEADER_SIZE = 12;

const TYPE_NAMES: ReadonlyMap<number, RecordTypeName> = new Map(
  Object.entries(RECORD_TYPES).map(([name, code]) => [code, name as RecordTypeName]),
);

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();

// ---------------------------------------------------------------------------
// Types and names

/**
 * Turns a type code into its text form.
 *
 * @param code The 16-bit type code.
 * @returns The name (`"MX"`), or `TYPE<n>` for a type without one.
 *
 * @example Name a type
 * ```ts
 * import assert from "node:assert/strict";
 * import { recordTypeName } from "./message.ts";
 * assert.equal(recordTypeName(15), "MX");
 * assert.equal(recordTypeName(99), "TYPE99");
 * ```
 */
export function recordTypeName(code: number): RecordType {
  return TYPE_NAMES.get(code) ?? `TYPE${code}`;
}

/**
 * Turns a type in any form into its 16-bit code.
 *
 * @param type A name (`"MX"`), `TYPE<n>` (RFC 3597 §5) or a number.
 * @returns The code.
 * @throws {DnsFormatError} When the type is unknown or out of range.
 *
 * @example Look up a type code
 * ```ts
 * import assert from "node:assert/strict";
 * import { recordTypeCode } from "./message.ts";
 * assert.equal(recordTypeCode("AAAA"), 28);
 * assert.equal(recordTypeCode("TYPE52"), 52);
 * ```
 */
export function recordTypeCode(type: RecordType | number): number {
  let code: number | undefined;
  if (typeof type === "number") code = type;
  else if (Object.hasOwn(RECORD_TYPES, type)) code = RECORD_TYPES[type as RecordTypeName];
  else if (/^TYPE\d{1,5}$/i.test(type)) code = Number(type.slice(4));
  if (code === undefined || !Number.isInteger(code) || code < 0 || code > 0xffff) {
    throw new DnsFormatError(`Cannot encode record type "${type}": unknown or out of range`);
  }
  return code;
}

/**
 * Splits a name in text form into its labels, as bytes. Accepts the escapes
 * `\.`, `\\` and `\DDD` (RFC 1035 §5.1); a name with characters beyond ASCII
 * is first converted to A-labels (RFC 5891 §5, through `domainToASCII`).
 */
function nameToLabels(name: string): Uint8Array[] {
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
function labelsToName(labels: readonly Uint8Array[]): string {
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

// ---------------------------------------------------------------------------
// Addresses

/** RFC 5952 §4: lower case, leading zeros dropped, the longest run (≥ 2) of zero groups as "::". */
function formatIpv6(bytes: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0));
  let bestStart = -1;
  let bestLength = 1; // a single zero group is not shortened (§4.2.2)
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) { // strictly longer: the first of equal runs wins (§4.2.3)
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  // RFC 5952 §5: an IPv4-mapped address keeps its IPv4 part in dotted form.
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `::ffff:${[...bytes.subarray(12, 16)].join(".")}`;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart === -1) return hex.join(":");
  return hex.slice(0, bestStart).join(":") + "::" + hex.slice(bestStart + bestLength).join(":");
}

function parseIpv4(text: string): Uint8Array | null {
  if (!isIPv4(text)) return null;
  return Uint8Array.from(text.split(".").map(Number));
}

function parseIpv6(text: string): Uint8Array | null {
  if (!isIPv6(text) || text.includes("%")) return null;
  let head = text;
  let tail: number[] = [];
  const lastColon = head.lastIndexOf(":");
  const v4 = parseIpv4(head.slice(lastColon + 1));
  if (v4 !== null) { // an embedded IPv4 address in the last 32 bits (RFC 4291 §2.2)
    tail = [(v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!];
    head = head.slice(0, lastColon + 1);
    if (head.endsWith(":") && !head.endsWith("::")) head = head.slice(0, -1);
  }
  const toGroups = (s: string) => (s === "" ? [] : s.split(":").map((g) => parseInt(g, 16)));
  let groups: number[];
  const gap = head.indexOf("::");
  if (gap === -1) {
    groups = [...toGroups(head), ...tail];
  } else {
    const left = toGroups(head.slice(0, gap));
    const right = [...toGroups(head.slice(gap + 2)), ...tail];
    groups = [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
  }
  if (groups.length !== 8) return null;
  const bytes = new Uint8Array(16);
  groups.forEach((g, i) => {
    bytes[2 * i] = g >> 8;
    bytes[2 * i + 1] = g & 0xff;
  });
  return bytes;
}

/**
 * Writes an IPv6 address in the canonical text form of RFC 5952.
 *
 * @param address Any valid text form of an IPv6 address.
 * @returns The canonical form, or `null` when `address` is not an IPv6 address.
 *
 * @example Canonicalize an IPv6 address
 * ```ts
 * import assert from "node:assert/strict";
 * import { canonicalIpv6 } from "./message.ts";
 * assert.equal(canonicalIpv6("2001:0DB8:0:0:0:0:0:0001"), "2001:db8::1");
 * assert.equal(canonicalIpv6("192.0.2.1"), null);
 * ```
 */
export function canonicalIpv6(address: string): string | null {
  const bytes = parseIpv6(address);
  return bytes === null ? null : formatIpv6(bytes);
}

// ---------------------------------------------------------------------------
// Decoding

class Reader {
  readonly bytes: Uint8Array;
  readonly view: DataView;
  offset = 0;

  constructor(bytes: Uint8Array) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  need(count: number, what: string): void {
    if (this.offset + count > this.bytes.length) {
      throw new DnsFormatError(
        `Cannot decode ${what} at offset ${this.offset}: message ends after ${this.bytes.length} bytes`,
      );
    }
  }

  u16(what: string): number {
    this.need(2, what);
    const value = this.view.getUint16(this.offset);
    this.offset += 2;
    return value;
  }

  u32(what: string): number {
    this.need(4, what);
    const value = this.view.getUint32(this.offset);
    this.offset += 4;
    return value;
  }

  /**
   * Reads a possibly compressed name (RFC 1035 §4.1.4). Label bytes read
   * before the first pointer must lie below `limit` (the end of the RDATA
   * they belong to); a pointer must point strictly before every earlier
   * pointer's target, which rules out loops.
   */
  name(what: string, limit = this.bytes.length): string {
    const labels: Uint8Array[] = [];
    let position = this.offset;
    let end = -1; // where reading continues after the name
    let bound = limit; // nothing of this name may be read at or beyond it
    let lowestTarget = this.offset;
    let wireLength = 1;
    for (;;) {
      if (position >= bound) {
        throw new DnsFormatError(
          `Cannot decode ${what} at offset ${this.offset}: name runs past its end`,
        );
      }
      const length = this.bytes[position]!;
      const kind = length & 0xc0;
      if (kind === 0xc0) {
        if (position + 1 >= bound) {
          throw new DnsFormatError(
            `Cannot decode ${what} at offset ${this.offset}: cut-off pointer`,
          );
        }
        const target = ((length & 0x3f) << 8) | this.bytes[position + 1]!;
        if (end === -1) end = position + 2;
        // Stricter than RFC 1035, which only says "a prior occurrence":
        // each jump must go further back than the last, so a loop is impossible.
        if (target >= lowestTarget) {
          throw new DnsFormatError(
            `Cannot decode ${what} at offset ${this.offset}: compression pointer to ${target} does not point backwards`,
          );
        }
        lowestTarget = target;
        position = target;
        bound = this.bytes.length;
        continue;
      }
      if (kind !== 0) {
        // 0x40 and 0x80 are reserved (RFC 1035 §4.1.4; RFC 6891 retired extended labels).
        throw new DnsFormatError(
          `Cannot decode ${what} at offset ${this.offset}: unknown label type`,
        );
      }
      if (length === 0) {
        if (end === -1) end = position + 1;
        break;
      }
      if (position + 1 + length > bound) {
        throw new DnsFormatError(
          `Cannot decode ${what} at offset ${this.offset}: label runs past its end`,
        );
      }
      wireLength += length + 1;
      if (wireLength > MAX_NAME) {
        throw new DnsFormatError(
          `Cannot decode ${what} at offset ${this.offset}: name longer than 255 octets`,
        );
      }
      labels.push(this.bytes.subarray(position + 1, position + 1 + length));
      position += 1 + length;
    }
    this.offset = end;
    return labelsToName(labels);
  }
}

function decodeFlags(word: number): DnsFlags {
  return {
    qr: (word & 0x8000) !== 0,
    opcode: (word >> 11) & 0x0f,
    aa: (word & 0x0400) !== 0,
    tc: (word & 0x0200) !== 0,
    rd: (word & 0x0100) !== 0,
    ra: (word & 0x0080) !== 0,
    ad: (word & 0x0020) !== 0,
    cd: (word & 0x0010) !== 0,
    rcode: word & 0x000f,
  };
}

function decodeCharacterStrings(reader: Reader, end: number, what: string): string[] {
  const strings: string[] = [];
  while (reader.offset < end) {
    const length = reader.bytes[reader.offset]!;
    if (reader.offset + 1 + length > end) {
      throw new DnsFormatError(`Cannot decode ${what}: character-string runs past the record`);
    }
    strings.push(
      utf8Decoder.decode(reader.bytes.subarray(reader.offset + 1, reader.offset + 1 + length)),
    );
    reader.offset += 1 + length;
  }
  return strings;
}

function decodeRecord(reader: Reader, what: string): DnsRecord {
  const name = reader.name(what);
  const code = reader.u16(what);
  const klass = reader.u16(what);
  // RFC 2181 §8: a TTL with the top bit set is treated as zero.
  const rawTtl = reader.u32(what);
  const ttl = rawTtl > 0x7fffffff ? 0 : rawTtl;
  const length = reader.u16(what);
  reader.need(length, `${what} data`);
  const start = reader.offset;
  const end = start + length;
  const type = recordTypeName(code);
  const base = { name, class: klass, ttl };
  const exact = (expected: number) => {
    if (length !== expected) {
      throw new DnsFormatError(
        `Cannot decode ${what}: ${type} data of ${length} bytes, expected ${expected}`,
      );
    }
  };
  // The data of every type is read in IN-class format (RFC 1035 §3.4); other
  // classes do not occur in mail routing.
  let record: DnsRecord;
  switch (type) {
    case "A":
      exact(4);
      record = { ...base, type, data: reader.bytes.subarray(start, end).join(".") };
      reader.offset = end;
      break;
    case "AAAA":
      exact(16);
      record = { ...base, type, data: formatIpv6(reader.bytes.subarray(start, end)) };
      reader.offset = end;
      break;
    case "MX": {
      if (length < 3) exact(3);
      const preference = reader.u16(what);
      record = {
        ...base,
        type,
        data: { preference, exchange: reader.name(`${what} exchange`, end) },
      };
      break;
    }
    case "CNAME":
    case "NS":
    case "PTR":
      record = { ...base, type, data: reader.name(`${what} ${type}`, end) };
      break;
    case "TXT":
      record = { ...base, type, data: decodeCharacterStrings(reader, end, what) };
      break;
    case "SOA": {
      const mname = reader.name(`${what} SOA mname`, end);
      const rname = reader.name(`${what} SOA rname`, end);
      if (reader.offset + 20 !== end) {
        throw new DnsFormatError(`Cannot decode ${what}: SOA data of the wrong length`);
      }
      record = {
        ...base,
        type,
        data: {
          mname,
          rname,
          serial: reader.u32(what),
          refresh: reader.u32(what),
          retry: reader.u32(what),
          expire: reader.u32(what),
          minimum: reader.u32(what),
        },
      };
      break;
    }
    default:
      record = { ...base, type, data: reader.bytes.slice(start, end) };
      reader.offset = end;
  }
  if (reader.offset !== end) {
    throw new DnsFormatError(
      `Cannot decode ${what}: ${type} data does not fill its ${length} bytes`,
    );
  }
  return record;
}

/**
 * Decodes a DNS message (RFC 1035 §4.1). Bytes after the last counted record
 * are ignored.
 *
 * @param bytes The message as received (over TCP: without the length prefix).
 * @returns The message.
 * @throws {DnsFormatError} When the bytes are not a valid message.
 *
 * @example Decode a query
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeMessage, encodeQuery } from "./message.ts";
 * const message = decodeMessage(encodeQuery({ id: 7, name: "example.test", type: "MX" }));
 * assert.equal(message.id, 7);
 * assert.equal(message.flags.rd, true);
 * assert.deepEqual(message.questions, [{ name: "example.test", type: "MX", class: 1 }]);
 * ```
 *
 * @example Malformed input throws DnsFormatError
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeMessage, DnsFormatError } from "./message.ts";
 * assert.throws(() => decodeMessage(new Uint8Array(5)), DnsFormatError);
 * ```
 */
export function decodeMessage(bytes: Uint8Array): DnsMessage {
  const reader = new Reader(bytes);
  reader.need(HEADER_SIZE, "header");
  const id = reader.u16("id");
  const flags = decodeFlags(reader.u16("flags"));
  const counts = [
    reader.u16("QDCOUNT"),
    reader.u16("ANCOUNT"),
    reader.u16("NSCOUNT"),
    reader.u16("ARCOUNT"),
  ];
  const questions: DnsQuestion[] = [];
  for (let i = 0; i < counts[0]!; i++) {
    const what = `question ${i + 1}`;
    const name = reader.name(what);
    const type = recordTypeName(reader.u16(what));
    questions.push({ name, type, class: reader.u16(what) });
  }
  const section = (count: number, label: string) => {
    const records: DnsRecord[] = [];
    for (let i = 0; i < count; i++) records.push(decodeRecord(reader, `${label} record ${i + 1}`));
    return records;
  };
  const answers = section(counts[1]!, "answer");
  const authorities = section(counts[2]!, "authority");
  const additionals = section(counts[3]!, "additional");
  return { id, flags, questions, answers, authorities, additionals };
}

// ---------------------------------------------------------------------------
// Encoding

class Writer {
  #buffer = new Uint8Array(512);
  #length = 0;
  // RFC 1035 §4.1.4: each name suffix written so far, by its lower-case text, and where.
  readonly #suffixes = new Map<string, number>();

  get length(): number {
    return this.#length;
  }

  #grow(count: number): void {
    if (this.#length + count <= this.#buffer.length) return;
    let size = this.#buffer.length * 2;
    while (size < this.#length + count) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.#buffer.subarray(0, this.#length));
    this.#buffer = next;
  }

  u8(value: number): void {
    this.#grow(1);
    this.#buffer[this.#length++] = value & 0xff;
  }

  u16(value: number): void {
    this.u8(value >> 8);
    this.u8(value);
  }

  u32(value: number): void {
    this.u16(Math.floor(value / 0x10000) & 0xffff);
    this.u16(value & 0xffff);
  }

  bytes(value: Uint8Array): void {
    this.#grow(value.length);
    this.#buffer.set(value, this.#length);
    this.#length += value.length;
  }

  setU16(offset: number, value: number): void {
    this.#buffer[offset] = (value >> 8) & 0xff;
    this.#buffer[offset + 1] = value & 0xff;
  }

  name(name: string, compress: boolean): void {
    const labels = nameToLabels(name);
    for (let i = 0; i < labels.length; i++) {
      const key = labelsToName(labels.slice(i)).toLowerCase();
      const known = compress ? this.#suffixes.get(key) : undefined;
      if (known !== undefined) {
        this.u16(0xc000 | known);
        return;
      }
      // Pointers hold 14 bits: only the first 16 KiB can be pointed at.
      if (compress && this.#length < 0x4000) this.#suffixes.set(key, this.#length);
      const label = labels[i]!;
      this.u8(label.length);
      this.bytes(label);
    }
    this.u8(0);
  }

  result(): Uint8Array {
    return this.#buffer.slice(0, this.#length);
  }
}

function encodeFlags(flags: Partial<DnsFlags>): number {
  return (flags.qr ? 0x8000 : 0) |
    (((flags.opcode ?? 0) & 0x0f) << 11) |
    (flags.aa ? 0x0400 : 0) |
    (flags.tc ? 0x0200 : 0) |
    (flags.rd ? 0x0100 : 0) |
    (flags.ra ? 0x0080 : 0) |
    (flags.ad ? 0x0020 : 0) |
    (flags.cd ? 0x0010 : 0) |
    ((flags.rcode ?? 0) & 0x0f);
}

function encodeRecord(writer: Writer, record: DnsRecord): void {
  writer.name(record.name, true);
  writer.u16(recordTypeCode(record.type));
  writer.u16(record.class);
  writer.u32(record.ttl);
  const lengthAt = writer.length;
  writer.u16(0);
  const start = writer.length;
  // RFC 3597 §4: only the names in the RDATA of RFC 1035's own types may be compressed.
  switch (record.type) {
    case "A": {
      const bytes = parseIpv4(record.data);
      if (bytes === null) {
        throw new DnsFormatError(`Cannot encode A record: "${record.data}" is not an IPv4 address`);
      }
      writer.bytes(bytes);
      break;
    }
    case "AAAA": {
      const bytes = parseIpv6(record.data);
      if (bytes === null) {
        throw new DnsFormatError(
          `Cannot encode AAAA record: "${record.data}" is not an IPv6 address`,
        );
      }
      writer.bytes(bytes);
      break;
    }
    case "MX":
      writer.u16(record.data.preference);
      writer.name(record.data.exchange, true);
      break;
    case "CNAME":
    case "NS":
    case "PTR":
      writer.name(record.data, true);
      break;
    case "TXT":
      for (const text of record.data) {
        const bytes = utf8.encode(text);
        if (bytes.length > 255) {
          throw new DnsFormatError(
            "Cannot encode TXT record: a character-string is longer than 255 bytes",
          );
        }
        writer.u8(bytes.length);
        writer.bytes(bytes);
      }
      break;
    case "SOA":
      writer.name(record.data.mname, true);
      writer.name(record.data.rname, true);
      for (
        const n of [
          record.data.serial,
          record.data.refresh,
          record.data.retry,
          record.data.expire,
          record.data.minimum,
        ]
      ) {
        writer.u32(n);
      }
      break;
    default:
      writer.bytes(record.data);
  }
  const length = writer.length - start;
  if (length > 0xffff) {
    throw new DnsFormatError(`Cannot encode ${record.type} record: data longer than 65535 bytes`);
  }
  writer.setU16(lengthAt, length);
}

/**
 * Encodes a whole message, compressing names (RFC 1035 §4.1.4). The resolver
 * only needs {@linkcode encodeQuery}; this is for servers and tests.
 *
 * @param message The message; flags and sections left out are empty.
 * @returns The bytes, as sent over UDP.
 * @throws {DnsFormatError} When a name or record cannot be encoded.
 *
 * @example Round-trip an MX answer
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeMessage, encodeMessage } from "./message.ts";
 * const bytes = encodeMessage({
 *   id: 1,
 *   flags: { qr: true, rd: true, ra: true },
 *   questions: [{ name: "example.test", type: "MX", class: 1 }],
 *   answers: [{
 *     name: "example.test", type: "MX", class: 1, ttl: 300,
 *     data: { preference: 10, exchange: "mx1.example.test" },
 *   }],
 * });
 * const message = decodeMessage(bytes);
 * assert.deepEqual(message.answers[0]?.data, { preference: 10, exchange: "mx1.example.test" });
 * ```
 */
export function encodeMessage(message: DnsMessageInit): Uint8Array {
  const writer = new Writer();
  const questions = message.questions ?? [];
  const sections = [message.answers ?? [], message.authorities ?? [], message.additionals ?? []];
  writer.u16(message.id);
  writer.u16(encodeFlags(message.flags ?? {}));
  for (const count of [questions.length, ...sections.map((s) => s.length)]) {
    if (count > 0xffff) {
      throw new DnsFormatError("Cannot encode message: more than 65535 entries in a section");
    }
    writer.u16(count);
  }
  for (const question of questions) {
    writer.name(question.name, true);
    writer.u16(recordTypeCode(question.type));
    writer.u16(question.class);
  }
  for (const section of sections) for (const record of section) encodeRecord(writer, record);
  return writer.result();
}

/**
 * Encodes a standard query with one question of class IN (RFC 1035 §4.1.2).
 * The name is converted to A-labels when it has U-labels (RFC 5891).
 *
 * @param query The id, name, type and RD flag.
 * @returns The bytes, as sent over UDP.
 * @throws {DnsFormatError} When the name or type cannot be encoded.
 *
 * @example Encode an MX query
 * ```ts
 * import assert from "node:assert/strict";
 * import { encodeQuery } from "./message.ts";
 * const bytes = encodeQuery({ id: 0x1234, name: "example.test", type: "MX" });
 * assert.equal(bytes.length, 12 + 14 + 4);
 * assert.deepEqual([...bytes.subarray(0, 4)], [0x12, 0x34, 0x01, 0x00]); // id, RD
 * ```
 */
export function encodeQuery(query: QueryInit): Uint8Array {
  return encodeMessage({
    id: query.id,
    flags: { rd: query.recursionDesired ?? true },
    questions: [{
      name: query.name,
      type: recordTypeName(recordTypeCode(query.type)),
      class: RECORD_CLASSES.IN,
    }],
  });
}
