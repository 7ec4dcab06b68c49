import assert from "node:assert/strict";
import { MaildirNameTakenError } from "../mda/mod.ts";
import { classifyLocalFailure } from "../mda/local_delivery.ts";
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
