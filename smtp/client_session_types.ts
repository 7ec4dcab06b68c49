/**
 * The types `ClientSession` speaks in: what the server offers, the message
 * to send and its result, and the events. `client_session.ts` exports them
 * all; they live here so the table of expectations
 * (`client_expectations.ts`) can use them too.
 *
 * @module
 */

import type { BodyType } from "./envelope.ts";
import type { Reply } from "./reply.ts";
import type { Awaiting } from "./client_session.ts";

/** What the server offers, from its EHLO reply (RFC 5321 §4.1.1.1). */
export interface Extensions {
  /** Every keyword, upper case, with its parameters as written. */
  readonly keywords: ReadonlyMap<string, readonly string[]>;
  /** RFC 1870: the largest message in octets; `0` when SIZE has no fixed limit; `null` without SIZE. */
  readonly size: number | null;
  /** RFC 2920: commands may be sent in groups. */
  readonly pipelining: boolean;
  /** RFC 6152: 8-bit content may be sent with `BODY=8BITMIME`. */
  readonly eightBitMime: boolean;
  /** RFC 6531: UTF-8 addresses and headers may be sent with `SMTPUTF8`. */
  readonly smtputf8: boolean;
  /** RFC 3030: content may be sent in BDAT chunks. */
  readonly chunking: boolean;
  /** RFC 3030: binary content may be sent with `BODY=BINARYMIME` (and BDAT). */
  readonly binaryMime: boolean;
  /** RFC 3207: the connection may be upgraded to TLS. */
  readonly startTls: boolean;
  /** RFC 3461: NOTIFY, ORCPT, RET and ENVID are understood. */
  readonly dsn: boolean;
  /** RFC 2034: replies carry enhanced status codes. */
  readonly enhancedStatusCodes: boolean;
  /** RFC 4954: the SASL mechanisms offered, upper case (`AUTH` and the legacy `AUTH=` merged). */
  readonly auth: readonly string[];
}

/** One recipient of an {@linkcode OutgoingMessage}. */
export interface OutgoingRecipient {
  /** The forward-path as `local@domain` (or `Postmaster`), without angle brackets. */
  readonly address: string;
  /** RFC 3461 NOTIFY values (`NEVER`, or some of `SUCCESS`, `FAILURE`, `DELAY`), sent only to a DSN server. */
  readonly notify?: readonly string[] | undefined;
  /**
   * RFC 3461 ORCPT, sent only to a DSN server: as received (`rfc822;bob@example.test`,
   * xtext), or a bare address, which is sent as `rfc822;` plus its xtext.
   */
  readonly orcpt?: string | undefined;
}

/** The envelope of a message to send: what MAIL and RCPT say. */
export interface OutgoingMessage {
  /** The reverse-path as `local@domain`, or `""` for `<>` (RFC 5321 §4.5.5). */
  readonly reversePath: string;
  /** The recipients, in order; each gets its own result. */
  readonly recipients: readonly OutgoingRecipient[];
  /** What the content holds (RFC 6152, RFC 3030): decides BODY= and whether the server can take it. */
  readonly body: BodyType;
  /** Whether the message needs SMTPUTF8 (RFC 6531): UTF-8 headers, or a UTF-8 address. */
  readonly smtputf8: boolean;
  /** The content's size in octets, for `SIZE=` (RFC 1870) and the check against the server's limit. */
  readonly size: number;
  /** RFC 3461 RET, sent only to a DSN server. */
  readonly ret?: "FULL" | "HDRS" | undefined;
  /** RFC 3461 ENVID (xtext), sent only to a DSN server. */
  readonly envid?: string | undefined;
  /** RFC 8689 REQUIRETLS on MAIL FROM; the caller checks that the server offers it. */
  readonly requireTls?: boolean | undefined;
}

/** The fate of one recipient. */
export interface RecipientResult {
  /** The address, as given. */
  readonly address: string;
  /** The RCPT reply if it was refused; otherwise the reply that ended the transaction. */
  readonly reply: Reply;
}

/** The outcome of one mail transaction. */
export interface TransactionResult {
  /** One entry per recipient, in the order given. */
  readonly recipients: readonly RecipientResult[];
  /**
   * The reply that ended the transaction for the accepted recipients: the
   * final reply to the content, or the refusal of DATA or BDAT; `null` when
   * no recipient was accepted (so no content was offered).
   */
  readonly reply: Reply | null;
}

/** What the session reports. */
export type ClientEvent =
  /** Write these bytes to the server; `commands` are the command lines among them, for traces. */
  | { readonly type: "send"; readonly bytes: Uint8Array; readonly commands: readonly string[] }
  /** A reply was read, answering `command` (`null`: a reply nobody asked for, such as a 421 while idle). */
  | { readonly type: "reply"; readonly command: Awaiting | null; readonly reply: Reply }
  /** The server has been greeted: a message, STARTTLS or QUIT may follow. */
  | { readonly type: "ready"; readonly extensions: Extensions }
  /** 220 to STARTTLS: upgrade the connection now, then call {@linkcode ClientSession.tlsEstablished}. `discarded` bytes that followed the 220 were thrown away. */
  | { readonly type: "starttls"; readonly discarded: number }
  /** AUTH is over (RFC 4954): `235` logged in, anything else refused; the session is ready again either way. */
  | { readonly type: "auth"; readonly reply: Reply }
  /** STARTTLS was refused (such as 454); the session is ready again, in plaintext. */
  | { readonly type: "starttls-refused"; readonly reply: Reply }
  /** Send content now, with {@linkcode ClientSession.content} and {@linkcode ClientSession.endContent}. */
  | { readonly type: "content" }
  /** The transaction is over. */
  | { readonly type: "result"; readonly result: TransactionResult }
  /** The server refused the session (greeting, EHLO and HELO, or a 421 at any time). */
  | { readonly type: "refused"; readonly reply: Reply }
  /** The server broke the protocol (a malformed or unexpected reply); nothing more can be believed. */
  | { readonly type: "error"; readonly message: string }
  /** Close the connection (after writing what was sent). */
  | { readonly type: "close" };
