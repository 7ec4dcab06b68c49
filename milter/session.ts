/**
 * One milter conversation as a state machine, with no I/O: which command may
 * be sent when, which of them the milter asked not to get or will not answer
 * (the SMFIP_* flags it chose in option negotiation), and what its responses
 * mean for the SMTP session (Postfix's milter8.c is the reference for the
 * replies: reject is `550 5.7.1`, tempfail `451 4.7.1`).
 *
 * The order is fixed by the protocol: OPTNEG; CONNECT; HELO; then per
 * message MAIL, RCPT..., DATA, HEADER..., EOH, BODY..., end of body; ABORT
 * ends a message early and QUIT the conversation. Each event may be
 * preceded by a MACRO packet with the values the milter may ask for.
 *
 * @module
 */

import {
  type CommandCode,
  encodeMacros,
  MILTER_VERSION,
  MilterProtocolError,
  type Negotiated,
  OFFERED_PROTOCOL,
  type Response,
  SMFIF,
  SMFIM,
  SMFIP,
} from "./codec.ts";

/** The events of a conversation, in protocol order. */
export type MilterEvent =
  | "connect"
  | "helo"
  | "mail"
  | "rcpt"
  | "data"
  | "header"
  | "eoh"
  | "body"
  | "eom";

interface EventRule {
  readonly code: CommandCode;
  /** The flag with which a milter asks not to get the event. */
  readonly noSend: number;
  /** The flag with which a milter says it will not answer it. */
  readonly noReply: number;
  /** The macro stage (SMFIM_*) whose symbol list applies. */
  readonly stage: number;
}

const RULES: Readonly<Record<MilterEvent, EventRule>> = {
  connect: { code: "C", noSend: SMFIP.NOCONNECT, noReply: SMFIP.NR_CONN, stage: SMFIM.CONNECT },
  helo: { code: "H", noSend: SMFIP.NOHELO, noReply: SMFIP.NR_HELO, stage: SMFIM.HELO },
  mail: { code: "M", noSend: SMFIP.NOMAIL, noReply: SMFIP.NR_MAIL, stage: SMFIM.ENVFROM },
  rcpt: { code: "R", noSend: SMFIP.NORCPT, noReply: SMFIP.NR_RCPT, stage: SMFIM.ENVRCPT },
  data: { code: "T", noSend: SMFIP.NODATA, noReply: SMFIP.NR_DATA, stage: SMFIM.DATA },
  header: { code: "L", noSend: SMFIP.NOHDRS, noReply: SMFIP.NR_HDR, stage: SMFIM.EOH },
  eoh: { code: "N", noSend: SMFIP.NOEOH, noReply: SMFIP.NR_EOH, stage: SMFIM.EOH },
  body: { code: "B", noSend: SMFIP.NOBODY, noReply: SMFIP.NR_BODY, stage: SMFIM.EOM },
  eom: { code: "E", noSend: 0, noReply: 0, stage: SMFIM.EOM },
};

/** Where the conversation is. */
export type SessionState =
  /** Negotiated; CONNECT next. */
  | "negotiated"
  /** Between messages (after HELO, an end of message, or ABORT). */
  | "ready"
  /** In a message (after MAIL). */
  | "message"
  /** The milter accepted this message: no more events until the next MAIL. */
  | "message-done"
  /** The milter accepted the connection: nothing more is sent. */
  | "connection-accepted"
  /** The milter rejected the connection: every command gets `rejectReply`. */
  | "connection-rejected";

/** What a milter decided about an event. */
export type Decision =
  /** Go on (also: the milter was not asked, or will not answer). */
  | { readonly kind: "continue" }
  /** Accept the message (or connection) without asking this milter again. */
  | { readonly kind: "accept" }
  /** Accept the message, store nothing. */
  | { readonly kind: "discard" }
  /** Refuse for good: `550 5.7.1` (milter8.c). */
  | { readonly kind: "reject" }
  /** Refuse for now: `451 4.7.1` (milter8.c). */
  | { readonly kind: "tempfail" }
  /** Refuse with the milter's own reply (SMFIR_REPLYCODE). */
  | {
    readonly kind: "reply";
    readonly code: number;
    readonly enhancedStatus?: string;
    readonly lines: readonly string[];
  };

/** A change asked for at end of message, in the order the milter sent them. */
export type Modification = Extract<
  Response,
  {
    type:
      | "addheader"
      | "insheader"
      | "chgheader"
      | "chgfrom"
      | "addrcpt"
      | "delrcpt"
      | "replbody"
      | "quarantine";
  }
>;

/** The actions each modification needs to have been allowed in negotiation. */
const NEEDS: Readonly<Record<Modification["type"], number>> = {
  addheader: SMFIF.ADDHDRS,
  insheader: SMFIF.ADDHDRS,
  chgheader: SMFIF.CHGHDRS,
  chgfrom: SMFIF.CHGFROM,
  addrcpt: SMFIF.ADDRCPT | SMFIF.ADDRCPT_PAR,
  delrcpt: SMFIF.DELRCPT,
  replbody: SMFIF.CHGBODY,
  quarantine: SMFIF.QUARANTINE,
};

/** What `respond` makes of one response. */
export type Step =
  /** The milter is still working (SMFIR_PROGRESS) or sent a change: read on. */
  | { readonly done: false }
  /** The event is answered. */
  | { readonly done: true; readonly decision: Decision };

const REJECT: Decision = { kind: "reject" };
const TEMPFAIL: Decision = { kind: "tempfail" };

/**
 * The protocol state of one milter conversation.
 *
 * @example A milter that wants no body and answers reject at RCPT
 * ```ts
 * import assert from "node:assert/strict";
 * import { MilterSession } from "./session.ts";
 * import { SMFIP } from "./codec.ts";
 * const session = new MilterSession({
 *   version: 6, actions: 0, protocol: SMFIP.NOBODY, symbols: new Map(),
 * });
 * session.begin("connect"); session.respond("connect", { type: "continue" });
 * session.begin("helo"); session.respond("helo", { type: "continue" });
 * session.begin("mail"); session.respond("mail", { type: "continue" });
 * assert.equal(session.begin("rcpt").expectsReply, true);
 * const step = session.respond("rcpt", { type: "reject" });
 * assert.deepEqual(step, { done: true, decision: { kind: "reject" } });
 * assert.equal(session.begin("body").send, false);
 * ```
 */
export class MilterSession {
  /** What the milter chose in option negotiation. */
  readonly negotiated: Negotiated;
  #state: SessionState = "negotiated";
  #rejectReply: Decision = REJECT;
  /** The event type the milter asked to skip (SMFIR_SKIP), until another comes. */
  #skipping: MilterEvent | null = null;
  #changes: Modification[] = [];

  /**
   * Starts the state machine after option negotiation.
   *
   * @param negotiated The milter's OPTNEG answer.
   * @throws {MilterProtocolError} When it asks for a newer version, or for
   *   actions or flags tern did not offer.
   */
  constructor(negotiated: Negotiated) {
    if (negotiated.version > MILTER_VERSION || negotiated.version < 2) {
      throw new MilterProtocolError(`protocol version ${negotiated.version}, tern speaks 2 to 6`);
    }
    if ((negotiated.protocol & ~OFFERED_PROTOCOL) !== 0) {
      throw new MilterProtocolError(
        `protocol flags 0x${negotiated.protocol.toString(16)} beyond what tern offered`,
      );
    }
    this.negotiated = negotiated;
  }

  /** Where the conversation is. */
  get state(): SessionState {
    return this.#state;
  }

  /** Whether the milter takes part in the current message. */
  get isInMessage(): boolean {
    return this.#state === "message";
  }

  /** Whether the milter wants header values with their leading space (SMFIP_HDR_LEADSPC). */
  get wantsLeadingSpace(): boolean {
    return (this.negotiated.protocol & SMFIP.HDR_LEADSPC) !== 0;
  }

  /**
   * Before sending an event: whether to send it and whether to wait for an answer.
   *
   * @param event The event.
   * @returns `send`: false when the milter does not want it (or asked to skip
   *   it, or is done with the message or connection); `expectsReply`: false
   *   when it will not answer. `rejected` is set when the connection was
   *   rejected and the event must get that reply without being sent.
   * @throws {MilterProtocolError} When the event is out of order.
   */
  begin(event: MilterEvent): { send: boolean; expectsReply: boolean; rejected?: Decision } {
    this.#checkOrder(event);
    // Connected, whether or not the milter wants to hear about it.
    if (event === "connect") this.#state = "ready";
    if (event === "mail" && (this.#state === "ready" || this.#state === "message-done")) {
      this.#state = "message";
      this.#changes = [];
    }
    if (this.#state === "connection-rejected") {
      return { send: false, expectsReply: false, rejected: this.#rejectReply };
    }
    const rule = RULES[event];
    const active = this.#state === "ready" || this.#state === "message";
    if (!active) return { send: false, expectsReply: false };
    if (this.#skipping !== null && this.#skipping !== event) this.#skipping = null;
    const flags = this.negotiated.protocol;
    const send = (flags & rule.noSend) === 0 && this.#skipping !== event;
    return { send, expectsReply: send && (flags & rule.noReply) === 0 };
  }

  #checkOrder(event: MilterEvent): void {
    const state = this.#state;
    const fine = event === "connect"
      ? state === "negotiated"
      : event === "helo" || event === "mail"
      ? state !== "negotiated"
      : state !== "negotiated" && state !== "ready";
    if (!fine) throw new MilterProtocolError(`event ${event} out of order in state ${state}`);
  }

  /**
   * The MACRO packet to send before an event, with the names the milter
   * asked for at that stage (all of them when it did not say).
   *
   * @param event The event.
   * @param macros Names and values; empty values are left out.
   * @returns The packet, or `null` when there is nothing to send.
   */
  macros(event: MilterEvent, macros: ReadonlyArray<readonly [string, string]>): Uint8Array | null {
    const rule = RULES[event];
    const wanted = this.negotiated.symbols.get(rule.stage);
    const chosen = macros.filter(([name, value]) =>
      value !== "" &&
      (wanted === undefined || wanted.includes(name) || wanted.includes(name.replace(/[{}]/g, "")))
    );
    return chosen.length === 0 ? null : encodeMacros(rule.code, chosen);
  }

  /**
   * Takes one response to an event.
   *
   * @param event The event it answers.
   * @param response The decoded response.
   * @returns Whether the event is answered, and how.
   * @throws {MilterProtocolError} For a response not allowed here (a change
   *   before end of message, or one not negotiated).
   */
  respond(event: MilterEvent, response: Response): Step {
    const step = this.#respond(event, response);
    // The final answer to the end of the message closes it, whatever it says.
    if (step.done && event === "eom" && this.#state !== "connection-rejected") {
      this.#state = "ready";
    }
    return step;
  }

  #respond(event: MilterEvent, response: Response): Step {
    const isConnectionEvent = event === "connect" || event === "helo";
    switch (response.type) {
      case "progress":
        return { done: false };
      case "continue":
        return this.#done(event, { kind: "continue" });
      case "skip":
        // Only events that come many at a time can be skipped (libmilter: body chunks).
        this.#skipping = event;
        return this.#done(event, { kind: "continue" });
      case "accept":
        this.#state = isConnectionEvent ? "connection-accepted" : "message-done";
        return { done: true, decision: { kind: "accept" } };
      case "discard":
        // milter8.c: not allowed at connect or HELO; treated as continue there.
        if (isConnectionEvent) return this.#done(event, { kind: "continue" });
        this.#state = "message-done";
        return { done: true, decision: { kind: "discard" } };
      case "reject":
        return this.#refuse(event, REJECT);
      case "tempfail":
        return this.#refuse(event, TEMPFAIL);
      case "replycode":
        return this.#refuse(event, parseReplyCode(response.text));
      case "shutdown":
      case "connfail":
        // Internal to Sendmail; from a milter, a temporary failure.
        return this.#refuse(event, TEMPFAIL);
      case "optneg":
      case "setsymlist":
        throw new MilterProtocolError(`response '${response.type}' after negotiation`);
      default:
        return this.#change(event, response);
    }
  }

  #done(event: MilterEvent, decision: Decision): Step {
    if (event === "eom" && this.#state === "message") this.#state = "ready";
    return { done: true, decision };
  }

  #refuse(event: MilterEvent, decision: Decision): Step {
    if (event === "connect" || event === "helo") {
      this.#state = "connection-rejected";
      this.#rejectReply = decision;
    } else if (event !== "rcpt") {
      // A refused RCPT refuses that recipient only; anything else ends the message.
      this.#state = "message-done";
    }
    return { done: true, decision };
  }

  #change(event: MilterEvent, change: Modification): Step {
    if (event !== "eom") {
      throw new MilterProtocolError(`change '${change.type}' before the end of the message`);
    }
    if ((this.negotiated.actions & NEEDS[change.type]) === 0) {
      throw new MilterProtocolError(`change '${change.type}' not negotiated`);
    }
    this.#changes.push(change);
    return { done: false };
  }

  /** The changes asked for at end of message, in order. */
  get changes(): readonly Modification[] {
    return this.#changes;
  }

  /** The message was abandoned (SMFIC_ABORT sent): back between messages. */
  abort(): void {
    if (this.#state === "message" || this.#state === "message-done") this.#state = "ready";
    this.#skipping = null;
    this.#changes = [];
  }
}

/**
 * Reads an SMFIR_REPLYCODE text, `ddd d.d.d text` (possibly multi-line, each
 * line with its code): Postfix checks it is a valid 4xx or 5xx SMTP reply
 * and undoes Sendmail's `%%` (the text was a format string there).
 *
 * @param text The milter's reply text.
 * @returns The decision.
 * @throws {MilterProtocolError} When it is not a 4xx or 5xx reply.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseReplyCode } from "./session.ts";
 * assert.deepEqual(parseReplyCode("554 5.7.0 Spam, 100%% sure"), {
 *   kind: "reply", code: 554, enhancedStatus: "5.7.0", lines: ["Spam, 100% sure"],
 * });
 * ```
 */
export function parseReplyCode(text: string): Decision {
  const unescaped = text.replace(/%(%?)/g, "$1");
  const lines = unescaped.split(/\r?\n/).filter((line) => line !== "");
  const first = /^([45]\d\d)(?:[ -]|$)/.exec(lines[0] ?? "");
  if (first === null) {
    throw new MilterProtocolError(`malformed reply code: ${text.slice(0, 80)}`);
  }
  const code = first[1]!;
  const texts: string[] = [];
  for (const line of lines) {
    if (!line.startsWith(code)) {
      throw new MilterProtocolError(`malformed reply code: ${text.slice(0, 80)}`);
    }
    texts.push(line.slice(4));
  }
  // RFC 3463 §2: the status's class must match the reply's.
  const status = /^([45])\.\d{1,3}\.\d{1,3}(?: |$)/.exec(texts[0]!);
  const enhancedStatus = status !== null && status[1] === code[0]
    ? texts[0]!.slice(0, status[0].trimEnd().length)
    : undefined;
  const body = texts.map((t) =>
    enhancedStatus !== undefined && t.startsWith(enhancedStatus)
      ? t.slice(enhancedStatus.length).trimStart()
      : t
  );
  return {
    kind: "reply",
    code: Number(code),
    ...(enhancedStatus === undefined ? {} : { enhancedStatus }),
    lines: body,
  };
}
