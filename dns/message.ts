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
 * The codec is split by concept: `types.ts` (the message and record shapes,
 * type codes, the error), `name.ts` (names and labels), `address.ts` (A and
 * AAAA data), `decode.ts` and `encode.ts` (the wire, with compression). This
 * file gathers their public names.
 *
 * @module
 */

export { canonicalIpv6 } from "./address.ts";
export { decodeMessage } from "./decode.ts";
export { encodeMessage, encodeQuery } from "./encode.ts";
export { namesEqual, normalizeName } from "./name.ts";
export * from "./types.ts";
