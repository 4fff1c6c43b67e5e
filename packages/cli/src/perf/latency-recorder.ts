import { build, type Histogram } from 'hdr-histogram-js';

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

function newHistogram(): Histogram {
  return build({
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
 * HDR histogram of latencies (recorded in microseconds, reported in ms) with a
 * second histogram per progress interval, so the once-a-second line shows the
 * last second and the summary shows the whole run.
 */
export class LatencyRecorder {
  private readonly total = newHistogram();
  private readonly interval = newHistogram();

  record(latencyMs: number): void {
    // A clock step between two processes can make a cross-process latency negative; count it as 0.
    const micros = Math.min(HIGHEST_TRACKABLE_MICROS, Math.max(0, Math.round(latencyMs * 1000)));
    this.total.recordValue(micros);
    this.interval.recordValue(micros);
  }

  get count(): number {
    return this.total.totalCount;
  }

  /** Percentiles since the previous call (or the start), then start a new interval. */
  takeInterval(): LatencySummary {
    const s = summarize(this.interval);
    this.interval.reset();
    return s;
  }

  summary(): LatencySummary {
    return summarize(this.total);
  }

  /** Forget everything recorded so far (end of a warm-up). */
  reset(): void {
    this.total.reset();
    this.interval.reset();
  }
}
