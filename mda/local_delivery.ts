/**
 * Local delivery: the queue's recipients with a mailbox go into their
 * Maildirs, one outcome per recipient, as the delivery loop expects of any
 * transport. A file-system failure is a temporary failure of that one
 * recipient (RFC 5321 §4.2.1: "try again later"), never an exception.
 *
 * @module
 */

import type { Logger } from "../log/logger.ts";
import type { QueuedMessage, RecipientOutcome, ReplySummary } from "../queue/types.ts";
import { deliverToMaildir, maildirPath, maildirUniqueName } from "./maildir.ts";

/** Options of {@linkcode LocalDelivery}. */
export interface LocalDeliveryOptions {
  /** The mail root: a mailbox is the Maildir `<mailRoot>/<domain>/<local-part>/`. */
  readonly mailRoot: string;
  /** This host's name, part of every Maildir file name. */
  readonly hostname: string;
  /** Where delivery events go. */
  readonly logger: Logger;
  /** The clock, epoch ms, for the `delay` in logs. @default {Date.now} */
  readonly now?: () => number;
}

/** A message claimed by the delivery loop for one attempt. */
export interface DeliveryClaim {
  /** The queued message. */
  readonly message: QueuedMessage;
  /**
   * Whether the claim was taken over from an attempt that did not finish (a
   * crash or an expired lease): an earlier copy may already be in a Maildir.
   */
  readonly recovered: boolean;
  /**
   * The whole content, when it is already in memory (a message claimed as it
   * was committed): written as it is, and `openContent` is not called.
   */
  readonly content?: Uint8Array;
}

/** RFC 3463 statuses for what can go wrong on the local file system. */
function classifyFailure(error: unknown): { enhancedStatus: string; reason: string } {
  const code = typeof error === "object" && error !== null && "code" in error &&
      typeof error.code === "string"
    ? error.code
    : "";
  const message = error instanceof Error ? error.message : String(error);
  // Deno words it "Permission denied (os error 13): open '/path'"; keep strerror.
  const reason = /^(.+?) \(os error \d+\)/.exec(message)?.[1] ?? message;
  switch (code) {
    case "ENOSPC": // RFC 3463 X.3.1: mail system full
      return { enhancedStatus: "4.3.1", reason };
    case "EDQUOT": // RFC 3463 X.2.2: mailbox full (per-user quota)
      return { enhancedStatus: "4.2.2", reason };
    case "EACCES":
    case "EPERM":
    case "EROFS":
    case "ENOTDIR":
    case "EEXIST":
    case "EISDIR":
    case "ELOOP": // RFC 3463 X.2.0: the mailbox is there but cannot take mail now
      return { enhancedStatus: "4.2.0", reason };
    default: // RFC 3463 X.3.0: other mail system problem
      return { enhancedStatus: "4.3.0", reason };
  }
}

/** The content, with a flag telling a read failure apart from a write failure. */
function watchContent(
  source: ReadableStream<Uint8Array>,
): { stream: ReadableStream<Uint8Array>; failed: () => boolean } {
  const reader = source.getReader();
  let failed = false;
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller): Promise<void> {
      let result: ReadableStreamReadResult<Uint8Array>;
      try {
        result = await reader.read();
      } catch (error: unknown) {
        failed = true;
        controller.error(error);
        return;
      }
      if (result.done) controller.close();
      else controller.enqueue(result.value);
    },
    cancel(reason: unknown): Promise<void> {
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
  return { stream, failed: () => failed };
}

/**
 * Delivers queued messages to local mailboxes (Maildir).
 *
 * @example Deliver one message to a local mailbox
 * ```ts
 * import { LocalDelivery } from "./local_delivery.ts";
 * import { NULL_LOGGER } from "../log/logger.ts";
 * const mailRoot = await Deno.makeTempDir();
 * const delivery = new LocalDelivery({ mailRoot, hostname: "mx.example.test", logger: NULL_LOGGER });
 * const message = {
 *   queueId: "4F2A9C",
 *   envelope: {
 *     reversePath: "bob@example.net",
 *     forwardPaths: ["alice@example.test"],
 *     body: "8BITMIME" as const,
 *     smtputf8: false,
 *   },
 *   recipients: [{
 *     address: "alice@example.test",
 *     originalRecipient: "alice@example.test",
 *     mailbox: "alice@example.test",
 *     status: "queued" as const,
 *     attempts: 0,
 *     lastAttempt: null,
 *     lastReply: null,
 *   }],
 *   size: 22,
 *   arrival: 1700000000000,
 *   nextAttempt: 1700000000000,
 *   held: false,
 *   clientAddress: "local",
 * };
 * const outcomes = await delivery.deliver(
 *   { message, recovered: false },
 *   [0],
 *   () => new Blob(["Subject: hi\r\n\r\nHello\r\n"]).stream(),
 * );
 * console.log(outcomes[0]?.status); // "sent"
 * await Deno.remove(mailRoot, { recursive: true });
 * ```
 */
export class LocalDelivery {
  readonly #mailRoot: string;
  readonly #hostname: string;
  readonly #logger: Logger;
  readonly #now: () => number;

  /**
   * Makes a local transport.
   *
   * @param options Mail root, host name, logger and clock.
   */
  constructor(options: LocalDeliveryOptions) {
    this.#mailRoot = options.mailRoot;
    this.#hostname = options.hostname;
    this.#logger = options.logger;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Delivers a message to the given recipients, one Maildir file each.
   *
   * Recipients with no `mailbox` (to be relayed) and indices out of range are
   * skipped: they get no outcome. Each other recipient gets one:
   *
   * - `sent`, `250 2.0.0 delivered to maildir`, or `already delivered` when an
   *   earlier attempt's copy was found (the file name is derived from the
   *   queue id and the recipient index, so a retry after a crash never makes a
   *   second copy; `cur/` is searched too on a recovered claim or a retry);
   * - `deferred`, code 0 (no SMTP reply), when the file system refuses:
   *   `4.2.0` mailbox unavailable (permissions, read-only, not a directory),
   *   `4.2.2` quota exceeded, `4.3.1` disk full, `4.3.0` anything else,
   *   including a failure to read the queued content;
   * - `bounced`, `5.1.3`, when the mailbox name cannot be a Maildir path or
   *   an address holds CR, LF or NUL (it would inject header lines).
   *
   * @param claim The message and whether its claim was recovered.
   * @param indices Indices into `message.recipients` to deliver.
   * @param openContent Opens the stored content, once per recipient (unless
   *   `claim.content` holds it).
   * @returns One outcome per recipient delivered to, in the order of `indices`.
   */
  async deliver(
    claim: DeliveryClaim,
    indices: readonly number[],
    openContent: () => ReadableStream<Uint8Array>,
  ): Promise<RecipientOutcome[]> {
    const { message } = claim;
    const outcomes: RecipientOutcome[] = [];
    for (const index of indices) {
      const recipient = message.recipients[index];
      if (recipient === undefined || recipient.mailbox === null) continue;
      let dir: string;
      try {
        dir = maildirPath(this.#mailRoot, recipient.mailbox);
      } catch (error: unknown) {
        const text = error instanceof Error ? error.message : String(error);
        outcomes.push(this.#record(message, index, "bounced", "", {
          code: 0,
          enhancedStatus: "5.1.3", // RFC 3463: bad destination mailbox address syntax
          text,
        }));
        continue;
      }
      // A CR or LF in an address would inject header lines into the Maildir
      // file; the queue should never hold one, and a retry will not fix it.
      if (/[\r\n\0]/.test(recipient.address) || /[\r\n\0]/.test(message.envelope.reversePath)) {
        outcomes.push(this.#record(message, index, "bounced", dir, {
          code: 0,
          enhancedStatus: "5.1.3", // RFC 3463: bad destination mailbox address syntax
          text: "cannot write Delivered-To or Return-Path: CR, LF or NUL in an address",
        }));
        continue;
      }
      let reply: ReplySummary;
      let status: RecipientOutcome["status"];
      // Until the content is open, any failure is a failure to read it.
      let contentFailed = () => true;
      try {
        let content: ReadableStream<Uint8Array> | Uint8Array;
        if (claim.content === undefined) {
          const watched = watchContent(openContent());
          contentFailed = watched.failed;
          content = watched.stream;
        } else {
          contentFailed = () => false;
          content = claim.content;
        }
        const result = await deliverToMaildir(dir, content, {
          returnPath: message.envelope.reversePath,
          deliveredTo: recipient.address,
          uniqueName: maildirUniqueName(message.arrival, message.queueId, index, this.#hostname),
          checkCur: claim.recovered || recipient.attempts > 0,
          // A claim that was never attempted before cannot have left a file.
          firstAttempt: !claim.recovered && recipient.attempts === 0,
        });
        status = "sent";
        reply = {
          code: 250,
          enhancedStatus: "2.0.0",
          text: result.duplicate ? "already delivered" : "delivered to maildir",
        };
      } catch (error: unknown) {
        status = "deferred";
        if (contentFailed()) {
          const text = error instanceof Error ? error.message : String(error);
          reply = {
            code: 0,
            enhancedStatus: "4.3.0",
            text: `cannot read the queued content: ${text}`,
          };
        } else {
          const { enhancedStatus, reason } = classifyFailure(error);
          reply = { code: 0, enhancedStatus, text: `cannot write to ${dir}: ${reason}` };
        }
      }
      outcomes.push(this.#record(message, index, status, dir, reply));
    }
    return outcomes;
  }

  /** Logs one attempt (one line per recipient, CONTRACT.md) and makes its outcome. */
  #record(
    message: QueuedMessage,
    index: number,
    status: RecipientOutcome["status"],
    dir: string,
    reply: ReplySummary,
  ): RecipientOutcome {
    const recipient = message.recipients[index];
    const delay = Math.max(0, Math.round((this.#now() - message.arrival) / 1000));
    this.#logger.log(status === "sent" ? "info" : "warn", `delivery.${status}`, message.queueId, {
      rcpt: `<${recipient?.address ?? ""}>`,
      next_hop: dir === "" ? "maildir" : `maildir:${dir}`,
      delay: `${delay}s`,
      status: reply.enhancedStatus,
      result: status,
      reply: reply.text,
    });
    return { index, status, reply };
  }
}
