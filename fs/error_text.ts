/**
 * File-system errors as text fit for a sender or a queue listing: the
 * system's reason without the path. Deno words an error as
 * `Permission denied (os error 13): open '/var/lib/tern/mail/...'`; the path
 * belongs in the server log, never in a bounce (RFC 3464 `Diagnostic-Code`)
 * that a stranger can make tern send.
 *
 * @module
 */

/**
 * The errno name of a Deno file-system error, such as `"ENOTDIR"`.
 *
 * @param error What was thrown.
 * @returns The code, or `""` when there is none.
 *
 * @example
 * ```ts
 * import { errorCode } from "./error_text.ts";
 * try {
 *   await Deno.stat("/no/such/path");
 * } catch (error) {
 *   console.log(errorCode(error)); // "ENOENT"
 * }
 * ```
 */
export function errorCode(error: unknown): string {
  return typeof error === "object" && error !== null && "code" in error &&
      typeof error.code === "string"
    ? error.code
    : "";
}

/**
 * The reason of an error without any path: an OS error as the system's
 * words (strerror), and any other quoted absolute path as `'...'`.
 *
 * @param error What was thrown.
 * @returns One line, with no file-system path.
 *
 * @example
 * ```ts
 * import { errorReason } from "./error_text.ts";
 * try {
 *   await Deno.stat("/no/such/path");
 * } catch (error) {
 *   console.log(errorReason(error)); // "No such file or directory"
 * }
 * ```
 */
export function errorReason(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message
    // Deno: "<strerror> (os error N): <operation> '<path>'", the last part optional.
    .replace(/ \(os error \d+\)(: [a-z_]+ '[^']*'( -> '[^']*')?)?/g, "")
    .replace(/'\/[^']*'/g, "'...'")
    .replace(/[\r\n]+/g, " ");
}
