import assert from "node:assert/strict";
import { isSrsAddress, srsForward, srsHash, srsReverse, srsTimestamp } from "./srs.ts";

const KEY = { secret: "tern-test-secret", domain: "example.test" };
const DAY = 86_400_000;

/** HMAC-SHA1, base64, 4 characters, computed by Python's hmac: an independent check. */
async function pythonHash(secret: string, parts: string[]): Promise<string> {
  const script = "import base64,hmac,hashlib,sys\n" +
    "m=hmac.new(sys.argv[1].encode(),digestmod=hashlib.sha1)\n" +
    "[m.update(p.lower().encode()) for p in sys.argv[2:]]\n" +
    "print(base64.b64encode(m.digest()).decode()[:4])";
  const out = await new Deno.Command("python3", { args: ["-c", script, secret, ...parts] })
    .output();
  return new TextDecoder().decode(out.stdout).trim();
}

Deno.test("srsTimestamp(): days mod 1024 in two base32 characters", () => {
  const cases: [number, string][] = [[0, "AA"], [1, "AB"], [31, "A7"], [32, "BA"], [1023, "77"], [
    1024,
    "AA",
  ]];
  for (const [days, expected] of cases) assert.deepEqual(srsTimestamp(days * DAY), expected);
});

Deno.test("srsHash() matches Python's hmac over timestamp, domain and local part, lower-cased", async () => {
  const vectors = [
    ["AB", "example.org", "carol"],
    ["77", "Example.ORG", "Carol.Smith"],
    ["K3", "xn--bcher-kva.example", "a+b"],
  ];
  for (const parts of vectors) {
    assert.deepEqual(srsHash(KEY.secret, parts), await pythonHash(KEY.secret, parts));
  }
});

Deno.test("srsForward() and srsReverse() make a round trip; the hash compares without case", () => {
  const now = 20_000 * DAY;
  const srs = srsForward("Carol@example.org", KEY, now);
  assert.ok(/^SRS0=[A-Za-z0-9+/]{4}=[A-Z2-7]{2}=example\.org=Carol@example\.test$/.test(srs), srs);
  assert.deepEqual(srsReverse(srs, KEY, now), { kind: "valid", address: "Carol@example.org" });
  assert.deepEqual(srsReverse(srs.toLowerCase(), KEY, now), {
    kind: "valid",
    address: "carol@example.org",
  });
  assert.deepEqual(srsReverse(srs, KEY, now + 21 * DAY)?.kind, "valid");
  assert.deepEqual(srsReverse(srs, KEY, now + 22 * DAY), {
    kind: "invalid",
    reason: "SRS address expired",
  });
});

Deno.test("srsReverse() refuses forged, malformed and foreign addresses", () => {
  const now = 20_000 * DAY;
  const srs = srsForward("carol@example.org", KEY, now);
  const forged = srs.replace("=carol@", "=mallory@");
  assert.deepEqual(srsReverse(forged, KEY, now), { kind: "invalid", reason: "bad SRS hash" });
  assert.deepEqual(srsReverse(srs, { ...KEY, secret: "other" }, now)?.kind, "invalid");
  assert.deepEqual(srsReverse("SRS0=xx@example.test", KEY, now)?.kind, "invalid");
  assert.deepEqual(srsReverse("alice@example.test", KEY, now), null);
  assert.deepEqual(srsReverse(srs.replace("@example.test", "@example.net"), KEY, now), null);
});

Deno.test("srsForward() keeps <> and our own SRS addresses", () => {
  assert.deepEqual(srsForward("", KEY, 0), "");
  const srs = srsForward("carol@example.org", KEY, 0);
  assert.ok(isSrsAddress(srs, KEY));
  assert.deepEqual(srsForward(srs, KEY, 0), srs);
});
