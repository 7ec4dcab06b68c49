// Routing as a Postfix administrator sets it up: catch-all aliases, a
// smarthost with TLS and AUTH, and SRS for mail an alias forwards elsewhere.
// Real sockets on loopback: tern in this process, Python's smtplib as the
// client, and tern's own SmtpServer as the smarthost.

import assert from "node:assert/strict";
import { join } from "node:path";
import tls from "node:tls";
import { validateConfig } from "../config/schema.ts";
import { srsForward } from "../mta/srs.ts";
import { queuedReply, REPLIES, type Reply } from "../smtp/reply.ts";
import { SASL_MECHANISMS, type SaslCredentials } from "../smtp/sasl.ts";
import { SmtpServer } from "../smtp/server.ts";
import { maildirFiles, python, startMta, waitFor } from "./_helpers.ts";
import { CERT } from "./_tls.ts";

const SEND = `
import smtplib, sys
port, sender, rcpts = int(sys.argv[1]), sys.argv[2], sys.argv[3].split(",")
with smtplib.SMTP("127.0.0.1", port) as s:
    s.ehlo("client.example.org")
    refused = {}
    s.mail(sender)
    for r in rcpts:
        code, _ = s.rcpt(r)
        if code >= 400:
            refused[r] = code
    accepted = [r for r in rcpts if r not in refused]
    if accepted:
        s.data(b"Subject: routed\\r\\n\\r\\nhello\\r\\n")
    else:
        s.rset()
    print(" ".join(f"{r}={c}" for r, c in refused.items()))
`;

/** Sends one message with smtplib; returns the RCPT refusals as `address=code`. */
async function send(port: number, sender: string, rcpts: string[]): Promise<string> {
  return (await python(SEND, [String(port), sender, rcpts.join(",")])).trim();
}

interface Delivered {
  from: string;
  to: string[];
  user: string | null;
  tls: boolean;
}

/** A smarthost: tern's SmtpServer with STARTTLS and AUTH, recording what it takes. */
async function smarthost(
  options: { startTls?: boolean; password?: string; authRequiresTls?: boolean } = {},
): Promise<{ port: number; delivered: Delivered[]; auths: string[] } & AsyncDisposable> {
  const delivered: Delivered[] = [];
  const auths: string[] = [];
  const secureContext = tls.createSecureContext({
    cert: await Deno.readTextFile(CERT.cert),
    key: await Deno.readTextFile(CERT.key),
  });
  const server = new SmtpServer({
    hostname: "smarthost.example.net",
    address: "127.0.0.1",
    port: 0,
    tls: options.startTls === false ? null : { secureContext },
    startTls: options.startTls !== false,
    authMechanisms: SASL_MECHANISMS,
    authRequiresTls: options.authRequiresTls ?? true,
    handlers: {
      authenticate: (c: SaslCredentials): Reply => {
        auths.push(`${c.mechanism} ${c.username} ${c.password}`);
        return c.username === "relay@example.net" && c.password === (options.password ?? "pw 1")
          ? REPLIES.authSucceeded
          : REPLIES.authFailed;
      },
      recipient: () => REPLIES.recipientOk,
      open: (envelope, connection) =>
        Promise.resolve({
          write: () => Promise.resolve(),
          commit: () => {
            delivered.push({
              from: envelope.reversePath,
              to: [...envelope.forwardPaths],
              user: connection.authenticatedAs,
              tls: connection.tls !== null,
            });
            return Promise.resolve(queuedReply("SMART1"));
          },
          abort: () => Promise.resolve(),
        }),
    },
  });
  const { port } = await server.listen();
  return {
    port,
    delivered,
    auths,
    async [Symbol.asyncDispose]() {
      await server.close();
    },
  };
}

/** Writes a secret file (first line the secret, a trailing newline as editors leave). */
async function secretFile(text: string): Promise<{ path: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "tern-secret-" });
  const path = join(dir, "secret");
  await Deno.writeTextFile(path, `${text}\n`);
  return { path, [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }) };
}

type Records = { event: string; fields: Record<string, unknown> }[];

function deferral(records: Records, rcpt: string): string | undefined {
  const line = records.find((r) =>
    r.event === "delivery.deferred" && r.fields.rcpt === `<${rcpt}>`
  );
  return line === undefined ? undefined : `${line.fields.status} ${line.fields.reply}`;
}

Deno.test("a catch-all alias takes unknown addresses; accounts, aliases and +tags win", async () => {
  await using t = await startMta(`local_domains: [example.test]
accounts: { alice@example.test: {}, catch@example.test: {}, bob@example.test: {} }
aliases: { "@example.test": catch@example.test, sales@example.test: bob@example.test }
`);
  const refused = await send(t.port, "someone@example.org", [
    "unknown@example.test",
    "alice@example.test",
    "alice+news@example.test",
    "sales@example.test",
    "nobody@other.example",
  ]);
  // Not a local domain, not a trusted... loopback is trusted, so only the
  // local ones matter here: none is refused.
  assert.equal(refused, "");
  const root = t.config.mailRoot;
  await waitFor(async () =>
    (await maildirFiles(join(root, "example.test", "catch"))).length === 1 &&
    (await maildirFiles(join(root, "example.test", "alice"))).length === 1 &&
    (await maildirFiles(join(root, "example.test", "bob"))).length === 1
  );
  // alice and alice+news are one mailbox, one copy; nothing else went to the catch-all.
  assert.equal((await maildirFiles(join(root, "example.test", "catch"))).length, 1);
});

Deno.test("without a catch-all, an unknown address is still refused 550", async () => {
  await using t = await startMta(`local_domains: [example.test]
accounts: { alice@example.test: {} }
`);
  assert.equal(
    await send(t.port, "someone@example.org", ["unknown@example.test"]),
    "unknown@example.test=550",
  );
});

Deno.test("a [host]:port smarthost with tls: require and AUTH gets the mail with the right credentials", async () => {
  await using host = await smarthost();
  await using secret = await secretFile("pw 1");
  await using t = await startMta(`local_domains: [example.test]
relay:
  routes:
    "*": { host: "[127.0.0.1]:${host.port}", tls: require, auth: { username: relay@example.net, password_file: ${secret.path} } }
`);
  await send(t.port, "alice@example.test", ["carol@example.org"]);
  await waitFor(() => host.delivered.length === 1);
  assert.deepEqual(host.delivered[0], {
    from: "alice@example.test",
    to: ["carol@example.org"],
    user: "relay@example.net",
    tls: true,
  });
  assert.deepEqual(host.auths, ["PLAIN relay@example.net pw 1"]);
});

Deno.test("relay.routes takes Postfix's [host]:port, and check-config reports an unreadable password file", async () => {
  await using secret = await secretFile("pw 1");
  const config = validateConfig({
    relay: {
      routes: {
        "example.org": "[smtp.example.net]:587",
        "*": {
          host: "[Smtp.Example.NET]",
          tls: "verify",
          auth: { username: "relay@example.net", password_file: secret.path },
        },
      },
    },
  }, { file: null, baseDir: "/" });
  assert.deepEqual(config.relay.routes, {
    "example.org": "smtp.example.net:587",
    "*": "smtp.example.net:25",
  });
  assert.equal(config.relay.routePolicies?.["*"]?.auth?.password, "pw 1");
  assert.throws(
    () =>
      validateConfig({
        relay: {
          routes: {
            "*": {
              host: "[smtp.example.net]:587",
              auth: { username: "u", password_file: "/nonexistent/secret" },
            },
          },
        },
      }, { file: "tern.yaml", baseDir: "/" }),
    /relay\.routes\.\*\.auth\.password_file: cannot read \/nonexistent\/secret/,
  );
});

Deno.test("a wrong smarthost password defers with 4.7.0 and the smarthost's reply", async () => {
  await using host = await smarthost({ password: "other" });
  await using secret = await secretFile("pw 1");
  await using t = await startMta(`local_domains: [example.test]
relay:
  routes:
    example.org: { host: "127.0.0.1:${host.port}", tls: require, auth: { username: relay@example.net, password_file: ${secret.path} } }
`);
  await send(t.port, "alice@example.test", ["carol@example.org"]);
  const why = await waitFor(() => deferral(t.logger.records, "carol@example.org"));
  assert.match(why, /^4\.7\.0 AUTH at .* failed: .*refused AUTH: 535 5\.7\.8/);
  assert.equal(host.delivered.length, 0);
});

Deno.test("tls: require defers when the smarthost offers no STARTTLS, and no password is sent", async () => {
  await using host = await smarthost({ startTls: false, authRequiresTls: false });
  await using secret = await secretFile("pw 1");
  await using t = await startMta(`local_domains: [example.test]
relay:
  routes:
    example.org: { host: "[127.0.0.1]:${host.port}", tls: require, auth: { username: relay@example.net, password_file: ${secret.path} } }
`);
  await send(t.port, "alice@example.test", ["carol@example.org"]);
  const why = await waitFor(() => deferral(t.logger.records, "carol@example.org"));
  assert.match(why, /^4\.7\.0 TLS required .*STARTTLS is not offered/);
  assert.deepEqual(host.auths, []);
  assert.equal(host.delivered.length, 0);
});

Deno.test("opportunistic TLS with AUTH refuses to send the password in clear", async () => {
  await using host = await smarthost({ startTls: false, authRequiresTls: false });
  await using secret = await secretFile("pw 1");
  await using t = await startMta(`local_domains: [example.test]
relay:
  routes:
    example.org: { host: "127.0.0.1:${host.port}", auth: { username: relay@example.net, password_file: ${secret.path} } }
`);
  await send(t.port, "alice@example.test", ["carol@example.org"]);
  const why = await waitFor(() => deferral(t.logger.records, "carol@example.org"));
  assert.match(why, /^4\.7\.0 AUTH .*without TLS/);
  assert.deepEqual(host.auths, []);
});

Deno.test("tls: verify defers on a self-signed certificate with the reason", async () => {
  await using host = await smarthost();
  await using t = await startMta(`local_domains: [example.test]
relay: { routes: { example.org: { host: "[127.0.0.1]:${host.port}", tls: verify } } }
`);
  await send(t.port, "alice@example.test", ["carol@example.org"]);
  const why = await waitFor(() => deferral(t.logger.records, "carol@example.org"));
  assert.match(why, /^4\.7\.0 TLS required .*tls: verify: .*(self[- ]signed|certificate)/i);
  assert.equal(host.delivered.length, 0);
});

Deno.test("SRS: an alias forwards with an SRS0 sender; the bounce goes back; a forgery gets 550", async () => {
  await using host = await smarthost({ startTls: false });
  await using secret = await secretFile("srs secret");
  await using t = await startMta(`local_domains: [example.test]
accounts: { alice@example.test: {} }
aliases: { fwd@example.test: dave@example.net }
srs: { secret_file: ${secret.path}, domain: example.test }
relay: { routes: { example.net: "127.0.0.1:${host.port}", example.org: "127.0.0.1:${host.port}" } }
`);
  await send(t.port, "carol@example.org", ["fwd@example.test"]);
  await waitFor(() => host.delivered.length === 1);
  const forwarded = host.delivered[0]!;
  assert.deepEqual(forwarded.to, ["dave@example.net"]);
  assert.match(forwarded.from, /^SRS0=[^=]{4}=[A-Z2-7]{2}=example\.org=carol@example\.test$/);
  assert.equal(
    forwarded.from,
    srsForward("carol@example.org", {
      secret: "srs secret",
      domain: "example.test",
    }, Date.now()),
  );

  // The bounce, as the next MTA would send it: <> to the SRS address.
  assert.equal(await send(t.port, "", [forwarded.from]), "");
  await waitFor(() => host.delivered.length === 2);
  assert.deepEqual(host.delivered[1], {
    from: "",
    to: ["carol@example.org"],
    user: null,
    tls: false,
  });

  // A forged one (another local part, same hash) is no mailbox here.
  const forged = forwarded.from.replace("=carol@", "=mallory@");
  assert.equal(await send(t.port, "", [forged]), `${forged}=550`);
});
