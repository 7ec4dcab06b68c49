/**
 * `tern send`: sendmail-style local submission. The message comes on
 * standard input; it is queued durably (exit 0 only then) and the running
 * server delivers it at its next poll of the store.
 *
 * Like sendmail: `-f SENDER` sets the envelope sender (default
 * `<login>@<first local domain>`); `-t` takes the recipients from the To,
 * Cc and Bcc fields (and removes Bcc); without `-i` (or `-oi`) a line
 * holding a single dot ends the input; a recipient without a domain is in
 * the first local domain. LF line endings become CRLF. Missing `From`,
 * `Date` and `Message-ID` fields are added (RFC 5322 §3.6 requires the first
 * two).
 *
 * @module
 */

import { parseArgs } from "node:util";
import type { Config } from "../config/schema.ts";
import { createLogger } from "../log/logger.ts";
import { routeAddress } from "../mta/intake.ts";
import type { QueueRecipient } from "../queue/types.ts";
import { isNonAscii, parseMailbox, PathSyntaxError } from "../smtp/path.ts";
import { formatDate } from "../smtp/received.ts";
import { CliError, describeArgsError, openConfig, openQueue, runCommand } from "./_common.ts";
import { SmtpClient } from "../smtp/client.ts";
import { annotateCommand, annotateExtension, annotateReply } from "../smtp/annotations.ts";
import { traceLine } from "../smtp/trace.ts";

const USAGE =
  "usage: tern send [--config FILE] [-f SENDER] [-t] [-i] [--server HOST:PORT] [--trace] [RECIPIENT...] < message";
const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** The most header octets kept in memory to read and complete the header section. */
const MAX_HEADER = 1024 * 1024;

/** sendmail's historical `-oi` (and other `-oX` options) → our flags. */
function normalizeArgs(args: string[]): string[] {
  return args.flatMap((a) => {
    if (a === "-oi") return ["-i"];
    if (/^-o[A-Za-z]/.test(a)) return []; // other sendmail -o options: accepted, ignored
    if (a.startsWith("-f") && a.length > 2) return ["-f", a.slice(2)];
    return [a];
  });
}

/** Completes an address without a domain with the first local domain, and checks it. */
function qualify(address: string, config: Config, what: string): string {
  const trimmed = address.trim().replace(/^<(.*)>$/, "$1");
  const full = trimmed.includes("@") ? trimmed : `${trimmed}@${config.localDomains[0]}`;
  try {
    parseMailbox(full);
  } catch (error: unknown) {
    if (error instanceof PathSyntaxError) {
      throw new CliError(`bad ${what} address "${address}": ${error.message}`);
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
    if (buffered.length > MAX_HEADER) throw new CliError("header section too long");
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
  if (!l) throw new CliError("no listener in the configuration: give --server HOST:PORT");
  const host = l.address === "0.0.0.0" ? "127.0.0.1" : l.address === "::" ? "::1" : l.address;
  return host.includes(":") ? `[${host}]:${l.port}` : `${host}:${l.port}`;
}

/**
 * Submits over SMTP with tern's client, printing the annotated dialogue
 * with --trace (the content itself is never printed).
 */
async function submitOverSmtp(o: {
  server: string;
  config: Config;
  sender: string;
  forwardPaths: string[];
  smtputf8: boolean;
  parts: Uint8Array[];
  size: number;
  trace: boolean;
  verbose: boolean;
}): Promise<number> {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(o.server) ?? /^([^:]+):(\d+)$/.exec(o.server);
  if (!m) throw new CliError(`--server must be HOST:PORT, found "${o.server}"`);
  const pending: string[] = ["greeting"];
  let ehloLine = 0;
  const onTrace = (line: string): void => {
    if (line.startsWith("C: ")) {
      const text = line.slice(3);
      const verb = text.split(" ", 1)[0]!.toUpperCase();
      // The reply to BDAT LAST is the reply to the whole content, like the one after DATA's dot.
      pending.push(verb === "BDAT" && / LAST$/i.test(text) ? "content" : verb);
      ehloLine = 0;
      console.log(traceLine("C", text, text.startsWith("AUTH") ? null : annotateCommand(text)));
    } else if (line.startsWith("S: ")) {
      const text = line.slice(3);
      const r = /^(\d{3})([ -])(?:([245]\.\d{1,3}\.\d{1,3}) )?(.*)$/.exec(text);
      if (pending[0] === "EHLO" && r && ehloLine++ > 0) {
        // RFC 5321 §4.1.1.1: after the first line, one extension keyword per line.
        console.log(traceLine("S", text, annotateExtension(r[4] ?? "")));
        if (r[2] === " ") pending.shift();
        return;
      }
      if (!r || r[2] === "-") {
        console.log(traceLine("S", text, null));
        return;
      }
      const code = Number(r[1]);
      const answers = code === 334 ? pending[0] : pending.shift();
      const reply = r[3] === undefined
        ? { code, lines: [r[4]!] }
        : { code, enhancedStatus: r[3], lines: [r[4]!] };
      console.log(
        traceLine("S", text, annotateReply(reply, answers === undefined ? {} : { answers })),
      );
    } else {
      if (/content|data|BDAT/i.test(line)) pending.push("content");
      console.log(traceLine("*", line.replace(/^\* ?/, ""), null));
    }
  };
  let client: SmtpClient;
  try {
    client = await SmtpClient.connect({
      host: m[1]!,
      port: Number(m[2]),
      helo: o.config.hostname,
      ...(o.trace ? { onTrace } : {}),
    });
  } catch (error: unknown) {
    throw new CliError(
      `cannot submit to ${o.server}: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
  try {
    const result = await client.send({
      reversePath: o.sender,
      recipients: o.forwardPaths.map((address) => ({ address })),
      body: "8BITMIME",
      smtputf8: o.smtputf8,
      size: o.size,
    }, () => ReadableStream.from(o.parts));
    const refused = result.recipients.filter((r) => r.reply.code >= 300);
    for (const r of refused) {
      console.error(
        `tern send: <${r.address}> refused: ${r.reply.code} ${r.reply.enhancedStatus ?? ""} ${
          r.reply.lines.join(" ")
        }`.replace(/  +/g, " "),
      );
    }
    if (o.verbose && result.reply) console.error(`tern send: ${result.reply.lines.join(" ")}`);
    return refused.length === 0 ? 0 : 1;
  } finally {
    await client.close();
  }
}

/**
 * Runs `tern send`.
 *
 * @param args The arguments after `send`.
 * @returns The exit code.
 */
export function sendCommand(args: string[]): Promise<number> {
  return runCommand("send", async () => {
    let parsed;
    try {
      parsed = parseArgs({
        args: normalizeArgs(args),
        options: {
          config: { type: "string" },
          f: { type: "string", short: "f" },
          t: { type: "boolean", short: "t" },
          i: { type: "boolean", short: "i" },
          v: { type: "boolean", short: "v" },
          server: { type: "string" },
          trace: { type: "boolean" },
          help: { type: "boolean", short: "h" },
        },
        strict: true,
        allowPositionals: true,
      });
    } catch (error: unknown) {
      throw new CliError(`${describeArgsError(error)}\n${USAGE}`);
    }
    const { values, positionals } = parsed;
    if (values.help) {
      console.log(USAGE);
      return 0;
    }
    const config = await openConfig(values.config);
    const login = Deno.env.get("USER") ?? Deno.env.get("LOGNAME") ?? "root";
    const sender = values.f === undefined
      ? `${login}@${config.localDomains[0]}`
      : values.f === "" || values.f === "<>"
      ? ""
      : qualify(values.f, config, "sender");

    const { header, first, rest } = await splitHeader(readInput(!values.i));
    const parsedFields = fields(header);
    const forwardPaths = positionals.map((p) => qualify(p, config, "recipient"));
    if (values.t) {
      for (const f of parsedFields) {
        if (f.name === "to" || f.name === "cc" || f.name === "bcc") {
          for (const a of addressesIn(f.value)) forwardPaths.push(qualify(a, config, "recipient"));
        }
      }
    }
    if (forwardPaths.length === 0) {
      throw new CliError(`no recipients (give them as arguments, or use -t)\n${USAGE}`);
    }

    const viaSmtp = values.server !== undefined || values.trace === true;
    const recipients: QueueRecipient[] = [];
    const seen = new Set<string>();
    for (const path of viaSmtp ? [] : forwardPaths) {
      const targets = routeAddress(config, path);
      if (targets.length === 0) throw new CliError(`unknown local recipient "${path}"`);
      for (const t of targets) {
        const key = (t.mailbox ?? t.address).toLowerCase();
        if (!seen.has(key)) {
          seen.add(key);
          recipients.push(t);
        }
      }
    }

    // RFC 5322 §3.6: Date and From are required; Message-ID should be there.
    const now = Date.now();
    let kept = parsedFields.filter((f) => !(values.t && f.name === "bcc")).map((f) => f.raw).join(
      "\r\n",
    );
    if (kept) kept += "\r\n";
    const has = (name: string) => parsedFields.some((f) => f.name === name);
    let added = "";
    if (!has("from")) added += `From: <${sender || `MAILER-DAEMON@${config.hostname}`}>\r\n`;
    if (!has("date")) added += `Date: ${formatDate(new Date(now))}\r\n`;
    if (!has("message-id")) added += `Message-ID: <${crypto.randomUUID()}@${config.hostname}>\r\n`;

    const smtputf8 = isNonAscii(sender) || forwardPaths.some(isNonAscii);
    if (viaSmtp) {
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
          throw new CliError(
            `message too big (the limit is ${config.limits.maxMessageSize} octets)`,
          );
        }
        parts.push(chunk);
      }
      const server = values.server ?? defaultServer(config);
      return await submitOverSmtp({
        server,
        config,
        sender,
        forwardPaths,
        smtputf8,
        parts,
        size,
        trace: values.trace === true,
        verbose: values.v === true,
      });
    }
    const queue = await openQueue(config);
    try {
      const incoming = await queue.receive({
        envelope: { reversePath: sender, forwardPaths, body: "8BITMIME", smtputf8 },
        recipients,
        clientAddress: "local",
        now,
      });
      let size = 0;
      const put = async (bytes: Uint8Array) => {
        size += bytes.length;
        if (config.limits.maxMessageSize > 0 && size > config.limits.maxMessageSize) {
          await incoming.abort();
          throw new CliError(
            `message too big (the limit is ${config.limits.maxMessageSize} octets)`,
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
      await put(
        encoder.encode(
          kept + added + (header.endsWith("\r\n\r\n") || first.length > 0 ? "" : "\r\n"),
        ),
      );
      if (first.length > 0) await put(first);
      for await (const chunk of rest) await put(chunk);
      await incoming.commit();
      const logger = createLogger({ level: config.log.level, format: config.log.format });
      logger.log("info", "message.accepted", incoming.queueId, {
        from: `<${sender}>`,
        size: incoming.size,
        nrcpt: recipients.length,
        client: "local",
        uid,
      });
      if (values.v) console.error(`tern send: queued as ${incoming.queueId}`);
      return 0;
    } finally {
      await queue.close();
    }
  });
}
