/**
 * Loopback helpers for the benchmarks: a free port, and waiting for an SMTP
 * server's banner.
 *
 * @module
 */

/**
 * A TCP port on 127.0.0.1 that nobody listens on right now.
 *
 * @returns The port number.
 */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

const decoder = new TextDecoder();

/**
 * Connects, waits for a `220` banner and says QUIT; retries until the server
 * answers or the time is up.
 *
 * @param port The port on 127.0.0.1.
 * @param timeoutMs How long to keep trying.
 * @param hostname The server's loopback address.
 * @returns When the server has greeted.
 * @throws {Error} When no banner came in time.
 */
export async function waitForBanner(
  port: number,
  timeoutMs = 30_000,
  hostname = "127.0.0.1",
): Promise<void> {
  const end = performance.now() + timeoutMs;
  let last = "";
  while (performance.now() < end) {
    try {
      const conn = await Deno.connect({ hostname, port });
      try {
        const buffer = new Uint8Array(512);
        const n = await conn.read(buffer);
        last = n === null ? "connection closed" : decoder.decode(buffer.subarray(0, n));
        if (last.startsWith("220")) {
          await conn.write(new TextEncoder().encode("QUIT\r\n"));
          await conn.read(buffer).catch(() => null);
          return;
        }
      } finally {
        conn.close();
      }
    } catch (error: unknown) {
      last = error instanceof Error ? error.message : String(error);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`No SMTP banner on ${hostname}:${port} within ${timeoutMs} ms (${last.trim()})`);
}
