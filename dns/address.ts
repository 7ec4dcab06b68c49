/**
 * The addresses in A and AAAA records, between their wire bytes and text:
 * dotted quads, and IPv6 in the canonical form of RFC 5952.
 *
 * @module
 */

import { isIPv4, isIPv6 } from "node:net";

/** RFC 5952 §4: lower case, leading zeros dropped, the longest run (≥ 2) of zero groups as "::". */
export function formatIpv6(bytes: Uint8Array): string {
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

/** The 4 bytes of a dotted-quad IPv4 address, or `null` when `text` is not one. */
export function parseIpv4(text: string): Uint8Array | null {
  if (!isIPv4(text)) return null;
  return Uint8Array.from(text.split(".").map(Number));
}

/** The 16 bytes of an IPv6 address (RFC 4291 §2.2 text forms, no zone), or `null` when `text` is not one. */
export function parseIpv6(text: string): Uint8Array | null {
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
