/**
 * Parsing SMTP command lines (RFC 5321 §4.1.1). A command is a verb of four
 * letters, case-insensitive (§2.4), then arguments; MAIL and RCPT take a path
 * and ESMTP parameters (§4.1.2 `Mail-parameters`, `Rcpt-parameters`).
 *
 * Parsing only reads the syntax. Whether a command is allowed now, and what
 * it does, is the session's business (`server_session.ts`).
 *
 * @module
 */

import { type Mailbox, parsePath, PathSyntaxError } from "./path.ts";
import { REPLIES, type Reply } from "./reply.ts";

/** ESMTP parameters of MAIL or RCPT: upper-case keyword to value (`null` for a bare keyword). */
export type Parameters = ReadonlyMap<string, string | null>;

/** A parsed command line. */
export type Command =
  | { readonly verb: "EHLO" | "HELO"; readonly domain: string }
  | { readonly verb: "MAIL"; readonly reversePath: Mailbox | null; readonly parameters: Parameters }
  | {
    readonly verb: "RCPT";
    /** `null` for `RCPT TO:<Postmaster>` without a domain (RFC 5321 §4.5.1). */
    readonly forwardPath: Mailbox | null;
    readonly parameters: Parameters;
  }
  | { readonly verb: "BDAT"; readonly size: number; readonly last: boolean }
  | { readonly verb: "DATA" | "RSET" | "QUIT" | "STARTTLS" }
  | { readonly verb: "NOOP" | "HELP" | "VRFY" | "EXPN" | "AUTH"; readonly argument: string }
  | { readonly verb: "UNKNOWN"; readonly name: string }
  | { readonly verb: "INVALID"; readonly reply: Reply };

/** The verbs tern recognizes (anything else is answered `500 5.5.2`). */
export type Verb = Exclude<Command["verb"], "UNKNOWN" | "INVALID">;

const NO_ARGUMENT = new Set(["DATA", "RSET", "QUIT", "STARTTLS"]);

/**
 * Parses the ESMTP parameters after a path (RFC 5321 §4.1.2):
 * `esmtp-keyword ["=" esmtp-value]`, separated by spaces.
 *
 * @param text The parameters.
 * @returns The parameters, or a reply saying what is wrong.
 */
export function parseParameters(text: string): Parameters | Reply {
  const result = new Map<string, string | null>();
  for (const token of text.split(" ")) {
    if (token === "") continue;
    const eq = token.indexOf("=");
    const keyword = (eq < 0 ? token : token.slice(0, eq)).toUpperCase();
    const value = eq < 0 ? null : token.slice(eq + 1);
    if (!/^[A-Z0-9][A-Z0-9-]*$/.test(keyword)) {
      return REPLIES.syntax(`Bad parameter "${token}"`);
    }
    // esmtp-value = 1*(%d33-60 / %d62-126), widened to UTF-8 by RFC 6531 §3.3
    // deno-lint-ignore no-control-regex
    if (value !== null && (value === "" || /[\x00-\x20=\x7f]/.test(value))) {
      return REPLIES.syntax(`Bad value in parameter "${token}"`);
    }
    if (result.has(keyword)) return REPLIES.syntax(`Parameter ${keyword} given twice`);
    result.set(keyword, value);
  }
  return result;
}

/** Reads `FROM:<path> params` or `TO:<path> params`, tolerating a space after the colon. */
function parsePathCommand(
  verb: "MAIL" | "RCPT",
  argument: string,
): Command {
  const keyword = verb === "MAIL" ? "FROM:" : "TO:";
  if (argument.slice(0, keyword.length).toUpperCase() !== keyword) {
    return { verb: "INVALID", reply: REPLIES.syntax(`Syntax: ${verb} ${keyword}<address>`) };
  }
  // Not RFC, but common: "MAIL FROM: <a@b>" (docs/smtp-pitfalls.md: paths). Tolerated.
  const text = argument.slice(keyword.length).trimStart();
  if (verb === "RCPT" && /^<postmaster>(\s|$)/i.test(text)) {
    // RFC 5321 §4.5.1: "Postmaster" with no domain MUST be accepted.
    const parameters = parseParameters(text.slice("<postmaster>".length));
    return "code" in parameters
      ? { verb: "INVALID", reply: parameters as Reply }
      : { verb: "RCPT", forwardPath: null, parameters: parameters as Parameters };
  }
  try {
    const parsed = parsePath(text, { allowNull: verb === "MAIL" });
    const parameters = parseParameters(parsed.rest);
    if ("code" in parameters) return { verb: "INVALID", reply: parameters as Reply };
    if (verb === "MAIL") {
      return { verb, reversePath: parsed.mailbox, parameters: parameters as Parameters };
    }
    return { verb, forwardPath: parsed.mailbox, parameters: parameters as Parameters };
  } catch (error: unknown) {
    if (error instanceof PathSyntaxError) {
      const status = verb === "MAIL" ? "5.1.7" : "5.1.3";
      return {
        verb: "INVALID",
        reply: { code: 501, enhancedStatus: status, lines: [`Bad address: ${error.message}`] },
      };
    }
    throw error;
  }
}

/**
 * Parses one command line, without its CRLF.
 *
 * @param line The line, decoded as UTF-8.
 * @returns The command; `UNKNOWN` for a verb we do not know, `INVALID` with
 *   the reply to send for a known verb with bad arguments.
 *
 * @example Verbs are case-insensitive (RFC 5321 §2.4)
 * ```ts
 * import { parseCommand } from "./command.ts";
 * const c = parseCommand("mail from:<alice@example.test> SIZE=1000");
 * console.log(c.verb); // "MAIL"
 * ```
 */
export function parseCommand(line: string): Command {
  const space = line.indexOf(" ");
  const name = (space < 0 ? line : line.slice(0, space)).toUpperCase();
  const argument = space < 0 ? "" : line.slice(space + 1);
  switch (name) {
    case "EHLO":
    case "HELO": {
      const domain = argument.trim();
      if (domain === "" || /\s/.test(domain)) {
        return { verb: "INVALID", reply: REPLIES.syntax(`Syntax: ${name} <your host name>`) };
      }
      return { verb: name, domain };
    }
    case "MAIL":
    case "RCPT":
      return parsePathCommand(name, argument);
    case "BDAT": {
      // RFC 3030 §3: BDAT <chunk-size> [LAST]
      const m = /^([0-9]{1,15})( +LAST)? *$/i.exec(argument);
      if (!m) return { verb: "INVALID", reply: REPLIES.syntax("Syntax: BDAT <size> [LAST]") };
      return { verb: "BDAT", size: Number(m[1]), last: m[2] !== undefined };
    }
    case "DATA":
    case "RSET":
    case "QUIT":
    case "STARTTLS":
      if (NO_ARGUMENT.has(name) && argument.trim() !== "") {
        return { verb: "INVALID", reply: REPLIES.syntax(`${name} takes no argument`) };
      }
      return { verb: name };
    case "NOOP":
    case "HELP":
    case "VRFY":
    case "EXPN":
    case "AUTH":
      return { verb: name, argument };
    default:
      return { verb: "UNKNOWN", name };
  }
}
