/**
 * A small ACME client (RFC 8555): the directory, nonces, the account, and
 * one order taken from creation to the downloaded certificate chain. It
 * speaks HTTPS with `fetch`, so Deno's own TLS and roots are used; an extra
 * CA (a test CA such as Pebble's) can be trusted for the directory.
 *
 * Written here rather than taken from npm: tern needs the CSR and the
 * tls-alpn-01 certificate (ASN.1 either way), ES256 JWS is a page of Web
 * Crypto, and the npm clients bring an HTTP stack of their own in which
 * trusting an extra CA under Deno is not dependable.
 *
 * @module
 */

import { createCsr } from "./x509.ts";
import { base64url, type EcKeyPair, generateKeyPair } from "./keys.ts";
import { type EcJwk, keyAuthorization, publicJwk, signRequest } from "./jws.ts";

/** Thrown for any ACME failure; the message is one line, with the server's problem detail when it sent one. */
export class AcmeError extends Error {
  /** The problem type (`urn:ietf:params:acme:error:…`), when the server sent one. */
  readonly type: string | undefined;

  /**
   * Makes the error.
   *
   * @param message What failed, one line.
   * @param type The problem document's type.
   * @param options The cause.
   */
  constructor(message: string, type?: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "AcmeError";
    this.type = type;
  }
}

/** How the client answers challenges of one type. */
export interface ChallengeSolver {
  /** The challenge type it answers, like `http-01` (RFC 8555 §8.3) or `tls-alpn-01` (RFC 8737). */
  readonly type: string;
  /**
   * Makes the answer available before the CA is told to look.
   *
   * @param domain The identifier being validated.
   * @param token The challenge's token.
   * @param keyAuthorization `token.thumbprint` (RFC 8555 §8.1).
   */
  present(domain: string, token: string, keyAuthorization: string): Promise<void>;
  /**
   * Withdraws the answer once the authorization is settled.
   *
   * @param domain The identifier.
   * @param token The challenge's token.
   */
  cleanup(domain: string, token: string): Promise<void>;
}

/** Options of {@linkcode AcmeClient}. */
export interface AcmeClientOptions {
  /** The directory URL (RFC 8555 §7.1.1). */
  readonly directory: string;
  /** The account key. */
  readonly accountKey: EcKeyPair;
  /** `mailto:` contacts for the account. */
  readonly contact?: readonly string[];
  /** Extra CA certificates (PEM) to trust for the server's HTTPS. */
  readonly caCerts?: readonly string[];
  /** How long to wait for an authorization or the order, ms. @default {120000} */
  readonly pollTimeoutMs?: number;
  /** How long each HTTP request may take, ms. @default {30000} */
  readonly requestTimeoutMs?: number;
  /** Aborts whatever is under way (tern stopping). */
  readonly signal?: AbortSignal;
}

/** The certificate an order gave. */
export interface IssuedCertificate {
  /** The chain, PEM, ours first. */
  readonly chainPem: string;
  /** Its private key, PKCS #8 PEM. */
  readonly keyPair: EcKeyPair;
}

interface Directory {
  readonly newNonce: string;
  readonly newAccount: string;
  readonly newOrder: string;
}

interface AcmeResponse {
  readonly status: number;
  readonly headers: Headers;
  readonly body: unknown;
  readonly text: string;
}

interface Order {
  readonly status: string;
  readonly authorizations: string[];
  readonly finalize: string;
  readonly certificate?: string;
  readonly error?: { detail?: string };
}

interface Challenge {
  readonly type: string;
  readonly url: string;
  readonly token: string;
  readonly status: string;
  readonly error?: { type?: string; detail?: string };
}

interface Authorization {
  readonly status: string;
  readonly identifier: { type: string; value: string };
  readonly challenges: Challenge[];
}

const ORDER_STATES_DONE = new Set(["valid", "invalid"]);

/** One line from anything thrown. */
function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split("\n")[0] ?? text;
}

/** Waits, unless aborted first (then rejects with the abort reason). */
function delay(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** The wait a `Retry-After` asks for (RFC 8555 §7.5.1), kept between 0.2 s and 10 s. */
function retryAfterMs(headers: Headers, fallback: number): number {
  const value = headers.get("retry-after");
  if (value === null) return fallback;
  const seconds = Number(value);
  const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(value) - Date.now();
  return Number.isFinite(ms) ? Math.min(10_000, Math.max(200, ms)) : fallback;
}

/** The problem a response carries, as one line (RFC 8555 §6.7, RFC 7807). */
function describeProblem(response: AcmeResponse): { message: string; type: string | undefined } {
  const body = response.body as { type?: unknown; detail?: unknown } | null;
  const type = typeof body?.type === "string" ? body.type : undefined;
  const detail = typeof body?.detail === "string"
    ? body.detail
    : response.text.slice(0, 200).replace(/\s+/g, " ");
  const name = type?.replace("urn:ietf:params:acme:error:", "") ?? `HTTP ${response.status}`;
  return { message: `${name}: ${detail}`, type };
}

/**
 * An ACME account at one CA.
 *
 * @example Get a certificate, answering http-01 with your own responder
 * ```ts ignore
 * import { AcmeClient } from "./client.ts";
 * import { generateKeyPair } from "./keys.ts";
 *
 * const client = new AcmeClient({
 *   directory: "https://acme-staging-v02.api.letsencrypt.org/directory",
 *   accountKey: await generateKeyPair(),
 *   contact: ["mailto:postmaster@example.test"],
 * });
 * const answers = new Map<string, string>();
 * const issued = await client.obtainCertificate(["mx.example.test"], {
 *   type: "http-01",
 *   present: (_domain, token, keyAuth) => Promise.resolve(void answers.set(token, keyAuth)),
 *   cleanup: (_domain, token) => Promise.resolve(void answers.delete(token)),
 * });
 * console.log(issued.chainPem);
 * ```
 */
export class AcmeClient {
  readonly #options: AcmeClientOptions;
  readonly #http: Deno.HttpClient | null;
  #directory: Directory | null = null;
  #nonces: string[] = [];
  #accountUrl: string | null = null;
  #jwk: EcJwk | null = null;

  /**
   * Makes the client; nothing is fetched before the first order.
   *
   * @param options Directory, account key, contacts, extra CA.
   */
  constructor(options: AcmeClientOptions) {
    this.#options = options;
    this.#http = options.caCerts === undefined || options.caCerts.length === 0
      ? null
      : Deno.createHttpClient({ caCerts: [...options.caCerts] });
  }

  /** Releases the HTTP client. */
  close(): void {
    this.#http?.close();
  }

  /** The account URL once registered (the `kid`), or `null`. */
  get accountUrl(): string | null {
    return this.#accountUrl;
  }

  /** The request's signal: its own timeout, and the client's abort. */
  #signal(): AbortSignal {
    const timeout = AbortSignal.timeout(this.#options.requestTimeoutMs ?? 30_000);
    const { signal } = this.#options;
    return signal === undefined ? timeout : AbortSignal.any([timeout, signal]);
  }

  async #fetch(url: string, init: RequestInit): Promise<AcmeResponse> {
    let response: Response;
    try {
      response = await fetch(url, {
        ...init,
        signal: this.#signal(),
        ...(this.#http === null ? {} : { client: this.#http }),
      });
    } catch (error: unknown) {
      throw new AcmeError(`cannot reach ${url}: ${firstLine(error)}`, undefined, { cause: error });
    }
    const nonce = response.headers.get("replay-nonce");
    if (nonce !== null) this.#nonces.push(nonce);
    const text = await response.text();
    let body: unknown = null;
    const type = response.headers.get("content-type") ?? "";
    if (type.includes("json")) {
      try {
        body = JSON.parse(text);
      } catch {
        body = null;
      }
    }
    return { status: response.status, headers: response.headers, body, text };
  }

  async #getDirectory(): Promise<Directory> {
    if (this.#directory !== null) return this.#directory;
    const response = await this.#fetch(this.#options.directory, { method: "GET" });
    const body = response.body as Partial<Directory> | null;
    if (
      response.status !== 200 || typeof body?.newNonce !== "string" ||
      typeof body.newAccount !== "string" || typeof body.newOrder !== "string"
    ) {
      throw new AcmeError(
        `${this.#options.directory} is not an ACME directory (HTTP ${response.status})`,
      );
    }
    this.#directory = {
      newNonce: body.newNonce,
      newAccount: body.newAccount,
      newOrder: body.newOrder,
    };
    return this.#directory;
  }

  async #nonce(): Promise<string> {
    const cached = this.#nonces.pop();
    if (cached !== undefined) return cached;
    const { newNonce } = await this.#getDirectory();
    const response = await this.#fetch(newNonce, { method: "HEAD" });
    const nonce = this.#nonces.pop();
    if (nonce === undefined) {
      throw new AcmeError(`no Replay-Nonce from ${newNonce} (HTTP ${response.status})`);
    }
    return nonce;
  }

  /**
   * One signed POST; a `badNonce` is tried again with the nonce the error
   * carried, as RFC 8555 §6.5 invites.
   */
  async #post(
    url: string,
    payload: unknown,
    accept = "application/json",
  ): Promise<AcmeResponse> {
    const jwk = this.#jwk ??= await publicJwk(this.#options.accountKey);
    for (let attempt = 0;; attempt++) {
      const signer = this.#accountUrl === null ? { jwk } : { kid: this.#accountUrl };
      const body = await signRequest(
        this.#options.accountKey,
        signer,
        url,
        await this.#nonce(),
        payload,
      );
      const response = await this.#fetch(url, {
        method: "POST",
        headers: { "content-type": "application/jose+json", accept },
        body: JSON.stringify(body),
      });
      if (response.status < 400) return response;
      const problem = describeProblem(response);
      if (problem.type === "urn:ietf:params:acme:error:badNonce" && attempt < 4) continue;
      throw new AcmeError(problem.message, problem.type);
    }
  }

  /**
   * Registers the account, or finds it again: the same key gives the same
   * account (RFC 8555 §7.3.1).
   *
   * @returns The account URL.
   */
  async register(): Promise<string> {
    if (this.#accountUrl !== null) return this.#accountUrl;
    const { newAccount } = await this.#getDirectory();
    const contact = this.#options.contact ?? [];
    const response = await this.#post(newAccount, {
      termsOfServiceAgreed: true,
      ...(contact.length === 0 ? {} : { contact: [...contact] }),
    });
    const location = response.headers.get("location");
    if (location === null) throw new AcmeError(`no account URL from ${newAccount}`);
    this.#accountUrl = location;
    return location;
  }

  /**
   * Orders a certificate for the names, proves control of each with the
   * solver, finalizes with a CSR for a new key, and downloads the chain.
   *
   * @param domains The names, the first also the common name.
   * @param solver Answers the challenges.
   * @returns The chain and its key.
   * @throws {AcmeError} On any refusal, failed validation or timeout.
   */
  async obtainCertificate(
    domains: readonly string[],
    solver: ChallengeSolver,
  ): Promise<IssuedCertificate> {
    await this.register();
    const { newOrder } = await this.#getDirectory();
    const created = await this.#post(newOrder, {
      identifiers: domains.map((value) => ({ type: "dns", value })),
    });
    const orderUrl = created.headers.get("location");
    if (orderUrl === null) throw new AcmeError(`no order URL from ${newOrder}`);
    let order = created.body as Order;
    for (const url of order.authorizations) await this.#authorize(url, solver);
    const keyPair = await generateKeyPair();
    order = await this.#waitOrder(orderUrl, (o) => o.status !== "pending");
    if (order.status !== "ready") {
      throw new AcmeError(`order is ${order.status}, not ready: ${order.error?.detail ?? ""}`);
    }
    const csr = await createCsr(keyPair, domains);
    await this.#post(order.finalize, { csr: base64url(csr) });
    order = await this.#waitOrder(orderUrl, (o) => ORDER_STATES_DONE.has(o.status));
    if (order.status !== "valid" || order.certificate === undefined) {
      throw new AcmeError(`order is ${order.status}: ${order.error?.detail ?? "no certificate"}`);
    }
    const chain = await this.#post(order.certificate, null, "application/pem-certificate-chain");
    if (!chain.text.includes("-----BEGIN CERTIFICATE-----")) {
      throw new AcmeError(`no PEM certificate chain at ${order.certificate}`);
    }
    return { chainPem: chain.text, keyPair };
  }

  async #authorize(url: string, solver: ChallengeSolver): Promise<void> {
    const authz = (await this.#post(url, null)).body as Authorization;
    if (authz.status === "valid") return;
    const domain = authz.identifier.value;
    const challenge = authz.challenges.find((c) => c.type === solver.type);
    if (challenge === undefined) {
      throw new AcmeError(`the CA offers no ${solver.type} challenge for ${domain}`);
    }
    const jwk = this.#jwk ??= await publicJwk(this.#options.accountKey);
    await solver.present(domain, challenge.token, await keyAuthorization(challenge.token, jwk));
    try {
      // An empty object tells the server the answer is ready (RFC 8555 §7.5.1).
      await this.#post(challenge.url, {});
      const settled = await this.#poll(url, (a: Authorization) => a.status !== "pending");
      if (settled.status !== "valid") {
        const failed = settled.challenges.find((c) => c.type === solver.type);
        throw new AcmeError(
          `${solver.type} for ${domain} is ${settled.status}: ${
            failed?.error?.detail ?? "no detail"
          }`,
          failed?.error?.type,
        );
      }
    } finally {
      await solver.cleanup(domain, challenge.token);
    }
  }

  #waitOrder(url: string, done: (order: Order) => boolean): Promise<Order> {
    return this.#poll(url, done);
  }

  /** POST-as-GET a resource until `done` says so, at the pace the server asks. */
  async #poll<T>(url: string, done: (value: T) => boolean): Promise<T> {
    const deadline = Date.now() + (this.#options.pollTimeoutMs ?? 120_000);
    while (true) {
      const response = await this.#post(url, null);
      const value = response.body as T;
      if (done(value)) return value;
      if (Date.now() > deadline) throw new AcmeError(`timed out waiting for ${url}`);
      await delay(retryAfterMs(response.headers, 500), this.#options.signal);
    }
  }
}
