/**
 * tern, a mail transfer agent for Deno, as modules you can import:
 *
 * - `@tern/mta/smtp`: the SMTP server state machine, parsers, replies and a TCP server;
 * - `@tern/mta/queue`: the durable message queue on Deno KV and its delivery loop;
 * - `@tern/mta/mda`: Maildir delivery and recipient resolution;
 * - `@tern/mta/config`: the configuration schema and loader.
 *
 * This entry point re-exports all of them, and {@linkcode Mta}, the whole MTA
 * assembled from them.
 *
 * @example Parse a path
 * ```ts
 * import { parsePath } from "./mod.ts";
 * console.log(parsePath("<alice@example.test>").mailbox?.localPart); // "alice"
 * ```
 *
 * @module
 */

export * from "./smtp/mod.ts";
export * from "./queue/mod.ts";
export * from "./mda/mod.ts";
export * from "./config/mod.ts";
export * from "./dns/mod.ts";
export {
  createLogger,
  LOG_EVENTS,
  type LogEvent,
  type Logger,
  type LoggerOptions,
  type LogLevel,
  type LogValue,
  MemoryLogger,
  NULL_LOGGER,
} from "./log/logger.ts";
export {
  type BoundListener,
  ListenError,
  Mta,
  type MtaOptions,
  QUEUE_FILE,
  queuePath,
} from "./mta/mta.ts";
export type { ConfigChange } from "./mta/live_config.ts";
export {
  checkRecipient,
  checkSender,
  clientBlock,
  isInNetwork,
  isTrustedClient,
  mayRelay,
  ownsAddress,
  parseIpAddress,
  type PolicyClient,
  type PolicyConfig,
  type RecipientRequest,
  type SenderRequest,
} from "./mta/policy.ts";
