/**
 * The `milter` scenario: the `local` load (smtp-source → MTA → Maildir)
 * with every message scanned by one private rspamd (bench/rspamd.ts) as a
 * milter, the same configuration for tern (`milters:`) and for Postfix
 * (`smtpd_milters`). rspamd's CPU time counts as the MTA's, and after the
 * timed part every delivered message must carry rspamd's header fields, so
 * that a run in which the milter was quietly skipped fails instead of
 * reporting a flattering rate.
 *
 * @module
 */

import { join } from "node:path";
import { countFiles, waitForCount } from "./_disk.ts";
import { treeCpuSeconds } from "./memory.ts";
import type { Rspamd } from "./rspamd.ts";
import { runSmtpSource } from "./smtp_source.ts";

/** What the scenario needs of the running MTA (bench/main.ts's `Instance` has it). */
export interface MeasuredMta {
  /** The root of its process tree. */
  readonly pid: number;
  /** Its SMTP port on 127.0.0.1. */
  readonly port: number;
  /** The Maildir `new/` of a local address. */
  newDir(address: string): string;
  /** CPU seconds of its work when that is more than the tree of `pid`. */
  cpuSeconds?(): Promise<number>;
}

/** What the scenario sends. */
export interface MilterLoad {
  /** Messages in all. */
  readonly messages: number;
  /** Parallel smtp-source sessions. */
  readonly sessions: number;
  /** Payload octets per message. */
  readonly size: number;
  /** Envelope sender. */
  readonly from: string;
  /** The local recipient. */
  readonly to: string;
}

/**
 * The header fields rspamd adds to every message it scanned (its
 * milter_headers module, configured in bench/rspamd.ts).
 */
const SCANNED = [/^X-Spamd-Result: /m, /^X-Rspamd-Server: /m, /^X-Rspamd-Queue-Id: /m];

/**
 * Sends the load, waits until every message is in the Maildir, and
 * measures as the `local` scenarios do, rspamd's CPU added to the MTA's;
 * then checks that rspamd scanned every delivered message.
 *
 * @param instance The MTA, configured with `rspamd` as its milter.
 * @param rspamd The milter.
 * @param load What to send.
 * @param log Where the share of rspamd's CPU is written.
 * @returns accepted and delivered msg/s, MTA CPU ms/msg (rspamd's included).
 * @throws {Error} When a delivered message does not carry rspamd's header fields.
 */
export async function runMilterLoad(
  instance: MeasuredMta,
  rspamd: Rspamd,
  load: MilterLoad,
  log: (line: string) => void,
): Promise<Record<string, number>> {
  const cpu = await cpuSeconds(instance, rspamd);
  const source = await runSmtpSource({ port: instance.port, ...load });
  const newDir = instance.newDir(load.to);
  const doneAt = await waitForCount(() => countFiles(newDir), load.messages, {
    what: "messages in Maildir new/",
  });
  const cpuAfter = await cpuSeconds(instance, rspamd);
  const ms = (seconds: number) => seconds * 1000 / load.messages;
  log(`  of the MTA CPU, rspamd's: ${ms(cpuAfter.rspamd - cpu.rspamd).toFixed(2)} ms/msg`);
  await checkScanned(newDir, load.messages);
  return {
    accepted: load.messages / (source.elapsedMs / 1000),
    delivered: load.messages / ((doneAt - source.startedAt) / 1000),
    cpu: ms(cpuAfter.total - cpu.total),
  };
}

/** CPU seconds of the MTA's tree plus rspamd's, and rspamd's alone. */
async function cpuSeconds(
  instance: MeasuredMta,
  rspamd: Rspamd,
): Promise<{ total: number; rspamd: number }> {
  const own = await (instance.cpuSeconds?.() ?? treeCpuSeconds(instance.pid));
  const milter = await rspamd.cpuSeconds();
  return { total: own + milter, rspamd: milter };
}

/**
 * Checks that at least `expected` messages are in the Maildir `new/` and
 * that each carries every one of rspamd's header fields in its header
 * section.
 *
 * @param newDir The Maildir's `new/`.
 * @param expected How many messages were sent.
 * @returns When all is well.
 * @throws {Error} Naming how many messages rspamd did not mark.
 */
export async function checkScanned(newDir: string, expected: number): Promise<void> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(newDir)) if (entry.isFile) names.push(entry.name);
  if (names.length < expected) {
    throw new Error(`${names.length} messages in ${newDir}, ${expected} expected`);
  }
  let unscanned = 0;
  let example = "";
  for (const name of names) {
    const text = await Deno.readTextFile(join(newDir, name));
    const end = text.search(/\r?\n\r?\n/);
    const header = end < 0 ? text : text.slice(0, end);
    if (!SCANNED.every((field) => field.test(header))) {
      unscanned++;
      example ||= name;
    }
  }
  if (unscanned > 0) {
    throw new Error(
      `${unscanned} of ${names.length} delivered messages lack rspamd's header fields ` +
        `(X-Spamd-Result, X-Rspamd-Server, X-Rspamd-Queue-Id), e.g. ${join(newDir, example)}: ` +
        "the milter did not scan them",
    );
  }
}
