/**
 * One log line for every refusal the SMTP server sends: every reply with a
 * code of 400 or more (RFC 5321 §4.2.1: 4yz transient, 5yz permanent), with
 * who was refused (client address, EHLO/HELO name, the user when logged
 * in), what was asked (the step, the sender, the recipients) and the reply
 * itself (code, enhanced status code, text).
 *
 * The level is `warn` when the enhanced status code is of the security or
 * policy class X.7.Y (RFC 3463 §3.8: relaying denied, authentication
 * required or failed, sender not owned, encryption required), `info` for
 * every other refusal (an unknown user, a message too big, a syntax error).
 *
 * @module
 */

import { cleanText } from "../log/fields.ts";
import type { Logger, LogLevel } from "../log/logger.ts";
import type { ServerLogEvent } from "../smtp/server.ts";
import { refusals } from "../metrics/tern.ts";

/** A reply the server sent, as it reports it. */
export type ReplyEvent = Extract<ServerLogEvent, { type: "reply" }>;

/**
 * The level of a refusal's line.
 *
 * @param enhancedStatus The reply's enhanced status code, if any.
 * @returns `warn` for X.7.Y (security or policy), else `info`.
 */
export function refusalLevel(enhancedStatus: string | undefined): LogLevel {
  return enhancedStatus !== undefined && /^[45]\.7\./.test(enhancedStatus) ? "warn" : "info";
}

/**
 * Logs a reply as `message.rejected` when it refuses something (code 400
 * or more); other replies are left to the trace.
 *
 * @param logger Where to.
 * @param event The reply the server sent.
 *
 * @example
 * ```ts ignore
 * // 2025-01-01T00:00:00.000Z warn - message.rejected session=000A client=192.0.2.7
 * //   helo=spam.example stage=rcpt from=<a@example.org> to=<b@example.net>
 * //   code=554 status=5.7.1 reply="Relay access denied"
 * ```
 */
export function logRefusal(logger: Logger, event: ReplyEvent): void {
  const { reply, connection, context } = event;
  if (reply.code < 400) return;
  refusals.inc({ code: String(reply.code) });
  logger.log(refusalLevel(reply.enhancedStatus), "message.rejected", undefined, {
    session: connection.id,
    client: connection.remoteAddress,
    port: connection.localPort,
    helo: context === undefined
      ? connection.clientName || undefined
      : context.clientName || undefined,
    user: connection.authenticatedAs ?? undefined,
    stage: context?.stage,
    from: context?.reversePath == null ? undefined : `<${context.reversePath}>`,
    to: context === undefined || context.forwardPaths.length === 0
      ? undefined
      : context.forwardPaths.map((p) => `<${p}>`).join(","),
    code: reply.code,
    status: reply.enhancedStatus,
    reply: cleanText(reply.lines.join(" ")),
  });
}
