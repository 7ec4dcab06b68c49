/**
 * The milter protocol's packets (Sendmail's libmilter protocol, version 6,
 * as Postfix speaks it), with no I/O: commands the MTA sends are encoded to
 * octets, the milter's responses are decoded from them.
 *
 * Every packet is a 4-octet big-endian length, then one command character,
 * then `length - 1` octets of data. Strings in the data end in a NUL octet;
 * numbers are 4-octet (or, for a port, 2-octet) big-endian.
 *
 * @module
 */

import { concatBytes } from "../bytes/concat.ts";

/** The protocol version tern speaks (Sendmail 8.14, Postfix 2.6 on). */
export const MILTER_VERSION = 6;

/** The largest body chunk one SMFIC_BODY packet carries (libmilter's MILTER_CHUNK_SIZE). */
export const MAX_BODY_CHUNK = 65535;

/**
 * The largest response packet tern reads. libmilter refuses more than
 * 512 MiB; a milter answering with more than this is talking nonsense.
 */
export const MAX_PACKET = 64 * 1024 * 1024;

/** Actions a milter may ask for at end of message (SMFIF_*, negotiated in OPTNEG). */
export const SMFIF = {
  ADDHDRS: 0x01,
  CHGBODY: 0x02,
  ADDRCPT: 0x04,
  DELRCPT: 0x08,
  CHGHDRS: 0x10,
  QUARANTINE: 0x20,
  CHGFROM: 0x40,
  ADDRCPT_PAR: 0x80,
  SETSYMLIST: 0x100,
} as const;

/** Every action tern carries out. */
export const ALL_ACTIONS = 0x1ff;

/** Protocol flags (SMFIP_*): events a milter does not want, or will not answer. */
export const SMFIP = {
  NOCONNECT: 1 << 0,
  NOHELO: 1 << 1,
  NOMAIL: 1 << 2,
  NORCPT: 1 << 3,
  NOBODY: 1 << 4,
  NOHDRS: 1 << 5,
  NOEOH: 1 << 6,
  NR_HDR: 1 << 7,
  NOUNKNOWN: 1 << 8,
  NODATA: 1 << 9,
  SKIP: 1 << 10,
  RCPT_REJ: 1 << 11,
  NR_CONN: 1 << 12,
  NR_HELO: 1 << 13,
  NR_MAIL: 1 << 14,
  NR_RCPT: 1 << 15,
  NR_DATA: 1 << 16,
  NR_UNKN: 1 << 17,
  NR_EOH: 1 << 18,
  NR_BODY: 1 << 19,
  HDR_LEADSPC: 1 << 20,
} as const;

/**
 * The protocol flags tern offers (what a version 6 MTA may honour): every
 * "do not send" and "will not reply" flag, SMFIR_SKIP, and leading spaces.
 * tern never sends rejected recipients (it answers RCPT itself first), so a
 * milter asking for them with RCPT_REJ simply gets none.
 */
export const OFFERED_PROTOCOL = 0x1fffff;

/** The stages macros belong to (SMFIM_*), as a milter names them in a symbol list. */
export const SMFIM = {
  CONNECT: 0,
  HELO: 1,
  ENVFROM: 2,
  ENVRCPT: 3,
  DATA: 4,
  EOM: 5,
  EOH: 6,
} as const;

/** Command characters the MTA sends (SMFIC_*). */
export type CommandCode =
  | "O"
  | "D"
  | "C"
  | "H"
  | "M"
  | "R"
  | "T"
  | "L"
  | "N"
  | "B"
  | "E"
  | "A"
  | "Q"
  | "K";

/** The address family of a CONNECT (SMFIA_*). */
export type Family = "4" | "6" | "L" | "U";

/** A milter's answer to OPTNEG. */
export interface Negotiated {
  /** Its protocol version. */
  readonly version: number;
  /** The actions it may take (SMFIF_*). */
  readonly actions: number;
  /** Its protocol flags (SMFIP_*). */
  readonly protocol: number;
  /** Macro names it wants per stage (SMFIM_* → space-separated names), when it says. */
  readonly symbols: ReadonlyMap<number, readonly string[]>;
}

/** A decoded response from a milter. */
export type Response =
  | { readonly type: "optneg"; readonly negotiated: Negotiated }
  | { readonly type: "accept" }
  | { readonly type: "continue" }
  | { readonly type: "reject" }
  | { readonly type: "tempfail" }
  | { readonly type: "discard" }
  | { readonly type: "skip" }
  | { readonly type: "progress" }
  | { readonly type: "shutdown" }
  | { readonly type: "connfail" }
  | { readonly type: "quarantine"; readonly reason: string }
  | { readonly type: "replycode"; readonly text: string }
  | { readonly type: "addheader"; readonly name: string; readonly value: string }
  | {
    readonly type: "insheader";
    readonly index: number;
    readonly name: string;
    readonly value: string;
  }
  | {
    readonly type: "chgheader";
    readonly index: number;
    readonly name: string;
    readonly value: string;
  }
  | { readonly type: "chgfrom"; readonly sender: string; readonly args: string }
  | { readonly type: "addrcpt"; readonly recipient: string; readonly args: string }
  | { readonly type: "delrcpt"; readonly recipient: string }
  | { readonly type: "replbody"; readonly chunk: Uint8Array }
  | { readonly type: "setsymlist"; readonly stage: number; readonly names: string };

/** A packet a milter sent that the protocol does not allow. */
export class MilterProtocolError extends Error {
  /**
   * Makes the error.
   *
   * @param message What was wrong.
   */
  constructor(message: string) {
    super(message);
    this.name = "MilterProtocolError";
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Frames one command: length, command character, data.
 *
 * @param code The command character.
 * @param data Its data.
 * @returns The packet.
 */
export function packet(code: CommandCode, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const out = new Uint8Array(5 + data.length);
  new DataView(out.buffer).setUint32(0, data.length + 1);
  out[4] = code.charCodeAt(0);
  out.set(data, 5);
  return out;
}

/** NUL-terminated strings, one after the other. A NUL inside a value would end it early: dropped. */
function strings(...values: readonly string[]): Uint8Array {
  return concatBytes(values.map((v) => encoder.encode(v.replaceAll("\0", "") + "\0")));
}

function uint32(n: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, n >>> 0);
  return out;
}

/**
 * SMFIC_OPTNEG: the version, actions and protocol flags tern offers.
 *
 * @param actions SMFIF_* tern allows. @default {ALL_ACTIONS}
 * @param protocol SMFIP_* tern can honour. @default {OFFERED_PROTOCOL}
 */
export function encodeOptneg(actions = ALL_ACTIONS, protocol = OFFERED_PROTOCOL): Uint8Array {
  return packet("O", concatBytes([uint32(MILTER_VERSION), uint32(actions), uint32(protocol)]));
}

/**
 * SMFIC_MACRO: macro values for the command that follows.
 *
 * @param forCommand The command they belong to (`C`, `H`, `M`, `R`, `T`, `N`, `E`).
 * @param macros Names (`j`, `{client_addr}`) and values; empty values are left out.
 */
export function encodeMacros(
  forCommand: CommandCode,
  macros: ReadonlyArray<readonly [string, string]>,
): Uint8Array {
  const pairs = macros.flatMap(([name, value]) => [name, value]);
  return packet("D", concatBytes([encoder.encode(forCommand), strings(...pairs)]));
}

/**
 * SMFIC_CONNECT: the client's host name, address family, port and address.
 *
 * @param hostname The client's name (its verified PTR name, or `[address]`).
 * @param family `4`, `6`, `L` (unix socket) or `U` (unknown: no port, no address).
 * @param port The client's port.
 * @param address The client's address (or socket path).
 */
export function encodeConnect(
  hostname: string,
  family: Family,
  port: number,
  address: string,
): Uint8Array {
  if (family === "U") return packet("C", concatBytes([strings(hostname), encoder.encode("U")]));
  const portOctets = new Uint8Array([(port >> 8) & 0xff, port & 0xff]);
  return packet(
    "C",
    concatBytes([strings(hostname), encoder.encode(family), portOctets, strings(address)]),
  );
}

/** SMFIC_HELO: the name the client gave. */
export function encodeHelo(name: string): Uint8Array {
  return packet("H", strings(name));
}

/**
 * SMFIC_MAIL: the reverse-path in angle brackets, then each ESMTP parameter.
 *
 * @param reversePath The address, `""` for the null path.
 * @param args `KEY=VALUE` parameters.
 */
export function encodeMail(reversePath: string, args: readonly string[] = []): Uint8Array {
  return packet("M", strings(`<${reversePath}>`, ...args));
}

/** SMFIC_RCPT: the forward-path in angle brackets, then each ESMTP parameter. */
export function encodeRcpt(forwardPath: string, args: readonly string[] = []): Uint8Array {
  return packet("R", strings(`<${forwardPath}>`, ...args));
}

/** SMFIC_HEADER: one header field's name and value (value lines joined by LF, as Sendmail does). */
export function encodeHeader(name: string, value: string): Uint8Array {
  return packet("L", strings(name, value));
}

/**
 * SMFIC_BODY packets for a piece of the body, at most {@linkcode MAX_BODY_CHUNK} each.
 *
 * @param body Body octets, CRLF line ends as on the wire.
 */
export function encodeBody(body: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let at = 0; at < body.length; at += MAX_BODY_CHUNK) {
    out.push(packet("B", body.subarray(at, at + MAX_BODY_CHUNK)));
  }
  return out;
}

/** Commands with no data: DATA, EOH, end of body, ABORT, QUIT, QUIT_NC. */
export function encodeBare(code: "T" | "N" | "E" | "A" | "Q" | "K"): Uint8Array {
  return packet(code);
}

/**
 * Splits a byte stream into packets as they complete.
 *
 * @example Two packets in one read
 * ```ts
 * import assert from "node:assert/strict";
 * import { PacketReader } from "./codec.ts";
 * const reader = new PacketReader();
 * const packets = reader.push(new Uint8Array([0, 0, 0, 1, 99, 0, 0, 0, 1, 97]));
 * assert.deepEqual(packets.map((p) => String.fromCharCode(p.code)), ["c", "a"]);
 * ```
 */
export class PacketReader {
  #buffer: Uint8Array = new Uint8Array(0);

  /**
   * Takes octets read from the milter.
   *
   * @param chunk The octets.
   * @returns The packets now complete, in order.
   * @throws {MilterProtocolError} For a packet of length 0 or over {@linkcode MAX_PACKET}.
   */
  push(chunk: Uint8Array): { code: number; data: Uint8Array }[] {
    this.#buffer = this.#buffer.length === 0 ? chunk.slice() : concatBytes([this.#buffer, chunk]);
    const out: { code: number; data: Uint8Array }[] = [];
    while (this.#buffer.length >= 4) {
      const view = new DataView(this.#buffer.buffer, this.#buffer.byteOffset);
      const length = view.getUint32(0);
      if (length === 0 || length > MAX_PACKET) {
        throw new MilterProtocolError(`a packet of ${length} octets`);
      }
      if (this.#buffer.length < 4 + length) break;
      out.push({ code: this.#buffer[4]!, data: this.#buffer.slice(5, 4 + length) });
      this.#buffer = this.#buffer.subarray(4 + length);
    }
    return out;
  }
}

/** Reads NUL-terminated strings and numbers from a packet's data. */
class Fields {
  #at = 0;
  constructor(readonly data: Uint8Array, readonly what: string) {}

  get rest(): number {
    return this.data.length - this.#at;
  }

  uint32(): number {
    if (this.rest < 4) throw new MilterProtocolError(`${this.what}: data too short`);
    const n = new DataView(this.data.buffer, this.data.byteOffset).getUint32(this.#at);
    this.#at += 4;
    return n;
  }

  string(): string {
    const end = this.data.indexOf(0, this.#at);
    if (end < 0) throw new MilterProtocolError(`${this.what}: a string without its NUL`);
    const value = decoder.decode(this.data.subarray(this.#at, end));
    this.#at = end + 1;
    return value;
  }

  /** An optional trailing string (ESMTP arguments may be left out). */
  optionalString(): string {
    return this.rest > 0 ? this.string() : "";
  }
}

const BARE: Readonly<Record<string, Response["type"]>> = {
  a: "accept",
  c: "continue",
  r: "reject",
  t: "tempfail",
  d: "discard",
  s: "skip",
  p: "progress",
  "4": "shutdown",
  f: "connfail",
};

/**
 * Decodes one response packet.
 *
 * @param code Its command character (as a number).
 * @param data Its data.
 * @returns The response.
 * @throws {MilterProtocolError} For an unknown command or malformed data.
 */
export function decodeResponse(code: number, data: Uint8Array): Response {
  const char = String.fromCharCode(code);
  const fields = new Fields(data, `response '${char}'`);
  const bare = BARE[char];
  if (bare !== undefined) {
    if (data.length !== 0) throw new MilterProtocolError(`response '${char}' with data`);
    return { type: bare } as Response;
  }
  switch (char) {
    case "O":
      return { type: "optneg", negotiated: decodeOptneg(fields) };
    case "q":
      return { type: "quarantine", reason: fields.string() };
    case "y":
      return { type: "replycode", text: fields.string() };
    case "h":
      return { type: "addheader", name: fields.string(), value: fields.string() };
    case "i":
    case "m": {
      const index = fields.uint32();
      const name = fields.string();
      const value = fields.string();
      return { type: char === "i" ? "insheader" : "chgheader", index, name, value };
    }
    case "e":
      return { type: "chgfrom", sender: fields.string(), args: fields.optionalString() };
    case "+":
      return { type: "addrcpt", recipient: fields.string(), args: "" };
    case "2":
      return { type: "addrcpt", recipient: fields.string(), args: fields.optionalString() };
    case "-":
      return { type: "delrcpt", recipient: fields.string() };
    case "b":
      return { type: "replbody", chunk: data.slice() };
    case "l":
      return { type: "setsymlist", stage: fields.uint32(), names: fields.string() };
    default:
      throw new MilterProtocolError(`unknown response '${printable(char)}'`);
  }
}

function printable(char: string): string {
  return /^[\x21-\x7e]$/.test(char) ? char : `\\x${char.charCodeAt(0).toString(16)}`;
}

/** The OPTNEG answer: version, actions, protocol, then optional symbol lists. */
function decodeOptneg(fields: Fields): Negotiated {
  const version = fields.uint32();
  const actions = fields.uint32();
  const protocol = fields.uint32();
  const symbols = new Map<number, string[]>();
  while (fields.rest > 0) {
    const stage = fields.uint32();
    symbols.set(stage, fields.string().split(/\s+/).filter((s) => s !== ""));
  }
  return { version, actions, protocol, symbols };
}

/**
 * The address family of a client address for SMFIC_CONNECT.
 *
 * @param address An IPv4 or IPv6 address, or a socket path.
 */
export function familyOf(address: string): Family {
  if (address.startsWith("/")) return "L";
  if (address.includes(":")) return "6";
  if (/^\d+\.\d+\.\d+\.\d+$/.test(address)) return "4";
  return "U";
}
