/**
 * The `sign` scenario's material: the signing key both MTAs use, where
 * smtp-sink dumps what it receives, and the check that every relayed
 * message arrived signed (and that a sample of the signatures verify), so
 * that a run in which the MTA quietly did not sign fails instead of
 * reporting a flattering rate.
 *
 * @module
 */

import { join } from "node:path";
import { dkimRecordText, generateDkimKey, parseDkimKey } from "../auth/dkim_keys.ts";
import { Verification } from "../auth/verify.ts";
import type { DnsAnswer, DnsQuerier } from "../dns/resolver.ts";

/**
 * The signing domain: smtp-source writes `From: <SENDER>`, and the load's
 * sender is `load@client.bench.test`; both MTAs sign that exact domain
 * (tern also would for a parent's key; OpenDKIM only with `SubDomains`).
 */
export const SIGN_DOMAIN = "client.bench.test";
/** The selector of the key in both MTAs. */
export const SIGN_SELECTOR = "bench";

/** How many received messages have their signature verified, not only looked for. */
const VERIFIED_SAMPLE = 20;

/** What a verifier needs of a key: where its record is, and the record. */
export interface PublishedKey {
  /** `d=`. */
  readonly domain: string;
  /** `s=`. */
  readonly selector: string;
  /** The TXT record's text at `SELECTOR._domainkey.DOMAIN`: `v=DKIM1; k=rsa; p=…`. */
  readonly record: string;
}

/** The key of one run: the PEM for the MTA, and its record for checking. */
export interface SigningKey extends PublishedKey {
  /** PKCS#8 PEM, RSA 2048. */
  readonly pem: string;
}

/**
 * Makes a new RSA-2048 key for {@linkcode SIGN_DOMAIN}, as
 * `tern dkim keygen` does.
 *
 * @returns The key.
 */
export function makeSigningKey(): SigningKey {
  const pem = generateDkimKey("rsa");
  return { pem, ...publishedKey(pem, SIGN_DOMAIN, SIGN_SELECTOR) };
}

/**
 * The record a private key's public half is published in.
 *
 * @param pem The private key.
 * @param domain `d=`.
 * @param selector `s=`.
 * @returns Where and what to publish.
 */
export function publishedKey(pem: string, domain: string, selector: string): PublishedKey {
  const key = parseDkimKey(pem, domain, selector);
  return { domain: key.domain, selector: key.selector, record: dkimRecordText(key) };
}

/**
 * A directory for smtp-sink's dumps (`-d`), on tmpfs when there is one, so
 * the dumps do not compete with the MTA for the disk; smtp-sink runs as
 * nobody and must write in it.
 *
 * @param fallback Where to make it when /dev/shm is not there.
 * @returns The directory.
 */
export async function makeDumpDir(fallback: string): Promise<string> {
  let dir: string;
  try {
    dir = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "tern-bench-sink-" });
  } catch {
    dir = await Deno.makeTempDir({ dir: fallback, prefix: "sink-" });
  }
  await Deno.chown(dir, 65534, 65534);
  return dir;
}

/**
 * A DNS that knows one record, the key's (`SELECTOR._domainkey.DOMAIN TXT`),
 * and answers NXDOMAIN for anything else: verification without sockets.
 */
function keyOnlyDns(key: PublishedKey): DnsQuerier {
  const name = `${key.selector}._domainkey.${key.domain}`;
  const text = key.record;
  // TXT character-strings are at most 255 octets (RFC 1035 §3.3.14).
  const strings: string[] = [];
  for (let i = 0; i < text.length; i += 255) strings.push(text.slice(i, i + 255));
  const answer: DnsAnswer = {
    kind: "answer",
    records: [{ name, class: 1, ttl: 300, type: "TXT", data: strings }],
    ttl: 300,
  };
  return {
    query: (asked, type) =>
      Promise.resolve(
        asked.replace(/\.$/, "").toLowerCase() === name && type === "TXT"
          ? answer
          : { kind: "nxdomain" },
      ),
  };
}

/**
 * Verifies one message's DKIM signatures with tern's inbound checks (DKIM
 * only, the key's record answered from memory: no DNS).
 *
 * @param message The message, CRLF line ends.
 * @param key The key the message should be signed with.
 * @returns The result of each signature, e.g. `["pass"]`.
 */
export async function verifyMessage(message: Uint8Array, key: PublishedKey): Promise<string[]> {
  const check = Verification.start({
    authservId: "bench.test",
    spf: false,
    dmarc: false,
    resolver: keyOnlyDns(key),
    clientAddress: "127.0.0.1",
    helo: null,
    mailFrom: "",
  });
  check.update(message);
  const verdict = await check.finish();
  return verdict.dkim.map((d) => `${d.result}${d.comment ? ` (${d.comment})` : ""}`);
}

/**
 * Checks what smtp-sink received: at least `expected` dumped messages, each
 * with a DKIM-Signature of the key's domain and selector, and the first
 * {@linkcode VERIFIED_SAMPLE} of them verifying.
 *
 * smtp-sink's dump (`-d`) is its own few `X-…` lines, its Received: field,
 * then the message as received with LF line ends, then an empty line; the
 * line ends are put back to CRLF for verification (relaxed body
 * canonicalisation ignores the trailing empty line, RFC 6376 §3.4.4).
 *
 * @param dumpDir smtp-sink's `-d` directory.
 * @param expected How many messages were sent.
 * @param key The key the MTA signed with.
 * @returns When all is well.
 * @throws {Error} Naming how many were unsigned, or the first failed verification.
 */
export async function checkSignedDumps(
  dumpDir: string,
  expected: number,
  key: PublishedKey,
): Promise<void> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dumpDir)) if (entry.isFile) names.push(entry.name);
  if (names.length < expected) {
    throw new Error(`smtp-sink dumped ${names.length} messages, ${expected} expected`);
  }
  const tag = new RegExp(
    `^DKIM-Signature:[^]*?\\bd=${key.domain.replaceAll(".", "\\.")};[^]*?\\bs=${key.selector};`,
    "im",
  );
  let unsigned = 0;
  let verified = 0;
  for (const name of names.sort()) {
    const text = await Deno.readTextFile(join(dumpDir, name));
    const header = text.slice(0, text.indexOf("\n\n"));
    if (!tag.test(header)) {
      unsigned++;
      continue;
    }
    if (verified < VERIFIED_SAMPLE) {
      const message = new TextEncoder().encode(text.replaceAll("\n", "\r\n"));
      const results = await verifyMessage(message, key);
      if (results.length !== 1 || !results[0]!.startsWith("pass")) {
        throw new Error(`a relayed message's signature does not verify: ${results.join(", ")}`);
      }
      verified++;
    }
  }
  if (unsigned > 0) {
    throw new Error(`${unsigned} of ${names.length} relayed messages are not DKIM-signed`);
  }
}
