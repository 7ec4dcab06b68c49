/**
 * Validation of `milters`: the content filters asked about each message.
 *
 * @module
 */

import { type Checker, describe, isMapping } from "./checker.ts";
import { LISTENER_MODES, MILTER_DEFAULT_ACTIONS, MILTER_KEYS } from "./keys.ts";
import type { ListenerMode, MilterConfig } from "./types.ts";
import { parseMilterAddress } from "../milter/client.ts";

/** The waits when none is configured, ms (as Postfix's milter_*_timeout). */
const DEFAULTS = { connect: 5_000, command: 30_000, eom: 120_000 } as const;

/**
 * Reads `milters`: a list of addresses (`127.0.0.1:11332`, `unix:/path`) or
 * of mappings `{ address, connect_timeout, command_timeout, eom_timeout,
 * default_action, listeners }`.
 *
 * @param c Where problems go.
 * @param value The raw value.
 * @returns The milters, in order; `[]` when the key is left out.
 */
export function checkMilters(c: Checker, value: unknown): readonly MilterConfig[] {
  if (value === undefined || value === null) return [];
  const items = c.list(value, "milters", 'a list of milter addresses (like "127.0.0.1:11332")');
  if (items === undefined) return [];
  const milters: MilterConfig[] = [];
  items.forEach((item, index) => {
    const milter = checkMilter(c, item, `milters[${index}]`);
    if (milter !== null) milters.push(milter);
  });
  return milters;
}

function checkMilter(c: Checker, item: unknown, path: string): MilterConfig | null {
  if (typeof item === "string") {
    return checkAddress(c, item, path) ? defaults(item) : null;
  }
  if (!isMapping(item)) {
    c.report(path, `expected an address or a mapping { address, ... }, found ${describe(item)}`);
    return null;
  }
  const entry = c.section(item, path, MILTER_KEYS);
  if (entry.address === undefined) {
    c.report(path, 'expected an address (address: "127.0.0.1:11332")');
    return null;
  }
  const address = c.string(entry.address, `${path}.address`, "a milter address");
  if (address === undefined || !checkAddress(c, address, `${path}.address`)) return null;
  const wait = (key: string, fallback: number) =>
    entry[key] === undefined ? fallback : c.duration(entry[key], `${path}.${key}`) ?? fallback;
  const defaultAction = entry.default_action === undefined
    ? "tempfail"
    : c.oneOf(entry.default_action, `${path}.default_action`, MILTER_DEFAULT_ACTIONS) ??
      "tempfail";
  return {
    address,
    connectTimeout: wait("connect_timeout", DEFAULTS.connect),
    commandTimeout: wait("command_timeout", DEFAULTS.command),
    eomTimeout: wait("eom_timeout", DEFAULTS.eom),
    defaultAction,
    listeners: checkModes(c, entry.listeners, `${path}.listeners`),
  };
}

function defaults(address: string): MilterConfig {
  return {
    address,
    connectTimeout: DEFAULTS.connect,
    commandTimeout: DEFAULTS.command,
    eomTimeout: DEFAULTS.eom,
    defaultAction: "tempfail",
    listeners: LISTENER_MODES,
  };
}

function checkModes(c: Checker, value: unknown, path: string): readonly ListenerMode[] {
  if (value === undefined || value === null) return LISTENER_MODES;
  const items = c.list(value, path, "a list of listener modes like [mx, submission]");
  if (items === undefined) return LISTENER_MODES;
  const modes: ListenerMode[] = [];
  items.forEach((mode, i) => {
    const found = c.oneOf(mode, `${path}[${i}]`, LISTENER_MODES);
    if (found !== undefined && !modes.includes(found)) modes.push(found);
  });
  if (items.length === 0) c.report(path, "expected at least one listener mode");
  return modes;
}

function checkAddress(c: Checker, address: string, path: string): boolean {
  const parsed = parseMilterAddress(address);
  if (typeof parsed !== "string") return true;
  c.report(path, parsed);
  return false;
}
