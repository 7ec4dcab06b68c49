// ACME (RFC 8555) against Pebble, Let's Encrypt's test CA: tern starts with
// a temporary self-signed certificate, gets one from Pebble over http-01 or
// tls-alpn-01 (RFC 8737), serves it on STARTTLS and implicit TLS (seen with
// openssl s_client), renews it at two thirds of its lifetime without a
// restart, and keeps serving it when the CA is gone, logging
// acme.renew_failed. Debian packages: pebble, dnsmasq, openssl.

import assert from "node:assert/strict";
import { X509Certificate } from "node:crypto";
import { join } from "node:path";
import { loadConfig } from "../config/load.ts";
import { ConfigError } from "../config/errors.ts";
import { validateConfig } from "../config/schema.ts";
import { MemoryLogger } from "../log/logger.ts";
import { acmeRenewFailures } from "../metrics/tern.ts";
import { Mta } from "../mta/mta.ts";
import { AcmeClient } from "../acme/client.ts";
import { startHttp01Responder } from "../acme/http01.ts";
import { generateKeyPair } from "../acme/keys.ts";
import { createAlpnCertificate } from "../acme/tls_alpn01.ts";
import { tern, waitFor } from "./_helpers.ts";
import { parse } from "yaml";
import { formatConfig } from "../config/format.ts";
import { freePort, startDnsmasq } from "./_relay_fixtures.ts";
import { startPebble } from "./_pebble.ts";

const DOMAIN = "mx.example.test";
const decoder = new TextDecoder();

/** dnsmasq answering mx. and smtp.example.test with 127.0.0.1, for Pebble's validation. */
function dns() {
  return startDnsmasq(
    [`--host-record=${DOMAIN},127.0.0.1`, "--host-record=smtp.example.test,127.0.0.1"],
    ["example.test"],
    { ready: DOMAIN },
  );
}

/** What `openssl s_client` sees on a port: the leaf certificate. */
async function servedCertificate(port: number, starttls: boolean): Promise<X509Certificate> {
  const out = await new Deno.Command("openssl", {
    args: [
      "s_client",
      "-connect",
      `127.0.0.1:${port}`,
      "-servername",
      DOMAIN,
      ...(starttls ? ["-starttls", "smtp"] : []),
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = decoder.decode(out.stdout);
  const pem = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/.exec(text);
  assert.ok(pem, `openssl s_client saw no certificate:\n${text}\n${decoder.decode(out.stderr)}`);
  return new X509Certificate(pem[0]);
}

/** A configuration with an mx and a submissions listener and `tls.acme` as given. */
async function acmeConfig(acme: string) {
  const dir = await Deno.makeTempDir({ prefix: "tern-acme-" });
  const file = join(dir, "tern.yaml");
  await Deno.writeTextFile(
    file,
    `hostname: ${DOMAIN}
data_dir: ./data
listeners:
  - { address: 127.0.0.1, port: 0, mode: mx }
  - { address: 127.0.0.1, port: 0, mode: submissions }
tls:
  acme:
${acme.trim().split("\n").map((line) => `    ${line}`).join("\n")}
`,
  );
  return { dir, config: await loadConfig({ file }) };
}

function events(logger: MemoryLogger, event: string) {
  return logger.records.filter((r) => r.event === event);
}

function mode(path: string): number {
  return (Deno.statSync(path).mode ?? 0) & 0o777;
}

Deno.test("ACME http-01: a certificate from Pebble at start, renewed without a restart, kept when Pebble is gone", async (t) => {
  await using resolver = await dns();
  const httpPort = await freePort();
  // 12 s certificates: renewed every 8 s (two thirds of the lifetime).
  const pebble = await startPebble({
    dnsServer: resolver.nameserver,
    httpPort,
    validitySeconds: 12,
  });
  const { dir, config } = await acmeConfig(`
directory: ${pebble.directory}
ca_file: ${pebble.caFile}
contact: mailto:postmaster@example.test
address: 127.0.0.1
http_port: ${httpPort}
`);
  const logger = new MemoryLogger();
  const mta = await Mta.start(config, { logger, pollMs: 200 });
  const mx = mta.listeners[0]!.port;
  const submissions = mta.listeners[1]!.port;
  try {
    let first: X509Certificate | undefined;
    await t.step(
      "starts at once with a temporary self-signed certificate, then Pebble's",
      async () => {
        assert.equal(events(logger, "acme.temporary").length, 1);
        await waitFor(() => events(logger, "acme.issued").length >= 1, 20_000).catch((e) => {
          throw new Error(`no certificate: ${JSON.stringify(logger.records)}\n${pebble.output()}`, {
            cause: e,
          });
        });
        first = await servedCertificate(mx, true);
        assert.match(first.issuer, /Pebble/);
        assert.ok(first.subjectAltName?.includes(`DNS:${DOMAIN}`), first.subjectAltName);
        const implicit = await servedCertificate(submissions, false);
        assert.equal(implicit.serialNumber, first.serialNumber);
      },
    );

    await t.step("the account key and the certificate files are 0600 in a 0700 directory", () => {
      const acmeDir = join(config.dataDir, "acme");
      assert.equal(mode(acmeDir), 0o700);
      for (const name of ["account.key.pem", "key.pem", "cert.pem"]) {
        assert.equal(mode(join(acmeDir, name)), 0o600, name);
      }
    });

    await t.step("renewed before expiry: openssl sees a new serial, no restart", async () => {
      await waitFor(() => events(logger, "acme.issued").length >= 2, 20_000);
      const renewed = await waitFor(async () => {
        const c = await servedCertificate(mx, true);
        return c.serialNumber !== first!.serialNumber ? c : undefined;
      });
      assert.match(renewed.issuer, /Pebble/);
      assert.equal(events(logger, "acme.renew_failed").length, 0);
    });

    await t.step(
      "Pebble stopped: the renewal fails loudly, the old certificate keeps serving",
      async () => {
        await pebble.stop();
        const before = acmeRenewFailures.get();
        const serving = await servedCertificate(mx, true);
        const failed = await waitFor(() => events(logger, "acme.renew_failed")[0], 20_000);
        assert.equal(failed.level, "error");
        assert.match(String(failed.fields.error), /cannot reach/);
        assert.ok(acmeRenewFailures.get() > before);
        assert.equal((await servedCertificate(mx, true)).serialNumber, serving.serialNumber);
        assert.equal(
          (await servedCertificate(submissions, false)).serialNumber,
          serving.serialNumber,
        );
      },
    );
  } finally {
    await mta.stop(1000);
    await pebble[Symbol.asyncDispose]();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ACME tls-alpn-01: Pebble validates the acme-tls/1 answer and issues the certificate", async () => {
  await using resolver = await dns();
  const tlsPort = await freePort();
  await using pebble = await startPebble({
    dnsServer: resolver.nameserver,
    httpPort: await freePort(),
    tlsPort,
  });
  const { dir, config } = await acmeConfig(`
directory: ${pebble.directory}
ca_file: ${pebble.caFile}
challenge: tls-alpn-01
address: 127.0.0.1
tls_port: ${tlsPort}
`);
  const logger = new MemoryLogger();
  const mta = await Mta.start(config, { logger, pollMs: 200 });
  try {
    await waitFor(() => events(logger, "acme.issued").length >= 1, 20_000).catch((e) => {
      throw new Error(`no certificate: ${JSON.stringify(logger.records)}\n${pebble.output()}`, {
        cause: e,
      });
    });
    const served = await servedCertificate(mta.listeners[0]!.port, true);
    assert.match(served.issuer, /Pebble/);
  } finally {
    await mta.stop(1000);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ACME: a restart keeps the certificate on disk instead of ordering another", async () => {
  await using resolver = await dns();
  const httpPort = await freePort();
  await using pebble = await startPebble({ dnsServer: resolver.nameserver, httpPort });
  const { dir, config } = await acmeConfig(`
directory: ${pebble.directory}
ca_file: ${pebble.caFile}
address: 127.0.0.1
http_port: ${httpPort}
`);
  try {
    const logger = new MemoryLogger();
    let mta = await Mta.start(config, { logger, pollMs: 200 });
    await waitFor(() => events(logger, "acme.issued").length >= 1, 20_000);
    const issued = await servedCertificate(mta.listeners[0]!.port, true);
    await mta.stop(1000);
    const again = new MemoryLogger();
    mta = await Mta.start(config, { logger: again, pollMs: 200 });
    try {
      assert.equal(events(again, "acme.temporary").length, 0);
      const served = await servedCertificate(mta.listeners[0]!.port, true);
      assert.equal(served.serialNumber, issued.serialNumber);
    } finally {
      await mta.stop(1000);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ACME: with the CA unreachable tern still starts, serves the temporary certificate, and logs acme.renew_failed", async () => {
  const closed = await freePort();
  const { dir, config } = await acmeConfig(`
directory: https://127.0.0.1:${closed}/dir
address: 127.0.0.1
http_port: 0
`);
  const logger = new MemoryLogger();
  const mta = await Mta.start(config, { logger, pollMs: 200 });
  try {
    const failed = await waitFor(() => events(logger, "acme.renew_failed")[0]);
    assert.equal(failed.level, "error");
    assert.match(
      String(failed.fields.error),
      new RegExp(`cannot reach https://127.0.0.1:${closed}`),
    );
    assert.equal(failed.fields.retry_in, "300s");
    const served = await servedCertificate(mta.listeners[0]!.port, true);
    assert.ok(served.checkIssued(served), "the temporary certificate is self-signed");
    assert.ok(served.subjectAltName?.includes(`DNS:${DOMAIN}`));
  } finally {
    await mta.stop(1000);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ACME client: an order against Pebble, and the http-01 responder answers only known tokens", async () => {
  await using resolver = await dns();
  const httpPort = await freePort();
  await using pebble = await startPebble({ dnsServer: resolver.nameserver, httpPort });
  const responder = startHttp01Responder("127.0.0.1", httpPort);
  const client = new AcmeClient({
    directory: pebble.directory,
    accountKey: await generateKeyPair(),
    caCerts: [await Deno.readTextFile(pebble.caFile)],
  });
  try {
    const unknown = await fetch(`http://127.0.0.1:${httpPort}/.well-known/acme-challenge/nope`);
    await unknown.body?.cancel();
    assert.equal(unknown.status, 404);
    const issued = await client.obtainCertificate([DOMAIN, "smtp.example.test"], responder)
      .catch((e) => {
        throw new Error(`${e}\n${pebble.output()}`);
      });
    const leaf = new X509Certificate(issued.chainPem);
    assert.match(leaf.subjectAltName ?? "", /DNS:mx\.example\.test/);
    assert.match(leaf.subjectAltName ?? "", /DNS:smtp\.example\.test/);
    assert.ok(client.accountUrl?.startsWith("https://localhost:"));
  } finally {
    client.close();
    await responder.close();
  }
});

Deno.test("ACME: the tls-alpn-01 certificate carries the critical acmeIdentifier extension (RFC 8737 §3)", async () => {
  const { cert } = await createAlpnCertificate(DOMAIN, "token.thumbprint");
  const out = await new Deno.Command("openssl", {
    args: ["x509", "-noout", "-text"],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const writer = out.stdin.getWriter();
  await writer.write(new TextEncoder().encode(cert));
  await writer.close();
  const text = decoder.decode((await out.output()).stdout);
  assert.match(text, /1\.3\.6\.1\.5\.5\.7\.1\.31: critical/);
  assert.match(text, /DNS:mx\.example\.test/);
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-256", new TextEncoder().encode("token.thumbprint")),
  );
  const der = new X509Certificate(cert).raw;
  // OCTET STRING (32) of the digest, inside the extension's own OCTET STRING.
  const needle = [0x04, 0x20, ...digest].join(",");
  assert.ok([...der].join(",").includes(needle));
});

Deno.test("ACME configuration: defaults, and clear errors", () => {
  const at = { file: "tern.yaml", baseDir: "/srv/tern" };
  const config = validateConfig({
    hostname: DOMAIN,
    tls: { acme: { contact: "mailto:postmaster@example.test" } },
  }, at);
  assert.deepEqual(config.tls, {
    cert: "/srv/tern/data/acme/cert.pem",
    key: "/srv/tern/data/acme/key.pem",
    acme: {
      directory: "https://acme-v02.api.letsencrypt.org/directory",
      contact: ["mailto:postmaster@example.test"],
      domains: [DOMAIN],
      challenge: "http-01",
      address: "0.0.0.0",
      httpPort: 80,
      tlsPort: 443,
      caFile: null,
    },
  });
  // check-config prints it back as it was written, and that loads to the same.
  assert.deepEqual(validateConfig(parse(formatConfig(config)), at).tls, config.tls);
  assert.throws(
    () =>
      validateConfig({
        hostname: DOMAIN,
        tls: {
          cert: "c.pem",
          acme: {
            directory: "http://ca.example.test/dir",
            contact: "postmaster@example.test",
            domains: ["*.example.test"],
            challenge: "dns-01",
            http_port: 70000,
          },
        },
      }, at),
    (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.deepEqual(error.message.split("\n"), [
        "tern.yaml: tls.cert: leave out cert and key with acme (tern keeps its own under data_dir)",
        'tern.yaml: tls.acme.directory: expected the https:// URL of an ACME directory, found "http://ca.example.test/dir"',
        'tern.yaml: tls.acme.contact: expected a mailto: URL like mailto:postmaster@example.test, found "postmaster@example.test"',
        'tern.yaml: tls.acme.domains[0]: expected a domain name like mx.example.test (no wildcard), found "*.example.test"',
        'tern.yaml: tls.acme.challenge: expected http-01 or tls-alpn-01, found "dns-01"',
        "tern.yaml: tls.acme.http_port: expected a port number (0-65535), found 70000",
      ]);
      return true;
    },
  );
});

Deno.test("tern check-config accepts tls.acme before any certificate exists", async () => {
  const { dir } = await acmeConfig(`
directory: https://127.0.0.1:1/dir
ca_file: ./ca.pem
`);
  try {
    const result = await tern(["check-config", "--config", join(dir, "tern.yaml")]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^ {4}ca_file: .*ca\.pem$/m);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
