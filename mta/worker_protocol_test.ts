import assert from "node:assert/strict";
import { join } from "node:path";
import { MemoryLogger } from "../log/logger.ts";
import {
  deliverToMaildir,
  MaildirNameTakenError,
  maildirPath,
  maildirUniqueName,
} from "../mda/mod.ts";
import { classifyLocalFailure } from "../mda/local_delivery.ts";
import { DirectDelivery } from "./direct_delivery.ts";
import { errorData, errorFromData } from "./worker_protocol.ts";

/** What a `postMessage` does to an error on its way to the other thread. */
function crossed(error: unknown): Error {
  return errorFromData(structuredClone(errorData(error)));
}

Deno.test("a taken Maildir name is still a MaildirNameTakenError on the other thread", () => {
  const error = crossed(new MaildirNameTakenError("/mail/a/new/x"));
  assert.ok(error instanceof MaildirNameTakenError);
  assert.equal(error.path, "/mail/a/new/x");
  assert.equal(error.message, new MaildirNameTakenError("/mail/a/new/x").message);
});

Deno.test("a system error keeps its name and code across threads: a full disk is still a retry", () => {
  const full = Object.assign(new Error("No space left on device (os error 28)"), {
    name: "Error",
    code: "ENOSPC",
  });
  const error = crossed(full);
  assert.equal(error.message, full.message);
  assert.equal(classifyLocalFailure(error).enhancedStatus, "4.3.1");
  assert.equal(crossed(new Deno.errors.NotFound("gone")).name, "NotFound");
  assert.equal(crossed("not an Error").message, "not an Error");
});

Deno.test("a delivery at acceptance whose file another thread writes refuses a taken name", async () => {
  const root = await Deno.makeTempDir({ prefix: "tern-test-crossed-" });
  try {
    // As on the main thread with session workers: the file is written on another thread.
    const direct = new DirectDelivery({
      mailRoot: root,
      hostname: "tern-fleet",
      logger: new MemoryLogger(),
      syncNameLater: false,
      writeMaildir: (dir, content, options) =>
        deliverToMaildir(dir, content, options).catch((error: unknown) => {
          throw crossed(error);
        }),
    });
    const arrival = 1_700_000_000_000;
    const queueId = "1M941T9GG60R84";
    const address = "alice@example.test";
    const dir = maildirPath(root, address);
    for (const sub of ["tmp", "new", "cur"]) await Deno.mkdir(join(dir, sub), { recursive: true });
    const theirs = join(dir, "new", maildirUniqueName(arrival, queueId, 0, "tern-fleet"));
    await Deno.writeTextFile(theirs, "Subject: theirs\r\n\r\nhello\r\n");
    await assert.rejects(
      direct.deliver({
        queueId,
        envelope: {
          reversePath: "carol@example.test",
          forwardPaths: [address],
          body: "7BIT",
          smtputf8: false,
        },
        recipients: [{ address, originalRecipient: address, mailbox: address }],
        arrival,
        clientAddress: "127.0.0.1",
        content: [new TextEncoder().encode("Subject: mine\r\n\r\nhello\r\n")],
      }),
      MaildirNameTakenError,
    );
    assert.equal(await Deno.readTextFile(theirs), "Subject: theirs\r\n\r\nhello\r\n");
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
