/**
 * `tern explain <code> [<enhanced status>]`: what a reply means, when a
 * server sends it, and where the RFC defines it; also commands and EHLO
 * keywords (`tern explain MAIL`, `tern explain PIPELINING`). Everything comes
 * from the annotation table in `smtp/annotations.ts`, whose notes on the
 * replies tern sends come from the reply table in `smtp/reply.ts`.
 *
 * @module
 */

import {
  ANNOTATIONS,
  describeStatus,
  formatReference,
  type Note,
  parseEnhancedStatus,
  rfcUrl,
} from "../smtp/annotations.ts";
import { formatReply, REPLIES, type Reply } from "../smtp/reply.ts";

const USAGE =
  "usage: tern explain <reply code> [<enhanced status code>] | <enhanced status code> | " +
  "<command or EHLO keyword>\n" +
  "  tern explain 452 4.5.3\n  tern explain 550\n  tern explain 5.7.1\n  tern explain STARTTLS\n" +
  "  -h, --help      this help";

const HINT = "give a reply code (550), an enhanced status code (5.7.1), both (452 4.5.3), " +
  "or a command (MAIL)";

/**
 * A question `tern explain` cannot answer: an unknown code or command.
 *
 * @example Tell an unknown code from a bug
 * ```ts
 * import { explain, ExplainError } from "./explain.ts";
 * try {
 *   explain(["299"]);
 * } catch (error: unknown) {
 *   if (!(error instanceof ExplainError)) throw error;
 *   console.log(error.message.startsWith('unknown reply code "299"')); // true
 * }
 * ```
 */
export class ExplainError extends Error {
  /**
   * Makes the error.
   *
   * @param message One line saying what is unknown.
   */
  constructor(message: string) {
    super(message);
    this.name = "ExplainError";
  }
}

const WIDTH = 80;

/** Wraps text to the width, every line indented. */
function wrap(text: string, indent: string): string {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/).filter((w) => w !== "")) {
    if (line !== "" && indent.length + line.length + 1 + word.length > WIDTH) {
      lines.push(indent + line);
      line = word;
    } else {
      line = line === "" ? word : `${line} ${word}`;
    }
  }
  if (line !== "") lines.push(indent + line);
  return lines.join("\n");
}

function where(note: Note): string {
  return `  ${formatReference(note.reference)}  ${rfcUrl(note.reference)}`;
}

/** Every reply tern sends, with a placeholder for the texts that vary. */
function ternReplies(): Reply[] {
  const out: Reply[] = [];
  for (const value of Object.values(REPLIES)) {
    out.push(
      typeof value === "function" ? (value as (...args: string[]) => Reply)("…", "…") : value,
    );
  }
  return out;
}

function sentByTern(code: number | null, status: string | null): string | null {
  const seen = new Set<string>();
  for (const r of ternReplies()) {
    if (code !== null && r.code !== code) continue;
    if (status !== null && r.enhancedStatus !== status) continue;
    seen.add(formatReply(r, true).split("\r\n")[0]!);
  }
  if (seen.size === 0) return null;
  return "tern sends:\n" + [...seen].map((line) => `  ${line}`).join("\n");
}

const CLASS_WORDS: Readonly<Record<number, string>> = {
  2: "Positive completion (2yz): the command succeeded.",
  3: "Positive intermediate (3yz): go on, send the rest.",
  4: "Transient negative completion (4yz): nothing was done; the same command may work " +
    "later, so the client keeps the message and tries again.",
  5: "Permanent negative completion (5yz): nothing was done, and repeating the command as it " +
    "is will fail again.",
};

function explainCode(code: number): string {
  const note = ANNOTATIONS.replyCodes[code];
  if (note === undefined) {
    throw new ExplainError(
      `unknown reply code "${code}": neither RFC 5321 §4.2.3 nor the extensions tern knows define it`,
    );
  }
  return [
    `Reply code ${code}: ${note.title}`,
    where(note),
    wrap(CLASS_WORDS[Math.floor(code / 100)] ?? "", "  "),
    wrap(note.meaning, "  "),
    wrap(`Sent: ${note.when}`, "  "),
  ].join("\n");
}

function explainStatus(status: string): string {
  const parsed = parseEnhancedStatus(status);
  if (parsed === null) {
    throw new ExplainError(
      `"${status}" is not an enhanced status code: it is class.subject.detail, ` +
        "with class 2, 4 or 5 (RFC 3463 §2)",
    );
  }
  const d = describeStatus(status)!;
  if (d.subject === undefined) {
    throw new ExplainError(
      `unknown enhanced status code "${status}": class ${parsed.class} is ` +
        `"${d.class.title}", but no RFC defines subject ${parsed.subject}`,
    );
  }
  if (d.detail === undefined) {
    throw new ExplainError(
      `unknown enhanced status code "${status}": class ${parsed.class} is "${d.class.title}", ` +
        `subject ${parsed.subject} "${d.subject.title}", but no RFC tern knows defines ` +
        `detail ${parsed.detail}`,
    );
  }
  return [
    `Enhanced status ${status}: ${d.detail.title}`,
    where(d.detail),
    wrap(`${parsed.class}.x.x  ${d.class.title}: ${d.class.meaning}`, "  "),
    wrap(`x.${parsed.subject}.x  ${d.subject.title}: ${d.subject.meaning}`, "  "),
    wrap(`x.${parsed.subject}.${parsed.detail}  ${d.detail.meaning}`, "  "),
  ].join("\n");
}

function explainReply(code: number, status: string | null): string {
  const parts: string[] = [];
  const precise = ANNOTATIONS.replies[status === null ? String(code) : `${code} ${status}`];
  if (precise !== undefined) {
    parts.push(
      [
        `${code}${status === null ? "" : ` ${status}`}: ${precise.rule}`,
        where(precise),
        wrap(precise.meaning, "  "),
      ].join("\n"),
    );
  }
  parts.push(explainCode(code));
  // Rules that hold for the code in answer to one command, such as the 250 that ends DATA.
  for (const [key, note] of Object.entries(ANNOTATIONS.replies)) {
    if (!key.startsWith(`${code} after `)) continue;
    const what = key.slice(`${code} after `.length);
    parts.push([
      `${code} in answer to the ${what === "content" ? "end of the content" : what}: ${note.rule}`,
      where(note),
      wrap(note.meaning, "  "),
    ].join("\n"));
  }
  if (status !== null) {
    parts.push(explainStatus(status));
    const statusClass = Number(status[0]);
    if (statusClass !== Math.floor(code / 100)) {
      parts.push(wrap(
        `Note: ${code} and ${status} disagree: the class of an enhanced status code ` +
          `(2, 4 or 5) normally repeats the first digit of its reply code.`,
        "",
      ));
    }
  }
  const sent = sentByTern(code, status);
  if (sent !== null) parts.push(sent);
  return parts.join("\n\n");
}

function explainWord(word: string): string {
  const key = word.toUpperCase();
  const parts: string[] = [];
  const command = ANNOTATIONS.commands[key];
  if (command !== undefined) {
    const lines = [
      `${key}: ${command.rule}`,
      `  Syntax: ${command.syntax}`,
      where(command),
      wrap(command.meaning, "  "),
    ];
    const parameters = Object.entries(ANNOTATIONS.parameters)
      .filter(([name]) => name.split(" ")[0] === key)
      .map(([, note]) => note);
    if (parameters.length > 0) lines.push("  Parameters:");
    for (const note of parameters) {
      lines.push(wrap(`${note.title}: ${note.rule} (${formatReference(note.reference)})`, "    "));
    }
    parts.push(lines.join("\n"));
  }
  const extension = ANNOTATIONS.extensions[key];
  if (extension !== undefined) {
    parts.push([
      `EHLO keyword ${key} (${extension.title}): ${extension.rule}`,
      where(extension),
      wrap(extension.meaning, "  "),
    ].join("\n"));
  }
  for (const [name, note] of Object.entries(ANNOTATIONS.parameters)) {
    const [verb, keyword] = name.split(" ");
    if (keyword === key && command === undefined && extension === undefined) {
      parts.push([
        `${verb} parameter ${note.title}: ${note.rule}`,
        where(note),
        wrap(note.meaning, "  "),
      ].join("\n"));
    }
  }
  if (parts.length === 0) throw new ExplainError(`unknown code or command "${word}": ${HINT}`);
  return parts.join("\n\n");
}

/**
 * Explains a reply code, an enhanced status code, both, or a command or EHLO
 * keyword. A whole reply line works too: the text after the codes is
 * ignored (`tern explain 550 5.1.1 No such user here`).
 *
 * @param args The words after `tern explain`.
 * @returns The explanation, several lines.
 * @throws {ExplainError} For an unknown code or command, or no argument.
 *
 * @example Explain a reply
 * ```ts
 * import { explain } from "./explain.ts";
 * console.log(explain(["452", "4.5.3"]).split("\n")[0]);
 * // "452 4.5.3: too many recipients: send the others in another transaction"
 * ```
 */
export function explain(args: readonly string[]): string {
  const words = args.flatMap((a) => a.split(/\s+/)).filter((w) => w !== "");
  const [first, second] = words;
  if (first === undefined) throw new ExplainError(HINT);
  if (/^[0-9]{3}$/.test(first)) {
    const status = second !== undefined && /^[0-9]+\.[0-9]+\.[0-9]+$/.test(second) ? second : null;
    return explainReply(Number(first), status);
  }
  if (/^[0-9]+\.[0-9]+\.[0-9]+$/.test(first)) {
    const text = explainStatus(first);
    const sent = sentByTern(null, first);
    return sent === null ? text : `${text}\n\n${sent}`;
  }
  if (/^x\.[0-9]+\.[0-9]+$/i.test(first)) {
    const note = ANNOTATIONS.statusDetails[first.toUpperCase()];
    if (note === undefined) {
      throw new ExplainError(`unknown enhanced status code "${first}": ${HINT}`);
    }
    return [
      `Enhanced status ${first.toUpperCase()}: ${note.title}`,
      where(note),
      wrap(note.meaning, "  "),
    ]
      .join("\n");
  }
  if (/^[0-9]+$/.test(first)) {
    throw new ExplainError(`"${first}" is not a reply code: reply codes have three digits`);
  }
  return explainWord(first);
}

/**
 * Runs `tern explain`: prints the explanation and returns 0, or prints one
 * line saying what is unknown and returns 1.
 *
 * @param args The arguments after `explain`.
 * @returns The exit code.
 *
 * @example What main.ts does for `tern explain 550`
 * ```ts
 * import { explainCommand } from "./explain.ts";
 * const code = explainCommand(["550"]); // prints the explanation
 * console.log(code); // 0
 * ```
 */
export function explainCommand(args: string[]): number {
  if (args.includes("--help") || args.includes("-h")) {
    console.log(USAGE);
    return 0;
  }
  const option = args.find((a) => a.startsWith("--"));
  if (option !== undefined) {
    console.error(
      `tern explain: unknown option ${JSON.stringify(option)} (see "tern explain --help")`,
    );
    return 1;
  }
  try {
    console.log(explain(args));
    return 0;
  } catch (error: unknown) {
    if (!(error instanceof ExplainError)) throw error;
    console.error(`tern explain: ${error.message}`);
    return 1;
  }
}
