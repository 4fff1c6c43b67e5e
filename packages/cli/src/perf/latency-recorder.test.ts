import test from 'ava';
import { LatencyRecorder, useWebAssemblyHistograms } from './latency-recorder.js';

test('latency recorder - percentiles of a known distribution within HDR precision', (t) => {
  const r = new LatencyRecorder();
  for (let ms = 1; ms <= 1000; ms++) r.record(ms);
  const s = r.summary();
  const near = (actual: number, expected: number) =>
    t.true(Math.abs(actual - expected) <= expected * 0.001 + 0.001, `${actual} ≉ ${expected}`);
  near(s.p50, 500);
  near(s.p95, 950);
  near(s.p99, 990);
  near(s.p999, 999);
  near(s.max, 1000);
  t.is(s.count, 1000);
});

test('latency recorder - sub-millisecond latencies keep microsecond resolution', (t) => {
  const r = new LatencyRecorder();
  for (let i = 0; i < 100; i++) r.record(0.25);
  t.is(r.summary().p50, 0.25);
});

test('latency recorder - an interval summary resets, the run summary does not', (t) => {
  const r = new LatencyRecorder();
  r.record(10);
  r.record(20);
  t.is(r.takeInterval().count, 2);
  r.record(1);
  const interval = r.takeInterval();
  t.is(interval.count, 1);
  t.is(interval.max, 1);
  t.is(r.summary().count, 3);
  t.true(Math.abs(r.summary().max - 20) < 0.02);
  t.is(r.takeInterval().count, 0);
});

test('latency recorder - negative latencies (clock skew) count as 0, absurd ones are clamped', (t) => {
  const r = new LatencyRecorder();
  r.record(-3);
  r.record(1e12);
  const s = r.summary();
  t.is(s.count, 2);
  t.is(r.takeInterval().p50, 0);
  t.true(s.max >= 3_599_000 && s.max <= 3_601_000);
});

test('latency recorder - WebAssembly histograms give the same percentiles as the JavaScript ones', async (t) => {
  const js = new LatencyRecorder();
  await useWebAssemblyHistograms();
  const wasm = new LatencyRecorder();
  for (let i = 0; i < 5000; i++) {
    const ms = ((i * 7919) % 100_000) / 1000;
    js.record(ms);
    wasm.record(ms);
    if (i % 1000 === 999) t.deepEqual(wasm.takeInterval(), js.takeInterval());
  }
  wasm.record(42);
  js.record(42);
  t.deepEqual(wasm.summary(), js.summary());
  t.is(wasm.summary().count, 5001);
});
