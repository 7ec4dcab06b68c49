/**
 * Bounces: turning permanent failures into a delivery status notification
 * (RFC 3464, built by queue/dsn.ts) queued to the sender like any other
 * message, from the null reverse-path.
 *
 * The DSN is committed to the queue before the failed attempt is recorded,
 * so a crash between the two repeats the attempt (and perhaps the DSN) but
 * never loses it.
 *
 * @module
 */

import type { Config } from "../config/schema.ts";
import type { Logger } from "../log/logger.ts";
import { type DsnRecipient, dsnStream, shouldNotify } from "../queue/dsn.ts";
import type { Queue } from "../queue/queue.ts";
import type { QueuedMessage } from "../queue/types.ts";
import { formatLocalReceived } from "../smtp/received.ts";
import { routeAddress } from "./intake.ts";

const encoder = new TextEncoder();

/** What {@linkcode queueDsn} needs. */
export interface QueueDsnOptions {
  /** The configuration: host name and recipient directory. */
  readonly config: Config;
  /** Where the DSN is queued. */
  readonly queue: Queue;
  /** Where `dsn.queued` / `dsn.suppressed` go. */
  readonly logger: Logger;
  /** The message reported on. */
  readonly message: QueuedMessage;
  /** The recipients reported on, with their final state. */
  readonly recipients: readonly DsnRecipient[];
  /** The original content. */
  readonly content: () => ReadableStream<Uint8Array>;
  /** The current time, epoch ms. */
  readonly now: number;
}

/**
 * Queues a DSN to the message's sender for the given recipients, unless the
 * message came from `<>` (RFC 5321 §4.5.5: never a bounce for a bounce) or
 * the recipients asked not to be told (RFC 3461 NOTIFY).
 *
 * @param options The message, the recipients, the queue.
 * @returns The DSN's queue id, or `null` when none was sent.
 */
export async function queueDsn(options: QueueDsnOptions): Promise<string | null> {
  const { config, queue, logger, message, now } = options;
  const sender = message.envelope.reversePath;
  const recipients = options.recipients.filter((r) => shouldNotify(r.state.notify, r.action));
  if (recipients.length === 0) return null;
  if (sender === "") {
    logger.log("info", "dsn.suppressed", message.queueId, {
      reason: "null sender",
      nrcpt: recipients.length,
    });
    return null;
  }
  const targets = routeAddress(config, sender);
  if (targets.length === 0) {
    logger.log("warn", "dsn.suppressed", message.queueId, {
      reason: "sender cannot be reached",
      to: `<${sender}>`,
    });
    return null;
  }
  const incoming = await queue.receive({
    envelope: {
      reversePath: "",
      forwardPaths: [sender],
      body: "8BITMIME",
      smtputf8: message.envelope.smtputf8,
    },
    recipients: targets,
    clientAddress: "local",
    now,
  });
  try {
    // RFC 5321 §4.4: a message made here still gets its trace field.
    await incoming.write(
      encoder.encode(formatLocalReceived(config.hostname, incoming.queueId, new Date(now))),
    );
    const reader = dsnStream({
      message,
      recipients,
      reportingMta: config.hostname,
      now: new Date(now),
      content: options.content,
    }).getReader();
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      await incoming.write(value);
    }
    await incoming.commit();
  } catch (error: unknown) {
    await incoming.abort().catch(() => {});
    throw error;
  }
  logger.log("info", "dsn.queued", message.queueId, {
    dsn: incoming.queueId,
    to: `<${sender}>`,
    nrcpt: recipients.length,
    action: recipients[0]!.action,
  });
  return incoming.queueId;
}
