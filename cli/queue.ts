/**
 * `tern queue list|show|flush|delete|hold|release`: the queue, inspected and
 * managed while `tern serve` runs, one message, several (`delete ID1 ID2`),
 * all (`hold ALL`) or a selection (`--state deferred --domain example.net`)
 * at a time. Everything goes through the store: a
 * running server notices a flushed or released message at its next poll of
 * the store (half a second), since a KV watch in one process does not see
 * another process's writes.
 *
 * @module
 */

import { parseArgs } from "node:util";
import type { Config } from "../config/schema.ts";
import type { Queue } from "../queue/queue.ts";
import type { QueuedMessage } from "../queue/types.ts";
import { CliError, describeArgsError, openConfig, openQueue, runCommand } from "./_common.ts";
import { logAdminAction } from "./_admin_log.ts";

/** The usage of each subcommand, for `tern queue SUB --help`. */
const SUB_USAGE: Record<string, string> = {
  list: `usage: tern queue list [--config FILE] [--json] [SELECTION]
  List the queued messages, their recipients and last errors.
  --json          one JSON object per message and line`,
  show: `usage: tern queue show [--config FILE] ID
  Print one message: envelope, state, then its content as stored.`,
  flush: `usage: tern queue flush [--config FILE] [ID... | ALL] [SELECTION]
  Make messages due now (all but held ones when no ID is given); a running
  server takes them at its next poll of the store.`,
  delete: `usage: tern queue delete [--config FILE] ID... | ALL [SELECTION]
  Remove messages for good, without a bounce.`,
  hold: `usage: tern queue hold [--config FILE] ID... | ALL [SELECTION]
  Park messages: never attempted until released. Holding a held message is an error.`,
  release: `usage: tern queue release [--config FILE] ID... | ALL [SELECTION]
  Unpark held messages. Releasing a message that is not held is an error.`,
};

const SELECTION = `SELECTION (messages matching all of these; with no ID, ALL is implied):
  --state STATE   held, deferred (a recipient failed for now), or active
                  (not held, no deferred recipient: waiting for or in delivery)
  --domain DOMAIN a recipient at this domain
  --from ADDRESS  this sender (envelope MAIL FROM; "<>" for bounces)
  --to ADDRESS    this recipient
  --config FILE   the configuration (default ./tern.yaml), for its data_dir
  -h, --help      this help`;

const USAGE = `usage: tern queue list|show|flush|delete|hold|release [options] [ID... | ALL]
  list      the queued messages (--json: one JSON object a line)
  show      one message: envelope, state and content
  flush     make messages due now
  delete    remove messages
  hold      park messages
  release   unpark held messages
${SELECTION}
Run "tern queue SUBCOMMAND --help" for one subcommand.`;

const encoder = new TextEncoder();

/**
 * Writes to standard output, all of it. A reader that went away (`| head -1`)
 * raises `Deno.errors.BrokenPipe`, which {@linkcode queueCommand} takes as
 * the end of the output, not as a failure.
 */
function writeBytes(bytes: Uint8Array): void {
  let written = 0;
  while (written < bytes.length) written += Deno.stdout.writeSync(bytes.subarray(written));
}

function write(text: string): void {
  writeBytes(encoder.encode(text));
}

/** Reports a done action: a reader that went away must not stop the rest of the actions. */
function tell(text: string): void {
  try {
    write(text);
  } catch (error: unknown) {
    if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
  }
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

/** Which messages an action or a listing is about. */
interface Selection {
  readonly state: "held" | "deferred" | "active" | undefined;
  readonly domain: string | undefined;
  readonly from: string | undefined;
  readonly to: string | undefined;
}

const STATES = ["held", "deferred", "active"] as const;

function lower(address: string): string {
  return address.toLowerCase();
}

/** The state `--state` matches: held, deferred, or active (neither). */
function stateOf(m: QueuedMessage): "held" | "deferred" | "active" {
  if (m.held) return "held";
  return m.recipients.some((r) => r.status === "deferred") ? "deferred" : "active";
}

function matches(m: QueuedMessage, s: Selection): boolean {
  if (s.state !== undefined && stateOf(m) !== s.state) return false;
  if (s.from !== undefined && lower(m.envelope.reversePath) !== s.from) return false;
  const addresses = m.recipients.flatMap((r) => [lower(r.address), lower(r.originalRecipient)]);
  if (s.to !== undefined && !addresses.includes(s.to)) return false;
  if (s.domain !== undefined && !addresses.some((a) => a.endsWith(`@${s.domain}`))) return false;
  return true;
}

function isEmpty(s: Selection): boolean {
  return s.state === undefined && s.domain === undefined && s.from === undefined &&
    s.to === undefined;
}

function parseSelection(values: {
  state?: string | undefined;
  domain?: string | undefined;
  from?: string | undefined;
  to?: string | undefined;
}): Selection {
  const state = values.state?.toLowerCase();
  if (state !== undefined && !(STATES as readonly string[]).includes(state)) {
    throw new CliError(`--state must be held, deferred or active, found "${values.state}"`);
  }
  const from = values.from === undefined
    ? undefined
    : values.from === "<>"
    ? ""
    : lower(values.from.replace(/^<(.*)>$/, "$1"));
  return {
    state: state as Selection["state"],
    domain: values.domain === undefined ? undefined : lower(values.domain.replace(/^@/, "")),
    from,
    to: values.to === undefined ? undefined : lower(values.to.replace(/^<(.*)>$/, "$1")),
  };
}

/** The ids of the messages a selection matches, read before any is changed. */
async function selectIds(queue: Queue, selection: Selection): Promise<string[]> {
  const ids: string[] = [];
  for await (const m of queue.list()) if (matches(m, selection)) ids.push(m.queueId);
  return ids;
}

/** What one action did to one message: done, or why not (an error for a named id). */
type Outcome = { readonly ok: true; readonly text: string } | {
  readonly ok: false;
  readonly text: string;
  /** Not worth an error when the message was picked by ALL or a selection. */
  readonly skippable: boolean;
};

const unknown = (id: string): Outcome => ({
  ok: false,
  text: `no message with queue ID "${id}"`,
  skippable: true,
});

async function deleteMessage(queue: Queue, config: Config, id: string): Promise<Outcome> {
  if (!(await queue.delete(id))) return unknown(id);
  logAdminAction(config, "delete", id);
  return { ok: true, text: `${id}: deleted` };
}

async function holdMessage(queue: Queue, config: Config, id: string): Promise<Outcome> {
  const m = await queue.get(id);
  if (m === null) return unknown(id);
  if (m.held) return { ok: false, text: `${id}: already held`, skippable: true };
  if (!(await queue.hold(id))) return unknown(id);
  logAdminAction(config, "hold", id);
  return { ok: true, text: `${id}: held` };
}

async function releaseMessage(queue: Queue, config: Config, id: string): Promise<Outcome> {
  const m = await queue.get(id);
  if (m === null) return unknown(id);
  if (!m.held) return { ok: false, text: `${id}: not held`, skippable: true };
  if (!(await queue.release(id))) return unknown(id);
  logAdminAction(config, "release", id);
  return { ok: true, text: `${id}: released` };
}

async function flushMessage(queue: Queue, config: Config, id: string): Promise<Outcome> {
  switch (await queue.flushOne(id, Date.now())) {
    case "unknown":
      return unknown(id);
    case "held":
      return { ok: false, text: `${id}: held (release it to deliver it)`, skippable: true };
    case "delivering":
      return { ok: true, text: `${id}: being delivered now` };
    case "due":
      logAdminAction(config, "flush", id);
      return { ok: true, text: `${id}: due now` };
  }
}

const ACTIONS: Record<
  string,
  (queue: Queue, config: Config, id: string) => Promise<Outcome>
> = {
  delete: deleteMessage,
  hold: holdMessage,
  release: releaseMessage,
  flush: flushMessage,
};

/**
 * Runs one action on named ids (each reported, exit 1 if any failed) or on
 * the messages ALL or a selection picks (those it does not apply to, such as
 * a message not held for release, are passed over).
 */
async function act(
  sub: string,
  queue: Queue,
  config: Config,
  ids: string[] | null,
  selection: Selection,
): Promise<number> {
  const action = ACTIONS[sub]!;
  const picked = ids ?? await selectIds(queue, selection);
  let failed = 0;
  let done = 0;
  for (const id of picked) {
    const outcome = await action(queue, config, id);
    if (outcome.ok) {
      done++;
      tell(`${outcome.text}\n`);
    } else if (ids !== null || !outcome.skippable) {
      failed++;
      console.error(`tern queue ${sub}: ${outcome.text}`);
    }
  }
  if (ids === null) tell(`${done} message${done === 1 ? "" : "s"} ${PAST[sub]}\n`);
  return failed === 0 ? 0 : 1;
}

const PAST: Record<string, string> = {
  delete: "deleted",
  hold: "held",
  release: "released",
  flush: "due now",
};

/** Octets of listing gathered before they are written. */
const LIST_WRITE_SIZE = 64 * 1024;
/** The longest a listed message waits in {@linkcode ListWriter} before it is written. */
const LIST_WRITE_DELAY_MS = 100;

/**
 * The listing's output, gathered into writes of about 64 KiB: one write per
 * message costs a system call each, a tenth of the listing's time over a
 * deep queue. Nothing waits more than {@linkcode LIST_WRITE_DELAY_MS}, so
 * the listing still begins at once and a selection that matches little
 * still shows what it found while it reads on.
 */
class ListWriter {
  #parts: string[] = [];
  #size = 0;
  #since = 0;

  /** Adds text to the output. */
  add(text: string): void {
    if (this.#parts.length === 0) this.#since = performance.now();
    this.#parts.push(text);
    this.#size += text.length;
    if (this.#size >= LIST_WRITE_SIZE) this.flush();
    else this.tick();
  }

  /** Writes what waits, if it has waited long enough: called for every message read. */
  tick(): void {
    if (this.#parts.length > 0 && performance.now() - this.#since >= LIST_WRITE_DELAY_MS) {
      this.flush();
    }
  }

  /** Writes what waits. */
  flush(): void {
    if (this.#parts.length === 0) return;
    const text = this.#parts.join("");
    this.#parts = [];
    this.#size = 0;
    write(text);
  }
}

/**
 * Prints the messages as the store yields them (`Queue.list()` streams), so
 * the first line comes at once and memory stays flat however deep the queue.
 */
async function listMessages(queue: Queue, selection: Selection, json: boolean): Promise<number> {
  let count = 0;
  let bytes = 0;
  const out = new ListWriter();
  for await (const m of queue.list()) {
    if (!matches(m, selection)) {
      out.tick();
      continue;
    }
    count++;
    bytes += m.size;
    out.add(json ? toJson(m) + "\n" : toText(m));
  }
  if (!json) {
    out.add(
      count === 0
        ? "Queue is empty\n"
        : `-- ${count} message${count === 1 ? "" : "s"}, ${bytes} octets\n`,
    );
  }
  out.flush();
  return 0;
}

async function showMessage(queue: Queue, id: string): Promise<number> {
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
    writeBytes(terminal ? visibleBytes(chunk) : chunk);
  }
  return 0;
}

/** The whole queue made due now (`tern queue flush` with no id or selection). */
async function flushAll(queue: Queue, config: Config): Promise<number> {
  const n = await queue.flush(Date.now());
  logAdminAction(config, "flush", undefined, { count: n });
  tell(`${n} message${n === 1 ? "" : "s"} due now\n`);
  return 0;
}

function parseQueueArgs(sub: string, rest: string[]) {
  try {
    return parseArgs({
      args: rest,
      options: {
        config: { type: "string" },
        json: { type: "boolean" },
        state: { type: "string" },
        domain: { type: "string" },
        from: { type: "string" },
        to: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: true,
    });
  } catch (error: unknown) {
    const command = sub in SUB_USAGE ? `queue ${sub}` : "queue";
    throw new CliError(`${describeArgsError(error)} (see "tern ${command} --help")`);
  }
}

/**
 * Runs `tern queue ...`.
 *
 * @param args The arguments after `queue`.
 * @returns The exit code.
 */
export function queueCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  return runCommand(`queue${sub && !sub.startsWith("-") ? " " + sub : ""}`, async () => {
    if (sub === undefined || sub === "--help" || sub === "-h" || sub === "help") {
      write(`${USAGE}\n`);
      return sub === undefined ? 1 : 0;
    }
    const usage = SUB_USAGE[sub];
    if (usage === undefined) {
      throw new CliError(`unknown subcommand "${sub}" (see "tern queue --help")`);
    }
    const { values, positionals } = parseQueueArgs(sub, rest);
    if (values.help) {
      write(
        `${usage}\n${sub === "show" ? SELECTION.split("\n").slice(-2).join("\n") : SELECTION}\n`,
      );
      return 0;
    }
    const selection = parseSelection(values);
    const ids = positionals.map((p) => p.toUpperCase());
    const all = ids.length === 1 && ids[0] === "ALL";
    if (values.json && sub !== "list") throw new CliError(`--json goes with list only`);
    if (sub === "show" && (ids.length !== 1 || all)) {
      throw new CliError(`needs exactly one queue ID (see "tern queue show --help")`);
    }
    if (sub === "list" && ids.length > 0) {
      throw new CliError(`unexpected argument "${positionals[0]}" (see "tern queue list --help")`);
    }
    if (!all && ids.includes("ALL")) throw new CliError(`ALL goes alone, without IDs`);
    if (ids.length > 0 && !all && !isEmpty(selection)) {
      throw new CliError(`give IDs or a selection (with ALL), not both`);
    }
    if (
      sub !== "flush" && sub !== "list" && sub !== "show" && ids.length === 0 && isEmpty(selection)
    ) {
      throw new CliError(`needs queue IDs, or ALL (see "tern queue ${sub} --help")`);
    }
    const config = await openConfig(values.config);
    const queue = await openQueue(config);
    try {
      switch (sub) {
        case "list":
          return await listMessages(queue, selection, values.json === true);
        case "show":
          return await showMessage(queue, ids[0]!);
        case "flush":
          if (ids.length === 0 && isEmpty(selection)) return await flushAll(queue, config);
          return await act(sub, queue, config, all || ids.length === 0 ? null : ids, selection);
        default:
          return await act(sub, queue, config, all || ids.length === 0 ? null : ids, selection);
      }
    } catch (error: unknown) {
      // The reader went away (`tern queue list | head -1`): the output ends there.
      if (error instanceof Deno.errors.BrokenPipe) return 0;
      throw error;
    } finally {
      await queue.close();
    }
  });
}
