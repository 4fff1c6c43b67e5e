import type { Workload } from '../../../packages/cli/src/perf/index.js';
import type { DiskBoundResult } from './disk-bound.js';
import type { Side, TrialResult } from './trial.js';

export interface Stat {
  median: number;
  min: number;
  max: number;
}

export function stat(values: number[]): Stat {
  if (values.length === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN };
  const v = [...values].sort((a, b) => a - b);
  const mid = v.length >> 1;
  const median = v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
  return { median, min: v[0]!, max: v[v.length - 1]! };
}

export interface SideStats {
  runs: number;
  msgPerSec: Stat;
  mbPerSec: Stat;
  publishP50Ms: Stat;
  publishP99Ms: Stat;
  endToEndP50Ms: Stat;
  endToEndP99Ms: Stat;
  consumeMsgPerSec: Stat;
  bytesWrittenPerPayloadByte: Stat;
}

export interface BenchReport {
  workload: Workload;
  machine: { cpus: string; cores: number; memoryGiB: number; kernel: string; node: string; disk: string };
  startedAt: string;
  disk: DiskBoundResult[];
  trials: TrialResult[];
  failures: { side: Side; run: number; error: string }[];
  sides: Partial<Record<Side, SideStats>>;
  /** Sluice's medians over NATS's medians (throughput: > 1 is better; latency: < 1 is better). */
  vsNats?: { msgPerSec: number; publishP50: number; publishP99: number; endToEndP99: number };
  /** Sluice's median throughput as a fraction of the disk bound (best group size) per byte Sluice writes. */
  vsDisk?: { boundMsgPerSec: number; bytesWrittenPerPayloadByte: number; fractionOfBound: number };
}

export function sideStats(trials: TrialResult[]): SideStats {
  const s = (f: (t: TrialResult) => number | null | undefined) =>
    stat(trials.map(f).filter((x): x is number => typeof x === 'number' && Number.isFinite(x)));
  return {
    runs: trials.length,
    msgPerSec: s((t) => t.msgPerSec),
    mbPerSec: s((t) => t.mbPerSec),
    publishP50Ms: s((t) => t.publishLatencyMs.p50),
    publishP99Ms: s((t) => t.publishLatencyMs.p99),
    endToEndP50Ms: s((t) => t.endToEndLatencyMs?.p50),
    endToEndP99Ms: s((t) => t.endToEndLatencyMs?.p99),
    consumeMsgPerSec: s((t) => t.consumeMsgPerSec),
    bytesWrittenPerPayloadByte: s((t) => t.bytesWrittenPerPayloadByte),
  };
}

/** Fill in the per-side statistics and the ratios from the trials. */
export function summarizeReport(r: BenchReport): void {
  for (const side of ['sluice', 'nats'] as const) {
    const trials = r.trials.filter((t) => t.side === side);
    if (trials.length > 0) r.sides[side] = sideStats(trials);
  }
  const sl = r.sides.sluice;
  const na = r.sides.nats;
  if (sl && na) {
    r.vsNats = {
      msgPerSec: sl.msgPerSec.median / na.msgPerSec.median,
      publishP50: sl.publishP50Ms.median / na.publishP50Ms.median,
      publishP99: sl.publishP99Ms.median / na.publishP99Ms.median,
      endToEndP99: sl.endToEndP99Ms.median / na.endToEndP99Ms.median,
    };
  }
  // The bound is the plain write + fdatasync; O_DIRECT rows are context.
  const best = Math.max(0, ...r.disk.filter((d) => !d.direct).map((d) => d.msgPerSec));
  // Only a max-rate workload says how close to the disk's bound Sluice gets.
  if (sl && r.workload.producerRate === 0 && best > 0 && sl.bytesWrittenPerPayloadByte.median > 0) {
    const bound = best / sl.bytesWrittenPerPayloadByte.median;
    r.vsDisk = {
      boundMsgPerSec: bound,
      bytesWrittenPerPayloadByte: sl.bytesWrittenPerPayloadByte.median,
      fractionOfBound: sl.msgPerSec.median / bound,
    };
  }
}

const int = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '–');
const dec = (n: number, d = 2) => (Number.isFinite(n) ? n.toFixed(d) : '–');
const range = (s: Stat, f: (n: number) => string) => `${f(s.median)} (${f(s.min)}–${f(s.max)})`;

export function toMarkdown(r: BenchReport): string {
  const w = r.workload;
  const out: string[] = [];
  out.push(`# ${w.name}`, '');
  if (w.description) out.push(w.description, '');
  out.push(
    `- started ${r.startedAt}; machine: ${r.machine.cores} × ${r.machine.cpus}, ${r.machine.memoryGiB} GiB, ` +
      `${r.machine.kernel}, Node ${r.machine.node}, disk ${r.machine.disk}`,
    `- topology ${w.topology}` +
      (w.topology === 'cluster'
        ? ` (${w.bookies} bookies, ${w.brokers} broker${w.brokers > 1 ? 's' : ''}, E=${w.persistence.ensembleSize} ` +
          `Qw=${w.persistence.writeQuorum} Qa=${w.persistence.ackQuorum})`
        : '') +
      `; NATS JetStream replicas ${w.natsReplicas || 'not run'}`,
    `- ${w.topics} topic(s) × ${w.partitionsPerTopic} partition(s), ${w.messageSize}-byte messages, ` +
      `${w.producersPerTopic} producer(s)/topic at ${w.producerRate === 0 ? 'max rate' : `${w.producerRate} msg/s`}, ` +
      `${w.subscriptionsPerTopic} subscription(s) × ${w.consumerPerSubscription} consumer(s) (receiver queue ${w.consumerReceiverQueueSize || 'client default'}), ${w.durationSec} s per run` +
      (w.warmUpSec > 0 ? ` after a ${w.warmUpSec} s warm-up left out of the figures` : ''),
    '- values: median of the runs (min–max); latency in ms from the intended send time (HDR histograms)',
    '',
    '| side | runs | produce msg/s | MB/s | publish p50 | publish p99 | e2e p50 | e2e p99 | consume msg/s | bytes written / payload byte |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  );
  for (const side of ['sluice', 'nats'] as const) {
    const s = r.sides[side];
    if (!s) continue;
    out.push(
      `| ${side === 'nats' ? `NATS JetStream R${w.natsReplicas}` : `Sluice ${w.topology}`} | ${s.runs} | ` +
        `${range(s.msgPerSec, int)} | ${range(s.mbPerSec, (n) => dec(n, 1))} | ${range(s.publishP50Ms, dec)} | ` +
        `${range(s.publishP99Ms, dec)} | ${range(s.endToEndP50Ms, dec)} | ${range(s.endToEndP99Ms, dec)} | ` +
        `${range(s.consumeMsgPerSec, int)} | ${range(s.bytesWrittenPerPayloadByte, dec)} |`,
    );
  }
  out.push('');
  if (r.vsNats) {
    out.push(
      `Sluice / NATS (medians): throughput ×${dec(r.vsNats.msgPerSec)}, publish p50 ×${dec(r.vsNats.publishP50)}, ` +
        `publish p99 ×${dec(r.vsNats.publishP99)}, end-to-end p99 ×${dec(r.vsNats.endToEndP99)} ` +
        '(throughput: higher is better; latency: lower is better).',
      '',
    );
  }
  out.push('Disk bound (write + fdatasync per group, one writer):', '');
  out.push('| group | MB/s | fsync/s | msg/s at this size |', '| --- | --- | --- | --- |');
  for (const d of r.disk) {
    out.push(
      `| ${d.groupBytes / 1024} KiB${d.direct ? ' O_DIRECT' : ''} | ${dec(d.mbPerSec, 1)} | ${int(d.fsyncsPerSec)} | ${int(d.msgPerSec)} |`,
    );
  }
  out.push('');
  if (r.disk.some((d) => d.direct)) {
    out.push(
      'The bound below is the plain write + fdatasync. The O_DIRECT rows (page-aligned memory, no page-cache copy, as ' +
        'the bookie writes its direct log) show what the device itself takes, for context.',
      '',
    );
  }
  if (r.vsDisk) {
    out.push(
      `Sluice wrote ${dec(r.vsDisk.bytesWrittenPerPayloadByte)} bytes per payload byte, so this disk bounds it at ` +
        `${int(r.vsDisk.boundMsgPerSec)} msg/s; it reached ${dec(r.vsDisk.fractionOfBound * 100, 1)}% of that.`,
      '',
    );
    const direct = Math.max(0, ...r.disk.filter((d) => d.direct).map((d) => d.msgPerSec));
    if (direct > 0 && r.sides.sluice) {
      const share = (r.sides.sluice.msgPerSec.median * r.vsDisk.bytesWrittenPerPayloadByte) / direct;
      out.push(`Against the O_DIRECT row instead, that is ${dec(share * 100, 1)}%.`, '');
    }
  }
  if (r.failures.length > 0) {
    out.push('Failed runs:', '');
    for (const f of r.failures) out.push(`- ${f.side} run ${f.run}: ${f.error.split('\n')[0]}`);
    out.push('');
  }
  return out.join('\n');
}
