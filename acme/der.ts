/**
 * The few DER (ITU-T X.690) encodings an ACME client needs to write a
 * certificate signing request and a self-signed certificate: enough to
 * build, never to parse (`node:crypto`'s `X509Certificate` reads what the CA
 * sends back).
 *
 * @module
 */

import { concatBytes } from "../bytes/concat.ts";

/** DER bytes of one encoded value. */
export type Der = Uint8Array;

/** The length octets (X.690 §8.1.3): short form below 128, else long form. */
function lengthOctets(length: number): number[] {
  if (length < 0x80) return [length];
  const bytes: number[] = [];
  for (let n = length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n % 256);
  return [0x80 | bytes.length, ...bytes];
}

/**
 * One tag-length-value.
 *
 * @param tag The identifier octet.
 * @param content The contents octets, or values to concatenate.
 * @returns The encoding.
 */
export function tlv(tag: number, content: Uint8Array | readonly Uint8Array[]): Der {
  const body = content instanceof Uint8Array ? content : concatBytes(content);
  const head = [tag, ...lengthOctets(body.length)];
  const out = new Uint8Array(head.length + body.length);
  out.set(head);
  out.set(body, head.length);
  return out;
}

/**
 * SEQUENCE.
 *
 * @param items The members, encoded.
 * @returns The encoding.
 */
export function sequence(...items: Der[]): Der {
  return tlv(0x30, items);
}

/**
 * SET (DER sorts SET OF members; every SET here has one member).
 *
 * @param items The members, encoded.
 * @returns The encoding.
 */
export function set(...items: Der[]): Der {
  return tlv(0x31, items);
}

/**
 * A non-negative INTEGER from its big-endian magnitude (X.690 §8.3: minimal,
 * with a leading zero when the top bit is set).
 *
 * @param magnitude The unsigned value, big-endian, or a small number.
 * @returns The encoding.
 */
export function integer(magnitude: Uint8Array | number): Der {
  let bytes = typeof magnitude === "number" ? smallIntegerBytes(magnitude) : magnitude;
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0) start++;
  bytes = bytes.subarray(start);
  if (bytes.length === 0) bytes = new Uint8Array([0]);
  if ((bytes[0]! & 0x80) !== 0) bytes = concatBytes([new Uint8Array([0]), bytes]);
  return tlv(0x02, bytes);
}

function smallIntegerBytes(n: number): Uint8Array {
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
  return new Uint8Array(bytes.length === 0 ? [0] : bytes);
}

/**
 * OBJECT IDENTIFIER from dotted text (X.690 §8.19).
 *
 * @param dotted Like `2.5.29.17`.
 * @returns The encoding.
 */
export function oid(dotted: string): Der {
  const arcs = dotted.split(".").map(Number);
  const first = arcs[0]! * 40 + arcs[1]!;
  const bytes: number[] = [];
  for (const arc of [first, ...arcs.slice(2)]) {
    const chunk = [arc & 0x7f];
    for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) {
      chunk.unshift((v & 0x7f) | 0x80);
    }
    bytes.push(...chunk);
  }
  return tlv(0x06, new Uint8Array(bytes));
}

/**
 * UTF8String.
 *
 * @param text The text.
 * @returns The encoding.
 */
export function utf8String(text: string): Der {
  return tlv(0x0c, new TextEncoder().encode(text));
}

/**
 * OCTET STRING.
 *
 * @param bytes The octets.
 * @returns The encoding.
 */
export function octetString(bytes: Uint8Array): Der {
  return tlv(0x04, bytes);
}

/**
 * BIT STRING of whole octets (no unused bits).
 *
 * @param bytes The octets.
 * @returns The encoding.
 */
export function bitString(bytes: Uint8Array): Der {
  return tlv(0x03, [new Uint8Array([0]), bytes]);
}

/**
 * BOOLEAN TRUE (DER writes it as 0xFF).
 *
 * @returns The encoding.
 */
export function booleanTrue(): Der {
  return tlv(0x01, new Uint8Array([0xff]));
}

/**
 * A context-specific tag: constructed (`[n] EXPLICIT`, or an IMPLICIT
 * SEQUENCE/SET), or primitive (an IMPLICIT string such as a dNSName).
 *
 * @param n The tag number, below 31.
 * @param content The contents.
 * @param constructed Whether the contents are encodings themselves.
 * @returns The encoding.
 */
export function contextTag(
  n: number,
  content: Uint8Array | readonly Uint8Array[],
  constructed = true,
): Der {
  return tlv((constructed ? 0xa0 : 0x80) | n, content);
}

/**
 * A time for a certificate's validity (RFC 5280 §4.1.2.5): UTCTime through
 * 2049, GeneralizedTime from 2050, always in seconds and `Z`.
 *
 * @param date The time.
 * @returns The encoding.
 */
export function time(date: Date): Der {
  const iso = date.toISOString(); // 2026-12-05T10:28:41.123Z
  const digits = iso.slice(0, 19).replace(/[-T:]/g, "") + "Z"; // 20261205102841Z
  const year = date.getUTCFullYear();
  return year < 2050
    ? tlv(0x17, new TextEncoder().encode(digits.slice(2)))
    : tlv(0x18, new TextEncoder().encode(digits));
}

/**
 * An ECDSA signature as Web Crypto gives it (IEEE P1363: r then s, fixed
 * width) turned into the DER `Ecdsa-Sig-Value` X.509 wants (RFC 3279 §2.2.3).
 *
 * @param raw r and s, each half of the bytes.
 * @returns `SEQUENCE { r INTEGER, s INTEGER }`.
 */
export function ecdsaSignatureToDer(raw: Uint8Array): Der {
  const half = raw.length / 2;
  return sequence(integer(raw.subarray(0, half)), integer(raw.subarray(half)));
}
