/**
 * The configuration of tern: its type, its defaults and its validator.
 * YAML keys are snake_case (as users write them); the loaded object is
 * camelCase, complete (defaults applied), with durations in milliseconds,
 * sizes in bytes and paths absolute. Nothing outside config/ sees `"5m"`.
 *
 * The parts live beside it: `types.ts` (the `Config` type and defaults),
 * `syntax.ts` (value syntax), `keys.ts` (YAML key names), `checker.ts` (the
 * problem collector), and one `check_*.ts` per group of sections. Everything
 * is re-exported here, so `schema.ts` stays the one import.
 *
 * @module
 */

import { basename, join, resolve } from "node:path";
import { Checker, describe, isMapping } from "./checker.ts";
import {
  checkAccounts,
  checkAliases,
  checkAliasGraph,
  checkLocalDomains,
} from "./check_directory.ts";
import { checkDns, checkLimits, checkLog, checkQueue, checkSubmission } from "./check_limits.ts";
import { checkHostname, checkListeners, checkTls } from "./check_listeners.ts";
import { checkRelay, checkSrs } from "./check_relay.ts";
import { checkAdmin } from "./check_admin.ts";
import { checkDnsbl } from "./check_dnsbl.ts";
import { checkWorkers } from "./check_workers.ts";
import { checkMilters } from "./check_milters.ts";
import { checkAuthentication } from "./check_authentication.ts";
import { checkDkim } from "./check_dkim.ts";
import { checkMailboxTransport, checkSubmissionAuth } from "./check_mailbox_transport.ts";
import { checkStore } from "./check_store.ts";
import { checkTlsPolicy } from "./check_tls_policy.ts";
import { checkTlsRpt } from "./check_tls_rpt.ts";
import { checkMtaStsPolicy } from "./check_mta_sts_policy.ts";
import { ConfigError } from "./errors.ts";
import { TOP_KEYS } from "./keys.ts";
import { type Config, DEFAULT_DATA_DIR, DEFAULT_MAIL_ROOT_NAME } from "./types.ts";

export * from "./types.ts";
export { CONFIG_KEYS } from "./keys.ts";

/** Freezes an object and everything reachable from it. */
function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const inner of Object.values(value)) deepFreeze(inner);
  }
  return value;
}

/** Options of {@linkcode validateConfig}. */
export interface ValidateConfigOptions {
  /**
   * The config file as the user named it (`tern.yaml`, `../etc/tern.yaml`),
   * used in problem lines; `null` when there is no file (problems then say
   * `(defaults)`). `Config.file` is this name's last part joined to `baseDir`.
   */
  file: string | null;
  /**
   * The directory relative paths are resolved against: the config file's own
   * directory, or the working directory when there is no file. Absolute.
   */
  baseDir: string;
  /**
   * Whether to read secret files (`relay.routes.*.auth.password_file`,
   * `srs.secret_file`). Only the server needs them; a CLI command run by
   * another user, who may not read them, leaves them out (the secrets are
   * then empty strings). @default {true}
   */
  readSecrets?: boolean;
}

/**
 * Checks a configuration as read from YAML and completes it: defaults for what
 * is left out, durations in ms, sizes in bytes, paths absolute, addresses and
 * domains in lower case. Every problem is collected before throwing, so the
 * user sees them all at once.
 *
 * `null` or `undefined` (an empty file) means all defaults. Within the file, a
 * section left empty (`limits:` alone) means that section's defaults, and an
 * account left empty (`bob@example.test:`) means one without a password.
 *
 * @param raw The parsed YAML: plain objects, lists, strings, numbers.
 * @param options Where it came from, for messages and for relative paths.
 * @returns The complete configuration, deeply frozen.
 * @throws {ConfigError} With every problem found.
 *
 * @example Complete a small configuration
 * ```ts
 * import { validateConfig } from "./schema.ts";
 * import assert from "node:assert/strict";
 *
 * const config = validateConfig(
 *   { hostname: "mx.example.test", local_domains: ["Example.test"], limits: { max_message_size: "10M" } },
 *   { file: "tern.yaml", baseDir: "/srv/tern" },
 * );
 * assert.equal(config.file, "/srv/tern/tern.yaml");
 * assert.deepEqual(config.localDomains, ["example.test"]);
 * assert.equal(config.limits.maxMessageSize, 10 * 1024 * 1024);
 * assert.equal(config.queue.maxAge, 5 * 24 * 3600 * 1000);
 * assert.equal(config.mailRoot, "/srv/tern/data/mail");
 * assert.ok(Object.isFrozen(config.limits));
 * ```
 *
 * @example Report every problem
 * ```ts
 * import { validateConfig } from "./schema.ts";
 * import { ConfigError } from "./errors.ts";
 * import assert from "node:assert/strict";
 *
 * try {
 *   validateConfig(
 *     { hostname: "mx.example.test", limits: { max_recipient: 10, max_connections: "lots" } },
 *     { file: "tern.yaml", baseDir: "/srv/tern" },
 *   );
 *   assert.fail("should have thrown");
 * } catch (error: unknown) {
 *   assert.ok(error instanceof ConfigError);
 *   assert.deepEqual(error.message.split("\n"), [
 *     'tern.yaml: limits.max_recipient: unknown key (did you mean "max_recipients"?)',
 *     'tern.yaml: limits.max_connections: expected a positive integer, found "lots"',
 *   ]);
 * }
 * ```
 */
export function validateConfig(raw: unknown, options: ValidateConfigOptions): Config {
  const c = new Checker(options.file ?? "(defaults)");
  c.readSecrets = options.readSecrets ?? true;
  const { baseDir } = options;
  let top: Record<string, unknown> = {};
  if (isMapping(raw)) {
    top = raw;
    c.unknownKeys(top, "", TOP_KEYS);
  } else if (raw !== null && raw !== undefined) {
    c.report("", `expected a mapping of settings (key: value lines), found ${describe(raw)}`);
  }

  const hostname = checkHostname(c, top.hostname);
  const dataDir = top.data_dir === undefined
    ? resolve(baseDir, DEFAULT_DATA_DIR)
    : c.path(top.data_dir, "data_dir", baseDir, "a directory path") ??
      resolve(baseDir, DEFAULT_DATA_DIR);
  const tls = checkTls(c, top.tls, baseDir, { dataDir, hostname });
  // When tls is there but broken, that is the problem to report, not the listeners that need it.
  const hasTls = tls !== null || (top.tls !== undefined && top.tls !== null);
  const listeners = checkListeners(c, top.listeners, hasTls);
  const localDomains = checkLocalDomains(c, top.local_domains);
  const accounts = checkAccounts(c, top.accounts, localDomains);
  const aliases = checkAliases(c, top.aliases, localDomains, accounts);
  // Only once every entry is valid: a dropped entry would show up as a dangling target.
  const isDirectoryValid = !c.problems.some((p) =>
    /^(local_domains|accounts|aliases)\b/.test(p.keyPath)
  );
  if (isDirectoryValid) checkAliasGraph(c, localDomains, accounts, aliases);
  const mailRoot = top.mail_root === undefined
    ? join(dataDir, DEFAULT_MAIL_ROOT_NAME)
    : c.path(top.mail_root, "mail_root", baseDir, "a directory path") ??
      join(dataDir, DEFAULT_MAIL_ROOT_NAME);
  const relay = {
    ...checkRelay(c, top.relay, baseDir),
    ...checkTlsPolicy(c, top.relay, baseDir),
    ...checkTlsRpt(c, top.relay),
  };
  const dns = checkDns(c, top.dns);
  const queue = { ...checkQueue(c, top.queue), ...checkStore(c, top.queue) };
  const limits = checkLimits(c, top.limits);
  const log = checkLog(c, top.log);
  const submission = {
    ...checkSubmission(c, top.submission),
    ...checkSubmissionAuth(c, top.submission),
  };
  const mailboxTransport = checkMailboxTransport(c, top.mailbox_transport);
  const srs = checkSrs(c, top.srs, baseDir, hostname, localDomains);
  const admin = checkAdmin(c, top.admin);
  const dnsbl = checkDnsbl(c, top.dnsbl);
  const milters = checkMilters(c, top.milters);
  const authentication = checkAuthentication(c, top.authentication, hostname);
  const dkim = checkDkim(c, top.dkim, baseDir);
  const mtaStsPolicy = checkMtaStsPolicy(c, top.mta_sts_policy, hostname, hasTls);
  const workers = checkWorkers(c, top.workers);

  if (c.problems.length > 0) throw new ConfigError(c.problems);
  const file = options.file === null ? null : resolve(baseDir, basename(options.file));
  const config: Config = {
    file,
    hostname,
    dataDir,
    listeners,
    tls,
    localDomains,
    accounts,
    aliases,
    mailRoot,
    relay,
    dns,
    queue,
    limits,
    log,
    submission,
    ...(srs === null ? {} : { srs }),
    ...(admin === null ? {} : { admin }),
    ...(dnsbl.length === 0 ? {} : { dnsbl }),
    ...(milters.length === 0 ? {} : { milters }),
    authentication,
    ...(dkim === null ? {} : { dkim }),
    ...(mailboxTransport === null ? {} : { mailboxTransport }),
    ...(mtaStsPolicy === null ? {} : { mtaStsPolicy }),
    workers,
  };
  return deepFreeze(config);
}
