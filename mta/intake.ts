/**
 * Intake: what the SMTP server asks, answered with the configuration and the
 * queue. Who is who (AUTH, RFC 4954, against `accounts`), which senders and
 * recipients are taken (the rules of `policy.ts`: submission, relaying, local
 * mailboxes, RFC 5321 §4.5.1 Postmaster), and where the content goes (the
 * queue, behind a `Received:` line, RFC 5321 §4.4).
 *
 * @module
 */

import { PasswordCheckBusyError, verifyPassword } from "../config/password.ts";
import type { Config, ListenerMode } from "../config/schema.ts";
import { configOf, type ConfigSource } from "./live_config.ts";
import type { Logger } from "../log/logger.ts";
import { MessageIdScanner } from "../log/fields.ts";
import { messagesAccepted } from "../metrics/tern.ts";
import type { DeliveryLoop } from "../queue/delivery_loop.ts";
import type { ClaimedMessage, QueueRecipient } from "../queue/types.ts";
import type { IncomingMessage, Queue } from "../queue/queue.ts";
import type { Envelope, RecipientDsn } from "../smtp/envelope.ts";
import { formatReceived } from "../smtp/received.ts";
import { isPositive, queuedReply, REPLIES, type Reply } from "../smtp/reply.ts";
import type { SaslCredentials } from "../smtp/sasl.ts";
import type { ConnectionInfo, MessageSink, ServerHandlers } from "../smtp/server.ts";
import { checkRecipient, checkSender, isDnsblChecked, isTrustedClient } from "./policy.ts";
import { type ContentPlan, ContentStages, type StagesResult } from "./content_stages.ts";
import { signerOf } from "./dkim_signer.ts";
import type { DnsQuerier } from "../dns/resolver.ts";
import { type DnsblChecker, dnsblRefusal, isPostmaster } from "./dnsbl.ts";
import { routeAddress } from "./routing.ts";
import { limitSending, SendingLimits } from "./sending_limits.ts";
import { authenticateWithDovecot } from "./dovecot_auth.ts";
import type { MessageOutcome, Milters } from "./milter_stage.ts";
import { DirectDelivery } from "./direct_delivery.ts";
import { HeldUpload } from "./held_upload.ts";

const encoder = new TextEncoder();

/**
 * Content up to this size is kept in memory beside its spool file when a
 * delivery loop takes messages at commit (within the queue's own budget).
 */
export const KEEP_FOR_HAND_OFF = 2 * 1024 * 1024;

/**
 * A hash of a random password nobody knows, checked when the account does
 * not exist or has no password, so an unknown user takes as long to refuse as
 * a wrong password (no user enumeration by timing). Same parameters as real
 * hashes, and checked through the same queue (`verifyPassword`'s gate): it
 * costs the same memory and time, and waits the same turn.
 */
const UNKNOWN_USER_HASH =
  "$scrypt$ln=15,r=8,p=1$gBygmacXVQIYnZ46d9+epQ$G27WFQ6/TAZLsEesx29jqyFfSL1iVQ0+7M0RyKlS09g";

/**
 * Checks AUTH credentials against `accounts` (RFC 4954): the user name is an
 * account address (any case), the password must match its hash (constant
 * time, `verifyPassword`), and a PLAIN authorization identity, if given, must
 * be the same user (RFC 4616 §2: tern lets nobody act as someone else).
 *
 * @param credentials What the client presented.
 * @param config The accounts.
 * @returns `235 2.7.0` or `535 5.7.8`; `454 4.7.0` when too many checks are
 *   waiting already (RFC 4954 §6: a temporary failure, nothing was checked).
 *
 * @example A wrong password
 * ```ts
 * import { authenticate } from "./intake.ts";
 * import { validateConfig } from "../config/schema.ts";
 * const config = validateConfig({
 *   local_domains: ["example.test"],
 *   accounts: { "bob@example.test": {} }, // no password: cannot log in
 * }, { file: null, baseDir: "/srv/tern" });
 * const credentials = {
 *   mechanism: "PLAIN" as const, authorizationId: "", username: "bob@example.test", password: "x",
 * };
 * console.log((await authenticate(credentials, config)).code); // 535
 * ```
 */
export async function authenticate(
  credentials: SaslCredentials,
  config: Pick<Config, "accounts">,
): Promise<Reply> {
  const user = credentials.username.normalize("NFC").toLowerCase();
  const account = Object.hasOwn(config.accounts, user) ? config.accounts[user] : undefined;
  const hash = account?.password;
  let isMatch: boolean;
  try {
    isMatch = await verifyPassword(credentials.password, hash ?? UNKNOWN_USER_HASH);
  } catch (error: unknown) {
    if (error instanceof PasswordCheckBusyError) return REPLIES.authUnavailable;
    throw error;
  }
  const authorizationId = credentials.authorizationId.normalize("NFC").toLowerCase();
  const isSelf = authorizationId === "" || authorizationId === user;
  return hash !== undefined && isMatch && isSelf ? REPLIES.authSucceeded : REPLIES.authFailed;
}

/** What {@linkcode createIntake} needs. */
export interface IntakeOptions {
  /**
   * The configuration, or where to read the one in force: each SMTP command
   * reads it as it arrives, so after a reload an open session answers its
   * next command by the new one; a message's recipients are expanded once,
   * at DATA, and keep that expansion.
   */
  readonly config: Config | ConfigSource;
  /** The listener the handlers serve. */
  readonly mode: ListenerMode;
  /** Where accepted messages go: the store, or a session worker's way to the main thread's. */
  readonly queue: Pick<Queue, "receive">;
  /** Where `message.accepted` lines go. */
  readonly logger: Logger;
  /** Called after each commit (and its log line), to start delivery at once. */
  readonly onQueued?: (queueId: string) => void;
  /**
   * Where a message committed with a claim goes for delivery (the delivery
   * loop): when it welcomes one, the message is claimed in its commit and
   * delivered from memory, without a read from the store.
   */
  readonly handOff?: Pick<DeliveryLoop, "acceptsHandOff" | "handOff">;
  /** The clock. @default {Date.now} */
  readonly now?: () => number;
  /**
   * Looks mx clients up in the `dnsbl` block lists; the lookup is started at
   * connect (`DnsblChecker.lookup`) and awaited at RCPT. @default {no lists asked}
   */
  readonly dnsbl?: DnsblChecker;
  /**
   * tern's resolver, for the inbound checks (SPF, DKIM, DMARC) of mx
   * listeners. @default {no checks}
   */
  readonly resolver?: DnsQuerier;
  /**
   * The per-account sending counts of submission listeners, shared by every
   * listener of the process. @default {a counter of this listener's own}
   */
  readonly sendingLimits?: SendingLimits;
  /**
   * The milters' conversations (`milters` in the configuration): asked at
   * MAIL, RCPT and with the complete message. @default {none}
   */
  readonly milters?: Milters;
  /**
   * Delivers mail for local Maildir mailboxes before the `250`, without the
   * store, while `queue.deliver_at_acceptance` is on (direct_delivery.ts).
   * @default {every message goes to the store}
   */
  readonly direct?: DirectDelivery;
}

/**
 * Expands forward-paths into the queue's recipients: aliases followed,
 * plus-addresses folded, duplicates removed (a message reaches a mailbox once
 * even when two aliases lead there). A forward-path in another domain, which
 * RCPT accepted under the relay policy, becomes a recipient with `mailbox:
 * null`: the relay transport delivers it.
 *
 * @param config The directory.
 * @param forwardPaths The accepted RCPT TO addresses.
 * @returns The recipients, in order.
 */
export function expandRecipients(
  config: Config,
  forwardPaths: readonly string[],
  dsn: readonly RecipientDsn[] = [],
): QueueRecipient[] {
  const seen = new Set<string>();
  const out: QueueRecipient[] = [];
  forwardPaths.forEach((path, i) => {
    const { notify, orcpt } = dsn[i] ?? {};
    for (const target of routeAddress(config, path)) {
      // A mailbox is named without regard to case; a remote local part is the remote's business.
      const key = target.mailbox !== null
        ? "mailbox:" + target.mailbox.toLowerCase()
        : "remote:" + remoteKey(target.address);
      if (seen.has(key)) continue;
      seen.add(key);
      // RFC 3461 §4.1, §4.2: NOTIFY and ORCPT follow the recipient through alias expansion.
      out.push({
        ...target,
        ...(notify === undefined ? {} : { notify }),
        ...(orcpt === undefined ? {} : { orcpt }),
      });
    }
  });
  return out;
}

export { routeAddress } from "./routing.ts";

/**
 * The DSN parameters of forward-paths a milter left: those of the same
 * path as received; none for a path it added.
 */
function dsnFor(envelope: Envelope, forwardPaths: readonly string[]): RecipientDsn[] {
  const byPath = new Map<string, RecipientDsn>();
  envelope.forwardPaths.forEach((path, i) => {
    const dsn = envelope.recipientDsn?.[i];
    if (dsn !== undefined) byPath.set(path.toLowerCase(), dsn);
  });
  return forwardPaths.map((path) => byPath.get(path.toLowerCase()) ?? {});
}

/** A remote address for duplicate checks: the local part as written, the domain in lower case. */
function remoteKey(address: string): string {
  const at = address.lastIndexOf("@");
  return at < 0 ? address : address.slice(0, at) + "@" + address.slice(at + 1).toLowerCase();
}

/**
 * Which content stages a message takes (content_stages.ts): mail from a
 * user (authenticated, a submission listener, a trusted network) is signed,
 * and completed when it came to a submission listener; mail from anyone
 * else on an mx listener is checked.
 */
function contentPlan(
  config: Config,
  options: IntakeOptions,
  envelope: Envelope,
  connection: ConnectionInfo,
  now: number,
): ContentPlan {
  const isUser = connection.authenticatedAs !== null || options.mode !== "mx" ||
    isTrustedClient(connection.remoteAddress, config.relay.trustedNetworks);
  const auth = config.authentication;
  const checks = auth.spf || auth.dkim || auth.dmarc;
  return {
    verify: isUser || !checks || options.resolver === undefined ? null : {
      authservId: auth.authservId,
      spf: auth.spf,
      dkim: auth.dkim,
      dmarc: auth.dmarc,
      resolver: options.resolver,
      clientAddress: connection.remoteAddress,
      helo: connection.clientName,
      mailFrom: envelope.reversePath,
    },
    sign: isUser ? signerOf(config) : null,
    // RFC 6409 §8: completing a message is the submission server's job only.
    complete: options.mode !== "mx" ? { hostname: config.hostname, now } : null,
  };
}

/**
 * Makes the handlers for one listener.
 *
 * @param options Config, queue, logger.
 * @returns The handlers for {@linkcode SmtpServer}.
 */
export function createIntake(options: IntakeOptions): ServerHandlers {
  const { queue, logger } = options;
  const now = options.now ?? Date.now;
  const client = (connection: ConnectionInfo) => ({
    mode: options.mode,
    address: connection.remoteAddress,
    authenticatedAs: connection.authenticatedAs,
  });
  /** tern's own answer to RCPT: policy, then the block lists. */
  const ownRecipientCheck = (
    forwardPath: string,
    config: Config,
    connection: ConnectionInfo,
  ): Reply | Promise<Reply> => {
    const request = { ...client(connection), forwardPath };
    const dnsbl = options.dnsbl;
    // RCPT, not the greeting, refuses a listed client: postmaster stays
    // reachable (RFC 5782 §5, RFC 5321 §4.5.1), so someone listed by
    // mistake can still write to a person here.
    if (dnsbl === undefined || isPostmaster(forwardPath) || !isDnsblChecked(request, config)) {
      return checkRecipient(request, config);
    }
    return dnsbl.lookup(connection, connection.remoteAddress, config.dnsbl ?? []).then((hit) =>
      hit === null ? checkRecipient(request, config) : dnsblRefusal(connection.remoteAddress, hit)
    );
  };
  // Submission only: per-account messages per hour and recipients per day (sending_limits.ts).
  return limitSending({
    authenticate: (credentials: SaslCredentials, connection: ConnectionInfo): Promise<Reply> => {
      const config = configOf(options.config);
      const dovecot = config.submission.dovecotAuth;
      if (dovecot === undefined) return authenticate(credentials, config);
      // Dovecot unreachable throws: the server logs it and answers 454 4.7.0.
      return authenticateWithDovecot(dovecot, credentials, {
        secured: connection.tls !== null,
        remoteAddress: connection.remoteAddress,
      });
    },

    sender(reversePath: string, parameters, connection: ConnectionInfo): Reply | Promise<Reply> {
      const config = configOf(options.config);
      const verdict = checkSender({ ...client(connection), reversePath }, config);
      const milters = options.milters;
      if (milters === undefined || !isPositive(verdict) || !milters.applies(config, options.mode)) {
        return verdict;
      }
      // The milters hear only of senders tern itself accepts (as Postfix's smtpd_milters).
      const context = { config, mode: options.mode, connection };
      return milters.mail(context, reversePath, parameters).then((refusal) => refusal ?? verdict);
    },

    recipient(
      forwardPath: string,
      parameters,
      connection: ConnectionInfo,
    ): Reply | Promise<Reply> {
      const config = configOf(options.config);
      const verdict = ownRecipientCheck(forwardPath, config, connection);
      const milters = options.milters;
      if (milters === undefined || !milters.applies(config, options.mode)) return verdict;
      const context = { config, mode: options.mode, connection };
      return Promise.resolve(verdict).then(async (answer) =>
        isPositive(answer)
          ? (await milters.rcpt(context, forwardPath, parameters)) ?? answer
          : answer
      );
    },

    async open(envelope: Envelope, connection: ConnectionInfo): Promise<MessageSink | Reply> {
      const config = configOf(options.config);
      const recipients = expandRecipients(config, envelope.forwardPaths, envelope.recipientDsn);
      if (recipients.length === 0) return REPLIES.noValidRecipients;
      const arrival = now();
      const plan = contentPlan(config, options, envelope, connection, arrival);
      const stages = ContentStages.isNeeded(plan) ? new ContentStages(plan) : null;
      const receive = (
        stored: Envelope,
        storedRecipients: QueueRecipient[],
      ): Promise<IncomingMessage> => {
        const init = {
          envelope: stored,
          recipients: storedRecipients,
          clientAddress: connection.remoteAddress,
          now: arrival,
          // Handed to the delivery loop at commit with its content: not read back.
          ...(options.handOff === undefined ? {} : { keepContent: KEEP_FOR_HAND_OFF }),
        };
        // Local mailboxes only: held in memory, for delivery at acceptance.
        const direct = options.direct;
        return direct !== undefined && DirectDelivery.takes(config, storedRecipients)
          ? Promise.resolve(direct.hold(init, queue))
          : queue.receive(init);
      };
      let incoming = await receive(envelope, recipients);
      let stored = { envelope, recipients };
      const receivedField = () =>
        formatReceived({
          clientName: connection.clientName,
          clientAddress: connection.remoteAddress,
          hostname: config.hostname,
          queueId: incoming.queueId,
          isExtended: connection.isExtended,
          smtputf8: envelope.smtputf8,
          tls: connection.tls,
          authenticated: connection.authenticatedAs !== null,
          recipient: stored.envelope.forwardPaths.length === 1
            ? stored.envelope.forwardPaths[0]!
            : null,
          date: new Date(arrival),
        });
      // With milters, the content is kept until they have seen it all and
      // stored afterwards, with their edits (milter_stage.ts).
      const milter = options.milters?.message({ config, mode: options.mode, connection }) ?? null;
      // For the acceptance line: the id a sender or a recipient can give the operator.
      const messageId = new MessageIdScanner();
      const store = (chunk: Uint8Array): Promise<void> => {
        const kept = stages === null ? chunk : stages.push(chunk);
        return kept.length === 0 ? Promise.resolve() : incoming.write(kept);
      };
      const logFields = () => ({
        from: `<${stored.envelope.reversePath}>`,
        message_id: messageId.messageId,
        client: connection.remoteAddress,
        milters: milter?.verdicts,
      });
      /** What the milters decided, applied: `null` to store the message, else the reply. */
      const applyMilters = async (outcome: MessageOutcome): Promise<Reply | null> => {
        if (outcome.kind === "refuse") {
          await incoming.abort();
          logger.log("info", "message.rejected", incoming.queueId, {
            ...logFields(),
            stage: "milter",
            code: outcome.reply.code,
            status: outcome.reply.enhancedStatus,
            reply: outcome.reply.lines.join(" "),
          });
          return outcome.reply;
        }
        const changed = outcome.kind === "accept" ? outcome.envelope : null;
        const changedRecipients = changed === null
          ? null
          : expandRecipients(config, changed.forwardPaths, dsnFor(envelope, changed.forwardPaths));
        if (outcome.kind === "discard" || changedRecipients?.length === 0) {
          // SMFIR_DISCARD (or every recipient deleted): accepted, and dropped.
          await incoming.abort();
          logger.log("info", "message.discarded", incoming.queueId, {
            ...logFields(),
            reason: outcome.kind === "discard" ? "discarded by milter" : "no recipient left",
          });
          return queuedReply(incoming.queueId);
        }
        if (outcome.kind !== "accept") return null;
        if (changed !== null && changedRecipients !== null) {
          // The queue keeps the envelope given at receive: a changed one needs a new upload.
          const first = incoming.queueId;
          await incoming.abort();
          stored = {
            envelope: {
              ...envelope,
              reversePath: changed.reversePath,
              forwardPaths: changed.forwardPaths,
              recipientDsn: dsnFor(envelope, changed.forwardPaths),
            },
            recipients: changedRecipients,
          };
          incoming = await receive(stored.envelope, stored.recipients);
          logger.log("info", "message.requeued", incoming.queueId, {
            replaces: first,
            reason: "milter changed the envelope",
          });
        }
        for await (const chunk of outcome.content()) await store(chunk);
        return null;
      };
      return {
        write: (chunk) => {
          messageId.push(chunk);
          return milter === null ? store(chunk) : milter.write(chunk);
        },
        abort: async () => {
          stages?.abort();
          await milter?.abort();
          return incoming.abort();
        },
        async commit(): Promise<Reply> {
          let quarantine: readonly string[] = [];
          if (milter !== null) {
            try {
              const outcome = await milter.finish(incoming.queueId, envelope);
              const refused = await applyMilters(outcome);
              if (refused !== null) {
                stages?.abort();
                return refused;
              }
              if (outcome.kind === "accept") quarantine = outcome.quarantine;
            } finally {
              await milter.dispose();
            }
          }
          let added = { above: "", below: "", verdict: null } as StagesResult;
          if (stages !== null) {
            const tail = stages.end();
            if (tail.length > 0) await incoming.write(tail);
            added = await stages.finish(incoming.queueId);
          }
          const verdict = added.verdict;
          if (verdict?.dmarcRejects && config.authentication.dmarcReject) {
            await incoming.abort();
            logger.log("info", "message.rejected", incoming.queueId, {
              ...logFields(),
              auth: verdict.summary,
            });
            return REPLIES.dmarcRejected(verdict.dmarc?.fromDomain ?? "the From: domain");
          }
          // RFC 5321 §4.4 trace on top, under what the checks add (RFC 8601 §5).
          const header = encoder.encode(added.above + receivedField() + added.below);
          const handOff = options.handOff;
          // Quarantined by a milter: stored held, for the operator (`tern queue release`).
          const hold = quarantine.length > 0;
          // Into the mailboxes before the 250 when it can be (direct_delivery.ts):
          // then only the recipients whose mailbox failed go to the store. A
          // held upload was made only for recipients DirectDelivery takes.
          const direct = options.direct !== undefined && !hold &&
              incoming instanceof HeldUpload && incoming.isHeld
            ? { deliverer: options.direct, upload: incoming }
            : null;
          let left: readonly QueueRecipient[] = stored.recipients;
          let claim: ClaimedMessage | null = null;
          try {
            if (direct !== null) {
              ({ left } = await direct.deliverer.deliver({
                queueId: incoming.queueId,
                envelope: stored.envelope,
                recipients: stored.recipients,
                arrival,
                clientAddress: connection.remoteAddress,
                content: direct.upload.content(header),
              }));
              if (left.length === 0) await incoming.abort();
              else direct.upload.narrow(left);
            }
            if (left.length > 0) {
              claim = !hold && handOff?.acceptsHandOff(incoming.size + header.length)
                ? await incoming.commitAndClaim(now(), { header })
                : (await incoming.commit({ header, ...(hold ? { hold } : {}) }), null);
            }
          } catch (error: unknown) {
            // Not accepted after all (the store failed): what was delivered still is.
            direct?.deliverer.publish(incoming.queueId);
            throw error;
          }
          messagesAccepted.inc();
          logger.log("info", "message.accepted", incoming.queueId, {
            ...logFields(),
            size: incoming.size,
            nrcpt: stored.recipients.length,
            helo: connection.clientName,
            listener: options.mode,
            user: connection.authenticatedAs ?? undefined,
            tls: connection.tls?.protocol,
            auth: verdict?.summary,
            held: hold ? quarantine.join("; ") : undefined,
          });
          direct?.deliverer.publish(incoming.queueId);
          if (claim !== null) handOff!.handOff(claim);
          else if (!hold && left.length > 0) options.onQueued?.(incoming.queueId);
          return queuedReply(incoming.queueId);
        },
      };
    },
  }, {
    mode: options.mode,
    counter: options.sendingLimits ?? new SendingLimits(),
    limits: () => configOf(options.config).limits,
    logger,
    now,
  });
}
