/**
 * One timer for the deadlines of many connections. A `node:timers` timeout
 * per connection costs a few KiB of memory each (the Timeout object, its
 * list entry and the runtime's timer behind it), which an idle connection
 * would hold for its whole life; RFC 5321 §4.5.3.2's timeouts are minutes
 * long and need no millisecond precision. The sweep keeps a set of members,
 * one timer armed for the earliest deadline it knows of, and when it fires
 * it looks at every member: those past their deadline are told so, the
 * others give the next time to wake up.
 *
 * Precision is traded for fewer wake-ups: a deadline may be met up to
 * `slackMs` late (the smallest slack any member asked for since the sweep
 * was last empty), and the timer fires at most once per slack, however
 * many members there are.
 *
 * @module
 */

/** The longest a deadline may be met late, whatever the members ask. */
const MAX_SLACK_MS = 1000;

/** The shortest gap between two sweeps. */
const MIN_SLACK_MS = 1;

/**
 * Deadlines of many members on one timer. The member's deadline is read
 * through `dueAt` at each sweep, so moving a deadline later costs nothing;
 * {@linkcode DeadlineSweep.watch} is needed only to make sure the timer
 * wakes up in time for it.
 *
 * @example Two deadlines, one timer
 * ```ts
 * import { DeadlineSweep } from "./deadline_sweep.ts";
 *
 * const due = new Map<string, number>([["a", Date.now() + 10], ["b", Date.now() + 20]]);
 * const expired: string[] = [];
 * const sweep = new DeadlineSweep<string>(
 *   (m) => due.get(m) ?? Infinity,
 *   (m) => {
 *     expired.push(m);
 *     sweep.unwatch(m);
 *   },
 * );
 * sweep.watch("a", due.get("a")!, 5);
 * sweep.watch("b", due.get("b")!, 5);
 * await new Promise((resolve) => setTimeout(resolve, 50));
 * console.log(expired); // ["a", "b"]
 * ```
 */
export class DeadlineSweep<T> {
  readonly #dueAt: (member: T) => number;
  readonly #expire: (member: T) => void;
  readonly #now: () => number;
  #members = new Set<T>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  /** When `#timer` fires (epoch ms), or `Infinity` when none is armed. */
  #timerAt = Infinity;
  #slack = MAX_SLACK_MS;

  /**
   * Makes an empty sweep; it has no timer until a member is watched.
   *
   * @param dueAt A member's deadline (epoch ms), or `Infinity` when it has none now.
   * @param expire Called at a sweep for each member whose deadline has
   *   passed; it stays watched unless it calls {@linkcode DeadlineSweep.unwatch}.
   * @param now The clock. @default {Date.now}
   */
  constructor(
    dueAt: (member: T) => number,
    expire: (member: T) => void,
    now: () => number = Date.now,
  ) {
    this.#dueAt = dueAt;
    this.#expire = expire;
    this.#now = now;
  }

  /** How many members are watched. */
  get size(): number {
    return this.#members.size;
  }

  /**
   * Watches a member (again) whose deadline is now `at`.
   *
   * @param member The member.
   * @param at Its deadline (epoch ms).
   * @param slackMs How late it may be met; bounded by 1 ms and 1 s.
   */
  watch(member: T, at: number, slackMs: number): void {
    this.#members.add(member);
    const slack = Math.max(MIN_SLACK_MS, Math.min(MAX_SLACK_MS, slackMs));
    if (slack < this.#slack) this.#slack = slack;
    // A timer that fires before the deadline, or little after it, will do.
    if (this.#timerAt > at + this.#slack) this.#arm(at);
  }

  /**
   * Stops watching a member; the timer stops with the last one.
   *
   * @param member The member.
   */
  unwatch(member: T): void {
    if (!this.#members.delete(member) || this.#members.size > 0) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
    this.#slack = MAX_SLACK_MS;
  }

  #arm(at: number): void {
    clearTimeout(this.#timer);
    const now = this.#now();
    this.#timerAt = Math.max(now, at);
    this.#timer = setTimeout(() => this.#sweep(), this.#timerAt - now);
  }

  #sweep(): void {
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const now = this.#now();
    let next = Infinity;
    // Deleting the member being visited (expire may unwatch it) is safe in a Set's iteration.
    for (const member of this.#members) {
      const due = this.#dueAt(member);
      if (due <= now) this.#expire(member);
      else if (due < next) next = due;
    }
    // Not sooner than one slack from now: members whose deadlines are close together share a sweep.
    const at = Math.max(next, now + this.#slack);
    if (next !== Infinity && this.#members.size > 0 && this.#timerAt > at) this.#arm(at);
  }
}
