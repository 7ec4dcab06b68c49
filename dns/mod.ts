/**
 * DNS for tern: {@linkcode StubResolver}, a stub resolver that tells a
 * missing domain (bounce) from a DNS failure (defer), which `Deno.resolveDns`
 * cannot, and the MX procedure of RFC 5321 §5.1 with the null MX of RFC 7505.
 *
 * - `resolver.ts`: {@linkcode StubResolver}, UDP with TCP on truncation.
 * - `mx.ts`: {@linkcode resolveMx} and {@linkcode resolveAddresses}.
 * - `message.ts`: the DNS message codec (RFC 1035 §4), no I/O.
 * - `resolv_conf.ts`: reads `/etc/resolv.conf`.
 *
 * @example Route a domain
 * ```ts ignore
 * import { DnsTemporaryError, resolveAddresses, resolveMx, StubResolver } from "./mod.ts";
 * const resolver = new StubResolver({ nameservers: ["127.0.0.1:5353"] });
 * try {
 *   const mx = await resolveMx("example.test", resolver);
 *   if (mx.kind === "hosts") {
 *     for (const host of mx.hosts) console.log(host.name, await resolveAddresses(host.name, resolver));
 *   } else {
 *     console.log("bounce:", mx.kind); // nullmx: 556 5.1.10; nxdomain, noaddress: 5.1.2
 *   }
 * } catch (error: unknown) {
 *   if (error instanceof DnsTemporaryError) console.log("defer:", error.message);
 *   else throw error;
 * }
 * ```
 *
 * @example Decode a reply without any network
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeMessage, encodeMessage } from "./mod.ts";
 * const bytes = encodeMessage({
 *   id: 9,
 *   flags: { qr: true, rcode: 3 },
 *   questions: [{ name: "nowhere.test", type: "MX", class: 1 }],
 * });
 * assert.equal(decodeMessage(bytes).flags.rcode, 3); // NXDOMAIN
 * ```
 *
 * @module
 */

export * from "./resolver.ts";
export * from "./mx.ts";
export * from "./message.ts";
export * from "./resolv_conf.ts";
// Types of other folders that appear in this API, so its documentation is whole.
export {
  LOG_EVENTS,
  type LogEvent,
  type Logger,
  type LogLevel,
  type LogSettings,
  type LogValue,
} from "../log/logger.ts";
