/**
 * The `Authentication-Results` header field (RFC 8601): how a receiving
 * server tells the mailbox what it found. One field, put on top (§5), named
 * by the server's authserv-id (§2.5), with one `method=result` per check and
 * its properties (`smtp.mailfrom=`, `header.d=`, `header.from=`).
 *
 * A message may arrive with such fields already in it, forged to look like
 * ours: §5 says a receiver removes those that carry its own authserv-id
 * before adding its own, or a mail reader that trusts them would believe a
 * stranger's "dkim=pass".
 *
 * @module
 */

/**
 * Formats the field: the authserv-id, then one result per line.
 *
 * @param authservId The server's name for itself (usually its host name).
 * @param results `method=result ...` texts, in order; none gives `none` (§2.2).
 * @returns The whole field, folded, ending in CRLF.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatAuthenticationResults } from "./results_header.ts";
 * assert.equal(
 *   formatAuthenticationResults("mx.example.test", ["spf=pass smtp.mailfrom=a@example.org"]),
 *   "Authentication-Results: mx.example.test;\r\n\tspf=pass smtp.mailfrom=a@example.org\r\n",
 * );
 * ```
 */
export function formatAuthenticationResults(
  authservId: string,
  results: readonly string[],
): string {
  const lines = results.map(toOneLine).filter((r) => r !== "");
  if (lines.length === 0) return `Authentication-Results: ${authservId}; none\r\n`;
  return `Authentication-Results: ${authservId};\r\n\t${lines.join(";\r\n\t")}\r\n`;
}

/** A result as one line: folded text joined, line breaks never passed through. */
function toOneLine(text: string): string {
  return text.replace(/\r?\n[ \t]*/g, " ").replace(/[\r\n]/g, " ").trim();
}

/**
 * Whether an `Authentication-Results` value claims to come from us: its
 * authserv-id (the first token, before `;` or a comment) is ours, compared
 * without regard to case (RFC 8601 §5).
 *
 * @param value The field's value, unfolded.
 * @param authservId Ours.
 * @returns `true` when the field must be removed.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { namesAuthservId } from "./results_header.ts";
 * assert.ok(namesAuthservId("MX.example.test (comment); spf=pass", "mx.example.test"));
 * assert.ok(!namesAuthservId("other.example; spf=pass", "mx.example.test"));
 * ```
 */
export function namesAuthservId(value: string, authservId: string): boolean {
  const withoutComments = value.replace(/\([^)]*\)/g, " ").trimStart();
  const id = withoutComments.split(/[;\s]/, 1)[0] ?? "";
  return id.replace(/^"|"$/g, "").toLowerCase() === authservId.toLowerCase();
}
