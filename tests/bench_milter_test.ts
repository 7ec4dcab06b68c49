/**
 * The bench's `milter` scenario must fail loudly when the milter did not
 * see the mail: bench/milter.ts's check of the delivered messages, on
 * Maildir files written as tern (CRLF) and Postfix's virtual(8) (LF) write
 * them.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { checkScanned } from "../bench/milter.ts";

const HEADER = "Return-Path: <load@client.bench.test>\nDelivered-To: sink@bench.test\n" +
  "From: <load@client.bench.test>\nTo: <sink@bench.test>\n";
const RSPAMD = "X-Spamd-Result: default: False [-0.10 / 15.00];\n\tMIME_GOOD(-0.10)[text/plain]\n" +
  "X-Rspamd-Queue-Id: 1M92Z0T3RTP5PH\nX-Rspamd-Server: vm\nX-Spam-Status: No, score=-0.10\n";
const BODY = "1XXXX\n2XXXX\n";

Deno.test("bench milter check: scanned messages pass, one unscanned message fails", async () => {
  const dir = await Deno.makeTempDir({ prefix: "bench-milter-test-" });
  try {
    // tern writes CRLF, Postfix LF.
    await Deno.writeTextFile(
      join(dir, "a"),
      (HEADER + RSPAMD + "\n" + BODY).replaceAll("\n", "\r\n"),
    );
    await Deno.writeTextFile(join(dir, "b"), HEADER + RSPAMD + "\n" + BODY);
    await checkScanned(dir, 2);
    await assert.rejects(checkScanned(dir, 3), /2 messages in .*, 3 expected/);

    await Deno.writeTextFile(join(dir, "c"), HEADER + "\n" + BODY);
    await assert.rejects(checkScanned(dir, 3), /1 of 3 delivered messages lack rspamd's header/);

    // rspamd's fields in the body do not count.
    await Deno.writeTextFile(join(dir, "c"), HEADER + "\n" + RSPAMD + BODY);
    await assert.rejects(checkScanned(dir, 3), /1 of 3 delivered messages lack/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
