// Reloading the configuration of a running `tern serve` (SIGHUP, `tern
// reload`), and what check-config and the server say about settings that
// would only break at run time.

import assert from "node:assert/strict";
import { join } from "node:path";
import { validateConfig } from "../config/schema.ts";
import { MemoryLogger } from "../log/logger.ts";
import { Mta } from "../mta/mta.ts";
import { python, rawExchange, spawnServe, tempConfig, tern, waitFor } from "./_helpers.ts";

const BASE = `listeners: [{ address: 127.0.0.1, port: 0, mode: mx }]
local_domains: [example.test]
`;

/** The replies to EHLO, MAIL and one RCPT, pipelined. */
async function rcpt(port: number, to: string): Promise<string> {
  const out = await rawExchange(
    port,
    `EHLO client.example.net\r\nMAIL FROM:<someone@example.net>\r\nRCPT TO:<${to}>\r\nQUIT\r\n`,
  );
  return /^(\d{3} \d\.\d\.\d+)[^\r]*\r\n221/m.exec(out)?.[1] ?? out;
}

/**
 * A self-signed certificate and its key in `dir`, valid from `days` days
 * from now for one day (negative: already expired). Made with Python's
 * cryptography package: openssl 3.0's command line cannot back-date one.
 */
async function makeCert(
  dir: string,
  cn: string,
  days = 0,
): Promise<{ cert: string; key: string }> {
  await Deno.mkdir(dir, { recursive: true });
  const cert = join(dir, `${cn}.cert.pem`);
  const key = join(dir, `${cn}.key.pem`);
  await python(
    `import sys, datetime
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
k = ec.generate_private_key(ec.SECP256R1())
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, sys.argv[1])])
start = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=int(sys.argv[2]) - 1)
c = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(k.public_key())
     .serial_number(x509.random_serial_number()).not_valid_before(start)
     .not_valid_after(start + datetime.timedelta(days=1)).sign(k, hashes.SHA256()))
open(sys.argv[3], "wb").write(c.public_bytes(serialization.Encoding.PEM))
open(sys.argv[4], "wb").write(k.private_bytes(serialization.Encoding.PEM,
     serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
`,
    [cn, String(days), cert, key],
  );
  return { cert, key };
}

/** How many times a log line matching `pattern` has been written. */
function count(log: string, pattern: RegExp): number {
  return log.split("\n").filter((line) => pattern.test(line)).length;
}

Deno.test("tern serve reloads its configuration on SIGHUP and on tern reload, and keeps it when the new one is broken", async (t) => {
  const { dir, file } = await tempConfig(`${BASE}accounts:\n  alice@example.test: {}\n`);
  const server = await spawnServe(file);
  try {
    const reloaded = async (signal: () => Promise<void>, event: RegExp) => {
      const before = count(server.log(), event);
      await signal();
      await waitFor(() => count(server.log(), event) > before);
    };
    const hup = () => Promise.resolve(server.child.kill("SIGHUP"));
    const write = (body: string) =>
      Deno.writeTextFile(file, `hostname: mx.example.test\ndata_dir: ./data\n${body}`);

    await t.step("a new account is accepted after SIGHUP (550 5.1.1 before)", async () => {
      assert.equal(await rcpt(server.port, "bob@example.test"), "550 5.1.1");
      await write(`${BASE}accounts:\n  alice@example.test: {}\n  bob@example.test: {}\n`);
      await reloaded(hup, /config\.reloaded /);
      assert.match(server.log(), /config\.reloaded .*changed=accounts/);
      assert.equal(await rcpt(server.port, "bob@example.test"), "250 2.1.5");
    });

    await t.step(
      "a broken file is refused line by line, and the old configuration stays",
      async () => {
        await write(
          `${BASE}accounts:\n  alice@example.test: {}\n  carol@example.test: {}\n` +
            `aliases:\n  a@example.test: b@example.test\n  b@example.test: a@example.test\n` +
            `relay:\n  trusted_networks: [10.1.2.3/8]\n`,
        );
        await reloaded(hup, /config\.reload_failed .*kept=/);
        const log = server.log();
        assert.match(log, /config\.reload_failed error=.*aliases\.a@example\.test: alias loops/);
        assert.match(
          log,
          /config\.reload_failed error=.*relay\.trusted_networks\[0\]: host bits set in .*did you mean 10\.0\.0\.0\/8\?/,
        );
        // Still serving, with what was in force: bob yes, carol no.
        assert.equal(await rcpt(server.port, "bob@example.test"), "250 2.1.5");
        assert.equal(await rcpt(server.port, "carol@example.test"), "550 5.1.1");
      },
    );

    await t.step("a listener change is logged as needing a restart, the rest applies", async () => {
      const listening = count(server.log(), /server\.listening /);
      await write(
        `listeners:\n  - { address: 127.0.0.1, port: 0, mode: mx }\n  - { address: 127.0.0.1, port: 0, mode: mx }\n` +
          `local_domains: [example.test]\naccounts:\n  carol@example.test: {}\n`,
      );
      await reloaded(hup, /config\.reloaded /);
      assert.match(server.log(), /config\.restart_needed keys=listeners/);
      assert.equal(count(server.log(), /server\.listening /), listening);
      assert.equal(await rcpt(server.port, "carol@example.test"), "250 2.1.5");
      assert.equal(await rcpt(server.port, "bob@example.test"), "550 5.1.1");
    });

    await t.step("tern reload signals the server named by data_dir/tern.pid", async () => {
      await write(`${BASE}accounts:\n  dave@example.test: {}\n`);
      await reloaded(async () => {
        const out = await tern(["reload", "--config", file]);
        assert.equal(out.code, 0, out.stderr);
        assert.match(out.stdout, /asked tern serve \(pid \d+\) to reload/);
      }, /config\.reloaded /);
      assert.equal(await rcpt(server.port, "dave@example.test"), "250 2.1.5");
    });
  } finally {
    assert.equal(await server.stop(), 0);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("tern reload with no server running says so in one line", async () => {
  const { dir, file } = await tempConfig(BASE);
  try {
    const out = await tern(["reload", "--config", file]);
    assert.equal(out.code, 1);
    assert.match(out.stderr, /^tern reload: no tern serve is running on .*\n$/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an alias loop met at run time is 550 5.4.6, not a temporary error", async () => {
  const { dir, config } = await tempConfig(BASE);
  // check-config refuses loops; one can still arise (through a catch-all), so build it by hand.
  const looped = Object.freeze({
    ...config,
    aliases: Object.freeze({
      "a@example.test": Object.freeze(["b@example.test"]),
      "b@example.test": Object.freeze(["a@example.test"]),
    }),
  });
  const mta = await Mta.start(looped, { logger: new MemoryLogger(), pollMs: 200 });
  try {
    assert.equal(await rcpt(mta.listeners[0]!.port, "a@example.test"), "550 5.4.6");
  } finally {
    await mta.stop(1000);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("check-config refuses files that would break at run time; serve refuses them too, but starts with an expired certificate", async (t) => {
  const { dir, file } = await tempConfig(BASE);
  const good = await makeCert(dir, "mx.example.test", 1);
  const other = await makeCert(dir, "other.example.test", 1);
  const expired = await makeCert(join(dir, "expired"), "mx.example.test", -1);
  const write = (body: string) =>
    Deno.writeTextFile(file, `hostname: mx.example.test\n${BASE}${body}`);
  try {
    await t.step("a data_dir that is a file", async () => {
      await write(`data_dir: /etc/passwd\n`);
      const out = await tern(["check-config", "--config", file]);
      assert.equal(out.code, 1);
      assert.equal(
        out.stderr,
        `${file}: data_dir: /etc/passwd exists and is not a directory\n`,
      );
      const serve = await tern(["serve", "--config", file]);
      assert.equal(serve.code, 1);
      assert.equal(serve.stderr, out.stderr);
    });

    await t.step("a missing certificate, and a key that belongs to another one", async () => {
      await write(
        `data_dir: ./data\ntls: { cert: ./missing.pem, key: ${other.key} }\n`,
      );
      let out = await tern(["check-config", "--config", file]);
      assert.equal(out.code, 1);
      assert.match(out.stderr, /: tls\.cert: cannot read .*missing\.pem: no such file\n$/);
      await write(`data_dir: ./data\ntls: { cert: ${good.cert}, key: ${other.key} }\n`);
      out = await tern(["check-config", "--config", file]);
      assert.equal(out.code, 1);
      assert.match(out.stderr, /: tls\.key: .* does not belong to the certificate in /);
      const serve = await tern(["serve", "--config", file]);
      assert.equal(serve.code, 1);
      assert.equal(serve.stderr, out.stderr);
    });

    await t.step("an expired certificate: check-config fails, serve starts and warns", async () => {
      await write(`data_dir: ./data\ntls: { cert: ${expired.cert}, key: ${expired.key} }\n`);
      const out = await tern(["check-config", "--config", file]);
      assert.equal(out.code, 1);
      assert.match(out.stderr, /: tls\.cert: the certificate expired on \d{4}-\d\d-\d\dT/);
      const server = await spawnServe(file);
      try {
        assert.match(
          server.log(),
          /config\.warning warning=.*tls\.cert: the certificate expired on/,
        );
      } finally {
        assert.equal(await server.stop(), 0);
      }
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("validateConfig() accepts the host-bits-free forms of the same networks", () => {
  const config = validateConfig(
    {
      relay: {
        trusted_networks: ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "::ffff:10.0.0.0/104"],
      },
    },
    { file: null, baseDir: "/" },
  );
  assert.deepEqual(config.relay.trustedNetworks, [
    "10.0.0.0/8",
    "192.0.2.7/32",
    "2001:db8::/32",
    "::ffff:10.0.0.0/104",
  ]);
});
