/**
 * The MTA assembled: the queue store, the SMTP listeners and the delivery
 * loop, started and stopped together. `tern serve` runs one; tests start one
 * in-process with a temporary configuration.
 *
 * @module
 */

import { join } from "node:path";
import type { Config, ListenerMode } from "../config/schema.ts";
import type { Logger } from "../log/logger.ts";
import { LocalDelivery } from "../mda/local_delivery.ts";
import { DeliveryLoop } from "../queue/delivery_loop.ts";
import { KvQueue } from "../queue/kv_queue.ts";
import { type ServerLogEvent, SmtpServer } from "../smtp/server.ts";
import { createDeliver } from "./delivery.ts";
import { createIntake } from "./intake.ts";

/** The file of the queue store inside `data_dir`. */
export const QUEUE_FILE = "queue.sqlite3";

/**
 * The queue store's path for a configuration.
 *
 * @param config The configuration.
 * @returns `<data_dir>/queue.sqlite3`.
 */
export function queuePath(config: Config): string {
  return join(config.dataDir, QUEUE_FILE);
}

/** A listener that is listening. */
export interface BoundListener {
  /** What it is for. */
  readonly mode: ListenerMode;
  /** The address bound. */
  readonly address: string;
  /** The port bound (the real one when 0 was asked). */
  readonly port: number;
}

/** Options of {@linkcode Mta.start}. */
export interface MtaOptions {
  /** Where log lines go. */
  readonly logger: Logger;
  /** Deliveries at once. @default {8} */
  readonly concurrency?: number;
  /** How often the store is polled for due work, ms (work written by other processes). @default {500} */
  readonly pollMs?: number;
}

/** Thrown when a listener cannot bind; the message is one line for the CLI. */
export class ListenError extends Error {
  /**
   * Makes the error.
   *
   * @param message What failed.
   * @param options The cause.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ListenError";
  }
}

/** A running MTA. */
export class Mta {
  /** The listeners, as bound. */
  readonly listeners: readonly BoundListener[];
  /** The queue store. */
  readonly queue: KvQueue;
  #servers: SmtpServer[];
  #loop: DeliveryLoop;

  private constructor(
    listeners: BoundListener[],
    queue: KvQueue,
    servers: SmtpServer[],
    loop: DeliveryLoop,
  ) {
    this.listeners = listeners;
    this.queue = queue;
    this.#servers = servers;
    this.#loop = loop;
  }

  /**
   * Opens the queue, repairs what a crash left, binds every listener and
   * starts delivering.
   *
   * @param config The configuration.
   * @param options Logger and tuning.
   * @returns The running MTA.
   * @throws {ListenError} When a listener cannot bind.
   */
  static async start(config: Config, options: MtaOptions): Promise<Mta> {
    const { logger } = options;
    await Deno.mkdir(config.dataDir, { recursive: true });
    const queue = await KvQueue.open(queuePath(config), {
      retry: config.queue.retry,
      maxAge: config.queue.maxAge,
      logger,
    });
    await queue.recover(Date.now());
    const local = new LocalDelivery({
      mailRoot: config.mailRoot,
      hostname: config.hostname,
      logger,
    });
    const loop = new DeliveryLoop(queue, {
      deliver: createDeliver({ config, queue, local, logger }),
      concurrency: options.concurrency ?? 8,
      pollMs: options.pollMs ?? 500,
      logger,
    });
    const servers: SmtpServer[] = [];
    const bound: BoundListener[] = [];
    try {
      for (const listener of config.listeners) {
        const server = new SmtpServer({
          hostname: config.hostname,
          address: listener.address,
          port: listener.port,
          maxMessageSize: config.limits.maxMessageSize,
          maxRecipients: config.limits.maxRecipients,
          maxConnections: config.limits.maxConnections,
          maxConnectionsPerIp: config.limits.maxConnectionsPerIp,
          commandTimeout: config.limits.commandTimeout,
          dataTimeout: config.limits.dataTimeout,
          handlers: createIntake({
            config,
            mode: listener.mode,
            queue,
            logger,
            onQueued: () => loop.wake(),
          }),
          onEvent: (event) => logServerEvent(logger, event),
        });
        let address;
        try {
          address = await server.listen();
        } catch (error: unknown) {
          const why = error instanceof Error && "code" in error && error.code === "EADDRINUSE"
            ? "address already in use"
            : error instanceof Error
            ? error.message
            : String(error);
          throw new ListenError(`cannot listen on ${listener.address}:${listener.port}: ${why}`, {
            cause: error,
          });
        }
        servers.push(server);
        bound.push({ mode: listener.mode, address: address.address, port: address.port });
        logger.log("info", "server.listening", undefined, {
          address: address.address,
          port: address.port,
          mode: listener.mode,
        });
      }
    } catch (error: unknown) {
      await Promise.all(servers.map((s) => s.close(0)));
      await queue.close();
      throw error;
    }
    loop.start();
    return new Mta(bound, queue, servers, loop);
  }

  /**
   * Stops: listeners first (transactions in flight may finish within
   * `graceMs`), then deliveries in flight, then the store.
   *
   * @param graceMs How long transactions in flight may take.
   */
  async stop(graceMs = 10_000): Promise<void> {
    await Promise.all(this.#servers.map((s) => s.close(graceMs)));
    await this.#loop.stop();
    await this.queue.close();
  }
}

function logServerEvent(logger: Logger, event: ServerLogEvent): void {
  switch (event.type) {
    case "connect":
      logger.log("debug", "session.connect", undefined, {
        session: event.connection.id,
        client: event.connection.remoteAddress,
        port: event.connection.localPort,
      });
      break;
    case "disconnect":
      logger.log("debug", "session.disconnect", undefined, {
        session: event.connection.id,
        client: event.connection.remoteAddress,
        reason: event.reason,
      });
      break;
    case "refused":
      logger.log("warn", "session.refused", undefined, {
        client: event.remoteAddress,
        reason: event.reason,
      });
      break;
    case "error":
      logger.log("error", "session.error", undefined, {
        session: event.connection.id,
        client: event.connection.remoteAddress,
        error: event.error instanceof Error ? event.error.message : String(event.error),
      });
      break;
    case "command":
    case "reply":
      break;
  }
}
