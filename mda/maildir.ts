/**
 * Maildir delivery, after D. J. Bernstein's description
 * (https://cr.yp.to/proto/maildir.html) and qmail's `maildir(5)`.
 *
 * A Maildir is a directory with three subdirectories:
 *
 * - `tmp/` holds messages being written;
 * - `new/` holds delivered messages nobody has looked at yet;
 * - `cur/` holds messages a mail reader has seen; the reader moves them there
 *   from `new/` and appends an "info" suffix such as `:2,S` (seen).
 *
 * A delivery writes the whole message into `tmp/<unique>`, makes sure it is
 * "safely written to disk" (fsync), then renames it into `new/<unique>`. A
 * rename is atomic, so a reader sees either nothing or the whole message, and
 * no locks are needed.
 *
 * tern departs from the spec's advice in one way: the unique name is not made
 * from the process id and a random number but from the queue id and the
 * recipient's index, so that it is the same on every attempt. After a crash
 * between the rename and the queue's "sent" record, the next attempt finds
 * `new/<unique>` (or the reader's `cur/<unique>:2,...`) and reports the
 * earlier delivery instead of writing a second copy: local delivery happens
 * exactly once.
 *
 * @module
 */

import { dirname } from "node:path";
import { BufferedWriter, writeAll } from "../fs/buffered_writer.ts";
import { concatBytes } from "../bytes/concat.ts";
import { FileSyncer } from "../fs/file_sync.ts";
import { syncDirectory, syncDirectorySoon } from "../fs/sync_directory.ts";

const encoder = new TextEncoder();

/**
 * Thrown by {@linkcode deliverToMaildir} with `exclusive` when another
 * message's file already has the name: nothing was written, and the other
 * file is as it was. Only a new name helps, so the message needs a new
 * queue id: a delivery at acceptance refuses it with a temporary error, and
 * the client sends it again.
 */
export class MaildirNameTakenError extends Error {
  /** The file that has the name. */
  readonly path: string;

  /**
   * Makes the error.
   *
   * @param path The file that has the name.
   */
  constructor(path: string) {
    super(`Cannot deliver into ${path}: another message's file has that name`);
    this.name = "MaildirNameTakenError";
    this.path = path;
  }
}

/**
 * A message's content for {@linkcode deliverToMaildir}: in memory (in one
 * piece, or in the pieces it arrived in), or streamed (memory then stays
 * bounded whatever the message's size).
 */
export type MaildirContent =
  | Uint8Array
  | readonly Uint8Array[]
  | ReadableStream<Uint8Array>
  | AsyncIterable<Uint8Array>;

/** How many bytes are collected before one write(2); bounds memory per delivery. */
const WRITE_BUFFER_SIZE = 64 * 1024;
/**
 * The largest file whose open, write and rename a delivery at acceptance
 * makes in place, blocking the thread, instead of as async operations.
 * Each async file-system call costs 50–70 µs of CPU in thread hand-offs
 * where the call itself takes 18 µs (an O_EXCL create or a rename on ext4,
 * measured with Deno 2.9), and the client waits for each hand-off in turn.
 * Only on a node-local mail root (`syncName: "later"`); the fsync, which
 * waits for the disk, runs off the thread unless the caller says nothing
 * else waits for it (`syncInPlace`).
 */
const INLINE_OCTETS = 64 * 1024;

/** This thread's choice of where each file's fsync runs. */
const fileSyncer = new FileSyncer();

/** The most octets of content in pieces joined into one write(2). */
const MAX_JOINED = 4 * 1024 * 1024;

/**
 * The longest name of one directory entry, in octets (NAME_MAX on Linux and
 * the BSDs): a longer name fails with ENAMETOOLONG on every attempt.
 */
export const MAX_NAME_OCTETS = 255;

/**
 * The longest Maildir directory {@linkcode maildirPath} returns, in octets:
 * PATH_MAX (4096, with its terminating NUL) less room for `tmp/`, `new/` or
 * `cur/` and a file name of {@linkcode MAX_NAME_OCTETS}, so every file the
 * delivery and a mail reader make inside it has a path the kernel takes.
 */
export const MAX_MAILDIR_OCTETS = 4095 - "cur/".length - MAX_NAME_OCTETS;

/**
 * The longest unique name {@linkcode maildirUniqueName} makes, in octets:
 * a reader appends an info suffix (`:2,FRS`, and Maildir++ readers
 * `,S=<size>,W=<size>`), and the whole must stay within NAME_MAX.
 */
const MAX_UNIQUE_NAME_OCTETS = 200;

/** The length of a string in UTF-8 octets, which is what the kernel counts. */
function octets(text: string): number {
  return encoder.encode(text).length;
}

/**
 * Whether a string is over `limit` UTF-8 octets. A UTF-16 code unit is one to
 * three octets, so most names are settled without encoding them: this runs
 * for every delivery and every RCPT.
 */
function isOver(text: string, limit: number): boolean {
  if (text.length > limit) return true;
  if (text.length * 3 <= limit) return false;
  return octets(text) > limit;
}

/**
 * Percent-escapes what cannot stand in one path segment: `/` (a separator),
 * NUL (ends a path in the kernel), `%` itself (so the escape is reversible and
 * two addresses never share a directory), a leading `.` (no `.`, `..` or
 * hidden entries), and control characters (they make directory listings
 * unreadable).
 */
function escapeSegment(text: string): string {
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const ch = text[i] as string;
    const code = ch.charCodeAt(0);
    if (ch === "/" || ch === "%" || code < 0x20 || code === 0x7f || (i === 0 && ch === ".")) {
      out += "%" + code.toString(16).toUpperCase().padStart(2, "0");
    } else {
      out += ch;
    }
  }
  return out;
}

/**
 * The directory of a mailbox's Maildir: `<mailRoot>/<domain>/<local-part>/`
 * (the `mail_root` setting).
 *
 * The domain is put in lower case (domains are case-insensitive, RFC 5321
 * §2.4); the local part keeps its spelling (RFC 5321 §2.4: it is
 * case-sensitive) because the `mailbox` handed in is already the canonical
 * account name. Both are made safe as a single path segment: `/`, NUL and
 * other control characters, `%`, and a leading `.` are percent-escaped, so an
 * address such as `../../etc@example.test` stays inside `mailRoot`.
 *
 * A mailbox whose directory could never be made is refused here, so that the
 * SMTP server can refuse it at RCPT (`550 5.1.3`) instead of accepting mail
 * that fails on every attempt: an escaped domain or local part over
 * {@linkcode MAX_NAME_OCTETS}, or a directory over
 * {@linkcode MAX_MAILDIR_OCTETS}. The error names the mailbox, not the path.
 *
 * @param mailRoot The mail root, an absolute directory.
 * @param mailbox The canonical mailbox, `local@domain`.
 * @returns The Maildir directory, ending in `/`.
 * @throws {TypeError} When the mailbox has no `@`, an empty local part or
 *   domain, or a name too long for the file system.
 *
 * @example Where alice's mail goes
 * ```ts
 * import { maildirPath } from "./maildir.ts";
 * console.log(maildirPath("/var/mail", "alice@Example.TEST"));
 * // "/var/mail/example.test/alice/"
 * console.log(maildirPath("/var/mail", "../x@example.test"));
 * // "/var/mail/example.test/%2E.%2Fx/"
 * ```
 */
export function maildirPath(mailRoot: string, mailbox: string): string {
  // The domain cannot contain "@"; a quoted local part can (RFC 5321 §4.1.2).
  const at = mailbox.lastIndexOf("@");
  if (at < 0) throw new TypeError(`Cannot map mailbox "${mailbox}" to a Maildir: no "@"`);
  const localPart = mailbox.slice(0, at);
  const domain = mailbox.slice(at + 1).normalize("NFC").toLowerCase();
  if (localPart === "" || domain === "") {
    throw new TypeError(
      `Cannot map mailbox "${mailbox}" to a Maildir: empty local part or domain`,
    );
  }
  let root = mailRoot;
  while (root.length > 1 && root.endsWith("/")) root = root.slice(0, -1);
  const base = root === "/" ? "" : root;
  const domainName = escapeSegment(domain);
  const localName = escapeSegment(localPart);
  const isLocalOver = isOver(localName, MAX_NAME_OCTETS);
  if (isLocalOver || isOver(domainName, MAX_NAME_OCTETS)) {
    throw new TypeError(
      `Cannot map mailbox "${mailbox}" to a Maildir: its ${
        isLocalOver ? "local part" : "domain"
      } is too long for a directory name (at most ${MAX_NAME_OCTETS} octets once escaped)`,
    );
  }
  const dir = `${base}/${domainName}/${localName}/`;
  if (isOver(dir, MAX_MAILDIR_OCTETS)) {
    throw new TypeError(
      `Cannot map mailbox "${mailbox}" to a Maildir: the path would be too long for the file system`,
    );
  }
  return dir;
}

/**
 * Whether a mailbox can have a Maildir under `mailRoot` at all
 * ({@linkcode maildirPath} would not throw): asked at RCPT, so that a
 * recipient that could never be delivered is refused there, not bounced to a
 * sender who may be forged.
 *
 * @param mailRoot The mail root.
 * @param mailbox The canonical mailbox, `local@domain`.
 * @returns Whether its Maildir path can exist.
 *
 * @example A local part of 200 slashes escapes to 600 octets
 * ```ts
 * import { isMaildirName } from "./maildir.ts";
 * console.log(isMaildirName("/var/mail", "alice@example.test")); // true
 * console.log(isMaildirName("/var/mail", `${"/".repeat(200)}@example.test`)); // false
 * ```
 */
export function isMaildirName(mailRoot: string, mailbox: string): boolean {
  try {
    maildirPath(mailRoot, mailbox);
    return true;
  } catch {
    return false;
  }
}

/**
 * The Maildir spec's escapes for a host name: `/` as `\057` and `:` as
 * `\072`. The backslash and the dot are escaped too in the delivery id (they
 * would break the three-part form or make two ids look alike).
 */
function escapeOctal(text: string, chars: string): string {
  let out = "";
  for (const ch of text) {
    out += chars.includes(ch) ? "\\" + ch.charCodeAt(0).toString(8).padStart(3, "0") : ch;
  }
  return out;
}

/**
 * The unique file name of one recipient's copy of one message, in the Maildir
 * form `time.id.host` (https://cr.yp.to/proto/maildir.html, "unique names"):
 * `<seconds>.M<micros>Q<queueId>R<index>.<host>`.
 *
 * - `seconds` and `M<micros>` come from the arrival time, so names sort by
 *   arrival as readers expect;
 * - `Q<queueId>R<index>` makes the name unique on this host (the spec asks for
 *   a delivery identifier unique within the second; a queue id is unique for
 *   ever) and, unlike the spec's pid and random number, the same on every
 *   attempt: that is what lets a retry see an earlier delivery;
 * - the host name has `/` written as `\057` and `:` as `\072`, as the spec
 *   says, so the name holds no path separator and no info separator; it is
 *   cut so that the whole name stays within 200 octets (NAME_MAX is 255, and
 *   a reader appends an info suffix), however long the host name.
 *
 * @param arrivalMs When the message was accepted, epoch milliseconds.
 * @param queueId The message's queue id.
 * @param recipientIndex The recipient's index in the queued message.
 * @param hostname This host's name.
 * @returns The unique name, without the `:2,` info suffix.
 *
 * @example The name of the first recipient's copy
 * ```ts
 * import { maildirUniqueName } from "./maildir.ts";
 * console.log(maildirUniqueName(1700000000123, "4F2A9C", 0, "mx.example.test"));
 * // "1700000000.M123000Q4F2A9CR0.mx.example.test"
 * ```
 */
export function maildirUniqueName(
  arrivalMs: number,
  queueId: string,
  recipientIndex: number,
  hostname: string,
): string {
  const micros = Math.max(0, Math.floor(arrivalMs * 1000));
  const seconds = Math.floor(micros / 1_000_000);
  const fraction = micros % 1_000_000;
  const id = escapeOctal(queueId, "\\/:.");
  const head = `${seconds}.M${fraction}Q${id}R${recipientIndex}.`;
  return withHost(head, hostname);
}

/** A unique name's head (`<seconds>.M<micros>Q<id>R<index>.`) followed by the escaped host, cut to fit. */
function withHost(head: string, hostname: string): string {
  const host = escapeOctal(hostname, "/:");
  // The common case, settled without encoding: the whole name fits.
  if (!isOver(head + host, MAX_UNIQUE_NAME_OCTETS)) return head + host;
  return head + cutToOctets(host, MAX_UNIQUE_NAME_OCTETS - octets(head));
}

/**
 * Whether `name` is a unique name {@linkcode maildirUniqueName} makes on the
 * host `hostname`: its host part is this host's (escaped, and cut as it
 * would be). The queue id holds no `.` (it is escaped), so the host part is
 * what follows the name's second dot.
 *
 * @param name A file name from a Maildir.
 * @param hostname This host's name.
 * @returns Whether this host made it.
 *
 * @example
 * ```ts
 * import { isUniqueNameOf, maildirUniqueName } from "./maildir.ts";
 * const name = maildirUniqueName(1700000000123, "4F2A9C", 0, "mx.example.test");
 * console.log(isUniqueNameOf(name, "mx.example.test")); // true
 * console.log(isUniqueNameOf(name, "mx2.example.test")); // false
 * ```
 */
export function isUniqueNameOf(name: string, hostname: string): boolean {
  const first = name.indexOf(".");
  const second = first < 0 ? -1 : name.indexOf(".", first + 1);
  if (second < 0 || !/^\d+\.M\d+Q[^.]+R\d+\.$/.test(name.slice(0, second + 1))) return false;
  return withHost(name.slice(0, second + 1), hostname) === name;
}

/**
 * The name in `tmp/` of a delivery whose rename into `new/` is made durable
 * later (`syncName: "later"`): the unique name and the file's size in
 * octets, as Maildir++ writes it (`,S=<size>`). The size is what lets the
 * recovery after a crash tell a complete file from one cut short
 * ({@linkcode parsePendingName}).
 *
 * @param uniqueName The name it will have in `new/`.
 * @param size The file's whole size, trace header included.
 * @returns `<uniqueName>,S=<size>`.
 */
export function pendingName(uniqueName: string, size: number): string {
  return `${uniqueName},S=${size}`;
}

/**
 * Reads a name {@linkcode pendingName} made.
 *
 * @param name A file name in `tmp/`.
 * @returns The unique name and the size, or `null` for any other name.
 *
 * @example
 * ```ts
 * import { parsePendingName } from "./maildir.ts";
 * console.log(parsePendingName("1700000000.M123000Q4F2A9CR0.mx.example.test,S=4479"));
 * // { uniqueName: "1700000000.M123000Q4F2A9CR0.mx.example.test", size: 4479 }
 * ```
 */
export function parsePendingName(name: string): { uniqueName: string; size: number } | null {
  const match = /^(.+),S=(\d{1,15})$/.exec(name);
  if (match === null) return null;
  return { uniqueName: match[1] as string, size: Number(match[2]) };
}

/**
 * The longest prefix of `text` within `limit` UTF-8 octets, cut between code
 * points so that no character is split.
 */
function cutToOctets(text: string, limit: number): string {
  if (!isOver(text, limit)) return text;
  let out = "";
  let used = 0;
  for (const ch of text) {
    const size = octets(ch);
    if (used + size > limit) break;
    out += ch;
    used += size;
  }
  return out;
}

/** Options of {@linkcode deliverToMaildir}. */
export interface MaildirDeliveryOptions {
  /**
   * The envelope's reverse-path as `local@domain`, or `""` for the null
   * reverse-path; written as `Return-Path: <...>` (RFC 5321 §4.4).
   */
  readonly returnPath: string;
  /** The recipient address, written as `Delivered-To:` (RFC 9228). */
  readonly deliveredTo: string;
  /** The file name, from {@linkcode maildirUniqueName}. */
  readonly uniqueName: string;
  /**
   * Also look in `cur/` for an earlier delivery (a reader may have moved it
   * there); costs a directory listing, so set it only on a retry or after a
   * crash.
   *
   * @default {false}
   */
  readonly checkCur?: boolean;
  /**
   * The first attempt at this name (no earlier attempt can have written it):
   * skip the search for an earlier delivery. Safe either way, since the
   * rename into `new/` replaces a file of the same name; it saves a lookup.
   *
   * @default {false}
   */
  readonly firstAttempt?: boolean;
  /**
   * When the rename into `new/` is made durable (by fsyncing `new/`):
   *
   * - `"now"`: before the call returns.
   * - `"later"`: the call returns once the file is synced and renamed; the
   *   fsync of `new/` runs after, and `nameSynced` in the result tells when it
   *   is done. Until then a crash of the machine may undo the rename, leaving
   *   the synced file in `tmp/` under its {@linkcode pendingName}, which
   *   carries its size; `recoverMaildirs` moves it into `new/` at the next
   *   start. The SMTP server's `250` then waits for one fsync instead of
   *   two, as a queue's does. Only for content in memory (its size must be
   *   known before the file is named); a stream is always `"now"`.
   *
   * @default {"now"}
   */
  readonly syncName?: "now" | "later";
  /**
   * The caller's word that nothing else on this thread waits while the file
   * is synced (the one SMTP session the thread serves is the one whose
   * message this is). The fsync of a small file on the client's path (see
   * {@linkcode INLINE_OCTETS}) then blocks the thread instead of being
   * handed to another and back, unless another fsync is already out or a
   * recent one was slow ({@linkcode FileSyncer}).
   *
   * @default {false}
   */
  readonly syncInPlace?: boolean;
  /**
   * Refuse, instead of replace, a file already under this name in `tmp/`
   * or `new/` ({@linkcode MaildirNameTakenError}): it can only be another
   * message's, where processes share a mail root (a fleet's nodes) and
   * their names differ by their queue ids' random parts alone. The file
   * goes into `new/` by link(2) and unlink(2) rather than rename(2), which
   * would replace the other. Only with `syncName: "now"`, and for a first
   * attempt (a retry must find its own earlier copy).
   *
   * @default {false}
   */
  readonly exclusive?: boolean;
}

/** What {@linkcode deliverToMaildir} did. */
export interface MaildirDeliveryResult {
  /** The file in `new/` (or where the earlier copy was found). */
  readonly path: string;
  /** Whether an earlier delivery under the same name was found; nothing was written. */
  readonly duplicate: boolean;
  /**
   * With `syncName: "later"`: settles when the rename is durable, or
   * rejects with the fsync's error (nothing can be undone then: the
   * message is in `new/`; the caller logs it).
   */
  readonly nameSynced?: Promise<void>;
}

function isNotFound(error: unknown): boolean {
  return error instanceof Deno.errors.NotFound;
}

/**
 * Creates a directory (mode 0o700) and any missing parents, fsyncing each new
 * directory's parent so the new entry survives a crash.
 */
async function makeDirectory(path: string): Promise<void> {
  try {
    await Deno.mkdir(path, { mode: 0o700 });
  } catch (error: unknown) {
    if (error instanceof Deno.errors.AlreadyExists) return;
    const parent = dirname(path);
    if (!isNotFound(error) || parent === path) throw error;
    await makeDirectory(parent);
    try {
      await Deno.mkdir(path, { mode: 0o700 });
    } catch (again: unknown) {
      if (again instanceof Deno.errors.AlreadyExists) return;
      throw again;
    }
  }
  await syncDirectory(dirname(path));
}

/** Finds an earlier delivery: `new/<name>`, or with `checkCur` `cur/<name>` with any info suffix. */
async function findEarlierDelivery(
  dir: string,
  name: string,
  checkCur: boolean,
): Promise<string | null> {
  try {
    await Deno.lstat(`${dir}/new/${name}`);
    return `${dir}/new/${name}`;
  } catch (error: unknown) {
    if (!isNotFound(error)) throw error;
  }
  if (!checkCur) return null;
  try {
    for await (const entry of Deno.readDir(`${dir}/cur`)) {
      // Maildir spec: a reader renames new/<name> to cur/<name>:2,<flags>;
      // Maildir++ readers (Dovecot) may also add ",S=<size>" before the colon.
      const rest = entry.name.slice(name.length);
      if (entry.name.startsWith(name) && (rest === "" || rest[0] === ":" || rest[0] === ",")) {
        return `${dir}/cur/${entry.name}`;
      }
    }
  } catch (error: unknown) {
    if (!isNotFound(error)) throw error;
  }
  return null;
}

/** Creates tmp/, new/ and cur/, and the Maildir itself, when missing. */
async function makeMaildir(maildir: string): Promise<void> {
  for (const sub of ["tmp", "new", "cur"]) await makeDirectory(`${maildir}/${sub}`);
}

/**
 * Runs a step on a Maildir's `tmp/` or `new/`; when it fails for a missing
 * directory (a new mailbox, or one a crash left half-made), makes the
 * Maildir's directories and runs it once more. On the common path that is
 * the step's one system call and nothing else (each failed async
 * file-system call costs about 70 µs here).
 */
async function inWholeMaildir<T>(maildir: string, step: () => T | Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (error: unknown) {
    if (!isNotFound(error)) throw error;
  }
  await makeMaildir(maildir);
  return await step();
}

/**
 * Opens `tmp/<name>` with O_EXCL. The directories are created only when the
 * open says they are missing, and a stale file only removed when the open
 * finds one.
 */
async function createTmpFile(
  maildir: string,
  tmpPath: string,
  inline: boolean,
  exclusive: boolean,
): Promise<Deno.FsFile> {
  const options = { write: true, createNew: true, mode: 0o600 };
  const open = () => inline ? Deno.openSync(tmpPath, options) : Deno.open(tmpPath, options);
  try {
    return await inWholeMaildir(maildir, open);
  } catch (error: unknown) {
    if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
    // Another process writing a message of the same name, now.
    if (exclusive) throw new MaildirNameTakenError(tmpPath);
    // Left by an attempt that crashed mid-write: it was never renamed into
    // new/, so it was never delivered.
    await Deno.remove(tmpPath);
    return await open();
  }
}

/**
 * Renames a synced file from `tmp/` into `new/`, first making `new/` and
 * `cur/` (mode 0o700, each entry synced) when a crash left the Maildir
 * half-made. Used by the delivery and by the recovery after a crash.
 *
 * @param maildir The Maildir, without a trailing `/`.
 * @param tmpPath The file in `tmp/`.
 * @param newPath Its name in `new/`.
 * @param inline Rename in place, blocking the thread (a small delivery's
 *   path on a node-local mail root); otherwise an async call.
 * @throws {Deno.errors.NotFound} When the file in `tmp/` is gone, or any
 *   other file-system error.
 */
export async function renameIntoNew(
  maildir: string,
  tmpPath: string,
  newPath: string,
  inline = false,
): Promise<void> {
  await inWholeMaildir(
    maildir,
    () => inline ? Deno.renameSync(tmpPath, newPath) : Deno.rename(tmpPath, newPath),
  );
}

/**
 * Puts a synced file from `tmp/` into `new/` without replacing a file of
 * that name: link(2), which fails when the name is taken, then unlink(2) of
 * the `tmp/` name. A crash between the two leaves a second name in `tmp/`
 * for the same file, which Maildir readers clean up as they clean any old
 * file there.
 *
 * @throws {MaildirNameTakenError} When `new/` has the name already; the
 *   file in `tmp/` is removed.
 */
async function linkIntoNew(maildir: string, tmpPath: string, newPath: string): Promise<void> {
  try {
    await inWholeMaildir(maildir, () => Deno.link(tmpPath, newPath));
  } catch (error: unknown) {
    if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
    await Deno.remove(tmpPath).catch(() => {});
    throw new MaildirNameTakenError(newPath);
  }
  await Deno.remove(tmpPath);
}

/**
 * The buffer to write `content` through: for pieces in memory, one that
 * holds them all (a power of two, up to {@linkcode MAX_JOINED}), so they go
 * in one write(2) (sixteen writes of 64 KiB cost more than one of a
 * megabyte, and the buffer is reused, without a fresh megabyte's page
 * faults); for a stream, {@linkcode WRITE_BUFFER_SIZE}, whatever its size.
 */
function bufferSizeFor(content: MaildirContent, headerOctets: number): number {
  if (!Array.isArray(content)) return WRITE_BUFFER_SIZE;
  let size = WRITE_BUFFER_SIZE;
  const total = headerOctets + contentOctets(content as readonly Uint8Array[]);
  while (size < total && size < MAX_JOINED) size *= 2;
  return size;
}

/** The octets of content in pieces. */
function contentOctets(pieces: readonly Uint8Array[]): number {
  let total = 0;
  for (const piece of pieces) total += piece.length;
  return total;
}

/** Content in memory as pieces. */
function inMemory(content: MaildirContent): readonly Uint8Array[] {
  return content instanceof Uint8Array ? [content] : content as readonly Uint8Array[];
}

/** Writes all of `bytes` in place (a short write is continued). */
function writeAllSync(file: Deno.FsFile, bytes: Uint8Array): void {
  let offset = 0;
  while (offset < bytes.length) offset += file.writeSync(bytes.subarray(offset));
}

/** The size of content in memory, or `null` for a stream. */
function knownSize(content: MaildirContent): number | null {
  if (content instanceof Uint8Array) return content.length;
  if (Array.isArray(content)) return contentOctets(content as readonly Uint8Array[]);
  return null;
}

/**
 * Writes the trace header lines, then the content: small content in memory
 * with the header in one write, bigger content in a write of its own (a
 * fresh copy of a megabyte costs more than a second system call), pieces
 * and a stream through a reused buffer (see {@linkcode bufferSizeFor}).
 */
async function writeMessage(
  file: Deno.FsFile,
  content: MaildirContent,
  head: Uint8Array,
): Promise<void> {
  if (content instanceof Uint8Array) {
    if (content.length < WRITE_BUFFER_SIZE) {
      await writeAll(file, concatBytes([head, content]));
    } else {
      await writeAll(file, head);
      await writeAll(file, content);
    }
    return;
  }
  const out = new BufferedWriter(file, bufferSizeFor(content, head.length));
  try {
    await out.write(head);
    for await (const chunk of content as AsyncIterable<Uint8Array> | Iterable<Uint8Array>) {
      await out.write(chunk);
    }
    await out.flush();
  } finally {
    out.release();
  }
}

/**
 * Delivers one message into a Maildir, exactly once per unique name.
 *
 * 1. Unless `firstAttempt`: if `new/<uniqueName>` exists (with `checkCur`,
 *    also `cur/<uniqueName>` with or without an info suffix), an earlier
 *    attempt already delivered: return `{ duplicate: true }` and write nothing.
 * 2. Create `tmp/`, `new/` and `cur/` (mode 0o700) when missing (found by
 *    the open of `tmp/<uniqueName>` failing, so a Maildir that has `tmp/` but
 *    lacks `cur/` is not completed).
 * 3. Write `Return-Path: <sender>` (RFC 5321 §4.4: added at final delivery;
 *    `<>` for the null sender) and `Delivered-To: <address>` (RFC 9228), each
 *    ending in CRLF, then the content byte for byte, into `tmp/<uniqueName>`,
 *    opened with O_EXCL after removing a stale file of that name. Content in
 *    memory goes in one write with the header (a large one in a write of its
 *    own); pieces are joined in a reused buffer and written at once (up to
 *    4 MiB); a stream goes through a 64 KiB buffer, pieces that big written
 *    as they are, so memory does not grow with the message.
 * 4. fsync the file, rename it into `new/`, fsync `new/` (the Maildir spec's
 *    "safely written to disk", and the rename's durability). With
 *    `syncName: "later"` the file is written under its
 *    {@linkcode pendingName} and the fsync of `new/` is left running
 *    (`nameSynced`).
 *
 * On any failure the file in `tmp/` is removed and the error rethrown.
 *
 * @param dir The Maildir, from {@linkcode maildirPath}.
 * @param content The message as received (with its Received line), in memory or streamed.
 * @param options Sender, recipient, unique name.
 * @returns Where the message is, and whether it was there already.
 * @throws {TypeError} When the sender or recipient holds CR, LF or NUL (header injection).
 * @throws {Deno.errors.PermissionDenied} Or any other file-system error, after clean-up.
 *
 * @example Deliver a message into a temporary Maildir
 * ```ts
 * import { deliverToMaildir } from "./maildir.ts";
 * const root = await Deno.makeTempDir();
 * const content = new Blob(["Subject: hi\r\n\r\nHello\r\n"]).stream();
 * const result = await deliverToMaildir(`${root}/alice`, content, {
 *   returnPath: "bob@example.test",
 *   deliveredTo: "alice@example.test",
 *   uniqueName: "1700000000.M0Q4F2A9CR0.mx.example.test",
 * });
 * console.log(result.duplicate); // false
 * console.log(await Deno.readTextFile(result.path));
 * // "Return-Path: <bob@example.test>\r\nDelivered-To: alice@example.test\r\nSubject: hi..."
 * await Deno.remove(root, { recursive: true });
 * ```
 */
export async function deliverToMaildir(
  dir: string,
  content: MaildirContent,
  options: MaildirDeliveryOptions,
): Promise<MaildirDeliveryResult> {
  const { returnPath, deliveredTo, uniqueName } = options;
  // A CR or LF here would let an envelope address add header lines.
  if (/[\r\n\0]/.test(returnPath) || /[\r\n\0]/.test(deliveredTo)) {
    throw new TypeError(
      `Cannot write trace headers for "${deliveredTo}": CR, LF or NUL in an address`,
    );
  }
  if (uniqueName === "" || uniqueName.startsWith(".") || /[/\0]/.test(uniqueName)) {
    throw new TypeError(`Cannot use "${uniqueName}" as a Maildir file name`);
  }
  const maildir = dir.length > 1 && dir.endsWith("/") ? dir.slice(0, -1) : dir;

  const earlier = options.firstAttempt
    ? null
    : await findEarlierDelivery(maildir, uniqueName, options.checkCur ?? false);
  if (earlier !== null) {
    // Let the source release what it holds (a store cursor, a file).
    if (content instanceof ReadableStream) await content.cancel();
    return { path: earlier, duplicate: true };
  }

  const head = encoder.encode(`Return-Path: <${returnPath}>\r\nDelivered-To: ${deliveredTo}\r\n`);
  const size = options.syncName === "later" ? knownSize(content) : null;
  // A rename made durable later needs the size in the name, for the recovery.
  const later = size !== null;
  const tmpPath = `${maildir}/tmp/${
    later ? pendingName(uniqueName, head.length + size) : uniqueName
  }`;
  const newPath = `${maildir}/new/${uniqueName}`;
  // A small file on the client's path: its open, write and rename are made
  // in place (see INLINE_OCTETS); its fsync too when nothing else waits.
  const inline = later && head.length + size <= INLINE_OCTETS;
  // Only the "now" path: the recovery of a "later" rename relies on rename(2).
  const exclusive = options.exclusive === true && !later;
  let file: Deno.FsFile | null = null;
  let created = false;
  try {
    file = await createTmpFile(maildir, tmpPath, inline, exclusive);
    created = true;
    if (inline) writeAllSync(file, concatBytes([head, ...inMemory(content)]));
    else await writeMessage(file, content, head);
    // Maildir spec: "safely written to disk" before it becomes visible.
    await fileSyncer.sync(file, inline && options.syncInPlace === true);
    file.close();
    file = null;
    if (exclusive) await linkIntoNew(maildir, tmpPath, newPath);
    else await renameIntoNew(maildir, tmpPath, newPath, inline);
  } catch (error: unknown) {
    try {
      file?.close();
    } catch {
      // Already closed or unusable: the removal below is what matters.
    }
    // Only a file this call created: one of the same name it could not open
    // is not ours to remove.
    if (created) {
      try {
        await Deno.remove(tmpPath);
      } catch {
        // Already renamed, or cannot be removed: the original error is the one to report.
      }
    }
    throw error;
  }
  // The rename is durable only once new/ itself is fsynced. If this fails the
  // message is already visible in new/; the error makes the caller retry, and
  // the retry finds new/<uniqueName> and reports a duplicate.
  if (!later) {
    await syncDirectory(`${maildir}/new`);
    return { path: newPath, duplicate: false };
  }
  // Until this fsync is done, the file synced in tmp/ under its pending name
  // is what a crash leaves, and recoverMaildirs finishes the rename.
  // It starts a little later (syncDirectorySoon): the 250 goes out first.
  const nameSynced = syncDirectorySoon(`${maildir}/new`);
  nameSynced.catch(() => {}); // the caller may not look
  return { path: newPath, duplicate: false, nameSynced };
}
