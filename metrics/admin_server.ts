/**
 * The admin HTTP listener (`admin:` in the configuration): `/metrics` in the
 * Prometheus text format 0.0.4, `/healthz` (200 while the process runs) and
 * `/readyz` (200 while the queue store accepts writes, else 503), `/status`
 * (what `tern status` shows, as JSON, when the server gives it). Anything
 * else is 404. It has no authentication: bind it to loopback (the default)
 * or a management network.
 *
 * @module
 */

import { type Registry, TEXT_FORMAT } from "./registry.ts";

/** How long a readiness probe's answer is reused, ms: a scrape storm costs one write a second. */
export const READY_CACHE_MS = 1_000;

/** Options of {@linkcode startAdminServer}. */
export interface AdminServerOptions {
  /** The address to bind. */
  readonly address: string;
  /** The port to bind; 0 for any free one. */
  readonly port: number;
  /** What `/metrics` renders. */
  readonly registry: Registry;
  /** Writes and reads back something in the queue store; throws when it cannot. */
  readonly probe: () => Promise<void>;
  /** Called when a probe fails, with why (for the log). */
  readonly onProbeError?: (error: unknown) => void;
  /** What `/status` answers, as JSON; without it `/status` is 404. */
  readonly status?: () => Promise<unknown>;
}

/** A running admin listener. */
export interface AdminServer {
  /** The address bound. */
  readonly address: string;
  /** The port bound (the real one when 0 was asked). */
  readonly port: number;
  /** Stops listening and waits for requests in flight. */
  close(): Promise<void>;
}

/**
 * Caches a probe's result for {@linkcode READY_CACHE_MS}; concurrent
 * callers share one probe.
 */
function cachedProbe(options: AdminServerOptions): () => Promise<boolean> {
  let at = -Infinity;
  let result: Promise<boolean> = Promise.resolve(false);
  return () => {
    const now = Date.now();
    if (now - at >= READY_CACHE_MS) {
      at = now;
      result = options.probe().then(() => true, (error: unknown) => {
        options.onProbeError?.(error);
        return false;
      });
    }
    return result;
  };
}

/** The paths served, for the 405 of other methods. */
const PATHS = new Set(["/metrics", "/healthz", "/readyz", "/status"]);

/** `/status` as JSON; 503 with the reason when it cannot be made (the store is failing, say). */
async function statusResponse(status: () => Promise<unknown>): Promise<Response> {
  try {
    return text(JSON.stringify(await status()) + "\n", 200, "application/json");
  } catch (error: unknown) {
    const why = error instanceof Error ? error.message : String(error);
    return text(JSON.stringify({ error: why }) + "\n", 503, "application/json");
  }
}

function text(body: string, status: number, type = "text/plain; charset=utf-8"): Response {
  return new Response(body, { status, headers: { "content-type": type } });
}

/**
 * Starts the admin listener.
 *
 * @param options Where, and what to serve.
 * @returns The running listener.
 */
export function startAdminServer(options: AdminServerOptions): Promise<AdminServer> {
  const ready = cachedProbe(options);
  const handler = async (request: Request): Promise<Response> => {
    const path = new URL(request.url).pathname;
    if (request.method !== "GET" && request.method !== "HEAD") {
      return PATHS.has(path) ? text("method not allowed\n", 405) : text("not found\n", 404);
    }
    switch (path) {
      case "/metrics":
        return text(await options.registry.render(), 200, TEXT_FORMAT);
      case "/healthz":
        return text("ok\n", 200);
      case "/status":
        return options.status === undefined
          ? text("not found\n", 404)
          : await statusResponse(options.status);
      case "/readyz":
        return (await ready())
          ? text("ready\n", 200)
          : text("not ready: the queue store does not accept writes\n", 503);
      default:
        return text("not found\n", 404);
    }
  };
  return new Promise((resolve, reject) => {
    try {
      const server = Deno.serve({
        hostname: options.address,
        port: options.port,
        onListen: (addr) => {
          resolve({
            address: addr.hostname,
            port: addr.port,
            close: () => server.shutdown(),
          });
        },
        onError: () => text("internal error\n", 500),
      }, handler);
    } catch (error: unknown) {
      reject(error);
    }
  });
}
