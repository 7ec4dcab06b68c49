/**
 * The envelope of a mail transaction (RFC 5321 §2.3.1): who the message is
 * from (the reverse-path) and whom it is for (the forward-paths), with the
 * parameters given on MAIL FROM. It travels beside the content and is never
 * part of it.
 *
 * @module
 */

/** RFC 6152 / RFC 3030: what the content may contain, from `BODY=` on MAIL FROM. */
export type BodyType = "7BIT" | "8BITMIME" | "BINARYMIME";

/** A keyword of RFC 3461 §4.1 NOTIFY. */
export type DsnNotify = "NEVER" | "SUCCESS" | "FAILURE" | "DELAY";

/** The DSN parameters given with one RCPT (RFC 3461 §4.1, §4.2). */
export interface RecipientDsn {
  /** NOTIFY: when the sender wants a report. Absent: the default (failures, and perhaps delays). */
  readonly notify?: readonly DsnNotify[];
  /** ORCPT as `addr-type;address`, decoded from xtext. */
  readonly orcpt?: string;
}

/** The envelope of one message, as accepted. */
export interface Envelope {
  /**
   * The reverse-path as `local@domain`, or `""` for the null reverse-path
   * `<>` (RFC 5321 §4.5.5), used by bounces.
   */
  readonly reversePath: string;
  /** The forward-paths accepted by RCPT TO, in order, as `local@domain`. */
  readonly forwardPaths: readonly string[];
  /** `BODY=` on MAIL FROM (RFC 6152); `"7BIT"` when absent. */
  readonly body: BodyType;
  /** Whether MAIL FROM carried `SMTPUTF8` (RFC 6531 §3.4). */
  readonly smtputf8: boolean;
  /** `SIZE=` on MAIL FROM (RFC 1870), when declared. */
  readonly declaredSize?: number;
  /** RFC 3461 §4.3 RET: what a DSN returns of the message, its headers or all of it. */
  readonly ret?: "FULL" | "HDRS";
  /** RFC 3461 §4.4 ENVID, decoded from xtext: the sender's id for this transaction. */
  readonly envid?: string;
  /** RFC 3461 NOTIFY and ORCPT of each forward-path, in the same order, when any was given. */
  readonly recipientDsn?: readonly RecipientDsn[];
  /** RFC 8689 REQUIRETLS on MAIL FROM: relay only over verified TLS, to hops that offer it. */
  readonly requireTls?: boolean;
}
