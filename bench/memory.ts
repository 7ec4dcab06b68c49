/**
 * Memory (and CPU time) of a process tree, read from Linux's `/proc`.
 *
 * - RSS (resident set size) counts every page a process has in memory,
 *   shared or not: summed over many processes it counts shared libraries
 *   and copy-on-write pages once per process, so it overstates a
 *   multi-process server such as Postfix.
 * - PSS (proportional set size) divides each shared page among the
 *   processes that share it: summed over a tree it is what the tree really
 *   costs. Both come from `/proc/PID/smaps_rollup` (Linux 4.14 and later).
 *
 * @module
 */

/** Memory of a set of processes, in bytes. */
export interface MemoryUse {
  /** Sum of the processes' resident set sizes. */
  readonly rss: number;
  /** Sum of the processes' proportional set sizes. */
  readonly pss: number;
  /**
   * The anonymous part of PSS (heap, stacks): unlike file pages (the
   * binary, shared libraries), it does not change when another process maps
   * the same files.
   */
  readonly anon: number;
  /** How many processes were counted. */
  readonly processes: number;
}

/** Reads the parent pid of `pid` from `/proc/PID/stat`, or `null` if it is gone. */
async function parentOf(pid: number): Promise<number | null> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[1]);
  } catch {
    return null;
  }
}

/**
 * The pids of `root` and all its descendants that are alive now.
 *
 * @param root The top of the tree (a Postfix master, a deno process).
 * @returns The pids, `root` first; empty when `root` is gone.
 */
export async function processTree(root: number): Promise<number[]> {
  const children = new Map<number, number[]>();
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const pid = Number(entry.name);
    const parent = await parentOf(pid);
    if (parent === null) continue;
    const list = children.get(parent) ?? [];
    list.push(pid);
    children.set(parent, list);
  }
  try {
    await Deno.stat(`/proc/${root}`);
  } catch {
    return [];
  }
  const tree: number[] = [];
  const todo = [root];
  while (todo.length > 0) {
    const pid = todo.pop()!;
    tree.push(pid);
    todo.push(...(children.get(pid) ?? []));
  }
  return tree;
}

/** A `Name:   1234 kB` field of a /proc file, in bytes; 0 when absent. */
function field(text: string, name: string): number {
  const match = new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text);
  return match ? Number(match[1]) * 1024 : 0;
}

/**
 * Sums RSS and PSS over processes; a process that has exited meanwhile is
 * skipped.
 *
 * @param pids The processes.
 * @returns Their memory.
 */
export async function memoryOf(pids: readonly number[]): Promise<MemoryUse> {
  let rss = 0;
  let pss = 0;
  let anon = 0;
  let processes = 0;
  for (const pid of pids) {
    let text: string;
    try {
      text = await Deno.readTextFile(`/proc/${pid}/smaps_rollup`);
    } catch {
      continue;
    }
    rss += field(text, "Rss");
    pss += field(text, "Pss");
    anon += field(text, "Pss_Anon");
    processes++;
  }
  return { rss, pss, anon, processes };
}

/**
 * The memory of a whole tree: `root` and its descendants.
 *
 * @param root The top of the tree.
 * @returns The tree's memory.
 */
export async function treeMemory(root: number): Promise<MemoryUse> {
  return await memoryOf(await processTree(root));
}

/** Clock ticks per second of /proc's CPU times (USER_HZ: 100 on Linux). */
const TICKS_PER_SECOND = 100;

/**
 * CPU time used so far by a process tree: user + system time of every
 * live process in it, plus what the root has collected from children that
 * have exited (Postfix's master reaps its daemons).
 *
 * @param root The top of the tree.
 * @returns Seconds of CPU.
 */
export async function treeCpuSeconds(root: number): Promise<number> {
  let ticks = 0;
  for (const pid of await processTree(root)) {
    try {
      const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
      // After "(comm) ": state is field 3; utime, stime, cutime, cstime are 14-17.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(fields[11]) + Number(fields[12]);
      if (pid === root) ticks += Number(fields[13]) + Number(fields[14]);
    } catch {
      // exited meanwhile
    }
  }
  return ticks / TICKS_PER_SECOND;
}

/**
 * The peak resident set size of one process so far (`VmHWM`), in bytes.
 *
 * @param pid The process.
 * @returns The peak, or 0 when the process is gone.
 */
export async function peakRss(pid: number): Promise<number> {
  try {
    return field(await Deno.readTextFile(`/proc/${pid}/status`), "VmHWM");
  } catch {
    return 0;
  }
}

/**
 * Follows one process's peak RSS while it runs: `VmHWM` only grows, so the
 * last reading before the process exits is its peak (to within one
 * interval).
 */
export class PeakWatcher {
  #peak = 0;
  #timer: ReturnType<typeof setInterval>;

  /**
   * Starts reading.
   *
   * @param pid The process to watch.
   * @param intervalMs How often to read.
   */
  constructor(pid: number, intervalMs = 20) {
    this.#timer = setInterval(async () => {
      this.#peak = Math.max(this.#peak, await peakRss(pid));
    }, intervalMs);
  }

  /**
   * Stops reading.
   *
   * @returns The highest peak seen, in bytes.
   */
  stop(): number {
    clearInterval(this.#timer);
    return this.#peak;
  }
}
