/**
 * The public types of the SMTP server's socket adapter: what the handlers
 * know of a connection ({@linkcode ConnectionInfo}), the questions they
 * answer ({@linkcode ServerHandlers}) and where content goes
 * ({@linkcode MessageSink}), the server's options, and the events it reports
 * for logs and traces. `smtp/server.ts` re-exports them all.
 *
 * @module
 */

import type tls from "node:tls";
import type { ConnectionCounts } from "./connection_counts.ts";
import type { AuthLimiter } from "./auth_limiter.ts";
import type { Envelope } from "./envelope.ts";
import type { FdBudget } from "./fd_budget.ts";
import type { Parameters } from "./command.ts";
import type { Reply } from "./reply.ts";
import type { SaslCredentials, SaslMechanism } from "./sasl.ts";
import type { ReplyContext, ServerSessionOptions } from "./server_session.ts";

/** What the handlers know about the connection a question comes from. */
export interface ConnectionInfo {
  /** A short id for logs, unique within the process. */
  readonly id: string;
  /** The client's IP address. */
  readonly remoteAddress: string;
  /** The client's port. */
  readonly remotePort: number;
  /** Our IP address the client connected to. */
  readonly localAddress: string;
  /** Our port the client connected to. */
  readonly localPort: number;
  /** The name the client gave in EHLO/HELO. */
  readonly clientName: string;
  /** Whether the client said EHLO (ESMTP) rather than HELO. */
  readonly isExtended: boolean;
  /** The TLS protocol and cipher when the connection is encrypted, else `null`. */
  readonly tls: { readonly protocol: string; readonly cipher: string } | null;
  /** The authenticated user, or `null`. */
  readonly authenticatedAs: string | null;
}

/** Where the content of one message goes while it arrives. */
export interface MessageSink {
  /**
   * Stores the next piece of content.
   *
   * @param chunk Decoded content octets.
   */
  write(chunk: Uint8Array): Promise<void>;
  /**
   * The content is complete: make the message durable.
   *
   * @returns The final reply: `250 2.0.0 Ok: queued as <ID>` only once it is durable, else a refusal.
   */
  commit(): Promise<Reply>;
  /** Throw away what was stored. */
  abort(): Promise<void>;
}

/** The caller's answers to the session's questions. */
export interface ServerHandlers {
  /**
   * Accept this sender? Default: yes.
   *
   * @param reversePath `local@domain`, or `""` for `<>`.
   * @param parameters MAIL FROM parameters.
   * @param connection Who asks.
   * @returns A positive reply to accept, or the refusal.
   */
  sender?(
    reversePath: string,
    parameters: Parameters,
    connection: ConnectionInfo,
  ): Promise<Reply> | Reply;
  /**
   * Accept this recipient?
   *
   * @param forwardPath `local@domain` (or `Postmaster`).
   * @param parameters RCPT TO parameters.
   * @param connection Who asks.
   * @returns A positive reply to accept, or the refusal.
   */
  recipient(
    forwardPath: string,
    parameters: Parameters,
    connection: ConnectionInfo,
  ): Promise<Reply> | Reply;
  /**
   * Content is about to arrive: open a place for it.
   *
   * @param envelope The transaction so far.
   * @param connection Who sends it.
   * @returns The sink, or a refusal (such as `451 4.3.0` when the store is down).
   */
  open(envelope: Envelope, connection: ConnectionInfo): Promise<MessageSink | Reply>;
  /**
   * Are these credentials right? Default: no one can log in. Called only
   * under the session's AUTH rules (RFC 4954 §4: encrypted, outside a
   * transaction, once). Never log or echo `credentials.password`.
   *
   * @param credentials What the client presented.
   * @param connection Who asks.
   * @returns `235 2.7.0` to accept, `535 5.7.8` to refuse (counted as a failure
   *   by the {@linkcode AuthLimiter}), or `454 4.7.0` when it cannot be checked now.
   *   A `235` may carry a `user` field (a string): the name the session is then
   *   authenticated as, when the checker knows it better than what was typed.
   */
  authenticate?(credentials: SaslCredentials, connection: ConnectionInfo): Promise<Reply> | Reply;
}

/** What the server needs of a certificate: the context for the next handshake (a {@linkcode TlsContext} fits). */
export interface TlsSource {
  /** The `node:tls` secure context to hand to the next handshake. */
  readonly secureContext: tls.SecureContext;
}

/** Options of {@linkcode SmtpServer}. */
export interface SmtpServerOptions extends ServerSessionOptions {
  /** The address to listen on. */
  address: string;
  /** The port; 0 picks a free one. */
  port: number;
  /**
   * A Unix-domain socket to listen on instead of `address` and `port` (local
   * submission); the caller removes a stale file first and sets its mode.
   * Clients then have no address: `remoteAddress` is `""`.
   */
  path?: string;
  /**
   * Shares the port with other listening sockets (SO_REUSEPORT, Linux): the
   * kernel spreads new connections among them, one thread each. The
   * watchdog's probe cannot tell its own socket from another of the group,
   * so a server that shares its port runs without it (`watchdogInterval` 0);
   * its `fdBudget` must keep it clear of the open-file limit. @default {false}
   */
  reusePort?: boolean;
  /**
   * The open connections counted against `maxConnections` and
   * `maxConnectionsPerIp`: share one between the threads that accept on the
   * same port (connection_counts.ts). @default {this server's own}
   */
  connectionCounts?: ConnectionCounts;
  /** Answers to the session's questions. */
  handlers: ServerHandlers;
  /** Wait for a command, ms (RFC 5321 §4.5.3.2.7: at least 5 minutes). @default {300000} */
  commandTimeout?: number;
  /** Wait for more content during DATA/BDAT, ms (§4.5.3.2.6: at least 3 minutes). @default {600000} */
  dataTimeout?: number;
  /** Connections at once, in total. @default {1000} */
  maxConnections?: number;
  /** Connections at once from one address (as grouped by `keyOf`). @default {50} */
  maxConnectionsPerIp?: number;
  /**
   * Which addresses count as one client for `maxConnectionsPerIp` (an IPv6
   * client usually holds a whole /64). @default {the address itself}
   */
  keyOf?: (address: string) => string;
  /** Wait for the TLS handshake to complete, ms (implicit TLS and STARTTLS). @default {10000} */
  tlsHandshakeTimeout?: number;
  /**
   * The open-file budget for client sockets; share one between listeners.
   * Without it, only `maxConnections` bounds them.
   */
  fdBudget?: FdBudget;
  /** How often the watchdog checks that the listener still accepts, ms; 0: never. @default {10000} */
  watchdogInterval?: number;
  /** Called for each connection event worth logging. */
  onEvent?: (event: ServerLogEvent) => void;
  /**
   * The certificate. With it, STARTTLS is offered (RFC 3207) unless
   * `startTls` is `false`, or, with `implicitTls`, every connection starts
   * with the TLS handshake (RFC 8314 §3). Without it, neither.
   */
  tls?: TlsSource | null;
  /**
   * Counts failed AUTH per client address; share one between listeners.
   * Without it, failures are only counted per session (`maxErrors`).
   */
  authLimiter?: AuthLimiter;
  /**
   * Clients whose AUTH failures are not counted against their address, only
   * against the account they try (a webmail on the same host: one address
   * for all its users, which must not lock them all out). @default {none}
   */
  authAddressExempt?: (remoteAddress: string) => boolean;
  /**
   * How long to wait before the banner, ms, or a function of the client's
   * address. A client that sends anything meanwhile is refused with
   * `421 4.7.0` (RFC 5321 §4.3.1: the client waits for the greeting). @default {0}
   */
  greetingDelay?: number | ((remoteAddress: string) => number);
}

/** What the adapter reports for logs and traces. */
export type ServerLogEvent =
  | { readonly type: "connect"; readonly connection: ConnectionInfo }
  | { readonly type: "disconnect"; readonly connection: ConnectionInfo; readonly reason: string }
  | { readonly type: "refused"; readonly remoteAddress: string; readonly reason: string }
  /**
   * Connections are being refused for want of room (`began`: the first of a
   * burst, with why; `ended`: no refusal for a few seconds, with how many).
   * Reported once per burst, not once per connection.
   */
  | {
    readonly type: "overload";
    readonly state: "began" | "ended";
    readonly reason: string;
    /** Client sockets open now (all listeners, when a budget is shared). */
    readonly open: number;
    /** Connections refused in the burst so far. */
    readonly refused: number;
  }
  /** The listener stopped accepting (found by the watchdog) and was opened again, or could not be. */
  | {
    readonly type: "relisten";
    readonly address: string;
    readonly port: number;
    readonly error: string | null;
  }
  | { readonly type: "command"; readonly connection: ConnectionInfo; readonly line: string }
  /** The content of a message ended: `octets` of it came (for traces, which never show content). */
  | { readonly type: "data"; readonly connection: ConnectionInfo; readonly octets: number }
  /** A reply sent, and what it answers (the step, and the envelope as it stood). */
  | {
    readonly type: "reply";
    readonly connection: ConnectionInfo;
    readonly reply: Reply;
    /** Set by the server for every reply it sends. */
    readonly context?: ReplyContext;
  }
  | { readonly type: "error"; readonly connection: ConnectionInfo; readonly error: unknown }
  /** The TLS handshake is done (STARTTLS or implicit TLS). */
  | {
    readonly type: "tls";
    readonly connection: ConnectionInfo;
    readonly protocol: string;
    readonly cipher: string;
  }
  /**
   * An AUTH attempt: `succeeded` (the user is in `connection.authenticatedAs`),
   * `failed`, or `locked` (refused unchecked: too many failures from this
   * address). Failed attempts carry no user name: people type passwords there.
   */
  | {
    readonly type: "auth";
    readonly connection: ConnectionInfo;
    readonly mechanism: SaslMechanism;
    readonly outcome: "succeeded" | "failed" | "locked";
    /** Failures remembered for this address (with an AuthLimiter; 0 when the address is exempt). */
    readonly failures?: number;
    /** Failures remembered for the account tried (with an AuthLimiter). */
    readonly accountFailures?: number;
  };

/** The options {@linkcode SmtpServer.reconfigure} may change on a running server. */
export type ServerLimits = Partial<
  Pick<
    SmtpServerOptions,
    | "hostname"
    | "maxMessageSize"
    | "maxRecipients"
    | "maxErrors"
    | "maxConnections"
    | "maxConnectionsPerIp"
    | "commandTimeout"
    | "dataTimeout"
    | "tlsHandshakeTimeout"
  >
>;
