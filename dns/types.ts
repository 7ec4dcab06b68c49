/**
 * The shapes of a DNS message (RFC 1035 §4.1): the header flags, the
 * question, the records of each type tern reads and their data, the type and
 * class codes, and {@linkcode DnsFormatError} for anything that is not valid
 * DNS. `message.ts` re-exports them with the codec.
 *
 * @module
 */

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
  /**
   * Add an EDNS0 OPT record (RFC 6891 §6.1) with the DO bit (RFC 3225 §3),
   * so a validating resolver sets AD on answers it validated (RFC 4035 §3.2.3).
   * @default {false}
   */
  readonly dnssecOk?: boolean;
}

const TYPE_NAMES: ReadonlyMap<number, RecordTypeName> = new Map(
  Object.entries(RECORD_TYPES).map(([name, code]) => [code, name as RecordTypeName]),
);

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
