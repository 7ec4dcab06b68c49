import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createHash, createPublicKey, generateKeyPairSync, verify } from "node:crypto";
import fc from "fast-check";
import { headerName, RelaxedBodyHasher, relaxedHeader, splitHeaderFields } from "./dkim_canon.ts";
import {
  type DkimKey,
  dkimRecordLine,
  dkimRecordText,
  parseDkimKey,
  txtStrings,
} from "./dkim_keys.ts";
import {
  DkimSigner,
  headerHashInput,
  MAX_HEADER_BLOCK,
  parseFromDomain,
  signedHeaderNames,
  signHeaderData,
} from "./dkim_sign.ts";

const encoder = new TextEncoder();

// RFC 8463 Appendix A.1: the Ed25519 secret is the RFC 8032 §7.1 TEST 1 seed.
const RFC8463_SEED = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
const RFC8463_PUBLIC = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
/** PKCS#8 for an Ed25519 seed: a fixed 16-octet prefix (RFC 8410), then the seed. */
const RFC8463_PEM = `-----BEGIN PRIVATE KEY-----\n${
  Buffer.concat([
    Buffer.from("302e020100300506032b657004220420", "hex"),
    Buffer.from(RFC8463_SEED, "base64"),
  ]).toString("base64")
}\n-----END PRIVATE KEY-----\n`;

// RFC 8463 Appendix A.3, the message as signed (its two DKIM-Signature fields left out).
const RFC8463_HEADER = [
  "From: Joe SixPack <joe@football.example.com>",
  "To: Suzie Q <suzie@shopping.example.net>",
  "Subject: Is dinner ready?",
  "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)",
  "Message-ID: <20030712040037.46341.5F8J@football.example.com>",
  "",
].join("\r\n");
const RFC8463_BODY = "Hi.\r\n\r\nWe lost the game.  Are you hungry yet?\r\n\r\nJoe.\r\n";
// Its ed25519-sha256 signature field, b= emptied (the data a verifier hashes).
const RFC8463_SIGNATURE_TEMPLATE = [
  "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;",
  " d=football.example.com; i=@football.example.com;",
  " q=dns/txt; s=brisbane; t=1528637909; h=from : to :",
  " subject : date : message-id : from : subject : date;",
  " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;",
  " b=",
].join("\r\n");
const RFC8463_BH = "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=";
const RFC8463_B =
  "/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11BusFa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==";

const rfcKey = parseDkimKey(RFC8463_PEM, "football.example.com", "brisbane");

function rsaKey(domain: string, selector: string): DkimKey {
  const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  return parseDkimKey(
    privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    domain,
    selector,
  );
}

function edKey(domain: string, selector: string): DkimKey {
  const { privateKey } = generateKeyPairSync("ed25519");
  return parseDkimKey(
    privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    domain,
    selector,
  );
}

function bodyHash(body: string): string {
  const hasher = new RelaxedBodyHasher();
  hasher.update(encoder.encode(body));
  return hasher.digest();
}

function sha256(text: string): string {
  return createHash("sha256").update(Buffer.from(text, "latin1")).digest("base64");
}

/** Signs a whole message given as a binary string, in the chunks given. */
function signMessage(signer: DkimSigner, chunks: readonly Uint8Array[], added = "") {
  const signing = signer.begin();
  for (const chunk of chunks) signing.update(chunk);
  return { fields: signing.finish(added), fromDomain: signing.fromDomain };
}

/** The tags of a DKIM-Signature field, white space removed from values. */
function tags(field: string): Map<string, string> {
  const value = field.slice(field.indexOf(":") + 1).replace(/\r\n[ \t]/g, " ");
  const map = new Map<string, string>();
  for (const part of value.split(";")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    map.set(part.slice(0, eq).trim(), part.slice(eq + 1).replace(/[ \t]+/g, ""));
  }
  return map;
}

/**
 * Checks a signature field against the message as a verifier does (RFC 6376
 * §6.1.3), with node:crypto and the public key: only a sanity check, the
 * independent verifier (dkimpy) is in tests/dkim_sign_test.ts.
 */
function checkSignature(field: string, key: DkimKey, headerBlock: string): boolean {
  const t = tags(field);
  const names = (t.get("h") ?? "").split(":");
  const unsigned = field.replace(/\r\n$/, "").replace(/(b=)[^;]*$/, "$1");
  const data = Buffer.from(
    headerHashInput(splitHeaderFields(headerBlock), names, unsigned),
    "latin1",
  );
  const signature = Buffer.from(t.get("b") ?? "", "base64");
  const publicKey = createPublicKey(key.privateKey);
  return key.algorithm === "ed25519-sha256"
    ? verify(null, createHash("sha256").update(data).digest(), publicKey, signature)
    : verify("sha256", data, publicKey, signature);
}

Deno.test("RFC 8463 Appendix A: the example key gives the published public key", () => {
  assert.equal(rfcKey.algorithm, "ed25519-sha256");
  assert.equal(rfcKey.publicKey, RFC8463_PUBLIC);
  assert.equal(dkimRecordText(rfcKey), `v=DKIM1; k=ed25519; p=${RFC8463_PUBLIC}`);
});

Deno.test("RFC 8463 Appendix A: the body hash and the ed25519 b= of the example are reproduced exactly", () => {
  assert.equal(bodyHash(RFC8463_BODY), RFC8463_BH);
  const names = ["from", "to", "subject", "date", "message-id", "from", "subject", "date"];
  const data = headerHashInput(
    splitHeaderFields(RFC8463_HEADER),
    names,
    RFC8463_SIGNATURE_TEMPLATE,
  );
  // Ed25519 is deterministic: the same data and key give the RFC's signature, octet for octet.
  assert.equal(signHeaderData(rfcKey, data), RFC8463_B);
});

Deno.test("RFC 8463 example message: DkimSigner signs it with the same bh= and a b= that checks", () => {
  const signer = new DkimSigner([rfcKey], { now: () => 1528637909_000 });
  const { fields, fromDomain } = signMessage(signer, [
    encoder.encode(`${RFC8463_HEADER}\r\n${RFC8463_BODY}`),
  ]);
  assert.equal(fromDomain, "football.example.com");
  const t = tags(fields);
  assert.equal(t.get("bh"), RFC8463_BH);
  assert.equal(t.get("a"), "ed25519-sha256");
  assert.equal(t.get("c"), "relaxed/relaxed");
  assert.equal(t.get("d"), "football.example.com");
  assert.equal(t.get("s"), "brisbane");
  assert.equal(t.get("t"), "1528637909");
  assert.equal(t.get("l"), undefined);
  assert.ok(checkSignature(fields, rfcKey, RFC8463_HEADER));
});

Deno.test("RFC 6376 §3.4.5: the relaxed canonicalisation examples", () => {
  const fields = splitHeaderFields("A: X\r\nB : Y\t\r\n\tZ  \r\n");
  assert.deepEqual(fields.map(relaxedHeader), ["a:X\r\n", "b:Y Z\r\n"]);
  assert.equal(bodyHash(" C \r\nD \t E\r\n\r\n\r\n"), sha256(" C\r\nD E\r\n"));
});

Deno.test("relaxed body: empty body, no final CRLF, only blank lines, lone CR and LF", () => {
  assert.equal(bodyHash(""), sha256(""));
  assert.equal(bodyHash("\r\n\r\n"), sha256(""));
  assert.equal(bodyHash(" \t\r\n  \r\n"), sha256(""));
  assert.equal(bodyHash("abc"), sha256("abc\r\n"));
  assert.equal(bodyHash("abc  "), sha256("abc\r\n"));
  assert.equal(bodyHash("a\r\n\r\n b\r\n\r\n"), sha256("a\r\n\r\n b\r\n"));
  assert.equal(bodyHash("a\rb\nc \r"), sha256("a\rb\nc \r\r\n"));
  assert.equal(bodyHash("x \r \r\n"), sha256("x \r\r\n"));
});

/** RFC 6376 §3.4.4, written the obvious (whole-body) way, to check the streaming one against. */
function referenceBody(body: string): string {
  let text = body.split("\r\n").map((line) => line.replace(/[ \t]+/g, " ").replace(/ $/, ""))
    .join("\r\n");
  text = text.replace(/(\r\n)*$/, "");
  return text === "" ? "" : text + "\r\n";
}

const bodyText = fc.string({
  unit: fc.constantFrom("a", "b", " ", "\t", "\r", "\n", "\r\n", "é", "."),
  maxLength: 60,
});

/** Cut points for a string: the chunks it is fed in. */
function chunked(bytes: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Uint8Array[] = [];
  let start = 0;
  for (const point of points) {
    chunks.push(bytes.subarray(start, point));
    start = point;
  }
  chunks.push(bytes.subarray(start));
  return chunks;
}

Deno.test("property: the streaming relaxed body hash equals the whole-body reference, for any chunking", () => {
  fc.assert(
    fc.property(bodyText, fc.array(fc.nat(), { maxLength: 8 }), (body, cuts) => {
      const bytes = encoder.encode(body);
      const hasher = new RelaxedBodyHasher();
      for (const chunk of chunked(bytes, cuts)) hasher.update(chunk);
      const expected = referenceBody(Buffer.from(bytes).toString("latin1"));
      assert.equal(hasher.digest(), sha256(expected));
    }),
    { numRuns: 500 },
  );
});

Deno.test("property: a message split anywhere (even inside CRLF) gets the same signatures", () => {
  const signer = new DkimSigner([rfcKey, edKey("example.test", "e1")], {
    now: () => 1_700_000_000_000,
  });
  const headerLine = fc.constantFrom(
    "From: Joe <joe@football.example.com>\r\n",
    "From: a@example.test\r\n",
    "Subject: hi  there \r\n",
    "To: x@y.test,\r\n\tz@y.test\r\n",
    "Subject: \xc3\xa9t\xc3\xa9\r\n",
    "X-Other: 1\r\n",
  );
  fc.assert(
    fc.property(
      fc.array(headerLine, { maxLength: 5 }),
      fc.option(bodyText, { nil: undefined }),
      fc.array(fc.nat(), { maxLength: 8 }),
      (lines, body, cuts) => {
        const text = lines.join("") + (body === undefined ? "" : `\r\n${body}`);
        const bytes = Buffer.from(text, "latin1");
        const whole = signMessage(signer, [bytes]);
        const pieces = signMessage(signer, chunked(bytes, cuts));
        const bytewise = signMessage(signer, [...bytes].map((b) => Uint8Array.of(b)));
        assert.equal(pieces.fields, whole.fields);
        assert.equal(bytewise.fields, whole.fields);
        assert.equal(pieces.fromDomain, whole.fromDomain);
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("h= lists each signed field once per occurrence, From once more, bottom-up order", () => {
  const header = "Received: x\r\nFrom: a@example.test\r\nTo: b@x.test\r\nTo: c@x.test\r\n" +
    "Subject: s\r\nX-Mailer: m\r\nList-Id: <l.example.test>\r\n";
  const names = signedHeaderNames(splitHeaderFields(header));
  assert.deepEqual(names, ["from", "from", "subject", "to", "to", "list-id"]);
  // Two To fields: the first "to" in h= is the bottom one (RFC 6376 §5.4.2).
  const data = headerHashInput(splitHeaderFields(header), ["to", "to", "to"], "DKIM-Signature: b=");
  assert.equal(data, "to:c@x.test\r\nto:b@x.test\r\ndkim-signature:b=");
});

Deno.test("the fields the MTA adds on top are signed, and a From added later would break it", () => {
  const key = edKey("example.test", "e1");
  const signer = new DkimSigner([key], { now: () => 1_700_000_000_000 });
  const header = "From: a@example.test\r\nSubject: s\r\n";
  const added = "Message-ID: <1@example.test>\r\nDate: Thu, 1 Jan 2026 00:00:00 +0000\r\n";
  const { fields } = signMessage(signer, [encoder.encode(`${header}\r\nbody\r\n`)], added);
  const h = tags(fields).get("h") ?? "";
  assert.deepEqual(h.split(":"), ["from", "from", "subject", "date", "message-id"]);
  assert.ok(checkSignature(fields, key, added + header));
  assert.ok(!checkSignature(fields, key, added + header.replace("Subject: s", "Subject: t")));
  assert.ok(!checkSignature(fields, key, "From: evil@example.test\r\n" + added + header));
});

Deno.test("signing rule: the From domain or its nearest parent with a key; both algorithms; else nothing", () => {
  const parentRsa = rsaKey("example.test", "r1");
  const childEd = edKey("news.example.test", "e1");
  const childRsa = rsaKey("news.example.test", "r1");
  const signer = new DkimSigner([parentRsa, childEd, childRsa]);
  const sign = (from: string) => {
    const { fields, fromDomain } = signMessage(signer, [
      encoder.encode(`From: ${from}\r\nSubject: x\r\n\r\nbody\r\n`),
    ]);
    return {
      fromDomain,
      d: fields.split(/(?=DKIM-Signature:)/).filter((f) => f !== "").map((f) =>
        `${tags(f).get("a")} ${tags(f).get("d")}`
      ),
    };
  };
  assert.deepEqual(sign("a@example.test").d, ["rsa-sha256 example.test"]);
  assert.deepEqual(sign("a@deep.shop.example.test").d, ["rsa-sha256 example.test"]);
  assert.deepEqual(sign("A <a@News.Example.Test>").d, [
    "ed25519-sha256 news.example.test",
    "rsa-sha256 news.example.test",
  ]);
  assert.deepEqual(sign("a@x.news.example.test").d.length, 2);
  assert.deepEqual(sign("a@notexample.test"), { fromDomain: "notexample.test", d: [] });
  assert.deepEqual(sign("a@other.test").d, []);
});

Deno.test("no From, two From fields, or authors in two domains: no signature", () => {
  const signer = new DkimSigner([edKey("example.test", "e1")]);
  const sign = (header: string) => signMessage(signer, [encoder.encode(`${header}\r\nbody\r\n`)]);
  assert.deepEqual(sign("Subject: x\r\n"), { fields: "", fromDomain: null });
  assert.equal(sign("From: a@example.test\r\nFrom: b@example.test\r\n").fields, "");
  assert.equal(sign("From: a@example.test, b@other.test\r\n").fields, "");
  assert.notEqual(sign("From: a@example.test, b@example.test\r\n").fields, "");
  assert.equal(signMessage(signer, []).fields, "");
  assert.equal(signMessage(signer, [encoder.encode("\r\nbody only\r\n")]).fields, "");
});

Deno.test("From: display names, comments, quoted strings, groups and IDN domains", () => {
  const from = (value: string) => parseFromDomain([`From: ${value}\r\n`]);
  assert.equal(from('"Smith, <John> @x" <john@Example.TEST>'), "example.test");
  assert.equal(from("john@example.test (John <j@other.test>)"), "example.test");
  assert.equal(from("Team: a@example.test, b@example.test;"), "example.test");
  assert.equal(from("<a@example.test.>"), "example.test");
  assert.equal(
    from(Buffer.from("a@bücher.example", "utf8").toString("latin1")),
    "xn--bcher-kva.example",
  );
  assert.equal(from("nobody"), null);
  assert.equal(from("a@[192.0.2.1]"), null);
  assert.equal(from(""), null);
});

Deno.test("the DKIM-Signature field is folded with lines under 78 characters", () => {
  const key = rsaKey("a-rather-long-subdomain-name.example.test", "selector-2026-rotation");
  const signer = new DkimSigner([key]);
  const header = SIGNED_HEADER_SAMPLE;
  const { fields } = signMessage(signer, [encoder.encode(`${header}\r\nbody\r\n`)]);
  assert.match(fields, /^DKIM-Signature: v=1; a=rsa-sha256; c=relaxed\/relaxed;/);
  assert.ok(fields.endsWith("\r\n"));
  for (const line of fields.slice(0, -2).split("\r\n")) {
    assert.ok(line.length < 78, `too long (${line.length}): ${line}`);
  }
  assert.ok(fields.slice(0, -2).split("\r\n").slice(1).every((line) => line.startsWith(" ")));
  assert.ok(checkSignature(fields, key, header));
});

const SIGNED_HEADER_SAMPLE = [
  "From: Someone <someone@a-rather-long-subdomain-name.example.test>",
  "To: a@x.test",
  "Cc: b@x.test",
  "Subject: folding",
  "Date: Thu, 1 Jan 2026 00:00:00 +0000",
  "Message-ID: <m@example.test>",
  "MIME-Version: 1.0",
  "Content-Type: text/plain; charset=utf-8",
  "Content-Transfer-Encoding: 8bit",
  "List-Unsubscribe: <mailto:u@example.test>",
  "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
  "",
].join("\r\n");

Deno.test("hasKeys says whether there is anything to sign with", () => {
  assert.equal(new DkimSigner([]).hasKeys, false);
  assert.equal(new DkimSigner([rfcKey]).hasKeys, true);
});

Deno.test("parseDkimKey: one-line reasons for what cannot sign", () => {
  const pem = (key: { export(o: { type: "pkcs8"; format: "pem" }): string | Buffer }) =>
    key.export({ type: "pkcs8", format: "pem" }).toString();
  const small = generateKeyPairSync("rsa", { modulusLength: 1024 }).privateKey;
  const ec = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
  const ed = generateKeyPairSync("ed25519");
  const cases: [string, RegExp][] = [
    ["", /^not a PEM private key/],
    ["hello", /^not a PEM private key/],
    ["-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", /^not a PEM private key/],
    [pem(small), /^RSA key of 1024 bits is too short: use 2048 bits or more/],
    [pem(ec), /^unsupported key type ec: use RSA \(2048 bits or more\) or Ed25519$/],
    [
      ed.publicKey.export({ type: "spki", format: "pem" }).toString(),
      /^not a PEM private key \(found PUBLIC KEY\)/,
    ],
    [
      ed.privateKey.export({
        type: "pkcs8",
        format: "pem",
        cipher: "aes-256-cbc",
        passphrase: "x",
      }).toString(),
      /encrypted/,
    ],
  ];
  for (const [text, reason] of cases) {
    assert.throws(() => parseDkimKey(text, "example.test", "s1"), (error: unknown) => {
      assert.ok(error instanceof Error);
      assert.match(error.message, reason);
      assert.ok(!error.message.includes("\n"), error.message);
      return true;
    });
  }
  assert.throws(() => parseDkimKey(pem(ed.privateKey), "not a domain", "s1"), /not a domain name/);
  assert.throws(() => parseDkimKey(pem(ed.privateKey), "example.test", "s_1"), /not a selector/);
  // PKCS#1 RSA keys are read too.
  const pkcs1 = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({
    type: "pkcs1",
    format: "pem",
  }).toString();
  assert.equal(parseDkimKey(pkcs1, "example.test", "s1").algorithm, "rsa-sha256");
});

Deno.test("DNS record lines: long values split into strings of at most 255 octets", () => {
  const key = rsaKey("example.test", "s2026");
  const line = dkimRecordLine(key);
  assert.match(
    line,
    /^s2026\._domainkey\.example\.test\. IN TXT "v=DKIM1; k=rsa; p=[^"]+" "[^"]+"$/,
  );
  const strings = [...line.matchAll(/"([^"]*)"/g)].map((m) => m[1] ?? "");
  assert.ok(strings.every((s) => s.length <= 255));
  assert.equal(strings.join(""), dkimRecordText(key));
  assert.equal(txtStrings(""), '""');
  assert.equal(txtStrings('a"b'), '"a\\"b"');
  assert.equal(headerName("Subject : x"), "subject");
});

Deno.test("a header block over MAX_HEADER_BLOCK is not kept nor signed; just under it is", () => {
  const signer = new DkimSigner([rfcKey]);
  const from = "From: joe@football.example.com\r\n";
  const filler = (size: number) => `X-Filler: ${"a".repeat(size - 12)}\r\n`;
  // The limit counts the blank line that ends the header too.
  const under = from + filler(MAX_HEADER_BLOCK - 2 - from.length);
  assert.equal(under.length + 2, MAX_HEADER_BLOCK);
  assert.notEqual(signMessage(signer, [encoder.encode(`${under}\r\nbody\r\n`)]).fields, "");
  const over = from + filler(MAX_HEADER_BLOCK - 2 - from.length + 1);
  assert.equal(signMessage(signer, [encoder.encode(`${over}\r\nbody\r\n`)]).fields, "");
  // LF-only line ends: no blank line is ever found, and the message is not held whole.
  const bare = `From: joe@football.example.com\n\n${"body line\n".repeat(120_000)}`;
  const signing = signer.begin();
  const bytes = encoder.encode(bare);
  for (let i = 0; i < bytes.length; i += 65536) signing.update(bytes.subarray(i, i + 65536));
  assert.equal(signing.finish(), "");
});
