/**
 * SMTP for Deno: the RFC 5321 server dialogue as a state machine with no I/O
 * ({@linkcode ServerSession}), the parsers it is built from (commands, paths,
 * the data phase), the reply table ({@linkcode REPLY_TABLE}: each reply tern
 * sends with the rule behind it) and the annotations that explain SMTP, a
 * thin TCP server ({@linkcode SmtpServer}) that runs sessions with your own
 * handlers, and the client side: {@linkcode ClientSession} and
 * {@linkcode SmtpClient}.
 *
 * @example Run a session in memory
 * ```ts
 * import { REPLIES, ServerSession } from "./mod.ts";
 *
 * const session = new ServerSession({ hostname: "mx.example.test" });
 * session.start();
 * const events = session.receive(new TextEncoder().encode("EHLO client.test\r\n"));
 * const first = events.find((e) => e.type === "send");
 * console.log(first?.type === "send" && new TextDecoder().decode(first.bytes).split("\r\n")[0]);
 * // "250-mx.example.test greets client.test"
 * console.log(REPLIES.noSuchUser.code); // 550
 * ```
 *
 * @module
 */

// The main type: the server dialogue as a state machine.
export {
  type ReplyContext,
  type ReplyStage,
  SEQUENCE,
  ServerSession,
  type ServerSessionOptions,
  type SessionEvent,
  type SessionState,
} from "./server_session.ts";
export {
  type Command,
  type Parameters,
  parseCommand,
  parseParameters,
  type Verb,
} from "./command.ts";
export { DataDecoder, type DecodeResult } from "./data_decoder.ts";
export type { BodyType, DsnNotify, Envelope, RecipientDsn } from "./envelope.ts";
export {
  formatMailbox,
  isAddressLiteral,
  isDomain,
  isIpv4,
  isIpv6,
  isNonAscii,
  type Mailbox,
  MAX_PATH_OCTETS,
  type ParsedPath,
  parseMailbox,
  parsePath,
  PathSyntaxError,
} from "./path.ts";
export { formatDate, formatReceived, protocolName, type ReceivedInfo } from "./received.ts";
export {
  formatReply,
  isPermanent,
  isPositive,
  isTransient,
  queuedReply,
  REPLIES,
  type Replies,
  type Reply,
  reply,
  REPLY_TABLE,
  type ReplyEntry,
  type ReplyTable,
  type ReplyText,
} from "./reply.ts";
export {
  type ConnectionInfo,
  type MessageSink,
  type ServerHandlers,
  type ServerLimits,
  type ServerLogEvent,
  SmtpServer,
  type SmtpServerOptions,
} from "./server.ts";
export {
  SmtpAuthError,
  SmtpClient,
  type SmtpClientOptions,
  SmtpConnectionError,
  TlsHandshakeError,
  type TlsInfo,
} from "./client.ts";
export {
  type Awaiting,
  type ClientEvent,
  ClientSession,
  type ClientSessionOptions,
  type ClientState,
  type Extensions,
  NO_EXTENSIONS,
  type OutgoingMessage,
  type OutgoingRecipient,
  parseEhlo,
  type RecipientResult,
  type TransactionResult,
  xtext,
} from "./client_session.ts";
export { DataEncoder, type DataEncoderOptions } from "./data_encoder.ts";
export type { TlsSource } from "./server.ts";
export {
  decodeSaslResponse,
  encodeBase64Utf8,
  parsePlainMessage,
  parseSaslMechanism,
  SASL_MECHANISMS,
  type SaslCredentials,
  SaslExchange,
  type SaslMechanism,
  type SaslStep,
} from "./sasl.ts";
export {
  TlsContext,
  type TlsContextOptions,
  TlsError,
  type TlsFiles,
  type TlsReloadEvent,
} from "./tls_context.ts";
export {
  type AuthAdmission,
  type AuthAttempt,
  type AuthFailure,
  AuthLimiter,
  type AuthLimiterOptions,
  type AuthLock,
} from "./auth_limiter.ts";
export {
  countOpenFiles,
  FdBudget,
  type FdBudgetOptions,
  type FdBudgetShare,
  readOpenFileLimit,
} from "./fd_budget.ts";
export {
  type Admission,
  type ConnectionCounts,
  LocalConnectionCounts,
  SharedConnectionCounts,
} from "./connection_counts.ts";
export * from "./annotations.ts";
export { ServerTrace, traceLine, traceReply } from "./trace.ts";
