/**
 * Catch-up benchmark (not a test): build a backlog at the producer's max
 * rate with no consumer, then read it from the earliest message on fresh
 * subscriptions, one consumer at a time, for each receiver queue size given
 * (`default`: the client's own, which on an exclusive subscription grows
 * while messages are small).
 * Runs the topology a workload file names (standalone, or etcd + bookies +
 * brokers as real processes) and prints a Markdown table.
 *
 *   npx turbo run build && node --import=tsx test/perf/catchup-bench.ts \
 *     test/perf/workloads/cluster-3bookies-1kb-max.yaml [backlog-seconds=15] [queue sizes=default,1000,10000] [runs=3]
 *
 * Consumers run interleaved (q1, q2, q1, q2, ...) against the same backlog,
 * so each size sees the same data and a similar machine.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SluiceClient } from '@sluice/client';
import { loadWorkload, type PerfSummary } from '../../packages/cli/src/perf/index.js';
import { Proc } from './harness/processes.js';
import { stat } from './harness/report.js';
import { SLUICE_BIN, startSluice } from './harness/sluice-topology.js';
import { createBenchTopics } from './harness/trial.js';

const [workloadPath, backlogArg, queuesArg, runsArg] = process.argv.slice(2);
if (!workloadPath) {
  console.error(
    'usage: catchup-bench.ts WORKLOAD.yaml [backlog-seconds] [queue sizes, comma-separated] [runs]',
  );
  process.exit(2);
}
const w = loadWorkload(workloadPath);
const backlogSec = Number(backlogArg ?? 15);
const queues = (queuesArg ?? 'default,1000,10000').split(',');
for (const q of queues) {
  if (q !== 'default' && !(Number.isInteger(Number(q)) && Number(q) > 0)) {
    console.error(`receiver queue size '${q}' must be a positive integer or 'default'`);
    process.exit(2);
  }
}
const runs = Number(runsArg ?? 3);

const root = await mkdtemp(join(process.env.BENCH_DIR ?? tmpdir(), 'sluice-catchup-'));
const topology = await startSluice(w, root);
try {
  const [topic] = await createBenchTopics({ ...w, topics: 1 }, topology.serviceUrl);
  // Every subscription the runs read with exists before the backlog does:
  // retention deletes ledgers every subscription has consumed, so one
  // created later would find only what the earlier runs had not yet
  // consumed when the log's maintenance last ran (it then reads that and
  // waits for the rest).
  const subscription = (q: string, run: number) => `catchup-q${q}-${run}`;
  const admin = new SluiceClient({ serviceUrl: topology.serviceUrl });
  try {
    for (let run = 0; run < runs; run++) {
      for (const q of queues) {
        await admin.admin.createSubscription(topic!, subscription(q, run), { initialPosition: 'earliest' });
      }
    }
  } finally {
    await admin.close();
  }
  const url = `--url=${topology.serviceUrl}`;
  const sluice = (name: string, args: string[]) =>
    new Proc(name, process.execPath, [SLUICE_BIN, ...args, url]);
  const produce = sluice('perf produce', [
    'perf',
    'produce',
    topic!,
    '--rate=0',
    `--size=${w.messageSize}`,
    `--duration=${backlogSec}`,
    `--max-in-flight=${w.maxInFlight}`,
    `--batch-max-delay-ms=${w.batchMaxDelayMs}`,
    '--json',
  ]);
  const backlog = await produce.json<PerfSummary>();
  const published = backlog.counts.published ?? 0;
  console.error(`[catchup] backlog: ${published} messages at ${Math.round(backlog.msgPerSec)} msg/s`);

  const results = new Map<string, number[]>(queues.map((q) => [q, []]));
  for (let run = 0; run < runs; run++) {
    for (const q of queues) {
      const consume = sluice(`perf consume q${q}`, [
        'perf',
        'consume',
        topic!,
        `--subscription=${subscription(q, run)}`,
        '--from=earliest',
        ...(q === 'default' ? [] : [`--receiver-queue-size=${q}`]),
        '--idle-timeout=3',
        '--json',
      ]);
      const s = await consume.json<PerfSummary>();
      if ((s.counts.received ?? 0) < published) {
        throw new Error(`consumer q${q} read ${s.counts.received} of ${published} messages`);
      }
      console.error(`[catchup] receiver queue ${q}, run ${run + 1}: ${Math.round(s.msgPerSec)} msg/s`);
      results.get(q)!.push(s.msgPerSec);
    }
  }

  console.log(`# catch-up: ${w.name}, backlog ${published} × ${w.messageSize} B\n`);
  console.log('| receiver queue | runs | catch-up msg/s (median) | range |');
  console.log('| --- | --- | --- | --- |');
  for (const [q, xs] of results) {
    const { median, min, max } = stat(xs);
    console.log(
      `| ${q} | ${xs.length} | ${Math.round(median).toLocaleString('en')} | ${Math.round(min)}–${Math.round(max)} |`,
    );
  }
} finally {
  await topology.stop();
  await rm(root, { recursive: true, force: true });
}
