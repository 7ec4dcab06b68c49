/**
 * The `admin` section: the HTTP listener for `/metrics`, `/healthz` and
 * `/readyz`. Off when absent.
 *
 * @module
 */

import { ADMIN_KEYS } from "./keys.ts";
import { type Checker, describe } from "./checker.ts";
import { ipVersion } from "../net/ip.ts";
import { type AdminConfig, DEFAULT_ADMIN } from "./types.ts";

/**
 * `admin: { address, port }`: `null` when absent; `admin:` alone means the
 * defaults (127.0.0.1:9025).
 *
 * @param c Where problems go.
 * @param value The YAML value.
 * @returns The admin listener, or `null` when off.
 */
export function checkAdmin(c: Checker, value: unknown): AdminConfig | null {
  if (value === undefined) return null;
  const admin = c.section(value, "admin", ADMIN_KEYS);
  let address = DEFAULT_ADMIN.address;
  if (admin.address !== undefined) {
    if (typeof admin.address === "string" && ipVersion(admin.address) !== 0) {
      address = admin.address;
    } else {
      c.report(
        "admin.address",
        `expected an IP address like 127.0.0.1 or ::1, found ${describe(admin.address)}`,
      );
    }
  }
  let port = DEFAULT_ADMIN.port;
  if (admin.port !== undefined) {
    if (
      typeof admin.port === "number" && Number.isInteger(admin.port) && admin.port >= 0 &&
      admin.port <= 65535
    ) {
      port = admin.port;
    } else {
      c.report(
        "admin.port",
        `expected a port number from 0 to 65535, found ${describe(admin.port)}`,
      );
    }
  }
  return { address, port };
}
