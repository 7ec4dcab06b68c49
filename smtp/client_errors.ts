/**
 * The errors of the SMTP client's socket adapter: the connection failed or
 * was refused ({@linkcode SmtpConnectionError}), the TLS handshake failed
 * ({@linkcode TlsHandshakeError}), the login was refused
 * ({@linkcode SmtpAuthError}). `client.ts` re-exports them.
 *
 * @module
 */

import type { Reply } from "./reply.ts";
import type { TransactionResult } from "./client_session_types.ts";

/**
 * The connection to the server failed, timed out, or was refused, so no
 * recipient's fate is known: every recipient of a message in flight is
 * temporarily failed (retry later, perhaps at the next MX).
 *
 * @example Tell a refusal from a network failure
 * ```ts
 * import { SmtpConnectionError } from "./client.ts";
 * const error = new SmtpConnectionError("Server refused the session", {
 *   reply: { code: 554, lines: ["No SMTP service here"] },
 * });
 * console.log(error.reply?.code); // 554
 * ```
 */
export class SmtpConnectionError extends Error {
  /** The server's reply when it refused (a non-220 greeting, a refused EHLO, a 421), else `null`. */
  readonly reply: Reply | null;
  /**
   * LMTP only: the replies the server had given per recipient before the
   * connection failed (RFC 2033 §4.2), the others `451 4.4.2`; `null` when no
   * recipient had one.
   */
  readonly partial: TransactionResult | null;

  /**
   * Makes the error.
   *
   * @param message What failed, for logs.
   * @param options The server's reply, if it gave one, and the cause.
   */
  constructor(
    message: string,
    options: { reply?: Reply | null; cause?: unknown; partial?: TransactionResult | null } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "SmtpConnectionError";
    this.reply = options.reply ?? null;
    this.partial = options.partial ?? null;
  }
}

/**
 * The TLS handshake after STARTTLS failed. In opportunistic mode the caller
 * may connect again with `tls: "none"` and send in plaintext (RFC 7435;
 * docs/smtp-pitfalls.md: opportunistic TLS), and should log that it did.
 *
 * @example Fall back to plaintext
 * ```ts ignore
 * import { SmtpClient, TlsHandshakeError } from "./client.ts";
 * const options = { host: "mx.example.test", port: 25, helo: "client.example.test" };
 * let client: SmtpClient;
 * try {
 *   client = await SmtpClient.connect(options);
 * } catch (error: unknown) {
 *   if (!(error instanceof TlsHandshakeError)) throw error;
 *   client = await SmtpClient.connect({ ...options, tls: "none" });
 * }
 * ```
 */
export class TlsHandshakeError extends SmtpConnectionError {
  /**
   * Makes the error.
   *
   * @param message What failed, for logs.
   * @param options The cause.
   */
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, options);
    this.name = "TlsHandshakeError";
  }
}

/**
 * The server refused our AUTH (RFC 4954 §6), or could not be asked (no AUTH
 * offered, or no TLS to send a password over); `reply` is the server's
 * answer when it gave one. The connection is closed.
 */
export class SmtpAuthError extends SmtpConnectionError {
  /**
   * Makes the error.
   *
   * @param message What failed, for logs.
   * @param options The server's reply, if any.
   */
  constructor(message: string, options: { reply?: Reply | null } = {}) {
    super(message, options);
    this.name = "SmtpAuthError";
  }
}
