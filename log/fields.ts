/**
 * Values for log lines taken from what other hosts and clients send: reply
 * texts, the Message-ID of a message, the queue id in a remote `250`. Each is
 * made one short printable line, so a log line stays one line and cannot be
 * forged from outside.
 *
 * @module
 */

/** Longest text value kept in a log line, in UTF-16 units. */
const MAX_TEXT = 300;

/** Longest Message-ID kept (RFC 5322 sets no limit; real ones are well below). */
const MAX_MESSAGE_ID = 250;

/** How much of a header section is read looking for Message-ID. */
const MAX_HEADER_SCAN = 64 * 1024;

// deno-lint-ignore no-control-regex
const CONTROLS = /[\x00-\x1f\x7f-\x9f\u2028\u2029]+/g;

/**
 * One printable line: control characters become spaces, runs of white
 * space one space, and the text is cut at 300 characters.
 *
 * @param text Text from outside.
 * @returns The text fit for a log field.
 *
 * @example
 * ```ts
 * import { cleanText } from "./fields.ts";
 * console.log(cleanText("Ok\r\n fake line")); // "Ok fake line"
 * ```
 */
export function cleanText(text: string): string {
  const clean = text.replace(CONTROLS, " ").replace(/\s+/g, " ").trim();
  return clean.length > MAX_TEXT ? clean.slice(0, MAX_TEXT) + "…" : clean;
}

/**
 * The queue id a receiving MTA put in its `250` to the end of data, when it
 * has one of the usual forms: Postfix and tern `queued as X`, `OK id=X`
 * (Exim `id=X`), Sendmail `X Message accepted for delivery`, Gmail's
 * `OK 1700000000 x1si12345qkb.1 - gsmtp`, Microsoft's `<ID> [InternalId=…]`.
 *
 * @param text The reply text (its lines joined).
 * @returns The id, or `undefined` when none is recognized.
 *
 * @example
 * ```ts
 * import { remoteQueueId } from "./fields.ts";
 * console.log(remoteQueueId("Ok: queued as 4F2A9C")); // "4F2A9C"
 * console.log(remoteQueueId("OK id=1rAbCd-000123-Xy")); // "1rAbCd-000123-Xy"
 * console.log(remoteQueueId("OK 1700000000 d2e1a72f.5 - gsmtp")); // "d2e1a72f.5"
 * ```
 */
export function remoteQueueId(text: string): string | undefined {
  const patterns = [
    /\bqueued as:? ?([A-Za-z0-9][A-Za-z0-9._@<>-]*)/i,
    /\bid=([A-Za-z0-9][A-Za-z0-9._@-]*)/i,
    /\b([A-Za-z0-9][A-Za-z0-9._-]*) - gsmtp\b/,
    /^(?:[245]\.\d{1,3}\.\d{1,3} )?([A-Za-z0-9]{6,}) Message accepted for delivery/i,
    /^OK <([^<>\s]+)>/i,
    /^Queued mail for delivery -> ([A-Za-z0-9._-]+)/i,
  ];
  for (const pattern of patterns) {
    const m = pattern.exec(text);
    if (m) return cleanText(m[1]!.replace(/^<|>$/g, "")).slice(0, 100);
  }
  return undefined;
}

/**
 * Finds the `Message-ID:` field (RFC 5322 §3.6.4) in a header section fed
 * in pieces, as content arrives. Only the header section is looked at, and
 * at most 64 KiB of it.
 *
 * @example
 * ```ts
 * import { MessageIdScanner } from "./fields.ts";
 * const scanner = new MessageIdScanner();
 * scanner.push(new TextEncoder().encode("Subject: hi\r\nMessage-ID:\r\n <a1@example.test>\r\n\r\nHi\r\n"));
 * console.log(scanner.messageId); // "<a1@example.test>"
 * ```
 */
export class MessageIdScanner {
  #head = "";
  #done = false;
  #found: string | null = null;
  #decoder = new TextDecoder("utf-8", { fatal: false });
  /** Where the previous piece ended: 0 in a line, 1 after LF, 2 after LF CR. */
  #lineEnd = 0;

  /**
   * Reads the next piece of content.
   *
   * @param chunk Content octets, in order.
   */
  push(chunk: Uint8Array): void {
    if (this.#done) return;
    // Only the header section is decoded, not the body behind it in the same piece.
    const upTo = this.#headerEnd(chunk);
    this.#head += this.#decoder.decode(upTo < 0 ? chunk : chunk.subarray(0, upTo), {
      stream: upTo < 0,
    });
    const end = this.#head.search(/\r?\n\r?\n/);
    if (end >= 0) {
      this.#head = this.#head.slice(0, end + 1);
      this.#finish();
    } else if (this.#head.length > MAX_HEADER_SCAN) {
      this.#finish();
    }
  }

  /**
   * Where in `chunk` the header section's empty line ends (LF, an optional
   * CR, LF: the pattern `push` looks for), or -1 when not in this piece.
   */
  #headerEnd(chunk: Uint8Array): number {
    let state = this.#lineEnd;
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i];
      if (b === 0x0a) {
        if (state !== 0) return i + 1;
        state = 1;
      } else {
        state = b === 0x0d && state === 1 ? 2 : 0;
      }
    }
    this.#lineEnd = state;
    return -1;
  }

  /**
   * The Message-ID, cleaned (one line, no controls, at most 250
   * characters), or `"none"` when the message has none.
   */
  get messageId(): string {
    if (!this.#done) this.#finish();
    return this.#found ?? "none";
  }

  #finish(): void {
    this.#done = true;
    // RFC 5322 §2.2.3: a folded field goes on in lines that start with white space.
    const unfolded = this.#head.slice(0, MAX_HEADER_SCAN).replace(/\r?\n(?=[ \t])/g, "");
    this.#head = "";
    const m = /^message-id[ \t]*:(.*)$/im.exec(unfolded);
    if (m === null) return;
    const value = m[1]!.trim();
    const id = /<[^<>]*>/.exec(value)?.[0] ?? value;
    const clean = cleanText(id).replace(/ /g, "");
    if (clean !== "" && clean !== "<>") this.#found = clean.slice(0, MAX_MESSAGE_ID);
  }
}
