import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

export { Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * Every process has one registry; components register their `sluice_*`
 * metrics on the registry they are given (tests pass a fresh one).
 */
export function createRegistry(withDefaults = true): Registry {
  const registry = new Registry();
  if (withDefaults) collectDefaultMetrics({ register: registry, prefix: 'sluice_process_' });
  return registry;
}

/** Latency buckets in seconds, 50 µs to 10 s. */
export const LATENCY_BUCKETS_SECONDS = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/** Get a metric already registered under `name`, or register it (idempotent across components). */
export function counter(registry: Registry, name: string, help: string, labelNames: string[] = []): Counter {
  return (
    (registry.getSingleMetric(name) as Counter) ??
    new Counter({ name, help, labelNames, registers: [registry] })
  );
}

export function gauge(registry: Registry, name: string, help: string, labelNames: string[] = []): Gauge {
  return (
    (registry.getSingleMetric(name) as Gauge) ?? new Gauge({ name, help, labelNames, registers: [registry] })
  );
}

export function histogram(
  registry: Registry,
  name: string,
  help: string,
  labelNames: string[] = [],
  buckets: number[] = LATENCY_BUCKETS_SECONDS,
): Histogram {
  return (
    (registry.getSingleMetric(name) as Histogram) ??
    new Histogram({ name, help, labelNames, buckets, registers: [registry] })
  );
}

/**
 * A histogram without labels whose `observe` only bumps typed-array
 * counters, for per-add and per-message paths: prom-client's `observe`
 * allocates a closure and label objects on every call, which at tens of
 * thousands of adds a second was a measurable share of a bookie's garbage.
 * Scrapes expose it exactly as a prom-client histogram with the same
 * buckets (cumulative `_bucket` series, `_sum`, `_count`).
 */
export class CountingHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly bounds: Float64Array;
  /** Observations per bucket; the last slot counts those above every bound. */
  private readonly counts: Float64Array;
  private sum = 0;
  private count = 0;

  constructor(
    readonly name: string,
    readonly help: string,
    buckets: number[] = LATENCY_BUCKETS_SECONDS,
  ) {
    this.bounds = Float64Array.from([...buckets].sort((a, b) => a - b));
    this.counts = new Float64Array(this.bounds.length + 1);
  }

  observe(value: number): void {
    if (!Number.isFinite(value)) return;
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > b[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }

  /** The metric as prom-client's registry reads it. */
  async get() {
    const bucket = `${this.name}_bucket`;
    const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
    let cumulative = 0;
    for (let i = 0; i < this.bounds.length; i++) {
      cumulative += this.counts[i]!;
      values.push({ labels: { le: this.bounds[i]! }, value: cumulative, metricName: bucket });
    }
    values.push({ labels: { le: '+Inf' }, value: this.count, metricName: bucket });
    values.push({ labels: {}, value: this.sum, metricName: `${this.name}_sum` });
    values.push({ labels: {}, value: this.count, metricName: `${this.name}_count` });
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  reset(): void {
    this.counts.fill(0);
    this.sum = 0;
    this.count = 0;
  }
}

/** `histogram` for hot paths: a `CountingHistogram` registered once under `name`. */
export function countingHistogram(
  registry: Registry,
  name: string,
  help: string,
  buckets: number[] = LATENCY_BUCKETS_SECONDS,
): CountingHistogram {
  const existing = registry.getSingleMetric(name) as unknown;
  if (existing instanceof CountingHistogram) return existing;
  if (existing) throw new Error(`metric ${name} is already registered with another type`);
  const h = new CountingHistogram(name, help, buckets);
  registry.registerMetric(h as unknown as Parameters<Registry['registerMetric']>[0]);
  return h;
}
