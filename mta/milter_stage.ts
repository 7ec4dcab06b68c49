/**
 * Milters in tern's intake: one conversation per SMTP connection with each
 * configured milter, opened at the first MAIL (CONNECT and HELO are sent
 * then, with what tern knows of the client), MAIL and RCPT passed on as
 * they come (a refusal becomes the SMTP reply), and the message itself
 * passed on once its content is complete (DATA, each header field, EOH, the
 * body, end of body), as Postfix's cleanup server does. The milters' edits
 * are applied to the kept content before it goes to the queue.
 *
 * A milter that is down, slow or talks nonsense gets its `default_action`:
 * `tempfail` refuses with `451 4.7.1` (the client keeps the message and
 * tries again), `accept` goes on without it. Either way the session never
 * hangs on it (every wait is bounded) and no message is lost.
 *
 * @module
 */

import type { Config, ListenerMode } from "../config/schema.ts";
import type { MilterConfig } from "../config/types.ts";
import type { Logger } from "../log/logger.ts";
import { milterActions } from "../metrics/tern.ts";
import { concatBytes } from "../bytes/concat.ts";
import { encodeBody, encodeConnect, encodeHelo, encodeMail, encodeRcpt } from "../milter/codec.ts";
import { encodeBare, encodeHeader, familyOf } from "../milter/codec.ts";
import { MilterClient, MilterFailure, parseMilterAddress } from "../milter/client.ts";
import {
  applyChanges,
  type Edited,
  type HeaderSection,
  HeaderSplitter,
  type MilterEnvelope,
  milterValue,
} from "../milter/message.ts";
import type { Decision, MilterEvent } from "../milter/session.ts";
import { ContentSpool } from "../milter/spool.ts";
import type { Parameters } from "../smtp/command.ts";
import type { Envelope } from "../smtp/envelope.ts";
import { REPLIES, type Reply, reply } from "../smtp/reply.ts";
import type { ConnectionInfo } from "../smtp/server.ts";

type Macros = ReadonlyArray<readonly [string, string]>;

/** One milter of a connection's conversation. */
interface Link {
  readonly config: MilterConfig;
  client: MilterClient | null;
  /** Failed for the rest of the connection: its default action applies. */
  failed: boolean;
  /** What it decided about the current message, for the log. */
  verdict: string;
}

/** What the milters decided about a complete message. */
export type MessageOutcome =
  /** Refused: send this reply, store nothing. */
  | { readonly kind: "refuse"; readonly reply: Reply }
  /** Accepted, but store nothing (SMFIR_DISCARD). */
  | { readonly kind: "discard" }
  /** Accepted: store what `content()` gives, with this envelope. */
  | {
    readonly kind: "accept";
    /** The message as the milters left it (exactly as received when nobody changed it). */
    readonly content: () => AsyncGenerator<Uint8Array>;
    /** The envelope, when a milter changed it. */
    readonly envelope: MilterEnvelope | null;
    /** The quarantine reasons (`milter: reason`): store the message held. */
    readonly quarantine: readonly string[];
  };

/** What a conversation needs to know of the server, at each step. */
export interface MilterContext {
  /** The configuration in force. */
  readonly config: Config;
  /** The listener. */
  readonly mode: ListenerMode;
  /** The SMTP connection. */
  readonly connection: ConnectionInfo;
}

/**
 * Every milter conversation of one listener's connections.
 *
 * @example No milters configured: nothing happens
 * ```ts
 * import { Milters } from "./milter_stage.ts";
 * import { createLogger } from "../log/logger.ts";
 * const milters = new Milters({ logger: createLogger({ level: "error" }), version: "test" });
 * console.log(milters.applies({ milters: [] }, "mx")); // false
 * ```
 */
export class Milters {
  readonly #logger: Logger;
  readonly #version: string;
  readonly #conversations = new WeakMap<ConnectionInfo, Conversation>();
  readonly #authTypes = new WeakMap<ConnectionInfo, string>();

  /**
   * Makes the conversations' keeper (one per listener set, shared by all).
   *
   * @param options Where failures are logged, and tern's version (macro `v`).
   */
  constructor(options: { readonly logger: Logger; readonly version: string }) {
    this.#logger = options.logger;
    this.#version = options.version;
  }

  /**
   * Whether any milter sees this listener's mail.
   *
   * @param config The configuration.
   * @param mode The listener.
   */
  applies(config: Pick<Config, "milters">, mode: ListenerMode): boolean {
    return (config.milters ?? []).some((m) => m.listeners.includes(mode));
  }

  /**
   * Remembers the SASL mechanism a connection authenticated with (macro `{auth_type}`).
   *
   * @param connection The connection.
   * @param mechanism The mechanism, like `PLAIN`.
   */
  noteAuth(connection: ConnectionInfo, mechanism: string): void {
    this.#authTypes.set(connection, mechanism);
  }

  /**
   * MAIL: opens the conversation when it is the first, and asks every milter.
   *
   * @param context Config, listener, connection.
   * @param reversePath The sender.
   * @param parameters MAIL parameters.
   * @returns A refusal, or `null` to go on.
   */
  async mail(
    context: MilterContext,
    reversePath: string,
    parameters: Parameters,
  ): Promise<Reply | null> {
    let conversation = this.#conversations.get(context.connection);
    if (conversation === undefined) {
      const milters = (context.config.milters ?? []).filter((m) =>
        m.listeners.includes(context.mode)
      );
      conversation = new Conversation(milters, this.#logger, context.connection.id);
      this.#conversations.set(context.connection, conversation);
    }
    const macros = this.#macros(context);
    return await conversation.mail(macros, reversePath, args(parameters), context);
  }

  /**
   * RCPT: asks every milter about a recipient tern accepted.
   *
   * @param context Config, listener, connection.
   * @param forwardPath The recipient.
   * @param parameters RCPT parameters.
   * @returns A refusal, or `null` to go on.
   */
  async rcpt(
    context: MilterContext,
    forwardPath: string,
    parameters: Parameters,
  ): Promise<Reply | null> {
    const conversation = this.#conversations.get(context.connection);
    if (conversation === undefined) return null;
    const macros: Macros = [
      ["{rcpt_addr}", forwardPath],
      ["{rcpt_host}", domainOf(forwardPath)],
      ["{rcpt_mailer}", mailerOf(context.config, forwardPath)],
    ];
    return await conversation.rcpt(macros, forwardPath, args(parameters));
  }

  /**
   * The message of the connection's transaction, when milters take part:
   * its content is kept (a temp file under `<data_dir>/tmp/` past 1 MiB)
   * for them.
   *
   * @param context Config, listener, connection.
   * @returns The message, or `null` when no milter is in the transaction.
   */
  message(context: MilterContext): MilterMessage | null {
    const conversation = this.#conversations.get(context.connection);
    if (conversation === undefined || !conversation.hasMessage) return null;
    return new MilterMessage(conversation, new ContentSpool(`${context.config.dataDir}/tmp`));
  }

  /**
   * The SMTP connection closed: ends its conversations (SMFIC_QUIT).
   *
   * @param connection The connection.
   */
  close(connection: ConnectionInfo): void {
    const conversation = this.#conversations.get(connection);
    this.#conversations.delete(connection);
    void conversation?.quit();
  }

  #macros(context: MilterContext): Macros {
    const { config, connection } = context;
    const user = connection.authenticatedAs;
    return [
      // Connect: as Postfix's milter_connect_macros.
      ["j", config.hostname],
      ["{daemon_name}", config.hostname],
      ["{daemon_addr}", connection.localAddress],
      ["v", `tern ${this.#version}`],
      ["_", `${connection.clientName || "unknown"} [${connection.remoteAddress}]`],
      ["{client_addr}", connection.remoteAddress],
      ["{client_port}", String(connection.remotePort)],
      ["{client_name}", "unknown"],
      ["{client_ptr}", "unknown"],
      // HELO: the TLS state.
      ["{tls_version}", connection.tls?.protocol ?? ""],
      ["{cipher}", connection.tls?.cipher ?? ""],
      // MAIL: who authenticated.
      ["{auth_type}", user === null ? "" : this.#authTypes.get(connection) ?? ""],
      ["{auth_authen}", user ?? ""],
    ];
  }
}

/** ESMTP parameters as `KEY=VALUE` strings. */
function args(parameters: Parameters): string[] {
  return [...parameters].map(([key, value]) => value === null ? key : `${key}=${value}`);
}

function domainOf(address: string): string {
  const at = address.lastIndexOf("@");
  return at < 0 ? "" : address.slice(at + 1);
}

/** `{mail_mailer}` / `{rcpt_mailer}`: `local` for a local domain, else `smtp` (as Postfix's transports). */
function mailerOf(config: Pick<Config, "localDomains">, address: string): string {
  const domain = domainOf(address).toLowerCase();
  return domain === "" || config.localDomains.includes(domain) ? "local" : "smtp";
}

/** The conversation side of a message: what {@linkcode MilterMessage} asks of it. */
export interface MilterTransaction {
  /** Each milter's verdict on the message, `address=verdict,...`. */
  readonly verdicts: string;
  /** Passes the complete message to the milters; their decision and edits. */
  endOfMessage(
    spool: ContentSpool,
    queueId: string,
    envelope: Readonly<Pick<Envelope, "reversePath" | "forwardPaths">>,
  ): Promise<MessageOutcome>;
  /** SMFIC_ABORT: the transaction ended without a message. */
  abort(): Promise<void>;
}

/** The milters of one SMTP connection. */
class Conversation implements MilterTransaction {
  readonly #links: Link[];
  readonly #logger: Logger;
  readonly #session: string;
  #connected = false;
  #inMessage = false;
  /** Serializes steps: a pipelining client's commands come one after another here too. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(milters: readonly MilterConfig[], logger: Logger, session: string) {
    this.#links = milters.map((config) => ({ config, client: null, failed: false, verdict: "" }));
    this.#logger = logger;
    this.#session = session;
  }

  get hasMessage(): boolean {
    return this.#inMessage && this.#links.length > 0;
  }

  /** The verdict of each milter on the current message, for `milters=` in the log. */
  get verdicts(): string {
    return this.#links.map((l) => `${l.config.address}=${l.verdict || "continue"}`).join(",");
  }

  #serial<T>(step: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(step, step);
    this.#queue = next.catch(() => {});
    return next;
  }

  mail(
    macros: Macros,
    reversePath: string,
    mailArgs: string[],
    context: MilterContext,
  ): Promise<Reply | null> {
    return this.#serial(async () => {
      if (!this.#connected) await this.#connect(macros, context);
      await this.#abortMessage();
      this.#inMessage = true;
      for (const link of this.#links) link.verdict = "";
      const mail: Macros = [
        ...macros,
        ["{mail_addr}", reversePath],
        ["{mail_host}", domainOf(reversePath)],
        ["{mail_mailer}", reversePath === "" ? "error" : mailerOf(context.config, reversePath)],
      ];
      const decision = await this.#ask("mail", mail, () => [encodeMail(reversePath, mailArgs)]);
      return this.#replyOf(decision);
    });
  }

  rcpt(macros: Macros, forwardPath: string, rcptArgs: string[]): Promise<Reply | null> {
    return this.#serial(async () => {
      if (!this.#inMessage) return null;
      const decision = await this.#ask("rcpt", macros, () => [encodeRcpt(forwardPath, rcptArgs)]);
      return this.#replyOf(decision);
    });
  }

  /** Opens each conversation and sends CONNECT and HELO (refusals there answer MAIL). */
  async #connect(macros: Macros, context: MilterContext): Promise<void> {
    this.#connected = true;
    const { connection } = context;
    await Promise.all(this.#links.map(async (link) => {
      const endpoint = parseMilterAddress(link.config.address);
      if (typeof endpoint === "string") {
        return this.#fail(link, new MilterFailure("unreachable", endpoint));
      }
      try {
        link.client = await MilterClient.open(endpoint, {
          connect: link.config.connectTimeout,
          command: link.config.commandTimeout,
          eom: link.config.eomTimeout,
        });
      } catch (error: unknown) {
        this.#fail(link, error);
      }
    }));
    const family = familyOf(connection.remoteAddress);
    const connect = encodeConnect(
      `[${connection.remoteAddress}]`,
      family,
      connection.remotePort,
      connection.remoteAddress,
    );
    // A refusal at CONNECT or HELO is remembered by the session: it answers every MAIL.
    await this.#ask("connect", macros, () => [connect]);
    await this.#ask("helo", macros, () => [encodeHelo(connection.clientName)]);
  }

  /** SMFIC_ABORT to every milter still in a message (a RSET, a refused DATA, an abandoned one). */
  async #abortMessage(): Promise<void> {
    for (const link of this.#links) {
      const client = link.client;
      if (client === null || client.isClosed) continue;
      const state = client.session.state;
      if (state !== "message" && state !== "message-done") continue;
      await client.abort().catch((error: unknown) => this.#fail(link, error));
    }
    this.#inMessage = false;
  }

  /** The transaction ended without a message (or after one that failed). */
  abort(): Promise<void> {
    return this.#serial(() => this.#abortMessage());
  }

  /**
   * Asks each milter in turn; the first refusal (or discard) answers.
   * A failed milter gets its default action.
   */
  async #ask(
    event: MilterEvent,
    macros: Macros,
    packets: (link: Link) => readonly Uint8Array[],
  ): Promise<Decision> {
    for (const link of this.#links) {
      const decision = await this.#askOne(link, event, macros, packets(link));
      if (decision.kind === "continue" || decision.kind === "accept") continue;
      return decision;
    }
    return { kind: "continue" };
  }

  async #askOne(
    link: Link,
    event: MilterEvent,
    macros: Macros,
    packets: readonly Uint8Array[],
  ): Promise<Decision> {
    if (link.failed || link.client === null) return this.#defaultAction(link);
    // Not in this message: an earlier milter ended its MAIL step (a discard) before this one was asked.
    const isMessageEvent = event !== "connect" && event !== "helo" && event !== "mail";
    if (isMessageEvent && link.client.session.state === "ready") return { kind: "continue" };
    try {
      const decision = await link.client.event(event, macros, packets);
      this.#record(link, event, decision);
      return decision;
    } catch (error: unknown) {
      this.#fail(link, error);
      return this.#defaultAction(link);
    }
  }

  #record(link: Link, event: MilterEvent, decision: Decision): void {
    if (decision.kind === "continue" && event !== "eom") return;
    // A refused recipient does not decide the message.
    if (event !== "rcpt") link.verdict = decision.kind;
    milterActions.inc({ milter: link.config.address, action: decision.kind });
  }

  #defaultAction(link: Link): Decision {
    link.verdict = "failed";
    return link.config.defaultAction === "tempfail" ? { kind: "tempfail" } : { kind: "continue" };
  }

  #fail(link: Link, error: unknown): void {
    if (link.failed) return;
    link.failed = true;
    link.client?.close();
    const reason = error instanceof Error ? error.message : String(error);
    milterActions.inc({ milter: link.config.address, action: "failed" });
    this.#logger.log("warn", "milter.failed", undefined, {
      session: this.#session,
      milter: link.config.address,
      reason: error instanceof MilterFailure ? `${error.kind}: ${reason}` : reason,
      action: link.config.defaultAction,
    });
  }

  #replyOf(decision: Decision): Reply | null {
    switch (decision.kind) {
      case "continue":
      case "accept":
      // Discard at MAIL or RCPT: the message is taken and dropped at its end.
      case "discard":
        return null;
      default:
        return refusal(decision);
    }
  }

  /**
   * Passes the complete message to each milter in turn (each sees the edits
   * of those before it) and applies the edits.
   */
  endOfMessage(
    spool: ContentSpool,
    queueId: string,
    envelope: Readonly<Pick<Envelope, "reversePath" | "forwardPaths">>,
  ): Promise<MessageOutcome> {
    return this.#serial(async () => {
      const section = await splitHeader(spool);
      const bodyStart = section.headerOctets;
      const edited: Edited = {
        fields: [...section.fields],
        headerRewritten: false,
        body: null,
        envelopeChanged: false,
        quarantine: [],
      };
      const current: MilterEnvelope = {
        reversePath: envelope.reversePath,
        forwardPaths: [...envelope.forwardPaths],
      };
      const addedBefore = edited.fields.length;
      const idMacro: Macros = [["i", queueId]];
      let discard = this.#links.some((l) => l.verdict === "discard");
      for (const link of this.#links) {
        if (discard) break;
        const decision = await this.#messageTo(link, idMacro, edited, spool, bodyStart);
        if (decision.kind === "discard") discard = true;
        else if (decision.kind !== "continue" && decision.kind !== "accept") {
          this.#inMessage = false;
          return { kind: "refuse", reply: refusal(decision) };
        }
        const client = link.client;
        if (client !== null && !link.failed) {
          const changes = client.session.changes;
          for (const change of changes) {
            milterActions.inc({ milter: link.config.address, action: change.type });
          }
          const before = edited.quarantine.length;
          applyChanges(edited, current, changes, client.session.wantsLeadingSpace);
          for (let i = before; i < edited.quarantine.length; i++) {
            edited.quarantine[i] = `milter ${link.config.address}: ${edited.quarantine[i]}`;
          }
          if (changes.some((c) => c.type === "quarantine")) link.verdict = "quarantine";
        }
      }
      this.#inMessage = false;
      if (discard) return { kind: "discard" };
      const headerChanged = edited.headerRewritten || edited.fields.length !== addedBefore;
      return {
        kind: "accept",
        content: () =>
          headerChanged || edited.body !== null ? rewritten(edited, section, spool) : spool.read(),
        envelope: edited.envelopeChanged ? current : null,
        quarantine: edited.quarantine,
      };
    });
  }

  /** DATA, the header fields, EOH, the body and its end to one milter; its final decision. */
  async #messageTo(
    link: Link,
    idMacro: Macros,
    edited: Edited,
    spool: ContentSpool,
    bodyStart: number,
  ): Promise<Decision> {
    const steps: Array<() => Promise<Decision>> = [
      () => this.#askOne(link, "data", idMacro, [encodeBare("T")]),
      ...edited.fields.map((field) => () =>
        this.#askOne(link, "header", idMacro, [
          encodeHeader(
            field.name,
            milterValue(field, link.client?.session.wantsLeadingSpace ?? false),
          ),
        ])
      ),
      () => this.#askOne(link, "eoh", idMacro, [encodeBare("N")]),
    ];
    for (const step of steps) {
      const decision = await step();
      if (decision.kind !== "continue") return decision;
    }
    const body = edited.body === null ? spool.read(bodyStart) : once(edited.body);
    for await (const piece of rechunk(body)) {
      const decision = await this.#askOne(link, "body", idMacro, encodeBody(piece));
      if (decision.kind !== "continue") return decision;
    }
    return await this.#askOne(link, "eom", idMacro, [encodeBare("E")]);
  }

  /** Ends every conversation. */
  quit(): Promise<void> {
    return this.#serial(async () => {
      await Promise.all(this.#links.map((l) => l.client?.quit()));
    });
  }
}

/** Turns a milter's refusal into an SMTP reply (Postfix's texts, with tern's wording). */
function refusal(decision: Decision): Reply {
  switch (decision.kind) {
    case "reject":
      return REPLIES.milterRejected;
    case "tempfail":
      return REPLIES.milterTempfail;
    case "reply":
      return reply(decision.code, decision.enhancedStatus, ...decision.lines);
    default:
      return REPLIES.milterTempfail;
  }
}

async function* once(data: Uint8Array): AsyncGenerator<Uint8Array> {
  yield data;
}

/** Body pieces of at most one SMFIC_BODY packet each, not too small (fewer round trips). */
async function* rechunk(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const size = 65535;
  let pending: Uint8Array[] = [];
  let filled = 0;
  for await (const chunk of source) {
    for (let at = 0; at < chunk.length;) {
      const take = Math.min(size - filled, chunk.length - at);
      pending.push(chunk.subarray(at, at + take));
      filled += take;
      at += take;
      if (filled === size) {
        yield concatBytes(pending);
        pending = [];
        filled = 0;
      }
    }
  }
  if (filled > 0) yield concatBytes(pending);
}

/** The header section of the kept content, and how many octets it (and its empty line) take. */
async function splitHeader(
  spool: ContentSpool,
): Promise<HeaderSection & { readonly headerOctets: number }> {
  const splitter = new HeaderSplitter();
  let seen = 0;
  let section: HeaderSection | null = null;
  for await (const chunk of spool.read()) {
    seen += chunk.length;
    section = splitter.push(chunk);
    if (section !== null) break;
  }
  section ??= splitter.end();
  return { ...section, headerOctets: seen - section.rest.length };
}

/** The message with the milters' header fields and body. */
async function* rewritten(
  edited: Edited,
  section: HeaderSection & { readonly headerOctets: number },
  spool: ContentSpool,
): AsyncGenerator<Uint8Array> {
  yield concatBytes(edited.fields.map((f) => f.raw));
  const body = edited.body;
  if (section.separated || (body !== null && body.length > 0)) {
    yield new Uint8Array([0x0d, 0x0a]);
  }
  if (body !== null) yield body;
  else yield* spool.read(section.headerOctets);
}

/**
 * The content of one message for the milters of its connection.
 */
export class MilterMessage {
  readonly #conversation: MilterTransaction;
  readonly #spool: ContentSpool;

  /**
   * Made by {@linkcode Milters.message}.
   *
   * @param conversation The connection's milters.
   * @param spool Where the content is kept.
   */
  constructor(conversation: MilterTransaction, spool: ContentSpool) {
    this.#conversation = conversation;
    this.#spool = spool;
  }

  /**
   * Keeps the next content octets.
   *
   * @param chunk As received.
   */
  write(chunk: Uint8Array): Promise<void> {
    return this.#spool.write(chunk);
  }

  /**
   * The content is complete: every milter sees it and decides.
   *
   * @param queueId The message's queue id (macro `i`).
   * @param envelope The sender and recipients.
   * @returns What to do with the message.
   */
  finish(
    queueId: string,
    envelope: Readonly<Pick<Envelope, "reversePath" | "forwardPaths">>,
  ): Promise<MessageOutcome> {
    return this.#conversation.endOfMessage(this.#spool, queueId, envelope);
  }

  /** Each milter's verdict, for `milters=` in the log: `address=verdict,...`. */
  get verdicts(): string {
    return this.#conversation.verdicts;
  }

  /** The transaction was abandoned: SMFIC_ABORT. */
  async abort(): Promise<void> {
    await this.#conversation.abort();
    await this.#spool.dispose();
  }

  /** Frees the kept content (a temp file). */
  dispose(): Promise<void> {
    return this.#spool.dispose();
  }
}
