/**
 * Local delivery: the queue's recipients with a mailbox go into their
 * Maildirs, one outcome per recipient, as the delivery loop expects of any
 * transport; a file-system failure is an outcome of that one recipient, never
 * an exception.
 *
 * A failure is temporary (RFC 5321 §4.2.1: "try again later") when time or
 * the operator can cure it: a full disk or quota, an I/O error, permissions,
 * too many open files. It is permanent, and bounced at once, when the mailbox
 * can never take mail as it stands: a name too long for the file system, or a
 * mailbox path whose structure is wrong (a file where a directory should be,
 * a link loop, a link out of the mail root). Retrying those for days only
 * delays the bounce, and the bounce then carries the sender's whole message.
 * A mail root that cannot be reached stays temporary: it concerns every
 * mailbox, and it is the operator's to fix.
 *
 * What a sender can see (the reply text ends up in a DSN's `Diagnostic-Code`
 * and in `tern queue list`) names the mailbox, never a server path; the path
 * is in the server log.
 *
 * @module
 */

import { errorCode, errorReason } from "../fs/error_text.ts";
import type { Logger } from "../log/logger.ts";
import type {
  ClaimedMessage,
  QueuedMessage,
  RecipientOutcome,
  ReplySummary,
} from "../queue/types.ts";
import {
  deliverToMaildir,
  MaildirNameTakenError,
  maildirPath,
  maildirUniqueName,
} from "./maildir.ts";

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
  /**
   * Writes one Maildir file (another thread may do it: mta/maildir_offload.ts).
   * @default {deliverToMaildir, on this thread}
   */
  readonly writeMaildir?: typeof deliverToMaildir;
}

/** How a local failure is reported: temporary or permanent, with its RFC 3463 status. */
export interface LocalFailure {
  /** `deferred` (try again later) or `bounced` (report to the sender now). */
  readonly status: "deferred" | "bounced";
  /** The RFC 3463 enhanced status code. */
  readonly enhancedStatus: string;
  /** The system's reason, without any path. */
  readonly reason: string;
}

/**
 * Sorts a file-system error from a Maildir delivery into temporary and
 * permanent, with its RFC 3463 status.
 *
 * Permanent, because no retry can succeed while the mailbox stays as it is:
 *
 * - `ENAMETOOLONG`: `5.1.3`, bad destination mailbox address syntax (X.1.3):
 *   the mailbox's name cannot exist on this file system;
 * - `ENOTDIR`, `EISDIR`, `ELOOP`, `ENOTEMPTY`: `5.2.0`, other mailbox status
 *   (X.2.0, "the mailbox exists, but something about the destination mailbox
 *   has caused" the failure): its path is a file where a directory should be,
 *   a directory where a file should be, or a loop of links.
 *
 * Temporary, because time or the operator can cure it:
 *
 * - `ENOSPC`: `4.3.1`, mail system full (X.3.1);
 * - `EDQUOT`: `4.2.2`, mailbox full (X.2.2);
 * - `EACCES`, `EPERM`, `EROFS`, `EEXIST`: `4.2.0` (X.2.0): permissions, a
 *   read-only mount, a race with another writer;
 * - `EIO`, `EMFILE`, `ENFILE`, and anything not listed: `4.3.0`, other mail
 *   system status (X.3.0). An unknown error is never a reason to bounce.
 *
 * @param error What the file system threw.
 * @returns The outcome's status, enhanced status and reason (no path in it).
 *
 * @example
 * ```ts
 * import { classifyLocalFailure } from "./local_delivery.ts";
 * const error = Object.assign(new Error("File name too long (os error 36): open '/x'"), {
 *   code: "ENAMETOOLONG",
 * });
 * console.log(classifyLocalFailure(error));
 * // { status: "bounced", enhancedStatus: "5.1.3", reason: "File name too long" }
 * ```
 */
export function classifyLocalFailure(error: unknown): LocalFailure {
  const reason = errorReason(error);
  switch (errorCode(error)) {
    case "ENAMETOOLONG": // RFC 3463 X.1.3: the name cannot exist here
      return { status: "bounced", enhancedStatus: "5.1.3", reason };
    case "ENOTDIR":
    case "EISDIR":
    case "ELOOP":
    case "ENOTEMPTY": // RFC 3463 X.2.0: the mailbox's structure will not take mail
      return { status: "bounced", enhancedStatus: "5.2.0", reason };
    case "ENOSPC": // RFC 3463 X.3.1: mail system full
      return { status: "deferred", enhancedStatus: "4.3.1", reason };
    case "EDQUOT": // RFC 3463 X.2.2: mailbox full (per-user quota)
      return { status: "deferred", enhancedStatus: "4.2.2", reason };
    case "EACCES":
    case "EPERM":
    case "EROFS":
    case "EEXIST": // RFC 3463 X.2.0: the mailbox is there but cannot take mail now
      return { status: "deferred", enhancedStatus: "4.2.0", reason };
    default: // RFC 3463 X.3.0: other mail system problem (EIO, EMFILE, ...)
      return { status: "deferred", enhancedStatus: "4.3.0", reason };
  }
}

/** How long a mailbox directory found inside the mail root is trusted before it is checked again, ms. */
const CONFINED_TTL_MS = 60_000;
/** How many mailbox directories are remembered as checked; the oldest is forgotten first. */
const CONFINED_CACHE_SIZE = 1024;

/** Why a mailbox is not written to, found before any write. */
interface Refusal {
  readonly failure: LocalFailure;
  /** Where the path really leads, for the server log only. */
  readonly target?: string;
}

/** `realPath`, or `null` when the path (or a link's target) does not exist. */
async function realPathOrNull(path: string): Promise<string | null> {
  try {
    return await Deno.realPath(path);
  } catch (error: unknown) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

/** Whether the path itself (not what it points to) is a symbolic link. */
async function isSymlink(path: string): Promise<boolean> {
  try {
    return (await Deno.lstat(path)).isSymlink;
  } catch (error: unknown) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/** Whether `real` is `root` or below it; both are real paths. */
function isInside(real: string, root: string): boolean {
  return root === "/" || real === root || real.startsWith(root + "/");
}

/** The directory a path names, without its trailing `/`. */
function withoutSlash(path: string): string {
  return path.length > 1 && path.endsWith("/") ? path.slice(0, -1) : path;
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
  readonly #writeMaildir: typeof deliverToMaildir;
  /** Mailbox directories found inside the mail root, and until when that holds (epoch ms). */
  readonly #confined = new Map<string, number>();

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
    this.#writeMaildir = options.writeMaildir ?? deliverToMaildir;
  }

  /**
   * Delivers a message to the given recipients, one Maildir file each.
   *
   * Recipients with no `mailbox` (to be relayed) and indices out of range are
   * skipped: they get no outcome. Each other recipient gets one, whose text
   * names the mailbox and never a path:
   *
   * - `sent`, `250 2.0.0 delivered to maildir`, or `already delivered` when an
   *   earlier attempt's copy was found (the file name is derived from the
   *   queue id and the recipient index, so a retry after a crash never makes a
   *   second copy; `cur/` is searched too on a recovered claim or a retry);
   * - `deferred`, code 0 (no SMTP reply), when the file system refuses for a
   *   while (see {@linkcode classifyLocalFailure}), when the queued content
   *   cannot be read (`4.3.0`), when the mailbox is a link to nothing
   *   (`4.2.0`), or when the mail root itself cannot be reached (`4.3.5`,
   *   RFC 3463 X.3.5 system incorrectly configured: it concerns every
   *   mailbox, and the operator fixes it);
   * - `bounced`, when no retry can succeed: `5.1.3` when the mailbox name
   *   cannot be a Maildir path or an address holds CR, LF or NUL (it would
   *   inject header lines), `5.2.0` when the mailbox directory (or one on the
   *   way to it, or its `tmp/`, `new/` or `cur/`) is a symbolic link that
   *   leads out of the mail root, and the permanent file-system errors of
   *   {@linkcode classifyLocalFailure} met below the mail root.
   *
   * A link that stays inside the mail root is followed. Each mailbox
   * directory is checked once a minute at most (a few `realpath` calls), so
   * the common path costs no extra system call.
   *
   * @param claim The message, whether its claim was recovered (an earlier
   *   copy may already be in a Maildir), and its content when it is in memory
   *   (written as it is; `openContent` is then not called).
   * @param indices Indices into `message.recipients` to deliver.
   * @param openContent Opens the stored content, once per recipient (unless
   *   `claim.content` holds it).
   * @returns One outcome per recipient delivered to, in the order of `indices`.
   */
  async deliver(
    claim: Pick<ClaimedMessage, "message" | "recovered"> & {
      /** The content in memory, in one piece or in pieces. */
      readonly content?: Uint8Array | readonly Uint8Array[];
    },
    indices: readonly number[],
    openContent: () => ReadableStream<Uint8Array>,
  ): Promise<RecipientOutcome[]> {
    const { message } = claim;
    const outcomes: RecipientOutcome[] = [];
    for (const index of indices) {
      const recipient = message.recipients[index];
      if (recipient === undefined || recipient.mailbox === null) continue;
      const mailbox = recipient.mailbox;
      let dir: string;
      try {
        dir = maildirPath(this.#mailRoot, mailbox);
      } catch (error: unknown) {
        outcomes.push(this.#record(message, index, "bounced", "", {
          code: 0,
          enhancedStatus: "5.1.3", // RFC 3463: bad destination mailbox address syntax
          text: errorReason(error),
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
      const refusal = await this.#confine(dir, mailbox);
      if (refusal !== null) {
        const { status, enhancedStatus, reason } = refusal.failure;
        outcomes.push(
          this.#record(
            message,
            index,
            status,
            dir,
            { code: 0, enhancedStatus, text: reason },
            refusal.target,
          ),
        );
        continue;
      }
      let reply: ReplySummary;
      let status: RecipientOutcome["status"];
      // Until the content is open, any failure is a failure to read it.
      let contentFailed = () => true;
      try {
        let content: ReadableStream<Uint8Array> | Uint8Array | readonly Uint8Array[];
        if (claim.content === undefined) {
          const watched = watchContent(openContent());
          contentFailed = watched.failed;
          content = watched.stream;
        } else {
          contentFailed = () => false;
          content = claim.content;
        }
        const result = await this.#writeMaildir(dir, content, {
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
        // The name is another message's: no retry under it can succeed. The
        // caller (a delivery at acceptance) refuses the message instead.
        if (error instanceof MaildirNameTakenError) throw error;
        if (contentFailed()) {
          status = "deferred";
          reply = {
            code: 0,
            enhancedStatus: "4.3.0",
            text: `cannot read the queued content: ${errorReason(error)}`,
          };
        } else {
          const failure = classifyLocalFailure(error);
          status = failure.status;
          reply = {
            code: 0,
            enhancedStatus: failure.enhancedStatus,
            text: `cannot write to mailbox <${mailbox}>: ${failure.reason}`,
          };
          // Checked again next time: the structure changed under a trusted directory.
          if (status === "bounced") this.#confined.delete(dir);
        }
      }
      outcomes.push(this.#record(message, index, status, dir, reply));
    }
    return outcomes;
  }

  /**
   * Refuses a mailbox whose directory leads out of the mail root through a
   * symbolic link: the mailbox directory, its domain directory when the
   * mailbox is not made yet, and its `tmp/`, `new/` and `cur/`. Remembered
   * for a minute once found inside, so the common path makes no system call.
   *
   * @returns `null` to go on, or why not.
   */
  async #confine(dir: string, mailbox: string): Promise<Refusal | null> {
    const now = this.#now();
    const until = this.#confined.get(dir);
    if (until !== undefined && until > now) return null;
    let root: string | null;
    try {
      root = await this.#root();
    } catch (error: unknown) {
      // The mail root itself is unusable (a file on its way, a link loop, no
      // permission): the host's configuration, which the operator will fix,
      // and no reason to bounce every local message.
      return {
        failure: {
          status: "deferred",
          enhancedStatus: "4.3.5", // RFC 3463 X.3.5: system incorrectly configured
          reason: `cannot reach the mail root: ${errorReason(error)}`,
        },
      };
    }
    // No mail root yet: the delivery makes every directory itself, none a link.
    if (root === null) return null;
    try {
      const mailboxDir = withoutSlash(dir);
      const real = await realPathOrNull(mailboxDir);
      if (real === null) {
        if (await isSymlink(mailboxDir)) return brokenLink(mailbox);
        // Not made yet: it will be made inside whatever its domain directory is.
        const domainDir = mailboxDir.slice(0, mailboxDir.lastIndexOf("/"));
        const realDomain = await realPathOrNull(domainDir);
        if (realDomain === null) return (await isSymlink(domainDir)) ? brokenLink(mailbox) : null;
        return isInside(realDomain, root) ? null : leadsOut(mailbox, realDomain);
      }
      if (!isInside(real, root)) return leadsOut(mailbox, real);
      for (const sub of ["tmp", "new", "cur"]) {
        const path = `${mailboxDir}/${sub}`;
        const realSub = await realPathOrNull(path);
        if (realSub === null) {
          if (await isSymlink(path)) return brokenLink(mailbox);
          continue;
        }
        if (!isInside(realSub, root)) return leadsOut(mailbox, realSub);
      }
    } catch (error: unknown) {
      // ELOOP, ENOTDIR, EACCES on the way: the same rules as a failed write.
      const failure = classifyLocalFailure(error);
      return {
        failure: { ...failure, reason: `cannot write to mailbox <${mailbox}>: ${failure.reason}` },
      };
    }
    this.#remember(dir, now + CONFINED_TTL_MS);
    return null;
  }

  /**
   * The mail root's real path, or `null` while it does not exist. Asked
   * afresh with each mailbox check (once a minute per mailbox at most), so a
   * mail root that breaks later is still told apart from a broken mailbox.
   */
  #root(): Promise<string | null> {
    return realPathOrNull(this.#mailRoot);
  }

  #remember(dir: string, until: number): void {
    this.#confined.delete(dir);
    if (this.#confined.size >= CONFINED_CACHE_SIZE) {
      const oldest = this.#confined.keys().next().value;
      if (oldest !== undefined) this.#confined.delete(oldest);
    }
    this.#confined.set(dir, until);
  }

  /** Logs one attempt (one line per recipient) and makes its outcome. */
  #record(
    message: QueuedMessage,
    index: number,
    status: RecipientOutcome["status"],
    dir: string,
    reply: ReplySummary,
    target?: string,
  ): RecipientOutcome {
    const recipient = message.recipients[index];
    const delay = Math.max(0, Math.round((this.#now() - message.arrival) / 1000));
    this.#logger.log(status === "sent" ? "info" : "warn", `delivery.${status}`, message.queueId, {
      rcpt: `<${recipient?.address ?? ""}>`,
      next_hop: dir === "" ? "maildir" : `maildir:${dir}`,
      // Where a symbolic link really leads: the server log only, never a DSN.
      target,
      delay: `${delay}s`,
      status: reply.enhancedStatus,
      result: status,
      reply: reply.text,
    });
    return { index, status, reply };
  }
}

/** A mailbox that is a link out of the mail root: permanent (RFC 3463 X.2.0). */
function leadsOut(mailbox: string, target: string): Refusal {
  return {
    failure: {
      status: "bounced",
      enhancedStatus: "5.2.0",
      reason: `mailbox <${mailbox}> leads out of the mail root through a symbolic link: refused`,
    },
    target,
  };
}

/** A link to nothing: temporary (RFC 3463 X.2.0), its target may be on its way. */
function brokenLink(mailbox: string): Refusal {
  return {
    failure: {
      status: "deferred",
      enhancedStatus: "4.2.0",
      reason: `mailbox <${mailbox}> is a symbolic link to nothing`,
    },
  };
}
