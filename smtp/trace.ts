/**
 * The protocol trace that teaches: every command and reply of a session as
 * `C:` and `S:` lines, each with the rule it comes from beside it
 * (annotations from smtp/annotations.ts, the table the docs use too). AUTH
 * secrets are masked and message content is summarised, never shown.
 *
 * ```
 * [0001] S: 220 mx.example.test ESMTP            ; RFC 5321 §4.3.1 220: ...
 * [0001] C: MAIL FROM:<alice@example.test>       ; RFC 5321 §4.1.1.2 MAIL: ...
 * ```
 *
 * @module
 */

import {
  annotateCommand,
  annotateExtension,
  annotateReply,
  type Annotation,
  formatAnnotation,
} from "./annotations.ts";
import { formatReply, type Reply } from "./reply.ts";
import type { ServerLogEvent } from "./server.ts";

/** The column where annotations start. */
const COLUMN = 48;

/**
 * Formats one trace line.
 *
 * @param direction `C` for the client, `S` for the server, `*` for a note.
 * @param text The line, without CRLF.
 * @param annotation The rule beside it, or `null`.
 * @returns The line.
 *
 * @example
 * ```ts
 * import { traceLine } from "./trace.ts";
 * console.log(traceLine("C", "QUIT", null)); // "C: QUIT"
 * ```
 */
export function traceLine(
  direction: "C" | "S" | "*",
  text: string,
  annotation: Annotation | null,
): string {
  const head = `${direction}: ${text}`;
  if (annotation === null) return head;
  return `${head.padEnd(COLUMN - 1)} ; ${formatAnnotation(annotation)}`;
}

/**
 * The lines of a reply as sent, each annotated: the last line with the
 * reply's meaning, and for an EHLO reply each keyword line with its
 * extension's RFC.
 *
 * @param reply The reply.
 * @param options `answers`: what the reply answers; `enhanced`: whether enhanced codes are shown.
 * @returns Trace lines.
 *
 * @example
 * ```ts
 * import { traceReply } from "./trace.ts";
 * const lines = traceReply({ code: 250, enhancedStatus: "2.1.0", lines: ["Ok"] }, { answers: "MAIL" });
 * console.log(lines.length); // 1
 * ```
 */
export function traceReply(
  reply: Reply,
  options: { answers?: string; enhanced?: boolean } = {},
): string[] {
  const wire = formatReply(reply, options.enhanced ?? reply.enhancedStatus !== undefined).split(
    "\r\n",
  ).slice(0, -1);
  const isEhlo = reply.code === 250 && reply.lines.length > 1;
  return wire.map((line, i) => {
    if (i === wire.length - 1 && !isEhlo) {
      return traceLine(
        "S",
        line,
        annotateReply(reply, options.answers === undefined ? {} : { answers: options.answers }),
      );
    }
    if (isEhlo && i > 0) return traceLine("S", line, annotateExtension(line.slice(4)));
    return traceLine("S", line, null);
  });
}

/** Turns a server's events into an annotated trace, one connection after another interleaved. */
export class ServerTrace {
  #write: (line: string) => void;
  /** Per connection: what each reply still to come answers (pipelining keeps them in order). */
  #pending = new Map<string, string[]>();

  /**
   * Makes a trace.
   *
   * @param write Where each line goes.
   */
  constructor(write: (line: string) => void) {
    this.#write = write;
  }

  /**
   * Takes one event of {@linkcode SmtpServer}'s `onEvent`.
   *
   * @param event The event.
   */
  event(event: ServerLogEvent): void {
    switch (event.type) {
      case "connect": {
        const c = event.connection;
        this.#pending.set(c.id, ["greeting"]);
        this.#out(
          c.id,
          traceLine(
            "*",
            `connection from ${c.remoteAddress}:${c.remotePort} to port ${c.localPort}`,
            null,
          ),
        );
        break;
      }
      case "command": {
        const c = event.connection;
        const verb = event.line === "****" ? "AUTH" : event.line.split(" ", 1)[0]!.toUpperCase();
        this.#pending.get(c.id)?.push(verb);
        const annotation = event.line === "****" ? null : annotateCommand(event.line);
        this.#out(
          c.id,
          traceLine(
            "C",
            event.line === "****" ? "**** (AUTH response, masked)" : event.line,
            annotation,
          ),
        );
        break;
      }
      case "data":
        this.#pending.get(event.connection.id)?.push("content");
        this.#out(
          event.connection.id,
          traceLine(
            "C",
            `(message content: ${event.octets} octets, ending with "." or BDAT LAST)`,
            null,
          ),
        );
        break;
      case "reply": {
        const c = event.connection;
        const pending = this.#pending.get(c.id);
        // A 334 asks for more of the same AUTH exchange; it does not end a command.
        const answers = event.reply.code === 334 ? pending?.[0] : pending?.shift();
        for (
          const line of traceReply(event.reply, {
            ...(answers === undefined ? {} : { answers }),
            enhanced: c.isExtended,
          })
        ) {
          this.#out(c.id, line);
        }
        break;
      }
      case "disconnect":
        this.#out(event.connection.id, traceLine("*", `closed: ${event.reason}`, null));
        this.#pending.delete(event.connection.id);
        break;
      default:
        break;
    }
  }

  #out(id: string, line: string): void {
    this.#write(`[${id}] ${line}`);
  }
}

/**
 * Annotates a client's wire trace (`SmtpClientOptions.onTrace`: `C: `
 * commands, `S: ` replies, `* ` notes; never content) with the RFC rule of
 * each line, as `tern send --trace` and `tern serve --trace` print it: each
 * reply is matched to the command it answers (pipelined commands included),
 * each EHLO keyword to its extension.
 *
 * @param print Where the annotated lines go.
 * @returns The function to give as `onTrace`.
 *
 * @example
 * ```ts
 * import { clientTracer } from "./trace.ts";
 * const lines: string[] = [];
 * const trace = clientTracer((line) => lines.push(line));
 * trace("S: 220 mx.example.test ESMTP");
 * trace("C: QUIT");
 * console.log(lines.length); // 2
 * ```
 */
export function clientTracer(print: (line: string) => void): (line: string) => void {
  const pending: string[] = ["greeting"];
  let ehloLine = 0;
  return (line: string): void => {
    if (line.startsWith("C: ")) {
      const text = line.slice(3);
      const verb = text.split(" ", 1)[0]!.toUpperCase();
      // The reply to BDAT LAST is the reply to the whole content, like the one after DATA's dot.
      pending.push(verb === "BDAT" && / LAST$/i.test(text) ? "content" : verb);
      ehloLine = 0;
      print(traceLine("C", text, text.startsWith("AUTH") ? null : annotateCommand(text)));
    } else if (line.startsWith("S: ")) {
      const text = line.slice(3);
      const r = /^(\d{3})([ -])(?:([245]\.\d{1,3}\.\d{1,3}) )?(.*)$/.exec(text);
      if (pending[0] === "EHLO" && r && ehloLine++ > 0) {
        // RFC 5321 §4.1.1.1: after the first line, one extension keyword per line.
        print(traceLine("S", text, annotateExtension(r[4] ?? "")));
        if (r[2] === " ") pending.shift();
        return;
      }
      if (!r || r[2] === "-") {
        print(traceLine("S", text, null));
        return;
      }
      const code = Number(r[1]);
      const answers = code === 334 ? pending[0] : pending.shift();
      const reply = r[3] === undefined
        ? { code, lines: [r[4]!] }
        : { code, enhancedStatus: r[3], lines: [r[4]!] };
      print(
        traceLine("S", text, annotateReply(reply, answers === undefined ? {} : { answers })),
      );
    } else {
      if (/content|data|BDAT/i.test(line)) pending.push("content");
      print(traceLine("*", line.replace(/^\* ?/, ""), null));
    }
  };
}
