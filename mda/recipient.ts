/**
 * Recipient resolution: which forward-paths are ours, and where each one's
 * copies go. Asked once per `RCPT TO` (to answer `550 5.1.1` for an unknown
 * local user) and again when the message is queued, to expand
 * aliases into the queue's recipients.
 *
 * The rules, and where they come from:
 *
 * - Domains are case-insensitive (RFC 5321 §2.4) and an internationalized
 *   domain has two spellings, U-label and A-label (RFC 5890 §2.3.2.1); both
 *   are compared in A-label form, lower case, after NFC normalisation.
 * - Local parts are case-sensitive in principle (RFC 5321 §2.4), but mailbox
 *   names here are looked up case-insensitively, as nearly every MTA does;
 *   the spelling the sender used is kept in the recipient's `address`
 *   (it becomes `Delivered-To:`). A quoted local part that needs no quoting
 *   (`"alice"`) is the same as the unquoted one (RFC 5321 §4.1.2).
 * - Plus-addressing (subaddressing, RFC 5233): `alice+tag@d` is delivered to
 *   alice when `alice+tag@d` is not itself an account or alias.
 * - Aliases map one address to one or more targets; a target may be another
 *   alias (expanded in turn), an account, or a remote address (relayed).
 *   A loop is reported, never followed. Duplicate targets are dropped.
 * - A catch-all alias, `@domain`, takes every address of the domain that is
 *   neither an account nor another alias (nor their `+tag` forms), as
 *   Postfix's virtual_alias_maps: the exact address first, then `@domain`.
 * - `Postmaster` with no domain, in any case, is accepted (RFC 5321 §4.5.1)
 *   as `postmaster@<first local domain>`, and `postmaster@<local domain>` is
 *   always accepted, delivered to its own mailbox when nothing else is set.
 * - With no accounts and no aliases configured (the zero-config default),
 *   every local part of a local domain is a mailbox (lower case, +tag
 *   removed: `Anything+x@localhost` lands in `<mail_root>/localhost/anything/`).
 *
 * @module
 */

import { domainToASCII } from "node:url";
import type { QueueRecipient } from "../queue/types.ts";

/** What {@linkcode resolveRecipient} looks addresses up in: a subset of `Config`. */
export interface RecipientDirectory {
  /** Domains delivered here. */
  readonly localDomains: readonly string[];
  /** Local mailboxes by address; only the keys are used. */
  readonly accounts: Readonly<Record<string, unknown>>;
  /** Aliases by address to one target or a list of targets. */
  readonly aliases: Readonly<Record<string, string | readonly string[]>>;
}

/**
 * What an address resolves to.
 *
 * - `local`: a local address; `targets` are the queue's recipients (local
 *   mailboxes, and remote addresses an alias points to);
 * - `remote`: not a local domain: a question of relay policy;
 * - `unknown`: a local domain but no such mailbox (`550 5.1.1`);
 * - `loop`: the aliases form a cycle; `chain` is the path that revisits an
 *   address, first to last (`["a@d", "b@d", "a@d"]`).
 */
export type Resolution =
  | { readonly kind: "local"; readonly targets: QueueRecipient[] }
  | { readonly kind: "remote" }
  | { readonly kind: "unknown" }
  | { readonly kind: "loop"; readonly chain: string[] };

/** One destination before it is tied to the original recipient. */
interface Target {
  readonly address: string;
  readonly mailbox: string | null;
}

/** The expansion of one address: targets, a loop, or nothing deliverable (`null`). */
type Expansion = Target[] | Loop | null;

/** A cycle found: the path as spelled, and the same path as canonical keys. */
interface Loop {
  readonly loop: string[];
  readonly keys: string[];
}

/** The directory with its keys in canonical form, built once per directory object. */
interface DirectoryIndex {
  /** Canonical domain → the domain as configured. */
  readonly domains: Map<string, string>;
  /** The first local domain as configured, for a bare `Postmaster`. */
  readonly firstDomain: string | undefined;
  /** Canonical address → the account key as configured (the mailbox). */
  readonly accounts: Map<string, string>;
  /** Canonical address → the alias's targets. */
  readonly aliases: Map<string, readonly string[]>;
  /** Zero-config: no accounts and no aliases, every local part is a mailbox. */
  readonly catchAll: boolean;
}

const indexes = new WeakMap<RecipientDirectory, DirectoryIndex>();

/** RFC 5322 §3.2.3 atext: what a dot-atom local part may hold unquoted. */
const DOT_ATOM =
  /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\uffff-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\u0080-\uffff-]+)*$/;

/** Splits at the last `@`: a quoted local part may contain `@`, a domain never does. */
function splitAddress(address: string): { local: string; domain: string } | null {
  const at = address.lastIndexOf("@");
  if (at <= 0 || at === address.length - 1) return null;
  return { local: address.slice(0, at), domain: address.slice(at + 1) };
}

/**
 * A domain in the form used for comparison: A-label (punycode) lower case
 * after NFC, so `Bücher.Example` and `xn--bcher-kva.example` match
 * (RFC 5890 §2.3.2.1, docs/smtp-pitfalls.md: international domain names). Address literals (`[192.0.2.1]`,
 * RFC 5321 §4.1.3) are only put in lower case.
 */
function canonicalDomain(domain: string): string {
  const nfc = domain.normalize("NFC");
  if (nfc.startsWith("[")) return nfc.toLowerCase();
  return domainToASCII(nfc) || nfc.toLowerCase();
}

/**
 * A local part in the form used for lookup: NFC, lower case, and unquoted
 * when the quotes add nothing (RFC 5321 §4.1.2: `"alice"` and `alice` are
 * the same mailbox).
 */
function canonicalLocal(local: string): string {
  let text = local.normalize("NFC");
  if (text.length >= 2 && text.startsWith('"') && text.endsWith('"')) {
    const unquoted = text.slice(1, -1).replace(/\\(.)/g, "$1");
    if (DOT_ATOM.test(unquoted)) text = unquoted;
  }
  return text.toLowerCase();
}

function canonicalAddress(address: string): string | null {
  const parts = splitAddress(address);
  return parts === null ? null : `${canonicalLocal(parts.local)}@${canonicalDomain(parts.domain)}`;
}

function indexDirectory(directory: RecipientDirectory): DirectoryIndex {
  const cached = indexes.get(directory);
  if (cached !== undefined) return cached;
  const domains = new Map<string, string>();
  for (const domain of directory.localDomains) {
    const key = canonicalDomain(domain);
    if (!domains.has(key)) domains.set(key, domain.toLowerCase());
  }
  const accounts = new Map<string, string>();
  for (const account of Object.keys(directory.accounts)) {
    const key = canonicalAddress(account);
    if (key !== null && !accounts.has(key)) accounts.set(key, account);
  }
  const aliases = new Map<string, readonly string[]>();
  for (const [alias, targets] of Object.entries(directory.aliases)) {
    // A catch-all, "@domain", is kept under "@" + the canonical domain.
    const key = alias.startsWith("@")
      ? `@${canonicalDomain(alias.slice(1))}`
      : canonicalAddress(alias);
    if (key === null) continue;
    const list = typeof targets === "string" ? [targets] : targets;
    // An unqualified target ("bob") means bob in the alias's own domain.
    const domain = alias.slice(alias.lastIndexOf("@") + 1);
    aliases.set(key, list.map((t) => (t.includes("@") ? t : `${t}@${domain}`)));
  }
  const index: DirectoryIndex = {
    domains,
    firstDomain: directory.localDomains[0]?.toLowerCase(),
    accounts,
    aliases,
    catchAll: accounts.size === 0 && aliases.size === 0,
  };
  indexes.set(directory, index);
  return index;
}

/** One resolution in progress: the alias path being followed, and finished expansions. */
class Expander {
  readonly #index: DirectoryIndex;
  /** Canonical keys of the aliases being expanded, outermost first. */
  readonly #stack: string[] = [];
  /** The same keys, for a constant-time loop check. */
  readonly #onStack = new Set<string>();
  /** The same addresses as spelled, for the loop report. */
  readonly #spelled: string[] = [];
  readonly #done = new Map<string, Target[]>();

  constructor(index: DirectoryIndex) {
    this.#index = index;
  }

  /** Expands one address as written (in RCPT TO or as an alias target). */
  expandAddress(address: string): Expansion {
    const parts = splitAddress(address);
    if (parts === null) return null;
    const domainKey = canonicalDomain(parts.domain);
    const domain = this.#index.domains.get(domainKey);
    // Not ours: relayed as written (an alias may point anywhere).
    if (domain === undefined) return [{ address, mailbox: null }];
    const local = canonicalLocal(parts.local);
    const key = `${local}@${domainKey}`;

    // An address that is both an alias and an account is the alias: the
    // alias is the more specific instruction (it may keep a copy by listing
    // another account, or forward everything away).
    if (this.#index.aliases.has(key)) return this.#expandAlias(key, address, domain);
    const account = this.#index.accounts.get(key);
    if (account !== undefined) return [{ address, mailbox: account }];

    // RFC 5233 subaddressing: "alice+tag" falls back to "alice". The whole
    // address stays in `address` (Delivered-To), so filters can see the tag.
    const plus = local.indexOf("+");
    const base = plus > 0 ? local.slice(0, plus) : local;
    if (plus > 0) {
      const baseKey = `${base}@${domainKey}`;
      if (this.#index.aliases.has(baseKey)) return this.#expandAlias(baseKey, address, domain);
      const baseAccount = this.#index.accounts.get(baseKey);
      if (baseAccount !== undefined) return [{ address, mailbox: baseAccount }];
    }

    // A catch-all alias ("@domain") takes what no account or alias took, as
    // Postfix's virtual_alias_maps: the exact address first, then the domain.
    const catchAllKey = `@${domainKey}`;
    if (this.#index.aliases.has(catchAllKey)) {
      return this.#expandAlias(catchAllKey, address, domain);
    }

    // Zero-config: with no accounts and no aliases, any local part is a
    // mailbox, named in lower case and without its +tag, so Alice@,
    // alice@ and alice+news@ share one Maildir.
    if (this.#index.catchAll) return [{ address, mailbox: `${base}@${domain}` }];
    // RFC 5321 §4.5.1: every domain we accept mail for has a postmaster.
    if (local === "postmaster") return [{ address, mailbox: `postmaster@${domain}` }];
    return null;
  }

  #expandAlias(key: string, address: string, domain: string): Expansion {
    if (this.#onStack.has(key)) {
      return { loop: [...this.#spelled, address], keys: [...this.#stack, key] };
    }
    const done = this.#done.get(key);
    if (done !== undefined) return done;

    this.#stack.push(key);
    this.#onStack.add(key);
    this.#spelled.push(address);
    const targets: Target[] = [];
    try {
      for (const target of this.#index.aliases.get(key) ?? []) {
        const expansion = this.expandAddress(target);
        if (expansion === null) continue; // a dangling target: see resolveRecipient
        if (!Array.isArray(expansion)) return expansion;
        targets.push(...expansion);
      }
    } finally {
      this.#stack.pop();
      this.#onStack.delete(key);
      this.#spelled.pop();
    }
    // RFC 5321 §4.5.1: postmaster must reach someone even if its alias does not.
    if (targets.length === 0 && key.startsWith("postmaster@")) {
      targets.push({ address, mailbox: `postmaster@${domain}` });
    }
    const unique = dedupe(targets);
    this.#done.set(key, unique);
    return unique;
  }
}

/** Keeps the first of each: one copy per local mailbox, one per remote address. */
function dedupe(targets: readonly Target[]): Target[] {
  const seen = new Set<string>();
  const out: Target[] = [];
  for (const target of targets) {
    const key = target.mailbox !== null
      ? "mailbox:" + target.mailbox.toLowerCase()
      : "remote:" + (canonicalRemote(target.address) ?? target.address);
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(target);
  }
  return out;
}

/** A remote address for duplicate checks: the local part as spelled (it is the remote's to interpret), the domain canonical. */
function canonicalRemote(address: string): string | null {
  const parts = splitAddress(address);
  return parts === null ? null : `${parts.local.normalize("NFC")}@${canonicalDomain(parts.domain)}`;
}

/**
 * Resolves one forward-path against the local domains, accounts and aliases.
 *
 * An alias target that is a local address with no mailbox is left out (the
 * rest of the list is still delivered); when nothing deliverable is left, the
 * alias resolves as `unknown`, except postmaster, which then goes to its own
 * mailbox. {@linkcode validateAliases} finds loops before they are hit.
 *
 * @param address The forward-path as given, `local@domain`, or `Postmaster`.
 * @param directory The local domains, accounts and aliases (a `Config` fits).
 *   Its index is cached per object: pass a frozen object, not one you mutate.
 * @returns Where the address goes.
 *
 * @example Plus-addressing and an alias
 * ```ts
 * import { resolveRecipient } from "./recipient.ts";
 * const directory = {
 *   localDomains: ["example.test"],
 *   accounts: { "alice@example.test": {}, "bob@example.test": {} },
 *   aliases: { "team@example.test": ["alice@example.test", "carol@example.net"] },
 * };
 * console.log(resolveRecipient("Alice+news@example.test", directory));
 * // { kind: "local", targets: [{ address: "Alice+news@example.test",
 * //   originalRecipient: "Alice+news@example.test", mailbox: "alice@example.test" }] }
 * const team = resolveRecipient("team@example.test", directory);
 * console.log(team.kind === "local" && team.targets.map((t) => t.mailbox)); // ["alice@example.test", null]
 * console.log(resolveRecipient("carol@example.net", directory).kind); // "remote"
 * ```
 */
export function resolveRecipient(address: string, directory: RecipientDirectory): Resolution {
  const index = indexDirectory(directory);
  let qualified = address;
  if (!address.includes("@")) {
    // RFC 5321 §4.5.1: "Postmaster" with no domain, case-insensitively.
    if (canonicalLocal(address) !== "postmaster" || index.firstDomain === undefined) {
      return { kind: "unknown" };
    }
    qualified = `${address}@${index.firstDomain}`;
  }
  const parts = splitAddress(qualified);
  if (parts === null) return { kind: "unknown" };
  if (!index.domains.has(canonicalDomain(parts.domain))) return { kind: "remote" };

  const expansion = new Expander(index).expandAddress(qualified);
  if (expansion === null) return { kind: "unknown" };
  if (!Array.isArray(expansion)) return { kind: "loop", chain: expansion.loop };
  if (expansion.length === 0) return { kind: "unknown" };
  return {
    kind: "local",
    targets: expansion.map((t) => ({
      address: t.address,
      originalRecipient: address,
      mailbox: t.mailbox,
    })),
  };
}

/**
 * Finds the alias loops in a directory, for `tern check-config`: each cycle
 * once, as the addresses that form it with the first repeated at the end
 * (`["a@d", "b@d", "a@d"]`).
 *
 * @param directory The local domains, accounts and aliases.
 * @returns The loops found; empty when there are none.
 *
 * @example A two-alias loop
 * ```ts
 * import { validateAliases } from "./recipient.ts";
 * console.log(validateAliases({
 *   localDomains: ["example.test"],
 *   accounts: {},
 *   aliases: { "a@example.test": ["b@example.test"], "b@example.test": ["a@example.test"] },
 * }));
 * // [["a@example.test", "b@example.test", "a@example.test"]]
 * ```
 */
export function validateAliases(directory: RecipientDirectory): string[][] {
  const index = indexDirectory(directory);
  const loops: string[][] = [];
  const seen = new Set<string>();
  for (const alias of Object.keys(directory.aliases)) {
    const expansion = new Expander(index).expandAddress(alias);
    if (expansion === null || Array.isArray(expansion)) continue;
    // Keep only the cycle: from the first visit of the repeated address.
    const { loop, keys } = expansion;
    const start = keys.indexOf(keys[keys.length - 1] as string);
    const cycle = loop.slice(start);
    const members = [...new Set(keys.slice(start))].sort().join(" ");
    if (seen.has(members)) continue;
    seen.add(members);
    loops.push(cycle);
  }
  return loops;
}
