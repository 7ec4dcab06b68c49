/**
 * Building messages to send: {@linkcode buildMessage} turns addresses, a
 * subject, text and HTML bodies and attachments into an RFC 5322 message
 * with MIME parts (RFC 2045–2049), plus its SMTP envelope. The encoders it
 * uses are exported too.
 *
 * @example
 * ```ts
 * import { buildMessage } from "./mod.ts";
 * const { content, envelope } = buildMessage({
 *   from: "me@example.org",
 *   to: "you@example.net",
 *   subject: "Hi",
 *   text: "Hello",
 * });
 * console.log(envelope.to, content.length > 0); // ["you@example.net"] true
 * ```
 *
 * @module
 */

export {
  type Attachment,
  buildMessage,
  type BuildSettings,
  type BuiltMessage,
  type MailOptions,
} from "./build.ts";
export {
  type Address,
  type AddressInput,
  formatAddress,
  formatAddressList,
  formatPhrase,
  parseAddress,
  parseAddressList,
} from "./address_header.ts";
export {
  chooseWordEncoding,
  encodeUnstructured,
  encodeWords,
  MAX_ENCODED_WORD_LENGTH,
  needsEncoding,
  type WordEncoding,
} from "./encoded_word.ts";
export {
  chooseTransferEncoding,
  encodeBase64Lines,
  encodeBody,
  encodeQuotedPrintable,
  MAX_ENCODED_LINE,
  type TransferEncoding,
} from "./transfer_encoding.ts";
export { formatParameter } from "./rfc2231.ts";
export { foldHeader, MAX_LINE_OCTETS, PREFERRED_LINE_LENGTH } from "./header_fold.ts";
