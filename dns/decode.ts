/**
 * Decoding a DNS message (RFC 1035 §4.1): a bounds-checked reader of the
 * header, the question and the three record sections, with name
 * decompression (§4.1.4) whose pointers must point strictly backwards, so a
 * hostile message can neither loop nor read out of bounds. Anything
 * malformed throws a {@linkcode DnsFormatError}.
 *
 * @module
 */

import { formatIpv6 } from "./address.ts";
import { labelsToName, MAX_NAME } from "./name.ts";
import {
  type DnsFlags,
  DnsFormatError,
  type DnsMessage,
  type DnsQuestion,
  type DnsRecord,
  recordTypeName,
} from "./types.ts";

const HEADER_SIZE = 12;

const utf8Decoder = new TextDecoder();

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
