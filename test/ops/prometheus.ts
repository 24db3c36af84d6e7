import parsePrometheusTextFormat from "parse-prometheus-text-format";

export interface Sample {
  labels: Record<string, string>;
  value: number;
}

/** Sample name (with _bucket/_sum/_count for histograms) → its samples; `types` maps each family to its TYPE. */
export interface ParsedMetrics {
  samples: Map<string, Sample[]>;
  types: Map<string, string>;
}

/**
 * Parses a /metrics body with a real Prometheus text-format parser
 * (parse-prometheus-text-format) and checks what the parser leaves to the producer: every
 * family has HELP and TYPE, no family twice, label sets unique, counters end in _total,
 * histogram buckets are cumulative and end in +Inf equal to _count.
 *
 * The parser merges all label sets of a histogram into one (it keeps only the last
 * child's buckets and drops labelled _sum/_count), so histogram values are read from a
 * second parse in which histogram families are declared untyped: each _bucket, _sum and
 * _count line is then a sample of its own, labels intact.
 */
export function parseMetrics(text: string): ParsedMetrics {
  const types = new Map<string, string>();
  for (const family of parsePrometheusTextFormat(text)) {
    if (types.has(family.name)) throw new Error(`family ${family.name} appears twice`);
    if (family.type === "UNTYPED") throw new Error(`family ${family.name} has no # TYPE`);
    if (family.help === "") throw new Error(`family ${family.name} has no # HELP`);
    if (family.type === "COUNTER" && !family.name.endsWith("_total")) {
      throw new Error(`counter ${family.name} does not end in _total`);
    }
    types.set(family.name, family.type);
  }
  const flat = text.replace(/^# TYPE (\S+) histogram$/gm, "# TYPE $1 untyped");
  const samples = new Map<string, Sample[]>();
  for (const family of parsePrometheusTextFormat(flat)) {
    const list = samples.get(family.name) ?? [];
    for (const sample of family.metrics) {
      list.push({ labels: sample.labels ?? {}, value: Number(sample.value) });
    }
    samples.set(family.name, list);
  }
  for (const [name, list] of samples) {
    const seen = new Set<string>();
    for (const sample of list) {
      const key = JSON.stringify(sample.labels);
      if (seen.has(key)) throw new Error(`${name} repeats label set ${key}`);
      seen.add(key);
    }
  }
  for (const [name, type] of types) if (type === "HISTOGRAM") checkHistogram(name, samples);
  return { samples, types };
}

function withoutLe(labels: Record<string, string>): string {
  const { le: _le, ...rest } = labels;
  return JSON.stringify(rest);
}

function checkHistogram(name: string, samples: Map<string, Sample[]>): void {
  const counts = new Map(
    (samples.get(`${name}_count`) ?? []).map((s) => [JSON.stringify(s.labels), s.value]),
  );
  const byChild = new Map<string, Sample[]>();
  for (const bucket of samples.get(`${name}_bucket`) ?? []) {
    const key = withoutLe(bucket.labels);
    byChild.set(key, [...(byChild.get(key) ?? []), bucket]);
  }
  for (const [child, buckets] of byChild) {
    const sorted = buckets
      .map((b) => [b.labels.le === "+Inf" ? Number.POSITIVE_INFINITY : Number(b.labels.le), b.value] as const)
      .sort((a, b) => a[0] - b[0]);
    let previous = 0;
    for (const [, value] of sorted) {
      if (value < previous) throw new Error(`${name}${child}: buckets are not cumulative`);
      previous = value;
    }
    const last = sorted[sorted.length - 1];
    if (last === undefined || last[0] !== Number.POSITIVE_INFINITY || last[1] !== counts.get(child)) {
      throw new Error(`${name}${child}: the +Inf bucket must equal _count`);
    }
  }
}

/** The value of the first sample of `name` whose labels include `labels` (undefined if none). */
export function sampleValue(
  metrics: ParsedMetrics,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  return metrics.samples
    .get(name)
    ?.find((sample) => Object.entries(labels).every(([key, value]) => sample.labels[key] === value))?.value;
}

/** Bucket upper bound → cumulative count for one histogram child. */
export function histogramBuckets(
  metrics: ParsedMetrics,
  name: string,
  labels: Record<string, string> = {},
): Record<string, number> {
  const buckets: Record<string, number> = {};
  for (const sample of metrics.samples.get(`${name}_bucket`) ?? []) {
    if (Object.entries(labels).every(([key, value]) => sample.labels[key] === value)) {
      buckets[sample.labels.le ?? ""] = sample.value;
    }
  }
  return buckets;
}
