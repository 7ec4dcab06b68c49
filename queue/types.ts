/**
 * What the queue holds: a message's record, its recipients and their
 * delivery state, and a claim on it. Shared by every store (`queue.ts`), the
 * delivery loop, local delivery and the `tern queue` commands.
 *
 * @module
 */

import type { DsnNotify, Envelope } from "../smtp/envelope.ts";

/**
 * Where one recipient stands.
 *
 * - `queued`: not tried yet;
 * - `deferred`: tried, failed temporarily (4yz or a network error), will be retried;
 * - `sent`: delivered (2yz), done;
 * - `bounced`: failed permanently (5yz) or gave up at `queue.max_age`, done.
 */
export type RecipientStatus = "queued" | "deferred" | "sent" | "bounced";

/** A reply as kept in the queue, for logs, `tern queue` and bounces. */
export interface ReplySummary {
  /** The reply code (RFC 5321 §4.2), or 0 for a failure with no reply (network, file system). */
  readonly code: number;
  /** The RFC 3463 status, e.g. `"4.4.1"`. */
  readonly enhancedStatus: string;
  /** One line of text saying what happened. */
  readonly text: string;
}

/** A recipient as the queue takes it, after alias expansion. */
export interface QueueRecipient {
  /** Where to deliver, `local@domain` (`Delivered-To:` for a local mailbox). */
  readonly address: string;
  /** The forward-path given in RCPT TO that led to this recipient (RFC 3461 ORCPT). */
  readonly originalRecipient: string;
  /**
   * For a local mailbox, the canonical account address whose Maildir receives
   * the message (`alice@example.test` for `alice+tag@example.test`); `null`
   * for a recipient to be relayed.
   */
  readonly mailbox: string | null;
  /**
   * RFC 3461 §4.1 NOTIFY: when to send the sender a DSN for this recipient.
   * `["NEVER"]`, or some of SUCCESS, FAILURE, DELAY. Absent: the default,
   * which is FAILURE and (optionally) DELAY.
   */
  readonly notify?: readonly DsnNotify[];
  /** RFC 3461 §4.2 ORCPT as given, `addr-type;address` decoded from xtext (`rfc822;bob@example.test`). */
  readonly orcpt?: string;
}

export type { DsnNotify } from "../smtp/envelope.ts";

/** A recipient with its delivery state. */
export interface RecipientState extends QueueRecipient {
  /** Where it stands. */
  readonly status: RecipientStatus;
  /** Delivery attempts so far. */
  readonly attempts: number;
  /** When the last attempt ended, epoch ms, or `null`. */
  readonly lastAttempt: number | null;
  /** What the last attempt got, or `null`. */
  readonly lastReply: ReplySummary | null;
}

/** A queued (committed) message. */
export interface QueuedMessage {
  /** The queue id, as in `250 2.0.0 Ok: queued as <ID>` and the logs. */
  readonly queueId: string;
  /** The envelope as accepted. */
  readonly envelope: Envelope;
  /** The recipients after expansion, with their state, in order. */
  readonly recipients: readonly RecipientState[];
  /** Size of the stored content in octets (with the Received line). */
  readonly size: number;
  /** When the message was accepted, epoch ms. */
  readonly arrival: number;
  /** When the next attempt is due, epoch ms. */
  readonly nextAttempt: number;
  /** Parked by `tern queue hold`: never attempted until released. */
  readonly held: boolean;
  /** The address of the client that handed it to us (`"local"` for `tern send`). */
  readonly clientAddress: string;
}

/** The outcome of one delivery attempt for one recipient. */
export interface RecipientOutcome {
  /** Index into `QueuedMessage.recipients`. */
  readonly index: number;
  /** `sent`, `deferred` or `bounced`. */
  readonly status: "sent" | "deferred" | "bounced";
  /** What happened. */
  readonly reply: ReplySummary;
  /** The host that gave the reply, when another MTA did (RFC 3464 §2.3.5 Remote-MTA). */
  readonly remoteMta?: string;
  /**
   * For a message relayed: whether the next hop took the DSN parameters
   * (it offered DSN), so reports are now its job (RFC 3461 §6.2.2).
   */
  readonly remoteDsn?: boolean;
}

/** A claim on one message, taken by `Queue.claimDue` or `IncomingMessage.commitAndClaim`. */
export interface Lease {
  /** Unique to this claim: a later claim by anyone has another token. */
  readonly token: string;
  /** When the claim lapses unless renewed, epoch ms. */
  readonly expires: number;
  /** The versionstamp of the lease as written by the claim. */
  readonly versionstamp: string;
}

/**
 * A message claimed for delivery: what a deliverer gets, and gives back to
 * record the attempt. Local delivery uses its `message`, `recovered` and
 * `content`.
 */
export interface ClaimedMessage {
  /** The message, as it was when claimed. */
  readonly message: QueuedMessage;
  /**
   * `true` when the message had an expired lease: a worker died during an
   * attempt, so some recipients may already have received it. The deliverer
   * should look for duplicates (RFC 5321 §6.1 prefers a duplicate to a loss).
   */
  readonly recovered: boolean;
  /** The claim; pass the whole `ClaimedMessage` back to `recordAttempt`. */
  readonly lease: Lease;
  /**
   * The whole content, when the claim was taken at commit
   * (`IncomingMessage.commitAndClaim`) and it was small enough
   * (`Queue.inMemoryContentLimit`) or kept in memory
   * (`ReceiveInit.keepContent`); otherwise read it with `Queue.openContent`.
   */
  readonly content?: Uint8Array;
}
