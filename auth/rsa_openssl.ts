/**
 * RSA signing (RSASSA-PKCS1-v1_5 with SHA-256, RFC 8017 §8.2) through the
 * system's OpenSSL library, when the process may load it.
 *
 * Why: DKIM's rsa-sha256 costs one RSA private-key operation per message.
 * Deno's own RSA (behind both `node:crypto` and Web Crypto) takes about
 * 1.9 ms for a 2048-bit key on the machines tern is measured on, where
 * OpenSSL takes 0.25 ms: on a server signing every message, that is the
 * difference between RSA being the bottleneck and not. The key stays in
 * OpenSSL's memory; what crosses over is the 32-octet digest and the
 * signature. When `libcrypto.so.3` cannot be loaded (another OS, no FFI
 * permission), callers fall back to `node:crypto`, with the same result.
 *
 * @module
 */

const RSA_PKCS1_PADDING = 1;

/** The functions of libcrypto used here (OpenSSL 3). */
const SYMBOLS = {
  BIO_new_mem_buf: { parameters: ["buffer", "i32"], result: "pointer" },
  BIO_free: { parameters: ["pointer"], result: "i32" },
  PEM_read_bio_PrivateKey: {
    parameters: ["pointer", "pointer", "pointer", "pointer"],
    result: "pointer",
  },
  EVP_PKEY_free: { parameters: ["pointer"], result: "void" },
  EVP_PKEY_CTX_new: { parameters: ["pointer", "pointer"], result: "pointer" },
  EVP_PKEY_CTX_free: { parameters: ["pointer"], result: "void" },
  EVP_PKEY_sign_init: { parameters: ["pointer"], result: "i32" },
  EVP_PKEY_CTX_set_rsa_padding: { parameters: ["pointer", "i32"], result: "i32" },
  EVP_PKEY_CTX_set_signature_md: { parameters: ["pointer", "pointer"], result: "i32" },
  EVP_sha256: { parameters: [], result: "pointer" },
  EVP_PKEY_sign: {
    parameters: ["pointer", "buffer", "buffer", "buffer", "usize"],
    result: "i32",
  },
  EVP_PKEY_get_size: { parameters: ["pointer"], result: "i32" },
} as const;

type Crypto = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let library: Crypto | null | undefined;

/** libcrypto, loaded once; `null` when it cannot be. */
function libcrypto(): Crypto | null {
  if (library !== undefined) return library;
  library = null;
  for (const name of ["libcrypto.so.3", "libcrypto.3.dylib"]) {
    try {
      library = Deno.dlopen(name, SYMBOLS).symbols;
      break;
    } catch {
      // not here, or no FFI permission: try the next, then fall back
    }
  }
  return library;
}

/** Signs SHA-256 digests with one RSA private key. */
export interface RsaDigestSigner {
  /**
   * Signs a digest: PKCS#1 v1.5 with the SHA-256 DigestInfo (RFC 8017 §9.2).
   *
   * @param digest The SHA-256 of the data, 32 octets.
   * @returns The signature, as long as the key's modulus.
   */
  sign(digest: Uint8Array): Uint8Array;
}

/**
 * Loads an RSA private key into OpenSSL.
 *
 * @param pem The key, PEM (PKCS#8 or PKCS#1, not encrypted).
 * @returns A signer, or `null` when OpenSSL is not available or refuses the key.
 *
 * @example Sign a digest, verify with node:crypto
 * ```ts
 * import assert from "node:assert/strict";
 * import { createHash, generateKeyPairSync, verify } from "node:crypto";
 * import { openSslRsaSigner } from "./rsa_openssl.ts";
 * const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
 * const signer = openSslRsaSigner(privateKey.export({ type: "pkcs8", format: "pem" }).toString());
 * if (signer !== null) {
 *   const data = new TextEncoder().encode("from:a@example.test\r\n");
 *   const signature = signer.sign(createHash("sha256").update(data).digest());
 *   assert.ok(verify("sha256", data, publicKey, signature));
 * }
 * ```
 */
export function openSslRsaSigner(pem: string): RsaDigestSigner | null {
  const lib = libcrypto();
  if (lib === null) return null;
  const text = new TextEncoder().encode(pem);
  const bio = lib.BIO_new_mem_buf(text, text.length);
  if (bio === null) return null;
  const pkey = lib.PEM_read_bio_PrivateKey(bio, null, null, null);
  lib.BIO_free(bio);
  if (pkey === null) return null;
  const size = lib.EVP_PKEY_get_size(pkey);
  const sha256 = lib.EVP_sha256();
  // The key lives as long as the process keeps the signer.
  const registry = new FinalizationRegistry<Deno.PointerObject>((p) => lib.EVP_PKEY_free(p));
  const signer: RsaDigestSigner = {
    sign(digest: Uint8Array): Uint8Array {
      const ctx = lib.EVP_PKEY_CTX_new(pkey, null);
      if (ctx === null) throw new Error("OpenSSL could not make a signing context");
      try {
        const out = new Uint8Array(size);
        const length = new BigUint64Array([BigInt(size)]);
        if (
          lib.EVP_PKEY_sign_init(ctx) <= 0 ||
          lib.EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) <= 0 ||
          lib.EVP_PKEY_CTX_set_signature_md(ctx, sha256) <= 0 ||
          lib.EVP_PKEY_sign(
              ctx,
              out,
              new Uint8Array(length.buffer),
              digest,
              BigInt(digest.length),
            ) <= 0
        ) {
          throw new Error("OpenSSL refused to sign with the RSA key");
        }
        return out.subarray(0, Number(length[0]));
      } finally {
        lib.EVP_PKEY_CTX_free(ctx);
      }
    },
  };
  registry.register(signer, pkey);
  return signer;
}
