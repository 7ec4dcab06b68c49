/**
 * The LMTP mailbox transport (RFC 2033): local recipients handed to a
 * delivery agent such as Dovecot instead of written to Maildir files.
 *
 * One transaction per message: LHLO once per connection, then MAIL FROM,
 * one RCPT per local recipient (its mailbox, the account address tern
 * resolved), DATA, and after the end of the content one reply per accepted
 * recipient (§4.2), each that recipient's outcome: 2yz delivered, 4yz
 * deferred, 5yz bounced. Connections are kept in a small pool and reused
 * (the session says RSET before each later transaction); an idle one is
 * closed after a while, before the server gives up on it.
 *
 * A connection that fails, times out or breaks the protocol defers the
 * recipients that have no reply of their own yet: the queue tries again.
 * Those whose reply to the content was read before the line broke keep it,
 * so a recipient already filed never gets a second copy on the retry. The
 * LMTP server writes `Return-Path:` and `Delivered-To:` itself (Dovecot
 * does), so tern sends the content as queued, with its `Received:` line.
 *
 * @module
 */

import type { Logger } from "../log/logger.ts";
import type {
  ClaimedMessage,
  QueuedMessage,
  RecipientOutcome,
  ReplySummary,
} from "../queue/types.ts";
import type { SocketEndpoint } from "../config/types.ts";
import { SmtpClient, SmtpConnectionError } from "../smtp/client.ts";
import type { OutgoingMessage, Reply, TransactionResult } from "../smtp/client.ts";
import { logOutcome } from "./delivery.ts";
import { LOCAL } from "../smtp/client_commands.ts";

/** Options of {@linkcode LmtpTransport}. */
export interface LmtpTransportOptions {
  /** The LMTP server, read at each delivery (a reload may change it); `undefined`: none. */
  readonly endpoint: () => SocketEndpoint | undefined;
  /** Our name for LHLO. */
  readonly hostname: string;
  /** Where delivery lines go. */
  readonly logger: Logger;
  /** The clock. @default {Date.now} */
  readonly now?: () => number;
  /** How long an unused connection is kept open, ms. @default {30000} */
  readonly idleMs?: number;
  /** How many unused connections are kept per server. @default {4} */
  readonly maxIdle?: number;
  /** Wait for the connection, ms. @default {10000} */
  readonly connectTimeoutMs?: number;
  /** Wait for each reply before the content (greeting, LHLO, MAIL, RCPT, DATA), ms. @default {60000} */
  readonly commandTimeoutMs?: number;
  /** Wait for each reply after the content, ms (filing into a mailbox can be slow). @default {600000} */
  readonly dataTimeoutMs?: number;
}

/** An open connection waiting for its next message. */
interface Idle {
  readonly client: SmtpClient;
  readonly timer: ReturnType<typeof setTimeout>;
}

/** The RFC 3463 status of a failure with no reply: no connection at all, or one lost on the way. */
const CANNOT_CONNECT = "4.4.1";
const CONNECTION_LOST = "4.4.2";

/** Writes an endpoint as in the configuration, without the scheme. */
export function endpointName(endpoint: SocketEndpoint): string {
  if (endpoint.path !== undefined) return endpoint.path;
  return endpoint.host.includes(":")
    ? `[${endpoint.host}]:${endpoint.port}`
    : `${endpoint.host}:${endpoint.port}`;
}

/** A reply as the queue keeps it; a reply without an enhanced status gets its class's `X.0.0`. */
function summary(r: Reply): ReplySummary {
  const enhanced = r.enhancedStatus ??
    (r.code >= 500 ? "5.0.0" : r.code >= 400 ? "4.0.0" : "2.0.0");
  return { code: r.code, enhancedStatus: enhanced, text: r.lines.join(" ").trim() };
}

/** A summary back as a reply (the text as its one line). */
function asReply(s: ReplySummary): Reply {
  return { code: s.code, enhancedStatus: s.enhancedStatus, lines: [s.text] };
}

/** RFC 5321 §4.2.1: 2yz done, 5yz never (bounce now), anything else (and no reply, code 0) later. */
function statusOf(r: Reply): RecipientOutcome["status"] {
  if (r.code >= 200 && r.code < 300) return "sent";
  return r.code >= 500 && r.code < 600 ? "bounced" : "deferred";
}

/** Whether an address needs SMTPUTF8 (RFC 6531 §3.4): a non-ASCII octet. */
function isNonAscii(text: string): boolean {
  // deno-lint-ignore no-control-regex
  return /[^\x00-\x7f]/.test(text);
}

/**
 * Delivers local recipients over LMTP.
 *
 * @example Deliver to a Dovecot LMTP socket
 * ```ts ignore
 * import { LmtpTransport } from "./lmtp_transport.ts";
 * import { NULL_LOGGER } from "../log/logger.ts";
 * const lmtp = new LmtpTransport({
 *   endpoint: () => ({ path: "/run/dovecot/lmtp" }),
 *   hostname: "mx.example.test",
 *   logger: NULL_LOGGER,
 * });
 * // const outcomes = await lmtp.deliver(claim, [0, 1], openContent);
 * await lmtp.close();
 * ```
 */
export class LmtpTransport {
  readonly #options: LmtpTransportOptions;
  readonly #now: () => number;
  /** Unused connections by endpoint name, the most recent last. */
  readonly #idle = new Map<string, Idle[]>();
  #closed = false;

  /**
   * Makes the transport; it connects only when it has mail to deliver.
   *
   * @param options The server, our name, the logger and the timeouts.
   */
  constructor(options: LmtpTransportOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Delivers a message to the given local recipients in one LMTP transaction.
   * Recipients without a mailbox and indices out of range get no outcome.
   *
   * @param claim The message, and its content when it is in memory.
   * @param indices Indices into `message.recipients`.
   * @param openContent Opens the stored content (when `claim.content` does not hold it).
   * @returns One outcome per local recipient, in the order of `indices`.
   */
  async deliver(
    claim: Pick<ClaimedMessage, "message" | "content">,
    indices: readonly number[],
    openContent: () => ReadableStream<Uint8Array>,
  ): Promise<RecipientOutcome[]> {
    const { message } = claim;
    const local = indices.filter((i) => (message.recipients[i]?.mailbox ?? null) !== null);
    if (local.length === 0) return [];
    const endpoint = this.#options.endpoint();
    if (endpoint === undefined || this.#closed) {
      return this.#fail(message, local, "none", {
        code: 0,
        enhancedStatus: "4.3.5", // RFC 3463 X.3.5: system incorrectly configured
        text: this.#closed ? "the LMTP transport is stopped" : "no LMTP server configured",
      });
    }
    const name = endpointName(endpoint);
    const hop = `lmtp:${name}`;
    const outgoing: OutgoingMessage = {
      reversePath: message.envelope.reversePath,
      recipients: local.map((i) => ({ address: message.recipients[i]!.mailbox! })),
      body: message.envelope.body,
      // Only a UTF-8 address needs SMTPUTF8 here: the mailbox store takes UTF-8 headers as they are.
      smtputf8: isNonAscii(message.envelope.reversePath) ||
        local.some((i) => isNonAscii(message.recipients[i]!.mailbox!)),
      size: message.size,
    };
    const content = (): ReadableStream<Uint8Array> =>
      claim.content === undefined ? openContent() : ReadableStream.from([claim.content]);
    let result: TransactionResult;
    try {
      result = await this.#send(endpoint, name, outgoing, content);
    } catch (error: unknown) {
      const reason = error instanceof Error ? error.message : String(error);
      if (!(error instanceof SmtpConnectionError)) {
        // Reading the queued content failed: nothing the LMTP server did.
        return this.#fail(message, local, hop, {
          code: 0,
          enhancedStatus: "4.3.0",
          text: `cannot read the queued content: ${reason}`,
        });
      }
      const status = /^Cannot connect/.test(reason) ? CANNOT_CONNECT : CONNECTION_LOST;
      const failure: ReplySummary = {
        code: error.reply?.code ?? 0,
        enhancedStatus: status,
        text: `LMTP server ${name}: ${reason.replace(/\s+/g, " ").slice(0, 300)}`,
      };
      if (error.partial === null) return this.#fail(message, local, hop, failure);
      // RFC 2033 §4.2: the replies read before the line broke stand; only the rest is retried.
      result = {
        reply: error.partial.reply,
        recipients: error.partial.recipients.map((r) =>
          r.reply === LOCAL.incomplete ? { ...r, reply: asReply(failure) } : r
        ),
      };
    }
    const now = this.#now();
    return local.map((index, i) => {
      const reply = result.recipients[i]?.reply;
      const o: RecipientOutcome = reply === undefined
        ? {
          index,
          status: "deferred",
          reply: { code: 0, enhancedStatus: CONNECTION_LOST, text: "no reply" },
        }
        : { index, status: statusOf(reply), reply: summary(reply) };
      // Like a relayed line: the LMTP server's code, and its reply for a delivery too.
      const extra = { transport: "lmtp", code: o.reply.code === 0 ? undefined : o.reply.code };
      logOutcome(
        this.#options.logger,
        message,
        o,
        hop,
        now,
        o.status === "sent" ? { ...extra, reply: o.reply.text } : extra,
      );
      return o;
    });
  }

  /**
   * Closes every unused connection; deliveries after this defer.
   *
   * @returns When the connections are closed.
   */
  async close(): Promise<void> {
    this.#closed = true;
    const all = [...this.#idle.values()].flat();
    this.#idle.clear();
    await Promise.all(all.map((idle) => {
      clearTimeout(idle.timer);
      return idle.client.close();
    }));
  }

  /**
   * One transaction on a pooled connection, or a new one. A reused
   * connection found dead before any content went out is replaced once: the
   * server cannot have filed the message then.
   */
  async #send(
    endpoint: SocketEndpoint,
    name: string,
    outgoing: OutgoingMessage,
    content: () => ReadableStream<Uint8Array>,
  ): Promise<TransactionResult> {
    const reused = this.#take(name);
    if (reused !== null) {
      let opened = false;
      try {
        const result = await reused.send(outgoing, () => {
          opened = true;
          return content();
        });
        this.#keep(name, reused);
        return result;
      } catch (error: unknown) {
        if (opened || !(error instanceof SmtpConnectionError)) throw error;
        // Closed while idle: try a new connection.
      }
    }
    const client = await this.#connect(endpoint);
    try {
      const result = await client.send(outgoing, content);
      this.#keep(name, client);
      return result;
    } catch (error: unknown) {
      await client.close();
      throw error;
    }
  }

  #connect(endpoint: SocketEndpoint): Promise<SmtpClient> {
    const o = this.#options;
    const where = endpoint.path !== undefined
      ? { host: "localhost", port: 0, path: endpoint.path }
      : { host: endpoint.host, port: endpoint.port };
    const command = o.commandTimeoutMs ?? 60_000;
    const data = o.dataTimeoutMs ?? 600_000;
    return SmtpClient.connect({
      ...where,
      helo: o.hostname,
      lmtp: true,
      tls: "none",
      connectTimeoutMs: o.connectTimeoutMs ?? 10_000,
      commandTimeoutMs: command,
      dataInitiationTimeoutMs: command,
      dataBlockTimeoutMs: data,
      dataTerminationTimeoutMs: data,
    });
  }

  /** An unused connection that still looks alive, or `null`. */
  #take(name: string): SmtpClient | null {
    const list = this.#idle.get(name);
    while (list !== undefined && list.length > 0) {
      const idle = list.pop()!;
      clearTimeout(idle.timer);
      if (idle.client.isUsable) return idle.client;
      void idle.client.close();
    }
    return null;
  }

  /** Keeps a connection for the next message, or closes it when the pool is full. */
  #keep(name: string, client: SmtpClient): void {
    const list = this.#idle.get(name) ?? [];
    if (this.#closed || !client.isUsable || list.length >= (this.#options.maxIdle ?? 4)) {
      void client.close();
      return;
    }
    const timer = setTimeout(() => {
      const at = list.findIndex((idle) => idle.client === client);
      if (at >= 0) list.splice(at, 1);
      void client.close();
    }, this.#options.idleMs ?? 30_000);
    Deno.unrefTimer(timer); // an idle connection never keeps the process alive
    list.push({ client, timer });
    this.#idle.set(name, list);
  }

  /** The same outcome for every recipient, logged. */
  #fail(
    message: QueuedMessage,
    indices: readonly number[],
    hop: string,
    reply: ReplySummary,
  ): RecipientOutcome[] {
    const now = this.#now();
    return indices.map((index) => {
      const o: RecipientOutcome = { index, status: "deferred", reply };
      logOutcome(this.#options.logger, message, o, hop, now, { transport: "lmtp" });
      return o;
    });
  }
}
