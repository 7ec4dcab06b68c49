/**
 * The playground's model, without a page: tern's real SMTP server session
 * (`smtp/server_session.ts`, the same module `tern serve` runs) fed one line
 * at a time, with the playground's policy answering its questions, and every
 * line of the dialogue annotated from `smtp/annotations.ts`.
 *
 * The policy is the one tern's transcript tests use:
 *
 * - any sender is accepted;
 * - recipients at `example.test` are accepted, except `nobody@example.test`,
 *   which does not exist (`550 5.1.1`);
 * - recipients in other domains are not relayed (`554 5.7.1`);
 * - a finished message is "queued" with a made-up queue id, and kept here so
 *   the page can show it.
 *
 * It runs in the browser (`app.ts` draws it) and in Deno (the tests and
 * `docs/gen.ts` drive it).
 *
 * @module
 */

import {
  annotateCommand,
  annotateExtension,
  annotateReply,
  formatReference,
  type RfcReference,
} from "../../smtp/annotations.ts";
import { concatBytes } from "../../bytes/concat.ts";
import { queuedReply, REPLIES, type Reply } from "../../smtp/reply.ts";
import { ServerSession, type SessionEvent, type SessionState } from "../../smtp/server_session.ts";

export type { RfcReference } from "../../smtp/annotations.ts";
export type { SessionState } from "../../smtp/server_session.ts";

/** One line of the dialogue, as the page shows it. */
export interface TranscriptLine {
  /** `client`: a command; `content`: a line of the message; `server`: a reply line; `note`: the playground's own remark. */
  readonly side: "client" | "content" | "server" | "note";
  /** The line as on the wire, without CRLF. */
  readonly text: string;
  /** What the line means, reference first: `"RFC 5321 §4.1.1.2 · starts a mail transaction"`; `null` when there is nothing to say. */
  readonly annotation: string | null;
  /** The rule alone: `"starts a mail transaction"`; `null` without one. */
  readonly rule: string | null;
  /** Where the rule is defined, for a link; `null` without one. */
  readonly reference: RfcReference | null;
}

/** The transaction in progress (RFC 5321 §3.3), as the side pane shows it. */
export interface TransactionView {
  /** Where the session stands (`SEQUENCE` in server_session.ts says which command is legal when). */
  readonly state: SessionState;
  /** The name the client gave in EHLO or HELO, or `""`. */
  readonly clientName: string;
  /** Whether the client said EHLO, so replies carry enhanced status codes. */
  readonly isExtended: boolean;
  /** The reverse-path of MAIL FROM (`""` for `<>`), or `null` outside a transaction. */
  readonly reversePath: string | null;
  /** The recipients accepted so far. */
  readonly forwardPaths: readonly string[];
  /** The recipients refused in this transaction, with the reply code. */
  readonly refused: readonly { readonly forwardPath: string; readonly code: number }[];
  /** Octets of content received so far, after dot-unstuffing. */
  readonly size: number;
}

/** A message the playground "queued". */
export interface LabMessage {
  /** The made-up queue id in `250 2.0.0 Ok: queued as <ID>`. */
  readonly queueId: string;
  /** The reverse-path (`""` for `<>`). */
  readonly reversePath: string;
  /** The forward-paths. */
  readonly forwardPaths: readonly string[];
  /** The content as received, dot-unstuffed, CRLF line ends. */
  readonly content: string;
}

/** Options of {@linkcode Lab}. */
export interface LabOptions {
  /** The server's name in the greeting. @default {"mx.example.test"} */
  hostname?: string;
  /** Makes the queue id of each message. @default {six random hex digits, upper case} */
  queueId?: () => string;
}

/** The playground's recipient policy (see the module doc). */
function recipientPolicy(forwardPath: string): Reply {
  if (forwardPath === "Postmaster") return REPLIES.recipientOk; // RFC 5321 §4.5.1
  const at = forwardPath.lastIndexOf("@");
  const domain = forwardPath.slice(at + 1).toLowerCase();
  if (domain !== "example.test") return REPLIES.relayDenied;
  if (forwardPath.slice(0, at).toLowerCase() === "nobody") return REPLIES.noSuchUser;
  return REPLIES.recipientOk;
}

function randomQueueId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(3));
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("").toUpperCase();
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const NO_NOTE = { annotation: null, rule: null, reference: null } as const;

function note(
  annotation: { readonly rule: string; readonly reference: RfcReference },
): Pick<TranscriptLine, "annotation" | "rule" | "reference"> {
  return {
    annotation: `${formatReference(annotation.reference)} · ${annotation.rule}`,
    rule: annotation.rule,
    reference: annotation.reference,
  };
}

/**
 * A session with tern's server core, one typed line at a time.
 *
 * @example A whole transaction
 * ```ts
 * import { Lab } from "./lab.ts";
 * const lab = new Lab({ queueId: () => "4F2A9C" });
 * lab.start();
 * for (const line of ["EHLO client.test", "MAIL FROM:<alice@client.test>", "RCPT TO:<bob@example.test>", "DATA"]) {
 *   lab.type(line);
 * }
 * console.log(lab.view.state); // "data"
 * lab.type("Subject: hello");
 * lab.type("");
 * lab.type("Hi Bob");
 * const end = lab.type(".");
 * console.log(end.at(-1)?.text); // "250 2.0.0 Ok: queued as 4F2A9C"
 * console.log(lab.queued[0]?.content); // "Subject: hello\r\n\r\nHi Bob\r\n"
 * ```
 */
export class Lab {
  #session: ServerSession;
  #queueId: () => string;
  #reversePath: string | null = null;
  #forwardPaths: string[] = [];
  #refused: { forwardPath: string; code: number }[] = [];
  #content: Uint8Array[] = [];
  #size = 0;
  #queued: LabMessage[] = [];
  #out: TranscriptLine[] = [];
  #started = false;
  /** The reverse-path of a MAIL FROM waiting for our answer. */
  #pendingSender: string | null = null;
  /** The reply given to the end of the content, annotated as such. */
  #finalReply: Reply | null = null;

  /**
   * Makes a lab; {@linkcode Lab.start} connects.
   *
   * @param options The server's name and the queue ids.
   */
  constructor(options: LabOptions = {}) {
    this.#session = new ServerSession({ hostname: options.hostname ?? "mx.example.test" });
    this.#queueId = options.queueId ?? randomQueueId;
  }

  /**
   * Connects: the server greets.
   *
   * @returns The greeting.
   */
  start(): TranscriptLine[] {
    if (this.#started) return [];
    this.#started = true;
    return this.#handle(this.#session.start());
  }

  /**
   * Sends one line, as if typed and followed by CRLF: a command, or a line of
   * content after `354`.
   *
   * @param line The line, without its end.
   * @returns The lines to show: the typed line, the replies, notes.
   */
  type(line: string): TranscriptLine[] {
    if (!this.#started) this.start();
    if (this.#session.state === "closed") {
      return [{
        side: "note",
        text: "The connection is closed: reconnect to start a new session.",
        ...NO_NOTE,
      }];
    }
    this.#out.push(this.#echo(line));
    return this.#handle(this.#session.receive(encoder.encode(`${line}\r\n`)));
  }

  /** Where the session and its transaction stand. */
  get view(): TransactionView {
    return {
      state: this.#session.state,
      clientName: this.#session.clientName,
      isExtended: this.#session.isExtended,
      reversePath: this.#reversePath,
      forwardPaths: [...this.#forwardPaths],
      refused: [...this.#refused],
      size: this.#size,
    };
  }

  /** The messages queued so far, oldest first. */
  get queued(): readonly LabMessage[] {
    return this.#queued;
  }

  /** Whether the session has ended (QUIT, or closed by the server). */
  get isClosed(): boolean {
    return this.#session.state === "closed";
  }

  /** The typed line, annotated as a command or as content. */
  #echo(line: string): TranscriptLine {
    const state = this.#session.state;
    if (state === "data") {
      if (line === ".") {
        return {
          side: "content",
          text: line,
          ...note({
            rule: "a line holding only a dot ends the content",
            reference: { rfc: 5321, section: "4.1.1.4" },
          }),
        };
      }
      if (line.startsWith(".")) {
        return {
          side: "content",
          text: line,
          ...note({
            rule: "a leading dot is removed (dot-stuffing)",
            reference: { rfc: 5321, section: "4.5.2" },
          }),
        };
      }
      return { side: "content", text: line, ...NO_NOTE };
    }
    if (/^auth\s/i.test(line)) {
      // Credentials are never repeated, not even in the playground's notes.
      return { side: "client", text: line, ...note(annotateCommand("AUTH")) };
    }
    return { side: "client", text: line, ...note(annotateCommand(line)) };
  }

  #handle(events: SessionEvent[]): TranscriptLine[] {
    const queue = [...events];
    while (queue.length > 0) {
      const event = queue.shift()!;
      switch (event.type) {
        case "send":
          this.#showReplies(event.bytes, event.replies);
          break;
        case "sender":
          this.#pendingSender = event.reversePath;
          queue.unshift(...this.#answer(REPLIES.senderOk));
          break;
        case "recipient": {
          const r = recipientPolicy(event.forwardPath);
          if (r.code === 250) this.#forwardPaths.push(event.forwardPath);
          else this.#refused.push({ forwardPath: event.forwardPath, code: r.code });
          queue.unshift(...this.#answer(r));
          break;
        }
        case "open":
          this.#content = [];
          this.#size = 0;
          queue.unshift(...this.#answer(REPLIES.startData));
          break;
        case "content":
          this.#content.push(event.chunk.slice());
          this.#size += event.chunk.length;
          break;
        case "message": {
          const queueId = this.#queueId();
          this.#queued.push({
            queueId,
            reversePath: event.envelope.reversePath,
            forwardPaths: [...event.envelope.forwardPaths],
            content: decoder.decode(concatBytes(this.#content)),
          });
          const accepted = queuedReply(queueId);
          this.#finalReply = accepted;
          queue.unshift(...this.#answer(accepted));
          break;
        }
        case "discard":
          this.#content = [];
          break;
        case "close":
          this.#out.push({ side: "note", text: "The server closed the connection.", ...NO_NOTE });
          break;
        default:
          // command (already shown), auth and starttls (not offered here).
          break;
      }
    }
    this.#syncTransaction();
    const out = this.#out;
    this.#out = [];
    return out;
  }

  #answer(r: Reply): SessionEvent[] {
    if (this.#pendingSender !== null) {
      if (r.code === 250) {
        this.#reversePath = this.#pendingSender;
        this.#forwardPaths = [];
        this.#refused = [];
        this.#size = 0;
      }
      this.#pendingSender = null;
    }
    return this.#session.answer(r);
  }

  /** RSET, EHLO, QUIT and the end of data drop the transaction: so does the view. */
  #syncTransaction(): void {
    const state = this.#session.state;
    if (state === "mail" || state === "rcpt" || state === "data" || state === "bdat") return;
    this.#reversePath = null;
    this.#forwardPaths = [];
    this.#refused = [];
    this.#size = 0;
  }

  /** Splits the bytes sent into reply lines, each reply annotated on its last line. */
  #showReplies(bytes: Uint8Array, replies: readonly Reply[]): void {
    const lines = decoder.decode(bytes).split("\r\n");
    let i = 0;
    for (const r of replies) {
      const count = r.code === 334 ? 1 : r.lines.length;
      const own = lines.slice(i, i + count);
      i += count;
      const annotation = annotateReply(r, r === this.#finalReply ? { answers: "content" } : {});
      own.forEach((text, index) => {
        if (index === 0) {
          this.#out.push({ side: "server", text, ...note(annotation) });
          return;
        }
        // An EHLO reply: each keyword line after the first gets its extension's note.
        const keyword = r.code === 250 ? annotateExtension(r.lines[index] ?? "") : null;
        this.#out.push(
          keyword === null
            ? { side: "server", text, ...NO_NOTE }
            : { side: "server", text, ...note(keyword) },
        );
      });
    }
  }
}
