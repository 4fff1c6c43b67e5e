import { join } from 'node:path';
import { SluiceClient } from '@sluice/client';
import type { LatencySummary, PerfSummary, Workload } from '../../../packages/cli/src/perf/index.js';
import { startNats } from './nats-topology.js';
import { Proc } from './processes.js';
import { REPO, SLUICE_BIN, startSluice } from './sluice-topology.js';

export type Side = 'sluice' | 'nats';

/** One run of one side: the producers' and consumers' summaries folded into one row. */
export interface TrialResult {
  side: Side;
  run: number;
  msgPerSec: number;
  mbPerSec: number;
  publishLatencyMs: LatencySummary;
  endToEndLatencyMs: LatencySummary | null;
  /** Delivery rate of one subscription, summed over topics and consumers (null without subscriptions). */
  consumeMsgPerSec: number | null;
  sent: number;
  published: number;
  errors: number;
  received: number;
  /** Storage bytes the server processes wrote per payload byte published. */
  bytesWrittenPerPayloadByte: number;
  firstError?: string;
}

const NATS_PERF = join(REPO, 'test', 'perf', 'nats-perf.ts');
/** The consumers stop this long after their last message. */
const CONSUMER_IDLE_SEC = 5;

/** Worst value of each percentile over several processes' summaries (exact when there is one). */
export function worstOf(summaries: LatencySummary[]): LatencySummary {
  const pick = (k: keyof LatencySummary) => Math.max(0, ...summaries.map((s) => s[k]));
  return {
    p50: pick('p50'),
    p95: pick('p95'),
    p99: pick('p99'),
    p999: pick('p999'),
    max: pick('max'),
    count: summaries.reduce((n, s) => n + s.count, 0),
  };
}

interface LoadPlan {
  topics: string[];
  consumer(topic: string, topicIndex: number, sub: number, idx: number): Proc;
  producer(topic: string, topicIndex: number): Proc;
  writeBytes(): number;
}

async function runLoad(w: Workload, side: Side, run: number, plan: LoadPlan): Promise<TrialResult> {
  const consumers: Proc[] = [];
  const producers: Proc[] = [];
  try {
    plan.topics.forEach((topic, t) => {
      for (let s = 0; s < w.subscriptionsPerTopic; s++) {
        for (let c = 0; c < w.consumerPerSubscription; c++) consumers.push(plan.consumer(topic, t, s, c));
      }
    });
    await Promise.all(consumers.map((c) => c.waitForStderr('subscribed', 60_000)));
    const before = plan.writeBytes();
    plan.topics.forEach((topic, t) => {
      producers.push(plan.producer(topic, t));
    });
    const produced = await Promise.all(producers.map((p) => p.json<PerfSummary>()));
    const written = plan.writeBytes() - before;
    const consumed = await Promise.all(consumers.map((c) => c.json<PerfSummary>()));
    const published = produced.reduce((n, p) => n + (p.counts.published ?? 0), 0);
    // The servers wrote the warm-up's messages too.
    const warmUp = produced.reduce((n, p) => n + (p.counts.warmUp ?? 0), 0);
    const e2e = consumed.map((c) => c.endToEndLatencyMs).filter((l): l is LatencySummary => l !== null);
    const firstError = produced.find((p) => p.firstError !== undefined)?.firstError;
    return {
      side,
      run,
      msgPerSec: produced.reduce((n, p) => n + p.msgPerSec, 0),
      mbPerSec: produced.reduce((n, p) => n + p.mbPerSec, 0),
      publishLatencyMs: worstOf(produced.map((p) => p.publishLatencyMs!)),
      endToEndLatencyMs: e2e.length > 0 ? worstOf(e2e) : null,
      consumeMsgPerSec:
        consumed.length > 0 ? consumed.reduce((n, c) => n + c.msgPerSec, 0) / w.subscriptionsPerTopic : null,
      sent: produced.reduce((n, p) => n + (p.counts.sent ?? 0), 0),
      published,
      errors: produced.reduce((n, p) => n + (p.counts.errors ?? 0), 0),
      received: consumed.reduce((n, c) => n + (c.counts.received ?? 0), 0),
      bytesWrittenPerPayloadByte: published > 0 ? written / ((published + warmUp) * w.messageSize) : 0,
      ...(firstError !== undefined ? { firstError } : {}),
    };
  } finally {
    await Promise.all([...producers, ...consumers].map((p) => p.stop()));
  }
}

const produceArgs = (w: Workload) => [
  `--rate=${w.producerRate}`,
  `--size=${w.messageSize}`,
  `--producers=${w.producersPerTopic}`,
  `--duration=${w.durationSec}`,
  `--warm-up=${w.warmUpSec}`,
  `--max-in-flight=${w.maxInFlight}`,
];

const consumeTimeouts = (w: Workload) => [
  `--idle-timeout=${CONSUMER_IDLE_SEC}`,
  `--duration=${w.warmUpSec + w.durationSec + 300}`,
  `--warm-up=${w.warmUpSec}`,
];

/** Create the bench tenant, namespace (with the workload's persistence on a cluster) and topics; returns the topic names. */
export async function createBenchTopics(w: Workload, serviceUrl: string): Promise<string[]> {
  const namespace = 'bench/perf';
  const client = new SluiceClient({ serviceUrl });
  const topics = Array.from({ length: w.topics }, (_, i) => `${namespace}/t${i}`);
  try {
    await client.admin.createTenant('bench', { ifNotExists: true });
    await client.admin.createNamespace(namespace, {
      ifNotExists: true,
      ...(w.topology === 'cluster' ? { policies: { persistence: w.persistence } } : {}),
    });
    if (w.partitionsPerTopic > 1) {
      for (const t of topics) await client.admin.createTopic(t, { partitions: w.partitionsPerTopic });
    }
  } finally {
    await client.close();
  }
  return topics;
}

export async function runSluiceTrial(w: Workload, run: number, dataDir: string): Promise<TrialResult> {
  const topology = await startSluice(w, dataDir);
  try {
    const topics = await createBenchTopics(w, topology.serviceUrl);
    const url = `--url=${topology.serviceUrl}`;
    // BENCH_CLIENT_NODE_ARGS (e.g. `--cpu-prof --cpu-prof-dir=DIR`) goes to the perf producer and consumer processes.
    const nodeArgs = process.env.BENCH_CLIENT_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
    const node = (name: string, args: string[]) =>
      new Proc(name, process.execPath, [...nodeArgs, SLUICE_BIN, ...args]);
    return await runLoad(w, 'sluice', run, {
      topics,
      consumer: (topic, t, s, c) =>
        node(`sluice perf consume t${t} sub-${s} #${c}`, [
          'perf',
          'consume',
          topic,
          `--subscription=sub-${s}`,
          `--type=${w.consumerPerSubscription > 1 ? 'shared' : 'exclusive'}`,
          ...(w.consumerReceiverQueueSize > 0
            ? [`--receiver-queue-size=${w.consumerReceiverQueueSize}`]
            : []),
          '--json',
          ...consumeTimeouts(w),
          url,
        ]),
      producer: (topic, t) =>
        node(`sluice perf produce t${t}`, [
          'perf',
          'produce',
          topic,
          ...produceArgs(w),
          `--batch-max-delay-ms=${w.batchMaxDelayMs}`,
          '--json',
          url,
        ]),
      writeBytes: () => topology.writeBytes(),
    });
  } finally {
    await topology.stop();
  }
}

export async function runNatsTrial(w: Workload, run: number, dataDir: string): Promise<TrialResult> {
  const topology = await startNats(w.natsReplicas, w.topics, dataDir);
  try {
    const tsx = (name: string, args: string[]) =>
      new Proc(name, process.execPath, ['--import=tsx', NATS_PERF, ...args, `--servers=${topology.servers}`]);
    return await runLoad(w, 'nats', run, {
      topics: topology.streams.map((s) => s.stream),
      consumer: (_topic, t, s, c) => {
        const { stream, subject } = topology.streams[t]!;
        return tsx(`nats consume t${t} sub-${s} #${c}`, [
          'consume',
          `--stream=${stream}`,
          `--subject=${subject}`,
          `--durable=sub-${s}`,
          `--idle-timeout=${CONSUMER_IDLE_SEC}`,
          `--max-duration=${w.warmUpSec + w.durationSec + 300}`,
          `--warm-up=${w.warmUpSec}`,
        ]);
      },
      producer: (_topic, t) => {
        const { stream, subject } = topology.streams[t]!;
        return tsx(`nats produce t${t}`, [
          'produce',
          `--stream=${stream}`,
          `--subject=${subject}`,
          ...produceArgs(w),
        ]);
      },
      writeBytes: () => topology.writeBytes(),
    });
  } finally {
    await topology.stop();
  }
}
