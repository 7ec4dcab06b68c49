// `tern dkim keygen`, `tern dns-records` and the dkim keys of the
// configuration, run as a user does, checked by dkimpy and opendkim-testkey.

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { join } from "node:path";
import { parseDkimKey } from "../auth/dkim_keys.ts";
import { DkimSigner } from "../auth/dkim_sign.ts";
import { tern } from "./_helpers.ts";
import { startDnsmasq } from "./_relay_fixtures.ts";

const PYTHON = "/usr/bin/python3";
const OPENDKIM_TESTKEY = "/usr/sbin/opendkim-testkey";

/** A record line as keygen prints it, read back: its name and its text (the strings joined). */
function parseRecordLine(line: string): { name: string; text: string; strings: string[] } {
  const m = /^(\S+)\. IN TXT ((?:"[^"]*" ?)+)$/.exec(line.trim());
  assert.ok(m, `not a TXT record line: ${line}`);
  const strings = [...m[2]!.matchAll(/"([^"]*)"/g)].map((s) => s[1]!);
  return { name: m[1]!, text: strings.join(""), strings };
}

/** dkimpy's verdict on a message, with `name` answering `text` in DNS. */
async function dkimpyVerifies(message: Uint8Array, name: string, text: string): Promise<boolean> {
  const script = `
import sys
try:
    import dkim, nacl
except ImportError as e:
    sys.exit("python3-dkim and python3-nacl are needed: %s" % e)
name, text = sys.argv[1].encode(), sys.argv[2].encode()
msg = sys.stdin.buffer.read()
print(dkim.verify(msg, dnsfunc=lambda n, timeout=5: text if n == name else None))
`;
  const child = new Deno.Command(PYTHON, {
    args: ["-c", script, `${name}.`, text],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(message);
  await writer.close();
  const out = await child.output();
  const stdout = new TextDecoder().decode(out.stdout).trim();
  if (!out.success) throw new Error(`dkimpy failed: ${new TextDecoder().decode(out.stderr)}`);
  return stdout === "True";
}

function signWith(pem: string, domain: string, selector: string, message: string): Uint8Array {
  const signing = new DkimSigner([parseDkimKey(pem, domain, selector)]).begin();
  signing.update(new TextEncoder().encode(message));
  const fields = signing.finish();
  assert.notEqual(fields, "");
  return new TextEncoder().encode(fields + message);
}

const MESSAGE =
  "From: Alice <alice@example.test>\r\nTo: bob@x.test\r\nSubject: keygen\r\n\r\nHi\r\n";

for (const algorithm of ["rsa", "ed25519"] as const) {
  Deno.test(`tern dkim keygen --algorithm ${algorithm}: a 0600 PKCS#8 key and a record dkimpy accepts`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "tern-dkim-" });
    try {
      const out = join(dir, "key.pem");
      const args = ["dkim", "keygen", "--domain", "example.test", "--selector", "s2026"];
      if (algorithm === "ed25519") args.push("--algorithm", "ed25519");
      const run = await tern([...args, "--out", out]);
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.stderr, "");
      const lines = run.stdout.trimEnd().split("\n");
      assert.equal(lines.length, 1, run.stdout);
      const record = parseRecordLine(lines[0]!);
      assert.equal(record.name, "s2026._domainkey.example.test");
      assert.match(record.text, new RegExp(`^v=DKIM1; k=${algorithm}; p=[A-Za-z0-9+/=]+$`));
      assert.ok(record.strings.every((s) => s.length <= 255));
      if (algorithm === "rsa") {
        assert.ok(record.strings.length >= 2, "2048-bit p= spans two strings");
      }
      const info = await Deno.stat(out);
      assert.equal(info.mode! & 0o777, 0o600);
      const pem = await Deno.readTextFile(out);
      assert.match(pem, /^-----BEGIN PRIVATE KEY-----\n/);
      assert.equal(parseDkimKey(pem, "example.test", "s2026").algorithm, `${algorithm}-sha256`);

      const signed = signWith(pem, "example.test", "s2026", MESSAGE);
      assert.equal(await dkimpyVerifies(signed, record.name, record.text), true);
      const changed = new TextEncoder().encode(
        new TextDecoder().decode(signed).replace("Hi\r\n", "Ho\r\n"),
      );
      assert.equal(await dkimpyVerifies(changed, record.name, record.text), false);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("tern dkim keygen never overwrites a key, and says what is wrong in one line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tern-dkim-" });
  try {
    const out = join(dir, "key.pem");
    await Deno.writeTextFile(out, "old key");
    const base = ["dkim", "keygen", "--domain", "example.test", "--selector", "s1"];
    const cases: [string[], RegExp][] = [
      [[...base, "--out", out], /^tern dkim: .*key\.pem already exists: not overwritten/],
      [
        [...base, "--algorithm", "dsa", "--out", join(dir, "b.pem")],
        /--algorithm must be rsa or ed25519/,
      ],
      [["dkim", "keygen", "--selector", "s1", "--out", join(dir, "c.pem")], /--domain is missing/],
      [[
        "dkim",
        "keygen",
        "--domain",
        "bad domain",
        "--selector",
        "s1",
        "--out",
        join(dir, "d.pem"),
      ], /not a domain name/],
      [["dkim", "rotate"], /unknown subcommand "rotate"/],
    ];
    const runs = await Promise.all(cases.map(([args]) => tern(args)));
    for (const [i, [args, expected]] of cases.entries()) {
      const run = runs[i]!;
      assert.equal(run.code, 1, args.join(" "));
      assert.equal(run.stdout, "");
      assert.equal(run.stderr.trimEnd().split("\n").length, 1, run.stderr);
      assert.match(run.stderr, expected);
    }
    assert.equal(await Deno.readTextFile(out), "old key");
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["key.pem"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("opendkim-testkey accepts the key tern dkim keygen made and the record it printed", async () => {
  try {
    await Deno.stat(OPENDKIM_TESTKEY);
  } catch {
    throw new Error(`${OPENDKIM_TESTKEY} is missing: apt-get install opendkim-tools`);
  }
  const dir = await Deno.makeTempDir({ prefix: "tern-dkim-" });
  try {
    const out = join(dir, "key.pem");
    const run = await tern([
      "dkim",
      "keygen",
      "--domain",
      "example.test",
      "--selector",
      "s1",
      "--out",
      out,
    ]);
    assert.equal(run.code, 0, run.stderr);
    const record = parseRecordLine(run.stdout);
    // dnsmasq takes the character-strings comma-separated.
    await using dns = await startDnsmasq(
      [
        `--txt-record=${record.name},${record.strings.join(",")}`,
        "--host-record=ready.example.test,127.0.0.1",
      ],
      ["example.test"],
      { ready: "ready.example.test" },
    );
    const [address, port] = dns.nameserver.split(":");
    // opendkim-testkey resolves with libunbound, which answers "test." locally unless told not to.
    await Deno.writeTextFile(
      join(dir, "unbound.conf"),
      `server:\n  do-not-query-localhost: no\n  module-config: "iterator"\n  local-zone: "test." nodefault\n` +
        `forward-zone:\n  name: "."\n  forward-addr: ${address}@${port}\n`,
    );
    await Deno.writeTextFile(
      join(dir, "opendkim.conf"),
      `ResolverConfiguration ${join(dir, "unbound.conf")}\n`,
    );
    const testkey = (key: string) =>
      new Deno.Command(OPENDKIM_TESTKEY, {
        args: [
          "-x",
          join(dir, "opendkim.conf"),
          "-d",
          "example.test",
          "-s",
          "s1",
          "-k",
          key,
          "-vvv",
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
    const ok = await testkey(out);
    const said = new TextDecoder().decode(ok.stdout) + new TextDecoder().decode(ok.stderr);
    assert.equal(ok.code, 0, said);
    assert.match(said, /key OK/);
    // Another key against the same record: opendkim-testkey must notice.
    const other = join(dir, "other.pem");
    assert.equal(
      (await tern([
        "dkim",
        "keygen",
        "--domain",
        "example.test",
        "--selector",
        "s1",
        "--out",
        other,
      ])).code,
      0,
    );
    const mismatch = await testkey(other);
    const refused = new TextDecoder().decode(mismatch.stdout) +
      new TextDecoder().decode(mismatch.stderr);
    assert.notEqual(mismatch.code, 0, refused);
    assert.match(refused, /keys do not match/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("tern dns-records prints MX, SPF, the configured DKIM keys' records and DMARC", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tern-dkim-" });
  try {
    await Deno.mkdir(join(dir, "dkim"));
    const keygen = ["dkim", "keygen", "--domain", "example.test"];
    const [rsa, ed] = await Promise.all([
      tern([...keygen, "--selector", "r2026", "--out", join(dir, "dkim/r.pem")]),
      tern([
        ...keygen,
        "--selector",
        "e2026",
        "--algorithm",
        "ed25519",
        "--out",
        join(dir, "dkim/e.pem"),
      ]),
    ]);
    assert.equal(rsa.code + ed.code, 0, rsa.stderr + ed.stderr);
    const file = join(dir, "tern.yaml");
    await Deno.writeTextFile(
      file,
      [
        "hostname: mx.example.test",
        "local_domains: [example.test]",
        "dkim:",
        "  keys:",
        "    - { domain: example.test, selector: r2026, key: ./dkim/r.pem }",
        "    - { domain: example.test, selector: e2026, key: ./dkim/e.pem }",
        "",
      ].join("\n"),
    );
    const [run, other, bad] = await Promise.all([
      tern(["dns-records", "Example.test.", "--config", file]),
      tern(["dns-records", "other.test", "--config", file]),
      tern(["dns-records", "--config", file]),
    ]);
    assert.equal(run.code, 0, run.stderr);
    const records = run.stdout.split("\n").filter((l) => l !== "" && !l.startsWith(";"));
    assert.deepEqual(records, [
      "example.test. IN MX 10 mx.example.test.",
      'example.test. IN TXT "v=spf1 mx -all"',
      rsa.stdout.trim(),
      ed.stdout.trim(),
      '_dmarc.example.test. IN TXT "v=DMARC1; p=quarantine; rua=mailto:postmaster@example.test"',
      '_smtp._tls.example.test. IN TXT "v=TLSRPTv1; rua=mailto:tls-reports@example.test"',
    ]);
    assert.match(run.stdout, /; DMARC \(RFC 7489\)/);
    assert.match(run.stdout, /quarantine/);
    assert.match(run.stdout, /MTA-STS/);

    assert.equal(other.code, 0, other.stderr);
    assert.match(other.stdout, /no key in dkim\.keys signs mail from other\.test/);
    assert.match(other.stdout, /tern dkim keygen --domain other\.test/);

    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^tern dns-records: which domain\?/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a dkim key that cannot be read or parsed: check-config and serve exit 1 with one line each", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tern-dkim-" });
  try {
    await Deno.writeTextFile(join(dir, "notakey.pem"), "hello\n");
    const file = join(dir, "tern.yaml");
    await Deno.writeTextFile(
      file,
      [
        "hostname: mx.example.test",
        `data_dir: ${join(dir, "data")}`,
        "listeners: [{ address: 127.0.0.1, port: 0, mode: mx }]",
        "dkim:",
        "  keys:",
        "    - { domain: example.test, selector: s1, key: ./missing.pem }",
        "    - { domain: example.test, selector: s2, key: ./notakey.pem }",
        "",
      ].join("\n"),
    );
    for (const command of ["check-config", "serve"]) {
      const run = await tern([command, "--config", file]);
      assert.equal(run.code, 1, `${command}: ${run.stdout}${run.stderr}`);
      assert.deepEqual(run.stderr.trimEnd().split("\n"), [
        `${file}: dkim.keys[0].key: cannot read ${join(dir, "missing.pem")}: no such file`,
        `${file}: dkim.keys[1].key: ${
          join(dir, "notakey.pem")
        }: not a PEM private key (no -----BEGIN line)`,
      ]);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the dkim keys of the configuration are parsed once, at load, and sign", async () => {
  const { validateConfig } = await import("../config/schema.ts");
  const dir = await Deno.makeTempDir({ prefix: "tern-dkim-" });
  try {
    const run = await tern([
      "dkim",
      "keygen",
      "--domain",
      "example.test",
      "--selector",
      "s1",
      "--algorithm",
      "ed25519",
      "--out",
      join(dir, "k.pem"),
    ]);
    assert.equal(run.code, 0, run.stderr);
    const raw = { dkim: { keys: [{ domain: "Example.TEST", selector: "s1", key: "k.pem" }] } };
    const config = validateConfig(raw, { file: "tern.yaml", baseDir: dir });
    const entry = config.dkim?.keys[0];
    assert.equal(entry?.key, join(dir, "k.pem"));
    assert.equal(entry?.domain, "example.test");
    assert.ok(entry?.parsed !== undefined);
    const signing = new DkimSigner([entry.parsed]).begin();
    signing.update(new TextEncoder().encode(MESSAGE));
    const fields = signing.finish();
    const record = parseRecordLine(run.stdout);
    const message = Buffer.concat([Buffer.from(fields), Buffer.from(MESSAGE)]);
    assert.equal(await dkimpyVerifies(message, record.name, record.text), true);
    // Without secrets (a CLI run by another user), the file is named but not read.
    const light = validateConfig(raw, { file: "tern.yaml", baseDir: dir, readSecrets: false });
    assert.equal(light.dkim?.keys[0]?.parsed, undefined);
    // A second key of the same algorithm for a domain would never sign: refused.
    assert.throws(
      () =>
        validateConfig({
          dkim: {
            keys: [
              { domain: "example.test", selector: "s1", key: "k.pem" },
              { domain: "example.test", selector: "s2", key: "k.pem" },
            ],
          },
        }, { file: "tern.yaml", baseDir: dir }),
      /dkim\.keys\[1\]: a second ed25519-sha256 key for example\.test/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
