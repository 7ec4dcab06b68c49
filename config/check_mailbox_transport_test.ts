import assert from "node:assert/strict";
import { ConfigError } from "./errors.ts";
import { validateConfig } from "./schema.ts";

const at = { file: "tern.yaml", baseDir: "/srv/tern" };

function problems(raw: Record<string, unknown>): string[] {
  try {
    validateConfig(raw, at);
    return [];
  } catch (error: unknown) {
    if (!(error instanceof ConfigError)) throw error;
    return error.message.split("\n");
  }
}

Deno.test("mailbox_transport: maildir by default, or an LMTP server over TCP or a Unix socket", () => {
  assert.equal(validateConfig({}, at).mailboxTransport, undefined);
  assert.equal(validateConfig({ mailbox_transport: "maildir" }, at).mailboxTransport, undefined);
  assert.deepEqual(
    validateConfig({ mailbox_transport: "lmtp:127.0.0.1:24" }, at).mailboxTransport,
    {
      host: "127.0.0.1",
      port: 24,
    },
  );
  assert.deepEqual(validateConfig({ mailbox_transport: "lmtp:[::1]:24" }, at).mailboxTransport, {
    host: "::1",
    port: 24,
  });
  assert.deepEqual(
    validateConfig({ mailbox_transport: "lmtp:Mail.Example.test:2424" }, at).mailboxTransport,
    { host: "mail.example.test", port: 2424 },
  );
  assert.deepEqual(
    validateConfig({ mailbox_transport: "lmtp:/run/dovecot/lmtp" }, at).mailboxTransport,
    { path: "/run/dovecot/lmtp" },
  );
});

Deno.test("mailbox_transport: a wrong value is one clear line", () => {
  for (
    const [value, why] of [
      ["lmtp:::1:24", /IPv6 address goes in brackets/],
      ["lmtp:127.0.0.1", /a port \(1-65535\)/],
      ["lmtp:127.0.0.1:0", /a port \(1-65535\)/],
      ["lmtp:", /missing/],
      ["lmtp:run/lmtp", /a port/],
      ["smtp:127.0.0.1:25", /expected maildir, lmtp:host:port/],
      [24, /expected maildir/],
    ] as const
  ) {
    const found = problems({ mailbox_transport: value });
    assert.equal(found.length, 1, String(value));
    assert.match(found[0]!, /^tern\.yaml: mailbox_transport: /);
    assert.match(found[0]!, why);
  }
});

Deno.test("submission.auth: accounts by default, or Dovecot's auth socket", () => {
  assert.equal(validateConfig({}, at).submission.dovecotAuth, undefined);
  assert.equal(
    validateConfig({ submission: { auth: "accounts" } }, at).submission.dovecotAuth,
    undefined,
  );
  assert.deepEqual(
    validateConfig({ submission: { auth: "dovecot:/run/dovecot/auth-client" } }, at).submission,
    { senderMustMatch: true, dovecotAuth: { path: "/run/dovecot/auth-client" } },
  );
  assert.deepEqual(
    validateConfig({ submission: { auth: "dovecot:127.0.0.1:12345" } }, at).submission.dovecotAuth,
    { host: "127.0.0.1", port: 12345 },
  );
  const found = problems({ submission: { auth: "ldap:x" } });
  assert.deepEqual(found, [
    'tern.yaml: submission.auth: expected accounts, dovecot:/path/to/auth-client or dovecot:host:port, found "ldap:x"',
  ]);
});
