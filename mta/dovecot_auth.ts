/**
 * AUTH checked by Dovecot's auth service, the way Postfix does it with
 * `smtpd_sasl_type = dovecot`: a connection to its `auth-client` socket
 * (Unix or TCP), the handshake, then one AUTH request.
 *
 * The protocol (Dovecot's "auth client protocol", version 1.2) is lines of
 * tab-separated fields:
 *
 * ```
 * C: VERSION	1	2
 * C: CPID	<our pid>
 * S: VERSION	1	2
 * S: MECH	PLAIN	plaintext
 * S: ...	(SPID, CUID, COOKIE)
 * S: DONE
 * C: AUTH	1	PLAIN	service=smtp	nologin	no-penalty	secured	lip=…	rip=…	resp=<base64>
 * S: OK	1	user=alice@example.test
 * ```
 *
 * or `FAIL\t1\t…` (with `temp` when the failure is temporary), or `CONT`
 * (another challenge: never for PLAIN with an initial response, so read as a
 * broken exchange). tern's SMTP server has already decoded PLAIN or LOGIN
 * (RFC 4616, RFC 4954), so Dovecot is always asked with PLAIN; it must offer
 * it. One connection per request: logins are rare, and a connection per
 * request leaves no state to go wrong.
 *
 * Dovecot down, silent past the timeout, or answering nonsense: `454 4.7.0`
 * (RFC 4954 §6, temporary), never a login accepted.
 *
 * @module
 */

import net from "node:net";
import type { SocketEndpoint } from "../config/types.ts";
import { REPLIES, type Reply } from "../smtp/reply.ts";
import type { SaslCredentials } from "../smtp/sasl.ts";

/** How long Dovecot has to answer a whole exchange, ms (its own failure delay is 2 s by default). */
export const DOVECOT_AUTH_TIMEOUT_MS = 10_000;

/** The longest line read from Dovecot; a longer one is a protocol error. */
const MAX_LINE = 65_536;

/** What Dovecot said of one login. */
export type DovecotVerdict =
  /** Logged in as `user` (Dovecot's canonical name). */
  | { readonly ok: true; readonly user: string }
  /** Refused; `temporary` when Dovecot says so (`temp`): its passdb is down, say. */
  | { readonly ok: false; readonly temporary: boolean; readonly reason: string | null };

/** What the request tells Dovecot besides the credentials. */
export interface DovecotAuthRequest {
  /** The SASL credentials, as decoded by the SMTP server. */
  readonly credentials: SaslCredentials;
  /** Whether the session runs over TLS (Dovecot's `secured`). */
  readonly secured: boolean;
  /** The client's address (`rip`), when known. */
  readonly remoteAddress?: string;
  /** Our address (`lip`), when known. */
  readonly localAddress?: string;
}

/** Dovecot could not be asked: not there, too slow, or not speaking its protocol. */
export class DovecotUnavailableError extends Error {
  /**
   * Makes the error.
   *
   * @param message What went wrong, for the server log.
   * @param options The cause.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "DovecotUnavailableError";
  }
}

// deno-lint-ignore no-control-regex
const TO_ESCAPE = /[\x01\t\n\r]/g;
// deno-lint-ignore no-control-regex
const ESCAPED = /\x01(.)/g;

/**
 * Dovecot's escaping of a field value: `\001` escapes itself, tab, LF and CR
 * (they would split the line).
 */
function escapeField(value: string): string {
  return value.replace(
    TO_ESCAPE,
    (c) => c === "\x01" ? "\x011" : c === "\t" ? "\x01t" : c === "\n" ? "\x01n" : "\x01r",
  );
}

/** Undoes {@linkcode escapeField}. */
function unescapeField(value: string): string {
  return value.replace(
    ESCAPED,
    (_, c: string) =>
      c === "1" ? "\x01" : c === "t" ? "\t" : c === "n" ? "\n" : c === "r" ? "\r" : c,
  );
}

/** Base64 of the UTF-8 octets of a string. */
function base64(text: string): string {
  let binary = "";
  for (const b of new TextEncoder().encode(text)) binary += String.fromCharCode(b);
  return btoa(binary);
}

/**
 * The AUTH line for one login: PLAIN (RFC 4616), the authorization identity
 * included as given, so Dovecot applies its own rules to it.
 *
 * @param id The request id, unique on the connection.
 * @param request The credentials and the session's facts.
 * @returns The line, without its LF.
 *
 * @example
 * ```ts
 * import { authLine } from "./dovecot_auth.ts";
 * const line = authLine(1, {
 *   credentials: { mechanism: "LOGIN", authorizationId: "", username: "a@x.test", password: "pw" },
 *   secured: true,
 *   remoteAddress: "192.0.2.1",
 * });
 * console.log(line.replaceAll("\t", " "));
 * // AUTH 1 PLAIN service=smtp nologin no-penalty secured rip=192.0.2.1 resp=AGFAeC50ZXN0AHB3
 * ```
 */
export function authLine(id: number, request: DovecotAuthRequest): string {
  const { credentials } = request;
  const response = base64(
    `${credentials.authorizationId}\0${credentials.username}\0${credentials.password}`,
  );
  // no-penalty: tern's own AUTH limiter delays and locks out guessers; Dovecot's
  // per-address penalty on top would slow every user behind a shared address.
  const fields = ["AUTH", String(id), "PLAIN", "service=smtp", "nologin", "no-penalty"];
  if (request.secured) fields.push("secured");
  if (request.localAddress !== undefined) fields.push(`lip=${escapeField(request.localAddress)}`);
  if (request.remoteAddress !== undefined) fields.push(`rip=${escapeField(request.remoteAddress)}`);
  fields.push(`resp=${response}`);
  return fields.join("\t");
}

/**
 * Reads Dovecot's answer to request `id`: `OK`, `FAIL` or anything else.
 *
 * @param line One line from Dovecot, without its LF.
 * @param id The request id.
 * @returns The verdict, or `null` when the line is not about this request.
 * @throws {DovecotUnavailableError} On `CONT` (PLAIN needs no second step) or an `OK` naming no user.
 */
export function readVerdict(line: string, id: number): DovecotVerdict | null {
  const [verb, lineId, ...rest] = line.split("\t");
  if ((verb !== "OK" && verb !== "FAIL" && verb !== "CONT") || lineId !== String(id)) return null;
  if (verb === "CONT") {
    throw new DovecotUnavailableError("Dovecot asked for another step of a PLAIN login");
  }
  const fields = new Map<string, string>();
  for (const field of rest) {
    const eq = field.indexOf("=");
    if (eq < 0) fields.set(field, "");
    else fields.set(field.slice(0, eq), unescapeField(field.slice(eq + 1)));
  }
  if (verb === "FAIL") {
    return { ok: false, temporary: fields.has("temp"), reason: fields.get("reason") ?? null };
  }
  const user = fields.get("user") ?? "";
  if (user === "") throw new DovecotUnavailableError("Dovecot accepted a login but named no user");
  return { ok: true, user };
}

/**
 * Asks Dovecot's auth service about one login.
 *
 * @param endpoint Its `auth-client` socket: a path, or a host and port.
 * @param request The credentials and the session's facts.
 * @param timeoutMs How long the whole exchange may take.
 * @returns Dovecot's verdict.
 * @throws {DovecotUnavailableError} When Dovecot cannot be reached, does not answer in time, or breaks the protocol.
 */
export function askDovecot(
  endpoint: SocketEndpoint,
  request: DovecotAuthRequest,
  timeoutMs: number = DOVECOT_AUTH_TIMEOUT_MS,
): Promise<DovecotVerdict> {
  const where = endpoint.path ?? `${endpoint.host}:${endpoint.port}`;
  const id = 1;
  return new Promise<DovecotVerdict>((resolve, reject) => {
    const socket = endpoint.path !== undefined
      ? net.connect({ path: endpoint.path })
      : net.connect({ host: endpoint.host, port: endpoint.port });
    let buffer = "";
    let isHandshakeDone = false;
    let hasPlain = false;
    let settled = false;
    const finish = (error: Error | null, verdict?: DovecotVerdict): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.removeAllListeners("data");
      socket.on("error", () => {}); // late errors of a socket we are done with
      socket.destroy();
      if (error !== null) reject(error);
      else resolve(verdict!);
    };
    const fail = (why: string, cause?: unknown): void =>
      finish(new DovecotUnavailableError(`Dovecot auth at ${where}: ${why}`, { cause }));
    const timer = setTimeout(() => fail(`no answer within ${timeoutMs} ms`), timeoutMs);
    const onLine = (line: string): void => {
      if (!isHandshakeDone) {
        const [verb, ...fields] = line.split("\t");
        if (verb === "VERSION" && fields[0] !== "1") {
          return fail(`unsupported protocol version ${fields.join(".")}`);
        }
        if (verb === "MECH" && fields[0]?.toUpperCase() === "PLAIN") hasPlain = true;
        if (verb !== "DONE") return;
        isHandshakeDone = true;
        if (!hasPlain) return fail("the PLAIN mechanism is not enabled (auth_mechanisms)");
        socket.write(authLine(id, request) + "\n");
        return;
      }
      try {
        const verdict = readVerdict(line, id);
        if (verdict !== null) finish(null, verdict);
      } catch (error: unknown) {
        fail((error as Error).message, error);
      }
    };
    socket.setEncoding("utf8");
    socket.on("connect", () => {
      // Version 1.2 of the client protocol; our process id, as Postfix sends it.
      socket.write(`VERSION\t1\t2\nCPID\t${Deno.pid}\n`);
    });
    socket.on("data", (chunk: string) => {
      buffer += chunk;
      let lf: number;
      while (!settled && (lf = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, lf);
        buffer = buffer.slice(lf + 1);
        onLine(line);
      }
      if (buffer.length > MAX_LINE) fail("a line longer than 64 KiB");
    });
    socket.on("error", (error: Error) => fail(error.message, error));
    socket.on("close", () => fail("the connection closed before an answer"));
  });
}

/** What the submission listeners' AUTH check needs to ask Dovecot. */
export interface DovecotLoginContext {
  /** Whether the session runs over TLS. */
  readonly secured: boolean;
  /** The client's address. */
  readonly remoteAddress?: string;
}

/**
 * Checks AUTH credentials with Dovecot, as a reply for the SMTP server.
 *
 * @param endpoint Dovecot's `auth-client` socket.
 * @param credentials What the client presented.
 * @param context The session's facts.
 * @param timeoutMs How long Dovecot has to answer.
 * @returns `235 2.7.0` naming Dovecot's user in `user` (the session is
 *   authenticated as that name), `535 5.7.8` when Dovecot refuses, or
 *   `454 4.7.0` when Dovecot says the failure is temporary.
 * @throws {DovecotUnavailableError} When Dovecot cannot be asked: the SMTP
 *   server logs the error (never the credentials) and answers `454 4.7.0`
 *   (RFC 4954 §6), an attempt the AUTH limiter does not count.
 */
export async function authenticateWithDovecot(
  endpoint: SocketEndpoint,
  credentials: SaslCredentials,
  context: DovecotLoginContext,
  timeoutMs: number = DOVECOT_AUTH_TIMEOUT_MS,
): Promise<Reply & { readonly user?: string }> {
  const verdict = await askDovecot(endpoint, {
    credentials,
    secured: context.secured,
    ...(context.remoteAddress === undefined ? {} : { remoteAddress: context.remoteAddress }),
  }, timeoutMs);
  if (verdict.ok) return { ...REPLIES.authSucceeded, user: verdict.user.toLowerCase() };
  return verdict.temporary ? REPLIES.authUnavailable : REPLIES.authFailed;
}
