import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, loadPackageDefinition, type ServiceClientConstructor } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { SluiceClient } from '@sluice/client';
import { openMetadataStore } from '@sluice/metadata';
import test, { type ExecutionContext } from 'ava';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { BookieProcess, bookiePorts, testMetadataUrl } from '../support/bookie-process.js';
import { SluiceProcess, startStandalone } from '../support/cluster.js';
import { freePort, waitFor } from '../support/ports.js';

/** Prometheus text → `name{labels}` → value (labels as printed, in prom-client's order). */
async function scrape(httpPort: number): Promise<{ text: string; values: Map<string, number> }> {
  const res = await fetch(`http://127.0.0.1:${httpPort}/metrics`);
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  const text = await res.text();
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    values.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return { text, values };
}

function metric(values: Map<string, number>, key: string): number {
  const v = values.get(key);
  if (v === undefined) throw new Error(`metric ${key} is missing`);
  return v;
}

async function grpcHealth(t: ExecutionContext, address: string, service = ''): Promise<string> {
  const pkg = loadPackageDefinition(loadSync(healthProtoPath, { enums: String })) as unknown as {
    grpc: { health: { v1: { Health: ServiceClientConstructor } } };
  };
  const client = new pkg.grpc.health.v1.Health(address, credentials.createInsecure()) as unknown as {
    check(req: { service: string }, cb: (err: Error | null, res: { status: string }) => void): void;
    close(): void;
  };
  t.teardown(() => client.close());
  return new Promise((resolve, reject) =>
    client.check({ service }, (err, res) => (err ? reject(err) : resolve(res.status))),
  );
}

const status = async (httpPort: number, path: string): Promise<{ code: number; body: string }> => {
  const res = await fetch(`http://127.0.0.1:${httpPort}${path}`);
  return { code: res.status, body: await res.text() };
};

test('metrics - standalone exposes traffic, backlog, storage, latency and session metrics; probes answer', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-metrics-'));
  let sa: SluiceProcess | undefined;
  let client: SluiceClient | undefined;
  t.teardown(async () => {
    await client?.close().catch(() => undefined);
    sa?.kill('SIGKILL');
    await sa?.exited;
    await rm(dir, { recursive: true, force: true });
  });
  sa = await startStandalone(dir);
  client = new SluiceClient({ serviceUrl: sa.url });

  const N = 20;
  const ACKED = 8;
  const consumer = await client.subscribe({
    topic: 'metrics-t',
    subscription: 's',
    initialPosition: 'earliest',
  });
  // One message per batch, so backlog entries and unacknowledged messages are the same count.
  const producer = await client.createProducer({ topic: 'metrics-t', batching: { maxMessages: 1 } });
  await Promise.all(Array.from({ length: N }, (_, i) => producer.send(Buffer.from(`m-${i}`))));
  let got = 0;
  for await (const m of consumer) {
    if (got < ACKED) consumer.ack(m);
    if (++got === N) break;
  }

  const ns = 'namespace="public/default"';
  const subLabels = `{${ns},subscription="s"}`;
  // Acks reach the cursor asynchronously: wait for the gauge to settle on N - ACKED.
  await waitFor(
    async () =>
      metric(
        (await scrape(sa!.httpPort)).values,
        `sluice_broker_subscription_backlog_entries${subLabels}`,
      ) ===
      N - ACKED,
    10_000,
    'subscription backlog gauge',
  );
  const { text, values } = await scrape(sa.httpPort);
  const stats = await client.admin.topicStats('metrics-t');
  t.is(Number(stats.subscriptions.find((s) => s.name === 's')?.backlog), N - ACKED);

  t.true(metric(values, `sluice_broker_messages_in_total{${ns}}`) >= N);
  t.true(metric(values, `sluice_broker_in_bytes_total{${ns}}`) >= N * 3);
  t.true(metric(values, `sluice_broker_messages_out_total{${ns}}`) >= N);
  t.true(metric(values, `sluice_broker_out_bytes_total{${ns}}`) >= N * 3);
  t.is(metric(values, `sluice_broker_backlog_entries{${ns}}`), N - ACKED);
  t.is(metric(values, `sluice_broker_subscription_consumers${subLabels}`), 1);
  t.is(metric(values, `sluice_broker_subscription_unacked_messages${subLabels}`), N - ACKED);
  t.is(metric(values, `sluice_broker_subscriptions{${ns}}`), 1);
  t.true(metric(values, `sluice_broker_storage_bytes{${ns}}`) > 0);
  t.is(metric(values, `sluice_broker_offloaded_bytes{${ns}}`), 0);
  t.is(metric(values, 'sluice_broker_topics'), 1);
  t.is(metric(values, 'sluice_broker_producers'), 1);
  t.is(metric(values, 'sluice_broker_consumers'), 1);
  t.true(metric(values, 'sluice_broker_owned_bundles') >= 1);
  t.is(metric(values, 'sluice_broker_metadata_session_up'), 1);
  t.regex(text, /# TYPE sluice_broker_publish_latency_seconds histogram/);
  t.true(metric(values, 'sluice_broker_publish_latency_seconds_count') >= N);
  t.true(metric(values, 'sluice_broker_publish_latency_seconds_sum') > 0);
  // The ledger client and managed log report on the broker's registry.
  t.true(metric(values, 'sluice_ledger_operations_total{operation="create"}') >= 1);
  t.is(metric(values, 'sluice_ledger_ensemble_changes_total'), 0);
  t.true(metric(values, 'sluice_ledger_add_latency_seconds_count') >= N);
  t.true(metric(values, 'sluice_managed_log_appends_total') >= N);
  // The in-process bookie shares the registry.
  t.true(metric(values, 'sluice_bookie_journal_fsync_seconds_count') > 0);
  t.is(metric(values, 'sluice_bookie_metadata_session_up'), 1);
  t.is(metric(values, 'sluice_bookie_read_only'), 0);
  t.false(/sluice_broker_messages_in_total\{[^}]*topic=/.test(text), 'no per-topic series unless enabled');

  t.deepEqual(await status(sa.httpPort, '/healthz'), { code: 200, body: 'ok\n' });
  t.deepEqual(await status(sa.httpPort, '/readyz'), { code: 200, body: 'ready\n' });
  t.is(await grpcHealth(t, sa.address), 'SERVING');
});

test('metrics - a bookie exposes fsync latency, disk, state and session; a broker is ready only with enough bookies', async (t) => {
  const metadata = testMetadataUrl('metrics');
  const dir = await mkdtemp(join(tmpdir(), 'sluice-metrics-bookie-'));
  let bookie: BookieProcess | undefined;
  let broker: SluiceProcess | undefined;
  let client: SluiceClient | undefined;
  const store = await openMetadataStore(metadata);
  t.teardown(async () => {
    await client?.close().catch(() => undefined);
    await broker?.stop();
    await bookie?.stop();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  bookie = await BookieProcess.start({ metadata, dataDir: join(dir, 'bookie'), ...(await bookiePorts()) });
  t.deepEqual(await status(bookie.httpPort, '/readyz'), { code: 200, body: 'ready\n' });
  t.is((await status(bookie.httpPort, '/healthz')).code, 200);
  t.is(await grpcHealth(t, bookie.address), 'SERVING');
  const b = await scrape(bookie.httpPort);
  t.regex(b.text, /# TYPE sluice_bookie_journal_fsync_seconds histogram/);
  t.regex(
    b.text,
    /sluice_bookie_disk_usage_ratio\{dir="[^"]+"\} 0\.\d+|sluice_bookie_disk_usage_ratio\{dir="[^"]+"\} [01]/,
  );
  t.true(metric(b.values, 'sluice_bookie_disk_total_bytes') > 0);
  t.true(metric(b.values, 'sluice_bookie_disk_free_bytes') > 0);
  t.is(metric(b.values, 'sluice_bookie_read_only'), 0);
  t.is(metric(b.values, 'sluice_bookie_metadata_session_up'), 1);
  t.is(metric(b.values, 'sluice_bookie_registered'), 1);

  // One bookie: a broker whose default persistence needs one is ready.
  broker = await startBrokerWithEnsemble(metadata, 1);
  t.deepEqual(await status(broker.httpPort, '/readyz'), { code: 200, body: 'ready\n' });
  t.is(await grpcHealth(t, broker.address), 'SERVING');
  const m = await scrape(broker.httpPort);
  t.is(metric(m.values, 'sluice_broker_metadata_session_up'), 1);
  t.is(metric(m.values, 'sluice_ledger_ensemble_changes_total'), 0);

  // Readiness follows the persistence of public/default, not only the broker default.
  client = new SluiceClient({ serviceUrl: broker.url });
  await client.admin.setNamespacePolicies('public/default', {
    persistence: { ensembleSize: 2, writeQuorum: 2, ackQuorum: 2 },
  });
  const notReady = await status(broker.httpPort, '/readyz');
  t.is(notReady.code, 503);
  t.regex(notReady.body, /1 writable bookie\(s\), 2 needed/);
  await client.admin.setNamespacePolicies('public/default', {
    persistence: { ensembleSize: 1, writeQuorum: 1, ackQuorum: 1 },
  });
  t.is((await status(broker.httpPort, '/readyz')).code, 200);

  // `sluice broker` runs the autorecovery auditor: it campaigns for leadership.
  await waitFor(
    async () => (await store.listAll('autorecovery/auditor/', { keysOnly: true })).length > 0,
    10_000,
    'auditor election key',
  );
  t.pass();
});

async function startBrokerWithEnsemble(metadata: string, e: number): Promise<SluiceProcess> {
  const port = await freePort();
  return SluiceProcess.start('broker', {
    port,
    args: [`--metadata=${metadata}`, `--advertise-address=127.0.0.1:${port}`, '--session-ttl=3s'],
    env: {
      SLUICE_BROKER_ENSEMBLE_SIZE: String(e),
      SLUICE_BROKER_WRITE_QUORUM: String(e),
      SLUICE_BROKER_ACK_QUORUM: String(e),
    },
  });
}

test('admin - partitions added online carry the existing subscriptions, from their first message', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-partitions-'));
  let sa: SluiceProcess | undefined;
  let client: SluiceClient | undefined;
  t.teardown(async () => {
    await client?.close().catch(() => undefined);
    sa?.kill('SIGKILL');
    await sa?.exited;
    await rm(dir, { recursive: true, force: true });
  });
  sa = await startStandalone(dir);
  client = new SluiceClient({ serviceUrl: sa.url });
  const admin = client.admin;

  await admin.createTopic('grow', { partitions: 2 });
  await admin.createSubscription('grow', 'orders', { initialPosition: 'latest' });
  await admin.createSubscription('grow', 'audit', { initialPosition: 'latest' });
  await admin.updatePartitions('grow', 3);

  const added = 'persistent://public/default/grow-partition-2';
  t.deepEqual(await admin.listSubscriptions(added), ['audit', 'orders']);
  t.deepEqual(await admin.listSubscriptions('grow'), ['audit', 'orders']);

  // Messages sent to the new partition before any consumer attaches are not skipped.
  const producer = await client.createProducer({ topic: added, batching: { maxMessages: 1 } });
  for (let i = 0; i < 3; i++) await producer.send(Buffer.from(`new-${i}`));
  const consumer = await client.subscribe({
    topic: added,
    subscription: 'orders',
    initialPosition: 'latest',
  });
  const seen: string[] = [];
  for await (const m of consumer) {
    seen.push(m.value.toString());
    consumer.ack(m);
    if (seen.length === 3) break;
  }
  t.deepEqual(seen, ['new-0', 'new-1', 'new-2']);
  const stats = await admin.topicStats(added);
  t.is(Number(stats.subscriptions.find((s) => s.name === 'audit')?.backlog), 3);
});
