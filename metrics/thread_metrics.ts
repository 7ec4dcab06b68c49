/**
 * Metrics counted in another thread: an SMTP session worker counts its
 * connections, commands and replies in its own copy of the registry (each
 * worker has its own module instances), and sends the main thread what
 * changed since it last sent; the main thread adds that to the registry
 * `/metrics` renders. Counters and histograms only grow, so the sums are
 * exact; a gauge's differences add up to the worker's value.
 *
 * @module
 */

import type { Registry, SeriesValues } from "./registry.ts";

/** What changed in a registry since the last call: by metric, the differences of each series. */
export type MetricsDelta = Map<string, SeriesValues[]>;

/** Takes the differences of a registry's numbers, call after call. */
export class MetricsDiffer {
  readonly #registry: Registry;
  /** The numbers sent last, by metric and series. */
  readonly #last = new Map<string, Map<string, readonly number[]>>();

  /**
   * Makes a differ.
   *
   * @param registry The registry of this thread.
   */
  constructor(registry: Registry) {
    this.#registry = registry;
  }

  /**
   * What changed since the last call (the first call: everything).
   *
   * @returns The differences, or `null` when nothing changed.
   */
  take(): MetricsDelta | null {
    const out: MetricsDelta = new Map();
    for (const [name, series] of this.#registry.series()) {
      let last = this.#last.get(name);
      if (last === undefined) this.#last.set(name, last = new Map());
      const changed: SeriesValues[] = [];
      for (const s of series) {
        const key = s.labels.join("\u0000");
        const before = last.get(key);
        const diff = s.values.map((v, i) => v - (before?.[i] ?? 0));
        if (diff.some((d) => d !== 0)) changed.push({ labels: s.labels, values: diff });
        last.set(key, [...s.values]);
      }
      if (changed.length > 0) out.set(name, changed);
    }
    return out.size === 0 ? null : out;
  }
}
