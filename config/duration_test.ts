import assert from "node:assert/strict";
import fc from "fast-check";
import { formatDuration, formatSize, parseDuration, parseSize } from "./duration.ts";

const durations = [
  { text: "250ms", ms: 250 },
  { text: "30s", ms: 30_000 },
  { text: "5m", ms: 300_000 },
  { text: "4h", ms: 14_400_000 },
  { text: "5d", ms: 432_000_000 },
  { text: "0s", ms: 0 },
  { text: "90s", ms: 90_000 },
];
for (const c of durations) {
  Deno.test(`parseDuration() reads "${c.text}" as ${c.ms} ms`, () => {
    assert.equal(parseDuration(c.text), c.ms);
  });
}

const badDurations = [
  "",
  "5",
  "5 m",
  "5min",
  "1.5h",
  "-5m",
  "m",
  "5M",
  " 5m",
  "5m ",
  "1h30m",
  "99999999999999999999d",
];
for (const text of badDurations) {
  Deno.test(`parseDuration() refuses ${JSON.stringify(text)} with a SyntaxError`, () => {
    assert.throws(() => parseDuration(text), SyntaxError);
  });
}

Deno.test("parseDuration() says what it expected and quotes what it found", () => {
  assert.throws(() => parseDuration("5 days"), {
    name: "SyntaxError",
    message: 'Cannot parse duration "5 days": expected a whole number and a unit ' +
      '(ms, s, m, h or d), like "30s" or "5m"',
  });
});

const formatted = [
  { ms: 300_000, text: "5m" },
  { ms: 432_000_000, text: "5d" },
  { ms: 3_600_000, text: "1h" },
  { ms: 90_000, text: "90s" },
  { ms: 1_500, text: "1500ms" },
  { ms: 0, text: "0s" },
  { ms: 86_400_000 * 2 + 3_600_000, text: "49h" },
];
for (const c of formatted) {
  Deno.test(`formatDuration() writes ${c.ms} ms as "${c.text}"`, () => {
    assert.equal(formatDuration(c.ms), c.text);
  });
}

Deno.test("formatDuration() refuses negative and fractional durations", () => {
  assert.throws(() => formatDuration(-1), RangeError);
  assert.throws(() => formatDuration(1.5), RangeError);
  assert.throws(() => formatDuration(Number.NaN), RangeError);
});

Deno.test("formatDuration() output reads back to the same duration", () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), (ms) => {
      assert.equal(parseDuration(formatDuration(ms)), ms);
    }),
  );
});

const sizes: { value: number | string; bytes: number }[] = [
  { value: 26214400, bytes: 26214400 },
  { value: "26214400", bytes: 26214400 },
  { value: "25M", bytes: 26214400 },
  { value: "25MiB", bytes: 26214400 },
  { value: "25m", bytes: 26214400 },
  { value: "10k", bytes: 10240 },
  { value: "10K", bytes: 10240 },
  { value: "10KiB", bytes: 10240 },
  { value: "1G", bytes: 1073741824 },
  { value: "2GiB", bytes: 2147483648 },
  { value: 0, bytes: 0 },
];
for (const c of sizes) {
  Deno.test(`parseSize() reads ${JSON.stringify(c.value)} as ${c.bytes} bytes`, () => {
    assert.equal(parseSize(c.value), c.bytes);
  });
}

const badSizes: (number | string)[] = [
  "",
  "25MB",
  "25 M",
  "M",
  "1.5M",
  "-1",
  "25T",
  "k10",
  -1,
  1.5,
  Number.POSITIVE_INFINITY,
];
for (const value of badSizes) {
  Deno.test(`parseSize() refuses ${JSON.stringify(value) ?? String(value)} with a SyntaxError`, () => {
    assert.throws(() => parseSize(value), SyntaxError);
  });
}

Deno.test("parseSize() says that k, M and G are 1024-based", () => {
  assert.throws(() => parseSize("25MB"), {
    name: "SyntaxError",
    message: 'Cannot parse size "25MB": expected a whole number of bytes, ' +
      'optionally with k, M or G (1024-based), like "25M"',
  });
});

const formattedSizes = [
  { bytes: 26214400, text: "25M" },
  { bytes: 10240, text: "10k" },
  { bytes: 1073741824, text: "1G" },
  { bytes: 1000, text: "1000" },
  { bytes: 1536, text: "1536" },
  { bytes: 0, text: "0" },
];
for (const c of formattedSizes) {
  Deno.test(`formatSize() writes ${c.bytes} bytes as "${c.text}"`, () => {
    assert.equal(formatSize(c.bytes), c.text);
  });
}

Deno.test("formatSize() output reads back to the same size", () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), (bytes) => {
      assert.equal(parseSize(formatSize(bytes)), bytes);
    }),
  );
});
