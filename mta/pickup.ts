/**
 * Local submission, and the data directory the server owns alone.
 *
 * Local users hand messages to the running server through a Unix-domain
 * socket, `<data_dir>/public/submit.sock` (like Postfix's postdrop and
 * pickup), instead of opening the store with their own uid: files in
 * `data_dir` always keep the server's owner. `data_dir` is `0711` (anyone
 * may pass through to `public/`, nobody else may list it), `public/` is
 * `0755`, the socket `0666`; the store and the spool stay owner-only.
 *
 * One server per data directory: `<data_dir>/tern.pid` holds the pid of the
 * server under an exclusive lock. The lock, not the file, decides: a server
 * killed with SIGKILL leaves the file, and the kernel drops its lock.
 *
 * @module
 */

import { join } from "node:path";
import type { Config } from "../config/schema.ts";
import type { Logger } from "../log/logger.ts";
import { messagesAccepted } from "../metrics/tern.ts";
import type { DeliveryLoop } from "../queue/delivery_loop.ts";
import type { Queue } from "../queue/queue.ts";
import type { Envelope } from "../smtp/envelope.ts";
import { signerOf } from "./dkim_signer.ts";
import { formatDate } from "../smtp/received.ts";
import { queuedReply, REPLIES, type Reply } from "../smtp/reply.ts";
import {
  type ConnectionInfo,
  type MessageSink,
  type ServerLogEvent,
  SmtpServer,
} from "../smtp/server.ts";
import { expandRecipients } from "./intake.ts";
import { checkRecipient } from "./policy.ts";
import { QUEUE_FILE } from "./mta.ts";

/** The local submission socket, relative to `data_dir`. */
export const PICKUP_SOCKET = join("public", "submit.sock");
/** The lock file naming the server's pid, relative to `data_dir`. */
export const PID_FILE = "tern.pid";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const HAS_OWNERS = Deno.build.os !== "windows";

/**
 * The local submission socket of a configuration.
 *
 * @param config The configuration.
 * @returns `<data_dir>/public/submit.sock`.
 */
export function pickupSocketPath(config: Pick<Config, "dataDir">): string {
  return join(config.dataDir, PICKUP_SOCKET);
}

/** A data directory that cannot be used as it is; the message names the fix. */
export class DataDirError extends Error {
  /**
   * Makes the error.
   *
   * @param message One line.
   */
  constructor(message: string) {
    super(message);
    this.name = "DataDirError";
  }
}

/**
 * A user's login name from the password database, or `uid N` when it has
 * none (Deno has no getpwuid).
 *
 * @param uid The user id.
 * @returns The name.
 */
export function userName(uid: number): string {
  try {
    for (const line of Deno.readTextFileSync("/etc/passwd").split("\n")) {
      const [name, , id] = line.split(":");
      if (name && id === String(uid)) return name;
    }
  } catch {
    // no password database to read
  }
  return `uid ${uid}`;
}

/** The owner of a path, or null when it does not exist. */
async function ownerOf(path: string): Promise<number | null> {
  try {
    return (await Deno.lstat(path)).uid;
  } catch (error: unknown) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

/**
 * Checks that the store, its spool and `data_dir` itself belong to the user
 * the server runs as. A file of someone else's there (a CLI run as root
 * before the first start, say) would make some messages fail with 451 later;
 * better one clear line now.
 *
 * @param config The configuration.
 * @throws {DataDirError} Naming the first foreign file and the `chown` that fixes it.
 */
export async function checkDataDirOwner(config: Pick<Config, "dataDir">): Promise<void> {
  const uid = Deno.uid();
  if (!HAS_OWNERS || uid === null) return;
  const store = join(config.dataDir, QUEUE_FILE);
  const spool = `${store}-spool`;
  const paths = [config.dataDir, store, `${store}-wal`, `${store}-shm`, spool];
  try {
    let n = 0;
    for await (const entry of Deno.readDir(spool)) {
      paths.push(join(spool, entry.name));
      if (++n >= 1000) break;
    }
  } catch {
    // no spool yet, or not ours to read: the spool itself is checked below
  }
  for (const path of paths) {
    const owner = await ownerOf(path);
    if (owner === null || owner === uid) continue;
    const me = userName(uid);
    throw new DataDirError(
      `${path} belongs to ${userName(owner)}, but tern runs as ${me}: ` +
        `run "chown -R ${me} ${config.dataDir}" (or start tern as ${userName(owner)})`,
    );
  }
}

/**
 * Makes `data_dir` (`0711`) and its `public/` folder (`0755`): traversable,
 * so local users reach the socket, but not listable.
 *
 * @param dataDir The data directory.
 */
export async function prepareDataDir(dataDir: string): Promise<void> {
  await Deno.mkdir(dataDir, { recursive: true, mode: 0o711 });
  const pub = join(dataDir, "public");
  await Deno.mkdir(pub, { recursive: true, mode: 0o755 });
  if (HAS_OWNERS) {
    await Deno.chmod(dataDir, 0o711);
    await Deno.chmod(pub, 0o755);
  }
}

/** The lock that makes a server the only one on its data directory. */
export interface DataDirLock {
  /** Drops the lock (the pid file stays; the next server overwrites it). */
  release(): void;
}

/**
 * Takes `<data_dir>/tern.pid` with an exclusive lock and writes our pid
 * into it.
 *
 * @param dataDir The data directory (it exists).
 * @returns The lock; release it when the server stops.
 * @throws {DataDirError} When another process holds it, naming its pid.
 */
export async function lockDataDir(dataDir: string): Promise<DataDirLock> {
  const path = join(dataDir, PID_FILE);
  // Not truncated before the lock is ours: the file may be the running server's.
  const file = await Deno.open(path, { read: true, write: true, create: true, mode: 0o644 });
  let locked: boolean;
  try {
    locked = await file.tryLock(true);
  } catch (error: unknown) {
    file.close();
    throw error;
  }
  if (!locked) {
    let pid = "";
    try {
      const buffer = new Uint8Array(32);
      const n = (await file.read(buffer)) ?? 0;
      pid = decoder.decode(buffer.subarray(0, n)).trim();
    } finally {
      file.close();
    }
    throw new DataDirError(
      `another tern serve${
        /^\d+$/.test(pid) ? ` (pid ${pid})` : ""
      } is already running on ${dataDir}; stop it first, or give this one another data_dir`,
    );
  }
  await file.truncate(0);
  await file.write(encoder.encode(`${Deno.pid}\n`));
  return {
    release() {
      try {
        file.close(); // closing drops the lock
      } catch {
        // already closed
      }
    },
  };
}

/** What {@linkcode startPickup} needs. */
export interface PickupOptions {
  /** The configuration. */
  readonly config: Config;
  /** Where accepted messages go. */
  readonly queue: Queue;
  /** Where `message.accepted` lines go. */
  readonly logger: Logger;
  /** Takes a committed message for delivery at once. */
  readonly loop: Pick<DeliveryLoop, "wake">;
  /** The server's events (for logs and traces). */
  readonly onEvent?: (event: ServerLogEvent) => void;
}

/**
 * Listens on the local submission socket. Whoever reaches the socket is a
 * local user: like a trusted client, it may send to any domain, and as any
 * sender, as sendmail lets local users (`-f`). The client introduces itself
 * with its login name in EHLO; without SO_PEERCRED (which Deno does not
 * expose) that name cannot be verified, so the `Received:` field and the log
 * record it as claimed.
 *
 * A socket that cannot be made (a path longer than the system allows, say)
 * is logged as `pickup.unavailable`, and the server runs without it: only the
 * store's owner can then submit, by writing the store directly.
 *
 * @param options Configuration, queue, logger, delivery loop.
 * @returns The listening server (close it with the others), or `null`.
 */
export async function startPickup(options: PickupOptions): Promise<SmtpServer | null> {
  const { config } = options;
  const path = pickupSocketPath(config);
  // The lock is ours: a socket file left here is a dead server's.
  await Deno.remove(path).catch(() => {});
  const server = new SmtpServer({
    hostname: config.hostname,
    address: "",
    port: 0,
    path,
    maxMessageSize: config.limits.maxMessageSize,
    maxRecipients: config.limits.maxRecipients,
    maxConnections: config.limits.maxConnections,
    // Every local client has the same (empty) address: one budget for all.
    maxConnectionsPerIp: config.limits.maxConnections,
    commandTimeout: config.limits.commandTimeout,
    dataTimeout: config.limits.dataTimeout,
    maxErrors: config.limits.maxBadCommands,
    // The watchdog probes over TCP; a Unix socket does not hit EMFILE on its own.
    watchdogInterval: 0,
    authMechanisms: [],
    handlers: pickupHandlers(options),
    ...(options.onEvent === undefined ? {} : { onEvent: options.onEvent }),
  });
  try {
    await server.listen();
    if (HAS_OWNERS) await Deno.chmod(path, 0o666);
  } catch (error: unknown) {
    await server.close(0);
    options.logger.log("warn", "pickup.unavailable", undefined, {
      path,
      error: error instanceof Error ? error.message : String(error),
    });
    return null;
  }
  options.logger.log("info", "server.listening", undefined, { path, mode: "pickup" });
  return server;
}

/** Who the client says it is: its EHLO name, which the CLI sets to the login name. */
function claimedLogin(connection: ConnectionInfo): string {
  return connection.clientName.replace(/[^A-Za-z0-9._-]/g, "?").slice(0, 64) || "unknown";
}

/** The handlers of the local submission socket. */
function pickupHandlers(options: PickupOptions) {
  const { config, queue, logger } = options;
  const local = (connection: ConnectionInfo) => ({
    mode: "mx" as const,
    address: "local",
    // Treated like an authenticated client: local users may relay.
    authenticatedAs: `${claimedLogin(connection)}@local`,
  });
  return {
    sender: (): Reply => REPLIES.senderOk,
    recipient: (forwardPath: string, _parameters: unknown, connection: ConnectionInfo): Reply =>
      checkRecipient({ ...local(connection), forwardPath }, config),
    async open(envelope: Envelope, connection: ConnectionInfo): Promise<MessageSink | Reply> {
      const recipients = expandRecipients(config, envelope.forwardPaths, envelope.recipientDsn);
      if (recipients.length === 0) return REPLIES.noValidRecipients;
      const arrival = Date.now();
      const incoming = await queue.receive({
        envelope,
        recipients,
        clientAddress: "local",
        now: arrival,
      });
      const login = claimedLogin(connection);
      // RFC 5321 §4.4: the trace field of a local submission has no "from" host.
      await incoming.write(encoder.encode(
        `Received: by ${config.hostname} (tern, local submission by ${login}, unverified)\r\n` +
          `\twith ${connection.isExtended ? "ESMTP" : "SMTP"} id ${incoming.queueId}; ${
            formatDate(new Date(arrival))
          }\r\n`,
      ));
      // RFC 6376 §5: local submissions are ours to sign, as authenticated ones are.
      const signing = signerOf(config)?.begin() ?? null;
      return {
        write: (chunk) => {
          signing?.update(chunk);
          return incoming.write(chunk);
        },
        abort: () => incoming.abort(),
        async commit(): Promise<Reply> {
          const signature = signing?.finish() ?? "";
          await incoming.commit(signature === "" ? {} : { header: encoder.encode(signature) });
          messagesAccepted.inc();
          logger.log("info", "message.accepted", incoming.queueId, {
            from: `<${envelope.reversePath}>`,
            size: incoming.size,
            nrcpt: recipients.length,
            client: "local",
            listener: "pickup",
            login,
          });
          options.loop.wake();
          return queuedReply(incoming.queueId);
        },
      };
    },
  };
}
