// A throwaway certificate authority for the transport security tests
// (MTA-STS, DANE): a CA certificate, and leaf certificates it issues for
// chosen DNS names, made with openssl in a temporary directory. ECDSA P-256,
// so each is made in milliseconds.

import { join } from "node:path";

const decoder = new TextDecoder();

async function openssl(args: string[], cwd: string): Promise<void> {
  const out = await new Deno.Command("openssl", { args, cwd, stdout: "null", stderr: "piped" })
    .output();
  if (!out.success) {
    throw new Error(`openssl ${args[0]} failed: ${decoder.decode(out.stderr)}`);
  }
}

/** A leaf certificate issued by a {@linkcode TestCa}. */
export interface IssuedCertificate {
  /** PEM file: the leaf, then the CA (the chain a server sends). */
  cert: string;
  /** PEM file: the leaf's key. */
  key: string;
  /** The leaf alone, PEM. */
  leafPem: string;
}

/** A test CA: its certificate (PEM, and as a file), and a way to issue leaves. */
export interface TestCa extends AsyncDisposable {
  dir: string;
  /** The CA certificate file. */
  certFile: string;
  /** The CA certificate, PEM. */
  pem: string;
  /** Issues a certificate for these DNS names (the first is also the CN). */
  issue(names: string[]): Promise<IssuedCertificate>;
}

let serial = 0;

/** Makes a CA in a new temporary directory, removed on dispose. */
export async function makeTestCa(name = "tern test CA"): Promise<TestCa> {
  const dir = await Deno.makeTempDir({ prefix: "tern-ca-" });
  await openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key"], dir);
  await openssl([
    "req",
    "-x509",
    "-new",
    "-key",
    "ca.key",
    "-subj",
    `/CN=${name}`,
    "-days",
    "2",
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
    "-out",
    "ca.pem",
  ], dir);
  const certFile = join(dir, "ca.pem");
  const pem = await Deno.readTextFile(certFile);
  return {
    dir,
    certFile,
    pem,
    async issue(names) {
      const base = `leaf${++serial}`;
      await openssl(
        ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", `${base}.key`],
        dir,
      );
      await openssl([
        "req",
        "-new",
        "-key",
        `${base}.key`,
        "-subj",
        `/CN=${names[0]}`,
        "-out",
        `${base}.csr`,
      ], dir);
      await Deno.writeTextFile(
        join(dir, `${base}.ext`),
        `subjectAltName=${names.map((n) => `DNS:${n}`).join(",")}\n` +
          "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n",
      );
      await openssl([
        "x509",
        "-req",
        "-in",
        `${base}.csr`,
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        `${base}.ext`,
        "-out",
        `${base}.pem`,
      ], dir);
      const leafPem = await Deno.readTextFile(join(dir, `${base}.pem`));
      const cert = join(dir, `${base}.chain.pem`);
      await Deno.writeTextFile(cert, leafPem + pem);
      return { cert, key: join(dir, `${base}.key`), leafPem };
    },
    async [Symbol.asyncDispose]() {
      await Deno.remove(dir, { recursive: true });
    },
  };
}
