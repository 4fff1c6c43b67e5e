import test from 'ava';
import {
  CountingHistogram,
  countingHistogram,
  Histogram,
  LATENCY_BUCKETS_SECONDS,
  Registry,
} from './metrics.js';

test('counting histogram - scrapes exactly as a prom-client histogram of the same observations', async (t) => {
  const mine = new Registry();
  const theirs = new Registry();
  const a = countingHistogram(mine, 'sluice_test_latency_seconds', 'Test latency');
  const b = new Histogram({
    name: 'sluice_test_latency_seconds',
    help: 'Test latency',
    buckets: LATENCY_BUCKETS_SECONDS,
    registers: [theirs],
  });
  // On bounds, between them, below the first and above the last.
  const values = [0, 0.00005, 0.00007, 0.001, 0.0011, 0.3, 5, 10, 11, 250, 0.0025, 0.0025];
  for (const v of values) {
    a.observe(v);
    b.observe(v);
  }
  t.is(await mine.metrics(), await theirs.metrics());
  t.regex(await mine.metrics(), /sluice_test_latency_seconds_count 12/);

  mine.resetMetrics();
  theirs.resetMetrics();
  a.observe(0.02);
  b.observe(0.02);
  t.is(await mine.metrics(), await theirs.metrics());
});

test('counting histogram - registered once per registry; ignores non-finite values', async (t) => {
  const r = new Registry();
  const a = countingHistogram(r, 'sluice_test_seconds', 'x');
  t.is(countingHistogram(r, 'sluice_test_seconds', 'x'), a);
  t.true(a instanceof CountingHistogram);
  a.observe(Number.NaN);
  a.observe(Number.POSITIVE_INFINITY);
  t.regex(await r.metrics(), /sluice_test_seconds_count 0/);
  new Histogram({ name: 'sluice_other_seconds', help: 'y', registers: [r] });
  t.throws(() => countingHistogram(r, 'sluice_other_seconds', 'y'), { message: /another type/ });
});
