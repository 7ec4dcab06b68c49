// rspamd as tern's milter: Debian's rspamd, its proxy worker in milter mode
// scanning itself, on a loopback port with a private configuration
// (tests/_milter.ts), DNS through dnsmasq on loopback (no answers from the
// Internet). It refuses the GTUBE test message with a 5xx after the data,
// and adds its header fields to clean mail.

import assert from "node:assert/strict";
import { join } from "node:path";
import { python, startMta, waitForMail } from "./_helpers.ts";
import { startRspamd } from "./_milter.ts";
import { startDnsmasq } from "./_relay_fixtures.ts";

const GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/** Sends one message; prints the reply to its data (or to the first refused command). */
const SEND = `
import smtplib, sys
port, body = int(sys.argv[1]), sys.argv[2]
s = smtplib.SMTP("127.0.0.1", port, timeout=120)
try:
    s.sendmail("sender@example.org", ["alice@example.test"], body.encode())
    print("250")
except smtplib.SMTPDataError as e:
    print(e.smtp_code, e.smtp_error.decode())
s.quit()
`;

function message(subject: string, text: string): string {
  return "From: Sender <sender@example.org>\r\nTo: alice@example.test\r\n" +
    `Subject: ${subject}\r\nDate: Sat, 5 Dec 2026 10:00:00 +0000\r\n` +
    `Message-ID: <${crypto.randomUUID()}@example.org>\r\n\r\n${text}\r\n`;
}

Deno.test("rspamd as a milter: GTUBE is refused with a 5xx, clean mail gets its header fields", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tern-rspamd-" });
  await using dns = await startDnsmasq([], ["#"]);
  const rspamd = await startRspamd(dir, dns.nameserver);
  try {
    await using t = await startMta(
      "limits: { greeting_delay: 0s }\nlocal_domains: [example.test]\n" +
        `milters: ["127.0.0.1:${rspamd.port}"]\n`,
    );
    const spam = await python(SEND, [String(t.port), message("Test", `This is spam.\r\n${GTUBE}`)]);
    assert.match(spam.trim(), /^554 5\.7\.1 /, `GTUBE answered: ${spam}`);
    const clean = await python(SEND, [String(t.port), message("Lunch", "See you at noon.")]);
    assert.equal(clean.trim(), "250");
    const [mail] = await waitForMail(join(t.dir, "data", "mail", "example.test", "alice"), 1);
    const header = new TextDecoder().decode(mail).split("\r\n\r\n")[0]!;
    assert.match(header, /^X-Spam-Status: /m);
    assert.match(header, /^X-Rspamd-Server: /m);
    // rspamd names the message by tern's queue id: the macro i.
    const queueId = /with ESMTP id (\S+)/.exec(header)?.[1];
    assert.match(header, new RegExp(`^X-Rspamd-Queue-Id: ${queueId}$`, "m"));
    assert.match(header, /^Subject: Lunch$/m);
  } catch (error: unknown) {
    const log = await Deno.readTextFile(join(dir, "rspamd.log")).catch(() => "");
    throw new Error(
      `${error instanceof Error ? error.message : error}\nrspamd log: ${log.slice(-2000)}`,
      {
        cause: error,
      },
    );
  } finally {
    await rspamd.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
