/**
 * Encoding a DNS message (RFC 1035 §4.1): a growing buffer writer with name
 * compression (§4.1.4), the records of each type, and the standard query the
 * resolver sends.
 *
 * @module
 */

import { parseIpv4, parseIpv6 } from "./address.ts";
import { labelsToName, nameToLabels } from "./name.ts";
import {
  type DnsFlags,
  DnsFormatError,
  type DnsMessageInit,
  type DnsRecord,
  type QueryInit,
  RECORD_CLASSES,
  recordTypeCode,
  recordTypeName,
} from "./types.ts";

const utf8 = new TextEncoder();

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
    additionals: query.dnssecOk === true ? [dnssecOkRecord()] : [],
  });
}

/**
 * The EDNS0 OPT pseudo-record (RFC 6891 §6.1.2): owner the root, class the
 * UDP payload we take (1232, the size that avoids IP fragmentation that DNS
 * Flag Day 2020 settled on), TTL the extended RCODE, version 0 and the DO
 * bit (RFC 3225 §3), no options.
 */
function dnssecOkRecord(): DnsRecord {
  return { name: "", type: "OPT", class: 1232, ttl: 0x8000, data: new Uint8Array(0) };
}
