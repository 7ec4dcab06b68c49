/**
 * Keeps tern's certificate issued and renewed by an ACME CA (RFC 8555), as
 * `tls.acme` asks.
 *
 * At start the listeners get whatever `<data_dir>/acme/` holds, or, the
 * first time, a temporary self-signed certificate: tern starts at once and
 * takes mail even while the CA cannot be reached (MTAs delivering to port
 * 25 use TLS opportunistically and accept any certificate, RFC 7435 §2),
 * rather than refusing to start or leaving STARTTLS off. The CA's
 * certificate is then ordered in the background and swapped in through
 * {@linkcode TlsContext.reload}, as a renewal is: new handshakes take it,
 * sessions already encrypted keep theirs, no restart.
 *
 * A certificate is renewed at two thirds of its lifetime (day 60 of
 * Let's Encrypt's 90, as the CA recommends), at once when it is the
 * temporary one or does not cover the configured names. A failed order is
 * logged as `acme.renew_failed` (error) and counted, and tried again after
 * a backoff that doubles (5 minutes to 6 hours by default); the certificate
 * in use keeps serving meanwhile.
 *
 * Files, all owner-only (0600, in a 0700 directory): `account.key.pem`
 * (the account's P-256 key), `key.pem` and `cert.pem` (the certificate's
 * key and chain). Each is written to a temporary name then renamed, the key
 * before the chain, so a crash leaves either pair whole or a mismatch that
 * the next start notices and replaces.
 *
 * @module
 */

import { createPrivateKey, X509Certificate } from "node:crypto";
import { dirname, join } from "node:path";
import type { AcmeConfig, TlsConfig } from "../config/types.ts";
import { makePrivateDirectory, PRIVATE_FILE_MODE } from "../fs/private.ts";
import type { Logger } from "../log/logger.ts";
import { acmeRenewFailures } from "../metrics/tern.ts";
import type { TlsContext } from "../smtp/tls_context.ts";
import { AcmeClient, type ChallengeSolver } from "./client.ts";
import { type Http01Responder, startHttp01Responder } from "./http01.ts";
import { exportPrivateKeyPem, generateKeyPair, importPrivateKeyPem, toPem } from "./keys.ts";
import { type TlsAlpn01Responder, tlsAlpn01Responder } from "./tls_alpn01.ts";
import { createSelfSigned } from "./x509.ts";

/** The account key's file in `<data_dir>/acme/`. */
export const ACCOUNT_KEY_FILE = "account.key.pem";

/** The longest single wait: timers are capped near 24.8 days, and the clock may jump. */
const MAX_SLEEP_MS = 12 * 3_600_000;

/** Options of {@linkcode AcmeManager.prepare}. */
export interface AcmeManagerOptions {
  /** Where log lines go. */
  readonly logger: Logger;
  /** The first wait after a failed order, ms; it doubles after each failure. @default {300000} */
  readonly retryMinMs?: number;
  /** The longest wait after a failed order, ms. @default {21600000} */
  readonly retryMaxMs?: number;
}

/** One line out of an error. */
function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split("\n")[0] ?? text;
}

/** Writes a file owner-only, whole or not at all (a temporary name, then a rename). */
async function writePrivateFile(path: string, text: string): Promise<void> {
  const temporary = join(dirname(path), `.${crypto.randomUUID()}.tmp`);
  try {
    await Deno.writeTextFile(temporary, text, { mode: PRIVATE_FILE_MODE });
    // The mode given at creation is filtered by the umask; this one is not.
    if (Deno.build.os !== "windows") await Deno.chmod(temporary, PRIVATE_FILE_MODE);
    await Deno.rename(temporary, path);
  } catch (error: unknown) {
    await Deno.remove(temporary).catch(() => {});
    throw error;
  }
}

async function readOptional(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch (error: unknown) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

/** The certificate in the files, when the key belongs to it; `null` when they cannot be used. */
async function readPair(files: TlsConfig): Promise<X509Certificate | null> {
  const cert = await readOptional(files.cert);
  const key = await readOptional(files.key);
  if (cert === null || key === null) return null;
  try {
    const certificate = new X509Certificate(cert);
    return certificate.checkPrivateKey(createPrivateKey(key)) ? certificate : null;
  } catch {
    return null;
  }
}

/** The DNS names of a certificate's subjectAltName, lower case. */
function dnsNames(certificate: X509Certificate): Set<string> {
  const names = (certificate.subjectAltName ?? "").split(/,\s*/)
    .filter((entry) => entry.startsWith("DNS:"))
    .map((entry) => entry.slice(4).toLowerCase());
  return new Set(names);
}

/**
 * When a certificate should be replaced: now when it is self-signed (the
 * temporary one) or misses a configured name, else at two thirds of its
 * lifetime.
 *
 * @param certificate The certificate in use.
 * @param domains The names it must cover.
 * @returns The time, ms since the epoch.
 */
export function renewalTime(certificate: X509Certificate, domains: readonly string[]): number {
  if (certificate.checkIssued(certificate)) return 0;
  const names = dnsNames(certificate);
  if (!domains.every((d) => names.has(d))) return 0;
  const from = Date.parse(certificate.validFrom);
  const to = Date.parse(certificate.validTo);
  return from + Math.floor((to - from) * 2 / 3);
}

/** Makes and writes a self-signed certificate for the names, valid 90 days. */
async function writeTemporaryCertificate(files: TlsConfig, domains: readonly string[]) {
  const pair = await generateKeyPair();
  const now = Date.now();
  const der = await createSelfSigned(pair, {
    domains,
    notBefore: new Date(now - 3_600_000),
    notAfter: new Date(now + 90 * 86_400_000),
  });
  await writePrivateFile(files.key, await exportPrivateKeyPem(pair));
  await writePrivateFile(files.cert, toPem("CERTIFICATE", der));
}

/** Reads the account key, or makes and keeps one. */
async function accountKey(dir: string) {
  const path = join(dir, ACCOUNT_KEY_FILE);
  const pem = await readOptional(path);
  if (pem !== null) {
    try {
      return await importPrivateKeyPem(pem);
    } catch (error: unknown) {
      throw new Error(`Cannot use the ACME account key "${path}": ${firstLine(error)}`, {
        cause: error,
      });
    }
  }
  const pair = await generateKeyPair();
  await writePrivateFile(path, await exportPrivateKeyPem(pair));
  return pair;
}

/** The challenge solver `tls.acme.challenge` names, bound when it must be. */
function makeSolver(acme: AcmeConfig): Http01Responder | TlsAlpn01Responder {
  if (acme.challenge === "tls-alpn-01") return tlsAlpn01Responder(acme.address, acme.tlsPort);
  try {
    return startHttp01Responder(acme.address, acme.httpPort);
  } catch (error: unknown) {
    const why = error instanceof Deno.errors.AddrInUse
      ? "address already in use"
      : error instanceof Deno.errors.PermissionDenied
      ? "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
      : firstLine(error);
    throw new Error(
      `cannot listen on ${acme.address}:${acme.httpPort} for ACME http-01: ${why}`,
      { cause: error },
    );
  }
}

/** Keeps a certificate issued and renewed; see the module documentation. */
export class AcmeManager {
  /** The certificate and key files the listeners load. */
  readonly files: TlsConfig;
  /** What to order, and from where. */
  readonly acme: AcmeConfig;
  readonly #logger: Logger;
  readonly #solver: Http01Responder | TlsAlpn01Responder;
  readonly #client: AcmeClient;
  readonly #abort: AbortController;
  readonly #retryMinMs: number;
  readonly #retryMaxMs: number;
  #context: TlsContext | null = null;
  #running: Promise<void> | null = null;
  #wake: (() => void) | null = null;
  #failures = 0;

  private constructor(
    files: TlsConfig,
    acme: AcmeConfig,
    client: AcmeClient,
    solver: Http01Responder | TlsAlpn01Responder,
    abort: AbortController,
    options: AcmeManagerOptions,
  ) {
    this.#abort = abort;
    this.files = files;
    this.acme = acme;
    this.#client = client;
    this.#solver = solver;
    this.#logger = options.logger;
    this.#retryMinMs = options.retryMinMs ?? 300_000;
    this.#retryMaxMs = options.retryMaxMs ?? 21_600_000;
  }

  /**
   * Makes `<data_dir>/acme/` ready: the account key, and a certificate the
   * listeners can load (the one kept from before, else a temporary
   * self-signed one, logged as `acme.temporary`). Binds the http-01
   * responder. Call {@linkcode AcmeManager.start} once the TLS context is
   * loaded.
   *
   * @param files `tls` with its `acme` section.
   * @param options Logger and retry pacing.
   * @returns The manager.
   * @throws {Error} When the directory cannot be written, the account key is unreadable, the CA file cannot be read, or the responder cannot bind.
   */
  static async prepare(
    files: TlsConfig & { readonly acme: AcmeConfig },
    options: AcmeManagerOptions,
  ): Promise<AcmeManager> {
    const { acme } = files;
    const dir = dirname(files.cert);
    await makePrivateDirectory(dir);
    const key = await accountKey(dir);
    let caCerts: string[] = [];
    if (acme.caFile !== null) {
      try {
        caCerts = [await Deno.readTextFile(acme.caFile)];
      } catch (error: unknown) {
        throw new Error(`Cannot read tls.acme.ca_file "${acme.caFile}": ${firstLine(error)}`, {
          cause: error,
        });
      }
    }
    if (await readPair(files) === null) {
      await writeTemporaryCertificate(files, acme.domains);
      options.logger.log("warn", "acme.temporary", undefined, {
        domains: acme.domains.join(","),
        note: "self-signed until the CA issues one",
      });
    }
    const solver = makeSolver(acme);
    const abort = new AbortController();
    const client = new AcmeClient({
      directory: acme.directory,
      accountKey: key,
      contact: acme.contact,
      caCerts,
      signal: abort.signal,
    });
    return new AcmeManager(files, acme, client, solver, abort, options);
  }

  /** The port the http-01 responder is bound to (the real one when 0 was asked), or `null` for tls-alpn-01. */
  get httpPort(): number | null {
    return "port" in this.#solver ? this.#solver.port : null;
  }

  /**
   * Starts watching the certificate: orders one now if the one in use is
   * temporary, else when it is due for renewal.
   *
   * @param context The listeners' TLS context, loaded from {@linkcode AcmeManager.files}.
   */
  start(context: TlsContext): void {
    if (this.#running !== null) return;
    this.#context = context;
    this.#running = this.#loop();
  }

  /** Stops: abandons an order under way, and unbinds the responder. */
  async close(): Promise<void> {
    this.#abort.abort(new Error("tern is stopping"));
    this.#wake?.();
    await this.#running;
    await this.#solver.close();
    this.#client.close();
  }

  async #loop(): Promise<void> {
    const signal = this.#abort.signal;
    while (!signal.aborted) {
      const due = await this.#dueAt();
      const wait = due - Date.now();
      if (wait > 0) {
        await this.#sleep(Math.min(wait, MAX_SLEEP_MS));
        continue;
      }
      try {
        await this.#renew();
        this.#failures = 0;
      } catch (error: unknown) {
        if (signal.aborted) return;
        this.#failures++;
        const retryMs = Math.min(
          this.#retryMinMs * 2 ** Math.min(this.#failures - 1, 20),
          this.#retryMaxMs,
        );
        acmeRenewFailures.inc();
        this.#logger.log("error", "acme.renew_failed", undefined, {
          domains: this.acme.domains.join(","),
          error: firstLine(error),
          failures: this.#failures,
          retry_in: `${Math.round(retryMs / 1000)}s`,
          note: "the certificate in use keeps serving",
        });
        await this.#sleep(retryMs);
      }
    }
  }

  /** When the certificate on disk is due; now when it cannot be read. */
  async #dueAt(): Promise<number> {
    const certificate = await readPair(this.files).catch(() => null);
    return certificate === null ? 0 : renewalTime(certificate, this.acme.domains);
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const wake = () => done();
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = wake;
      if (this.#abort.signal.aborted) done();
    });
  }

  /** Orders a certificate, writes it, and puts it in force. */
  async #renew(): Promise<void> {
    const solver: ChallengeSolver = this.#solver;
    const issued = await this.#client.obtainCertificate(this.acme.domains, solver);
    const certificate = new X509Certificate(issued.chainPem);
    await writePrivateFile(this.files.key, await exportPrivateKeyPem(issued.keyPair));
    await writePrivateFile(this.files.cert, issued.chainPem);
    if (this.#context !== null && !(await this.#context.reload())) {
      throw new Error("the new certificate was written but could not be loaded (see tls.error)");
    }
    this.#logger.log("info", "acme.issued", undefined, {
      domains: this.acme.domains.join(","),
      serial: certificate.serialNumber,
      issuer: certificate.issuer.replace(/\n/g, ", "),
      valid_to: certificate.validTo,
      renew_at: new Date(renewalTime(certificate, this.acme.domains)).toISOString(),
    });
  }
}
