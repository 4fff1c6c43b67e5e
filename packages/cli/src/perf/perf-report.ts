import type { ConsumeProgress, ConsumeResult } from './consume-driver.js';
import type { LatencySummary } from './latency-recorder.js';
import type { ProduceProgress, ProduceResult } from './produce-driver.js';

/** The one JSON object `sluice perf produce|consume --json` prints; the bench runner reads it. */
export interface PerfSummary {
  role: 'produce' | 'consume';
  topic: string;
  /** Bytes per message. */
  messageSize: number;
  /** Seconds over which the rates were measured (after the warm-up). */
  durationSec: number;
  /** Seconds of warm-up left out of every figure. */
  warmUpSec: number;
  msgPerSec: number;
  /** 2^20 bytes per second of payload. */
  mbPerSec: number;
  /** Intended send → receipt; null when this process did not produce. */
  publishLatencyMs: LatencySummary | null;
  /** Intended send → delivery; null when this process did not consume. */
  endToEndLatencyMs: LatencySummary | null;
  counts: {
    /** Warm-up messages (sent or received), not in the other figures. */
    warmUp?: number;
    sent?: number;
    published?: number;
    errors?: number;
    unacknowledged?: number;
    received?: number;
    untimed?: number;
  };
  producers?: number;
  /** Messages per second asked for; 0 = as fast as possible. */
  targetRate?: number;
  firstError?: string;
}

const round = (n: number, digits: number) => Math.round(n * 10 ** digits) / 10 ** digits;

export function produceSummary(
  topic: string,
  opts: { messageSize: number; producers: number; rate: number; warmUpSec: number },
  r: ProduceResult,
  consumed?: ConsumeResult,
): PerfSummary {
  return {
    role: 'produce',
    topic,
    messageSize: opts.messageSize,
    durationSec: round(r.elapsedSec, 3),
    warmUpSec: opts.warmUpSec,
    msgPerSec: round(r.msgPerSec, 1),
    mbPerSec: round(r.mbPerSec, 3),
    publishLatencyMs: r.publishLatencyMs,
    endToEndLatencyMs: consumed ? consumed.endToEndLatencyMs : null,
    counts: {
      ...(opts.warmUpSec > 0 ? { warmUp: r.warmUpSent } : {}),
      sent: r.sent,
      published: r.published,
      errors: r.errors,
      unacknowledged: r.unacknowledged,
      ...(consumed ? { received: consumed.received, untimed: consumed.untimed } : {}),
    },
    producers: opts.producers,
    targetRate: opts.rate,
    ...(r.firstError !== undefined ? { firstError: r.firstError } : {}),
  };
}

export function consumeSummary(topic: string, r: ConsumeResult, warmUpSec = 0): PerfSummary {
  return {
    role: 'consume',
    topic,
    messageSize: r.messageSize,
    durationSec: round(r.elapsedSec, 3),
    warmUpSec,
    msgPerSec: round(r.msgPerSec, 1),
    mbPerSec: round(r.mbPerSec, 3),
    publishLatencyMs: null,
    endToEndLatencyMs: r.endToEndLatencyMs,
    counts: {
      ...(warmUpSec > 0 ? { warmUp: r.warmUpReceived } : {}),
      received: r.received,
      untimed: r.untimed,
    },
  };
}

const num = (n: number) => Math.round(n).toLocaleString('en-US');
const ms = (n: number) => n.toFixed(n >= 100 ? 0 : n >= 10 ? 1 : 2);

export function formatProduceProgress(p: ProduceProgress): string {
  const l = p.publishLatencyMs;
  return (
    `[${p.elapsedSec.toFixed(0).padStart(4)}s]${p.warmingUp ? ' warm-up' : ''} produce ${num(p.msgPerSec).padStart(9)} msg/s ` +
    `${p.mbPerSec.toFixed(2).padStart(8)} MB/s  publish p50 ${ms(l.p50)} ms p99 ${ms(l.p99)} ms  ` +
    `in-flight ${p.inFlight}${p.errors > 0 ? `  errors ${p.errors}` : ''}`
  );
}

export function formatConsumeProgress(p: ConsumeProgress): string {
  const l = p.endToEndLatencyMs;
  return (
    `[${p.elapsedSec.toFixed(0).padStart(4)}s]${p.warmingUp ? ' warm-up' : ''} consume ${num(p.msgPerSec).padStart(9)} msg/s ` +
    `${p.mbPerSec.toFixed(2).padStart(8)} MB/s  end-to-end p50 ${ms(l.p50)} ms p99 ${ms(l.p99)} ms`
  );
}

function latencyLine(label: string, l: LatencySummary | null): string | undefined {
  if (!l) return undefined;
  return (
    `${label.padEnd(22)} p50 ${ms(l.p50)}  p95 ${ms(l.p95)}  p99 ${ms(l.p99)}  ` +
    `p99.9 ${ms(l.p999)}  max ${ms(l.max)} ms  (${num(l.count)} samples)`
  );
}

/** The human summary printed at the end of a run. */
export function formatSummary(s: PerfSummary): string {
  const counts = Object.entries(s.counts)
    .map(([k, v]) => `${k} ${num(v ?? 0)}`)
    .join(', ');
  const lines = [
    `${s.role} ${s.topic}: ${num(s.msgPerSec)} msg/s, ${s.mbPerSec.toFixed(2)} MB/s over ${s.durationSec.toFixed(1)} s, ` +
      `${s.messageSize}-byte messages${s.warmUpSec > 0 ? ` (after a ${s.warmUpSec} s warm-up)` : ''}`,
    `  ${counts}`,
    latencyLine('  publish latency (ms)', s.publishLatencyMs),
    latencyLine('  end-to-end (ms)', s.endToEndLatencyMs),
    s.firstError !== undefined ? `  first error: ${s.firstError}` : undefined,
  ];
  return lines.filter((l): l is string => l !== undefined).join('\n');
}
