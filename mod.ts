/**
 * tern, a mail transfer agent for Deno. {@linkcode Mta} is the whole MTA:
 * give it a {@linkcode Config} (from {@linkcode loadConfig}) and it listens,
 * queues, delivers into Maildirs and relays, as `tern serve` does.
 *
 * This entry point holds what a program embedding tern needs: the MTA, the
 * configuration loader, the SMTP server and client (each a state machine
 * with no I/O, {@linkcode ServerSession} and {@linkcode ClientSession}, and
 * its socket adapter, {@linkcode SmtpServer} and {@linkcode SmtpClient}),
 * the queue ({@linkcode Queue}, {@linkcode KvQueue}, {@linkcode PgQueue}), Maildir delivery and
 * the reply table. Everything else is in the sub-paths:
 *
 * - `@tern/mta/smtp`: parsers, the data phase, SASL, TLS, annotations, traces;
 * - `@tern/mta/queue`: the queue's records, retries, the delivery loop, DSNs;
 * - `@tern/mta/mda`: Maildir names and paths, recipient resolution;
 * - `@tern/mta/config`: the schema's defaults, durations, passwords;
 * - `@tern/mta/dns`: the DNS resolver and MX lookup;
 * - `@tern/mta/net`: IP addresses, CIDR blocks, host:port, address literals.
 * - `@tern/mta/receive`: {@linkcode receiveMail} and its light message parse.
 * - `@tern/mta/send`: {@linkcode sendMail}, a smarthost or direct delivery by MX.
 *
 * @example Run an SMTP session in memory
 * ```ts
 * import { REPLIES, ServerSession } from "./mod.ts";
 *
 * const session = new ServerSession({ hostname: "mx.example.test" });
 * session.start();
 * const events = session.receive(new TextEncoder().encode("HELO client.test\r\n"));
 * const sent = events.find((e) => e.type === "send");
 * console.log(sent?.type === "send" && new TextDecoder().decode(sent.bytes));
 * // "250 mx.example.test greets client.test\r\n"
 * console.log(REPLIES.noSuchUser.code); // 550
 * ```
 *
 * @module
 */

// The MTA, assembled from the parts below.
export { type BoundListener, ListenError, Mta, type MtaOptions } from "./mta/mta.ts";
export {
  LOG_EVENTS,
  type LogEvent,
  type Logger,
  type LogLevel,
  type LogSettings,
  type LogValue,
} from "./log/logger.ts";
export type { ConfigChange } from "./mta/live_config.ts";

// Its configuration.
export {
  type AccountConfig,
  type AcmeChallenge,
  type AcmeConfig,
  type AuthenticationConfig,
  type Config,
  ConfigError,
  type ConfigProblem,
  type ListenerConfig,
  type ListenerMode,
  loadConfig,
  type LoadConfigOptions,
  type RoutePolicy,
  type RouteTls,
  type SocketEndpoint,
  type SrsConfig,
  type TlsConfig,
  validateConfig,
  type ValidateConfigOptions,
} from "./config/mod.ts";

// SMTP: the sessions (no I/O) and their socket adapters.
export {
  type Awaiting,
  type BodyType,
  type ClientEvent,
  ClientSession,
  type ClientSessionOptions,
  type ClientState,
  type ConnectionInfo,
  type DsnNotify,
  type Envelope,
  type Extensions,
  type MessageSink,
  type OutgoingMessage,
  type OutgoingRecipient,
  type Parameters,
  type RecipientDsn,
  type RecipientResult,
  type ReplyContext,
  type ReplyStage,
  type SaslCredentials,
  type SaslMechanism,
  type ServerHandlers,
  type ServerLimits,
  type ServerLogEvent,
  ServerSession,
  type ServerSessionOptions,
  type SessionEvent,
  type SessionState,
  SmtpAuthError,
  SmtpClient,
  type SmtpClientOptions,
  SmtpConnectionError,
  SmtpServer,
  type SmtpServerOptions,
  TlsHandshakeError,
  type TlsInfo,
  type TlsSource,
  type TransactionResult,
} from "./smtp/mod.ts";
// Classes an SmtpServer can be given; build them from `@tern/mta/smtp`.
export type {
  AuthAdmission,
  AuthAttempt,
  AuthFailure,
  AuthLimiter,
  AuthLock,
  FdBudget,
} from "./smtp/mod.ts";

// The reply table.
export { REPLIES, type Replies, type Reply, reply } from "./smtp/mod.ts";

// The queue.
export { KvQueue, type KvQueueOptions, PgQueue, type PgQueueOptions } from "./queue/mod.ts";
export type {
  ClaimOptions,
  IncomingMessage,
  Queue,
  ReceiveInit,
  RecoverResult,
} from "./queue/queue.ts";
export type {
  ClaimedMessage,
  Lease,
  QueuedMessage,
  QueueRecipient,
  RecipientOutcome,
  RecipientState,
  RecipientStatus,
  ReplySummary,
} from "./queue/types.ts";

// Receiving mail in a program: a server in a few lines.
export {
  type HandlerResult,
  type MailReceiver,
  type ReceivedEnvelope,
  type ReceivedMessage,
  receiveMail,
  type ReceiveMailOptions,
} from "./receive/mod.ts";

// Building a message (RFC 5322, MIME) and sending it in one call: a smarthost or direct delivery by MX.
export {
  type AddressInput,
  type Attachment,
  buildMessage,
  type BuildSettings,
  type BuiltMessage,
  type MailOptions,
} from "./message/mod.ts";
export {
  type DkimKeyOption,
  type HostFailure,
  type RejectedRecipient,
  SendError,
  sendMail,
  type SendOptions,
  type SendResult,
} from "./send/mod.ts";

// Maildir delivery.
export {
  deliverToMaildir,
  LocalDelivery,
  type LocalDeliveryOptions,
  type MaildirContent,
  type MaildirDeliveryOptions,
  type MaildirDeliveryResult,
} from "./mda/mod.ts";
