/**
 * The listener's watchdog probe: a connection {@linkcode SmtpServer} makes to
 * its own listener now and then, because a `node:net` listener under Deno
 * that once fails to accept with EMFILE never accepts again. If the probe
 * connects but nothing at all is accepted meanwhile, the server listens anew.
 *
 * @module
 */

import net from "node:net";
import { unmapIpv4 } from "../net/ip.ts";

/** A probe that the listener does not accept within this time means it stopped accepting. */
const PROBE_MS = 5000;

/** Where the watchdog connects to reach a listener bound to `address`. */
export function probeHost(address: string): string {
  if (address === "0.0.0.0" || address === "") return "127.0.0.1";
  if (address === "::") return "::1";
  return address;
}

/**
 * One connection the watchdog makes to its own listener. The listener must
 * not take it for a client: an accepted socket from the probe's address is
 * held back until the probe knows its own port, then dropped if it is the
 * probe and admitted otherwise.
 */
export class Probe {
  readonly parked: net.Socket[] = [];
  #host: string;
  #socket: net.Socket | null = null;
  #port: number | null = null;
  #timer: ReturnType<typeof setTimeout>;
  #done: (outcome: "connected" | "pending" | "failed") => void;
  #connected = false;
  #over = false;

  constructor(
    host: string,
    port: number,
    done: (outcome: "connected" | "pending" | "failed") => void,
  ) {
    this.#host = unmapIpv4(host);
    this.#done = done;
    this.#timer = setTimeout(() => this.#end(this.#connected ? "connected" : "pending"), PROBE_MS);
    try {
      const socket = net.connect({ host, port });
      this.#socket = socket;
      socket.on("error", () => this.#end("failed"));
      socket.on("connect", () => {
        this.#connected = true;
        this.#port = socket.localPort ?? null;
        const parked = this.parked.splice(0);
        for (const s of parked) {
          if (!this.#isProbe(s)) this.parked.push(s);
        }
      });
    } catch {
      // Out of descriptors, most likely: no verdict this time.
      queueMicrotask(() => this.#end("failed"));
    }
  }

  #isProbe(socket: net.Socket): boolean {
    if (socket.remotePort !== this.#port) return false;
    socket.destroy();
    queueMicrotask(() => this.#end("connected"));
    return true;
  }

  /** Whether an accepted socket is (or may be) the probe; if so the probe keeps it. */
  claims(socket: net.Socket): boolean {
    if (this.#over || unmapIpv4(socket.remoteAddress ?? "") !== this.#host) return false;
    if (this.#port === null) {
      this.parked.push(socket);
      return true;
    }
    return this.#isProbe(socket);
  }

  /** Ends the probe with no verdict (the server is stopping). */
  cancel(): void {
    this.#over = true;
    clearTimeout(this.#timer);
    this.#socket?.destroy();
    for (const s of this.parked.splice(0)) s.destroy();
  }

  #end(outcome: "connected" | "pending" | "failed"): void {
    if (this.#over) return;
    this.#over = true;
    clearTimeout(this.#timer);
    this.#socket?.destroy();
    this.#done(outcome);
  }
}
