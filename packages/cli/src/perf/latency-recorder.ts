import { build, type Histogram, initWebAssembly } from 'hdr-histogram-js';

/** Percentiles of one latency distribution, in milliseconds. */
export interface LatencySummary {
  p50: number;
  p95: number;
  p99: number;
  p999: number;
  max: number;
  /** Samples behind the percentiles. */
  count: number;
}

/** Microsecond resolution; one hour is far past any latency worth reporting, values above are clamped. */
const HIGHEST_TRACKABLE_MICROS = 3_600_000_000;

let webAssembly = false;

/**
 * Use hdr-histogram-js's WebAssembly histograms from now on: ~29 ns a
 * record here against ~142 ns for the JavaScript ones, which matters when a
 * perf process records 100k+ latencies a second on the cores it shares with
 * the broker it measures. Recorders built before keep their kind.
 */
export async function useWebAssemblyHistograms(): Promise<void> {
  if (webAssembly) return;
  await initWebAssembly();
  webAssembly = true;
}

function newHistogram(wasm: boolean): Histogram {
  return build({
    useWebAssembly: wasm,
    bitBucketSize: 32,
    lowestDiscernibleValue: 1,
    highestTrackableValue: HIGHEST_TRACKABLE_MICROS,
    numberOfSignificantValueDigits: 3,
    autoResize: false,
  });
}

const round3 = (ms: number): number => Math.round(ms * 1000) / 1000;

export function summarize(h: Histogram): LatencySummary {
  if (h.totalCount === 0) return { p50: 0, p95: 0, p99: 0, p999: 0, max: 0, count: 0 };
  const at = (p: number) => round3(h.getValueAtPercentile(p) / 1000);
  return {
    p50: at(50),
    p95: at(95),
    p99: at(99),
    p999: at(99.9),
    max: round3(h.maxValue / 1000),
    count: h.totalCount,
  };
}

/**
 * HDR histogram of latencies (recorded in microseconds, reported in ms). A
 * value is recorded once, into the current interval's histogram; each
 * interval is added to the run's histogram when it is taken, so the
 * once-a-second line shows the last second and the summary the whole run.
 * Warm-up values (`recordWarmUp`) show in the interval lines only, never in
 * the run's summary.
 */
export class LatencyRecorder {
  private readonly wasm = webAssembly;
  /** Every interval taken so far. */
  private readonly total = newHistogram(this.wasm);
  private readonly interval = newHistogram(this.wasm);
  /** Created at the first warm-up value. */
  private warmUp: Histogram | undefined;

  record(latencyMs: number): void {
    this.interval.recordValue(toMicros(latencyMs));
  }

  /** A value from the warm-up: shown in the current interval, left out of the run. */
  recordWarmUp(latencyMs: number): void {
    this.warmUp ??= newHistogram(this.wasm);
    this.warmUp.recordValue(toMicros(latencyMs));
  }

  get count(): number {
    return this.total.totalCount + this.interval.totalCount;
  }

  /** Percentiles since the previous call (or the start), then start a new interval. */
  takeInterval(): LatencySummary {
    let s: LatencySummary;
    if (this.warmUp && this.warmUp.totalCount > 0) {
      this.warmUp.add(this.interval);
      s = summarize(this.warmUp);
      this.warmUp.reset();
    } else {
      s = summarize(this.interval);
    }
    this.total.add(this.interval);
    this.interval.reset();
    return s;
  }

  /** The whole run; ends the current interval (call it once the run is over). */
  summary(): LatencySummary {
    this.total.add(this.interval);
    this.interval.reset();
    return summarize(this.total);
  }
}

/** A clock step between two processes can make a cross-process latency negative; count it as 0. */
function toMicros(latencyMs: number): number {
  return Math.min(HIGHEST_TRACKABLE_MICROS, Math.max(0, Math.round(latencyMs * 1000)));
}
