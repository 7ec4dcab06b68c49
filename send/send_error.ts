/**
 * {@linkcode SendError}: a message that reached no server at all. A server
 * that answers, even with a refusal, is a result, not this error.
 *
 * @module
 */

import type { Reply } from "../smtp/reply.ts";

/** Why one host (or one address of it) could not take the message. */
export interface HostFailure {
  /** The host as tried: `smtp.example.org:587`, or `mx1.example.net[192.0.2.1]:25`. */
  readonly host: string;
  /** What went wrong, in one line. */
  readonly reason: string;
  /** The server's refusal of the session, STARTTLS or AUTH, when it gave one. */
  readonly reply?: Reply;
}

/**
 * The message was not handed to any server: every host failed (no
 * connection, no TLS where it was required, refused AUTH, a DNS failure).
 * Nothing was delivered, so sending again later is safe.
 *
 * @example Tell a failure to connect from a refused recipient
 * ```ts
 * import { SendError } from "./send_error.ts";
 * const error = new SendError([{ host: "smtp.example.org:587", reason: "connection refused" }]);
 * console.log(error.message);
 * // "Cannot send: smtp.example.org:587: connection refused"
 * console.log(error instanceof SendError, error.failures.length); // true 1
 * ```
 */
export class SendError extends Error {
  /** Each host tried, in order, with why it failed. */
  readonly failures: readonly HostFailure[];

  /**
   * Makes the error; its message lists every host's failure.
   *
   * @param failures The hosts tried and why each failed.
   * @param options The underlying error, if there is one.
   */
  constructor(failures: readonly HostFailure[], options?: ErrorOptions) {
    const list = failures.map((f) => `${f.host}: ${f.reason}`).join("; ");
    super(`Cannot send: ${list === "" ? "no host to try" : list}`, options);
    this.name = "SendError";
    this.failures = failures;
  }
}
