// tern publishing its own MTA-STS policy (RFC 8461 §3.2, §3.3): the HTTPS
// listener of mta_sts_policy answers curl and tern's own policy fetcher
// (which verifies the certificate for mta-sts.<domain> against a test CA),
// refuses other hosts and paths, and `tern dns-records` prints the records
// that announce it.

import assert from "node:assert/strict";
import { Mta } from "../mta/mta.ts";
import { MemoryLogger } from "../log/logger.ts";
import { tempConfig, tern } from "./_helpers.ts";
import { startDnsmasq } from "./_relay_fixtures.ts";
import { makeTestCa } from "./_test_ca.ts";
import { fetchStsPolicy } from "../tls_policy/mta_sts_fetch.ts";
import { parseStsPolicy, parseStsRecord } from "../tls_policy/mta_sts_policy.ts";
import { answerRequest, policyId, policyText } from "../tls_policy/policy_server.ts";

const POLICY = {
  mode: "enforce" as const,
  mx: ["mx.example.test"],
  maxAge: 604_800_000,
  listen: { address: "127.0.0.1", port: 0 },
};

async function curl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("curl", {
      args: ["-sS", ...args],
      stdout: "piped",
      stderr: "piped",
    })
      .output();
  } catch (error: unknown) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Error("curl is not installed: this test needs it (Debian package curl)");
    }
    throw error;
  }
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

Deno.test("the policy file, its id, and which requests get it (RFC 8461 §3.2, §3.3)", () => {
  assert.equal(
    policyText(POLICY),
    "version: STSv1\r\nmode: enforce\r\nmx: mx.example.test\r\nmax_age: 604800\r\n",
  );
  assert.match(policyId(POLICY), /^[0-9a-f]{32}$/);
  assert.notEqual(policyId(POLICY), policyId({ ...POLICY, mode: "testing" }));
  const get = (host: string, path = "/.well-known/mta-sts.txt", method = "GET") =>
    answerRequest(`${method} ${path} HTTP/1.1\r\nHost: ${host}\r\n\r\n`, POLICY, ["example.test"]);
  assert.equal(get("mta-sts.example.test").status, 200);
  assert.equal(get("MTA-STS.Example.test:443").status, 200);
  assert.equal(get("mta-sts.other.test").status, 404);
  assert.equal(get("example.test").status, 404);
  assert.equal(get("mta-sts.example.test", "/").status, 404);
  assert.equal(get("mta-sts.example.test", undefined, "POST").status, 405);
  assert.equal(answerRequest("garbage\r\n\r\n", POLICY, ["example.test"]).status, 400);
  assert.equal(
    answerRequest(
      "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.test\r\n\r\n",
      undefined,
      [
        "example.test",
      ],
    ).status,
    404,
  );
});

Deno.test("mta_sts_policy: served over HTTPS to curl and to tern's own fetcher; dns-records prints the records", async () => {
  await using ca = await makeTestCa();
  const cert = await ca.issue(["mx.example.test", "mta-sts.example.test"]);
  await using dns = await startDnsmasq(
    ["--host-record=mta-sts.example.test,127.0.0.1"],
    [],
    { ready: "mta-sts.example.test" },
  );
  const { dir, file, config } = await tempConfig(
    `listeners: [{ address: 127.0.0.1, port: 0, mode: mx }]
tls: { cert: ${JSON.stringify(cert.cert)}, key: ${JSON.stringify(cert.key)} }
local_domains: [example.test]
mta_sts_policy: { mode: enforce, mx: [mx.example.test], max_age: 7d, listen: { address: 127.0.0.1, port: 0 } }
`,
  );
  const logger = new MemoryLogger();
  const mta = await Mta.start(config, { logger, pollMs: 50 });
  try {
    const port = mta.policyServer!.port;
    assert.ok(port > 0);
    const url = `https://mta-sts.example.test:${port}/.well-known/mta-sts.txt`;
    const resolve = `mta-sts.example.test:${port}:127.0.0.1`;
    const ok = await curl([
      "--resolve",
      resolve,
      "--cacert",
      ca.certFile,
      "-w",
      "\n%{http_code} %{content_type}",
      url,
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    const expected =
      "version: STSv1\r\nmode: enforce\r\nmx: mx.example.test\r\nmax_age: 604800\r\n";
    assert.equal(ok.stdout, `${expected}\n200 text/plain`);
    // Another host name, or another path: 404.
    const other = await curl([
      "--resolve",
      resolve,
      "--cacert",
      ca.certFile,
      "-H",
      "Host: mta-sts.other.test",
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      url,
    ]);
    assert.equal(other.stdout, "404");
    const path = await curl([
      "--resolve",
      resolve,
      "--cacert",
      ca.certFile,
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      `https://mta-sts.example.test:${port}/`,
    ]);
    assert.equal(path.stdout, "404");

    // tern's own MTA-STS fetcher (RFC 8461 §3.3) takes it, certificate checked.
    const { StubResolver } = await import("../dns/resolver.ts");
    const fetched = await fetchStsPolicy("example.test", {
      resolver: new StubResolver({ nameservers: [dns.nameserver] }),
      ca: [ca.pem],
      port,
      timeoutMs: 10_000,
    });
    assert.ok(fetched.ok, JSON.stringify(fetched));
    assert.deepEqual(parseStsPolicy(fetched.body), {
      mode: "enforce",
      mx: ["mx.example.test"],
      maxAge: 604800,
    });

    const records = await tern(["dns-records", "example.test", "--config", file]);
    assert.equal(records.code, 0, records.stderr);
    const id = policyId(config.mtaStsPolicy!);
    assert.ok(records.stdout.includes(`_mta-sts.example.test. IN TXT "v=STSv1; id=${id}"`));
    assert.deepEqual(parseStsRecord([[`v=STSv1; id=${id}`]]), { id });
    assert.ok(
      records.stdout.includes(
        '_smtp._tls.example.test. IN TXT "v=TLSRPTv1; rua=mailto:tls-reports@example.test"',
      ),
    );
    assert.match(records.stdout, /mta-sts\.example\.test\. IN CNAME mx\.example\.test\./);
    assert.match(records.stdout, /tls\.acme\.domains/);
  } finally {
    await mta.stop(500);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("mta_sts_policy: bad settings are one-line config errors", async () => {
  for (
    const [body, why] of [
      ["mta_sts_policy: { mode: enforce }\n", /mta_sts_policy: needs tls/],
      [
        "tls: { cert: c.pem, key: k.pem }\nmta_sts_policy: { mode: strict }\n",
        /mta_sts_policy\.mode: expected one of enforce, testing, none/,
      ],
      [
        "tls: { cert: c.pem, key: k.pem }\nmta_sts_policy: { max_age: 400d }\n",
        /mta_sts_policy\.max_age: expected whole seconds up to 365\.25 days/,
      ],
      [
        'tls: { cert: c.pem, key: k.pem }\nmta_sts_policy: { mx: ["not a host"] }\n',
        /mta_sts_policy\.mx\[0\]: expected a host name/,
      ],
      ["relay: { tls_rpt: { from: nobody } }\n", /relay\.tls_rpt\.from: expected a mail address/],
      ["relay: { tls_rpt: { enable: true } }\n", /relay\.tls_rpt\.enable: unknown key/],
    ] as const
  ) {
    const error = await tempConfig(body).then(() => null, (e: unknown) => e);
    assert.ok(error instanceof Error, body);
    assert.match(error.message, why);
  }
});
