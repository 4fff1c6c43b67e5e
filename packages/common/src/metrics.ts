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
