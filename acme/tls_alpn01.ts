/**
 * The tls-alpn-01 responder (RFC 8737): while an authorization is pending,
 * a TLS listener on `tls_port` that negotiates only the `acme-tls/1`
 * protocol and shows a self-signed certificate for the name being validated,
 * carrying the SHA-256 of the key authorization in the critical
 * acmeIdentifier extension (RFC 8737 §3). It is bound only while a
 * challenge is open (authorizations are answered one at a time), since it
 * serves nothing else.
 *
 * @module
 */

import type { ChallengeSolver } from "./client.ts";
import { exportPrivateKeyPem, generateKeyPair, sha256, toPem } from "./keys.ts";
import { createSelfSigned } from "./x509.ts";

/** The ALPN protocol name of the validation handshake (RFC 8737 §6.2). */
export const ACME_TLS_ALPN = "acme-tls/1";

/**
 * The certificate and key that answer a tls-alpn-01 challenge.
 *
 * @param domain The name being validated (the only subjectAltName, RFC 8737 §3).
 * @param keyAuthorization The challenge's key authorization.
 * @returns PEM certificate and key.
 */
export async function createAlpnCertificate(
  domain: string,
  keyAuthorization: string,
): Promise<{ cert: string; key: string }> {
  const pair = await generateKeyPair();
  const now = Date.now();
  const der = await createSelfSigned(pair, {
    domains: [domain],
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 7 * 86_400_000),
    acmeIdentifier: await sha256(keyAuthorization),
  });
  return { cert: toPem("CERTIFICATE", der), key: await exportPrivateKeyPem(pair) };
}

/** A tls-alpn-01 solver, which listens only while a challenge is open. */
export interface TlsAlpn01Responder extends ChallengeSolver {
  /** Stops listening, if it is. */
  close(): Promise<void>;
}

/** The binary that serves the challenge handshake. */
export const OPENSSL = "openssl";

interface Running {
  readonly child: Deno.ChildProcess;
  readonly dir: string;
  readonly output: Promise<void>;
}

/**
 * Makes the solver; nothing is bound until a challenge is presented.
 *
 * The handshake is served by `openssl s_server`, not by Deno: Deno's TLS
 * (rustls) refuses to load a certificate with a critical extension it does
 * not know, and RFC 8737 §3 requires acmeIdentifier to be critical. The
 * certificate and key live in a private temporary directory, removed with
 * the challenge.
 *
 * @param address The address to listen on.
 * @param port The port the CA connects to (443 as the CA sees it).
 * @returns The solver.
 */
export function tlsAlpn01Responder(address: string, port: number): TlsAlpn01Responder {
  let running: Running | null = null;
  const stop = async () => {
    const open = running;
    running = null;
    if (open === null) return;
    try {
      open.child.kill("SIGTERM");
    } catch {
      // already gone
    }
    await open.child.status;
    await open.output;
    await Deno.remove(open.dir, { recursive: true }).catch(() => {});
  };
  return {
    type: "tls-alpn-01",
    async present(domain, _token, keyAuthorization) {
      await stop();
      running = await startServer(
        address,
        port,
        await createAlpnCertificate(domain, keyAuthorization),
      );
    },
    cleanup: stop,
    close: stop,
  };
}

/** `host:port` as openssl's -accept wants it (IPv6 in brackets). */
function acceptAddress(address: string, port: number): string {
  return address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`;
}

/** Starts `openssl s_server` with the challenge certificate and waits until it accepts. */
async function startServer(
  address: string,
  port: number,
  pem: { cert: string; key: string },
): Promise<Running> {
  const dir = await Deno.makeTempDir({ prefix: "tern-acme-alpn-" });
  await Deno.chmod(dir, 0o700);
  const cert = `${dir}/cert.pem`;
  const key = `${dir}/key.pem`;
  await Deno.writeTextFile(cert, pem.cert, { mode: 0o600 });
  await Deno.writeTextFile(key, pem.key, { mode: 0o600 });
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(OPENSSL, {
      // -www answers without reading stdin; only acme-tls/1 is offered (RFC 8737 §3).
      args: [
        "s_server",
        "-accept",
        acceptAddress(address, port),
        "-cert",
        cert,
        "-key",
        key,
        "-alpn",
        ACME_TLS_ALPN,
        "-www",
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (error: unknown) {
    await Deno.remove(dir, { recursive: true });
    throw new Error(`cannot run ${OPENSSL} s_server for tls-alpn-01: ${String(error)}`, {
      cause: error,
    });
  }
  let text = "";
  let ready: () => void = () => {};
  const accepting = new Promise<void>((resolve) => ready = resolve);
  const read = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      text += chunk;
      if (text.includes("ACCEPT")) ready();
    }
  };
  const output = Promise.all([read(child.stdout), read(child.stderr)]).then(() => {});
  const exited = child.status.then(() => "exited" as const);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"late">((resolve) => timer = setTimeout(() => resolve("late"), 10_000));
  const outcome = await Promise.race([accepting.then(() => "ready" as const), exited, late]);
  clearTimeout(timer);
  if (outcome !== "ready") {
    if (outcome === "late") child.kill("SIGTERM");
    await child.status;
    await output;
    await Deno.remove(dir, { recursive: true });
    const why = text.split("\n").find((line) => /error|unable|bind/i.test(line)) ?? text.trim();
    throw new Error(`cannot listen on ${acceptAddress(address, port)} for tls-alpn-01: ${why}`);
  }
  return { child, dir, output };
}
