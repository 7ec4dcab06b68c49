/**
 * What happens to a message's content between the DATA command and the
 * queue, besides being stored: on mx listeners, the inbound checks (SPF,
 * DKIM, DMARC: auth/verify.ts) read it as it arrives, and forged
 * `Authentication-Results` fields naming us are left out of what is stored
 * (RFC 8601 §5); from users (submission, trusted networks, `tern send`), a
 * missing `Message-ID:` and `Date:` are added (RFC 6409 §8) and the message
 * is DKIM-signed (RFC 6376 §5) when a key's domain covers its From:.
 *
 * All of it streams: the stages see each chunk once, hold no more than a
 * header field, and their results (header fields known only at the end) go
 * on top of the stored content at commit (`CommitOptions.header`).
 *
 * @module
 */

import type { DkimSigner, DkimSigning } from "../auth/dkim_sign.ts";
import { namesAuthservId } from "../auth/results_header.ts";
import { type AuthVerdict, Verification, type VerificationOptions } from "../auth/verify.ts";
import { HeaderFilter } from "../message/header_filter.ts";
import { formatDate } from "../smtp/received.ts";

/** Which stages a message goes through. */
export interface ContentPlan {
  /** The inbound checks, or `null` (not an mx client, or all turned off). */
  readonly verify: VerificationOptions | null;
  /** The signer, or `null` (not from a user, or no keys). */
  readonly sign: DkimSigner | null;
  /**
   * Add `Message-ID:` and `Date:` when missing (a message from a user): the
   * host name for the id's right side, and the time.
   */
  readonly complete: { readonly hostname: string; readonly now: number } | null;
}

/** What the stages add at the end. */
export interface StagesResult {
  /** Header fields for the top of the message, above `trace` (CRLF-ended). */
  readonly above: string;
  /** Header fields for under `trace`: those added to complete the message. */
  readonly below: string;
  /** The inbound verdict, when checked. */
  readonly verdict: AuthVerdict | null;
}

/**
 * The stages of one message.
 *
 * @example A submitted message without Message-ID gets one
 * ```ts
 * import assert from "node:assert/strict";
 * import { ContentStages } from "./content_stages.ts";
 * const stages = new ContentStages({
 *   verify: null,
 *   sign: null,
 *   complete: { hostname: "mx.example.test", now: Date.UTC(2026, 11, 5, 10) },
 * });
 * stages.push(new TextEncoder().encode("From: a@example.test\r\nDate: Sat, 5 Dec 2026 10:00:00 +0000\r\n\r\nHi\r\n"));
 * stages.end();
 * const { below } = await stages.finish("Q123");
 * assert.match(below, /^Message-ID: <Q123\.[0-9a-f]+@mx\.example\.test>\r\n$/);
 * ```
 */
export class ContentStages {
  readonly #plan: ContentPlan;
  readonly #filter: HeaderFilter;
  readonly #verification: Verification | null;
  readonly #signing: DkimSigning | null;

  /** @param plan Which stages run. */
  constructor(plan: ContentPlan) {
    this.#plan = plan;
    const authservId = plan.verify?.authservId;
    this.#filter = new HeaderFilter(
      authservId === undefined ? {} : {
        inspect: ["authentication-results"],
        drop: (_name, value) => namesAuthservId(value, authservId),
      },
    );
    this.#verification = plan.verify === null ? null : Verification.start(plan.verify);
    this.#signing = plan.sign?.hasKeys ? plan.sign.begin() : null;
  }

  /** Whether any stage runs (else content can go straight to the queue). */
  static isNeeded(plan: ContentPlan): boolean {
    return plan.verify !== null || (plan.sign?.hasKeys ?? false) || plan.complete !== null;
  }

  /**
   * Takes the next content octets.
   *
   * @param chunk As received (after dot-unstuffing).
   * @returns What to store of them.
   */
  push(chunk: Uint8Array): Uint8Array {
    // The checks and the signature are over the message as the client sent it.
    this.#verification?.update(chunk);
    this.#signing?.update(chunk);
    return this.#filter.push(chunk);
  }

  /**
   * The content is complete.
   *
   * @returns The last octets to store.
   */
  end(): Uint8Array {
    return this.#filter.end();
  }

  /** The transaction was abandoned. */
  abort(): void {
    this.#verification?.abort();
  }

  /**
   * Waits for the checks and makes the header fields to add.
   *
   * @param queueId The message's queue id (the left side of an added Message-ID).
   * @returns The fields for above and below the trace field, and the verdict.
   */
  async finish(queueId: string): Promise<StagesResult> {
    let below = "";
    const complete = this.#plan.complete;
    if (complete !== null) {
      // RFC 6409 §8.3, §8.2: an MSA may add what a submitted message lacks.
      if (!this.#filter.has("message-id")) below += messageIdField(queueId, complete.hostname);
      if (!this.#filter.has("date")) below += `Date: ${formatDate(new Date(complete.now))}\r\n`;
    }
    const verdict = this.#verification === null ? null : await this.#verification.finish();
    const signature = this.#signing?.finish(below) ?? "";
    return { above: (verdict?.header ?? "") + signature, below, verdict };
  }
}

function messageIdField(queueId: string, hostname: string): string {
  const random = crypto.getRandomValues(new Uint8Array(6));
  const hex = Array.from(random, (b) => b.toString(16).padStart(2, "0")).join("");
  return `Message-ID: <${queueId}.${hex}@${hostname}>\r\n`;
}
