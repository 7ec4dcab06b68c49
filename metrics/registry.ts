/**
 * Counters, gauges and histograms with labels, rendered in the Prometheus
 * text exposition format 0.0.4 (`# HELP`, `# TYPE`, one sample per line).
 *
 * Counting costs one Map lookup and an add: the series are keyed by their
 * label values joined, nothing else is kept per event.
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
}

// Label values may hold anything; the separator cannot appear in a label
// name list written by us, and a collision would only merge two series.
const SEP = "\u0000";

/** `\`, newline in HELP text (text format 0.0.4). */
function escapeHelp(text: string): string {
  return text.replaceAll("\\", "\\\\").replaceAll("\n", "\\n");
}

/** `\`, `"` and newline in label values (text format 0.0.4). */
function escapeLabelValue(value: string): string {
  return value.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
}

/** Go-style float formatting: `+Inf`, `-Inf`, `NaN`, else the shortest decimal. */
function formatValue(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return String(value);
}

function labelText(names: readonly string[], values: readonly string[]): string {
  if (names.length === 0) return "";
  const parts = names.map((n, i) => `${n}="${escapeLabelValue(values[i] ?? "")}"`);
  return `{${parts.join(",")}}`;
}

/** The base of counters and gauges: a value per label-value combination. */
export abstract class Scalar implements Renderable {
  /** The metric name. */
  readonly name: string;
  /** One line on what it measures. */
  readonly help: string;
  /** The label names. */
  readonly labelNames: readonly string[];
  /** The value of each series, by label values joined. */
  protected readonly values = new Map<string, number>();
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
    this.name = name;
    this.help = help;
    this.labelNames = labelNames;
    // Series known in advance are shown at 0, so a rate() has a start.
    if (labelNames.length === 0) this.values.set("", 0);
    for (const labels of initial) this.values.set(this.key(labels), 0);
  }

  /** The series key of some label values. */
  protected key(labels: Labels | undefined): string {
    if (this.labelNames.length === 0) return "";
    return this.labelNames.map((n) => labels?.[n] ?? "").join(SEP);
  }

  /**
   * The current value of one series.
   *
   * @param labels The label values.
   * @returns The value, 0 when never set.
   */
  get(labels?: Labels): number {
    return this.values.get(this.key(labels)) ?? 0;
  }

  render(): string {
    const lines = [
      `# HELP ${this.name} ${escapeHelp(this.help)}`,
      `# TYPE ${this.name} ${this.type}`,
    ];
    for (const [key, value] of this.values) {
      const values = this.labelNames.length === 0 ? [] : key.split(SEP);
      lines.push(`${this.name}${labelText(this.labelNames, values)} ${formatValue(value)}`);
    }
    return lines.join("\n") + "\n";
  }
}

/** A value that only goes up (events counted since start). */
export class Counter extends Scalar {
  /** Always `counter`. */
  readonly type = "counter" as const;

  /**
   * Adds to one series.
   *
   * @param labels The label values.
   * @param by How much, 1 by default; never negative.
   */
  inc(labels?: Labels, by = 1): void {
    if (!(by >= 0)) return;
    const key = this.key(labels);
    this.values.set(key, (this.values.get(key) ?? 0) + by);
  }
}

/** A value that goes up and down (a current state). */
export class Gauge extends Scalar {
  /** Always `gauge`. */
  readonly type = "gauge" as const;

  /**
   * Sets one series.
   *
   * @param labels The label values.
   * @param value The value.
   */
  set(labels: Labels | undefined, value: number): void {
    this.values.set(this.key(labels), value);
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
  readonly #series = new Map<string, { counts: number[]; sum: number; count: number }>();

  /**
   * Makes a histogram; register it with {@linkcode Registry.add}.
   *
   * @param name The metric name.
   * @param help One line on what it measures.
   * @param labelNames The label names.
   * @param buckets Upper bounds, ascending; `+Inf` is added.
   */
  constructor(
    name: string,
    help: string,
    labelNames: readonly string[],
    buckets: readonly number[],
  ) {
    this.name = name;
    this.help = help;
    this.labelNames = labelNames;
    this.buckets = [...buckets].sort((a, b) => a - b);
  }

  /**
   * Counts one observation.
   *
   * @param labels The label values.
   * @param value The observed value.
   */
  observe(labels: Labels | undefined, value: number): void {
    const key = this.labelNames.map((n) => labels?.[n] ?? "").join(SEP);
    let s = this.#series.get(key);
    if (s === undefined) {
      s = { counts: this.buckets.map(() => 0), sum: 0, count: 0 };
      this.#series.set(key, s);
    }
    // Only the first bucket that holds it; cumulated when rendered.
    const i = this.buckets.findIndex((b) => value <= b);
    if (i >= 0) s.counts[i]!++;
    s.sum += value;
    s.count++;
  }

  /** @returns The `# HELP`, `# TYPE` and sample lines. */
  render(): string {
    const lines = [`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} histogram`];
    for (const [key, s] of this.#series) {
      const values = this.labelNames.length === 0 ? [] : key.split(SEP);
      const names = [...this.labelNames, "le"];
      let cumulative = 0;
      this.buckets.forEach((b, i) => {
        cumulative += s.counts[i]!;
        lines.push(
          `${this.name}_bucket${labelText(names, [...values, formatValue(b)])} ${cumulative}`,
        );
      });
      lines.push(`${this.name}_bucket${labelText(names, [...values, "+Inf"])} ${s.count}`);
      const own = labelText(this.labelNames, values);
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
   */
  add<T extends Renderable>(metric: T): T {
    this.#metrics.push(metric);
    return metric;
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
