/**
 * The SMTP client's socket plumbing: opening the TCP connection within a
 * time and an abort signal, and {@linkcode Wire}, the socket read as chunks
 * on demand with a timeout on every wait (RFC 5321 §4.5.3.2) and written
 * with flow control, so memory stays bounded. `client.ts` drives it.
 *
 * @module
 */

import net from "node:net";
import { SmtpConnectionError } from "./client_errors.ts";

/** A socket read as chunks on demand, with timeouts; the socket is paused while chunks wait. */
export class Wire {
  readonly socket: net.Socket;
  #chunks: Uint8Array[] = [];
  #ended = false;
  #error: Error | null = null;
  #wake: (() => void) | null = null;
  #closed: Promise<void>;

  constructor(socket: net.Socket) {
    this.socket = socket;
    this.#closed = new Promise((resolve) => {
      if (socket.destroyed) resolve();
      else socket.once("close", () => resolve());
    });
    socket.on("data", this.#onData);
    socket.on("end", this.#onEnd);
    socket.on("close", this.#onEnd);
    socket.on("error", this.#onError);
  }

  #onData = (data: Uint8Array): void => {
    this.#chunks.push(data);
    this.socket.pause(); // flow control: nothing more until this is read
    this.#notify();
  };

  #onEnd = (): void => {
    this.#ended = true;
    this.#notify();
  };

  #onError = (error: Error): void => {
    this.#error ??= error;
    this.#notify();
  };

  #notify(): void {
    this.#wake?.();
  }

  /** Whether bytes arrived that nobody has read. */
  get hasInput(): boolean {
    return this.#chunks.length > 0;
  }

  /** Whether the connection can still carry a dialogue. */
  get isOpen(): boolean {
    return !this.#ended && this.#error === null && !this.socket.destroyed;
  }

  /** Takes what has arrived, without waiting. */
  take(): Uint8Array[] {
    const chunks = this.#chunks;
    this.#chunks = [];
    if (chunks.length > 0 && !this.#ended) this.socket.resume();
    return chunks;
  }

  /** The next bytes, or `null` at the end of the stream. */
  async read(ms: number, what: string): Promise<Uint8Array | null> {
    while (true) {
      const chunk = this.#chunks.shift();
      if (chunk !== undefined) {
        if (this.#chunks.length === 0 && !this.#ended) this.socket.resume();
        return chunk;
      }
      if (this.#error !== null) {
        throw new SmtpConnectionError(
          `Connection failed waiting for ${what}: ${this.#error.message}`,
          {
            cause: this.#error,
          },
        );
      }
      if (this.#ended) return null;
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          this.#wake = null;
          reject(new SmtpConnectionError(`Timed out after ${ms} ms waiting for ${what}`));
        }, ms);
        this.#wake = () => {
          clearTimeout(timer);
          this.#wake = null;
          resolve();
        };
      });
    }
  }

  /** Writes bytes; resolves once the socket has taken them (so memory stays bounded). */
  write(bytes: Uint8Array, ms: number, what: string): Promise<void> {
    if (this.#error !== null || this.socket.destroyed || !this.socket.writable) {
      const why = this.#error?.message ?? "the connection is closed";
      return Promise.reject(
        new SmtpConnectionError(`Cannot write ${what}: ${why}`, {
          cause: this.#error ?? undefined,
        }),
      );
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new SmtpConnectionError(`Timed out after ${ms} ms writing ${what}`));
      }, ms);
      this.socket.write(bytes, (error?: Error | null) => {
        clearTimeout(timer);
        if (error) {
          reject(
            new SmtpConnectionError(`Cannot write ${what}: ${error.message}`, { cause: error }),
          );
        } else {
          resolve();
        }
      });
    });
  }

  /** Lets go of the socket (for the TLS upgrade); bytes not yet read are thrown away. */
  detach(): { socket: net.Socket; discarded: number } {
    const s = this.socket;
    s.off("data", this.#onData);
    s.off("end", this.#onEnd);
    s.off("close", this.#onEnd);
    s.off("error", this.#onError);
    const discarded = this.#chunks.reduce((n, c) => n + c.length, 0);
    this.#chunks = [];
    return { socket: s, discarded };
  }

  /** Closes the socket now and waits until it is gone. */
  async destroy(): Promise<void> {
    this.socket.destroy();
    await this.#closed;
  }
}

/** Destroys a socket and waits for its `close`. */
export function closeSocket(socket: net.Socket): Promise<void> {
  if (socket.closed) return Promise.resolve();
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  socket.destroy();
  return closed;
}

/** The error of a connect abandoned through its signal. */
export function abandoned(
  host: string,
  port: number,
  signal: AbortSignal,
  cause: unknown = signal.reason,
): SmtpConnectionError {
  const why = signal.reason instanceof Error ? signal.reason.message : "abandoned";
  return new SmtpConnectionError(`Gave up connecting to ${host}:${port}: ${why}`, { cause });
}

/** Opens the TCP connection, bounded by `ms` and by `signal`. */
export function openSocket(
  host: string,
  port: number,
  ms: number,
  signal?: AbortSignal,
  path?: string,
): Promise<net.Socket> {
  if (signal?.aborted) return Promise.reject(abandoned(host, port, signal));
  return new Promise((resolve, reject) => {
    const socket = net.connect(path === undefined ? { host, port } : { path });
    const onAbort = (): void => {
      clearTimeout(timer);
      socket.off("connect", onConnect);
      socket.off("error", onError);
      socket.on("error", () => {});
      socket.destroy();
      reject(abandoned(host, port, signal!));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    const fail = (why: string, cause?: unknown): void => {
      signal?.removeEventListener("abort", onAbort);
      clearTimeout(timer);
      socket.off("connect", onConnect);
      socket.off("error", onError);
      socket.on("error", () => {}); // late errors of a socket we gave up on
      socket.destroy();
      const peer = path ?? `${host}:${port}`;
      reject(new SmtpConnectionError(`Cannot connect to ${peer}: ${why}`, { cause }));
    };
    const onConnect = (): void => {
      signal?.removeEventListener("abort", onAbort);
      clearTimeout(timer);
      socket.off("error", onError);
      resolve(socket);
    };
    const onError = (error: Error): void => fail(error.message, error);
    const timer = setTimeout(() => fail(`timed out after ${ms} ms`), ms);
    socket.once("connect", onConnect);
    socket.once("error", onError);
  });
}
