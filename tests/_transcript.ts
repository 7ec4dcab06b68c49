/**
 * Transcript fixtures (`tests/transcripts/*.txt`): `C:` lines the client
 * sends (CRLF added), `C~:` raw client bytes with `\r`, `\n` and `\\`
 * escapes and no CRLF added, `S:` lines the server must answer, `#` notes and
 * `# option: key=value ...` session options.
 */

import type { ServerSessionOptions } from "../smtp/server_session.ts";
import { queuedReply, REPLIES, type Reply } from "../smtp/reply.ts";

export interface Transcript {
  name: string;
  client: Uint8Array;
  /** The client bytes cut at line ends, for line-by-line feeding. */
  clientLines: Uint8Array[];
  server: string;
  options: Partial<ServerSessionOptions>;
}

const encoder = new TextEncoder();

function unescape(s: string): string {
  return s.replace(/\\(r|n|\\)/g, (_, c: string) => (c === "r" ? "\r" : c === "n" ? "\n" : "\\"));
}

export function parseTranscript(name: string, text: string): Transcript {
  const client: string[] = [];
  let server = "";
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
    } else if (line.startsWith("S:")) {
      server += line.slice(3) + "\r\n";
    }
  }
  return {
    name,
    client: encoder.encode(client.join("")),
    clientLines: client.map((c) => encoder.encode(c)),
    server,
    options,
  };
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
