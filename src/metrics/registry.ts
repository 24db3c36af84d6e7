/**
 * A small Prometheus registry. The hot path (`inc`, `set`, `observe`) touches only numbers
 * in preallocated slots: label sets are resolved once into child handles (`labels(...)`),
 * so a request costs no allocation and no string building; text is only built on scrape.
 */

export type LabelValues = readonly string[];

/** Metric and label names as Prometheus accepts them. */
const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
/** Children per metric: a label set built from unbounded input would grow the registry forever. */
const CHILDREN_MAX = 10_000;

function assertName(pattern: RegExp, name: string, what: string): void {
  if (!pattern.test(name)) throw new Error(`invalid Prometheus ${what} name "${name}"`);
}

/** Escapes a label value for the text format: backslash, double quote and newline. */
export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function escapeHelp(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

/** `{a="x",b="y"}` for the given names and values; "" when there are none. */
export function formatLabels(names: readonly string[], values: LabelValues, extra = ""): string {
  const parts: string[] = [];
  for (let i = 0; i < names.length; i++) parts.push(`${names[i]}="${escapeLabelValue(values[i] ?? "")}"`);
  if (extra !== "") parts.push(extra);
  return parts.length === 0 ? "" : `{${parts.join(",")}}`;
}

/** Prometheus' float formatting: integers plainly, infinities as +Inf/-Inf. */
export function formatValue(value: number): string {
  if (value === Number.POSITIVE_INFINITY) return "+Inf";
  if (value === Number.NEGATIVE_INFINITY) return "-Inf";
  if (Number.isNaN(value)) return "NaN";
  return String(value);
}

interface Renderable {
  readonly name: string;
  render(lines: string[]): void;
}

abstract class Family<Child> implements Renderable {
  private readonly children = new Map<string, { values: LabelValues; child: Child }>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
  ) {
    assertName(METRIC_NAME, name, "metric");
    for (const label of labelNames) assertName(LABEL_NAME, label, "label");
  }

  /** The child for one label set: resolve it once and keep it (this call builds a string). */
  labels(...values: string[]): Child {
    if (values.length !== this.labelNames.length) {
      throw new Error(`${this.name} takes labels ${this.labelNames.join(", ")}; got ${values.length} values`);
    }
    const key = values.join("\u0000");
    const found = this.children.get(key);
    if (found !== undefined) return found.child;
    if (this.children.size >= CHILDREN_MAX) {
      throw new Error(`${this.name} already has ${CHILDREN_MAX} label sets; a label takes unbounded values`);
    }
    const child = this.create();
    this.children.set(key, { values: [...values], child });
    return child;
  }

  protected abstract create(): Child;
  protected abstract type: string;
  protected abstract renderChild(lines: string[], values: LabelValues, child: Child): void;

  render(lines: string[]): void {
    lines.push(`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} ${this.type}`);
    for (const { values, child } of this.children.values()) this.renderChild(lines, values, child);
  }
}

export class CounterChild {
  value = 0;
  inc(by = 1): void {
    this.value += by;
  }
}

export class Counter extends Family<CounterChild> {
  protected type = "counter";
  protected create(): CounterChild {
    return new CounterChild();
  }
  protected renderChild(lines: string[], values: LabelValues, child: CounterChild): void {
    lines.push(`${this.name}${formatLabels(this.labelNames, values)} ${formatValue(child.value)}`);
  }
}

export class GaugeChild {
  value = 0;
  set(value: number): void {
    this.value = value;
  }
  inc(by = 1): void {
    this.value += by;
  }
  dec(by = 1): void {
    this.value -= by;
  }
}

export class Gauge extends Family<GaugeChild> {
  protected type = "gauge";
  protected create(): GaugeChild {
    return new GaugeChild();
  }
  protected renderChild(lines: string[], values: LabelValues, child: GaugeChild): void {
    lines.push(`${this.name}${formatLabels(this.labelNames, values)} ${formatValue(child.value)}`);
  }
}

/** Observations per bucket in fixed slots; `observe` is a short scan and three additions. */
export class HistogramChild {
  /** counts[i]: observations ≤ bounds[i] and > bounds[i-1] (not cumulative); the last slot is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(readonly bounds: Float64Array) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    const bounds = this.bounds;
    let i = 0;
    // Bounded by the bucket count (a dozen or so): cheaper than a binary search at this size.
    while (i < bounds.length && value > bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }
}

export class Histogram extends Family<HistogramChild> {
  protected type = "histogram";
  private readonly bounds: Float64Array;

  constructor(name: string, help: string, labelNames: readonly string[], buckets: readonly number[]) {
    super(name, help, labelNames);
    if (buckets.length === 0) throw new Error(`${name}: a histogram needs at least one bucket`);
    for (let i = 1; i < buckets.length; i++) {
      if (!(buckets[i]! > buckets[i - 1]!)) throw new Error(`${name}: buckets must increase`);
    }
    this.bounds = Float64Array.from(buckets);
  }

  protected create(): HistogramChild {
    return new HistogramChild(this.bounds);
  }

  protected renderChild(lines: string[], values: LabelValues, child: HistogramChild): void {
    let cumulative = 0;
    for (let i = 0; i <= child.bounds.length; i++) {
      cumulative += child.counts[i]!;
      const le = i < child.bounds.length ? formatValue(child.bounds[i]!) : "+Inf";
      lines.push(
        `${this.name}_bucket${formatLabels(this.labelNames, values, `le="${le}"`)} ${formatValue(cumulative)}`,
      );
    }
    const labels = formatLabels(this.labelNames, values);
    lines.push(`${this.name}_sum${labels} ${formatValue(child.sum)}`);
    lines.push(`${this.name}_count${labels} ${formatValue(child.count)}`);
  }
}

/** A gauge read at scrape time (Raft indexes, memory): costs nothing between scrapes. */
export interface GaugeSample {
  labels: LabelValues;
  value: number;
}

class CollectedGauge implements Renderable {
  constructor(
    readonly name: string,
    private readonly help: string,
    private readonly labelNames: readonly string[],
    private readonly collect: () => Iterable<GaugeSample>,
  ) {
    assertName(METRIC_NAME, name, "metric");
    for (const label of labelNames) assertName(LABEL_NAME, label, "label");
  }

  render(lines: string[]): void {
    lines.push(`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} gauge`);
    for (const sample of this.collect()) {
      lines.push(`${this.name}${formatLabels(this.labelNames, sample.labels)} ${formatValue(sample.value)}`);
    }
  }
}

/** Latency buckets in seconds: 100 µs to 10 s, as etcd's request and fsync histograms roughly. */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/** The metrics of one process (a node owns one; there is no global registry). */
export class MetricsRegistry {
  private readonly metrics = new Map<string, Renderable>();

  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    return this.add(new Counter(name, help, labelNames));
  }

  gauge(name: string, help: string, labelNames: readonly string[] = []): Gauge {
    return this.add(new Gauge(name, help, labelNames));
  }

  histogram(
    name: string,
    help: string,
    labelNames: readonly string[] = [],
    buckets: readonly number[] = LATENCY_BUCKETS_SECONDS,
  ): Histogram {
    return this.add(new Histogram(name, help, labelNames, buckets));
  }

  /** A gauge whose samples `collect` computes at each scrape. */
  collected(
    name: string,
    help: string,
    labelNames: readonly string[],
    collect: () => Iterable<GaugeSample>,
  ): void {
    this.add(new CollectedGauge(name, help, labelNames, collect));
  }

  private add<M extends Renderable>(metric: M): M {
    if (this.metrics.has(metric.name)) throw new Error(`metric ${metric.name} is registered twice`);
    this.metrics.set(metric.name, metric);
    return metric;
  }

  /** The Prometheus text exposition format (version 0.0.4). */
  render(): string {
    const lines: string[] = [];
    for (const metric of this.metrics.values()) metric.render(lines);
    return `${lines.join("\n")}\n`;
  }
}

export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";
