/**
 * Counters, gauges and histograms with labels, rendered in the Prometheus
 * text exposition format 0.0.4 (`# HELP`, `# TYPE`, one sample per line).
 *
 * Counting is meant to cost next to nothing on the paths that handle mail:
 * take a series once with `labels(...)` (it keeps a reference to the cell
 * that holds the value) and count on it: an add, no lookup, no allocation.
 * `inc(labels)` with a label object is there for rare events; it joins the
 * values into a key each time.
 *
 * @module
 */

/** The content type of the text exposition format. */
export const TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8";

/** Label values by label name. */
export type Labels = Readonly<Record<string, string>>;

/** A metric a {@linkcode Registry} renders. */
export interface Renderable {
  /** The metric name. */
  readonly name: string;
  /** Its `# HELP`, `# TYPE` and sample lines. */
  render(): string;
  /**
   * Its series as plain numbers, for another thread to add to its own
   * (see metrics/thread_metrics.ts). Computed metrics have none.
   */
  series?(): SeriesValues[];
  /**
   * Adds numbers taken from the same metric in another thread.
   *
   * @param series What {@linkcode Renderable.series} gave there (or differences of it).
   */
  addSeries?(series: readonly SeriesValues[]): void;
}

/** One series of a metric as plain numbers: a scalar's value, or a histogram's buckets, sum and count. */
export interface SeriesValues {
  /** The label values, in the order of the metric's label names. */
  readonly labels: readonly string[];
  /** The numbers. */
  readonly values: readonly number[];
}

// Label values may hold anything; the separator cannot appear in a label
// name list written by us, and a collision would only merge two series.
const SEP = "\u0000";

/** `\`, newline in HELP text (text format 0.0.4). */
function escapeHelp(text: string): string {
  return text.replaceAll("\\", "\\\\").replaceAll("\n", "\\n");
}

/** `\`, `"` and newline in label values (text format 0.0.4). */
export function escapeLabelValue(value: string): string {
  return value.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
}

/** Go-style float formatting: `+Inf`, `-Inf`, `NaN`, else the shortest decimal. */
function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

/** `{a="x",b="y"}` (or `""` without labels), plus an extra pair when given (histograms' `le`). */
function labelText(
  names: readonly string[],
  values: readonly string[],
  extra?: string,
): string {
  const parts = names.map((n, i) => `${n}="${escapeLabelValue(values[i] ?? "")}"`);
  if (extra !== undefined) parts.push(extra);
  return parts.length === 0 ? "" : `{${parts.join(",")}}`;
}

/** Label names must match `[a-zA-Z_][a-zA-Z0-9_]*` and not start with `__` (reserved). */
function checkNames(name: string, labelNames: readonly string[]): void {
  if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(name)) {
    throw new TypeError(`invalid metric name ${JSON.stringify(name)}`);
  }
  for (const l of labelNames) {
    if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(l) || l.startsWith("__")) {
      throw new TypeError(`invalid label name ${JSON.stringify(l)} of ${name}`);
    }
  }
}

/** One series of a counter or gauge: its label values and its value. */
export interface ScalarCell {
  /** The label values, in the order of the metric's label names. */
  readonly labels: readonly string[];
  /** The value. */
  value: number;
}

/** One series of a counter, taken once with {@linkcode Counter.labels}. */
export interface CounterSeries {
  /**
   * Adds to the series.
   *
   * @param by How much, 1 by default; never negative.
   */
  inc(by?: number): void;
  /** The current value. */
  get(): number;
}

/** One series of a gauge, taken once with {@linkcode Gauge.labels}. */
export interface GaugeSeries {
  /**
   * Sets the series.
   *
   * @param value The value.
   */
  set(value: number): void;
  /**
   * Adds to the series (a negative amount takes away).
   *
   * @param by How much, 1 by default.
   */
  inc(by?: number): void;
  /**
   * Takes from the series.
   *
   * @param by How much, 1 by default.
   */
  dec(by?: number): void;
  /** The current value. */
  get(): number;
}

class CounterCell implements ScalarCell, CounterSeries {
  value = 0;
  constructor(readonly labels: readonly string[]) {}
  inc(by = 1): void {
    if (by >= 0) this.value += by;
  }
  get(): number {
    return this.value;
  }
}

class GaugeCell implements ScalarCell, GaugeSeries {
  value = 0;
  constructor(readonly labels: readonly string[]) {}
  set(value: number): void {
    this.value = value;
  }
  inc(by = 1): void {
    this.value += by;
  }
  dec(by = 1): void {
    this.value -= by;
  }
  get(): number {
    return this.value;
  }
}

/** The base of counters and gauges: a cell per label-value combination. */
export abstract class Scalar<C extends ScalarCell> implements Renderable {
  /** The metric name. */
  readonly name: string;
  /** One line on what it measures. */
  readonly help: string;
  /** The label names. */
  readonly labelNames: readonly string[];
  /** The series, by label values joined, in the order they were first seen. */
  protected readonly cells = new Map<string, C>();
  /** `counter` or `gauge`. */
  abstract readonly type: "counter" | "gauge";

  /**
   * Makes a metric; register it with {@linkcode Registry.add}.
   *
   * @param name The metric name.
   * @param help One line on what it measures.
   * @param labelNames The label names.
   * @param initial Series shown at 0 before their first event.
   */
  constructor(
    name: string,
    help: string,
    labelNames: readonly string[] = [],
    initial: readonly Labels[] = [],
  ) {
    checkNames(name, labelNames);
    this.name = name;
    this.help = help;
    this.labelNames = labelNames;
    // Series known in advance are shown at 0, so a rate() has a start.
    if (labelNames.length === 0) this.cell([]);
    for (const labels of initial) this.cell(this.valuesOf(labels));
  }

  /**
   * Makes the cell of a new series.
   *
   * @param values Its label values.
   * @returns The cell, at 0.
   */
  protected abstract make(values: readonly string[]): C;

  /** The label values of a label object, in label name order. */
  protected valuesOf(labels: Labels | undefined): string[] {
    return this.labelNames.map((n) => labels?.[n] ?? "");
  }

  /** The cell of some label values, made on first use. */
  protected cell(values: readonly string[]): C {
    if (values.length !== this.labelNames.length) {
      throw new TypeError(
        `${this.name} has ${this.labelNames.length} labels, got ${values.length} values`,
      );
    }
    const key = values.join(SEP);
    let c = this.cells.get(key);
    if (c === undefined) {
      c = this.make([...values]);
      this.cells.set(key, c);
    }
    return c;
  }

  /**
   * The current value of one series.
   *
   * @param labels The label values.
   * @returns The value, 0 when never set.
   */
  get(labels?: Labels): number {
    return this.cells.get(this.valuesOf(labels).join(SEP))?.value ?? 0;
  }

  /**
   * Every series' value.
   *
   * @returns One entry per series.
   */
  series(): SeriesValues[] {
    return [...this.cells.values()].map((c) => ({ labels: c.labels, values: [c.value] }));
  }

  /**
   * Adds values counted in another thread (a gauge's difference may be negative).
   *
   * @param series The values, by series.
   */
  addSeries(series: readonly SeriesValues[]): void {
    for (const s of series) this.cell(s.labels).value += s.values[0] ?? 0;
  }

  /**
   * Renders the metric.
   *
   * @returns The `# HELP`, `# TYPE` and sample lines.
   */
  render(): string {
    const lines = [
      `# HELP ${this.name} ${escapeHelp(this.help)}`,
      `# TYPE ${this.name} ${this.type}`,
    ];
    for (const c of this.cells.values()) {
      lines.push(`${this.name}${labelText(this.labelNames, c.labels)} ${formatValue(c.value)}`);
    }
    return lines.join("\n") + "\n";
  }
}

/** A value that only goes up (events counted since start). */
export class Counter extends Scalar<CounterSeries & ScalarCell> {
  /** Always `counter`. */
  readonly type = "counter" as const;

  /**
   * Makes the cell of a new series.
   *
   * @param values Its label values.
   * @returns The cell, at 0.
   */
  protected make(values: readonly string[]): CounterSeries & ScalarCell {
    return new CounterCell(values);
  }

  /**
   * One series, to keep and count on: no lookup per event.
   *
   * @param values The label values, in the order of the label names.
   * @returns The series (made, at 0, on first use).
   */
  labels(...values: string[]): CounterSeries {
    return this.cell(values);
  }

  /**
   * Adds to one series (looked up by its label values each time: for rare events).
   *
   * @param labels The label values.
   * @param by How much, 1 by default; never negative.
   */
  inc(labels?: Labels, by = 1): void {
    this.cell(this.valuesOf(labels)).inc(by);
  }
}

/** A value that goes up and down (a current state). */
export class Gauge extends Scalar<GaugeSeries & ScalarCell> {
  /** Always `gauge`. */
  readonly type = "gauge" as const;

  /**
   * Makes the cell of a new series.
   *
   * @param values Its label values.
   * @returns The cell, at 0.
   */
  protected make(values: readonly string[]): GaugeSeries & ScalarCell {
    return new GaugeCell(values);
  }

  /**
   * One series, to keep and set: no lookup per event.
   *
   * @param values The label values, in the order of the label names.
   * @returns The series (made, at 0, on first use).
   */
  labels(...values: string[]): GaugeSeries {
    return this.cell(values);
  }

  /**
   * Sets one series.
   *
   * @param labels The label values.
   * @param value The value.
   */
  set(labels: Labels | undefined, value: number): void {
    this.cell(this.valuesOf(labels)).set(value);
  }
}

/** One series of a histogram, taken once with {@linkcode Histogram.labels}. */
export interface HistogramSeries {
  /**
   * Counts one observation: a search of the bucket bounds and two additions.
   *
   * @param value The observed value (seconds, octets…).
   */
  observe(value: number): void;
  /** How many observations so far. */
  readonly count: number;
  /** Their sum. */
  readonly sum: number;
}

class HistogramCell implements HistogramSeries {
  /** Observations per bucket (not cumulated), the last one for `+Inf` only. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(readonly labels: readonly string[], readonly bounds: Float64Array) {
    this.counts = new Float64Array(bounds.length + 1);
  }
  observe(value: number): void {
    // A NaN would poison the sum forever; it measures nothing.
    if (value !== value) return;
    // The first bound that holds the value (le: less than or equal), by bisection.
    const bounds = this.bounds;
    let lo = 0;
    let hi = bounds.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (value <= bounds[mid]!) hi = mid;
      else lo = mid + 1;
    }
    this.counts[lo]!++;
    this.sum += value;
    this.count++;
  }
}

/** Observations counted into cumulative buckets, with their sum and count. */
export class Histogram implements Renderable {
  /** The metric name. */
  readonly name: string;
  /** One line on what it measures. */
  readonly help: string;
  /** The label names. */
  readonly labelNames: readonly string[];
  /** The bucket upper bounds, ascending, without `+Inf`. */
  readonly buckets: readonly number[];
  readonly #bounds: Float64Array;
  /** The `le="…"` of each bound, made once. */
  readonly #le: readonly string[];
  readonly #series = new Map<string, HistogramCell>();

  /**
   * Makes a histogram; register it with {@linkcode Registry.add}.
   *
   * @param name The metric name, without `_bucket`, `_sum` or `_count`.
   * @param help One line on what it measures.
   * @param labelNames The label names (not `le`).
   * @param buckets Upper bounds; sorted, duplicates and infinities dropped, `+Inf` added.
   * @param initial Series shown at 0 before their first observation.
   */
  constructor(
    name: string,
    help: string,
    labelNames: readonly string[],
    buckets: readonly number[],
    initial: readonly Labels[] = [],
  ) {
    checkNames(name, labelNames);
    if (labelNames.includes("le")) throw new TypeError(`${name}: "le" is the bucket label`);
    this.name = name;
    this.help = help;
    this.labelNames = labelNames;
    this.buckets = [...new Set(buckets.filter(Number.isFinite))].sort((a, b) => a - b);
    this.#bounds = Float64Array.from(this.buckets);
    this.#le = this.buckets.map((b) => `le="${formatValue(b)}"`);
    if (labelNames.length === 0) this.#cell([]);
    for (const labels of initial) this.#cell(this.labelNames.map((n) => labels[n] ?? ""));
  }

  #cell(values: readonly string[]): HistogramCell {
    if (values.length !== this.labelNames.length) {
      throw new TypeError(
        `${this.name} has ${this.labelNames.length} labels, got ${values.length} values`,
      );
    }
    const key = values.join(SEP);
    let s = this.#series.get(key);
    if (s === undefined) {
      s = new HistogramCell([...values], this.#bounds);
      this.#series.set(key, s);
    }
    return s;
  }

  /**
   * One series, to keep and observe on: no lookup per observation.
   *
   * @param values The label values, in the order of the label names.
   * @returns The series (made, empty, on first use).
   */
  labels(...values: string[]): HistogramSeries {
    return this.#cell(values);
  }

  /**
   * Counts one observation (looking the series up by its labels: for rare events).
   *
   * @param labels The label values.
   * @param value The observed value.
   */
  observe(labels: Labels | undefined, value: number): void {
    this.#cell(this.labelNames.map((n) => labels?.[n] ?? "")).observe(value);
  }

  /**
   * Every series' buckets (not cumulated), then its sum and count.
   *
   * @returns One entry per series.
   */
  series(): SeriesValues[] {
    return [...this.#series.values()].map((s) => ({
      labels: s.labels,
      values: [...s.counts, s.sum, s.count],
    }));
  }

  /**
   * Adds observations counted in another thread.
   *
   * @param series Buckets, sum and count, by series, as {@linkcode Histogram.series} gives them.
   */
  addSeries(series: readonly SeriesValues[]): void {
    for (const { labels, values } of series) {
      const cell = this.#cell(labels);
      const n = cell.counts.length;
      for (let i = 0; i < n; i++) cell.counts[i]! += values[i] ?? 0;
      cell.sum += values[n] ?? 0;
      cell.count += values[n + 1] ?? 0;
    }
  }

  /**
   * Renders the histogram.
   *
   * @returns The `# HELP`, `# TYPE` and sample lines: cumulative buckets, `+Inf`, sum, count.
   */
  render(): string {
    const lines = [`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} histogram`];
    for (const s of this.#series.values()) {
      let cumulative = 0;
      for (let i = 0; i < this.#le.length; i++) {
        cumulative += s.counts[i]!;
        lines.push(
          `${this.name}_bucket${labelText(this.labelNames, s.labels, this.#le[i])} ${cumulative}`,
        );
      }
      // +Inf holds every observation (text format 0.0.4: it equals _count).
      lines.push(
        `${this.name}_bucket${labelText(this.labelNames, s.labels, 'le="+Inf"')} ${s.count}`,
      );
      const own = labelText(this.labelNames, s.labels);
      lines.push(
        `${this.name}_sum${own} ${formatValue(s.sum)}`,
        `${this.name}_count${own} ${s.count}`,
      );
    }
    return lines.join("\n") + "\n";
  }
}

/** A set of metrics rendered together; collectors refresh computed ones before. */
export class Registry {
  readonly #metrics: Renderable[] = [];
  readonly #collectors: (() => Promise<void> | void)[] = [];

  /**
   * Adds a metric.
   *
   * @param metric The metric.
   * @returns The metric.
   * @throws {TypeError} When a metric of that name is already registered.
   */
  add<T extends Renderable>(metric: T): T {
    if (this.#metrics.some((m) => m.name === metric.name)) {
      throw new TypeError(`metric ${metric.name} is registered twice`);
    }
    this.#metrics.push(metric);
    return metric;
  }

  /**
   * The plain numbers of every metric that has them, by name.
   *
   * @returns Each metric's series.
   */
  series(): Map<string, SeriesValues[]> {
    const out = new Map<string, SeriesValues[]>();
    for (const m of this.#metrics) if (m.series !== undefined) out.set(m.name, m.series());
    return out;
  }

  /**
   * Adds numbers counted by the same metrics in another thread.
   *
   * @param series By metric name; unknown names are ignored.
   */
  addSeries(series: ReadonlyMap<string, readonly SeriesValues[]>): void {
    for (const m of this.#metrics) {
      const s = series.get(m.name);
      if (s !== undefined) m.addSeries?.(s);
    }
  }

  /** The names of the metrics registered, in order. */
  get names(): string[] {
    return this.#metrics.map((m) => m.name);
  }

  /**
   * Adds a function called before each rendering (to set computed gauges).
   *
   * @param collect The function.
   * @returns A function that removes it.
   */
  addCollector(collect: () => Promise<void> | void): () => void {
    this.#collectors.push(collect);
    return () => {
      const i = this.#collectors.indexOf(collect);
      if (i >= 0) this.#collectors.splice(i, 1);
    };
  }

  /**
   * Runs the collectors and renders every metric.
   *
   * @returns The text exposition format 0.0.4.
   */
  async render(): Promise<string> {
    for (const collect of this.#collectors) await collect();
    return this.#metrics.map((m) => m.render()).join("");
  }
}
