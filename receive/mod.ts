/**
 * Receive mail in a Deno program: {@linkcode receiveMail} starts an SMTP
 * server and calls your `onMessage` with each message, its envelope and a
 * light parse of its content ({@linkcode parseMessage}: header fields with
 * RFC 2047 encoded-words decoded, the Subject, the Message-ID and the first
 * text/plain part). tern's limits and its SMTP smuggling defence are on.
 *
 * @example Accept mail for one domain, print it, refuse the rest
 * ```ts
 * import { REPLIES, receiveMail } from "./mod.ts";
 *
 * const server = await receiveMail({
 *   port: 0,
 *   onRecipient: (address) => address.endsWith("@example.test") ? undefined : REPLIES.relayDenied,
 *   onMessage: (message) => console.log(message.envelope.from, message.subject, message.text),
 * });
 * console.log(`listening on ${server.address}:${server.port}`);
 * await server.close();
 * ```
 *
 * @module
 */

export {
  type HandlerResult,
  type MailReceiver,
  type ReceivedEnvelope,
  type ReceivedMessage,
  receiveMail,
  type ReceiveMailOptions,
} from "./receive_mail.ts";
export { type HeaderField, type ParsedMessage, parseMessage } from "./parse_message.ts";
export {
  decodeBase64,
  decodeCharset,
  decodeEncodedWords,
  decodeQuotedPrintable,
} from "./encoded_words.ts";
// The replies a handler returns to refuse, re-exported so one import suffices.
export { REPLIES, type Replies, type Reply, reply } from "../smtp/reply.ts";
