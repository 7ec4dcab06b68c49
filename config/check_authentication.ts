/**
 * Validation of `authentication`: the inbound checks of mx listeners (SPF,
 * DKIM, DMARC) and the name they are reported under.
 *
 * @module
 */

import type { Checker } from "./checker.ts";
import { AUTHENTICATION_KEYS } from "./keys.ts";
import { isDomainName } from "./syntax.ts";
import type { AuthenticationConfig } from "./types.ts";

/**
 * Reads `authentication`; every check is on unless turned off.
 *
 * @param c Where problems go.
 * @param value The raw value.
 * @param hostname The default authserv-id.
 * @returns The settings.
 */
export function checkAuthentication(
  c: Checker,
  value: unknown,
  hostname: string,
): AuthenticationConfig {
  const section = value === undefined || value === null
    ? {}
    : c.section(value, "authentication", AUTHENTICATION_KEYS);
  const flag = (key: "spf" | "dkim" | "dmarc" | "dmarc_reject"): boolean =>
    section[key] === undefined ? true : c.boolean(section[key], `authentication.${key}`) ?? true;
  let authservId = hostname;
  if (section.authserv_id !== undefined) {
    const id = c.string(section.authserv_id, "authentication.authserv_id", "a host name");
    // RFC 8601 §2.5: a token, usually the host name of the server.
    if (id !== undefined && !isDomainName(id)) {
      c.report("authentication.authserv_id", `expected a host name, found "${id}"`);
    } else if (id !== undefined) {
      authservId = id;
    }
  }
  return {
    authservId,
    spf: flag("spf"),
    dkim: flag("dkim"),
    dmarc: flag("dmarc"),
    dmarcReject: flag("dmarc_reject"),
  };
}
