// OpenDKIM as tern's milter: Debian's opendkim in sign mode on a loopback
// port (tests/_milter.ts) signs a message through the milter interface (its
// DKIM-Signature comes back as a header field to insert), and dkimpy
// verifies the delivered message against the public key.

import assert from "node:assert/strict";
import { join } from "node:path";
import { startMta, waitForMail } from "./_helpers.ts";
import { startOpenDkim, SYSTEM_PYTHON } from "./_milter.ts";

async function run(command: string, args: string[], stdin?: Uint8Array): Promise<Uint8Array> {
  const child = new Deno.Command(command, {
    args,
    stdin: stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(stdin);
    await writer.close();
  }
  const out = await child.output();
  if (!out.success) {
    throw new Error(`${command} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return out.stdout;
}

/** Verifies the message on stdin with dkimpy, the key given for every DNS query; prints the result. */
const VERIFY = `
import sys, dkim
record = ("v=DKIM1; k=rsa; p=" + sys.argv[1]).encode()
message = sys.stdin.buffer.read()
print(dkim.verify(message, dnsfunc=lambda name, timeout=5: record))
`;

Deno.test("OpenDKIM as a milter signs, and dkimpy verifies the signature", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tern-opendkim-" });
  const keyPem = await run("openssl", ["genrsa", "2048"]);
  const publicDer = await run("openssl", ["rsa", "-pubout", "-outform", "DER"], keyPem);
  const publicKey = btoa(String.fromCharCode(...publicDer));
  const opendkim = await startOpenDkim(dir, "example.org", "sel", new TextDecoder().decode(keyPem));
  try {
    await using t = await startMta(
      "limits: { greeting_delay: 0s }\nlocal_domains: [example.test]\n" +
        `milters: ["127.0.0.1:${opendkim.port}"]\n`,
    );
    const sent = await run(SYSTEM_PYTHON, [
      "-c",
      `import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=60)
s.sendmail("a@example.org", ["alice@example.test"], b"From: A <a@example.org>\\r\\nTo: alice@example.test\\r\\nSubject: signed by a milter\\r\\nDate: Sat, 5 Dec 2026 10:00:00 +0000\\r\\nMessage-ID: <m1@example.org>\\r\\n\\r\\nHello,\\r\\n\\r\\nthis is signed.\\r\\n")
s.quit()
print("sent")`,
      String(t.port),
    ]);
    assert.equal(new TextDecoder().decode(sent).trim(), "sent");
    const [mail] = await waitForMail(join(t.dir, "data", "mail", "example.test", "alice"), 1);
    const text = new TextDecoder().decode(mail);
    assert.match(text, /^DKIM-Signature: v=1; a=rsa-sha256; c=relaxed\/relaxed; d=example\.org;/m);
    const verdict = await run(SYSTEM_PYTHON, ["-c", VERIFY, publicKey], mail);
    assert.equal(new TextDecoder().decode(verdict).trim(), "True");
  } catch (error: unknown) {
    const log = await opendkim.log();
    throw new Error(`${error instanceof Error ? error.message : error}\nopendkim log: ${log}`, {
      cause: error,
    });
  } finally {
    await opendkim.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
