// Pebble, Let's Encrypt's test ACME CA (Debian package `pebble`), on
// loopback ports for the ACME tests: its own HTTPS certificate made with
// openssl (Debian does not ship Pebble's test certificates), validation
// without the random sleeps, no nonce rejected at random, and names resolved
// through the given DNS server (dnsmasq from _relay_fixtures.ts).

import { join } from "node:path";
import { makeCertificate } from "./_tls.ts";
import { freePort } from "./_relay_fixtures.ts";

export const PEBBLE = "/usr/bin/pebble";

export interface Pebble extends AsyncDisposable {
  /** The directory URL. */
  directory: string;
  /** The CA file to trust for the directory's HTTPS (tls.acme.ca_file). */
  caFile: string;
  /** Everything Pebble wrote so far (its log). */
  output(): string;
  /** Stops Pebble (idempotent); the temporary directory stays until disposal. */
  stop(): Promise<void>;
}

export interface PebbleOptions {
  /** The DNS server Pebble resolves names with, `host:port`. */
  dnsServer: string;
  /** Where Pebble connects for http-01. */
  httpPort: number;
  /** Where Pebble connects for tls-alpn-01. @default {an unused port} */
  tlsPort?: number;
  /** The lifetime of the certificates it issues, seconds. @default {Pebble's: 5 years} */
  validitySeconds?: number;
}

/** Starts Pebble and waits until its directory answers; fails clearly when Pebble is missing. */
export async function startPebble(options: PebbleOptions): Promise<Pebble> {
  try {
    await Deno.stat(PEBBLE);
  } catch {
    throw new Error(
      `${PEBBLE} is missing: install the Debian package pebble to run the ACME tests`,
    );
  }
  const certificate = await makeCertificate("localhost");
  const port = await freePort();
  const managementPort = await freePort();
  const configFile = join(certificate.dir, "pebble-config.json");
  await Deno.writeTextFile(
    configFile,
    JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${port}`,
        managementListenAddress: `127.0.0.1:${managementPort}`,
        certificate: certificate.cert,
        privateKey: certificate.key,
        httpPort: options.httpPort,
        tlsPort: options.tlsPort ?? await freePort(),
        ocspResponderURL: "",
        externalAccountBindingRequired: false,
        ...(options.validitySeconds === undefined
          ? {}
          : { certificateValidityPeriod: options.validitySeconds }),
      },
    }),
  );
  const child = new Deno.Command(PEBBLE, {
    args: ["-config", configFile, "-dnsserver", options.dnsServer, "-strict=false"],
    env: { PEBBLE_VA_NOSLEEP: "1", PEBBLE_WFE_NONCEREJECT: "0", PEBBLE_AUTHZREUSE: "0" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let log = "";
  const collect = async (stream: ReadableStream<Uint8Array>) => {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) log += text;
  };
  const collected = Promise.all([collect(child.stdout), collect(child.stderr)]);
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  const stop = async () => {
    if (!exited) child.kill("SIGTERM");
    await status;
    await collected;
  };
  const directory = `https://localhost:${port}/dir`;
  const client = Deno.createHttpClient({ caCerts: [certificate.pem] });
  try {
    for (let i = 0;; i++) {
      if (exited) throw new Error(`pebble exited at start:\n${log}`);
      const ok = await fetch(directory, { client }).then(
        async (r) => (await r.body?.cancel(), r.ok),
        () => false,
      );
      if (ok) break;
      if (i > 100) throw new Error(`pebble did not answer at ${directory}:\n${log}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (error: unknown) {
    client.close();
    await stop();
    await Deno.remove(certificate.dir, { recursive: true });
    throw error;
  }
  client.close();
  return {
    directory,
    caFile: certificate.cert,
    output: () => log,
    stop,
    async [Symbol.asyncDispose]() {
      await stop();
      await Deno.remove(certificate.dir, { recursive: true });
    },
  };
}
