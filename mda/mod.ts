/**
 * Local delivery for tern. {@linkcode LocalDelivery} takes a claimed
 * message from the queue and turns one delivery attempt into per-recipient
 * outcomes; beneath it, which recipients are local
 * ({@linkcode resolveRecipient}), where their mail goes
 * ({@linkcode maildirPath}), and how it gets there safely
 * ({@linkcode deliverToMaildir}, through `tmp/` then `new/`, as the Maildir
 * spec at https://cr.yp.to/proto/maildir.html describes).
 *
 * @example Resolve a recipient and deliver into its Maildir
 * ```ts
 * import { deliverToMaildir, maildirPath, maildirUniqueName, resolveRecipient } from "./mod.ts";
 * const mailRoot = await Deno.makeTempDir();
 * const resolution = resolveRecipient("alice+news@localhost", {
 *   localDomains: ["localhost"],
 *   accounts: {},
 *   aliases: {},
 * });
 * if (resolution.kind === "local") {
 *   for (const [index, target] of resolution.targets.entries()) {
 *     if (target.mailbox === null) continue;
 *     const { path } = await deliverToMaildir(
 *       maildirPath(mailRoot, target.mailbox),
 *       new Blob(["Subject: hi\r\n\r\nHello\r\n"]).stream(),
 *       {
 *         returnPath: "",
 *         deliveredTo: target.address,
 *         uniqueName: maildirUniqueName(Date.now(), "4F2A9C", index, "localhost"),
 *       },
 *     );
 *     console.log(path); // ".../localhost/alice/new/...Q4F2A9CR0.localhost"
 *   }
 * }
 * await Deno.remove(mailRoot, { recursive: true });
 * ```
 *
 * @module
 */

export {
  classifyLocalFailure,
  LocalDelivery,
  type LocalDeliveryOptions,
  type LocalFailure,
} from "./local_delivery.ts";
export {
  deliverToMaildir,
  isMaildirName,
  type MaildirContent,
  type MaildirDeliveryOptions,
  type MaildirDeliveryResult,
  MaildirNameTakenError,
  maildirPath,
  maildirUniqueName,
  MAX_MAILDIR_OCTETS,
  MAX_NAME_OCTETS,
} from "./maildir.ts";
export {
  type RecipientDirectory,
  type Resolution,
  resolveRecipient,
  validateAliases,
} from "./recipient.ts";
// The shared types in this folder's signatures, so `deno doc --lint mda/mod.ts`
// sees them documented. They are the same bindings queue/, smtp/ and log/
// export, so `export *` of several folders from the root mod.ts stays
// unambiguous.
export type {
  ClaimedMessage,
  Lease,
  QueuedMessage,
  QueueRecipient,
  RecipientOutcome,
  RecipientState,
  RecipientStatus,
  ReplySummary,
} from "../queue/types.ts";
export type { BodyType, DsnNotify, Envelope, RecipientDsn } from "../smtp/envelope.ts";
export {
  LOG_EVENTS,
  type LogEvent,
  type Logger,
  type LogLevel,
  type LogSettings,
  type LogValue,
} from "../log/logger.ts";
