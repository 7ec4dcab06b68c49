/**
 * The configuration of tern: {@linkcode Config}, complete and frozen, as
 * {@linkcode loadConfig} reads it from `tern.yaml` and
 * {@linkcode validateConfig} checks it (every problem a
 * {@linkcode ConfigError}); also printing it, and making the password hashes
 * its `accounts` hold.
 *
 * ```ts
 * import { formatConfig, validateConfig } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * const config = validateConfig({ hostname: "mx.example.test" }, { file: null, baseDir: "/srv/tern" });
 * assert.deepEqual(config.listeners, [{ address: "127.0.0.1", port: 2525, mode: "mx" }]);
 * assert.match(formatConfig(config), /^hostname: mx\.example\.test$/m);
 * ```
 *
 * @module
 */

export {
  type AccountConfig,
  type AcmeChallenge,
  type AcmeConfig,
  type AdminConfig,
  type AuthenticationConfig,
  type Config,
  DEFAULT_DATA_DIR,
  DEFAULT_LIMITS,
  DEFAULT_LISTENERS,
  DEFAULT_LOCAL_DOMAINS,
  DEFAULT_LOG,
  DEFAULT_MAIL_ROOT_NAME,
  DEFAULT_QUEUE,
  DEFAULT_ROUTES,
  DEFAULT_SUBMISSION,
  DEFAULT_TRUSTED_NETWORKS,
  defaultHostname,
  type DkimAlgorithm,
  type DkimConfig,
  type DkimKey,
  type DkimKeyConfig,
  type DnsblConfig,
  FALLBACK_HOSTNAME,
  type ListenerConfig,
  type ListenerMode,
  type LogFormatName,
  type LogLevelName,
  type MilterConfig,
  type MtaStsPolicyConfig,
  type RoutePolicy,
  type RouteTls,
  type SocketEndpoint,
  type SrsConfig,
  type TlsConfig,
  type TlsRptConfig,
  validateConfig,
  type ValidateConfigOptions,
} from "./schema.ts";
export { ConfigError, type ConfigProblem, formatProblem } from "./errors.ts";
export { formatDuration, formatSize, parseDuration, parseSize } from "./duration.ts";
export { DEFAULT_CONFIG_FILE, loadConfig, type LoadConfigOptions } from "./load.ts";
export { formatConfig } from "./format.ts";
export {
  HashingGate,
  type HashingGateOptions,
  hashPassword,
  isPasswordHash,
  PasswordCheckBusyError,
  verifyPassword,
  type VerifyPasswordOptions,
} from "./password.ts";
