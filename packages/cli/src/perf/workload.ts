import { readFileSync } from 'node:fs';
import { InvalidArgumentError } from '@sluice/common';
import { parseDocument } from 'yaml';

/** Replication of the ledgers the benchmark writes (cluster topology). */
export interface WorkloadPersistence {
  ensembleSize: number;
  writeQuorum: number;
  ackQuorum: number;
}

/**
 * An OpenMessaging-Benchmark-style workload with the topology it runs on.
 * Field names follow OMB's workload files so they read the same.
 */
export interface Workload {
  name: string;
  description: string;
  /** standalone: one `sluice standalone`; cluster: etcd + bookies + brokers, each its own process. */
  topology: 'standalone' | 'cluster';
  brokers: number;
  bookies: number;
  persistence: WorkloadPersistence;
  topics: number;
  partitionsPerTopic: number;
  messageSize: number;
  producersPerTopic: number;
  subscriptionsPerTopic: number;
  consumerPerSubscription: number;
  /** Messages per second over all producers of a topic; 0 = as fast as possible. */
  producerRate: number;
  durationSec: number;
  /** Load before the measured duration, left out of every figure (OMB's warm-up). */
  warmUpSec: number;
  batchMaxDelayMs: number;
  /** Sends awaiting their receipt, per producer. */
  maxInFlight: number;
  /** Messages each consumer lets the broker send ahead of the application (receiverQueueSize; 0 = the client default). */
  consumerReceiverQueueSize: number;
  /** NATS JetStream stream replicas to compare against; 0 = no NATS comparison. */
  natsReplicas: number;
}

const KEYS = new Set([
  'name',
  'description',
  'topology',
  'brokers',
  'bookies',
  'persistence',
  'topics',
  'partitionsPerTopic',
  'messageSize',
  'producersPerTopic',
  'subscriptionsPerTopic',
  'consumerPerSubscription',
  'producerRate',
  'testDurationMinutes',
  'testDurationSeconds',
  'warmupDurationMinutes',
  'warmupDurationSeconds',
  'batchMaxDelayMs',
  'maxInFlight',
  'consumerReceiverQueueSize',
  'natsReplicas',
]);

/** Read and validate a workload file; every error names the file and the field. */
export function loadWorkload(path: string): Workload {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new InvalidArgumentError(`workload ${path} cannot be read: ${(err as Error).message}`);
  }
  return parseWorkload(text, path);
}

export function parseWorkload(text: string, source: string): Workload {
  const doc = parseDocument(text, { prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new InvalidArgumentError(`workload ${source} is not valid YAML: ${doc.errors[0]!.message}`);
  }
  const raw: unknown = doc.toJS();
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new InvalidArgumentError(
      `workload ${source} must be a YAML mapping of settings (see test/perf/workloads/)`,
    );
  }
  const fail = (field: string, what: string, value: unknown): never => {
    throw new InvalidArgumentError(
      `workload ${source}: ${field} must be ${what} (got ${JSON.stringify(value)})`,
    );
  };
  const obj = raw as Record<string, unknown>;
  for (const key of Object.keys(obj)) {
    if (!KEYS.has(key)) {
      throw new InvalidArgumentError(
        `workload ${source}: unknown setting '${key}'; known settings: ${[...KEYS].join(', ')}`,
      );
    }
  }
  const int = (
    field: string,
    dflt: number | undefined,
    min: number,
    max = Number.MAX_SAFE_INTEGER,
  ): number => {
    const v = obj[field] ?? dflt;
    if (v === undefined) return fail(field, `an integer between ${min} and ${max}`, v);
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      return fail(field, `an integer between ${min} and ${max}`, v);
    }
    return v;
  };
  const num = (field: string, dflt: number, min: number): number => {
    const v = obj[field] ?? dflt;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min) return fail(field, `a number ≥ ${min}`, v);
    return v;
  };

  const name = obj.name ?? source.replace(/^.*\//, '').replace(/\.ya?ml$/, '');
  if (typeof name !== 'string' || !/^[A-Za-z0-9._-]+$/.test(name)) {
    fail('name', 'letters, digits, dot, dash or underscore', name);
  }
  const description = obj.description ?? '';
  if (typeof description !== 'string') fail('description', 'a string', description);
  const rawTopology = obj.topology ?? 'standalone';
  if (rawTopology !== 'standalone' && rawTopology !== 'cluster') {
    fail('topology', "'standalone' or 'cluster'", rawTopology);
  }
  const topology = rawTopology as Workload['topology'];
  const cluster = topology === 'cluster';

  const p = obj.persistence ?? (cluster ? { ensembleSize: 3, writeQuorum: 3, ackQuorum: 2 } : undefined);
  let persistence: WorkloadPersistence = { ensembleSize: 1, writeQuorum: 1, ackQuorum: 1 };
  if (p !== undefined) {
    if (!cluster) fail('persistence', 'absent for the standalone topology (it has one bookie)', p);
    if (p === null || typeof p !== 'object')
      fail('persistence', 'a mapping {ensembleSize, writeQuorum, ackQuorum}', p);
    const q = p as Record<string, unknown>;
    const [e, w, a] = [q.ensembleSize, q.writeQuorum, q.ackQuorum];
    const ok = [e, w, a].every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 1);
    if (!ok || !((e as number) >= (w as number) && (w as number) >= (a as number))) {
      fail('persistence', 'integers with ensembleSize ≥ writeQuorum ≥ ackQuorum ≥ 1', p);
    }
    persistence = { ensembleSize: e as number, writeQuorum: w as number, ackQuorum: a as number };
  }

  const brokers = cluster ? int('brokers', 1, 1, 2) : int('brokers', 1, 1, 1);
  const bookies = cluster ? int('bookies', 3, 1, 9) : int('bookies', 1, 1, 1);
  if (bookies < persistence.ensembleSize) {
    fail('bookies', `at least persistence.ensembleSize (${persistence.ensembleSize})`, bookies);
  }

  /** A duration given as `<prefix>Minutes` or `<prefix>Seconds` (not both), in seconds. */
  const seconds = (prefix: string, dfltSec: number): number => {
    const [min, sec] = [`${prefix}Minutes`, `${prefix}Seconds`];
    if (obj[min] !== undefined && obj[sec] !== undefined) {
      throw new InvalidArgumentError(`workload ${source}: give ${min} or ${sec}, not both`);
    }
    return obj[min] !== undefined ? num(min, 0, 0) * 60 : num(sec, dfltSec, 0);
  };
  const durationSec = seconds('testDuration', 60);
  if (!(durationSec > 0)) fail('testDurationSeconds', 'a positive duration', durationSec);
  const warmUpSec = seconds('warmupDuration', 0);

  return {
    name: name as string,
    description: description as string,
    topology,
    brokers,
    bookies,
    persistence,
    topics: int('topics', 1, 1, 100),
    partitionsPerTopic: int('partitionsPerTopic', 1, 1, 1000),
    messageSize: int('messageSize', 1024, 8, 5 * 1024 * 1024),
    producersPerTopic: int('producersPerTopic', 1, 1, 64),
    subscriptionsPerTopic: int('subscriptionsPerTopic', 1, 0, 16),
    consumerPerSubscription: int('consumerPerSubscription', 1, 1, 64),
    producerRate: num('producerRate', 0, 0),
    durationSec,
    warmUpSec,
    batchMaxDelayMs: num('batchMaxDelayMs', 1, 0),
    maxInFlight: int('maxInFlight', 5000, 1, 1_000_000),
    consumerReceiverQueueSize: int('consumerReceiverQueueSize', 0, 0, 1_000_000),
    natsReplicas: int('natsReplicas', cluster ? 3 : 1, 0, 5),
  };
}
