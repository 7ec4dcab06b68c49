/**
 * The server's TLS certificate and key, loaded from PEM files into a
 * `node:tls` secure context, and loaded again when the files change (a
 * renewed certificate is taken without a restart: on SIGHUP, through
 * {@linkcode TlsContext.reload}, or by watching the files).
 *
 * Each new handshake takes the context in force at that moment, so a reload
 * changes nothing for connections already encrypted. A reload that fails (a
 * key and certificate that do not match, half-written files) keeps the
 * context that works and reports why.
 *
 * `node:tls` builds its context lazily and does not check the files, so they
 * are checked here with `node:crypto`: the certificate must parse, the key
 * must parse, and the key must belong to the certificate.
 *
 * @module
 */

import { createPrivateKey, X509Certificate } from "node:crypto";
import { basename, dirname, resolve } from "node:path";
import tls from "node:tls";

/** Where the certificate chain and its private key are, PEM files. */
export interface TlsFiles {
  /** The certificate chain, PEM, ours first. */
  readonly cert: string;
  /** The private key, PEM. */
  readonly key: string;
}

/**
 * Thrown when the certificate or key cannot be used; the message is one line
 * naming the file (never quoting the key).
 *
 * @example Tell a TLS problem from others
 * ```ts
 * import { TlsContext, TlsError } from "./tls_context.ts";
 * try {
 *   await TlsContext.load({ cert: "/nonexistent/cert.pem", key: "/nonexistent/key.pem" });
 * } catch (error: unknown) {
 *   if (error instanceof TlsError) console.log(error.message);
 *   // 'Cannot read TLS certificate "/nonexistent/cert.pem": no such file'
 * }
 * ```
 */
export class TlsError extends Error {
  /** The file at fault. */
  readonly file: string;

  /**
   * Makes the error.
   *
   * @param message What failed, one line.
   * @param file The file at fault.
   * @param options The cause.
   */
  constructor(message: string, file: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "TlsError";
    this.file = file;
  }
}

/** What a reload did: `loaded` with the certificate's subject and expiry, or `error`. */
export type TlsReloadEvent =
  | { readonly type: "loaded"; readonly subject: string; readonly validTo: string }
  | { readonly type: "error"; readonly error: TlsError };

/** Options of {@linkcode TlsContext.load}. */
export interface TlsContextOptions {
  /** The oldest TLS version accepted. @default {"TLSv1.2"} */
  minVersion?: "TLSv1.2" | "TLSv1.3";
  /** Called after each reload (not the first load), for logs. */
  onReload?: (event: TlsReloadEvent) => void;
  /** How long file changes must settle before a reload, ms. @default {300} */
  settleMs?: number;
}

interface Loaded {
  readonly context: tls.SecureContext;
  readonly subject: string;
  readonly validTo: string;
}

/** One line out of an error, for messages that must stay on one line. */
function firstLine(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split("\n")[0] ?? text;
}

async function readPem(path: string, what: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (error: unknown) {
    const why = error instanceof Deno.errors.NotFound
      ? "no such file"
      : error instanceof Deno.errors.PermissionDenied
      ? "permission denied"
      : error instanceof Deno.errors.IsADirectory
      ? "is a directory"
      : firstLine(error);
    throw new TlsError(`Cannot read ${what} "${path}": ${why}`, path, { cause: error });
  }
}

async function loadFiles(files: TlsFiles, minVersion: "TLSv1.2" | "TLSv1.3"): Promise<Loaded> {
  const cert = await readPem(files.cert, "TLS certificate");
  const key = await readPem(files.key, "TLS key");
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(cert);
  } catch (error: unknown) {
    throw new TlsError(
      `Cannot load TLS certificate "${files.cert}": not a PEM certificate`,
      files.cert,
      { cause: error },
    );
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (error: unknown) {
    // Never quote the key file's content, not even a part of it.
    throw new TlsError(`Cannot load TLS key "${files.key}": not a PEM private key`, files.key, {
      cause: error,
    });
  }
  if (!certificate.checkPrivateKey(privateKey)) {
    throw new TlsError(
      `Cannot use TLS key "${files.key}": it does not belong to the certificate "${files.cert}"`,
      files.key,
    );
  }
  // RFC 8314 §4.1 and RFC 8996: nothing older than TLS 1.2.
  const context = tls.createSecureContext({ cert, key, minVersion });
  return { context, subject: certificate.subject, validTo: certificate.validTo };
}

/**
 * A server certificate and key, ready for handshakes, that can be reloaded.
 *
 * @example Load a certificate and use it for a STARTTLS listener
 * ```ts ignore
 * import { TlsContext } from "./tls_context.ts";
 * import { SmtpServer } from "./server.ts";
 * import { REPLIES } from "./reply.ts";
 *
 * const tls = await TlsContext.load({ cert: "./certs/cert.pem", key: "./certs/key.pem" });
 * tls.watch(); // pick up renewed files
 * Deno.addSignalListener("SIGHUP", () => void tls.reload());
 * const server = new SmtpServer({
 *   hostname: "mx.example.test",
 *   address: "127.0.0.1",
 *   port: 2525,
 *   tls,
 *   handlers: {
 *     recipient: () => REPLIES.recipientOk,
 *     open: () => Promise.resolve(REPLIES.storageFailed),
 *   },
 * });
 * await server.listen();
 * ```
 */
export class TlsContext {
  /** The files it was loaded from, absolute. */
  readonly files: TlsFiles;
  #loaded: Loaded;
  #minVersion: "TLSv1.2" | "TLSv1.3";
  #onReload: ((event: TlsReloadEvent) => void) | undefined;
  #settleMs: number;
  #watcher: Deno.FsWatcher | null = null;
  #settleTimer: ReturnType<typeof setTimeout> | undefined;
  #reloading: Promise<boolean> | null = null;

  private constructor(files: TlsFiles, loaded: Loaded, options: TlsContextOptions) {
    this.files = files;
    this.#loaded = loaded;
    this.#minVersion = options.minVersion ?? "TLSv1.2";
    this.#onReload = options.onReload;
    this.#settleMs = options.settleMs ?? 300;
  }

  /**
   * Loads and checks the certificate and key.
   *
   * @param files The PEM files.
   * @param options Minimum TLS version, reload reports.
   * @returns The context.
   * @throws {TlsError} When a file cannot be read, parsed, or the key does not match the certificate.
   */
  static async load(files: TlsFiles, options: TlsContextOptions = {}): Promise<TlsContext> {
    const absolute = { cert: resolve(files.cert), key: resolve(files.key) };
    const loaded = await loadFiles(absolute, options.minVersion ?? "TLSv1.2");
    return new TlsContext(absolute, loaded, options);
  }

  /** The secure context for the next handshake. */
  get secureContext(): tls.SecureContext {
    return this.#loaded.context;
  }

  /** The certificate's subject (`CN=mx.example.test`). */
  get subject(): string {
    return this.#loaded.subject;
  }

  /** When the certificate expires, as the certificate says it. */
  get validTo(): string {
    return this.#loaded.validTo;
  }

  /**
   * Reads the files again; on success new handshakes use them, on failure the
   * old certificate stays in force. Reports the outcome to `onReload`.
   *
   * @returns Whether the new files are in force.
   */
  reload(): Promise<boolean> {
    // One reload at a time; a second request while one runs shares its result.
    this.#reloading ??= (async () => {
      try {
        this.#loaded = await loadFiles(this.files, this.#minVersion);
        this.#onReload?.({ type: "loaded", subject: this.subject, validTo: this.validTo });
        return true;
      } catch (error: unknown) {
        const tlsError = error instanceof TlsError
          ? error
          : new TlsError(`Cannot reload TLS files: ${firstLine(error)}`, this.files.cert);
        this.#onReload?.({ type: "error", error: tlsError });
        return false;
      } finally {
        this.#reloading = null;
      }
    })();
    return this.#reloading;
  }

  /**
   * Watches the certificate's and key's directories, and reloads once changes
   * have settled (renewal tools write several files, or swap a symbolic
   * link). Call {@linkcode TlsContext.close} to stop.
   */
  watch(): void {
    if (this.#watcher !== null) return;
    const directories = [...new Set([dirname(this.files.cert), dirname(this.files.key)])];
    const names = new Set([basename(this.files.cert), basename(this.files.key)]);
    let watcher: Deno.FsWatcher;
    try {
      watcher = Deno.watchFs(directories, { recursive: false });
    } catch (error: unknown) {
      this.#onReload?.({
        type: "error",
        error: new TlsError(
          `Cannot watch the TLS files for changes: ${firstLine(error)}`,
          this.files.cert,
        ),
      });
      return;
    }
    this.#watcher = watcher;
    void (async () => {
      try {
        for await (const event of watcher) {
          if (!event.paths.some((path) => names.has(basename(path)))) continue;
          clearTimeout(this.#settleTimer);
          this.#settleTimer = setTimeout(() => void this.reload(), this.#settleMs);
        }
      } catch {
        // closed
      }
    })();
  }

  /** Stops watching. */
  close(): void {
    clearTimeout(this.#settleTimer);
    const watcher = this.#watcher;
    this.#watcher = null;
    if (watcher !== null) {
      try {
        watcher.close();
      } catch {
        // already closed
      }
    }
  }
}
