/**
 * `tern sendmail` (also `tern send`, and the binary run under the name
 * `sendmail` or `mailq`): the sendmail command line that cron, mail(1),
 * PHP and every Unix program use to send mail. The message comes on
 * standard input.
 *
 * The message goes to the running server over its local submission socket
 * (`<data_dir>/public/submit.sock`, see mta/pickup.ts), so any local user
 * may submit without touching the store. Only when no server is running,
 * and the store is this user's own (or does not exist yet), is the message
 * written into the store directly, for the server to deliver when it starts.
 *
 * Like sendmail: `-f`/`-r SENDER` sets the envelope sender (default
 * `<login>@<first local domain>`); `-F NAME` the display name of the From
 * field tern adds; `-t` takes the recipients from the To, Cc and Bcc fields
 * (and removes Bcc); without `-i` (or `-oi`) a line holding a single dot
 * ends the input; `-N` sets the DSN NOTIFY of every recipient (RFC 3461
 * §4.1), `-B` the BODY (RFC 6152), `-R` RET and `-V` ENVID (RFC 3461 §4.3,
 * §4.4); `-bp` lists the queue, `-bs` speaks SMTP on standard input and
 * output; `-oem`, `-odb`, `-v` and the like are accepted. A recipient without
 * a domain is in the first local domain. LF line endings become CRLF.
 * Missing `From`, `Date` and `Message-ID` fields are added (RFC 5322 §3.6
 * requires the first two). Exit codes are sendmail's (sysexits.h).
 *
 * @module
 */

import type { Config } from "../config/schema.ts";
import { createLogger } from "../log/logger.ts";
import { routeAddress } from "../mta/intake.ts";
import { pickupSocketPath, userName } from "../mta/pickup.ts";
import { signerOf } from "../mta/dkim_signer.ts";
import type { QueueRecipient } from "../queue/types.ts";
import type { BodyType, DsnNotify } from "../smtp/envelope.ts";
import { isNonAscii, parseMailbox, PathSyntaxError } from "../smtp/path.ts";
import { formatDate } from "../smtp/received.ts";
import { CliError, findConfig, openQueue } from "./_common.ts";
import { queueCommand } from "./queue.ts";
import { SmtpClient } from "../smtp/client.ts";
import { clientTracer } from "../smtp/trace.ts";

/** sysexits.h: success. */
export const EX_OK = 0;
/** sysexits.h: the command was used incorrectly. */
export const EX_USAGE = 64;
/** sysexits.h: the input data was incorrect (a bad address, say). */
export const EX_DATAERR = 65;
/** sysexits.h: a recipient does not exist. */
export const EX_NOUSER = 67;
/** sysexits.h: a service is unavailable (a permanent refusal). */
export const EX_UNAVAILABLE = 69;
/** sysexits.h: a temporary failure; the user is invited to retry. */
export const EX_TEMPFAIL = 75;

const USAGE = "usage: tern sendmail [--config FILE] [-t] [-i] [-f SENDER] [-F NAME] " +
  "[-N NOTIFY] [-B 7BIT|8BITMIME] [-bm|-bp|-bs] [-v] [--server HOST:PORT] [--trace] " +
  "[--] [RECIPIENT...] < message";
const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** The most header octets kept in memory to read and complete the header section. */
const MAX_HEADER = 1024 * 1024;

/** A failure with its sendmail exit code. */
export class SendmailError extends CliError {
  /** The exit code (sysexits.h). */
  readonly exitCode: number;
  /**
   * Makes the error.
   *
   * @param message One line (or a few), without the program name.
   * @param exitCode The exit code.
   */
  constructor(message: string, exitCode: number) {
    super(message);
    this.name = "SendmailError";
    this.exitCode = exitCode;
  }
}

/** What the command line asks. */
export interface SendmailOptions {
  /** `--config FILE`. */
  config?: string;
  /** `--server HOST:PORT`: submit over TCP instead. */
  server?: string;
  /** `--trace`: print the annotated SMTP dialogue. */
  trace: boolean;
  /** `--help`. */
  help: boolean;
  /** `-f`/`-r`: the envelope sender. */
  sender?: string;
  /** `-F`: the display name of an added From field. */
  fullName?: string;
  /** `-i`/`-oi`: a lone dot does not end the input. */
  ignoreDots: boolean;
  /** `-t`: recipients from the header. */
  fromHeader: boolean;
  /** `-v`. */
  verbose: boolean;
  /** `-N`: RFC 3461 NOTIFY. */
  notify?: DsnNotify[];
  /** `-B`: RFC 6152 BODY. */
  body?: BodyType;
  /** `-R`: RFC 3461 RET. */
  ret?: "FULL" | "HDRS";
  /** `-V`: RFC 3461 ENVID. */
  envid?: string;
  /** `-bm` (deliver mail, the default), `-bp` (list the queue), `-bs` (SMTP on stdin/stdout). */
  mode: "m" | "p" | "s";
  /** The recipients given as arguments. */
  recipients: string[];
}

/** Flags that take a value, in the same argument (`-fADDR`) or the next (`-f ADDR`). */
const VALUE_FLAGS = new Set(["f", "r", "F", "N", "B", "R", "V", "L", "h", "C", "O", "X"]);
/** Flags without a value: `-t`, `-i`, `-v`; the others sendmail has are accepted and ignored. */
const BOOLEAN_FLAGS = new Set(["t", "i", "v", "m", "n", "U", "G", "e"]);

function usage(message: string): SendmailError {
  return new SendmailError(`${message}\n${USAGE}`, EX_USAGE);
}

/** Applies one flag that takes a value. */
function applyValue(o: SendmailOptions, flag: string, value: string): void {
  switch (flag) {
    case "f":
    case "r":
      o.sender = value;
      break;
    case "F":
      o.fullName = value;
      break;
    case "N": {
      const words = value.toUpperCase().split(",").map((w) => w.trim()).filter(Boolean);
      const ok = words.length > 0 &&
        (words.length === 1 && words[0] === "NEVER" ||
          words.every((w) => w === "SUCCESS" || w === "FAILURE" || w === "DELAY"));
      if (!ok) throw usage(`-N must be "never", or some of "success,failure,delay"`);
      o.notify = words as DsnNotify[];
      break;
    }
    case "B": {
      const v = value.toUpperCase();
      if (v !== "7BIT" && v !== "8BITMIME") throw usage(`-B must be 7BIT or 8BITMIME`);
      o.body = v;
      break;
    }
    case "R": {
      const v = value.toUpperCase();
      if (v !== "FULL" && v !== "HDRS") throw usage(`-R must be full or hdrs`);
      o.ret = v;
      break;
    }
    case "V":
      o.envid = value;
      break;
    default:
      // -L tag, -h hops, -C file, -O option=value, -X log: sendmail's own, ignored.
      break;
  }
}

/** Applies `-o` options: `-oi` is `-i`; `-oem`, `-odb` and the others are accepted, ignored. */
function applyOption(o: SendmailOptions, option: string): void {
  if (option === "i") o.ignoreDots = true;
}

/**
 * Parses a sendmail command line: flags may be grouped (`-ti`), values
 * attached or in the next argument (`-fADDR`, `-f ADDR`), and `--` or the
 * first recipient ends the options, as getopt does.
 *
 * @param args The arguments after the command.
 * @returns The options.
 * @throws {SendmailError} With exit code 64 on a bad command line.
 */
export function parseSendmailArgs(args: readonly string[]): SendmailOptions {
  const o: SendmailOptions = {
    trace: false,
    help: false,
    ignoreDots: false,
    fromHeader: false,
    verbose: false,
    mode: "m",
    recipients: [],
  };
  let i = 0;
  const next = (flag: string): string => {
    const value = args[++i];
    if (value === undefined) throw usage(`option "-${flag}" needs a value`);
    return value;
  };
  for (; i < args.length; i++) {
    const a = args[i]!;
    if (a === "--") {
      i++;
      break;
    }
    if (!a.startsWith("-") || a === "-") break;
    if (a.startsWith("--")) {
      const [name, attached] = a.includes("=")
        ? [a.slice(2, a.indexOf("=")), a.slice(a.indexOf("=") + 1)]
        : [a.slice(2), undefined];
      switch (name) {
        case "config":
          o.config = attached ?? next(name);
          break;
        case "server":
          o.server = attached ?? next(name);
          break;
        case "trace":
          o.trace = true;
          break;
        case "help":
          o.help = true;
          break;
        default:
          throw usage(`unknown option ${JSON.stringify(a)}`);
      }
      continue;
    }
    for (let j = 1; j < a.length; j++) {
      const flag = a[j]!;
      const rest = a.slice(j + 1);
      if (VALUE_FLAGS.has(flag)) {
        applyValue(o, flag, rest !== "" ? rest : next(flag));
        break;
      }
      if (flag === "o") {
        applyOption(o, rest !== "" ? rest : next(flag));
        break;
      }
      if (flag === "b") {
        const mode = rest !== "" ? rest : next(flag);
        if (mode !== "m" && mode !== "p" && mode !== "s") {
          throw usage(`-b${mode} is not supported (only -bm, -bp, -bs)`);
        }
        o.mode = mode;
        break;
      }
      if (flag === "d") break; // debugging flags: ignored
      if (!BOOLEAN_FLAGS.has(flag)) throw usage(`unknown option "-${flag}"`);
      if (flag === "t") o.fromHeader = true;
      if (flag === "i") o.ignoreDots = true;
      if (flag === "v") o.verbose = true;
    }
  }
  o.recipients = args.slice(i);
  return o;
}

/** The login name of the user running this: the password database first, then the environment. */
function loginName(): string {
  const uid = Deno.uid();
  if (uid !== null) {
    const name = userName(uid);
    if (!name.startsWith("uid ")) return name;
  }
  return Deno.env.get("USER") ?? Deno.env.get("LOGNAME") ?? "root";
}

/** The From field tern adds: `Name <address>` with the name quoted when it must be (RFC 5322 §3.4). */
function fromField(sender: string, fullName: string | undefined, config: Config): string {
  const address = sender || `MAILER-DAEMON@${config.hostname}`;
  const name = (fullName ?? "").replace(/[\r\n]/g, " ").trim();
  if (name === "") return `From: <${address}>\r\n`;
  const atom = /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]+$/.test(name);
  const display = atom ? name : `"${name.replace(/(["\\])/g, "\\$1")}"`;
  return `From: ${display} <${address}>\r\n`;
}

/** Completes an address without a domain with the first local domain, and checks it. */
function qualify(address: string, config: Config, what: string): string {
  const trimmed = address.trim().replace(/^<(.*)>$/, "$1");
  const full = trimmed.includes("@") ? trimmed : `${trimmed}@${config.localDomains[0]}`;
  try {
    parseMailbox(full);
  } catch (error: unknown) {
    if (error instanceof PathSyntaxError) {
      throw new SendmailError(`bad ${what} address "${address}": ${error.message}`, EX_DATAERR);
    }
    throw error;
  }
  return full;
}

/** Reads standard input: LF → CRLF, and (without -i) stops at a line holding a single dot. */
async function* readInput(dotEnds: boolean): AsyncGenerator<Uint8Array> {
  let pending = "";
  let ended = false;
  for await (const chunk of Deno.stdin.readable) {
    if (ended) continue;
    pending += decoder.decode(chunk, { stream: true });
    const lastNl = pending.lastIndexOf("\n");
    if (lastNl < 0) continue;
    const complete = pending.slice(0, lastNl + 1);
    pending = pending.slice(lastNl + 1);
    let out = "";
    for (const raw of complete.split("\n").slice(0, -1)) {
      const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
      if (dotEnds && line === ".") {
        ended = true;
        break;
      }
      out += line + "\r\n";
    }
    if (out) yield encoder.encode(out);
  }
  if (!ended && pending !== "") yield encoder.encode(pending.replace(/\r$/, "") + "\r\n");
}

/** Splits the header section off the input (bounded), returning it and the rest of the stream. */
async function splitHeader(
  input: AsyncGenerator<Uint8Array>,
): Promise<{ header: string; first: Uint8Array; rest: AsyncGenerator<Uint8Array> }> {
  let buffered = "";
  while (true) {
    const end = buffered.indexOf("\r\n\r\n");
    if (end >= 0) {
      return {
        header: buffered.slice(0, end + 2),
        first: encoder.encode(buffered.slice(end + 2)),
        rest: input,
      };
    }
    if (buffered.startsWith("\r\n")) {
      return { header: "", first: encoder.encode(buffered), rest: input };
    }
    // RFC 5322 §2.2: a field starts with a name and a colon; input that does
    // not start like one has no header section: all of it is body.
    const firstLine = buffered.split("\r\n", 1)[0]!;
    if (buffered.includes("\r\n") && !/^[!-9;-~]+:/.test(firstLine)) {
      return { header: "", first: encoder.encode("\r\n" + buffered), rest: input };
    }
    if (buffered.length > MAX_HEADER) {
      throw new SendmailError("header section too long", EX_DATAERR);
    }
    const { value, done } = await input.next();
    if (done) {
      // A message of headers only, or nothing, or one unterminated line.
      if (buffered !== "" && !/^[!-9;-~]+:/.test(buffered)) {
        return { header: "", first: encoder.encode("\r\n" + buffered), rest: input };
      }
      return { header: buffered, first: new Uint8Array(0), rest: input };
    }
    buffered += decoder.decode(value);
  }
}

/** The fields of a header section, unfolded: [name, value, raw text]. */
function fields(header: string): { name: string; value: string; raw: string }[] {
  const out: { name: string; value: string; raw: string }[] = [];
  for (const line of header.split("\r\n")) {
    if (line === "") continue;
    if (/^[ \t]/.test(line) && out.length > 0) {
      const last = out[out.length - 1]!;
      last.value += " " + line.trim();
      last.raw += "\r\n" + line;
      continue;
    }
    const colon = line.indexOf(":");
    out.push({
      name: colon > 0 ? line.slice(0, colon).trim().toLowerCase() : "",
      value: line.slice(colon + 1).trim(),
      raw: line,
    });
  }
  return out;
}

/** Addresses in an address-list field value (RFC 5322 §3.4): the `<...>` parts, or the bare ones. */
function addressesIn(value: string): string[] {
  const out: string[] = [];
  // Drop comments and display names in quotes.
  const text = value.replace(/"(?:[^"\\]|\\.)*"/g, "").replace(/\([^)]*\)/g, "");
  for (const part of text.split(",")) {
    const angle = /<([^>]*)>/.exec(part);
    const address = (angle ? angle[1]! : part.replace(/^[^:]*:/, "").replace(/;$/, "")).trim();
    if (address) out.push(address);
  }
  return out;
}

/** The first listener of the configuration, as host:port to connect to. */
function defaultServer(config: Config): string {
  const l = config.listeners[0];
  if (!l) throw usage("no listener in the configuration: give --server HOST:PORT");
  const host = l.address === "0.0.0.0" ? "127.0.0.1" : l.address === "::" ? "::1" : l.address;
  return host.includes(":") ? `[${host}]:${l.port}` : `${host}:${l.port}`;
}

/** The message, ready to send: envelope and content. */
interface Submission {
  config: Config;
  name: string;
  sender: string;
  forwardPaths: string[];
  smtputf8: boolean;
  options: SendmailOptions;
  parts: Uint8Array[];
  size: number;
}

/** Where to submit over SMTP: a TCP server (`--server`), or the local socket. */
type Target = { server: string } | { path: string };

/** The EHLO name: the login name when it is a valid one (the server records it), else localhost. */
function heloName(target: Target, config: Config): string {
  if ("server" in target) return config.hostname;
  const login = loginName();
  return /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(login) ? login : "localhost";
}

/** Connects; `null` when the local socket has no server behind it. */
async function connect(
  target: Target,
  s: Submission,
): Promise<SmtpClient | null> {
  let host: string;
  let port: number;
  if ("server" in target) {
    const m = /^\[([^\]]+)\]:(\d+)$/.exec(target.server) ?? /^([^:]+):(\d+)$/.exec(target.server);
    if (!m) throw usage(`--server must be HOST:PORT, found "${target.server}"`);
    host = m[1]!;
    port = Number(m[2]);
  } else {
    host = target.path;
    port = 0;
  }
  try {
    return await SmtpClient.connect({
      host,
      port,
      ...("path" in target ? { path: target.path } : {}),
      helo: heloName(target, s.config),
      connectTimeoutMs: 10_000,
      ...(s.options.trace ? { onTrace: clientTracer((line) => console.log(line)) } : {}),
    });
  } catch (error: unknown) {
    if ("path" in target) return null;
    throw new SendmailError(
      `cannot submit to ${target.server}: ${
        error instanceof Error ? error.message : String(error)
      }`,
      EX_TEMPFAIL,
    );
  }
}

/** Submits over SMTP with tern's client. */
async function submitOverSmtp(client: SmtpClient, s: Submission): Promise<number> {
  try {
    const result = await client.send({
      reversePath: s.sender,
      recipients: s.forwardPaths.map((address) => ({
        address,
        ...(s.options.notify === undefined ? {} : { notify: s.options.notify }),
      })),
      body: s.options.body ?? "8BITMIME",
      smtputf8: s.smtputf8,
      size: s.size,
      ret: s.options.ret,
      envid: s.options.envid,
    }, () => ReadableStream.from(s.parts));
    const refused = result.recipients.filter((r) => r.reply.code >= 300);
    for (const r of refused) {
      console.error(
        `tern ${s.name}: <${r.address}> refused: ${r.reply.code} ${r.reply.enhancedStatus ?? ""} ${
          r.reply.lines.join(" ")
        }`.replace(/  +/g, " "),
      );
    }
    if (s.options.verbose && result.reply) {
      console.error(`tern ${s.name}: ${result.reply.lines.join(" ")}`);
    }
    if (refused.length === 0) return EX_OK;
    return refused.some((r) => r.reply.code >= 500) ? EX_UNAVAILABLE : EX_TEMPFAIL;
  } catch (error: unknown) {
    throw new SendmailError(
      `submission failed: ${error instanceof Error ? error.message : String(error)}`,
      EX_TEMPFAIL,
    );
  } finally {
    await client.close();
  }
}

/**
 * When no server listens on the socket: writing the store directly is safe
 * only for the store's owner, and useful only for a store a server uses.
 */
async function refuseDirectWrite(s: Submission, file: string | null, socket: string) {
  const dataDir = s.config.dataDir;
  if (file === null) {
    throw new SendmailError(
      `no configuration found (--config, $TERN_CONFIG, ./tern.yaml, /etc/tern/tern.yaml) ` +
        `and no tern server running on ${dataDir}: the message would sit in a store nobody reads`,
      EX_TEMPFAIL,
    );
  }
  const uid = Deno.uid();
  let owner: number | null = null;
  try {
    owner = (await Deno.stat(dataDir)).uid;
  } catch (error: unknown) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  if (uid !== null && owner !== null && owner !== uid) {
    throw new SendmailError(
      `no tern server is running for ${dataDir} (nothing answers on ${socket}), and the store ` +
        `belongs to ${userName(owner)}: start tern serve, or run this as ${userName(owner)}`,
      EX_TEMPFAIL,
    );
  }
}

/** Writes the message into the store directly (no server running; the store is ours). */
async function writeStore(s: Submission, recipients: QueueRecipient[]): Promise<number> {
  const { config } = s;
  const queue = await openQueue(config);
  try {
    const now = Date.now();
    const incoming = await queue.receive({
      envelope: {
        reversePath: s.sender,
        forwardPaths: s.forwardPaths,
        body: s.options.body ?? "8BITMIME",
        smtputf8: s.smtputf8,
        ...(s.options.ret === undefined ? {} : { ret: s.options.ret }),
        ...(s.options.envid === undefined ? {} : { envid: s.options.envid }),
      },
      recipients: recipients.map((r) =>
        s.options.notify === undefined ? r : { ...r, notify: s.options.notify }
      ),
      clientAddress: "local",
      now,
    });
    let size = 0;
    const put = async (bytes: Uint8Array) => {
      size += bytes.length;
      if (config.limits.maxMessageSize > 0 && size > config.limits.maxMessageSize) {
        await incoming.abort();
        throw new SendmailError(
          `message too big (the limit is ${config.limits.maxMessageSize} octets)`,
          EX_DATAERR,
        );
      }
      await incoming.write(bytes);
    };
    // RFC 5321 §4.4: the trace field for a local submission.
    const uid = Deno.uid() ?? 0;
    await put(encoder.encode(
      `Received: by ${config.hostname} (tern, from userid ${uid})\r\n\tid ${incoming.queueId}; ${
        formatDate(new Date(now))
      }\r\n`,
    ));
    const signing = signerOf(config)?.begin() ?? null;
    for (const part of s.parts) {
      signing?.update(part);
      await put(part);
    }
    const signature = signing?.finish() ?? "";
    await incoming.commit(signature === "" ? {} : { header: encoder.encode(signature) });
    const logger = createLogger({ level: config.log.level, format: config.log.format });
    logger.log("info", "message.accepted", incoming.queueId, {
      from: `<${s.sender}>`,
      size: incoming.size,
      nrcpt: recipients.length,
      client: "local",
      uid,
    });
    if (s.options.verbose) console.error(`tern ${s.name}: queued as ${incoming.queueId}`);
    return EX_OK;
  } finally {
    await queue.close();
  }
}

/** Reads the whole message (bounded by the size limit) and completes its header. */
async function readMessage(
  o: SendmailOptions,
  config: Config,
  sender: string,
): Promise<{ parts: Uint8Array[]; size: number; forwardPaths: string[] }> {
  const { header, first, rest } = await splitHeader(readInput(!o.ignoreDots));
  const parsedFields = fields(header);
  const forwardPaths = o.recipients.map((p) => qualify(p, config, "recipient"));
  if (o.fromHeader) {
    for (const f of parsedFields) {
      if (f.name === "to" || f.name === "cc" || f.name === "bcc") {
        for (const a of addressesIn(f.value)) forwardPaths.push(qualify(a, config, "recipient"));
      }
    }
  }
  if (forwardPaths.length === 0) throw usage("no recipients (give them as arguments, or use -t)");
  // RFC 5322 §3.6: Date and From are required; Message-ID should be there.
  let kept = parsedFields.filter((f) => !(o.fromHeader && f.name === "bcc")).map((f) => f.raw)
    .join("\r\n");
  if (kept) kept += "\r\n";
  const has = (name: string) => parsedFields.some((f) => f.name === name);
  let added = "";
  if (!has("from")) added += fromField(sender, o.fullName, config);
  if (!has("date")) added += `Date: ${formatDate(new Date())}\r\n`;
  if (!has("message-id")) added += `Message-ID: <${crypto.randomUUID()}@${config.hostname}>\r\n`;
  const parts: Uint8Array[] = [
    encoder.encode(
      kept + added + (header.endsWith("\r\n\r\n") || first.length > 0 ? "" : "\r\n"),
    ),
  ];
  if (first.length > 0) parts.push(first);
  let size = parts[0]!.length + first.length;
  for await (const chunk of rest) {
    size += chunk.length;
    if (config.limits.maxMessageSize > 0 && size > config.limits.maxMessageSize) {
      throw new SendmailError(
        `message too big (the limit is ${config.limits.maxMessageSize} octets)`,
        EX_DATAERR,
      );
    }
    parts.push(chunk);
  }
  return { parts, size, forwardPaths };
}

/** `-bm`: sends the message on standard input. */
async function mailMode(o: SendmailOptions, name: string): Promise<number> {
  const { config, file } = await findConfig(o.config);
  const sender = o.sender === undefined
    ? `${loginName()}@${config.localDomains[0]}`
    : o.sender === "" || o.sender === "<>"
    ? ""
    : qualify(o.sender, config, "sender");
  const { parts, size, forwardPaths } = await readMessage(o, config, sender);
  const s: Submission = {
    config,
    name,
    sender,
    forwardPaths,
    smtputf8: isNonAscii(sender) || forwardPaths.some(isNonAscii),
    options: o,
    parts,
    size,
  };
  if (o.server !== undefined || o.trace) {
    const client = await connect({ server: o.server ?? defaultServer(config) }, s);
    return await submitOverSmtp(client!, s);
  }
  // Unknown local users are refused here, before anything is sent or written.
  const recipients: QueueRecipient[] = [];
  const seen = new Set<string>();
  for (const path of forwardPaths) {
    const targets = routeAddress(config, path);
    if (targets.length === 0) {
      throw new SendmailError(`unknown local recipient "${path}"`, EX_NOUSER);
    }
    for (const t of targets) {
      const key = (t.mailbox ?? t.address).toLowerCase();
      if (!seen.has(key)) {
        seen.add(key);
        recipients.push(t);
      }
    }
  }
  const socket = pickupSocketPath(config);
  const client = await connect({ path: socket }, s);
  if (client !== null) return await submitOverSmtp(client, s);
  await refuseDirectWrite(s, file, socket);
  return await writeStore(s, recipients);
}

/**
 * `-bs`: the SMTP dialogue on standard input and output, relayed to the
 * server's local submission socket (so the server's session and policy
 * answer, as for any local submission).
 */
async function smtpMode(o: SendmailOptions): Promise<number> {
  const { config } = await findConfig(o.config);
  const socket = pickupSocketPath(config);
  let conn: Deno.UnixConn;
  try {
    conn = await Deno.connect({ transport: "unix", path: socket });
  } catch {
    // RFC 5321 §3.1: a server that cannot serve says 421 in place of its greeting.
    await Deno.stdout.write(
      encoder.encode(`421 4.3.2 ${config.hostname} no tern server is running, try again later\r\n`),
    );
    console.error(`tern sendmail: no tern server is running for ${config.dataDir}`);
    return EX_TEMPFAIL;
  }
  // The client's end of input ends our half; the server's close ends the dialogue.
  void Deno.stdin.readable.pipeTo(conn.writable).catch(() => {});
  await conn.readable.pipeTo(Deno.stdout.writable, { preventClose: true }).catch(() => {});
  return EX_OK;
}

/**
 * Runs `tern sendmail` (and `tern send`).
 *
 * @param args The arguments after the command.
 * @param name The name to report errors under; `send` keeps its historical exit code 1 for every failure.
 * @returns The exit code: sendmail's (sysexits.h), or 0/1 for `send`.
 */
export async function sendmailCommand(args: string[], name = "sendmail"): Promise<number> {
  let code: number;
  try {
    const o = parseSendmailArgs(args);
    if (o.help) {
      console.log(USAGE);
      return EX_OK;
    }
    if (o.mode === "p") {
      return await queueCommand([
        "list",
        ...(o.config === undefined ? [] : ["--config", o.config]),
      ]);
    }
    code = o.mode === "s" ? await smtpMode(o) : await mailMode(o, name);
  } catch (error: unknown) {
    if (!(error instanceof CliError)) throw error;
    for (const line of error.message.split("\n")) {
      // Config problems already name their file; usage lines stand alone.
      const bare = /^(\S+\.ya?ml|\(defaults\)): /.test(line) || /^(usage:|\s)/.test(line);
      console.error(bare ? line : `tern ${name}: ${line}`);
    }
    code = error instanceof SendmailError ? error.exitCode : EX_TEMPFAIL;
    if (error.message.includes(": cannot read") || /^\S+\.ya?ml: /.test(error.message)) {
      code = 78; // EX_CONFIG
    }
  }
  return name === "send" && code !== EX_OK ? 1 : code;
}
