/**
 * Delivery: one attempt at one queued message. Each pending recipient goes to
 * its transport (local recipients to their Maildir, the rest to the relay
 * transport when there is one); recipients still failing after
 * `queue.max_age` give up (RFC 5321 §4.5.4.1); permanent failures are
 * reported to the sender in a DSN, queued before the attempt is recorded.
 * Each outcome is logged in one line: queue id, recipient, next hop, delay,
 * enhanced status and result.
 *
 * @module
 */

import type { Config } from "../config/schema.ts";
import { configOf, type ConfigSource } from "./live_config.ts";
import { formatDuration } from "../config/duration.ts";
import type { Logger, LogValue } from "../log/logger.ts";
import type { LocalDelivery } from "../mda/local_delivery.ts";
import type { Queue } from "../queue/queue.ts";
import type { DeliveryContext } from "../queue/delivery_loop.ts";
import type {
  ClaimedMessage,
  QueuedMessage,
  RecipientOutcome,
  RecipientState,
} from "../queue/types.ts";
import type { DsnAction, DsnRecipient } from "../queue/dsn.ts";
import { queueDsn } from "./bounce.ts";
import { countDelivery } from "../metrics/tern.ts";

/** Delivers recipients that are not local: the relay transport. */
export interface RemoteTransport {
  /**
   * Delivers some recipients of a message to their next hops.
   *
   * @param claim The claimed message.
   * @param indices The recipients to deliver (all have `mailbox === null`).
   * @param content Opens the message content.
   * @param signal Aborted when the delivery loop stops: give up waits for
   *   a connection or a greeting, and leave those recipients out.
   * @returns One outcome per index (fewer only once `signal` is aborted).
   */
  deliver(
    claim: ClaimedMessage,
    indices: readonly number[],
    content: () => ReadableStream<Uint8Array>,
    signal?: AbortSignal,
  ): Promise<RecipientOutcome[]>;
}

/** Delivers recipients with a mailbox: Maildir files, or an LMTP server. */
export interface MailboxTransport {
  /**
   * Delivers some local recipients of a message.
   *
   * @param claim The claimed message.
   * @param indices The recipients to deliver (those without a mailbox are skipped).
   * @param content Opens the message content.
   * @returns One outcome per local recipient.
   */
  deliver(
    claim: ClaimedMessage,
    indices: readonly number[],
    content: () => ReadableStream<Uint8Array>,
  ): Promise<RecipientOutcome[]>;
}

/** What {@linkcode createDeliver} needs. */
export interface DeliverOptions {
  /**
   * The configuration (host name, max age, directory for bounces), or where
   * to read the one in force: each delivery attempt reads it as it starts.
   */
  readonly config: Config | ConfigSource;
  /** The queue, for bounces. */
  readonly queue: Queue;
  /** The Maildir transport. */
  readonly local: LocalDelivery;
  /** The LMTP transport, used while `mailbox_transport` names an LMTP server. */
  readonly lmtp?: MailboxTransport;
  /** The relay transport, or `undefined` when relaying is not available. */
  readonly remote?: RemoteTransport;
  /** Where delivery lines go. */
  readonly logger: Logger;
  /** The clock. @default {Date.now} */
  readonly now?: () => number;
}

/**
 * Makes the function the delivery loop calls for each claimed message.
 * Local recipients are delivered first, in the loop's slot; the remote part
 * then leaves the slot ({@linkcode DeliveryContext.leaveSlot}), so waiting
 * on a slow or dead next hop never keeps local mail or other destinations
 * from their turn.
 *
 * @param options The transports, the queue and the logger.
 * @returns The deliver function.
 */
export function createDeliver(
  options: DeliverOptions,
): (
  claim: ClaimedMessage,
  content: () => ReadableStream<Uint8Array>,
  context?: DeliveryContext,
) => Promise<RecipientOutcome[]> {
  const { logger } = options;
  const now = options.now ?? Date.now;
  return async (claim, content, context) => {
    const { message } = claim;
    const local: number[] = [];
    const remote: number[] = [];
    message.recipients.forEach((r, index) => {
      if (r.status === "sent" || r.status === "bounced") return;
      (r.mailbox !== null ? local : remote).push(index);
    });
    const outcomes: RecipientOutcome[] = [];
    // Read per attempt: a reload may switch between Maildir and LMTP.
    const viaLmtp = options.lmtp !== undefined &&
      configOf(options.config).mailboxTransport !== undefined;
    const mailboxes: MailboxTransport = viaLmtp ? options.lmtp! : options.local;
    // Every transport logs its own outcomes.
    if (local.length > 0) outcomes.push(...await mailboxes.deliver(claim, local, content));
    if (remote.length > 0) {
      if (options.remote) {
        // What follows waits on other hosts: out of the loop's slot.
        context?.leaveSlot();
        outcomes.push(...await options.remote.deliver(claim, remote, content, context?.signal));
      } else {
        for (const index of remote) {
          const o: RecipientOutcome = {
            index,
            status: "deferred",
            reply: { code: 0, enhancedStatus: "4.4.0", text: "no relay transport available" },
          };
          outcomes.push(o);
          logOutcome(logger, message, o, "none", now());
        }
      }
    }
    const maxAge = configOf(options.config).queue.maxAge;
    const final = giveUpIfExpired(message, outcomes, maxAge, now());
    for (const o of final) {
      if (o !== outcomes.find((x) => x.index === o.index)) {
        logOutcome(logger, message, o, "none", now());
      }
    }
    const finishedAt = now();
    for (const o of final) {
      countOutcome(message, o, viaLmtp, finishedAt);
    }
    await report(options, message, final, content, now());
    return final;
  };
}

/**
 * Counts one outcome by transport and result; a final one (sent or bounced)
 * also gives the time since the message arrived.
 */
function countOutcome(
  message: QueuedMessage,
  o: RecipientOutcome,
  viaLmtp: boolean,
  now: number,
): void {
  const transport = message.recipients[o.index]?.mailbox == null
    ? "relay"
    : viaLmtp
    ? "lmtp"
    : "local";
  countDelivery(transport, o.status, Math.max(0, now - message.arrival) / 1000);
}

/** RFC 5321 §4.5.4.1: after the give-up time, a deferred recipient fails. */
function giveUpIfExpired(
  message: QueuedMessage,
  outcomes: RecipientOutcome[],
  maxAge: number,
  now: number,
): RecipientOutcome[] {
  const age = now - message.arrival;
  if (age < maxAge) return outcomes;
  return outcomes.map((o) =>
    o.status !== "deferred" ? o : {
      ...o,
      status: "bounced",
      reply: {
        ...o.reply,
        text: `${o.reply.text} (gave up after ${formatDuration(Math.floor(age / 1000) * 1000)})`,
      },
    }
  );
}

/**
 * Queues one DSN for what the sender asked to hear about in this attempt
 * (RFC 3461 §4.1 NOTIFY): permanent failures ("failed"); deliveries
 * ("delivered" into a mailbox, or "relayed" to a next hop that does not
 * take the DSN parameters, RFC 3461 §6.2.2) when NOTIFY has SUCCESS; and,
 * once, a "delayed" warning when the message first passes
 * `queue.delay_warning` still undelivered.
 */
async function report(
  options: DeliverOptions,
  message: QueuedMessage,
  outcomes: readonly RecipientOutcome[],
  content: () => ReadableStream<Uint8Array>,
  now: number,
): Promise<void> {
  const config = configOf(options.config);
  const warnAt = config.queue.delayWarning > 0
    ? message.arrival + config.queue.delayWarning
    : Infinity;
  const recipients: DsnRecipient[] = [];
  for (const o of outcomes) {
    const before = message.recipients[o.index]!;
    let action: DsnAction | null = null;
    if (o.status === "bounced") action = "failed";
    else if (o.status === "sent" && before.mailbox !== null) action = "delivered";
    else if (o.status === "sent" && o.remoteDsn === false) action = "relayed";
    else if (
      o.status === "deferred" && now >= warnAt && (before.lastAttempt ?? message.arrival) < warnAt
    ) {
      action = "delayed";
    }
    if (action === null) continue;
    const state: RecipientState = {
      ...before,
      status: o.status,
      attempts: before.attempts + 1,
      lastAttempt: now,
      lastReply: o.reply,
    };
    recipients.push(
      o.remoteMta === undefined ? { state, action } : { state, action, remoteMta: o.remoteMta },
    );
  }
  if (recipients.length === 0) return;
  await queueDsn({
    config,
    queue: options.queue,
    logger: options.logger,
    message,
    recipients,
    content,
    now,
  });
}

/**
 * Logs one delivery outcome, one line per recipient and attempt, queue id first.
 *
 * @param logger Where to.
 * @param message The message.
 * @param o The outcome.
 * @param nextHop Where it went.
 * @param now The current time.
 * @param extra More fields, after the usual ones (the relay's remote reply, remote id and TLS).
 */
export function logOutcome(
  logger: Logger,
  message: QueuedMessage,
  o: RecipientOutcome,
  nextHop: string,
  now: number,
  extra: Record<string, LogValue> = {},
): void {
  const r = message.recipients[o.index]!;
  const event = o.status === "sent"
    ? "delivery.sent"
    : o.status === "deferred"
    ? "delivery.deferred"
    : "delivery.bounced";
  logger.log(o.status === "sent" ? "info" : "warn", event, message.queueId, {
    rcpt: `<${r.address}>`,
    orcpt: r.originalRecipient === r.address ? undefined : `<${r.originalRecipient}>`,
    next_hop: nextHop,
    delay: `${Math.max(0, Math.round((now - message.arrival) / 1000))}s`,
    status: o.reply.enhancedStatus,
    result: o.status,
    reply: o.status === "sent" ? undefined : o.reply.text,
    ...extra,
  });
}
