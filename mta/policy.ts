/**
 * Who may send what through tern: the rules of mail submission (RFC 6409)
 * and of relaying, as pure functions of the configuration and the client.
 * The intake asks them at MAIL and at RCPT; tests ask them directly.
 *
 * The rules, and where they come from:
 *
 * - On `submission` and `submissions` listeners, AUTH comes before MAIL
 *   (RFC 6409 §4.3, RFC 8314): `530 5.7.0 Authentication required`.
 * - An authenticated user sends only as one of their own addresses (RFC 6409
 *   §6.1 lets the MSA check the sender): the account address, its `+tag`
 *   forms (RFC 5233), or an alias that leads to the account; and not as the
 *   null sender `<>`, which is for bounces (RFC 5321 §4.5.5). Else
 *   `553 5.7.1`. `submission.sender_must_match: false` turns this off.
 * - A local recipient is taken from anyone (that is what an MX is for); an
 *   unknown one gets `550 5.1.1`, and one whose mailbox could never be a
 *   Maildir (a name too long for the file system) `550 5.1.3` (RFC 3463
 *   X.1.3): refused now, while the client is there to be told, instead of
 *   bounced later to a sender who may be forged (backscatter).
 * - A recipient in another domain is relayed only for an authenticated user
 *   or a client inside `relay.trusted_networks` (CIDR, IPv4 and IPv6, an
 *   IPv4-mapped IPv6 address counting as its IPv4 address). Everyone else
 *   gets `554 5.7.1 Relay access denied`: no open relay, ever. An empty
 *   `trusted_networks` trusts nobody.
 *
 * @module
 */

import type { Config, ListenerMode } from "../config/schema.ts";
import { isMaildirName } from "../mda/maildir.ts";
import { resolveRecipient } from "../mda/recipient.ts";
import type { QueueRecipient } from "../queue/types.ts";
import { REPLIES, type Reply, reply } from "../smtp/reply.ts";
import { srsReverse } from "./srs.ts";
import { type Cidr, cidrContains, isInCidr, parseCidr } from "../net/cidr.ts";
import { formatIp, isIpv4Mapped, parseIp } from "../net/ip.ts";

/**
 * The parts of the configuration the policy reads (a whole `Config` fits).
 * Without `mailRoot`, mailbox names are checked as if the mail root were `/`.
 */
export type PolicyConfig =
  & Pick<Config, "localDomains" | "accounts" | "aliases" | "relay" | "submission">
  & Partial<Pick<Config, "mailRoot" | "srs">>;

/** Who asks: the listener, the client's address, and who it authenticated as. */
export interface PolicyClient {
  /** The listener the client connected to. */
  readonly mode: ListenerMode;
  /** The client's IP address. */
  readonly address: string;
  /** The user AUTH accepted, or `null`. */
  readonly authenticatedAs: string | null;
}

/** A MAIL FROM to judge. */
export interface SenderRequest extends PolicyClient {
  /** The reverse-path, `local@domain`, or `""` for `<>`. */
  readonly reversePath: string;
}

/** A RCPT TO to judge. */
export interface RecipientRequest extends PolicyClient {
  /** The forward-path, `local@domain`, or `Postmaster`. */
  readonly forwardPath: string;
}

// ---------------------------------------------------------------------------
// Addresses and networks: the arithmetic lives in net/.

/**
 * An IP address as a 128-bit number, an IPv4 address as its IPv4-mapped
 * IPv6 form (`::ffff:a.b.c.d`, RFC 4291 §2.5.5.2), so that one comparison
 * serves both families.
 *
 * @param text An IPv4 or IPv6 address.
 * @returns The number, or `null` when it is not an address.
 *
 * @example The same client, written two ways
 * ```ts
 * import { parseIpAddress } from "./policy.ts";
 * console.log(parseIpAddress("192.0.2.1") === parseIpAddress("::ffff:192.0.2.1")); // true
 * console.log(parseIpAddress("not an address")); // null
 * ```
 */
export function parseIpAddress(text: string): bigint | null {
  return parseIp(text);
}

/**
 * Whether an address is inside a network written in CIDR notation
 * (`192.0.2.0/24`, `2001:db8::/32`, or a bare address for itself).
 *
 * @param address The client's address.
 * @param network The network.
 * @returns Whether it is inside; `false` when either cannot be read.
 *
 * @example IPv4, IPv6 and IPv4-mapped IPv6
 * ```ts
 * import { isInNetwork } from "./policy.ts";
 * console.log(isInNetwork("10.1.2.3", "10.0.0.0/8")); // true
 * console.log(isInNetwork("::ffff:10.1.2.3", "10.0.0.0/8")); // true
 * console.log(isInNetwork("2001:db8::5", "2001:db8::/32")); // true
 * console.log(isInNetwork("11.0.0.1", "10.0.0.0/8")); // false
 * ```
 */
export function isInNetwork(address: string, network: string): boolean {
  return isInCidr(address, network);
}

const parsedNetworks = new WeakMap<readonly string[], Cidr[]>();

/**
 * Whether a client's address is inside any of the networks. An empty list
 * trusts nobody.
 *
 * @param address The client's address.
 * @param networks CIDR blocks, as in `relay.trusted_networks`. Parsed once per
 *   array object: pass a frozen array, not one you change.
 * @returns Whether it is inside one of them.
 *
 * @example Loopback is trusted, the rest is not
 * ```ts
 * import { isTrustedClient } from "./policy.ts";
 * const networks = Object.freeze(["127.0.0.0/8", "::1/128"]);
 * console.log(isTrustedClient("127.0.0.1", networks)); // true
 * console.log(isTrustedClient("::1", networks)); // true
 * console.log(isTrustedClient("192.0.2.1", networks)); // false
 * console.log(isTrustedClient("127.0.0.1", [])); // false
 * ```
 */
export function isTrustedClient(address: string, networks: readonly string[]): boolean {
  let blocks = parsedNetworks.get(networks);
  if (blocks === undefined) {
    blocks = networks.map(parseCidr).filter((n): n is Cidr => n !== null);
    parsedNetworks.set(networks, blocks);
  }
  const n = parseIp(address);
  return n !== null && blocks.some((block) => cidrContains(block, n));
}

/**
 * Which addresses count as one client for rate limits: an IPv4 address on its
 * own, an IPv6 address by its /64 (one subscriber's usual share, RFC 6177),
 * so rotating addresses inside it gains nothing.
 *
 * @param address The client's address.
 * @returns A key for counting.
 *
 * @example One IPv6 subscriber, one client
 * ```ts
 * import { clientBlock } from "./policy.ts";
 * console.log(clientBlock("192.0.2.1")); // "192.0.2.1"
 * console.log(clientBlock("2001:db8:1:2:aaaa::1") === clientBlock("2001:db8:1:2::9")); // true
 * ```
 */
export function clientBlock(address: string): string {
  const n = parseIp(address);
  if (n === null) return address;
  // IPv4, or IPv4-mapped IPv6: the IPv4 address.
  if (isIpv4Mapped(n)) return formatIp(n & 0xffffffffn, 4);
  return `${(n >> 64n).toString(16)}::/64`;
}

// ---------------------------------------------------------------------------
// The rules.

/**
 * Whether an address is one the user may send as: the account itself, its
 * `+tag` forms, or an alias whose expansion reaches the account (aliases
 * with several targets included, so a team address can be used by its
 * members). Compared without regard to case.
 *
 * @param claim The authenticated account address (`user`) and the reverse-path (`address`).
 * @param directory The local domains, accounts and aliases.
 * @returns Whether the user owns it; never for `<>` (`""`).
 *
 * @example Plus-addressing and an alias
 * ```ts
 * import { ownsAddress } from "./policy.ts";
 * const directory = {
 *   localDomains: ["example.test"],
 *   accounts: { "alice@example.test": {}, "bob@example.test": {} },
 *   aliases: { "sales@example.test": ["alice@example.test"] },
 * };
 * const user = "alice@example.test";
 * console.log(ownsAddress({ user, address: "Alice+lists@example.test" }, directory)); // true
 * console.log(ownsAddress({ user, address: "sales@example.test" }, directory)); // true
 * console.log(ownsAddress({ user, address: "bob@example.test" }, directory)); // false
 * ```
 */
export function ownsAddress(
  claim: { readonly user: string; readonly address: string },
  directory: Pick<Config, "localDomains" | "accounts" | "aliases">,
): boolean {
  const { user, address } = claim;
  if (address === "" || !address.includes("@")) return false;
  const resolution = resolveRecipient(address, directory);
  if (resolution.kind !== "local") return false;
  const key = user.normalize("NFC").toLowerCase();
  return resolution.targets.some((t) => t.mailbox?.toLowerCase() === key);
}

/** Whether the listener is for users' mail programs (RFC 6409), not for other MTAs. */
function isSubmission(mode: ListenerMode): boolean {
  return mode === "submission" || mode === "submissions";
}

/**
 * Whether a client may relay: send to domains that are not local. Only an
 * authenticated user, or a client inside `relay.trusted_networks`.
 *
 * @param client Who asks.
 * @param config The configuration.
 * @returns Whether mail to other domains is taken from it.
 *
 * @example Nobody unauthenticated from outside
 * ```ts
 * import { mayRelay } from "./policy.ts";
 * import { validateConfig } from "../config/schema.ts";
 * const config = validateConfig({ relay: { trusted_networks: ["10.0.0.0/8"] } }, {
 *   file: null,
 *   baseDir: "/srv/tern",
 * });
 * console.log(mayRelay({ mode: "mx", address: "10.1.1.1", authenticatedAs: null }, config)); // true
 * console.log(mayRelay({ mode: "mx", address: "192.0.2.1", authenticatedAs: null }, config)); // false
 * console.log(mayRelay({ mode: "mx", address: "192.0.2.1", authenticatedAs: "a@localhost" }, config)); // true
 * ```
 */
export function mayRelay(client: PolicyClient, config: PolicyConfig): boolean {
  return client.authenticatedAs !== null ||
    isTrustedClient(client.address, config.relay.trustedNetworks);
}

/**
 * Judges a MAIL FROM.
 *
 * @param request The client and the reverse-path.
 * @param config The configuration.
 * @returns `250 2.1.0`, or `530 5.7.0` (submission without AUTH), or
 *   `553 5.7.1` (a sender the user does not own).
 *
 * @example Submission needs AUTH, and the user's own address
 * ```ts
 * import { checkSender } from "./policy.ts";
 * import { validateConfig } from "../config/schema.ts";
 * const config = validateConfig({
 *   local_domains: ["example.test"],
 *   accounts: { "alice@example.test": {}, "bob@example.test": {} },
 * }, { file: null, baseDir: "/srv/tern" });
 * const client = { mode: "submission" as const, address: "192.0.2.1" };
 * console.log(checkSender({ ...client, authenticatedAs: null, reversePath: "alice@example.test" }, config).code); // 530
 * console.log(checkSender({ ...client, authenticatedAs: "alice@example.test", reversePath: "alice@example.test" }, config).code); // 250
 * console.log(checkSender({ ...client, authenticatedAs: "alice@example.test", reversePath: "bob@example.test" }, config).code); // 553
 * ```
 */
export function checkSender(request: SenderRequest, config: PolicyConfig): Reply {
  const user = request.authenticatedAs;
  // RFC 6409 §4.3 and RFC 8314: a submission server takes mail only after AUTH.
  if (user === null && isSubmission(request.mode)) return REPLIES.authRequired;
  if (user !== null && config.submission.senderMustMatch) {
    // RFC 6409 §6.1: the MSA may check that the sender is the user's own.
    // The null sender is for bounces (RFC 5321 §4.5.5); a user has none to send.
    if (
      request.reversePath === "" || !ownsAddress({ user, address: request.reversePath }, config)
    ) {
      return REPLIES.senderNotOwned(user);
    }
  }
  return REPLIES.senderOk;
}

/**
 * Whether every local mailbox an address leads to can be a Maildir: in the
 * zero-config catch-all, any local part a client types becomes a directory
 * name, and one too long for the file system could never be delivered.
 */
function hasMaildirNames(targets: readonly QueueRecipient[], mailRoot: string): boolean {
  return targets.every((t) => t.mailbox === null || isMaildirName(mailRoot, t.mailbox));
}

/**
 * Judges a RCPT TO.
 *
 * @param request The client and the forward-path.
 * @param config The configuration.
 * @returns `250 2.1.5` (local, or relayed for those allowed), `550 5.1.1`
 *   (no such local user), `550 5.1.3` (a local mailbox whose name cannot be
 *   a Maildir), `554 5.7.1` (relay denied), `530 5.7.0` (submission without
 *   AUTH), or `550 5.4.6` (an alias loop).
 *
 * @example Relaying only for trusted clients
 * ```ts
 * import { checkRecipient } from "./policy.ts";
 * import { validateConfig } from "../config/schema.ts";
 * const config = validateConfig({ local_domains: ["example.test"], relay: { trusted_networks: [] } }, {
 *   file: null,
 *   baseDir: "/srv/tern",
 * });
 * const client = { mode: "mx" as const, address: "127.0.0.1", authenticatedAs: null };
 * console.log(checkRecipient({ ...client, forwardPath: "bob@example.test" }, config).code); // 250
 * console.log(checkRecipient({ ...client, forwardPath: "bob@example.net" }, config).code); // 554
 * ```
 */
export function checkRecipient(request: RecipientRequest, config: PolicyConfig): Reply {
  if (request.authenticatedAs === null && isSubmission(request.mode)) return REPLIES.authRequired;
  // A bounce to an address SRS made: taken (and sent back to the original
  // sender) only when its hash verifies and it is recent; a forged or stale
  // one is no mailbox here, and must not make us an open relay.
  const srs = config.srs ? srsReverse(request.forwardPath, config.srs, Date.now()) : null;
  if (srs !== null) return srs.kind === "valid" ? REPLIES.recipientOk : REPLIES.noSuchUser;
  const resolution = resolveRecipient(request.forwardPath, config);
  switch (resolution.kind) {
    case "local":
      if (resolution.targets.length === 0) return REPLIES.noSuchUser;
      return hasMaildirNames(resolution.targets, config.mailRoot ?? "/")
        ? REPLIES.recipientOk
        : REPLIES.mailboxNameUnusable;
    case "unknown":
      return REPLIES.noSuchUser;
    case "loop":
      // RFC 3463 X.4.6 "routing loop detected": permanent. check-config refuses
      // loops, so one found here (say, through a catch-all) stays until the
      // postmaster edits the aliases; a 4yz would have the sender retry for days.
      return reply(550, "5.4.6", "Alias loop for this address, ask the postmaster");
    case "remote":
      return mayRelay(request, config) ? REPLIES.recipientOk : REPLIES.relayDenied;
  }
}

/**
 * Whether a client is looked up in the `dnsbl` block lists: an
 * unauthenticated client of an mx listener from outside
 * `relay.trusted_networks`, when lists are configured. Users' mail programs
 * authenticate, and trusted networks are our own hosts.
 *
 * @param client Who connects.
 * @param config The configuration.
 * @returns Whether to ask the lists.
 *
 * @example
 * ```ts
 * import { isDnsblChecked } from "./policy.ts";
 * import { validateConfig } from "../config/schema.ts";
 * const config = validateConfig({ dnsbl: ["zen.example"], relay: { trusted_networks: ["10.0.0.0/8"] } }, {
 *   file: null,
 *   baseDir: "/srv/tern",
 * });
 * console.log(isDnsblChecked({ mode: "mx", address: "192.0.2.1", authenticatedAs: null }, config)); // true
 * console.log(isDnsblChecked({ mode: "mx", address: "10.0.0.1", authenticatedAs: null }, config)); // false
 * ```
 */
export function isDnsblChecked(
  client: PolicyClient,
  config: Pick<Config, "relay" | "dnsbl">,
): boolean {
  return (config.dnsbl?.length ?? 0) > 0 && client.mode === "mx" &&
    client.authenticatedAs === null &&
    !isTrustedClient(client.address, config.relay.trustedNetworks);
}
