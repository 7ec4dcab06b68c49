/**
 * Fetching an MTA-STS policy (RFC 8461 §3.3): one HTTPS GET of
 * `https://mta-sts.<domain>/.well-known/mta-sts.txt`, the certificate
 * verified for `mta-sts.<domain>` (system CAs plus `relay.ca_file`),
 * no redirects, `200` with `Content-Type: text/plain` only, at most 64 KiB
 * and 60 seconds in all, so a slow or endless server cannot hold a delivery.
 *
 * The host is resolved with tern's own resolver (`dns.nameservers`), then
 * reached over `node:tls` with SNI and the name check for the host name: the
 * address comes from DNS, the trust from the certificate. HTTP/1.1 is
 * written by hand: one request, `Connection: close`, a body either
 * `Content-Length` long, chunked, or up to the close.
 *
 * @module
 */

import tls from "node:tls";
import { resolveAddresses } from "../dns/mx.ts";
import type { DnsQuerier } from "../dns/resolver.ts";

/** RFC 8461 §3.3 suggests 64 KiB as the most a policy may be. */
export const MAX_POLICY_BYTES = 64 * 1024;

/** The longest a whole fetch may take (RFC 8461 §3.3: "a reasonable time"), ms. */
export const POLICY_FETCH_TIMEOUT_MS = 60_000;

/** The headers may take this much more than the body. */
const MAX_HEADER_BYTES = 8 * 1024;

/** Options of {@linkcode fetchStsPolicy}. */
export interface StsFetchOptions {
  /** Resolves `mta-sts.<domain>`. */
  readonly resolver: DnsQuerier;
  /** PEM certificates trusted (the system roots and `relay.ca_file`); left out: Node's own roots. */
  readonly ca?: readonly string[];
  /** The HTTPS port. @default {443} */
  readonly port?: number;
  /** The whole fetch's time limit, ms. @default {60000} */
  readonly timeoutMs?: number;
  /** The longest body. @default {65536} */
  readonly maxBytes?: number;
}

/** The body of a policy, or why there is none. */
export type StsFetchResult =
  | { readonly ok: true; readonly body: string }
  | { readonly ok: false; readonly error: string };

/**
 * Fetches the policy file of a domain. Never throws: every failure (DNS,
 * TLS, HTTP status, type, size, time) is an `{ ok: false, error }` whose
 * text names the cause.
 *
 * @param domain The recipient domain.
 * @param options Resolver, trusted CAs, limits.
 * @returns The body, or why it could not be had.
 */
export async function fetchStsPolicy(
  domain: string,
  options: StsFetchOptions,
): Promise<StsFetchResult> {
  const host = `mta-sts.${domain.toLowerCase().replace(/\.$/, "")}`;
  const timeoutMs = options.timeoutMs ?? POLICY_FETCH_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs;
  let addresses: string[];
  try {
    addresses = await resolveAddresses(host, options.resolver);
  } catch (error: unknown) {
    return { ok: false, error: `cannot resolve ${host}: ${text(error)}` };
  }
  if (addresses.length === 0) return { ok: false, error: `${host} has no address` };
  let last = "";
  for (const address of addresses) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    const result = await getOnce(host, address, options, left);
    if (result.ok || !result.retry) return result.ok ? result : { ok: false, error: result.error };
    last = result.error;
  }
  return { ok: false, error: last || `no answer from ${host} within ${timeoutMs} ms` };
}

type Attempt =
  | { readonly ok: true; readonly body: string }
  | { readonly ok: false; readonly error: string; readonly retry: boolean };

function text(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).replace(/\s+/g, " ");
}

/** One GET to one address: `retry` when the next address may do better (no connection). */
function getOnce(
  host: string,
  address: string,
  options: StsFetchOptions,
  timeoutMs: number,
): Promise<Attempt> {
  const maxBytes = options.maxBytes ?? MAX_POLICY_BYTES;
  const where = `https://${host}/.well-known/mta-sts.txt (${address})`;
  return new Promise<Attempt>((resolve) => {
    const chunks: Uint8Array[] = [];
    let size = 0;
    let connected = false;
    let settled = false;
    const socket = tls.connect({
      host: address,
      port: options.port ?? 443,
      servername: host,
      // RFC 8461 §3.3: the certificate must be valid for mta-sts.<domain> (PKIX, RFC 6125).
      rejectUnauthorized: true,
      minVersion: "TLSv1.2",
      ALPNProtocols: ["http/1.1"],
      ...(options.ca === undefined ? {} : { ca: [...options.ca] }),
    });
    const finish = (attempt: Attempt): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(attempt);
    };
    // The one limit for everything, so a server dripping a byte at a time gains nothing.
    const timer = setTimeout(() => {
      finish({ ok: false, error: `${where} took longer than ${timeoutMs} ms`, retry: false });
    }, timeoutMs);
    socket.once("secureConnect", () => {
      connected = true;
      socket.write(
        `GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: ${host}\r\nUser-Agent: tern\r\n` +
          "Accept: text/plain\r\nConnection: close\r\n\r\n",
      );
    });
    socket.on("data", (data: Uint8Array) => {
      chunks.push(data);
      size += data.length;
      const early = checkSoFar(chunks, size, maxBytes);
      if (early !== null) finish({ ok: false, error: `${where}: ${early}`, retry: false });
    });
    socket.once("end", () => {
      const parsed = parseResponse(concat(chunks, size), maxBytes, true);
      if ("body" in parsed) finish({ ok: true, body: parsed.body });
      else {
        const why = "error" in parsed ? parsed.error : "the response is incomplete";
        finish({ ok: false, error: `${where}: ${why}`, retry: false });
      }
    });
    socket.once("error", (error: Error) => {
      finish({ ok: false, error: `${where}: ${text(error)}`, retry: !connected });
    });
    socket.once("close", () => {
      finish({ ok: false, error: `${where}: the connection closed early`, retry: !connected });
    });
  });
}

function concat(chunks: readonly Uint8Array[], size: number): Uint8Array {
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/**
 * Looks at what came so far: refuses at once what cannot become a good
 * answer (too big, a redirect, another status or type), or a complete
 * response with a length (then it is done), or `null` to read on.
 */
function checkSoFar(chunks: readonly Uint8Array[], size: number, maxBytes: number): string | null {
  if (size > maxBytes + MAX_HEADER_BYTES) return `the response is larger than ${maxBytes} bytes`;
  const parsed = parseResponse(concat(chunks, size), maxBytes, false);
  return "error" in parsed ? parsed.error : null;
}

const decoder = new TextDecoder();

/**
 * Reads an HTTP/1.1 response. With `complete` false it reports only errors
 * already certain (`{ pending: true }` otherwise); with `complete` true
 * (the server closed) the body must be whole.
 */
function parseResponse(
  bytes: Uint8Array,
  maxBytes: number,
  complete: boolean,
): { body: string } | { error: string } | { pending: true } {
  const end = findHeaderEnd(bytes);
  if (end < 0) {
    if (bytes.length > MAX_HEADER_BYTES) return { error: "the response headers are too long" };
    return complete ? { error: "the response ended in its headers" } : { pending: true };
  }
  const head = decoder.decode(bytes.subarray(0, end)).split("\r\n");
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(head[0] ?? "");
  if (status === null) {
    return { error: `not an HTTP/1.1 response: ${JSON.stringify(head[0]?.slice(0, 60))}` };
  }
  const code = Number(status[1]);
  // RFC 8461 §3.3: redirects are not followed.
  if (code >= 300 && code < 400) return { error: `redirect (HTTP ${code}) refused` };
  if (code !== 200) return { error: `HTTP ${code}` };
  const headers = new Map<string, string>();
  for (const line of head.slice(1)) {
    const colon = line.indexOf(":");
    if (colon > 0) {
      headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
  }
  const type = (headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
  if (type !== "text/plain") {
    return { error: `Content-Type ${JSON.stringify(type)} is not text/plain` };
  }
  const length = headers.get("content-length");
  if (length !== undefined && (!/^\d+$/.test(length) || Number(length) > maxBytes)) {
    return { error: `the policy is larger than ${maxBytes} bytes (Content-Length ${length})` };
  }
  const raw = bytes.subarray(end + 4);
  if (!complete) {
    return raw.length > maxBytes && length === undefined && !isChunked(headers)
      ? { error: `the policy is larger than ${maxBytes} bytes` }
      : { pending: true };
  }
  let body: Uint8Array | null;
  if (isChunked(headers)) body = dechunk(raw, maxBytes);
  else if (length !== undefined) {
    body = raw.length >= Number(length) ? raw.subarray(0, Number(length)) : null;
  } else body = raw;
  if (body === null) return { error: "the response body is incomplete or malformed" };
  if (body.length > maxBytes) return { error: `the policy is larger than ${maxBytes} bytes` };
  return { body: decoder.decode(body) };
}

function isChunked(headers: ReadonlyMap<string, string>): boolean {
  return /\bchunked\b/i.test(headers.get("transfer-encoding") ?? "");
}

function findHeaderEnd(bytes: Uint8Array): number {
  for (let i = 0; i + 3 < bytes.length; i++) {
    if (bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10) {
      return i;
    }
  }
  return -1;
}

/** Decodes a chunked body (RFC 9112 §7.1); `null` when malformed, cut short or too big. */
function dechunk(raw: Uint8Array, maxBytes: number): Uint8Array | null {
  const parts: Uint8Array[] = [];
  let size = 0;
  let at = 0;
  while (true) {
    let lineEnd = -1;
    for (let i = at; i + 1 < raw.length; i++) {
      if (raw[i] === 13 && raw[i + 1] === 10) {
        lineEnd = i;
        break;
      }
    }
    if (lineEnd < 0) return null;
    const sizeText = decoder.decode(raw.subarray(at, lineEnd)).split(";")[0]!.trim();
    if (!/^[0-9a-fA-F]{1,8}$/.test(sizeText)) return null;
    const n = parseInt(sizeText, 16);
    if (n === 0) return concat(parts, size);
    size += n;
    if (size > maxBytes) return null;
    const start = lineEnd + 2;
    if (start + n + 2 > raw.length) return null;
    parts.push(raw.subarray(start, start + n));
    at = start + n + 2;
  }
}
