/**
 * Delivery at acceptance: a message whose recipients are all local Maildir
 * mailboxes is written into them before the SMTP server answers, and the
 * queue store never sees it.
 *
 * RFC 5321 §6.1 asks that a server take responsibility for a message only
 * once it is safe: "the receiver-SMTP MUST NOT lose the message". Most MTAs
 * meet that by writing the message to their queue (one fsync), then deliver
 * it from there (another fsync per mailbox, and the queue file's removal).
 * When the only destinations are this host's own mailboxes, the mailboxes are
 * as safe a place as the queue: each Maildir file is synced and renamed into
 * `new/` before the `250`. So the message is written once instead of twice,
 * and the client waits for one fsync per mailbox, as it would for a queue's
 * commit. The fsync of `new/` that makes the rename durable runs after the
 * `250`: until it is done, a crash of the machine may undo the rename and
 * leave the synced file in `tmp/`, under a name that carries its size, and
 * `mda/maildir_recovery.ts` moves it into `new/` at the next start.
 *
 * What this does not take goes through the queue as before: recipients
 * elsewhere, more than {@linkcode MAX_DIRECT_RECIPIENTS} of them, a
 * recipient asking for a success DSN (RFC 3461 §4.1 NOTIFY=SUCCESS: its
 * report is queued mail), LMTP as the mailbox transport, a message a milter
 * quarantines, or content past {@linkcode MAX_DIRECT_SIZE}. A mailbox that
 * fails (full, unwritable, a bad link) is not retried here: its recipients,
 * and only they, are committed to the queue before the `250`, and the
 * delivery loop retries or bounces them as for any other message. The client
 * sees one `250` either way, and the id in it names the message in the logs.
 *
 * The Maildir file names are those the delivery loop would use (arrival,
 * queue id, recipient index, host name), so a message is never delivered
 * twice by a retry; a crash before the `250` may leave a delivered copy the
 * client sends again, as a crash between a queue's commit and its `250` does.
 *
 * @module
 */

import type { Config } from "../config/schema.ts";
import type { LogEvent, Logger, LogLevel, LogValue } from "../log/logger.ts";
import { LocalDelivery } from "../mda/local_delivery.ts";
import { deliverToMaildir } from "../mda/maildir.ts";
import { countDelivery } from "../metrics/tern.ts";
import type { Queue, ReceiveInit } from "../queue/queue.ts";
import { newQueueId } from "../queue/queue_id.ts";
import type { QueuedMessage, QueueRecipient, RecipientOutcome } from "../queue/types.ts";
import type { Envelope } from "../smtp/envelope.ts";
import { HeldUpload, MemoryBudget } from "./held_upload.ts";

/** The most recipients delivered at acceptance: each mailbox's sync makes the client wait. */
export const MAX_DIRECT_RECIPIENTS = 10;

/** The largest message delivered at acceptance (held in memory until then), octets. */
export const MAX_DIRECT_SIZE = 2 * 1024 * 1024;

/** Content held in memory at once by all messages that may be delivered at acceptance, octets. */
export const DIRECT_MEMORY = 64 * 1024 * 1024;

/** What {@linkcode DirectDelivery} needs. */
export interface DirectDeliveryOptions {
  /** The mail root of the Maildirs. */
  readonly mailRoot: string;
  /** This host's name in Maildir file names (`maildirHostName`). */
  readonly hostname: string;
  /** Where the delivery lines go, after the message's acceptance line. */
  readonly logger: Logger;
  /** Writes one Maildir file. @default {deliverToMaildir} */
  readonly writeMaildir?: typeof deliverToMaildir;
  /** The clock. @default {Date.now} */
  readonly now?: () => number;
  /** Octets held at once by all held messages. @default {DIRECT_MEMORY} */
  readonly memory?: number;
  /**
   * Whether the `250` may come before the fsync of `new/`
   * (`recoversMaildirs`: with a node-local store, whose start-up recovers
   * the renames a crash undid).
   *
   * @default {true}
   */
  readonly syncNameLater?: boolean;
  /**
   * Whether the delivering session is the only one this thread serves now:
   * its file's fsync may then block the thread instead of going to another
   * and back (`syncInPlace`), which shortens the one client's wait.
   *
   * @default {() => false}
   */
  readonly alone?: () => boolean;
}

/**
 * The {@linkcode DirectDeliveryOptions.alone} of a thread that serves these
 * listeners: at most one SMTP session open on all of them.
 *
 * @param servers The thread's listeners; read at each call, so it may be
 *   filled after.
 * @returns The test.
 */
export function oneSessionOn(
  servers: readonly { readonly connectionCount: number }[],
): () => boolean {
  return () => {
    let sessions = 0;
    for (const server of servers) sessions += server.connectionCount;
    return sessions <= 1;
  };
}

/** A message as intake has it when the content is complete. */
export interface DirectMessage {
  /** Its queue id (in the Received field, the logs and the `250`). */
  readonly queueId: string;
  /** The envelope as accepted. */
  readonly envelope: Envelope;
  /** The recipients after expansion: all with a mailbox. */
  readonly recipients: readonly QueueRecipient[];
  /** When it arrived, epoch ms. */
  readonly arrival: number;
  /** The client's address. */
  readonly clientAddress: string;
  /** The whole content in pieces, trace and check fields on top. */
  readonly content: readonly Uint8Array[];
}

/** What a delivery at acceptance did. */
export interface DirectOutcome {
  /** Recipients written into their mailboxes. */
  readonly delivered: number;
  /** Recipients whose mailbox failed: for the queue. */
  readonly left: readonly QueueRecipient[];
}

/**
 * Delivers messages at acceptance, with a {@linkcode LocalDelivery} of its
 * own whose log lines wait until the message's acceptance line is written
 * ({@linkcode publish}).
 */
export class DirectDelivery {
  readonly #local: LocalDelivery;
  readonly #lines: HeldLines;
  readonly #budget: MemoryBudget;
  readonly #now: () => number;

  /**
   * Makes the deliverer of one thread.
   *
   * @param options Mail root, host name, logger.
   */
  constructor(options: DirectDeliveryOptions) {
    this.#lines = new HeldLines(options.logger);
    this.#now = options.now ?? Date.now;
    this.#budget = new MemoryBudget(options.memory ?? DIRECT_MEMORY);
    const write = options.writeMaildir ?? deliverToMaildir;
    const logger = options.logger;
    const syncName = options.syncNameLater === false ? "now" : "later";
    const alone = options.alone ?? (() => false);
    this.#local = new LocalDelivery({
      mailRoot: options.mailRoot,
      hostname: options.hostname,
      logger: this.#lines,
      now: this.#now,
      // The 250 waits for the file's fsync only: the rename's is left
      // running, and recoverMaildirs finishes the rename if a crash undoes it.
      writeMaildir: async (dir, content, writeOptions) => {
        const result = await write(dir, content, {
          ...writeOptions,
          syncName,
          syncInPlace: alone(),
          // A shared mail root: another node's message may have the name.
          exclusive: syncName === "now",
        });
        result.nameSynced?.catch((error: unknown) =>
          logNameSyncFailure(logger, result.path, error)
        );
        return result;
      },
    });
  }

  /** Octets of content held in memory now. */
  get heldOctets(): number {
    return this.#budget.used;
  }

  /**
   * Whether a message to these recipients may be delivered at acceptance,
   * by the configuration in force.
   *
   * @param config The configuration.
   * @param recipients The recipients after expansion.
   * @returns `true` when every recipient is a local Maildir mailbox.
   */
  static takes(config: Config, recipients: readonly QueueRecipient[]): boolean {
    return config.queue.deliverAtAcceptance &&
      config.mailboxTransport === undefined &&
      recipients.length > 0 &&
      recipients.length <= MAX_DIRECT_RECIPIENTS &&
      recipients.every((r) => r.mailbox !== null && !(r.notify ?? []).includes("SUCCESS"));
  }

  /**
   * Starts receiving a message that may be delivered at acceptance: its
   * content stays in memory, and goes to the store only if it must.
   *
   * @param init What the store would get.
   * @param queue The store.
   * @returns The upload, with a queue id of its own.
   */
  hold(init: ReceiveInit, queue: Pick<Queue, "receive">): HeldUpload {
    const queueId = init.queueId ?? newQueueId(init.now);
    return new HeldUpload({ ...init, queueId }, queue, this.#budget, MAX_DIRECT_SIZE);
  }

  /**
   * Writes a message into its recipients' mailboxes, each synced to disk.
   * The delivery lines are held until {@linkcode publish}; those of
   * mailboxes that failed are then written at the `debug` level, since the
   * queue's attempt that follows at once logs the outcome that counts.
   *
   * @param message The message, content complete.
   * @returns How many were delivered, and who is left for the queue.
   */
  async deliver(message: DirectMessage): Promise<DirectOutcome> {
    const queued: QueuedMessage = {
      queueId: message.queueId,
      envelope: message.envelope,
      recipients: message.recipients.map((r) => ({
        ...r,
        status: "queued",
        attempts: 0,
        lastAttempt: null,
        lastReply: null,
      })),
      size: message.content.reduce((sum, piece) => sum + piece.length, 0),
      arrival: message.arrival,
      nextAttempt: message.arrival,
      held: false,
      clientAddress: message.clientAddress,
    };
    this.#lines.hold(message.queueId);
    const outcomes: RecipientOutcome[] = await this.#local.deliver(
      { message: queued, recovered: false, content: message.content },
      queued.recipients.map((_, index) => index),
      () => {
        throw new Error("The content is in memory");
      },
    );
    const sent = new Set(outcomes.filter((o) => o.status === "sent").map((o) => o.index));
    const seconds = Math.max(0, this.#now() - message.arrival) / 1000;
    for (let i = 0; i < sent.size; i++) countDelivery("local", "sent", seconds);
    return {
      delivered: sent.size,
      left: message.recipients.filter((_, index) => !sent.has(index)),
    };
  }

  /**
   * Writes the delivery lines of a message held since {@linkcode deliver}.
   *
   * @param queueId The message.
   */
  publish(queueId: string): void {
    this.#lines.release(queueId);
  }
}

/**
 * Logs a failed fsync of `new/` after a delivery at acceptance: the message
 * is in the mailbox, but a crash could still undo its rename.
 *
 * @param logger Where the line goes.
 * @param path The delivered file.
 * @param error The fsync's error.
 */
export function logNameSyncFailure(logger: Logger, path: string, error: unknown): void {
  logger.log("error", "maildir.error", undefined, {
    path,
    error: error instanceof Error ? error.message : String(error),
    stage: "sync new/",
  });
}

/** A log line waiting for its message's acceptance line. */
type Line = readonly [LogLevel, LogEvent, string | undefined, Record<string, LogValue> | undefined];

/**
 * A logger that keeps the lines of some queue ids until they are released,
 * so that a delivery is never logged before the acceptance it follows.
 */
class HeldLines implements Logger {
  readonly #logger: Logger;
  readonly #held = new Map<string, Line[]>();

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  hold(queueId: string): void {
    this.#held.set(queueId, []);
  }

  release(queueId: string): void {
    const lines = this.#held.get(queueId);
    this.#held.delete(queueId);
    for (const [level, event, id, fields] of lines ?? []) {
      // A failed mailbox is tried again at once from the queue, whose line
      // is the one that counts: this first try is a detail.
      this.#logger.log(event === "delivery.sent" ? level : "debug", event, id, fields);
    }
  }

  log(
    level: LogLevel,
    event: LogEvent,
    queueId: string | undefined,
    fields?: Record<string, LogValue>,
  ): void {
    const lines = queueId === undefined ? undefined : this.#held.get(queueId);
    if (lines === undefined) this.#logger.log(level, event, queueId, fields);
    else lines.push([level, event, queueId, fields]);
  }
}
