import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { loadWorkload, parseWorkload } from './workload.js';

const WORKLOADS = join(import.meta.dirname, '..', '..', '..', '..', 'test', 'perf', 'workloads');

test('workload - an OMB-style standalone file parses with defaults filled in', (t) => {
  const w = parseWorkload(
    [
      'name: sa-1kb',
      'topology: standalone',
      'topics: 1',
      'partitionsPerTopic: 1',
      'messageSize: 1024',
      'producersPerTopic: 2',
      'subscriptionsPerTopic: 1',
      'consumerPerSubscription: 1',
      'producerRate: 5000',
      'testDurationMinutes: 1',
    ].join('\n'),
    'sa.yaml',
  );
  t.like(w, {
    name: 'sa-1kb',
    topology: 'standalone',
    brokers: 1,
    bookies: 1,
    messageSize: 1024,
    producersPerTopic: 2,
    producerRate: 5000,
    durationSec: 60,
    natsReplicas: 1,
    consumerReceiverQueueSize: 0,
    persistence: { ensembleSize: 1, writeQuorum: 1, ackQuorum: 1 },
  });
  t.is(parseWorkload('consumerReceiverQueueSize: 10000\n', 'q.yaml').consumerReceiverQueueSize, 10_000);
  t.throws(() => parseWorkload('consumerReceiverQueueSize: -1\n', 'q.yaml'), {
    message: /consumerReceiverQueueSize must be an integer between 0 and 1000000/,
  });
});

test('workload - the cluster topology defaults to 3 bookies, E3 Qw3 Qa2 and a replicas-3 NATS stream', (t) => {
  const w = parseWorkload('topology: cluster\nbrokers: 2\ntestDurationSeconds: 30\n', 'dir/c.yaml');
  t.is(w.name, 'c');
  t.is(w.brokers, 2);
  t.is(w.bookies, 3);
  t.deepEqual(w.persistence, { ensembleSize: 3, writeQuorum: 3, ackQuorum: 2 });
  t.is(w.natsReplicas, 3);
  t.is(w.durationSec, 30);
  t.is(w.warmUpSec, 0);
});

test('workload - a warm-up is given in seconds or minutes, never both', (t) => {
  t.is(parseWorkload('warmupDurationSeconds: 5\n', 'w.yaml').warmUpSec, 5);
  t.is(parseWorkload('warmupDurationMinutes: 1\n', 'w.yaml').warmUpSec, 60);
  t.throws(() => parseWorkload('warmupDurationSeconds: -1\n', 'w.yaml'), {
    message: /warmupDurationSeconds must be a number ≥ 0/,
  });
  t.throws(() => parseWorkload('warmupDurationMinutes: 1\nwarmupDurationSeconds: 5\n', 'w.yaml'), {
    message: /give warmupDurationMinutes or warmupDurationSeconds, not both/,
  });
});

test('workload - a bad value is refused naming the file, the field and the value', (t) => {
  t.throws(() => parseWorkload('messageSize: 1kb\n', 'bad.yaml'), {
    message: 'workload bad.yaml: messageSize must be an integer between 8 and 5242880 (got "1kb")',
  });
  t.throws(() => parseWorkload('topology: mesh\n', 'bad.yaml'), {
    message: /topology must be 'standalone' or 'cluster'/,
  });
  t.throws(
    () =>
      parseWorkload(
        'topology: cluster\npersistence: {ensembleSize: 2, writeQuorum: 3, ackQuorum: 2}\n',
        'q.yaml',
      ),
    { message: /persistence must be integers with ensembleSize ≥ writeQuorum ≥ ackQuorum/ },
  );
  t.throws(() => parseWorkload('topology: cluster\nbookies: 2\n', 'b.yaml'), {
    message: /bookies must be at least persistence.ensembleSize \(3\)/,
  });
});

test('workload - typos, bad YAML and non-mappings are refused with a clear message', (t) => {
  t.throws(() => parseWorkload('messagesize: 100\n', 'typo.yaml'), {
    message: /typo.yaml: unknown setting 'messagesize'; known settings: name, /,
  });
  t.throws(() => parseWorkload('topics: [1\n', 'broken.yaml'), {
    message: /workload broken.yaml is not valid YAML/,
  });
  t.throws(() => parseWorkload('- a\n- b\n', 'list.yaml'), { message: /must be a YAML mapping/ });
  t.throws(() => parseWorkload('testDurationMinutes: 1\ntestDurationSeconds: 5\n', 'both.yaml'), {
    message: /not both/,
  });
  const dir = mkdtempSync(join(tmpdir(), 'sluice-workload-'));
  t.throws(() => loadWorkload(join(dir, 'missing.yaml')), { message: /missing.yaml cannot be read/ });
  writeFileSync(join(dir, 'ok.yaml'), 'messageSize: 100\n');
  t.is(loadWorkload(join(dir, 'ok.yaml')).messageSize, 100);
});

test('workload - every file in test/perf/workloads parses', (t) => {
  const files = readdirSync(WORKLOADS).filter((f) => f.endsWith('.yaml'));
  t.true(files.length >= 3);
  for (const f of files) {
    const w = loadWorkload(join(WORKLOADS, f));
    t.is(w.name, f.replace(/\.yaml$/, ''));
  }
});
