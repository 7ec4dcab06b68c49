/**
 * Intake: what the SMTP server asks, answered with the configuration and the
 * queue. Which recipients are taken (local mailboxes, RFC 5321 §4.5.1
 * Postmaster, relay policy), and where the content goes (the queue, behind a
 * `Received:` line, RFC 5321 §4.4).
 *
 * @module
 */

import type { Config, ListenerMode } from "../config/schema.ts";
import type { Logger } from "../log/logger.ts";
import { resolveRecipient } from "../mda/recipient.ts";
import type { KvQueue } from "../queue/kv_queue.ts";
import type { QueueRecipient } from "../queue/types.ts";
import type { Envelope } from "../smtp/envelope.ts";
import { formatReceived } from "../smtp/received.ts";
import { queuedReply, REPLIES, type Reply, reply } from "../smtp/reply.ts";
import type { ConnectionInfo, MessageSink, ServerHandlers } from "../smtp/server.ts";

const encoder = new TextEncoder();

/** What {@linkcode createIntake} needs. */
export interface IntakeOptions {
  /** The configuration. */
  readonly config: Config;
  /** The listener the handlers serve. */
  readonly mode: ListenerMode;
  /** Where accepted messages go. */
  readonly queue: KvQueue;
  /** Where `message.accepted` lines go. */
  readonly logger: Logger;
  /** Called after each commit, to start delivery at once. */
  readonly onQueued?: () => void;
  /** The clock. @default {Date.now} */
  readonly now?: () => number;
}

/**
 * Expands forward-paths into the queue's recipients: aliases followed,
 * plus-addresses folded, duplicates removed (a message reaches a mailbox once
 * even when two aliases lead there).
 *
 * @param config The directory.
 * @param forwardPaths The accepted RCPT TO addresses.
 * @returns The recipients, in order.
 */
export function expandRecipients(
  config: Config,
  forwardPaths: readonly string[],
): QueueRecipient[] {
  const seen = new Set<string>();
  const out: QueueRecipient[] = [];
  for (const path of forwardPaths) {
    const resolution = resolveRecipient(path, config);
    if (resolution.kind !== "local") continue;
    for (const target of resolution.targets) {
      const key = (target.mailbox ?? target.address).toLowerCase();
      if (seen.has(key)) continue;
      seen.add(key);
      out.push(target);
    }
  }
  return out;
}

/**
 * Makes the handlers for one listener.
 *
 * @param options Config, queue, logger.
 * @returns The handlers for {@linkcode SmtpServer}.
 */
export function createIntake(options: IntakeOptions): ServerHandlers {
  const { config, queue, logger } = options;
  const now = options.now ?? Date.now;
  return {
    recipient(forwardPath: string): Reply {
      const resolution = resolveRecipient(forwardPath, config);
      switch (resolution.kind) {
        case "local":
          return resolution.targets.length > 0 ? REPLIES.recipientOk : REPLIES.noSuchUser;
        case "unknown":
          return REPLIES.noSuchUser;
        case "loop":
          // A configuration error, not the sender's: temporary, so it is retried once fixed.
          return reply(451, "4.3.0", "Alias loop for this address, ask the postmaster");
        case "remote":
          // No relaying here: no open relay, ever.
          return REPLIES.relayDenied;
      }
    },

    async open(envelope: Envelope, connection: ConnectionInfo): Promise<MessageSink | Reply> {
      const recipients = expandRecipients(config, envelope.forwardPaths);
      if (recipients.length === 0) return REPLIES.noValidRecipients;
      const arrival = now();
      const incoming = await queue.receive({
        envelope,
        recipients,
        clientAddress: connection.remoteAddress,
        now: arrival,
      });
      const received = formatReceived({
        clientName: connection.clientName,
        clientAddress: connection.remoteAddress,
        hostname: config.hostname,
        queueId: incoming.queueId,
        isExtended: connection.isExtended,
        smtputf8: envelope.smtputf8,
        tls: connection.tls,
        authenticated: connection.authenticatedAs !== null,
        recipient: envelope.forwardPaths.length === 1 ? envelope.forwardPaths[0]! : null,
        date: new Date(arrival),
      });
      await incoming.write(encoder.encode(received));
      return {
        write: (chunk) => incoming.write(chunk),
        abort: () => incoming.abort(),
        async commit(): Promise<Reply> {
          await incoming.commit();
          logger.log("info", "message.accepted", incoming.queueId, {
            from: `<${envelope.reversePath}>`,
            size: incoming.size,
            nrcpt: recipients.length,
            client: connection.remoteAddress,
            helo: connection.clientName,
            listener: options.mode,
          });
          options.onQueued?.();
          return queuedReply(incoming.queueId);
        },
      };
    },
  };
}
