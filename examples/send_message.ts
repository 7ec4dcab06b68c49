/**
 * Sends one message with tern's SMTP client, and says what the server
 * answered for each recipient, with the rule behind each reply.
 *
 * ```sh
 * deno run -A examples/send_message.ts --server 127.0.0.1:2525 \
 *   --from alice@client.example.test --to bob@example.test --subject "Hello"
 * ```
 *
 * Exits 0 when every recipient was accepted, 1 otherwise.
 *
 * @module
 */

import { parseArgs } from "node:util";
// In your own project, import these from "@tern/mta/smtp".
import {
  annotateReply,
  formatAnnotation,
  formatDate,
  formatReply,
  isPositive,
  SmtpClient,
} from "../smtp/mod.ts";

const { values } = parseArgs({
  options: {
    server: { type: "string" }, // host:port
    from: { type: "string", default: "alice@client.example.test" },
    to: { type: "string", multiple: true },
    subject: { type: "string", default: "Hello from tern" },
    body: { type: "string", default: "This message was sent with tern's SmtpClient." },
    helo: { type: "string", default: "client.example.test" },
  },
});
const [host, port] = (values.server ?? "").split(/:(?=[0-9]+$)/);
if (!host || !port || !values.to?.length) {
  console.error(
    "usage: deno run -A examples/send_message.ts --server HOST:PORT --to RCPT [--to RCPT...] " +
      "[--from SENDER] [--subject TEXT] [--body TEXT]",
  );
  Deno.exit(2);
}
const recipients = values.to;

// RFC 5322: header fields, an empty line, the body; every line ends with CRLF.
// A subject with non-ASCII characters is written as an RFC 2047 encoded-word.
const subject = /^[\x20-\x7e]*$/.test(values.subject)
  ? values.subject
  : `=?utf-8?B?${btoa(String.fromCharCode(...new TextEncoder().encode(values.subject)))}?=`;
const message = [
  `Date: ${formatDate(new Date())}`,
  `From: <${values.from}>`,
  `To: ${recipients.map((r) => `<${r}>`).join(", ")}`,
  `Subject: ${subject}`,
  `Message-ID: <${crypto.randomUUID()}@${values.helo}>`,
  "MIME-Version: 1.0",
  "Content-Type: text/plain; charset=utf-8",
  "Content-Transfer-Encoding: 8bit",
  "",
  ...values.body.split(/\r?\n/),
  "",
].join("\r\n");
const content = new TextEncoder().encode(message);

// Connect, read the greeting, say EHLO, and use STARTTLS when the server offers it.
const client = await SmtpClient.connect({ host, port: Number(port), helo: values.helo });
try {
  // The envelope (RFC 5321 §2.3.1) travels beside the content: MAIL FROM, then RCPT TO per recipient.
  const result = await client.send(
    {
      reversePath: values.from,
      recipients: recipients.map((address) => ({ address })),
      body: content.every((b) => b < 0x80) ? "7BIT" : "8BITMIME",
      smtputf8: false,
      size: content.length,
    },
    () => ReadableStream.from([content]),
  );
  // Each recipient has its own fate: refused at RCPT, or the final reply to the content.
  for (const r of result.recipients) {
    const line = formatReply(r.reply, true).split("\r\n")[0];
    console.log(`<${r.address}>: ${line}`);
    // The reply to the content ends the transaction for every accepted recipient.
    const answers = r.reply === result.reply ? "content" : "RCPT";
    console.log(`    ${formatAnnotation(annotateReply(r.reply, { answers }))}`);
  }
  Deno.exitCode = result.recipients.every((r) => isPositive(r.reply)) ? 0 : 1;
} finally {
  await client.close(); // QUIT, then close the connection
}
