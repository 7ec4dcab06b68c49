/**
 * Publishing tern's own MTA-STS policy (RFC 8461 §3.2, §3.3): an HTTPS
 * listener that answers `GET /.well-known/mta-sts.txt` for the host
 * `mta-sts.<local domain>` with the policy as `text/plain`, and 404 for
 * anything else. It serves the certificate of the SMTP listeners (`tls`, or
 * the ACME one), taken anew for each handshake so a renewal needs no
 * restart; that certificate must name every `mta-sts.<domain>` (senders
 * verify it, RFC 8461 §3.3).
 *
 * HTTP/1.1 is read by hand, as little as a policy host needs: one request
 * per connection, its head at most 8 KiB and 10 seconds, then the answer
 * and `Connection: close`.
 *
 * @module
 */

import { createHash } from "node:crypto";
import net from "node:net";
import tls from "node:tls";
import type { MtaStsPolicyConfig } from "../config/schema.ts";

/** The longest request head read. */
const MAX_HEAD = 8 * 1024;
/** How long a client has to send its request, ms. */
const REQUEST_TIMEOUT_MS = 10_000;
/** Connections at once; more are closed at once. */
const MAX_CONNECTIONS = 256;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * The policy file (RFC 8461 §3.2): `key: value` lines ending in CRLF.
 *
 * @param policy The configured policy.
 * @returns The body served.
 *
 * @example
 * ```ts
 * import { policyText } from "./policy_server.ts";
 * const text = policyText({ mode: "enforce", mx: ["mx.example.test"], maxAge: 604800000, listen: { address: "0.0.0.0", port: 443 } });
 * console.log(text.split("\r\n")[1]); // "mode: enforce"
 * ```
 */
export function policyText(policy: MtaStsPolicyConfig): string {
  return [
    "version: STSv1",
    `mode: ${policy.mode}`,
    ...policy.mx.map((m) => `mx: ${m}`),
    `max_age: ${Math.floor(policy.maxAge / 1000)}`,
  ].map((line) => `${line}\r\n`).join("");
}

/**
 * The policy's id for the `_mta-sts` TXT record (RFC 8461 §3.1: 1 to 32
 * letters and digits, changed whenever the policy changes): the first 32
 * hex digits of the SHA-256 of its text, so it changes exactly when the
 * policy does.
 *
 * @param policy The configured policy.
 * @returns The id.
 */
export function policyId(policy: MtaStsPolicyConfig): string {
  return createHash("sha256").update(policyText(policy)).digest("hex").slice(0, 32);
}

/** Options of {@linkcode startPolicyServer}. */
export interface PolicyServerOptions {
  /** The address to bind. */
  readonly address: string;
  /** The port; 0 picks one. */
  readonly port: number;
  /** The certificate in force at each handshake. */
  readonly secureContext: () => tls.SecureContext;
  /** The policy in force (the configuration may be reloaded), or `undefined` to serve none. */
  readonly policy: () => MtaStsPolicyConfig | undefined;
  /** The local domains in force. */
  readonly domains: () => readonly string[];
}

/** A running policy listener. */
export interface PolicyServer {
  /** The address bound. */
  readonly address: string;
  /** The port bound. */
  readonly port: number;
  /** Stops listening and closes open connections. */
  close(): Promise<void>;
}

/**
 * Starts the HTTPS listener of the policy.
 *
 * @param options Where to listen, the certificate, the policy and domains.
 * @returns The listener, once bound.
 * @throws {Error} When the address cannot be bound (`EADDRINUSE`, `EACCES`).
 */
export function startPolicyServer(options: PolicyServerOptions): Promise<PolicyServer> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((raw) => {
    raw.on("error", () => {});
    if (sockets.size >= MAX_CONNECTIONS) {
      raw.destroy();
      return;
    }
    sockets.add(raw);
    raw.once("close", () => sockets.delete(raw));
    let secure: tls.TLSSocket;
    try {
      secure = new tls.TLSSocket(raw, { isServer: true, secureContext: options.secureContext() });
    } catch {
      raw.destroy();
      return;
    }
    secure.on("error", () => raw.destroy());
    serveOne(secure, options);
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: options.address, port: options.port }, () => {
      server.off("error", reject);
      server.on("error", () => {});
      const bound = server.address() as net.AddressInfo;
      resolve({
        address: bound.address,
        port: bound.port,
        close: () =>
          new Promise<void>((done) => {
            for (const s of sockets) s.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}

/** Reads one request head and answers it. */
function serveOne(socket: tls.TLSSocket, options: PolicyServerOptions): void {
  let head = "";
  const timer = setTimeout(() => socket.destroy(), REQUEST_TIMEOUT_MS);
  socket.once("close", () => clearTimeout(timer));
  socket.on("data", (chunk: Uint8Array) => {
    if (head.includes("\r\n\r\n")) return;
    head += decoder.decode(chunk);
    if (head.length > MAX_HEAD) {
      clearTimeout(timer);
      respond(socket, 431, "request head too large\n");
      return;
    }
    if (!head.includes("\r\n\r\n")) return;
    clearTimeout(timer);
    const answer = answerRequest(head, options.policy(), options.domains());
    respond(socket, answer.status, answer.body, answer.head);
  });
}

/**
 * What a request gets (RFC 8461 §3.3): the policy for `GET` (or `HEAD`) of
 * `/.well-known/mta-sts.txt` with `Host: mta-sts.<local domain>`; else 404
 * (405 for another method on the policy's path).
 *
 * @param head The request line and header fields.
 * @param policy The policy in force.
 * @param domains The local domains.
 * @returns The status, body and whether only the head is sent.
 */
export function answerRequest(
  head: string,
  policy: MtaStsPolicyConfig | undefined,
  domains: readonly string[],
): { status: number; body: string; head?: boolean } {
  const lines = head.split("\r\n");
  const request = /^([A-Z]+) (\S+) HTTP\/1\.[01]$/.exec(lines[0] ?? "");
  if (request === null) return { status: 400, body: "bad request\n" };
  const [, method, target] = request;
  const hostLine = lines.find((l) => /^host:/i.test(l));
  const host = (hostLine?.slice(5).trim() ?? "").toLowerCase().replace(/:\d+$/, "")
    .replace(/\.$/, "");
  const domain = host.startsWith("mta-sts.") ? host.slice(8) : null;
  const path = (target ?? "").split("?")[0];
  if (
    policy === undefined || domain === null || !domains.includes(domain) ||
    path !== "/.well-known/mta-sts.txt"
  ) {
    return { status: 404, body: "not found\n" };
  }
  if (method !== "GET" && method !== "HEAD") return { status: 405, body: "GET only\n" };
  return { status: 200, body: policyText(policy), head: method === "HEAD" };
}

const REASONS: Record<number, string> = {
  200: "OK",
  400: "Bad Request",
  404: "Not Found",
  405: "Method Not Allowed",
  431: "Request Header Fields Too Large",
};

function respond(socket: tls.TLSSocket, status: number, body: string, headOnly = false): void {
  const bytes = encoder.encode(body);
  socket.end(
    encoder.encode(
      `HTTP/1.1 ${status} ${REASONS[status] ?? "Error"}\r\n` +
        // RFC 8461 §3.3: the policy is text/plain; senders refuse anything else.
        "Content-Type: text/plain\r\n" +
        `Content-Length: ${bytes.length}\r\n` +
        (status === 405 ? "Allow: GET, HEAD\r\n" : "") +
        "Connection: close\r\n\r\n" +
        (headOnly ? "" : body),
    ),
  );
}
