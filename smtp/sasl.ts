/**
 * SASL for SMTP AUTH (RFC 4954), server side, with no I/O: the PLAIN
 * (RFC 4616) and LOGIN (draft-murchison-sasl-login) mechanisms as small
 * step machines that turn the client's base64 responses into credentials.
 * Checking the password is not done here: the session asks its caller.
 *
 * ## The exchange
 *
 * ```
 * C: AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzM2NyZXQ=   (initial response)
 * S: 235 2.7.0 Authentication successful
 *
 * C: AUTH LOGIN
 * S: 334 VXNlcm5hbWU6                                  ("Username:")
 * C: YWxpY2VAZXhhbXBsZS50ZXN0
 * S: 334 UGFzc3dvcmQ6                                  ("Password:")
 * C: czNjcmV0
 * S: 235 2.7.0 Authentication successful
 * ```
 *
 * Every client response is base64 (RFC 4648 §4); `=` alone is an empty
 * response and `*` cancels the exchange (RFC 4954 §4). The decoded strings
 * are UTF-8 (RFC 4616 §2), so base64 is decoded to bytes and the bytes to
 * text through `TextDecoder`: `atob` alone would give Latin-1 (docs/smtp-pitfalls.md: AUTH in UTF-8).
 *
 * @module
 */

import { REPLIES, type Reply } from "./reply.ts";

/** The SASL mechanisms tern implements. */
export type SaslMechanism = "PLAIN" | "LOGIN";

/**
 * All of {@linkcode SaslMechanism}, in the order tern advertises them.
 *
 * @example The EHLO keyword
 * ```ts
 * import { SASL_MECHANISMS } from "./sasl.ts";
 * console.log(`AUTH ${SASL_MECHANISMS.join(" ")}`); // "AUTH PLAIN LOGIN"
 * ```
 */
export const SASL_MECHANISMS: readonly SaslMechanism[] = Object.freeze(["PLAIN", "LOGIN"]);

/**
 * What a client presented. The password is a secret: never log it, never put
 * it in an error message.
 */
export interface SaslCredentials {
  /** The mechanism used. */
  readonly mechanism: SaslMechanism;
  /** RFC 4616 authzid: the identity to act as, `""` when the same as `username`. */
  readonly authorizationId: string;
  /** RFC 4616 authcid: who logs in (for tern, an account address). */
  readonly username: string;
  /** The password, as typed. */
  readonly password: string;
}

/** One step of an exchange: send a challenge, or the credentials are complete, or it failed. */
export type SaslStep =
  /** Send `334 <challenge>` and read the next response line. */
  | { readonly type: "challenge"; readonly challenge: string }
  /** The credentials are complete: check them. */
  | { readonly type: "credentials"; readonly credentials: SaslCredentials }
  /** The exchange is over; send this reply. */
  | { readonly type: "failed"; readonly reply: Reply };

const encoder = new TextEncoder();
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** RFC 4648 §4 base64; the padding may be left out. */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}(?:==)?|[A-Za-z0-9+/]{3}=?)?$/;

/**
 * Encodes text as UTF-8, then base64 (what a client sends, and the LOGIN
 * challenges). Safe for any Unicode text, unlike `btoa` alone.
 *
 * @param text The text.
 * @returns Its base64 form.
 *
 * @example Encode a user name with an accent
 * ```ts
 * import { encodeBase64Utf8 } from "./sasl.ts";
 * console.log(encodeBase64Utf8("Username:")); // "VXNlcm5hbWU6"
 * console.log(encodeBase64Utf8("josé")); // "am9zw6k="
 * ```
 */
export function encodeBase64Utf8(text: string): string {
  let binary = "";
  for (const byte of encoder.encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/**
 * Decodes one client response (RFC 4954 §4): base64, or `=` for an empty one.
 *
 * @param text The response line, without CRLF.
 * @returns The octets, or `null` when it is not base64.
 *
 * @example Decode responses
 * ```ts
 * import { decodeSaslResponse } from "./sasl.ts";
 * console.log(decodeSaslResponse("=")?.length); // 0
 * console.log(decodeSaslResponse("YWI=")); // Uint8Array(2) [ 97, 98 ]
 * console.log(decodeSaslResponse("not base64!")); // null
 * ```
 */
export function decodeSaslResponse(text: string): Uint8Array | null {
  if (text === "=") return new Uint8Array(0);
  if (text === "" || !BASE64.test(text)) return null;
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** UTF-8 text, or `null` for bytes that are not UTF-8. */
function decodeUtf8(bytes: Uint8Array): string | null {
  try {
    return utf8.decode(bytes);
  } catch {
    return null;
  }
}

/**
 * Reads a PLAIN message (RFC 4616 §2): `[authzid] NUL authcid NUL passwd`,
 * each part UTF-8, authcid and passwd not empty.
 *
 * @param bytes The decoded response.
 * @returns The credentials, or `null` when the message is malformed.
 *
 * @example Read a PLAIN message
 * ```ts
 * import { parsePlainMessage } from "./sasl.ts";
 * const message = new TextEncoder().encode("\0alice@example.test\0s3cret");
 * console.log(parsePlainMessage(message)?.username); // "alice@example.test"
 * ```
 */
export function parsePlainMessage(bytes: Uint8Array): SaslCredentials | null {
  const first = bytes.indexOf(0);
  const second = first < 0 ? -1 : bytes.indexOf(0, first + 1);
  if (second < 0 || bytes.indexOf(0, second + 1) >= 0) return null;
  const authorizationId = decodeUtf8(bytes.subarray(0, first));
  const username = decodeUtf8(bytes.subarray(first + 1, second));
  const password = decodeUtf8(bytes.subarray(second + 1));
  if (authorizationId === null || username === null || password === null) return null;
  if (username === "" || password === "") return null;
  return { mechanism: "PLAIN", authorizationId, username, password };
}

/**
 * Reads a mechanism name from an AUTH command (case-insensitive, RFC 4422 §3.1).
 *
 * @param name The name as the client wrote it.
 * @returns The mechanism, or `null` when tern does not implement it.
 *
 * @example Mechanism names
 * ```ts
 * import { parseSaslMechanism } from "./sasl.ts";
 * console.log(parseSaslMechanism("plain")); // "PLAIN"
 * console.log(parseSaslMechanism("CRAM-MD5")); // null
 * ```
 */
export function parseSaslMechanism(name: string): SaslMechanism | null {
  const upper = name.toUpperCase();
  return SASL_MECHANISMS.find((m) => m === upper) ?? null;
}

/** draft-murchison-sasl-login §2: the two challenges, base64 of "Username:" and "Password:". */
const LOGIN_USERNAME = encodeBase64Utf8("Username:");
const LOGIN_PASSWORD = encodeBase64Utf8("Password:");

/**
 * One AUTH exchange on the server side: {@linkcode SaslExchange.start} with
 * the AUTH command's initial response, then {@linkcode SaslExchange.respond}
 * with each line the client sends after a `334` challenge.
 *
 * @example LOGIN without an initial response
 * ```ts
 * import { SaslExchange } from "./sasl.ts";
 * const exchange = new SaslExchange("LOGIN");
 * console.log(exchange.start(null)); // { type: "challenge", challenge: "VXNlcm5hbWU6" }
 * console.log(exchange.respond("YWxpY2VAZXhhbXBsZS50ZXN0").type); // "challenge"
 * const last = exchange.respond("czNjcmV0");
 * console.log(last.type === "credentials" && last.credentials.username); // "alice@example.test"
 * ```
 */
export class SaslExchange {
  /** The mechanism of this exchange. */
  readonly mechanism: SaslMechanism;
  #username: string | null = null;
  #done = false;

  /**
   * Starts an exchange.
   *
   * @param mechanism The mechanism the client asked for.
   */
  constructor(mechanism: SaslMechanism) {
    this.mechanism = mechanism;
  }

  /**
   * The first step.
   *
   * @param initialResponse The AUTH command's second argument (RFC 4954 §4), or `null` when there was none.
   * @returns The challenge to send, the credentials, or the failure.
   */
  start(initialResponse: string | null): SaslStep {
    if (initialResponse !== null) return this.#take(initialResponse);
    if (this.mechanism === "PLAIN") {
      // RFC 4954 §4: with no initial response, an empty challenge asks for it.
      return { type: "challenge", challenge: "" };
    }
    return { type: "challenge", challenge: LOGIN_USERNAME };
  }

  /**
   * Takes a response line sent after a challenge.
   *
   * @param line The line, without CRLF.
   * @returns The next challenge, the credentials, or the failure.
   */
  respond(line: string): SaslStep {
    // RFC 4954 §4: "*" cancels; the server answers 501.
    if (line === "*") return this.#fail(REPLIES.authCancelled);
    return this.#take(line);
  }

  #take(response: string): SaslStep {
    if (this.#done) return this.#fail(REPLIES.badSequence("The AUTH exchange is over"));
    const bytes = decodeSaslResponse(response);
    // RFC 4954 §4: a response that is not base64 is refused with 501 5.5.2.
    if (bytes === null) return this.#fail(REPLIES.authNotBase64);
    if (this.mechanism === "PLAIN") {
      const credentials = parsePlainMessage(bytes);
      if (credentials === null) return this.#fail(REPLIES.authMalformed);
      this.#done = true;
      return { type: "credentials", credentials };
    }
    const text = decodeUtf8(bytes);
    if (text === null) return this.#fail(REPLIES.authMalformed);
    if (this.#username === null) {
      this.#username = text;
      return { type: "challenge", challenge: LOGIN_PASSWORD };
    }
    this.#done = true;
    return {
      type: "credentials",
      credentials: {
        mechanism: "LOGIN",
        authorizationId: "",
        username: this.#username,
        password: text,
      },
    };
  }

  #fail(reply: Reply): SaslStep {
    this.#done = true;
    return { type: "failed", reply };
  }
}
