/**
 * Delivery: one attempt at one queued message. Each pending recipient goes to
 * its transport (local recipients to their Maildir), and each outcome is
 * logged in one line: queue id, recipient, next hop, delay, enhanced status
 * and result.
 *
 * @module
 */

import type { Logger } from "../log/logger.ts";
import type { LocalDelivery } from "../mda/local_delivery.ts";
import type { ClaimedMessage } from "../queue/kv_queue.ts";
import type { RecipientOutcome } from "../queue/types.ts";

/** What {@linkcode createDeliver} needs. */
export interface DeliverOptions {
  /** The Maildir transport. */
  readonly local: LocalDelivery;
  /** Where delivery lines go. */
  readonly logger: Logger;
  /** The clock. @default {Date.now} */
  readonly now?: () => number;
}

/**
 * Makes the function the delivery loop calls for each claimed message.
 *
 * @param options The transports and the logger.
 * @returns The deliver function.
 */
export function createDeliver(
  options: DeliverOptions,
): (
  claim: ClaimedMessage,
  content: () => ReadableStream<Uint8Array>,
) => Promise<RecipientOutcome[]> {
  const now = options.now ?? Date.now;
  return async (claim, content) => {
    const { message } = claim;
    const local: number[] = [];
    const outcomes: RecipientOutcome[] = [];
    message.recipients.forEach((r, index) => {
      if (r.status === "sent" || r.status === "bounced") return;
      if (r.mailbox !== null) {
        local.push(index);
      } else {
        // Relaying to other MTAs is not part of this build: keep the
        // recipient, deferred, so nothing accepted is lost.
        outcomes.push({
          index,
          status: "deferred",
          reply: { code: 0, enhancedStatus: "4.4.0", text: "no relay transport in this build" },
        });
      }
    });
    const delay = ((now() - message.arrival) / 1000).toFixed(1) + "s";
    // LocalDelivery logs its own outcomes, with the Maildir as next hop.
    for (const o of outcomes) {
      const r = message.recipients[o.index]!;
      const event = o.status === "sent"
        ? "delivery.sent"
        : o.status === "deferred"
        ? "delivery.deferred"
        : "delivery.bounced";
      options.logger.log(o.status === "sent" ? "info" : "warn", event, message.queueId, {
        rcpt: `<${r.address}>`,
        orcpt: r.originalRecipient === r.address ? undefined : `<${r.originalRecipient}>`,
        next_hop: "none",
        delay,
        status: o.reply.enhancedStatus,
        result: o.status,
        reason: o.status === "sent" ? undefined : o.reply.text,
      });
    }
    if (local.length > 0) outcomes.push(...await options.local.deliver(claim, local, content));
    return outcomes;
  };
}
