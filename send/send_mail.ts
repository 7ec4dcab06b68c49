/**
 * `sendMail()`: build a message and hand it over, in one call, through a
 * smarthost (submission with STARTTLS or implicit TLS, and AUTH) or straight
 * to the MX hosts of each recipient domain. What each server answered comes
 * back as values, each refusal with the rule behind it.
 *
 * @module
 */

import { buildMessage, type MailOptions } from "../message/build.ts";
import { parseDkimKey } from "../auth/dkim_keys.ts";
import { DkimSigner } from "../auth/dkim_sign.ts";
import { concatBytes } from "../bytes/concat.ts";
import { StubResolver } from "../dns/resolver.ts";
import type { NextHop } from "../mta/routing.ts";
import { annotateReply, formatAnnotation } from "../smtp/annotations.ts";
import type { OutgoingMessage, TransactionResult } from "../smtp/client.ts";
import { isPositive, type Reply, reply } from "../smtp/reply.ts";
import { type ConnectPolicy, deliver, type DeliveryOutcome } from "./deliver.ts";
import { type DomainHops, mxNextHops, parseSmarthost } from "./next_hops.ts";
import { type HostFailure, SendError } from "./send_error.ts";

/** How {@linkcode sendMail} hands the message over. */
export interface SendOptions {
  /**
   * The server to hand every message to: `"host:port"` or `"[host]:port"`.
   * Port 465 means implicit TLS (RFC 8314 §3); any other, STARTTLS
   * (RFC 3207). Without it: direct delivery to each recipient domain's MX
   * hosts (RFC 5321 §5.1).
   */
  smarthost?: string;
  /** Log in with AUTH PLAIN, or LOGIN (RFC 4954); only ever over TLS. */
  auth?: { user: string; pass: string };
  /**
   * TLS: `"required"`: STARTTLS (or implicit TLS) must succeed and the
   * certificate must verify (unless `insecureSkipVerify`); `"opportunistic"`:
   * used when offered, any certificate accepted, plaintext when it fails
   * (RFC 7435); `"none"`: never.
   * @default {"required" with a smarthost, "opportunistic" for direct delivery}
   */
  tls?: "required" | "opportunistic" | "none";
  /** Extra CA certificates (PEM) to trust, such as a test CA. */
  caCerts?: string[];
  /** Accept any certificate (self-signed test servers). @default {false} */
  insecureSkipVerify?: boolean;
  /** Our name, for EHLO and the Message-ID's domain. @default {Deno.hostname()} */
  hostname?: string;
  /** Name servers for direct delivery, as `ip:port` or `ip`. @default {those of /etc/resolv.conf} */
  nameservers?: string[];
  /** The port of MX hosts, for direct delivery (tests point it at loopback). @default {25} */
  mxPort?: number;
  /** The bound on each network wait (connect, each reply), ms. @default {the RFC 5321 §4.5.3.2 timeouts} */
  timeoutMs?: number;
  /**
   * Sign the message with DKIM (RFC 6376, RFC 8463), with the code `tern
   * serve` signs with: each key whose domain is the From: domain or a parent
   * of it signs (an RSA key of 2048 bits or more, or Ed25519, as PEM; one
   * rsa and one ed25519 key of a domain give two signatures).
   * @default {not signed}
   */
  dkim?: DkimKeyOption | readonly DkimKeyOption[];
}

/** A DKIM signing key for {@linkcode SendOptions.dkim}. */
export interface DkimKeyOption {
  /** The signing domain (`d=`). */
  domain: string;
  /** The selector (`s=`): the public key is at `<selector>._domainkey.<domain>`. */
  selector: string;
  /** The private key, PEM (PKCS#8 or PKCS#1). */
  privateKey: string;
}

/** A recipient the server refused, or that no server could be reached for. */
export interface RejectedRecipient {
  /** The address. */
  address: string;
  /** The refusal. For a domain no host answered for, made here: `451 4.4.1` with the reasons. */
  reply: Reply;
  /** The rule behind the reply, as `tern explain` gives it: `"RFC 3463 §3.2 550 5.1.1: no such mailbox here"`. */
  explanation?: string;
}

/** What became of a message. */
export interface SendResult {
  /** The Message-ID written in the header, without its angle brackets. */
  messageId: string;
  /** The recipients a server took responsibility for (RFC 5321 §6.1). */
  accepted: string[];
  /** The recipients refused (at RCPT, or with the content), each with its reply. */
  rejected: RejectedRecipient[];
  /** The reply that ended the transaction (with several domains, the last one's); none when no recipient was accepted. */
  reply?: Reply;
}

/**
 * Builds a message and sends it. Bcc recipients are in the envelope only,
 * never in the header. A refused recipient is a value in `rejected`, not an
 * error; only a message that reached no server at all throws.
 *
 * @param mail The message: from, to, cc, bcc, subject, text, html, attachments, headers.
 * @param options Where and how to send; without a smarthost, direct delivery by MX.
 * @returns The Message-ID, the accepted and the refused recipients.
 * @throws {SendError} When no host took the message: each host's failure is listed.
 * @throws {TypeError} When the smarthost is malformed or there is no recipient.
 *
 * @example Through a smarthost, with STARTTLS and AUTH
 * ```ts ignore
 * import { sendMail } from "@tern/mta";
 * await sendMail({ from: "me@example.org", to: "you@example.net", subject: "Hi", text: "Hello" },
 *   { smarthost: "smtp.example.org:587", auth: { user, pass } });
 * ```
 *
 * @example To a server on this machine, and what it answered
 * ```ts
 * import { reply, sendMail, SmtpServer } from "../mod.ts";
 * // A server that takes mail for bob and refuses everyone else.
 * const server = new SmtpServer({
 *   hostname: "mx.example.test", address: "127.0.0.1", port: 0,
 *   handlers: {
 *     recipient: (to) => to === "bob@example.test" ? reply(250, "2.1.5", "Ok") : reply(550, "5.1.1", "No such user"),
 *     open: () => Promise.resolve({
 *       write: () => Promise.resolve(),
 *       commit: () => Promise.resolve(reply(250, "2.0.0", "Ok: queued")),
 *       abort: () => Promise.resolve(),
 *     }),
 *   },
 * });
 * const { port } = await server.listen();
 *
 * const result = await sendMail(
 *   { from: "alice@example.test", to: ["bob@example.test", "carol@example.test"], subject: "Hi", text: "Hello" },
 *   { smarthost: `127.0.0.1:${port}`, tls: "none", hostname: "client.example.test" },
 * );
 * console.log(result.accepted); // ["bob@example.test"]
 * console.log(result.rejected[0]?.explanation); // "RFC 3463 §3.2 550 5.1.1: no such mailbox here"
 * await server.close();
 * ```
 */
export async function sendMail(mail: MailOptions, options: SendOptions = {}): Promise<SendResult> {
  const hostname = options.hostname ?? ownHostname();
  const built = signed(buildMessage(mail, { hostname }), options.dkim);
  const recipients = built.envelope.to;
  if (recipients.length === 0) {
    throw new TypeError("Cannot send: the message has no recipient (to, cc or bcc)");
  }
  const message = (addresses: readonly string[]): OutgoingMessage => ({
    reversePath: built.envelope.from,
    recipients: addresses.map((address) => ({ address })),
    // RFC 6152: 8-bit content needs 8BITMIME; RFC 6531: UTF-8 addresses or headers need SMTPUTF8.
    body: built.eightBit ? "8BITMIME" : "7BIT",
    smtputf8: built.smtputf8,
    size: built.content.length,
  });
  const policy = connectPolicy(options, hostname);
  const groups = options.smarthost === undefined
    ? await mxGroups(recipients, options, hostname)
    : [{ recipients, hops: smarthostHops(options.smarthost) }];
  const outcomes = await Promise.all(groups.map(async (group) => ({
    recipients: group.recipients,
    outcome: group.hops.kind === "hosts"
      ? await deliver(
        group.hops.hosts,
        message(group.recipients),
        built.content,
        policy(group.hops.hosts, options.smarthost !== undefined),
        options.smarthost === undefined ? group.resolver : undefined,
      )
      : group.hops,
  })));
  return summarize(built.messageId, outcomes);
}

/**
 * The message with its DKIM-Signature fields on top, when keys are given.
 *
 * @throws {TypeError} When a key cannot be used (not PEM, RSA under 2048 bits).
 */
function signed<T extends { content: Uint8Array }>(
  built: T,
  dkim: DkimKeyOption | readonly DkimKeyOption[] | undefined,
): T {
  if (dkim === undefined) return built;
  const options: readonly DkimKeyOption[] = Array.isArray(dkim) ? dkim : [dkim as DkimKeyOption];
  const keys = options.map((k) => {
    try {
      return parseDkimKey(k.privateKey, k.domain.toLowerCase(), k.selector);
    } catch (error: unknown) {
      throw new TypeError(
        `Cannot sign with the DKIM key of ${k.selector}._domainkey.${k.domain}: ${
          error instanceof Error ? error.message : String(error)
        }`,
      );
    }
  });
  const signing = new DkimSigner(keys).begin();
  signing.update(built.content);
  const signature = new TextEncoder().encode(signing.finish());
  return { ...built, content: concatBytes([signature, built.content]) };
}

/** Recipients of one destination and the hosts that serve it. */
interface Group {
  readonly recipients: readonly string[];
  readonly hops: DomainHops;
  readonly resolver?: StubResolver;
}

function smarthostHops(smarthost: string): DomainHops {
  return { kind: "hosts", hosts: [parseSmarthost(smarthost)] };
}

/** Direct delivery: recipients grouped by domain, each domain's MX hosts looked up. */
async function mxGroups(
  recipients: readonly string[],
  options: SendOptions,
  hostname: string,
): Promise<Group[]> {
  const resolver = new StubResolver({
    nameservers: options.nameservers ?? null,
    ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
  });
  const byDomain = new Map<string, string[]>();
  for (const address of recipients) {
    // RFC 5321 §2.4: the domain is case-insensitive; the local part is left as it is.
    const domain = address.slice(address.lastIndexOf("@") + 1).toLowerCase();
    byDomain.set(domain, [...(byDomain.get(domain) ?? []), address]);
  }
  return await Promise.all(
    [...byDomain].map(async ([domain, addresses]) => ({
      recipients: addresses,
      hops: await mxNextHops(domain, resolver, hostname, options.mxPort ?? 25),
      resolver,
    })),
  );
}

/** The connection policy: a smarthost wants verified TLS by default, MX delivery takes what it gets. */
function connectPolicy(
  options: SendOptions,
  helo: string,
): (hosts: readonly NextHop[], isSmarthost: boolean) => ConnectPolicy {
  return (hosts, isSmarthost) => {
    const tls = options.tls ?? (isSmarthost ? "required" : "opportunistic");
    // RFC 8314 §3: port 465 speaks TLS from the first byte.
    const implicitTls = isSmarthost && tls !== "none" && hosts[0]?.port === 465;
    return {
      helo,
      tls,
      implicitTls,
      verifyCertificate: tls !== "opportunistic" && options.insecureSkipVerify !== true,
      ...(options.caCerts === undefined ? {} : { caCerts: options.caCerts }),
      ...(options.auth === undefined
        ? {}
        : { auth: { username: options.auth.user, password: options.auth.pass } }),
      ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
    };
  };
}

/** Each recipient's fate, from every destination's outcome. */
function summarize(
  messageId: string,
  outcomes: readonly {
    recipients: readonly string[];
    outcome: DeliveryOutcome | Exclude<DomainHops, { kind: "hosts" }>;
  }[],
): SendResult {
  const unreached = outcomes.filter((o) =>
    o.outcome.kind === "failed" || o.outcome.kind === "unreachable"
  );
  if (unreached.length === outcomes.length) throw new SendError(failuresOf(outcomes));
  const result: SendResult = { messageId, accepted: [], rejected: [] };
  for (const { recipients, outcome } of outcomes) {
    switch (outcome.kind) {
      case "sent":
        addTransaction(result, outcome.result);
        break;
      case "refused":
        for (const address of recipients) result.rejected.push(rejection(address, outcome.reply));
        break;
      case "failed":
      case "unreachable": {
        // Made here, not by a server: a temporary failure (RFC 3463 §3.5: 4.4.1 no answer from host).
        const why = failuresOf([{ outcome }]).map((f) => `${f.host}: ${f.reason}`);
        const made = reply(451, "4.4.1", `No host took the message: ${why.join("; ")}`);
        for (const address of recipients) result.rejected.push(rejection(address, made));
      }
    }
  }
  return result;
}

function failuresOf(
  outcomes: readonly { outcome: DeliveryOutcome | Exclude<DomainHops, { kind: "hosts" }> }[],
): HostFailure[] {
  return outcomes.flatMap(({ outcome }) =>
    outcome.kind === "failed"
      ? [...outcome.failures]
      : outcome.kind === "unreachable"
      ? [{ host: "DNS", reason: outcome.reason }]
      : []
  );
}

function addTransaction(result: SendResult, transaction: TransactionResult): void {
  for (const r of transaction.recipients) {
    if (isPositive(r.reply)) result.accepted.push(r.address);
    else {
      // The reply to the content ends the transaction for every recipient RCPT accepted.
      const answers = r.reply === transaction.reply ? "content" : "RCPT";
      result.rejected.push(rejection(r.address, r.reply, answers));
    }
  }
  if (transaction.reply !== null) result.reply = transaction.reply;
}

function rejection(address: string, refusal: Reply, answers?: string): RejectedRecipient {
  const annotation = annotateReply(refusal, answers === undefined ? {} : { answers });
  return { address, reply: refusal, explanation: formatAnnotation(annotation) };
}

/** Our name for EHLO: the system's host name, when the program may read it. */
function ownHostname(): string {
  try {
    return Deno.hostname();
  } catch {
    return "localhost";
  }
}
