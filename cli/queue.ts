/**
 * `tern queue list|show|flush|delete|hold|release`: the queue, inspected and
 * managed while `tern serve` runs. Everything goes through the store: a
 * running server notices a flushed or released message at its next poll of
 * the store (half a second), since a KV watch in one process does not see
 * another process's writes.
 *
 * @module
 */

import { parseArgs } from "node:util";
import type { QueuedMessage } from "../queue/types.ts";
import { CliError, describeArgsError, openConfig, openQueue, runCommand } from "./_common.ts";

const USAGE = `usage: tern queue list [--config FILE] [--json]
       tern queue show [--config FILE] ID
       tern queue flush [--config FILE]
       tern queue delete|hold|release [--config FILE] ID`;

const encoder = new TextEncoder();

function write(text: string): void {
  Deno.stdout.writeSync(encoder.encode(text));
}

/** C0 controls but TAB, DEL, the C1 controls, and lone surrogates. */
// deno-lint-ignore no-control-regex
const UNPRINTABLE = /[\x00-\x08\x0a-\x1f\x7f-\x9f]|[\ud800-\udfff]/gu;

/**
 * Shows control characters as visible escapes (`\x1b`): queue records hold
 * text from other hosts (replies, addresses), and an ESC or a bare CR sent
 * to the terminal as it is would rewrite what the operator sees.
 */
function visible(text: string): string {
  return text.replace(UNPRINTABLE, (c) => {
    const code = c.charCodeAt(0);
    return code > 0xff ? `\\u${code.toString(16)}` : `\\x${code.toString(16).padStart(2, "0")}`;
  });
}

/** JSON with the C1 controls escaped too (JSON.stringify escapes only C0). */
function jsonLine(value: unknown): string {
  return JSON.stringify(value).replace(
    /[\x7f-\x9f\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

function isoDate(ms: number | null): string {
  return ms === null ? "-" : new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

/**
 * Message content for a terminal: C0 controls but TAB, CR and LF, and DEL,
 * shown as `\xHH`. C1 controls in UTF-8 (`C2 80`..`C2 9F`) are shown too.
 */
function visibleBytes(chunk: Uint8Array): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < chunk.length; i++) {
    const b = chunk[i]!;
    const c1 = b === 0xc2 && i + 1 < chunk.length && chunk[i + 1]! >= 0x80 &&
      chunk[i + 1]! <= 0x9f;
    if ((b < 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0d) || b === 0x7f || c1) {
      const code = c1 ? chunk[++i]! : b;
      out.push(...encoder.encode(`\\x${code.toString(16).padStart(2, "0")}`));
    } else {
      out.push(b);
    }
  }
  return Uint8Array.from(out);
}

/** One message as `tern queue list --json` prints it: one JSON object per line. */
function toJson(m: QueuedMessage): string {
  return jsonLine({
    id: m.queueId,
    size: m.size,
    arrival: new Date(m.arrival).toISOString(),
    next_attempt: new Date(m.nextAttempt).toISOString(),
    held: m.held,
    sender: m.envelope.reversePath,
    client: m.clientAddress,
    recipients: m.recipients.map((r) => ({
      address: r.address,
      original: r.originalRecipient,
      state: r.status,
      attempts: r.attempts,
      last_attempt: r.lastAttempt === null ? null : new Date(r.lastAttempt).toISOString(),
      last_error: r.status === "sent" || r.lastReply === null
        ? null
        : `${
          r.lastReply.code ? r.lastReply.code + " " : ""
        }${r.lastReply.enhancedStatus} ${r.lastReply.text}`,
    })),
  });
}

/** One message as a block of text rows, every field from the record made {@linkcode visible}. */
function toText(m: QueuedMessage): string {
  const flag = m.held ? " (held)" : "";
  let out = `${m.queueId}${flag}  ${m.size}  ${isoDate(m.arrival)}  <${
    visible(m.envelope.reversePath)
  }>\n`;
  for (const r of m.recipients) {
    const last = r.lastReply && r.status !== "sent"
      ? `  (${r.lastReply.code ? r.lastReply.code + " " : ""}${
        visible(`${r.lastReply.enhancedStatus} ${r.lastReply.text}`)
      })`
      : "";
    out += `    ${r.status.padEnd(8)} <${visible(r.address)}>  attempts=${r.attempts}${last}\n`;
  }
  return out;
}

/**
 * Runs `tern queue ...`.
 *
 * @param args The arguments after `queue`.
 * @returns The exit code.
 */
export function queueCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  return runCommand(`queue${sub ? " " + sub : ""}`, async () => {
    let parsed;
    try {
      parsed = parseArgs({
        args: rest,
        options: {
          config: { type: "string" },
          json: { type: "boolean" },
          help: { type: "boolean", short: "h" },
        },
        strict: true,
        allowPositionals: true,
      });
    } catch (error: unknown) {
      throw new CliError(describeArgsError(error));
    }
    const { values, positionals } = parsed;
    if (values.help || sub === undefined) {
      console.log(USAGE);
      return sub === undefined ? 1 : 0;
    }
    const needsId = sub === "show" || sub === "delete" || sub === "hold" || sub === "release";
    const known = needsId || sub === "list" || sub === "flush";
    if (!known) throw new CliError(`unknown subcommand "${sub}"\n${USAGE}`);
    if (needsId && positionals.length !== 1) {
      throw new CliError(`needs exactly one queue ID\n${USAGE}`);
    }
    if (!needsId && positionals.length > 0) {
      throw new CliError(`unexpected argument "${positionals[0]}"`);
    }
    const config = await openConfig(values.config);
    const queue = await openQueue(config);
    try {
      const id = positionals[0]?.toUpperCase() ?? "";
      switch (sub) {
        case "list": {
          let count = 0;
          let bytes = 0;
          for await (const m of queue.list()) {
            count++;
            bytes += m.size;
            write(values.json ? toJson(m) + "\n" : toText(m));
          }
          if (!values.json) {
            write(
              count === 0
                ? "Queue is empty\n"
                : `-- ${count} message${count === 1 ? "" : "s"}, ${bytes} octets\n`,
            );
          }
          return 0;
        }
        case "show": {
          const m = await queue.get(id);
          if (m === null) throw new CliError(`no message with queue ID "${id}"`);
          write(toText(m));
          write(
            `next attempt: ${isoDate(m.nextAttempt)}  client: ${
              visible(m.clientAddress)
            }  body: ${m.envelope.body}\n\n`,
          );
          // The content as stored, byte for byte, when it goes to a file or
          // a pipe; on a terminal, its control characters are shown escaped.
          const terminal = Deno.stdout.isTerminal();
          for await (const chunk of queue.openContent(id)) {
            Deno.stdout.writeSync(terminal ? visibleBytes(chunk) : chunk);
          }
          return 0;
        }
        case "flush": {
          const n = await queue.flush(Date.now());
          console.log(`${n} message${n === 1 ? "" : "s"} due now`);
          return 0;
        }
        case "delete":
        case "hold":
        case "release": {
          const done = sub === "delete"
            ? await queue.delete(id)
            : sub === "hold"
            ? await queue.hold(id)
            : await queue.release(id);
          if (!done) throw new CliError(`no message with queue ID "${id}"`);
          console.log(
            `${id}: ${sub === "delete" ? "deleted" : sub === "hold" ? "held" : "released"}`,
          );
          return 0;
        }
      }
      return 1;
    } finally {
      await queue.close();
    }
  });
}
