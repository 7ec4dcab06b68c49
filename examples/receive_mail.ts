/**
 * Receive mail in your own program, in about ten lines: take mail for one
 * domain, print each message, refuse the rest.
 *
 * ```sh
 * deno run -A examples/receive_mail.ts 2525     # the port; 0 picks a free one
 * ```
 *
 * Then send it something: `examples/send_message.ts --server 127.0.0.1:2525
 * --to bob@example.test`. Ctrl-C stops it.
 *
 * @module
 */

// In your own project: import { REPLIES, receiveMail } from "@tern/mta/receive";
import { receiveMail, REPLIES } from "../receive/mod.ts";

const server = await receiveMail({
  port: Number(Deno.args[0] ?? 2525),
  // RCPT TO: nothing means yes; a reply value is the refusal the client gets.
  onRecipient: (address) => address.endsWith("@example.test") ? undefined : REPLIES.relayDenied,
  // After the final "." the content is complete: the envelope, the header fields, the text.
  onMessage: (message) => {
    console.log(`--- from <${message.envelope.from}> to ${message.envelope.to.join(", ")}`);
    console.log(`Subject: ${message.subject}\n\n${message.text}--- end`);
    // Returning nothing answers 250; return e.g. reply(550, "5.7.1", "No thanks") to refuse.
  },
});
console.log(`listening on ${server.address}:${server.port}`);
Deno.addSignalListener("SIGINT", () => server.close(1000).then(() => Deno.exit(0)));
Deno.addSignalListener("SIGTERM", () => server.close(1000).then(() => Deno.exit(0)));
