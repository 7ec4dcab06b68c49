/**
 * The http-01 responder (RFC 8555 §8.3): a plain HTTP listener (port 80 by
 * default) that answers `GET /.well-known/acme-challenge/<token>` with the
 * key authorization while a challenge is pending, and 404 to everything
 * else. It stays bound for tern's lifetime: renewals need it, and a port
 * below 1024 may no longer be bindable later.
 *
 * @module
 */

import type { ChallengeSolver } from "./client.ts";

const PREFIX = "/.well-known/acme-challenge/";

/** A running http-01 responder. */
export interface Http01Responder extends ChallengeSolver {
  /** The address bound. */
  readonly address: string;
  /** The port bound (the real one when 0 was asked). */
  readonly port: number;
  /** Stops listening. */
  close(): Promise<void>;
}

/**
 * Binds the responder.
 *
 * @param address The address to listen on.
 * @param port The port (0 picks a free one).
 * @returns The responder, which is also the solver for the ACME client.
 * @throws {Deno.errors.AddrInUse} When the port is taken.
 */
export function startHttp01Responder(address: string, port: number): Http01Responder {
  const answers = new Map<string, string>();
  const server = Deno.serve({
    hostname: address,
    port,
    onListen: () => {},
    // The CA's validation requests are the only expected callers; keep errors off the console.
    onError: () => new Response("error\n", { status: 500 }),
  }, (request) => {
    const path = new URL(request.url).pathname;
    const answer = path.startsWith(PREFIX) ? answers.get(path.slice(PREFIX.length)) : undefined;
    if (answer === undefined || (request.method !== "GET" && request.method !== "HEAD")) {
      return new Response("not found\n", { status: 404 });
    }
    // RFC 8555 §8.3: the body is the key authorization, as application/octet-stream.
    return new Response(answer, { headers: { "content-type": "application/octet-stream" } });
  });
  const bound = server.addr as Deno.NetAddr;
  return {
    type: "http-01",
    address: bound.hostname,
    port: bound.port,
    present(_domain, token, keyAuthorization) {
      answers.set(token, keyAuthorization);
      return Promise.resolve();
    },
    cleanup(_domain, token) {
      answers.delete(token);
      return Promise.resolve();
    },
    async close() {
      await server.shutdown();
    },
  };
}
