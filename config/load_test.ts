import assert from "node:assert/strict";
import { join } from "node:path";
import { ConfigError } from "./errors.ts";
import { formatConfig } from "./format.ts";
import { loadConfig } from "./load.ts";
import { hashPassword } from "./password.ts";
import { validateConfig } from "./schema.ts";

const FIXTURES = new URL("../tests/config/", import.meta.url).pathname;

/**
 * These tests read and write files, and the YAML parser reads two environment
 * variables: they run under `deno test -A` and are skipped, not failed, where
 * those permissions are missing (as in `deno test --doc` without flags).
 */
const hasPermissions = (["read", "write", "env"] as const).every((name) =>
  Deno.permissions.querySync({ name }).state === "granted"
);

function fileTest(name: string, fn: () => Promise<void> | void): void {
  Deno.test({ name, ignore: !hasPermissions, fn });
}

/** Runs `body` in a fresh temporary directory holding `files`, then removes it. */
async function withFiles(
  files: Record<string, string>,
  body: (dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "tern_config_" }));
  try {
    for (const [name, text] of Object.entries(files)) {
      await Deno.mkdir(join(dir, name, ".."), { recursive: true });
      await Deno.writeTextFile(join(dir, name), text);
    }
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The problem lines of the ConfigError that `promise` rejects with. */
async function problemLines(promise: Promise<unknown>): Promise<string[]> {
  try {
    await promise;
  } catch (error: unknown) {
    if (error instanceof ConfigError) return error.message.split("\n");
    throw error;
  }
  assert.fail("expected a ConfigError");
}

const FULL_EXAMPLE = `
hostname: mx.example.test          # banner, EHLO, Received; default: the OS host name
data_dir: ./data                   # holds the queue store and, by default, the mail root
listeners:                         # default: one mx listener on 127.0.0.1:2525
  - { address: 127.0.0.1, port: 2525, mode: mx }          # MTA-to-MTA (port 25 rules)
  - { address: 127.0.0.1, port: 2587, mode: submission }  # STARTTLS, AUTH required before MAIL
  - { address: 127.0.0.1, port: 2465, mode: submissions } # implicit TLS (RFC 8314), AUTH required
tls:                               # needed by submission/submissions; offered as STARTTLS on mx
  cert: ./certs/cert.pem
  key: ./certs/key.pem
local_domains: [example.test]      # default: [localhost]
accounts:                          # local mailboxes; the key is the address users log in with
  alice@example.test: { password: "HASH" }
  bob@example.test: {}             # receives mail, cannot log in
aliases:                           # one target or a list; targets may be remote
  postmaster@example.test: alice@example.test
  team@example.test: [alice@example.test, bob@example.test]
mail_root: ./data/mail             # a mailbox is the Maildir <mail_root>/<domain>/<local-part>/
relay:
  trusted_networks: [127.0.0.0/8, "::1/128"]  # may relay without AUTH; [] = nobody
  routes:                          # next hop by recipient domain, "*" for the rest
    example.net: 127.0.0.1:2626    # host:port = connect there directly, no MX lookup
    "*": mx                        # mx = DNS MX lookup (the default)
dns:
  nameservers: ["127.0.0.1:5353"]  # optional; default: the system resolver
queue:
  retry: [1m, 5m, 15m, 1h, 4h]     # waits between attempts; the last one repeats
  max_age: 5d                      # then the message bounces
limits:
  max_message_size: 26214400       # bytes; advertised as SIZE
  max_recipients: 100
  max_connections: 1000
  max_connections_per_ip: 50
  command_timeout: 5m
  data_timeout: 10m
log:
  level: info                      # debug | info | warn | error
  format: text                     # text | json
`;

// Every bad configuration in tests/config/ must fail with exactly the lines of its .expected file.
const fixtures = hasPermissions ? [...Deno.readDirSync(FIXTURES)] : [];
if (!hasPermissions) {
  fileTest(
    "loadConfig() reports exactly the problems expected for each of tests/config/*.yaml",
    () => {},
  );
}
for (const entry of fixtures.sort((a, b) => a.name.localeCompare(b.name))) {
  if (!entry.name.endsWith(".yaml")) continue;
  const name = entry.name;
  fileTest(
    `loadConfig() reports exactly the problems expected for tests/config/${name}`,
    async () => {
      const expected = await Deno.readTextFile(
        join(FIXTURES, name.replace(/\.yaml$/, ".expected")),
      );
      const lines = await problemLines(loadConfig({ file: name, cwd: FIXTURES }));
      assert.deepEqual(lines, expected.trimEnd().split("\n"));
    },
  );
}

fileTest("loadConfig() reads a full example configuration", async () => {
  const hash = await hashPassword("s3cret");
  await withFiles({ "tern.yaml": FULL_EXAMPLE.replace("HASH", hash) }, async (dir) => {
    const config = await loadConfig({ file: "tern.yaml", cwd: dir });
    assert.equal(config.file, join(dir, "tern.yaml"));
    assert.equal(config.hostname, "mx.example.test");
    assert.deepEqual(config.listeners.map((l) => l.mode), ["mx", "submission", "submissions"]);
    assert.equal(config.tls?.cert, join(dir, "certs/cert.pem"));
    assert.equal(config.accounts["alice@example.test"]?.password, hash);
    assert.deepEqual(config.relay.trustedNetworks, ["127.0.0.0/8", "::1/128"]);
    assert.equal(config.queue.maxAge, 432_000_000);
    assert.equal(config.limits.dataTimeout, 600_000);
  });
});

fileTest("loadConfig() without a file uses ./tern.yaml when it exists", async () => {
  await withFiles({ "tern.yaml": "hostname: mx.example.test\n" }, async (dir) => {
    const config = await loadConfig({ cwd: dir });
    assert.equal(config.file, join(dir, "tern.yaml"));
    assert.equal(config.hostname, "mx.example.test");
  });
});

fileTest("loadConfig() without a file names ./tern.yaml in its problems as tern.yaml", async () => {
  await withFiles({ "tern.yaml": "limits: { max_recipient: 10 }\n" }, async (dir) => {
    assert.deepEqual(await problemLines(loadConfig({ cwd: dir })), [
      'tern.yaml: limits.max_recipient: unknown key (did you mean "max_recipients"?)',
    ]);
  });
});

fileTest(
  "loadConfig() without a file or ./tern.yaml gives the defaults, paths under cwd",
  async () => {
    await withFiles({}, async (dir) => {
      const config = await loadConfig({ cwd: dir });
      assert.deepEqual(config, validateConfig(null, { file: null, baseDir: dir }));
      assert.equal(config.file, null);
      assert.equal(config.dataDir, join(dir, "data"));
    });
  },
);

fileTest("loadConfig() takes an empty file as all defaults", async () => {
  await withFiles({ "empty.yaml": "", "comments.yaml": "# nothing set yet\n" }, async (dir) => {
    for (const file of ["empty.yaml", "comments.yaml"]) {
      const config = await loadConfig({ file, cwd: dir });
      assert.equal(config.file, join(dir, file));
      assert.deepEqual(config.listeners, [{ address: "127.0.0.1", port: 2525, mode: "mx" }]);
      assert.equal(config.mailRoot, join(dir, "data/mail"));
    }
  });
});

fileTest("loadConfig() resolves relative paths against the config file's directory", async () => {
  const yaml = "data_dir: spool\ntls: { cert: ../certs/cert.pem, key: /etc/tern/key.pem }\n";
  await withFiles({ "etc/tern.yaml": yaml }, async (dir) => {
    const config = await loadConfig({ file: "etc/tern.yaml", cwd: dir });
    assert.equal(config.file, join(dir, "etc/tern.yaml"));
    assert.equal(config.dataDir, join(dir, "etc/spool"));
    assert.equal(config.mailRoot, join(dir, "etc/spool/mail"));
    assert.deepEqual(config.tls, { cert: join(dir, "certs/cert.pem"), key: "/etc/tern/key.pem" });
  });
});

fileTest("loadConfig() names the file as the user gave it in its problems", async () => {
  await withFiles({ "etc/tern.yaml": "log: { level: loud }\n" }, async (dir) => {
    assert.deepEqual(await problemLines(loadConfig({ file: "etc/tern.yaml", cwd: dir })), [
      'etc/tern.yaml: log.level: expected one of debug, info, warn, error, found "loud"',
    ]);
  });
});

fileTest("loadConfig() reports a file it cannot read", async () => {
  await withFiles({ "sub/x": "" }, async (dir) => {
    assert.deepEqual(await problemLines(loadConfig({ file: "nope.yaml", cwd: dir })), [
      "nope.yaml: cannot read: no such file",
    ]);
    assert.deepEqual(await problemLines(loadConfig({ file: "sub", cwd: dir })), [
      "sub: cannot read: is a directory",
    ]);
  });
});

fileTest("loadConfig() gives the line and column of a YAML syntax error", async () => {
  await withFiles(
    { "t.yaml": "hostname: mx.example.test\nlimits:\n  max_recipients: [1, 2\n" },
    async (dir) => {
      const lines = await problemLines(loadConfig({ file: "t.yaml", cwd: dir }));
      assert.equal(lines.length, 1);
      assert.match(lines[0] ?? "", /^t\.yaml: line \d+, column \d+: /);
    },
  );
});

fileTest("loadConfig() refuses a key that is a list", async () => {
  await withFiles({ "t.yaml": "? [a, b]\n: 1\n" }, async (dir) => {
    assert.deepEqual(await problemLines(loadConfig({ file: "t.yaml", cwd: dir })), [
      "t.yaml: line 1, column 3: a key must be a plain name, not a list or mapping",
    ]);
  });
});

fileTest("loadConfig() refuses an unknown YAML tag", async () => {
  await withFiles(
    { "t.yaml": "hostname: !!binary bXg=\nlog: { level: !shout info }\n" },
    async (dir) => {
      const lines = await problemLines(loadConfig({ file: "t.yaml", cwd: dir }));
      assert.ok(
        lines.some((line) => line.startsWith("t.yaml: line 2, column 15: ")),
        lines.join("\n"),
      );
    },
  );
});

fileTest("formatConfig() output loads back to the same configuration", async () => {
  const yaml = FULL_EXAMPLE.replace('{ password: "HASH" }', "{}")
    .replace("max_message_size: 26214400", "max_message_size: 1000")
    .replace('nameservers: ["127.0.0.1:5353"]', 'nameservers: ["::1", "192.0.2.53"]');
  await withFiles({ "a/tern.yaml": yaml }, async (dir) => {
    const config = await loadConfig({ file: "a/tern.yaml", cwd: dir });
    await Deno.writeTextFile(join(dir, "b.yaml"), formatConfig(config));
    const again = await loadConfig({ file: "b.yaml", cwd: dir });
    assert.deepEqual({ ...again, file: config.file }, config);
  });
});

fileTest("formatConfig() output of the defaults loads back to the defaults", async () => {
  await withFiles({}, async (dir) => {
    const config = await loadConfig({ cwd: dir });
    await Deno.writeTextFile(join(dir, "tern.yaml"), formatConfig(config));
    const again = await loadConfig({ cwd: dir });
    assert.deepEqual({ ...again, file: null }, config);
  });
});

fileTest("formatConfig() writes durations and sizes as people do", () => {
  const text = formatConfig(validateConfig(
    { limits: { max_message_size: "10M", command_timeout: "300s" }, queue: { max_age: "48h" } },
    { file: null, baseDir: "/srv" },
  ));
  assert.match(text, /^ {2}max_message_size: 10M$/m);
  assert.match(text, /^ {2}command_timeout: 5m$/m);
  assert.match(text, /^ {2}max_age: 2d$/m);
  assert.match(text, /^ {2}retry: \[1m, 5m, 15m, 1h, 4h\]$/m);
});

fileTest(
  "formatConfig() writes the abuse limits and the submission policy, and reads them back",
  async () => {
    const yaml = "limits: { greeting_delay: 0s, max_bad_commands: 7, auth_failure_delay: 1500ms, " +
      "auth_lockout: 30m }\nsubmission: { sender_must_match: false }\n";
    await withFiles({ "tern.yaml": yaml }, async (dir) => {
      const config = await loadConfig({ cwd: dir });
      const text = formatConfig(config);
      assert.match(text, /^ {2}greeting_delay: 0s$/m);
      assert.match(text, /^ {2}max_bad_commands: 7$/m);
      assert.match(text, /^ {2}max_auth_failures: 5$/m);
      assert.match(text, /^ {2}auth_failure_delay: 1500ms$/m);
      assert.match(text, /^ {2}auth_lockout: 30m$/m);
      assert.match(text, /^submission:\n {2}sender_must_match: false$/m);
      await Deno.writeTextFile(join(dir, "tern.yaml"), text);
      assert.deepEqual(await loadConfig({ cwd: dir }), config);
    });
  },
);

fileTest("formatConfig() prints <hash> instead of a password hash", async () => {
  const hash = await hashPassword("s3cret");
  const config = validateConfig(
    { accounts: { "alice@localhost": { password: hash }, "bob@localhost": {} } },
    { file: null, baseDir: "/srv" },
  );
  const text = formatConfig(config);
  assert.ok(!text.includes(hash));
  assert.ok(!text.includes("$scrypt$"));
  assert.match(text, /^ {2}alice@localhost: \{ ?password: "<hash>" ?\}$/m);
  assert.match(text, /^ {2}bob@localhost: \{\}$/m);
});

fileTest(
  "loadConfig() reads secret files for the server, and leaves them out when asked (a CLI run by another user)",
  async () => {
    const yaml = `local_domains: [example.test]
relay:
  routes:
    "*": { host: "[smtp.example.net]:587", tls: require, auth: { username: u@example.net, password_file: ./missing.secret } }
`;
    await withFiles({ "tern.yaml": yaml }, async (dir) => {
      await assert.rejects(
        () => loadConfig({ file: "tern.yaml", cwd: dir }),
        (error: unknown) =>
          error instanceof ConfigError && /password_file: cannot read/.test(error.message),
      );
      const config = await loadConfig({ file: "tern.yaml", cwd: dir, readSecrets: false });
      assert.equal(config.relay.routes["*"], "smtp.example.net:587");
    });
  },
);

fileTest(
  "formatConfig() prints and reloads every section: checks, block lists, LMTP, Dovecot, store",
  async () => {
    const yaml = "hostname: mx.example.test\n" +
      "authentication: { authserv_id: auth.example.test, spf: false, dmarc_reject: false }\n" +
      "dnsbl: [zen.example, { zone: bl.example, codes: [127.0.0.2] }, { zone: wl.example, allow: true }]\n" +
      'milters: ["127.0.0.1:11332", { address: unix:/run/opendkim.sock, eom_timeout: 30s,' +
      " default_action: accept, listeners: [submission, submissions] }]\n" +
      "admin: { port: 9100 }\n" +
      "mailbox_transport: lmtp:[::1]:24\n" +
      "submission: { auth: dovecot:/run/dovecot/auth-client }\n" +
      "queue: { store: postgres://tern:secret@db.example.test:5432/tern, lease: 90s }\n" +
      "relay: { mta_sts: false, dane: true }\n";
    await withFiles({ "a/tern.yaml": yaml }, async (dir) => {
      const config = await loadConfig({ file: "a/tern.yaml", cwd: dir, readSecrets: false });
      const text = formatConfig(config);
      assert.match(text, /^ {2}authserv_id: auth\.example\.test$/m);
      assert.match(text, /^mailbox_transport: lmtp:\[::1\]:24$/m);
      assert.match(text, /^ {2}- address: 127\.0\.0\.1:11332$/m);
      assert.match(text, /^ {4}default_action: accept$/m);
      assert.doesNotMatch(text, /secret/);
      await Deno.writeTextFile(join(dir, "b.yaml"), text.replace(":hidden@", ":secret@"));
      const again = await loadConfig({ file: "b.yaml", cwd: dir, readSecrets: false });
      assert.deepEqual({ ...again, file: config.file }, config);
    });
  },
);

fileTest(
  "formatConfig() writes relay.tls_rpt and mta_sts_policy, and reads them back",
  async () => {
    const yaml = "tls: { cert: cert.pem, key: key.pem }\nlocal_domains: [example.test]\n" +
      "relay: { tls_rpt: { enabled: false, organization: Example Org, contact: tls@example.test } }\n" +
      "mta_sts_policy: { mode: testing, mx: [mx1.example.test, '*.mx.example.test'], " +
      "max_age: 2d, listen: { address: 127.0.0.1, port: 8443 } }\n";
    await withFiles({ "tern.yaml": yaml }, async (dir) => {
      const config = await loadConfig({ cwd: dir });
      assert.deepEqual(config.relay.tlsRpt, {
        enabled: false,
        organization: "Example Org",
        contact: "tls@example.test",
      });
      assert.deepEqual(config.mtaStsPolicy, {
        mode: "testing",
        mx: ["mx1.example.test", "*.mx.example.test"],
        maxAge: 2 * 86_400_000,
        listen: { address: "127.0.0.1", port: 8443 },
      });
      const text = formatConfig(config);
      assert.match(text, /^ {2}tls_rpt:\n {4}enabled: false$/m);
      assert.match(text, /^mta_sts_policy:\n {2}mode: testing$/m);
      await Deno.writeTextFile(join(dir, "tern.yaml"), text);
      assert.deepEqual(await loadConfig({ cwd: dir }), config);
    });
  },
);
