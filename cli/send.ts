/**
 * `tern send`: the sendmail command line under its historical name; see
 * `sendmail.ts`. Every failure exits 1, as it always did.
 *
 * @module
 */

import { sendmailCommand } from "./sendmail.ts";

/**
 * Runs `tern send`.
 *
 * @param args The arguments after `send`.
 * @returns The exit code: 0, or 1 on any failure.
 */
export function sendCommand(args: string[]): Promise<number> {
  return sendmailCommand(args, "send");
}
