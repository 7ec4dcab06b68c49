/**
 * The thin I/O of a milter conversation: a TCP or unix socket, the packets
 * of codec.ts written and read, each wait bounded (connect, each command,
 * the end of message), and the protocol rules of session.ts. Anything that
 * goes wrong (refused, closed, slow, nonsense) is one {@linkcode MilterFailure}:
 * the caller then applies the milter's `default_action`.
 *
 * @module
 */

import {
  decodeResponse,
  encodeBare,
  encodeOptneg,
  MilterProtocolError,
  type Negotiated,
  PacketReader,
} from "./codec.ts";
import { type Decision, type MilterEvent, MilterSession } from "./session.ts";

/** Where a milter listens. */
export type MilterEndpoint =
  | { readonly transport: "tcp"; readonly hostname: string; readonly port: number }
  | { readonly transport: "unix"; readonly path: string };

/**
 * Reads a milter address: `host:port`, `[v6]:port`, `inet:port@host`
 * (Sendmail's form), `unix:/path`, `local:/path` or `/path`.
 *
 * @param address The address as configured.
 * @returns The endpoint, or a string saying what is wrong.
 *
 * @example
 * ```ts
 * import { parseMilterAddress } from "./client.ts";
 * console.log(parseMilterAddress("127.0.0.1:11332")); // { transport: "tcp", hostname: "127.0.0.1", port: 11332 }
 * console.log(parseMilterAddress("unix:/run/opendkim.sock")); // { transport: "unix", path: "/run/opendkim.sock" }
 * ```
 */
export function parseMilterAddress(address: string): MilterEndpoint | string {
  const unix = /^(?:unix:|local:)?(\/.*)$/.exec(address);
  if (unix !== null) return { transport: "unix", path: unix[1]! };
  const sendmail = /^inet6?:(\d+)@(.+)$/.exec(address);
  const match = sendmail !== null
    ? [sendmail[2]!, sendmail[1]!]
    : /^(?:inet:)?\[([0-9a-fA-F:.]+)\]:(\d+)$/.exec(address)?.slice(1) ??
      /^(?:inet:)?([^:\s\[\]]+):(\d+)$/.exec(address)?.slice(1);
  if (match === undefined) {
    return `"${address}" is not a milter address: write host:port, [ipv6]:port, unix:/path or /path`;
  }
  const port = Number(match[1]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    return `"${address}" has port ${match[1]}, not 1-65535`;
  }
  return { transport: "tcp", hostname: match[0]!, port };
}

/** How long each wait may last, ms. */
export interface MilterTimeouts {
  /** To connect and negotiate. */
  readonly connect: number;
  /** For the answer to each command but the end of message. */
  readonly command: number;
  /** For the answer to the end of message (a content scan takes longer). */
  readonly eom: number;
}

/** Why a milter could not be used. */
export type FailureKind = "unreachable" | "timeout" | "closed" | "protocol";

/** The milter is down, slow, or talked nonsense. */
export class MilterFailure extends Error {
  /** What kind of failure. */
  readonly kind: FailureKind;
  /**
   * Makes the error.
   *
   * @param kind What kind of failure.
   * @param message What happened, in one line.
   * @param options The cause.
   */
  constructor(kind: FailureKind, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "MilterFailure";
    this.kind = kind;
  }
}

/**
 * One conversation with one milter.
 *
 * @example Refused: nobody listens
 * ```ts
 * import { MilterClient, MilterFailure } from "./client.ts";
 * const error = await MilterClient.open(
 *   { transport: "tcp", hostname: "127.0.0.1", port: 1 },
 *   { connect: 1000, command: 1000, eom: 1000 },
 * ).catch((e) => e);
 * console.log(error instanceof MilterFailure && error.kind); // "unreachable"
 * ```
 */
export class MilterClient {
  #session: MilterSession = placeholderSession();
  readonly #conn: Deno.Conn;
  readonly #timeouts: MilterTimeouts;
  readonly #reader = new PacketReader();
  readonly #pending: { code: number; data: Uint8Array }[] = [];
  readonly #buffer = new Uint8Array(64 * 1024);
  #closed = false;

  private constructor(conn: Deno.Conn, timeouts: MilterTimeouts) {
    this.#conn = conn;
    this.#timeouts = timeouts;
  }

  /** The protocol state. */
  get session(): MilterSession {
    return this.#session;
  }

  /**
   * Connects and negotiates (SMFIC_OPTNEG, version 6, every action and
   * protocol flag tern supports offered).
   *
   * @param endpoint Where the milter listens.
   * @param timeouts The waits.
   * @returns The client, ready for the CONNECT event.
   * @throws {MilterFailure} When it cannot be reached or negotiation fails.
   */
  static async open(endpoint: MilterEndpoint, timeouts: MilterTimeouts): Promise<MilterClient> {
    const conn = await withTimeout<Deno.Conn>(
      endpoint.transport === "tcp"
        ? Deno.connect({ hostname: endpoint.hostname, port: endpoint.port })
        : Deno.connect({ transport: "unix", path: endpoint.path }),
      timeouts.connect,
      (c) => c.close(),
    ).catch((error: unknown) => {
      if (error instanceof MilterFailure) throw error;
      throw new MilterFailure("unreachable", `cannot connect: ${message(error)}`, {
        cause: error,
      });
    });
    // Small packets, each answered: Nagle's algorithm with delayed ACKs would stall every one.
    if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
    const client = new MilterClient(conn, timeouts);
    try {
      await client.#write([encodeOptneg()], timeouts.connect);
      const packet = await client.#read(timeouts.connect);
      const response = decodeResponse(packet.code, packet.data);
      if (response.type !== "optneg") {
        throw new MilterProtocolError(`answered option negotiation with '${response.type}'`);
      }
      client.#session = new MilterSession(response.negotiated);
      return client;
    } catch (error: unknown) {
      client.close();
      throw asFailure(error);
    }
  }

  /**
   * Sends one event (its macros first) and waits for the decision, unless
   * the milter asked not to get it or not to answer it.
   *
   * @param event The event.
   * @param macros Macro names and values for it.
   * @param packets The event's own packets (several for a body).
   * @returns The decision (`continue` when the milter was not asked).
   * @throws {MilterFailure} When the milter fails.
   */
  async event(
    event: MilterEvent,
    macros: ReadonlyArray<readonly [string, string]>,
    packets: readonly Uint8Array[],
  ): Promise<Decision> {
    let plan;
    try {
      plan = this.#session.begin(event);
    } catch (error: unknown) {
      throw asFailure(error);
    }
    if (plan.rejected !== undefined) return plan.rejected;
    if (!plan.send) return { kind: "continue" };
    const timeout = event === "eom" ? this.#timeouts.eom : this.#timeouts.command;
    const macro = this.#session.macros(event, macros);
    try {
      await this.#write(macro === null ? packets : [macro, ...packets], timeout);
      if (!plan.expectsReply) return { kind: "continue" };
      for (;;) {
        const packet = await this.#read(timeout);
        const step = this.#session.respond(event, decodeResponse(packet.code, packet.data));
        if (step.done) return step.decision;
      }
    } catch (error: unknown) {
      this.close();
      throw asFailure(error);
    }
  }

  /** Whether the conversation is over (closed, or failed). */
  get isClosed(): boolean {
    return this.#closed;
  }

  /**
   * Abandons the current message (SMFIC_ABORT; no answer comes).
   *
   * @throws {MilterFailure} When the milter fails.
   */
  async abort(): Promise<void> {
    this.#session.abort();
    try {
      await this.#write([encodeBare("A")], this.#timeouts.command);
    } catch (error: unknown) {
      this.close();
      throw asFailure(error);
    }
  }

  /** Ends the conversation (SMFIC_QUIT) and closes the socket; never throws. */
  async quit(): Promise<void> {
    if (this.#closed) return;
    await this.#write([encodeBare("Q")], this.#timeouts.command).catch(() => {});
    this.close();
  }

  /** Closes the socket. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // already closed by the peer
    }
  }

  async #write(packets: readonly Uint8Array[], timeout: number): Promise<void> {
    if (this.#closed) throw new MilterFailure("closed", "the conversation is closed");
    const total = packets.reduce((n, p) => n + p.length, 0);
    const data = new Uint8Array(total);
    let at = 0;
    for (const p of packets) {
      data.set(p, at);
      at += p.length;
    }
    const work = (async () => {
      for (let done = 0; done < data.length;) done += await this.#conn.write(data.subarray(done));
    })();
    await withTimeout(work, timeout, () => {}, () => this.close());
  }

  async #read(timeout: number): Promise<{ code: number; data: Uint8Array }> {
    const deadline = Date.now() + timeout;
    while (this.#pending.length === 0) {
      if (this.#closed) throw new MilterFailure("closed", "the conversation is closed");
      const left = deadline - Date.now();
      const n = await withTimeout(
        this.#conn.read(this.#buffer),
        Math.max(left, 1),
        () => {},
        () => this.close(),
      );
      if (n === null) throw new MilterFailure("closed", "the milter closed the connection");
      this.#pending.push(...this.#reader.push(this.#buffer.subarray(0, n)));
    }
    return this.#pending.shift()!;
  }
}

/** A session for the few packets before negotiation ends (never asked anything). */
function placeholderSession(): MilterSession {
  const negotiated: Negotiated = { version: 6, actions: 0, protocol: 0, symbols: new Map() };
  return new MilterSession(negotiated);
}

/**
 * Waits for a promise at most `ms`; on expiry throws a timeout failure,
 * runs `onExpire` (closing the socket ends the pending operation), and
 * disposes of a late result with `dispose`.
 */
function withTimeout<T>(
  promise: Promise<T>,
  ms: number,
  dispose: (late: T) => void,
  onExpire: () => void = () => {},
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let expired = false;
  const expiry = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      expired = true;
      onExpire();
      reject(new MilterFailure("timeout", `no answer within ${ms} ms`));
    }, ms);
  });
  promise.then((value) => expired && dispose(value), () => {});
  return Promise.race([promise, expiry]).finally(() => clearTimeout(timer));
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Any error of a conversation as a {@linkcode MilterFailure}. */
function asFailure(error: unknown): MilterFailure {
  if (error instanceof MilterFailure) return error;
  if (error instanceof MilterProtocolError) {
    return new MilterFailure("protocol", error.message, { cause: error });
  }
  if (error instanceof Deno.errors.BadResource || error instanceof Deno.errors.Interrupted) {
    return new MilterFailure("closed", "the connection was closed", { cause: error });
  }
  return new MilterFailure("closed", message(error), { cause: error });
}
