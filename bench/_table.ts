/**
 * Figures of several runs, and the table that shows them: each cell is the
 * median of the runs with the min and max beside it, and the last column is
 * the ratio of the medians tern/Postfix.
 *
 * @module
 */

/** One line of the table: a metric of a scenario, its values per run for each MTA. */
export interface Row {
  /** The scenario, shown on its first row. */
  readonly scenario: string;
  /** What is measured, with its unit: `accepted msg/s`. */
  readonly metric: string;
  /** Decimals to show. */
  readonly digits: number;
  /** tern's value in each run. */
  readonly tern: number[];
  /** Postfix's value in each run; `null` when Postfix is not measured here. */
  readonly postfix: number[] | null;
}

/**
 * The median of some values (the mean of the middle two for an even count).
 *
 * @param values At least one value.
 * @returns The median, or NaN for none.
 */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function format(value: number, digits: number): string {
  return value.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

/**
 * `median (min–max)`, or just the value for one run; `-` for none.
 *
 * @param values The runs' values.
 * @param digits Decimals.
 * @returns The cell text.
 */
export function summary(values: readonly number[], digits: number): string {
  if (values.length === 0) return "-";
  const m = format(median(values), digits);
  if (values.length === 1) return m;
  return `${m} (${format(Math.min(...values), digits)}–${format(Math.max(...values), digits)})`;
}

/** Two decimals, or two significant digits for small ratios (0.019). */
function formatRatio(ratio: number): string {
  if (!Number.isFinite(ratio)) return "-";
  return ratio >= 0.1 ? ratio.toFixed(2) : ratio.toPrecision(2);
}

/**
 * A Markdown table of the rows.
 *
 * @param rows The figures.
 * @returns The table, one line per row plus the header.
 */
export function renderTable(rows: readonly Row[]): string {
  const withPostfix = rows.some((r) => r.postfix !== null);
  const header = withPostfix
    ? ["scenario", "metric", "tern", "Postfix", "tern/Postfix"]
    : ["scenario", "metric", "tern"];
  const lines: string[][] = [];
  let previous = "";
  for (const r of rows) {
    const cells = [r.scenario === previous ? "" : r.scenario, r.metric, summary(r.tern, r.digits)];
    if (withPostfix) {
      const p = r.postfix ?? [];
      cells.push(summary(p, r.digits));
      const ratio = median(r.tern) / median(p);
      cells.push(formatRatio(ratio));
    }
    lines.push(cells);
    previous = r.scenario;
  }
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const line = (cells: string[]) =>
    `| ${
      cells.map((c, i) => i >= 2 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)).join(" | ")
    } |`;
  const rule = `|${
    widths.map((w, i) => i >= 2 ? "-".repeat(w + 1) + ":" : "-".repeat(w + 2)).join("|")
  }|`;
  return [line(header), rule, ...lines.map(line)].join("\n");
}
