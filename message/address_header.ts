/**
 * Address fields of a message (RFC 5322 §3.4): `From`, `To`, `Cc`,
 * `Reply-To` as lists of `"Display Name" <local@domain>`. Display names are
 * written as atoms, a quoted-string (§3.2.4) or RFC 2047 encoded-words when
 * they hold non-ASCII text; addresses are checked with tern's RFC 5321
 * mailbox parser, so that what the header says is also a valid envelope
 * address.
 *
 * @module
 */

import { isNonAscii, parsePath, PathSyntaxError } from "../smtp/path.ts";
import { encodeWords, needsEncoding } from "./encoded_word.ts";

/** An address as a caller gives it: `"a@example.org"`, `"Ann <a@example.org>"` or `{ name, address }`. */
export type AddressInput = string | { name?: string; address: string };

/** An address checked and split into its display name and mailbox. */
export interface Address {
  /** The display name, or `""` when there is none. */
  readonly name: string;
  /** The mailbox `local-part@domain`, as written. */
  readonly address: string;
  /** Whether the mailbox has non-ASCII characters (it needs SMTPUTF8, RFC 6531). */
  readonly smtputf8: boolean;
}

// RFC 5322 §3.2.3 atext.
const ATOM = /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+$/;

function unquote(name: string): string {
  const trimmed = name.trim();
  if (trimmed.length >= 2 && trimmed.startsWith('"') && trimmed.endsWith('"')) {
    return trimmed.slice(1, -1).replace(/\\(.)/g, "$1");
  }
  return trimmed;
}

/**
 * Checks an address and splits it into display name and mailbox.
 *
 * @param input `"a@example.org"`, `"<a@example.org>"`, `'Ann <a@example.org>'`,
 *   `'"Doe, Ann" <a@example.org>'` or `{ name: "Ann", address: "a@example.org" }`.
 * @returns The display name and mailbox.
 * @throws {TypeError} When the mailbox is not a valid RFC 5321 mailbox, or
 *   the name holds a line break or control character.
 *
 * @example
 * ```ts
 * import { parseAddress } from "./address_header.ts";
 * console.log(parseAddress('"Doe, Ann" <ann@example.org>').name); // "Doe, Ann"
 * ```
 */
export function parseAddress(input: AddressInput): Address {
  let name: string;
  let address: string;
  if (typeof input === "string") {
    const match = /^(.*)<([^<>]*)>\s*$/s.exec(input.trim());
    name = match ? unquote(match[1]!) : "";
    address = (match ? match[2]! : input).trim();
  } else {
    name = (input.name ?? "").trim();
    address = input.address.trim();
  }
  // deno-lint-ignore no-control-regex
  if (/[\x00-\x08\x0a-\x1f\x7f]/.test(name)) {
    throw new TypeError(`Display name for <${address}> must not contain line breaks or controls`);
  }
  try {
    const parsed = parsePath(`<${address}>`, { utf8: true });
    if (parsed.rest !== "" || parsed.mailbox === null) throw new PathSyntaxError("Unexpected text");
  } catch (e) {
    const why = e instanceof PathSyntaxError ? e.message : String(e);
    throw new TypeError(`Invalid email address "${address}": ${why}`);
  }
  return { name, address, smtputf8: isNonAscii(address) };
}

/**
 * Writes a display name as a phrase (RFC 5322 §3.2.5): atoms when it is
 * plain words, a quoted-string when it has specials such as `,` or `.`, and
 * RFC 2047 encoded-words when it has non-ASCII text (an encoded-word may not
 * be inside a quoted-string, RFC 2047 §5 (3)).
 *
 * @param name The display name.
 * @returns The phrase for the header.
 *
 * @example
 * ```ts
 * import { formatPhrase } from "./address_header.ts";
 * console.log(formatPhrase("Ann Doe")); // "Ann Doe"
 * console.log(formatPhrase("Doe, Ann")); // '"Doe, Ann"'
 * console.log(formatPhrase("Zoë")); // "=?utf-8?Q?Zo=C3=AB?="
 * ```
 */
export function formatPhrase(name: string): string {
  const words = name.split(/[ \t]+/);
  if (needsEncoding(name) || words.some((w) => w.length > 76)) {
    return encodeWords(name).join(" ");
  }
  if (words.every((w) => ATOM.test(w)) && !/[ \t]{2}/.test(name)) return name;
  return `"${name.replace(/[\\"]/g, (c) => "\\" + c)}"`;
}

/**
 * Formats one address for a header: `Name <addr>` or a bare `addr`.
 *
 * @param address A checked address.
 * @returns The mailbox as RFC 5322 §3.4 writes it.
 *
 * @example
 * ```ts
 * import { formatAddress, parseAddress } from "./address_header.ts";
 * console.log(formatAddress(parseAddress({ name: "Ann", address: "ann@example.org" })));
 * // "Ann <ann@example.org>"
 * ```
 */
export function formatAddress(address: Address): string {
  return address.name === ""
    ? address.address
    : `${formatPhrase(address.name)} <${address.address}>`;
}

/**
 * Normalizes one address or a list into checked addresses.
 *
 * @param input An address, a list of them, or nothing.
 * @returns The checked addresses, in order.
 * @throws {TypeError} As {@linkcode parseAddress}.
 *
 * @example
 * ```ts
 * import { parseAddressList } from "./address_header.ts";
 * console.log(parseAddressList(["a@example.org", { address: "b@example.org" }]).length); // 2
 * ```
 */
export function parseAddressList(
  input: AddressInput | readonly AddressInput[] | undefined,
): Address[] {
  if (input === undefined) return [];
  const list: readonly AddressInput[] = Array.isArray(input) ? input : [input as AddressInput];
  return list.map(parseAddress);
}

/**
 * Formats an address list field body (RFC 5322 §3.4 `address-list`).
 *
 * @param addresses Checked addresses.
 * @returns The addresses separated by `, `, to be folded at its spaces.
 *
 * @example
 * ```ts
 * import { formatAddressList, parseAddressList } from "./address_header.ts";
 * console.log(formatAddressList(parseAddressList(["Ann <a@example.org>", "b@example.org"])));
 * // "Ann <a@example.org>, b@example.org"
 * ```
 */
export function formatAddressList(addresses: readonly Address[]): string {
  return addresses.map(formatAddress).join(", ");
}
