import assert from "node:assert/strict";
import { ConfigError } from "./errors.ts";
import {
  type Config,
  defaultHostname,
  validateConfig,
  type ValidateConfigOptions,
} from "./schema.ts";

const AT_SRV: ValidateConfigOptions = { file: "tern.yaml", baseDir: "/srv/tern" };
const HASH =
  "$scrypt$ln=15,r=8,p=1$MuE9jkt/4x/jXtiwLf3kVw$MHADKunhFM1Q8UmDOe6HieXUW4jwfM/PL6nqJ6eBlw8";

/** The problem lines validateConfig() throws for `raw`, or [] when it is valid. */
function problemsOf(raw: unknown, options = AT_SRV): string[] {
  try {
    validateConfig(raw, options);
    return [];
  } catch (error: unknown) {
    if (!(error instanceof ConfigError)) throw error;
    return error.message.split("\n");
  }
}

Deno.test("validateConfig() with no file gives a complete configuration for a working server", () => {
  const config = validateConfig(null, { file: null, baseDir: "/srv/tern" });
  const expected: Config = {
    file: null,
    hostname: defaultHostname(),
    dataDir: "/srv/tern/data",
    listeners: [{ address: "127.0.0.1", port: 2525, mode: "mx" }],
    tls: null,
    localDomains: ["localhost"],
    accounts: {},
    aliases: {},
    mailRoot: "/srv/tern/data/mail",
    relay: {
      trustedNetworks: ["127.0.0.0/8", "::1/128"],
      routes: { "*": "mx" },
      maxConnections: 20,
      maxConnectionsPerDestination: 4,
    },
    dns: { nameservers: null },
    queue: {
      retry: [60_000, 300_000, 900_000, 3_600_000, 14_400_000],
      maxAge: 432_000_000,
      delayWarning: 14_400_000,
      deliverAtAcceptance: true,
    },
    limits: {
      maxMessageSize: 26_214_400,
      maxRecipients: 100,
      maxConnections: 1000,
      maxConnectionsPerIp: 50,
      commandTimeout: 300_000,
      dataTimeout: 600_000,
      tlsHandshakeTimeout: 10_000,
      greetingDelay: 1000,
      shutdownGrace: 10_000,
      maxBadCommands: 20,
      maxAuthFailures: 5,
      authFailureDelay: 1000,
      authLockout: 900_000,
      userMessagesPerHour: 500,
      userRecipientsPerDay: 2000,
    },
    log: { level: "info", format: "text" },
    submission: { senderMustMatch: true },
    authentication: {
      authservId: defaultHostname(),
      spf: true,
      dkim: true,
      dmarc: true,
      dmarcReject: true,
    },
    workers: "auto",
  };
  assert.deepEqual(config, expected);
});

Deno.test("validateConfig() takes the OS host name as the default hostname", () => {
  const canReadHostname =
    Deno.permissions.querySync({ name: "sys", kind: "hostname" }).state === "granted";
  const name = canReadHostname ? Deno.hostname() : "";
  const expected = /^[A-Za-z0-9.-]+$/.test(name) ? name : "localhost"; // without --allow-sys: localhost
  assert.equal(validateConfig({}, AT_SRV).hostname, expected);
});

Deno.test("validateConfig() reads a full example configuration", () => {
  const config = validateConfig({
    hostname: "mx.example.test",
    data_dir: "./data",
    listeners: [
      { address: "127.0.0.1", port: 2525, mode: "mx" },
      { address: "127.0.0.1", port: 2587, mode: "submission" },
      { address: "127.0.0.1", port: 2465, mode: "submissions" },
    ],
    tls: { cert: "./certs/cert.pem", key: "./certs/key.pem" },
    local_domains: ["example.test"],
    accounts: { "alice@example.test": { password: HASH }, "bob@example.test": {} },
    aliases: {
      "postmaster@example.test": "alice@example.test",
      "team@example.test": ["alice@example.test", "bob@example.test"],
    },
    mail_root: "./data/mail",
    relay: {
      trusted_networks: ["127.0.0.0/8", "::1/128"],
      routes: { "example.net": "127.0.0.1:2626", "*": "mx" },
    },
    dns: { nameservers: ["127.0.0.1:5353"] },
    queue: { retry: ["1m", "5m", "15m", "1h", "4h"], max_age: "5d" },
    limits: {
      max_message_size: 26214400,
      max_recipients: 100,
      max_connections: 1000,
      max_connections_per_ip: 50,
      command_timeout: "5m",
      data_timeout: "10m",
    },
    log: { level: "info", format: "text" },
  }, AT_SRV);
  assert.equal(config.file, "/srv/tern/tern.yaml");
  assert.equal(config.hostname, "mx.example.test");
  assert.equal(config.listeners.length, 3);
  assert.deepEqual(config.tls, {
    cert: "/srv/tern/certs/cert.pem",
    key: "/srv/tern/certs/key.pem",
  });
  assert.deepEqual(config.accounts, {
    "alice@example.test": { password: HASH },
    "bob@example.test": {},
  });
  assert.deepEqual(config.aliases, {
    "postmaster@example.test": ["alice@example.test"],
    "team@example.test": ["alice@example.test", "bob@example.test"],
  });
  assert.equal(config.mailRoot, "/srv/tern/data/mail");
  assert.deepEqual(config.relay.routes, { "example.net": "127.0.0.1:2626", "*": "mx" });
  assert.deepEqual(config.dns.nameservers, ["127.0.0.1:5353"]);
  assert.deepEqual(config.queue.retry, [60_000, 300_000, 900_000, 3_600_000, 14_400_000]);
});

Deno.test("validateConfig() freezes the whole configuration", () => {
  const config = validateConfig({
    accounts: { "bob@localhost": {} },
    aliases: { "team@localhost": ["bob@localhost"] },
  }, AT_SRV);
  const objects: unknown[] = [
    config,
    config.listeners,
    config.listeners[0],
    config.localDomains,
    config.accounts,
    config.accounts["bob@localhost"],
    config.aliases,
    config.aliases["team@localhost"],
    config.relay,
    config.relay.trustedNetworks,
    config.relay.routes,
    config.dns,
    config.queue,
    config.queue.retry,
    config.limits,
    config.log,
    config.submission,
  ];
  for (const object of objects) assert.ok(Object.isFrozen(object));
  assert.throws(() => {
    (config.limits as { maxRecipients: number }).maxRecipients = 1;
  }, TypeError);
});

Deno.test("validateConfig() leaves the defaults it hands out unchanged", () => {
  const first = validateConfig({ relay: { routes: { "example.net": "mx" } } }, AT_SRV);
  const second = validateConfig({}, AT_SRV);
  assert.deepEqual(Object.keys(first.relay.routes), ["example.net", "*"]);
  assert.deepEqual(second.relay.routes, { "*": "mx" });
});

const normalized: { name: string; raw: Record<string, unknown>; check: (c: Config) => void }[] = [
  {
    name: "lower-cases local domains and drops repeats",
    raw: { local_domains: ["Example.TEST", "example.test", "other.test"] },
    check: (c) => assert.deepEqual(c.localDomains, ["example.test", "other.test"]),
  },
  {
    name: "lower-cases account addresses",
    raw: {
      local_domains: ["example.test"],
      accounts: { "Alice@Example.Test": { password: HASH } },
    },
    check: (c) => assert.deepEqual(Object.keys(c.accounts), ["alice@example.test"]),
  },
  {
    name: "takes an account left empty as one without a password",
    raw: { local_domains: ["example.test"], accounts: { "bob@example.test": null } },
    check: (c) => assert.deepEqual(c.accounts, { "bob@example.test": {} }),
  },
  {
    name: "lower-cases alias keys and target domains but keeps target local parts",
    raw: {
      local_domains: ["example.test"],
      aliases: { "Team@Example.test": ["Bob.Smith@Example.NET"] },
    },
    check: (c) => assert.deepEqual(c.aliases, { "team@example.test": ["Bob.Smith@example.net"] }),
  },
  {
    name: "gives a bare trusted address its full prefix length",
    raw: { relay: { trusted_networks: ["192.0.2.1", "2001:DB8::1", "10.0.0.0/8"] } },
    check: (c) =>
      assert.deepEqual(c.relay.trustedNetworks, ["192.0.2.1/32", "2001:db8::1/128", "10.0.0.0/8"]),
  },
  {
    name: "accepts an empty trusted_networks (nobody relays without AUTH)",
    raw: { relay: { trusted_networks: [] } },
    check: (c) => assert.deepEqual(c.relay.trustedNetworks, []),
  },
  {
    name: "adds port 53 to name servers given without one",
    raw: {
      dns: { nameservers: ["192.0.2.53", "::1", "[2001:db8::53]", "[::1]:5353", "127.0.0.1:5353"] },
    },
    check: (c) =>
      assert.deepEqual(c.dns.nameservers, [
        "192.0.2.53:53",
        "[::1]:53",
        "[2001:db8::53]:53",
        "[::1]:5353",
        "127.0.0.1:5353",
      ]),
  },
  {
    name: "keeps the catch-all route when the file routes only some domains",
    raw: {
      relay: { routes: { "Example.NET": "Relay.Example.NET:2525", "example.org": "[::1]:25" } },
    },
    check: (c) =>
      assert.deepEqual(c.relay.routes, {
        "example.net": "relay.example.net:2525",
        "example.org": "[::1]:25",
        "*": "mx",
      }),
  },
  {
    name: "lets the file replace the catch-all route",
    raw: { relay: { routes: { "*": "192.0.2.25:25" } } },
    check: (c) => assert.deepEqual(c.relay.routes, { "*": "192.0.2.25:25" }),
  },
  {
    name: "takes mx as a listener's mode when none is given",
    raw: { listeners: [{ address: "::1", port: 25 }] },
    check: (c) => assert.deepEqual(c.listeners, [{ address: "::1", port: 25, mode: "mx" }]),
  },
  {
    name: "allows several listeners on port 0 (any free port)",
    raw: { listeners: [{ address: "127.0.0.1", port: 0 }, { address: "127.0.0.1", port: 0 }] },
    check: (c) => assert.equal(c.listeners.length, 2),
  },
  {
    name: "resolves relative paths against the file's directory and keeps absolute ones",
    raw: {
      data_dir: "var",
      mail_root: "/var/mail/tern",
      tls: { cert: "c.pem", key: "/etc/k.pem" },
    },
    check: (c) => {
      assert.equal(c.dataDir, "/srv/tern/var");
      assert.equal(c.mailRoot, "/var/mail/tern");
      assert.deepEqual(c.tls, { cert: "/srv/tern/c.pem", key: "/etc/k.pem" });
    },
  },
  {
    name: "reads the abuse limits, zero turning a delay off",
    raw: {
      limits: {
        greeting_delay: "0s",
        max_bad_commands: 5,
        max_auth_failures: 3,
        auth_failure_delay: "250ms",
        auth_lockout: "1h",
      },
    },
    check: (c) => {
      assert.equal(c.limits.greetingDelay, 0);
      assert.equal(c.limits.maxBadCommands, 5);
      assert.equal(c.limits.maxAuthFailures, 3);
      assert.equal(c.limits.authFailureDelay, 250);
      assert.equal(c.limits.authLockout, 3_600_000);
    },
  },
  {
    name: "lets submission.sender_must_match be turned off",
    raw: { submission: { sender_must_match: false } },
    check: (c) => assert.deepEqual(c.submission, { senderMustMatch: false }),
  },
  {
    name: "puts the default mail root inside data_dir",
    raw: { data_dir: "/var/lib/tern" },
    check: (c) => assert.equal(c.mailRoot, "/var/lib/tern/mail"),
  },
  {
    name: "takes sections left empty as their defaults",
    raw: {
      tls: null,
      accounts: null,
      aliases: null,
      relay: null,
      dns: null,
      queue: null,
      limits: null,
      log: null,
    },
    check: (c) => {
      assert.equal(c.tls, null);
      assert.deepEqual(c.relay.routes, { "*": "mx" });
      assert.equal(c.limits.maxRecipients, 100);
    },
  },
  {
    name: "reads sizes with 1024-based suffixes and durations with units",
    raw: {
      limits: {
        max_message_size: "10M",
        command_timeout: "10m",
        data_timeout: "90s",
        tls_handshake_timeout: "5s",
      },
      queue: { retry: ["30s", "2h"], max_age: "1d" },
    },
    check: (c) => {
      assert.equal(c.limits.maxMessageSize, 10_485_760);
      assert.equal(c.limits.commandTimeout, 600_000);
      assert.equal(c.limits.dataTimeout, 90_000);
      assert.equal(c.limits.tlsHandshakeTimeout, 5_000);
      assert.deepEqual(c.queue.retry, [30_000, 7_200_000]);
      assert.equal(c.queue.maxAge, 86_400_000);
    },
  },
];
for (const c of normalized) {
  Deno.test(`validateConfig() ${c.name}`, () => {
    c.check(validateConfig(c.raw, AT_SRV));
  });
}

const hostnames = [
  { hostname: "mx.example.test", isValid: true },
  { hostname: "localhost", isValid: true },
  { hostname: "MX1.Example.test", isValid: true },
  { hostname: "[192.0.2.1]", isValid: true },
  { hostname: "[IPv6:2001:db8::1]", isValid: true },
  { hostname: "mx_1.example.test", isValid: false },
  { hostname: "-mx.example.test", isValid: false },
  { hostname: "mx..example.test", isValid: false },
  { hostname: "mx.example.test.", isValid: false },
  { hostname: "[::1]", isValid: false },
  { hostname: "[192.0.2.300]", isValid: false },
  { hostname: `${"a".repeat(64)}.test`, isValid: false },
];
for (const c of hostnames) {
  Deno.test(`validateConfig() ${c.isValid ? "accepts" : "refuses"} the hostname ${c.hostname}`, () => {
    assert.equal(problemsOf({ hostname: c.hostname }).length === 0, c.isValid);
  });
}

const addresses = [
  { address: "alice@example.test", isValid: true },
  { address: "alice.smith+tag@example.test", isValid: true },
  { address: "o'brien@example.test", isValid: true },
  { address: "jürgen@example.test", isValid: true },
  { address: "alice", isValid: false },
  { address: "@example.test", isValid: false },
  { address: "alice@", isValid: false },
  { address: ".alice@example.test", isValid: false },
  { address: "alice..smith@example.test", isValid: false },
  { address: '"alice smith"@example.test', isValid: false },
  { address: `${"a".repeat(65)}@example.test`, isValid: false },
];
for (const c of addresses) {
  Deno.test(`validateConfig() ${c.isValid ? "accepts" : "refuses"} the account ${c.address}`, () => {
    const raw = { local_domains: ["example.test"], accounts: { [c.address]: {} } };
    assert.equal(problemsOf(raw).length === 0, c.isValid);
  });
}

const problems: { name: string; raw: unknown; lines: string[]; file?: string | null }[] = [
  {
    name: "suggests the nearest known key for a misspelt one",
    raw: { limits: { max_recipient: 10 } },
    lines: ['tern.yaml: limits.max_recipient: unknown key (did you mean "max_recipients"?)'],
  },
  {
    name: "suggests the snake_case key for a camelCase one",
    raw: { dataDir: "x" },
    lines: ['tern.yaml: dataDir: unknown key (did you mean "data_dir"?)'],
  },
  {
    name: "suggests nothing when no key is near",
    raw: { smtp: {} },
    lines: ["tern.yaml: smtp: unknown key"],
  },
  {
    name: "says what was expected and what was found",
    raw: { limits: { max_recipients: "lots" } },
    lines: ['tern.yaml: limits.max_recipients: expected a positive integer, found "lots"'],
  },
  {
    name: "takes 0 as no sending limit, refuses a negative one",
    raw: { limits: { user_messages_per_hour: 0, user_recipients_per_day: -1 } },
    lines: [
      "tern.yaml: limits.user_recipients_per_day: expected 0 (no limit) or a positive integer, found -1",
    ],
  },
  {
    name: "refuses zero recipients",
    raw: { limits: { max_recipients: 0 } },
    lines: ["tern.yaml: limits.max_recipients: expected a positive integer, found 0"],
  },
  {
    name: "refuses an account outside local_domains",
    raw: { local_domains: ["example.test"], accounts: { "bob@other.test": {} } },
    lines: ['tern.yaml: accounts.bob@other.test: domain "other.test" is not in local_domains'],
  },
  {
    name: "refuses a password that is not a hash",
    raw: { accounts: { "x@localhost": { password: "hunter2" } } },
    lines: ['tern.yaml: accounts.x@localhost: password: not a hash made by "tern hash-password"'],
  },
  {
    name: "needs tls for a submission listener",
    raw: {
      listeners: [{ address: "127.0.0.1", port: 25 }, {
        address: "127.0.0.1",
        port: 587,
        mode: "submission",
      }],
    },
    lines: ['tern.yaml: listeners[1]: mode "submission" needs tls.cert and tls.key'],
  },
  {
    name: "refuses two listeners on the same address and port, however the address is written",
    raw: { listeners: [{ address: "::1", port: 25 }, { address: "0:0::1", port: 25 }] },
    lines: ["tern.yaml: listeners[1]: same address and port as listeners[0]"],
  },
  {
    name: "refuses a duration of zero",
    raw: { queue: { max_age: "0d" } },
    lines: ['tern.yaml: queue.max_age: must be longer than 0, found "0d"'],
  },
  {
    name: "refuses a sender_must_match that is not true or false",
    raw: { submission: { sender_must_match: "yes please" } },
    lines: ['tern.yaml: submission.sender_must_match: expected true or false, found "yes please"'],
  },
  {
    name: "refuses a negative or misspelt greeting delay, and zero AUTH failures",
    raw: {
      limits: {
        greeting_delay: "-1s",
        max_auth_failures: 0,
        auth_lockout: "0s",
        tls_handshake_timeout: "0s",
      },
    },
    lines: [
      'tern.yaml: limits.tls_handshake_timeout: must be longer than 0, found "0s"',
      'tern.yaml: limits.greeting_delay: not a duration: "-1s"',
      "tern.yaml: limits.max_auth_failures: expected a positive integer, found 0",
      'tern.yaml: limits.auth_lockout: must be longer than 0, found "0s"',
    ],
  },
  {
    name: "suggests the known key for a misspelt submission key",
    raw: { submission: { sender_must_macth: true } },
    lines: [
      'tern.yaml: submission.sender_must_macth: unknown key (did you mean "sender_must_match"?)',
    ],
  },
  {
    name: "refuses an empty list of name servers",
    raw: { dns: { nameservers: [] } },
    lines: [
      "tern.yaml: dns.nameservers: expected at least one name server (leave the key out for the system resolver)",
    ],
  },
  {
    name: "refuses a route that differs from another only in case",
    raw: { relay: { routes: { "example.net": "mx", "Example.NET": "mx" } } },
    lines: [
      "tern.yaml: relay.routes.Example.NET: listed twice (domains are compared in lower case)",
    ],
  },
  {
    name: "names the file (defaults) when there is none",
    raw: { log: { level: "loud" } },
    file: null,
    lines: ['(defaults): log.level: expected one of debug, info, warn, error, found "loud"'],
  },
  {
    name: "reports a document that is not a mapping without a key path",
    raw: "hostname",
    lines: ['tern.yaml: expected a mapping of settings (key: value lines), found "hostname"'],
  },
];
for (const c of problems) {
  Deno.test(`validateConfig() ${c.name}`, () => {
    const options = c.file === undefined ? AT_SRV : { file: c.file, baseDir: "/srv/tern" };
    assert.deepEqual(problemsOf(c.raw, options), c.lines);
  });
}

Deno.test("validateConfig() reports every problem, each with its file and key path", () => {
  try {
    validateConfig(
      { hostname: "bad_name", limits: { max_connections: 0 }, log: { format: "xml" } },
      AT_SRV,
    );
    assert.fail("validateConfig() should have thrown");
  } catch (error: unknown) {
    assert.ok(error instanceof ConfigError);
    assert.equal(error.name, "ConfigError");
    assert.deepEqual(
      error.problems.map((p) => [p.file, p.keyPath]),
      [["tern.yaml", "hostname"], ["tern.yaml", "limits.max_connections"], [
        "tern.yaml",
        "log.format",
      ]],
    );
  }
});

Deno.test("validateConfig() never repeats an account's value in a message (it may be a password)", () => {
  const lines = problemsOf({
    accounts: { "x@localhost": "hunter2", "y@localhost": { password: "hunter3" } },
  });
  assert.equal(lines.length, 2);
  for (const line of lines) assert.doesNotMatch(line, /hunter/);
});

Deno.test("validateConfig() reads workers: auto, a count from 0 to 64, and refuses anything else", () => {
  assert.equal(validateConfig({}, AT_SRV).workers, "auto");
  assert.equal(validateConfig({ workers: "auto" }, AT_SRV).workers, "auto");
  assert.equal(validateConfig({ workers: 0 }, AT_SRV).workers, 0);
  assert.equal(validateConfig({ workers: 4 }, AT_SRV).workers, 4);
  for (const bad of [-1, 65, 1.5, "two", true]) {
    assert.throws(
      () => validateConfig({ workers: bad }, AT_SRV),
      /workers: expected auto or a number of threads from 0 to 64/,
    );
  }
});
