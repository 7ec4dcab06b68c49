/**
 * Inbound mail authentication against real DNS (dnsmasq on loopback) and
 * real signers (dkimpy): SPF results, DKIM verification of messages dkimpy
 * signed, DMARC verdicts and policies, the Authentication-Results field on
 * top, forged ones removed, and a forged From: refused over a real socket.
 */

import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { join } from "node:path";
import { Verification } from "../auth/verify.ts";
import { StubResolver } from "../dns/resolver.ts";
import { debianPython, maildirFiles, startMta, tern, waitForMail } from "./_helpers.ts";
import { type Dnsmasq, freePort, startDnsmasq } from "./_relay_fixtures.ts";

/** An RSA key for `s1._domainkey.signed.test`, its DNS value split into strings of at most 255 octets. */
const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const PRIVATE_PEM = privateKey.export({ type: "pkcs1", format: "pem" }).toString();
const PUBLIC_B64 = publicKey.export({ type: "spki", format: "der" }).toString("base64");
const KEY_RECORD = `v=DKIM1; k=rsa; p=${PUBLIC_B64}`;
const KEY_STRINGS = KEY_RECORD.match(/.{1,200}/g)!;

/** 11 `a:` terms: one past the 10 DNS-querying terms of RFC 7208 §4.6.4. */
const FANOUT = "v=spf1 " + Array.from({ length: 11 }, (_, i) => `a:h${i}.fanout.test`).join(" ") +
  " -all";

async function startDns(): Promise<Dnsmasq> {
  const deadPort = await freePort();
  const txt = (name: string, ...strings: string[]) =>
    // Each value one character-string (no quotes: dnsmasq keeps them; no commas in values).
    `--txt-record=${name},${strings.join(",")}`;
  return await startDnsmasq(
    [
      "--host-record=ready.test,127.0.0.1",
      txt("pass.test", "v=spf1 ip4:127.0.0.1 -all"),
      txt("fail.test", "v=spf1 ip4:192.0.2.1 -all"),
      txt("softfail.test", "v=spf1 ~all"),
      txt("neutral.test", "v=spf1 ?all"),
      "--host-record=none.test,192.0.2.9",
      txt("loop.test", "v=spf1 include:loop.test -all"),
      txt("fanout.test", FANOUT),
      txt("_dmarc.pass.test", "v=DMARC1; p=reject"),
      txt("_dmarc.fail.test", "v=DMARC1; p=reject"),
      txt("_dmarc.softfail.test", "v=DMARC1; p=quarantine"),
      txt("_dmarc.neutral.test", "v=DMARC1; p=none"),
      txt("signed.test", "v=spf1 -all"),
      txt("_dmarc.signed.test", "v=DMARC1; p=reject; adkim=s"),
      txt("s1._domainkey.signed.test", ...KEY_STRINGS),
      // An 8 KB key record of garbage (over UDP's 512 octets: truncated, then TCP).
      txt(
        "big._domainkey.signed.test",
        ...Array.from({ length: 40 }, () => "p=" + "A".repeat(198)),
      ),
      // A zone whose server does not answer: every lookup there fails for now.
      `--server=/dead.test/127.0.0.1#${deadPort}`,
    ],
    ["test"],
    { ready: "ready.test" },
  );
}

/** Signs a message with dkimpy (rsa-sha256, relaxed/relaxed). */
function dkimpySign(message: string, domain = "signed.test"): Promise<string> {
  const script = `
import dkim, sys
msg = sys.stdin.buffer.read()
sig = dkim.sign(msg, b"s1", sys.argv[1].encode(), sys.argv[2].encode(),
                canonicalize=(b"relaxed", b"relaxed"), include_headers=[b"from", b"to", b"subject"])
sys.stdout.buffer.write(sig + msg)
`;
  return debianPython(script, [domain, PRIVATE_PEM], message);
}

async function verify(
  dns: Dnsmasq,
  mailFrom: string,
  message: string,
  helo = "client.pass.test",
) {
  const check = Verification.start({
    authservId: "mx.example.test",
    resolver: new StubResolver({ nameservers: [dns.nameserver], timeoutMs: 300, attempts: 1 }),
    clientAddress: "127.0.0.1",
    helo,
    mailFrom,
    deadlineMs: 5_000,
  });
  const bytes = new TextEncoder().encode(message);
  // Split anywhere: the verifier reads a stream.
  for (let i = 0; i < bytes.length; i += 37) check.update(bytes.subarray(i, i + 37));
  return await check.finish();
}

const plain = (from: string) =>
  `From: <${from}>\r\nTo: <bob@example.test>\r\nSubject: hi\r\n\r\nHello\r\n`;

Deno.test("SPF gives each result the RFC defines, from real DNS", async () => {
  await using dns = await startDns();
  const cases: [string, string][] = [
    ["a@pass.test", "pass"],
    ["a@fail.test", "fail"],
    ["a@softfail.test", "softfail"],
    ["a@neutral.test", "neutral"],
    ["a@none.test", "none"],
    ["a@loop.test", "permerror"], // includes itself (RFC 7208 §5.2)
    ["a@fanout.test", "permerror"], // over the 10 lookups of §4.6.4
    ["a@dead.test", "temperror"], // its DNS does not answer (§2.6.6)
  ];
  const verdicts = await Promise.all(cases.map(([from]) => verify(dns, from, plain(from))));
  cases.forEach(([from, expected], i) => {
    const spf = verdicts[i]!.spf.find((v) => v.identity === "mailfrom");
    assert.equal(spf?.result, expected, `${from}: ${spf?.comment}`);
    assert.match(verdicts[i]!.header, new RegExp(`spf=${expected}\\b`));
  });
});

Deno.test("DMARC: aligned SPF passes; a forged From: fails with its domain's policy", async () => {
  await using dns = await startDns();
  const pass = await verify(dns, "a@pass.test", plain("a@pass.test"));
  assert.equal(pass.dmarc?.result, "pass");
  assert.equal(pass.dmarcRejects, false);

  const forged = await verify(dns, "a@pass.test", plain("ceo@fail.test"));
  assert.equal(forged.dmarc?.result, "fail");
  assert.equal(forged.dmarc?.policy, "reject");
  assert.equal(forged.dmarcRejects, true);
  assert.match(forged.header, /dmarc=fail .*header\.from=fail\.test/);

  const quarantine = await verify(dns, "a@pass.test", plain("x@softfail.test"));
  assert.equal(quarantine.dmarc?.result, "fail");
  assert.equal(quarantine.dmarc?.policy, "quarantine");
  assert.equal(quarantine.dmarcRejects, false);

  const monitor = await verify(dns, "a@pass.test", plain("x@neutral.test"));
  assert.equal(monitor.dmarc?.policy, "none");
  assert.equal(monitor.dmarcRejects, false);

  const none = await verify(dns, "a@pass.test", plain("x@none.test"));
  assert.equal(none.dmarc?.result, "none");
});

Deno.test("DKIM: a dkimpy signature verifies (key split over TXT strings); a changed body fails", async () => {
  await using dns = await startDns();
  const signed = await dkimpySign(plain("news@signed.test"));
  const good = await verify(dns, "bounces@fail.test", signed);
  assert.equal(good.dkim.length, 1);
  assert.equal(good.dkim[0]?.result, "pass", good.dkim[0]?.comment);
  assert.equal(good.dkim[0]?.domain, "signed.test");
  // SPF fails for fail.test, but the DKIM domain is aligned (strictly): DMARC passes.
  assert.equal(good.dmarc?.result, "pass");
  assert.match(good.header, /dkim=pass .*header\.d=signed\.test/);

  const tampered = await verify(dns, "bounces@fail.test", signed.replace("Hello", "Pay now"));
  assert.equal(tampered.dkim[0]?.result, "neutral"); // body hash did not verify (RFC 6376 §6.1.3)
  assert.equal(tampered.dmarc?.result, "fail");
  assert.equal(tampered.dmarcRejects, true);
});

Deno.test("hostile: fifty malformed signatures end in bounded time and questions", async () => {
  await using dns = await startDns();
  const sigs = Array.from(
    { length: 50 },
    (_, i) =>
      `DKIM-Signature: v=1; a=rsa-sha256; d=s${i}.test; s=x; h=from; bh=; b=${"A".repeat(i)}\r\n`,
  ).join("") + "DKIM-Signature: garbage;;;==\r\n" +
    "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=signed.test; s=big; h=from; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA\r\n";
  const started = Date.now();
  const verdict = await verify(dns, "a@pass.test", sigs + plain("a@pass.test"));
  assert.ok(Date.now() - started < 10_000);
  assert.ok(verdict.queries <= 64, `${verdict.queries} DNS questions`);
  assert.ok(verdict.dkim.every((d) => d.result !== "pass"));
  assert.ok(verdict.dkim.length >= 51, `${verdict.dkim.length} results`);
  const big = verdict.dkim.find((d) => d.selector === "big");
  assert.match(`${big?.result} ${big?.comment}`, /^(neutral|permerror|fail) /);
  assert.equal(verdict.spf[0]?.result, "pass");
});

Deno.test("over a real socket: a forged From: of a p=reject domain is refused with 550 5.7.1", async () => {
  await using dns = await startDns();
  await using t = await startMta(
    `local_domains: [example.test]\naccounts: { bob@example.test: {} }\n` +
      `relay: { trusted_networks: [] }\ndns: { nameservers: ["${dns.nameserver}"] }\n`,
  );
  const result = await smtplibSend(t.port, "a@pass.test", plain("ceo@fail.test"));
  assert.match(result, /^550 5\.7\.1 .*fail\.test/);
  const rejected = t.logger.records.find((r) => r.event === "message.rejected");
  assert.match(String(rejected?.fields.auth), /dmarc=fail:reject/);
  assert.deepEqual(await maildirFiles(join(t.dir, "data", "mail", "example.test", "bob")), []);
});

Deno.test("over a real socket: results on top, a forged one naming us removed, verdicts logged", async () => {
  await using dns = await startDns();
  await using t = await startMta(
    `local_domains: [example.test]\naccounts: { bob@example.test: {} }\n` +
      `relay: { trusted_networks: [] }\ndns: { nameservers: ["${dns.nameserver}"] }\n`,
  );
  const forged = "Authentication-Results: mx.example.test; dkim=pass header.d=bank.test\r\n" +
    "Authentication-Results: other.example; spf=pass\r\n";
  const signed = await dkimpySign(forged + plain("news@signed.test"));
  const reply = await smtplibSend(t.port, "a@pass.test", signed);
  assert.match(reply, /^250 /);
  const [mail] = await waitForMail(join(t.dir, "data", "mail", "example.test", "bob"), 1);
  const text = new TextDecoder().decode(mail);
  const header = text.slice(0, text.indexOf("\r\n\r\n"));
  const fields = header.split(/\r\n(?![ \t])/);
  // Return-Path and Delivered-To from delivery, then ours on top of the Received.
  assert.match(fields[2]!, /^Authentication-Results: mx\.example\.test;/);
  assert.match(fields[2]!, /spf=pass/);
  assert.match(fields[2]!, /dkim=pass .*header\.d=signed\.test/);
  assert.match(fields[2]!, /dmarc=pass .*header\.from=signed\.test/);
  assert.match(fields[3]!, /^Received: /);
  assert.equal(
    fields.filter((f) => /^Authentication-Results: mx\.example\.test/i.test(f)).length,
    1,
  );
  assert.ok(fields.some((f) => f.startsWith("Authentication-Results: other.example;")));
  const accepted = t.logger.records.find((r) => r.event === "message.accepted");
  assert.match(String(accepted?.fields.auth), /spf=pass .*dkim=pass:signed\.test dmarc=pass/);
});

Deno.test("over a real socket: DNS that does not answer gives temperror and the message is taken", async () => {
  await using dns = await startDns();
  await using t = await startMta(
    `local_domains: [example.test]\naccounts: { bob@example.test: {} }\n` +
      `relay: { trusted_networks: [] }\ndns: { nameservers: ["${dns.nameserver}"] }\n`,
  );
  const reply = await smtplibSend(t.port, "a@dead.test", plain("a@dead.test"));
  assert.match(reply, /^250 /);
  const [mail] = await waitForMail(join(t.dir, "data", "mail", "example.test", "bob"), 1);
  const text = new TextDecoder().decode(mail);
  assert.match(text, /spf=temperror/);
  assert.match(text, /dmarc=temperror|dmarc=none/);
});

/** Sends one message with smtplib; returns the final reply as "code text". */
async function smtplibSend(port: number, mailFrom: string, message: string): Promise<string> {
  const script = `
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), local_hostname="client.pass.test")
try:
    s.sendmail(sys.argv[2], ["bob@example.test"], sys.stdin.buffer.read())
    print("250 ok")
except smtplib.SMTPDataError as e:
    print(e.smtp_code, e.smtp_error.decode())
s.quit()
`;
  return (await debianPython(script, [String(port), mailFrom], message)).trim();
}

Deno.test("tern check-auth explains each step with its RFC section, and exits 2 on a DMARC fail", async () => {
  await using dns = await startDns();
  const dir = await Deno.makeTempDir();
  try {
    const config = join(dir, "tern.yaml");
    await Deno.writeTextFile(
      config,
      `hostname: mx.example.test\ndata_dir: ${dir}/data\ndns: { nameservers: ["${dns.nameserver}"] }\n`,
    );
    const signed = await dkimpySign(plain("news@signed.test"));
    const args = ["check-auth", "--config", config, "--client-ip", "127.0.0.1", "--helo", "c.test"];
    const good = await tern([...args, "--mail-from", "a@pass.test"], signed);
    assert.equal(good.code, 0, good.stderr);
    assert.match(good.stdout, /TXT pass\.test: "v=spf1 ip4:127\.0\.0\.1 -all"/);
    assert.match(good.stdout, /result: pass .*§2\.6\.3/);
    assert.match(good.stdout, /key record TXT s1\._domainkey\.signed\.test \(§3\.6\.2\)/);
    assert.match(good.stdout, /body hash \(§3\.7\): computed (\S+), claimed bh=\1: they match/);
    assert.match(good.stdout, /DKIM alignment \(strict, §4\.4\.1\): signed\.test aligns/);
    assert.match(good.stdout, /Authentication-Results: mx\.example\.test;/);

    const bad = await tern([...args, "--mail-from", "a@pass.test"], signed.replace("Hello", "Pay"));
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stdout, /they differ: the body changed on the way/);
    assert.match(bad.stdout, /result: fail; policy: reject \(tern refuses this message/);

    const usage = await tern(["check-auth", "--client-ip", "nope"], "x");
    assert.equal(usage.code, 1);
    assert.equal(usage.stderr.trim().split("\n").length, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
