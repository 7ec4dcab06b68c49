/**
 * Receive mail in a Deno program: {@linkcode receiveMail} starts an SMTP
 * server on tern's {@linkcode SmtpServer} and calls your `onMessage` for
 * each message once its content is complete, with the envelope and a light
 * parse of the content. A refusal is a reply value, not an exception.
 *
 * tern's limits and its SMTP smuggling defence are on, because they live in
 * the server and its session: a message over `maxMessageSize` gets
 * `552 5.3.4`, a bare CR or LF in the content `550 5.6.11` (RFC 5321
 * §2.3.8), and `onMessage` is never called for either.
 *
 * @module
 */

import tls from "node:tls";
import { isPositive, queuedReply, REPLIES, type Reply } from "../smtp/reply.ts";
import { type ConnectionInfo, type MessageSink, SmtpServer } from "../smtp/server.ts";
import type { TlsSource } from "../smtp/server_types.ts";
import type { Envelope } from "../smtp/envelope.ts";
import { TlsContext } from "../smtp/tls_context.ts";
import { type ParsedMessage, parseMessage } from "./parse_message.ts";

/** The envelope of a received message (RFC 5321 §2.3.1), and who sent it. */
export interface ReceivedEnvelope {
  /** MAIL FROM as `local@domain`, or `""` for the null reverse-path `<>` (a bounce). */
  readonly from: string;
  /** The accepted RCPT TO addresses, in order, as `local@domain`. */
  readonly to: readonly string[];
  /** The client's IP address. */
  readonly clientAddress: string;
  /** The name the client gave in EHLO or HELO. */
  readonly clientName: string;
  /** The TLS protocol and cipher when the message came over STARTTLS, else `null`. */
  readonly tls: { readonly protocol: string; readonly cipher: string } | null;
  /** The user the client authenticated as, or `null` (this server offers no AUTH). */
  readonly authenticatedAs: string | null;
}

/**
 * A message as {@linkcode receiveMail} hands it to `onMessage`: the
 * envelope, the raw content and a light parse of it (see
 * {@linkcode ParsedMessage}; not a full MIME parser).
 */
export interface ReceivedMessage extends ParsedMessage {
  /** A short id for logs, also given to the client in the `250` reply. */
  readonly id: string;
  /** Who sent it, and to whom. */
  readonly envelope: ReceivedEnvelope;
  /** The content exactly as received, dot-unstuffed, with CRLF line ends. */
  readonly raw: Uint8Array;
  /**
   * The value of the first header field with this name (case-insensitive), unfolded.
   *
   * @param name A field name, such as `"Content-Type"`.
   */
  header(name: string): string | undefined;
}

/**
 * What a handler returns: nothing to accept, or a reply to send instead,
 * such as `REPLIES.relayDenied` or `reply(550, "5.7.1", "No")`.
 */
export type HandlerResult = Reply | undefined | void;

/** Options of {@linkcode receiveMail}. */
export interface ReceiveMailOptions {
  /**
   * Called once per message, after the final `<CRLF>.<CRLF>`, with the
   * content complete. Return nothing to accept it (`250`), or a refusal
   * (a 4yz or 5yz reply). When it throws, the client gets `451 4.3.0` (try
   * again later) and the error goes to `onError`.
   */
  onMessage: (message: ReceivedMessage) => HandlerResult | Promise<HandlerResult>;
  /**
   * Called for each RCPT TO; return nothing to accept the recipient, or a
   * refusal. Without it, every recipient is accepted: a server on a public
   * address should say which domains it takes. When it throws, `451 4.3.0`.
   */
  onRecipient?: (
    address: string,
    envelope: Omit<ReceivedEnvelope, "to">,
  ) => HandlerResult | Promise<HandlerResult>;
  /** Called with what a handler threw (the client got `451 4.3.0`). */
  onError?: (error: unknown) => void;
  /** The name in the banner and the EHLO reply. @default {"localhost"} */
  hostname?: string;
  /** The address to listen on. @default {"127.0.0.1"} */
  address?: string;
  /** The port; 0 picks a free one (see {@linkcode MailReceiver.port}). @default {25} */
  port?: number;
  /**
   * A certificate and key, each a PEM text or a path to a PEM file. With
   * them, STARTTLS is offered (RFC 3207).
   */
  tls?: { cert: string; key: string };
  /**
   * The largest message in octets, advertised as SIZE (RFC 1870). Each
   * message is held in memory until `onMessage` returns, so this is also a
   * memory bound: it must be positive. @default {26214400}
   */
  maxMessageSize?: number;
  /** Recipients per message; more get `452 4.5.3`. @default {100} */
  maxRecipients?: number;
  /** Wait for a command, ms (RFC 5321 §4.5.3.2.7). @default {300000} */
  commandTimeout?: number;
  /** Wait for more content, ms (RFC 5321 §4.5.3.2.6). @default {600000} */
  dataTimeout?: number;
}

/** A running server from {@linkcode receiveMail}. */
export interface MailReceiver {
  /** The address it listens on. */
  readonly address: string;
  /** The port it listens on (the real one when 0 was asked). */
  readonly port: number;
  /**
   * Stops: no new connections; transactions in flight may finish for
   * `graceMs`, then the rest get `421` and are cut.
   *
   * @param graceMs How long to wait for transactions in flight. @default {10000}
   */
  close(graceMs?: number): Promise<void>;
  /** Closes, for `await using`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Starts an SMTP server that hands each message it receives to `onMessage`.
 *
 * @param options The handlers, and where and how to listen.
 * @returns The running server, with its port.
 * @throws {RangeError} When `maxMessageSize` is not a positive number.
 * @throws {Error} When the address cannot be bound, or the certificate not loaded.
 *
 * @example Receive one message
 * ```ts
 * import { receiveMail } from "./receive_mail.ts";
 *
 * const server = await receiveMail({
 *   port: 0,
 *   onMessage: (message) => {
 *     console.log(message.envelope.from, message.envelope.to, message.subject);
 *     // "alice@example.test" ["bob@example.test"] "Hello"
 *   },
 * });
 *
 * // A client in a few lines: one command, one reply (a real one is SmtpClient).
 * const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
 * const buffer = new Uint8Array(4096);
 * const say = async (text: string) => {
 *   if (text !== "") await conn.write(new TextEncoder().encode(text));
 *   return new TextDecoder().decode(buffer.subarray(0, (await conn.read(buffer)) ?? 0));
 * };
 * await say(""); // the 220 banner
 * await say("HELO client.test\r\n");
 * await say("MAIL FROM:<alice@example.test>\r\n");
 * await say("RCPT TO:<bob@example.test>\r\n");
 * await say("DATA\r\n");
 * console.log(await say("Subject: Hello\r\n\r\nHi Bob\r\n.\r\n")); // "250 Ok: queued as R..."
 * conn.close();
 * await server.close();
 * ```
 */
export async function receiveMail(options: ReceiveMailOptions): Promise<MailReceiver> {
  const maxMessageSize = options.maxMessageSize ?? 26_214_400;
  if (!(Number.isSafeInteger(maxMessageSize) && maxMessageSize > 0)) {
    throw new RangeError(
      `maxMessageSize must be a positive number of octets (messages are held in memory), not ${maxMessageSize}`,
    );
  }
  const address = options.address ?? "127.0.0.1";
  const source = options.tls ? await loadCertificate(options.tls) : null;
  // The handlers learn MAIL FROM one question before RCPT TO asks about it.
  const senders = new WeakMap<ConnectionInfo, string>();
  const server = new SmtpServer({
    hostname: options.hostname ?? "localhost",
    address,
    port: options.port ?? 25,
    maxMessageSize,
    ...(options.maxRecipients !== undefined && { maxRecipients: options.maxRecipients }),
    ...(options.commandTimeout !== undefined && { commandTimeout: options.commandTimeout }),
    ...(options.dataTimeout !== undefined && { dataTimeout: options.dataTimeout }),
    tls: source,
    startTls: source !== null,
    handlers: {
      sender: (reversePath, _parameters, connection) => {
        senders.set(connection, reversePath);
        return REPLIES.senderOk;
      },
      recipient: (forwardPath, _parameters, connection) =>
        answer(
          () =>
            options.onRecipient?.(
              forwardPath,
              clientOf(connection, senders.get(connection) ?? ""),
            ),
          REPLIES.recipientOk,
          options.onError,
        ),
      open: (envelope, connection) =>
        Promise.resolve(collector(envelope, connection, options.onMessage, options.onError)),
    },
  });
  const bound = await server.listen();
  const close = (graceMs?: number) => server.close(graceMs);
  return {
    address: bound.address,
    port: bound.port,
    close,
    [Symbol.asyncDispose]: () => close(),
  };
}

/** Runs a handler; nothing means `accepted`, a throw means `451 4.3.0`. */
async function answer(
  handler: () => HandlerResult | Promise<HandlerResult>,
  accepted: Reply,
  onError: ((error: unknown) => void) | undefined,
): Promise<Reply> {
  try {
    const result = await handler();
    if (result === undefined) return accepted;
    if (!isReply(result)) throw new TypeError(`A handler returned ${String(result)}, not a reply`);
    return result;
  } catch (error: unknown) {
    reportError(onError, error);
    return REPLIES.storageFailed;
  }
}

/** A final reply must be a completion or a refusal: 2yz, 4yz or 5yz (RFC 5321 §4.2.1). */
function isReply(value: unknown): value is Reply {
  if (typeof value !== "object" || value === null) return false;
  const { code, lines } = value as Partial<Reply>;
  return Number.isInteger(code) && (isPositive(value as Reply) || (code! >= 400 && code! < 600)) &&
    Array.isArray(lines) && lines.every((l) => typeof l === "string" && !/[\r\n]/.test(l));
}

function reportError(onError: ((error: unknown) => void) | undefined, error: unknown): void {
  try {
    onError?.(error);
  } catch {
    // An error handler that fails must not take the session down.
  }
}

/** What the handlers may know of the client, copied now: the connection changes. */
function clientOf(connection: ConnectionInfo, from: string): Omit<ReceivedEnvelope, "to"> {
  return {
    from,
    clientAddress: connection.remoteAddress,
    clientName: connection.clientName,
    tls: connection.tls,
    authenticatedAs: connection.authenticatedAs,
  };
}

let received = 0;

/** A short id, unique within the process. */
function nextId(): string {
  return `R${Date.now().toString(36).toUpperCase()}${(++received).toString(36).toUpperCase()}`;
}

/** A sink that keeps the content in memory (at most `maxMessageSize`: the session refuses more). */
function collector(
  envelope: Envelope,
  connection: ConnectionInfo,
  onMessage: ReceiveMailOptions["onMessage"],
  onError: ((error: unknown) => void) | undefined,
): MessageSink {
  const chunks: Uint8Array[] = [];
  const sender = clientOf(connection, envelope.reversePath);
  return {
    write(chunk) {
      chunks.push(chunk.slice()); // the session reuses its buffers
      return Promise.resolve();
    },
    commit() {
      const id = nextId();
      return answer(
        () => {
          const raw = concat(chunks);
          const parsed = parseMessage(raw);
          const message: ReceivedMessage = {
            id,
            envelope: { ...sender, to: [...envelope.forwardPaths] },
            raw,
            ...parsed,
            header: (name) =>
              parsed.headers.find((h) => h.name.toLowerCase() === name.toLowerCase())?.value,
          };
          return onMessage(message);
        },
        queuedReply(id),
        onError,
      );
    },
    abort() {
      chunks.length = 0;
      return Promise.resolve();
    },
  };
}

function concat(chunks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.length;
  }
  return out;
}

/** Loads `tls.cert` and `tls.key`, each a PEM text or a file path. */
async function loadCertificate(
  files: { cert: string; key: string },
): Promise<TlsSource> {
  const isPem = (s: string) => s.includes("-----BEGIN");
  if (!isPem(files.cert) && !isPem(files.key)) {
    // Files: TlsContext checks them and says clearly what is wrong.
    return await TlsContext.load(files);
  }
  const read = (s: string) => isPem(s) ? Promise.resolve(s) : Deno.readTextFile(s);
  const [cert, key] = await Promise.all([read(files.cert), read(files.key)]);
  try {
    // RFC 8314 §4.1 and RFC 8996: nothing older than TLS 1.2.
    return { secureContext: tls.createSecureContext({ cert, key, minVersion: "TLSv1.2" }) };
  } catch (error: unknown) {
    throw new Error("Cannot use the TLS certificate and key: not a PEM certificate and its key", {
      cause: error,
    });
  }
}
