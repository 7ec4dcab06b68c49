import assert from "node:assert/strict";
import {
  decodeSaslResponse,
  encodeBase64Utf8,
  parsePlainMessage,
  parseSaslMechanism,
  SaslExchange,
  type SaslStep,
} from "./sasl.ts";

const encoder = new TextEncoder();

const responses = [
  { text: "=", bytes: [] }, // RFC 4954 §4: an empty response
  { text: "YWI=", bytes: [97, 98] },
  { text: "YWI", bytes: [97, 98] }, // padding left out
  { text: "YWJj", bytes: [97, 98, 99] },
  { text: "", bytes: null },
  { text: "YW I=", bytes: null },
  { text: "YWI==", bytes: null },
  { text: "Y", bytes: null },
  { text: "not base64!", bytes: null },
];
for (const c of responses) {
  Deno.test(`decodeSaslResponse() reads ${JSON.stringify(c.text)}`, () => {
    const bytes = decodeSaslResponse(c.text);
    assert.deepEqual(bytes === null ? null : [...bytes], c.bytes);
  });
}

Deno.test("encodeBase64Utf8() encodes any Unicode text, which btoa alone cannot (docs/smtp-pitfalls.md: AUTH in UTF-8)", () => {
  for (const text of ["Username:", "josé", "пароль", "密码🔑", ""]) {
    const decoded = decodeSaslResponse(encodeBase64Utf8(text) || "=");
    assert.equal(new TextDecoder().decode(decoded!), text);
  }
  assert.throws(() => btoa("пароль"));
});

const plain = [
  {
    name: "without an authorization identity",
    message: "\0alice@x.test\0pw",
    user: "alice@x.test",
    authz: "",
  },
  {
    name: "with an authorization identity",
    message: "bob\0alice@x.test\0pw",
    user: "alice@x.test",
    authz: "bob",
  },
  {
    name: "with UTF-8 in the user and password",
    message: "\0josé@x.test\0пароль",
    user: "josé@x.test",
    authz: "",
  },
  { name: "with no NUL", message: "alice pw", user: null, authz: "" },
  { name: "with one NUL", message: "alice\0pw", user: null, authz: "" },
  { name: "with three NULs", message: "\0alice\0pw\0", user: null, authz: "" },
  { name: "with an empty user", message: "\0\0pw", user: null, authz: "" },
  { name: "with an empty password", message: "\0alice\0", user: null, authz: "" },
];
for (const c of plain) {
  Deno.test(`parsePlainMessage() reads a message ${c.name} (RFC 4616 §2)`, () => {
    const credentials = parsePlainMessage(encoder.encode(c.message));
    assert.equal(credentials?.username ?? null, c.user);
    if (credentials) assert.equal(credentials.authorizationId, c.authz);
  });
}

Deno.test("parsePlainMessage() refuses bytes that are not UTF-8", () => {
  assert.equal(parsePlainMessage(new Uint8Array([0, 0x61, 0, 0xff, 0xfe])), null);
});

Deno.test("parseSaslMechanism() is case-insensitive and knows PLAIN and LOGIN only", () => {
  assert.equal(parseSaslMechanism("plain"), "PLAIN");
  assert.equal(parseSaslMechanism("Login"), "LOGIN");
  assert.equal(parseSaslMechanism("SCRAM-SHA-256"), null);
});

function credentialsOf(step: SaslStep): string {
  assert.equal(step.type, "credentials");
  return step.type === "credentials"
    ? `${step.credentials.username}:${step.credentials.password}`
    : "";
}

Deno.test("SaslExchange PLAIN: an initial response completes it at once", () => {
  const step = new SaslExchange("PLAIN").start(btoa("\0alice@x.test\0pw"));
  assert.equal(credentialsOf(step), "alice@x.test:pw");
});

Deno.test("SaslExchange PLAIN: without an initial response, an empty challenge asks for it", () => {
  const exchange = new SaslExchange("PLAIN");
  assert.deepEqual(exchange.start(null), { type: "challenge", challenge: "" });
  assert.equal(credentialsOf(exchange.respond(btoa("\0alice@x.test\0pw"))), "alice@x.test:pw");
});

Deno.test("SaslExchange LOGIN: Username: then Password:, or Password: at once after an initial response", () => {
  const exchange = new SaslExchange("LOGIN");
  assert.deepEqual(exchange.start(null), { type: "challenge", challenge: "VXNlcm5hbWU6" });
  assert.deepEqual(exchange.respond(btoa("alice@x.test")), {
    type: "challenge",
    challenge: "UGFzc3dvcmQ6",
  });
  assert.equal(
    credentialsOf(exchange.respond(encodeBase64Utf8("pässword"))),
    "alice@x.test:pässword",
  );
  const quick = new SaslExchange("LOGIN");
  assert.equal(quick.start(btoa("alice@x.test")).type, "challenge");
  assert.equal(credentialsOf(quick.respond(btoa("pw"))), "alice@x.test:pw");
});

const failures = [
  { name: "* cancels with 501 5.7.0", response: "*", code: 501, status: "5.7.0" },
  {
    name: "a response that is not base64 gets 501 5.5.2",
    response: "@@@",
    code: 501,
    status: "5.5.2",
  },
];
for (const c of failures) {
  Deno.test(`SaslExchange: ${c.name} (RFC 4954 §4)`, () => {
    for (const mechanism of ["PLAIN", "LOGIN"] as const) {
      const exchange = new SaslExchange(mechanism);
      exchange.start(null);
      const step = exchange.respond(c.response);
      assert.equal(step.type, "failed");
      if (step.type === "failed") {
        assert.equal(step.reply.code, c.code);
        assert.equal(step.reply.enhancedStatus, c.status);
      }
    }
  });
}

Deno.test("SaslExchange: a failure message never repeats what the client sent", () => {
  const secret = btoa("\0alice\0s3cret").slice(0, -2) + "!!";
  const step = new SaslExchange("PLAIN").start(secret);
  assert.equal(step.type, "failed");
  assert.ok(!JSON.stringify(step).includes("s3cret"));
  assert.ok(!JSON.stringify(step).includes(secret));
});
