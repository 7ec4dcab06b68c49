/**
 * The configuration in force, swapped whole on reload (SIGHUP, `tern
 * reload`). The parts of the MTA that answer per command or per delivery
 * (intake, policy, delivery, relay) read {@linkcode ConfigSource.current}
 * each time; the new file is validated once, before the swap, never per
 * message. What is bound at start (sockets, the store, the resolver, the
 * connection pools) keeps its start-up value until a restart: those keys
 * are named by {@linkcode compareConfigs} and left as they were.
 *
 * @module
 */

import type { Config } from "../config/schema.ts";
import {
  createLogger,
  type Logger,
  type LoggerOptions,
  type LogLevel,
  type LogSettings,
} from "../log/logger.ts";

/** Where the configuration in force is read: one reference, replaced on reload. */
export interface ConfigSource {
  /** The configuration in force now. */
  readonly current: Config;
}

/** A {@linkcode ConfigSource} that a reload can swap. */
export class LiveConfig implements ConfigSource {
  #current: Config;

  /**
   * Holds a configuration.
   *
   * @param config The configuration at start.
   */
  constructor(config: Config) {
    this.#current = config;
  }

  /** The configuration in force now. */
  get current(): Config {
    return this.#current;
  }

  /**
   * Puts another configuration in force; readers see it from their next read.
   *
   * @param config A validated configuration (from `loadConfig`).
   */
  replace(config: Config): void {
    this.#current = config;
  }
}

/**
 * The configuration a component reads now: itself when it was given a
 * plain `Config`, the one in force when it was given a source.
 *
 * @param source A configuration or a source of one.
 * @returns The configuration to use for this command or delivery.
 */
export function configOf(source: Config | ConfigSource): Config {
  return "current" in source ? source.current : source;
}

/** What a reload would change. */
export interface ConfigChange {
  /** Top-level keys whose value differs, as written in tern.yaml (`accounts`, `limits`). */
  readonly changed: string[];
  /**
   * Keys that differ but are bound at start, so they wait for a restart
   * (`listeners`, `data_dir`, `limits.auth_lockout`).
   */
  readonly restartNeeded: string[];
}

/** The YAML name of a Config property (`dataDir` → `data_dir`). */
function yamlName(key: string): string {
  return key.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`);
}

function isSame(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * Parts of the configuration used once at start, by section: `true` for a
 * whole top-level key, else the sub-keys. Sockets and the store are opened
 * once; the resolver, the relay's connection pools and the AUTH limiter are
 * built once with these values.
 */
const BOUND_AT_START: Readonly<Record<string, true | readonly string[]>> = {
  dataDir: true,
  listeners: true,
  mailRoot: true,
  dns: true,
  mtaStsPolicy: true, // its HTTPS listener is bound at start
  queue: ["retry", "maxAge"],
  relay: ["maxConnections", "maxConnectionsPerDestination"],
  limits: ["maxAuthFailures", "authFailureDelay", "authLockout"],
};

/**
 * Compares the configuration in force with a new one.
 *
 * TLS counts as bound at start when the certificate appears, disappears or
 * moves to other files (the listeners were set up with or without it); the
 * same files are simply read again.
 *
 * @param old The configuration in force.
 * @param next The new one, validated.
 * @returns The top-level keys that differ, and those waiting for a restart.
 *
 * @example A new account, and a listener moved
 * ```ts
 * import { compareConfigs } from "./live_config.ts";
 * import { validateConfig } from "../config/schema.ts";
 * const at = { file: null, baseDir: "/srv/tern" };
 * const old = validateConfig({ hostname: "mx.example.test" }, at);
 * const next = validateConfig({
 *   hostname: "mx.example.test",
 *   accounts: { "alice@localhost": {} },
 *   listeners: [{ address: "127.0.0.1", port: 25 }],
 * }, at);
 * console.log(compareConfigs(old, next));
 * // { changed: ["listeners", "accounts"], restartNeeded: ["listeners"] }
 * ```
 */
export function compareConfigs(old: Config, next: Config): ConfigChange {
  const changed: string[] = [];
  const restartNeeded: string[] = [];
  for (const key of Object.keys(next) as (keyof Config)[]) {
    if (key === "file" || isSame(old[key], next[key])) continue;
    changed.push(yamlName(key));
    const bound = BOUND_AT_START[key];
    if (bound === true) restartNeeded.push(yamlName(key));
    else if (bound !== undefined) {
      const before = old[key] as unknown as Record<string, unknown>;
      const after = next[key] as unknown as Record<string, unknown>;
      for (const sub of bound) {
        if (!isSame(before[sub], after[sub])) {
          restartNeeded.push(`${yamlName(key)}.${yamlName(sub)}`);
        }
      }
    }
  }
  if (!isSame(old.tls, next.tls)) restartNeeded.push("tls");
  return { changed, restartNeeded };
}

/**
 * The configuration to put in force: the new one, with what is bound at
 * start kept as it was, so nothing reads a value the running server does
 * not actually use.
 *
 * @param old The configuration in force.
 * @param next The new one, validated.
 * @returns A frozen configuration.
 */
export function applicableConfig(old: Config, next: Config): Config {
  const merged: Record<string, unknown> = { ...next };
  for (const [key, bound] of Object.entries(BOUND_AT_START)) {
    const before = (old as unknown as Record<string, unknown>)[key];
    if (bound === true) merged[key] = before;
    else {
      const section: Record<string, unknown> = { ...(merged[key] as Record<string, unknown>) };
      for (const sub of bound) section[sub] = (before as Record<string, unknown>)[sub];
      merged[key] = Object.freeze(section);
    }
  }
  if (!isSame(old.tls, next.tls)) merged.tls = old.tls;
  return Object.freeze(merged) as unknown as Config;
}

/** A logger to standard error: its level and format. */
type StderrLoggerOptions = Pick<LoggerOptions, "level" | "format">;

/**
 * A logger whose level and format follow the configuration: a reload
 * replaces the logger behind it, and everything holding this one writes
 * through the new one from then on.
 */
export class ReloadableLogger implements Logger {
  #inner: Logger;

  /**
   * Makes the first logger.
   *
   * @param options Level and format.
   */
  constructor(options: StderrLoggerOptions) {
    this.#inner = createLogger(options);
  }

  /** The least severe level written now. */
  get level(): LogLevel {
    return this.#inner.level ?? "debug";
  }

  /** The settings in force (its lines go to standard error). */
  get stderr(): LogSettings {
    return this.#inner.stderr!;
  }

  /**
   * Writes one event through the logger in force.
   *
   * @param args As {@linkcode Logger.log}.
   */
  log(
    level: Parameters<Logger["log"]>[0],
    event: Parameters<Logger["log"]>[1],
    queueId?: Parameters<Logger["log"]>[2],
    fields?: Parameters<Logger["log"]>[3],
  ): void {
    // Plain parameters, not a rest spread: this runs for every log call.
    this.#inner.log(level, event, queueId, fields);
  }

  /**
   * Switches to a new level and format.
   *
   * @param options Level and format.
   */
  configure(options: StderrLoggerOptions): void {
    this.#inner = createLogger(options);
  }
}
