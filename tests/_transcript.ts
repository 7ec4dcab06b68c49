/**
 * Transcript fixtures (`tests/transcripts/*.txt`), one line per step:
 *
 * - `C: text`: a line the client sends (CRLF added);
 * - `C~: text`: raw client bytes with `\r`, `\n` and `\\` escapes, no CRLF added;
 * - `S: text`: a line the server must answer, exactly;
 * - `S: text...`: a server line that starts with `text` (the rest may change);
 * - `S~ regex`: a server line the regular expression matches, whole
 *   (`S~ 250 2\.0\.0 Ok: queued as Q[0-9]+`);
 * - `S: ...`: further lines of the same multi-line reply, so an EHLO reply
 *   need not list every keyword. It follows a `CODE-` line and takes any
 *   number of `CODE-` lines; it takes the reply's last line (`CODE text`)
 *   too, unless the next `S:` line is another `CODE-` line of the same reply:
 *
 *   ```
 *   S: 250-mx.example.test greets client.test
 *   S: ...
 *   S: 250-SIZE 100
 *   S: ...
 *   ```
 *
 *   means: the greeting line, any keywords, `SIZE 100`, any keywords, the end.
 * - `#` notes, and `# option: key=value ...` session options.
 *
 * The TLS transcripts (`tests/transcripts/tls/`, see `_tls.ts`) are read up
 * to the handshake by the length of the server's text, so their `S:` lines
 * stay exact.
 */

import assert from "node:assert/strict";
import type { ServerSessionOptions } from "../smtp/server_session.ts";
import { queuedReply, REPLIES, type Reply } from "../smtp/reply.ts";

export interface Transcript {
  name: string;
  client: Uint8Array;
  /** The client bytes cut at line ends, for line-by-line feeding. */
  clientLines: Uint8Array[];
  /** The server's lines as written, CRLF after each: exactly its replies when {@linkcode exact}. */
  server: string;
  /** Whether every `S:` line is exact (no prefix, pattern or `...`). */
  exact: boolean;
  /** The whole of the server's replies, as one pattern. */
  serverPattern: RegExp;
  options: Partial<ServerSessionOptions>;
}

/** One expected server line: text, a prefix, a pattern, or more lines of the reply. */
type Expected =
  | { kind: "exact"; text: string }
  | { kind: "prefix"; text: string }
  | { kind: "pattern"; source: string }
  | { kind: "more" };

const MORE = "...";
const LINE = "[^\\r\\n]*\\r\\n";

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

function expectedOf(line: string): Expected {
  if (line.startsWith("S~")) return { kind: "pattern", source: line.slice(2).trim() };
  const text = line.slice(3);
  if (text === MORE) return { kind: "more" };
  if (text.endsWith(MORE)) return { kind: "prefix", text: text.slice(0, -MORE.length) };
  return { kind: "exact", text };
}

/** The three-digit code of a multi-line reply's line (`250-...`), or null. */
function continuedCode(e: Expected | undefined): string | null {
  if (e === undefined || e.kind === "more" || e.kind === "pattern") return null;
  const m = /^([0-9]{3})-/.exec(e.text);
  return m === null ? null : m[1]!;
}

/** The regular expression for the server's whole output. */
function serverRegExp(name: string, expected: readonly Expected[]): RegExp {
  let source = "";
  for (const [i, e] of expected.entries()) {
    if (e.kind === "exact") source += escapeRegExp(e.text) + "\\r\\n";
    else if (e.kind === "prefix") source += escapeRegExp(e.text) + LINE;
    else if (e.kind === "pattern") source += `(?:${e.source})\\r\\n`;
    else {
      const code = continuedCode(expected[i - 1]);
      if (code === null) {
        throw new Error(`${name}: "S: ..." must follow a line of a multi-line reply ("250-...")`);
      }
      const continues = continuedCode(expected[i + 1]) === code;
      source += `(?:${code}-${LINE})*?` + (continues ? "" : `${code} ${LINE}`);
    }
  }
  return new RegExp(`^${source}$`);
}

const encoder = new TextEncoder();

function unescape(s: string): string {
  return s.replace(/\\(r|n|\\)/g, (_, c: string) => (c === "r" ? "\r" : c === "n" ? "\n" : "\\"));
}

export function parseTranscript(name: string, text: string): Transcript {
  const client: string[] = [];
  let server = "";
  const expected: Expected[] = [];
  const options: Record<string, number> = {};
  for (const line of text.split("\n")) {
    if (line.startsWith("# option:")) {
      for (const kv of line.slice(9).trim().split(/\s+/)) {
        const [k, v] = kv.split("=");
        if (k && v) options[k] = Number(v);
      }
    } else if (line.startsWith("C~:")) {
      client.push(unescape(line.slice(4)));
    } else if (line.startsWith("C:")) {
      client.push(line.slice(3) + "\r\n");
    } else if (line.startsWith("S:") || line.startsWith("S~")) {
      server += line.slice(3) + "\r\n";
      expected.push(expectedOf(line));
    }
  }
  return {
    name,
    client: encoder.encode(client.join("")),
    clientLines: client.map((c) => encoder.encode(c)),
    server,
    exact: expected.every((e) => e.kind === "exact"),
    serverPattern: serverRegExp(name, expected),
    options,
  };
}

/**
 * Checks the server's replies against a transcript's `S:` lines; when they
 * differ, the failure shows them beside the lines as written.
 */
export function assertServerReplies(actual: string, t: Transcript): void {
  if (t.exact || !t.serverPattern.test(actual)) {
    assert.equal(actual, t.server, `${t.name}: the server's replies differ from the transcript`);
  }
}

export async function loadTranscripts(): Promise<Transcript[]> {
  const dir = new URL("./transcripts/", import.meta.url);
  const out: Transcript[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (!entry.name.endsWith(".txt")) continue;
    out.push(parseTranscript(entry.name, await Deno.readTextFile(new URL(entry.name, dir))));
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

/** The policy every transcript assumes: example.test is local, nobody@ does not exist. */
export function recipientPolicy(path: string): Reply {
  if (path === "Postmaster") return REPLIES.recipientOk;
  const at = path.lastIndexOf("@");
  const domain = path.slice(at + 1).toLowerCase();
  if (domain !== "example.test") return REPLIES.relayDenied;
  if (path.startsWith("nobody@")) return REPLIES.noSuchUser;
  return REPLIES.recipientOk;
}

export function queuedAs(n: number): Reply {
  return queuedReply(`Q${n}`);
}
