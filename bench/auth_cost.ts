/**
 * `deno task bench --scenario auth-cost` (or `deno run -A bench/auth_cost.ts`):
 * what DKIM costs per message in tern's own code, without sockets, queue or
 * disk. One 4 KiB message (the relay load's size, smtp-source's header
 * fields) is signed again and again through {@linkcode DkimSigner}, with an
 * RSA-2048 key and with an Ed25519 key, and a signed copy is verified again
 * and again through {@linkcode Verification} (auth/verify.ts: DKIM only,
 * SPF and DMARC off), whose DNS answers the key record from memory: the
 * verify figures leave out DNS, which a real check waits for (and caches
 * nothing of between messages).
 *
 * Each figure is the median of several rounds (after one warm-up round that
 * is not counted), in microseconds of wall-clock time per message on one
 * thread, with the min and max of the rounds. The private-key operation of
 * RSA alone is shown beside it, the way DkimSigner does it (OpenSSL's
 * libcrypto through FFI when it can be loaded, auth/rsa_openssl.ts) and the
 * way Deno's `node:crypto` does it (the fallback): it is most of the
 * signing cost.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createHash, sign } from "node:crypto";
import { type DkimKey, generateDkimKey, parseDkimKey } from "../auth/dkim_keys.ts";
import { DkimSigner } from "../auth/dkim_sign.ts";
import { summary } from "./_table.ts";
import { publishedKey, SIGN_DOMAIN, SIGN_SELECTOR, verifyMessage } from "./sign.ts";

/** Options of {@linkcode runAuthCost}. */
export interface AuthCostOptions {
  /** Scales the messages per round (`--scale`). @default {1} */
  readonly scale?: number;
  /** Rounds counted. @default {5} */
  readonly rounds?: number;
}

/** Messages per round at scale 1: enough for a round of RSA signing to last about a second. */
const MESSAGES_PER_ROUND = 500;

/** The payload size of the relay load, smtp-source's `-l`. */
const PAYLOAD = 4096;

/**
 * A message as smtp-source sends it: its four header fields, then `PAYLOAD`
 * octets of 80-column lines.
 *
 * @returns The message, CRLF line ends.
 */
export function sampleMessage(): Uint8Array {
  const header = `From: <load@${SIGN_DOMAIN}>\r\nTo: <rcpt@relay.test>\r\n` +
    `Date: Sat,  5 Dec 2026 10:42:46 +0000 (UTC)\r\n` +
    `Message-Id: <2bcb.0003.0001@${SIGN_DOMAIN}>\r\n\r\n`;
  let body = "";
  for (let line = 1; body.length < PAYLOAD; line++) {
    const text = `${line}${"X".repeat(78)}`.slice(0, Math.min(78, PAYLOAD - body.length));
    body += `${text}\r\n`;
  }
  return new TextEncoder().encode(header + body);
}

/**
 * Times `operation` `count` times per round; the first round warms up.
 *
 * @returns Microseconds per operation, one value per counted round.
 */
async function timeRounds(
  rounds: number,
  count: number,
  operation: () => unknown | Promise<unknown>,
): Promise<number[]> {
  const perRound: number[] = [];
  for (let round = 0; round <= rounds; round++) {
    const started = performance.now();
    for (let i = 0; i < count; i++) await operation();
    const microseconds = (performance.now() - started) * 1000 / count;
    if (round > 0) perRound.push(microseconds);
  }
  return perRound;
}

function signOnce(signer: DkimSigner, message: Uint8Array): string {
  const signing = signer.begin();
  signing.update(message);
  const field = signing.finish();
  if (field === "") throw new Error("the sample message was not signed");
  return field;
}

/** One line of the table. */
interface CostRow {
  readonly what: string;
  readonly microseconds: number[];
}

/**
 * Measures and renders the table.
 *
 * @param options Scale and rounds.
 * @returns A Markdown table with a line of explanation above it.
 */
export async function runAuthCost(options: AuthCostOptions = {}): Promise<string> {
  const rounds = options.rounds ?? 5;
  const count = Math.max(20, Math.round(MESSAGES_PER_ROUND * (options.scale ?? 1)));
  const message = sampleMessage();
  const pems = (["rsa", "ed25519"] as const).map((type) => generateDkimKey(type));
  const rows: CostRow[] = [];
  for (const pem of pems) {
    const key: DkimKey = parseDkimKey(pem, SIGN_DOMAIN, SIGN_SELECTOR);
    const published = publishedKey(pem, SIGN_DOMAIN, SIGN_SELECTOR);
    const name = key.algorithm === "rsa-sha256" ? "rsa-2048" : "ed25519";
    const signer = new DkimSigner([key]);
    rows.push({
      what: `sign, ${name} (DkimSigner)`,
      microseconds: await timeRounds(rounds, count, () => signOnce(signer, message)),
    });
    if (key.algorithm === "rsa-sha256") rows.push(...await rsaAlone(key, rounds, count));
    const signed = Buffer.concat([Buffer.from(signOnce(signer, message), "latin1"), message]);
    const first = await verifyMessage(signed, published);
    if (first.length !== 1 || !first[0]!.startsWith("pass")) {
      throw new Error(`the signed sample does not verify with ${name}: ${first.join(", ")}`);
    }
    rows.push({
      what: `verify, ${name} (Verification, DKIM only, DNS from memory)`,
      microseconds: await timeRounds(rounds, count, () => verifyMessage(signed, published)),
    });
  }
  return render(rows, rounds, count, message.length);
}

/**
 * The RSA-2048 private-key operation alone, on header data of the size a
 * signature of the sample covers (about 400 octets): through OpenSSL as
 * DkimSigner does when it can, and through `node:crypto`.
 */
async function rsaAlone(key: DkimKey, rounds: number, count: number): Promise<CostRow[]> {
  const data = Buffer.alloc(400, 0x61);
  const rows: CostRow[] = [];
  const openSsl = key.openSsl;
  if (openSsl !== undefined) {
    rows.push({
      what: "  of which the RSA private-key operation, OpenSSL through FFI (what DkimSigner uses)",
      microseconds: await timeRounds(
        rounds,
        count,
        () => openSsl.sign(createHash("sha256").update(data).digest()),
      ),
    });
  }
  rows.push({
    what: `  the same through node:crypto sign${
      openSsl === undefined ? " (what DkimSigner uses: libcrypto not loadable)" : " (the fallback)"
    }`,
    microseconds: await timeRounds(rounds, count, () => sign("sha256", data, key.privateKey)),
  });
  return rows;
}

function render(rows: readonly CostRow[], rounds: number, count: number, size: number): string {
  const lines = [
    `DKIM cost per message, tern's code alone (no sockets, no queue, DNS excluded): ` +
    `a ${size}-octet message, ${count} per round, median (min–max) of ${rounds} rounds, one thread`,
    "",
    "| operation | µs/message | messages/s |",
    "| --- | ---: | ---: |",
  ];
  for (const row of rows) {
    const perSecond = row.microseconds.map((us) => 1e6 / us);
    lines.push(`| ${row.what} | ${summary(row.microseconds, 0)} | ${summary(perSecond, 0)} |`);
  }
  return lines.join("\n");
}

if (import.meta.main) console.log(await runAuthCost());
