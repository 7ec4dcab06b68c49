/**
 * A mail server of your own on tern's SMTP core: your handlers decide which
 * recipients to take, and where the messages go. This one takes mail for
 * one domain, refuses some recipients, and prints every message it accepts.
 *
 * ```sh
 * deno run -A examples/custom_server.ts --port 2525 --domain example.test
 * ```
 *
 * Then send it something: `examples/send_message.ts --server 127.0.0.1:2525
 * --to bob@example.test`. Ctrl-C stops it.
 *
 * @module
 */

import { parseArgs } from "node:util";
// In your own project, import these from "@tern/mta/smtp".
import {
  type Envelope,
  type MessageSink,
  queuedReply,
  REPLIES,
  type Reply,
  SmtpServer,
} from "../smtp/mod.ts";

const { values } = parseArgs({
  options: {
    address: { type: "string", default: "127.0.0.1" },
    port: { type: "string", default: "2525" }, // 0 picks a free port
    domain: { type: "string", default: "example.test" },
  },
});
const domain = values.domain.toLowerCase();

/** Our policy for RCPT TO. The reply is a value: a refusal is not an exception. */
function checkRecipient(forwardPath: string): Reply {
  const at = forwardPath.lastIndexOf("@");
  const localPart = forwardPath.slice(0, at).toLowerCase();
  if (forwardPath.slice(at + 1).toLowerCase() !== domain) {
    return REPLIES.relayDenied; // 554 5.7.1: we are not an open relay
  }
  if (localPart === "nobody" || localPart.startsWith("noreply")) {
    return REPLIES.noSuchUser; // 550 5.1.1
  }
  return REPLIES.recipientOk; // 250 2.1.5
}

let count = 0;

/** Where one message's content goes: here, memory; at the end, standard output. */
function printer(envelope: Envelope): MessageSink {
  const chunks: Uint8Array[] = [];
  return {
    write(chunk) {
      chunks.push(chunk.slice()); // the session reuses its buffers: keep a copy
      return Promise.resolve();
    },
    commit() {
      // A real server makes the message durable here, and only then answers 250 (RFC 5321 §6.1).
      const queueId = `EX${++count}`;
      const content = new TextDecoder().decode(concat(chunks));
      console.log(
        `--- message ${queueId} from <${envelope.reversePath}> to ` +
          envelope.forwardPaths.map((p) => `<${p}>`).join(", "),
      );
      console.log(content.trimEnd());
      console.log(`--- end of message ${queueId}`);
      return Promise.resolve(queuedReply(queueId));
    },
    abort() {
      chunks.length = 0;
      return Promise.resolve();
    },
  };
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const c of chunks) {
    out.set(c, offset);
    offset += c.length;
  }
  return out;
}

const server = new SmtpServer({
  hostname: `mx.${domain}`,
  address: values.address,
  port: Number(values.port),
  maxMessageSize: 10 * 1024 * 1024, // advertised as SIZE (RFC 1870)
  handlers: {
    // Every question of the session has a handler; sender() is optional (default: accept).
    recipient: (forwardPath) => checkRecipient(forwardPath),
    open: (envelope) => Promise.resolve(printer(envelope)),
  },
});
const bound = await server.listen();
console.log(`listening on ${bound.address}:${bound.port}`);

// Stop cleanly: stop accepting, let transactions in flight finish (up to a second).
const stop = async () => {
  await server.close(1000);
  Deno.exit(0);
};
Deno.addSignalListener("SIGINT", stop);
Deno.addSignalListener("SIGTERM", stop);
