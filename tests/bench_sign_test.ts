/**
 * The bench's `sign` scenario must fail loudly when the MTA did not sign:
 * bench/sign.ts's check of smtp-sink's dumps, on dumps written as
 * smtp-sink writes them (its X- lines, LF line ends, an empty line after
 * the message).
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { generateDkimKey, parseDkimKey } from "../auth/dkim_keys.ts";
import { DkimSigner } from "../auth/dkim_sign.ts";
import { checkSignedDumps, publishedKey, SIGN_DOMAIN, SIGN_SELECTOR } from "../bench/sign.ts";

const MESSAGE = `From: <load@${SIGN_DOMAIN}>\r\nTo: <rcpt@relay.test>\r\n` +
  `Date: Sat,  5 Dec 2026 10:42:46 +0000 (UTC)\r\nMessage-Id: <1@${SIGN_DOMAIN}>\r\n\r\n` +
  `1XXXX\r\n2XXXX\r\n`;

/** One message as smtp-sink's `-d` dumps it. */
function dump(message: string): string {
  return "X-Client-Addr: 127.0.0.1\r\nX-Client-Proto: ESMTP\r\nX-Helo-Args: tern.bench.test\r\n" +
    "Received: from tern.bench.test ([127.0.0.1])\r\n\tby smtp-sink (smtp-sink) with ESMTP id 1;\r\n" +
    "\tSat,  5 Dec 2026 10:42:46 +0000 (UTC)\r\n" + message.replaceAll("\r\n", "\n") + "\n";
}

function signed(pem: string): string {
  const signing = new DkimSigner([parseDkimKey(pem, SIGN_DOMAIN, SIGN_SELECTOR)]).begin();
  signing.update(new TextEncoder().encode(MESSAGE));
  return signing.finish() + MESSAGE;
}

Deno.test("bench sign check: signed dumps pass, one unsigned or forged dump fails", async () => {
  const pem = generateDkimKey("ed25519");
  const key = publishedKey(pem, SIGN_DOMAIN, SIGN_SELECTOR);
  const dir = await Deno.makeTempDir({ prefix: "bench-sign-test-" });
  try {
    await Deno.writeTextFile(join(dir, "a"), dump(signed(pem)));
    await Deno.writeTextFile(join(dir, "b"), dump(signed(pem)));
    await checkSignedDumps(dir, 2, key);
    await assert.rejects(checkSignedDumps(dir, 3, key), /dumped 2 messages, 3 expected/);

    await Deno.writeTextFile(join(dir, "c"), dump(MESSAGE));
    await assert.rejects(
      checkSignedDumps(dir, 3, key),
      /1 of 3 relayed messages are not DKIM-signed/,
    );

    // Signed by another key under the same name: the signature must not verify.
    await Deno.writeTextFile(join(dir, "c"), dump(signed(generateDkimKey("ed25519"))));
    await Deno.remove(join(dir, "a"));
    await Deno.remove(join(dir, "b"));
    await assert.rejects(checkSignedDumps(dir, 1, key), /does not verify/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
