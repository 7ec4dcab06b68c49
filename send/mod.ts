/**
 * Sending mail from a Deno program: {@linkcode sendMail} builds a message
 * and hands it to a smarthost (STARTTLS or implicit TLS, AUTH) or straight
 * to the recipients' MX hosts, and returns what each server answered.
 *
 * @example Send to a server on this machine
 * ```ts
 * import { sendMail } from "./mod.ts";
 * import { reply, SmtpServer } from "../mod.ts";
 * const server = new SmtpServer({
 *   hostname: "mx.example.test", address: "127.0.0.1", port: 0,
 *   handlers: {
 *     recipient: () => reply(250, "2.1.5", "Ok"),
 *     open: () => Promise.resolve({
 *       write: () => Promise.resolve(),
 *       commit: () => Promise.resolve(reply(250, "2.0.0", "Ok: queued")),
 *       abort: () => Promise.resolve(),
 *     }),
 *   },
 * });
 * const { port } = await server.listen();
 * const result = await sendMail(
 *   { from: "alice@example.test", to: "bob@example.test", subject: "Hi", text: "Hello" },
 *   { smarthost: `127.0.0.1:${port}`, tls: "none", hostname: "client.example.test" },
 * );
 * console.log(result.accepted); // ["bob@example.test"]
 * await server.close();
 * ```
 *
 * @module
 */

export {
  type DkimKeyOption,
  type RejectedRecipient,
  sendMail,
  type SendOptions,
  type SendResult,
} from "./send_mail.ts";
export { type HostFailure, SendError } from "./send_error.ts";
// The types sendMail's signature speaks in, for callers that import only this module.
export type { AddressInput, Attachment, MailOptions } from "../message/build.ts";
export type { Reply } from "../smtp/reply.ts";
