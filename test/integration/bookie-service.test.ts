import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, loadPackageDefinition, type ServiceClientConstructor } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { Bookie } from '@sluice/bookie';
import { openMetadataStore } from '@sluice/metadata';
import test from 'ava';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import {
  addAll,
  bookieClient,
  readEntry,
  testEntry,
  testMetadataUrl,
  unary,
} from '../support/bookie-process.js';
import { waitFor } from '../support/ports.js';

async function startBookie(
  t: { teardown: (fn: () => Promise<void>) => void },
  config: Record<string, unknown> = {},
) {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-bookie-'));
  const metadata = testMetadataUrl('bookie-svc');
  const bookie = new Bookie({
    config: {
      metadata,
      dataDir: dir,
      port: 0,
      httpPort: 0,
      bindHost: '127.0.0.1',
      advertiseAddress: '127.0.0.1:1',
      ...config,
    },
  });
  await bookie.start();
  t.teardown(async () => {
    await bookie.stop();
    await rm(dir, { recursive: true, force: true });
  });
  const client = bookieClient(`127.0.0.1:${bookie.port}`);
  t.teardown(async () => client.close());
  return { bookie, client, metadata };
}

test('bookie service - bad input gets a clear per-entry status and the stream lives on', async (t) => {
  const { bookie, client } = await startBookie(t, { maxEntryBytes: 64 * 1024 });
  const good = testEntry(30, 0);
  const results = await addAll(client, [
    {
      entries: [
        { ...testEntry(30, 0), entryId: -3 },
        { ...testEntry(30, 1), entryId: 2 ** 62 },
        { ...testEntry(30, 2), crc32c: 42 },
        testEntry(30, 3, 65 * 1024),
        { ...testEntry(30, 4), ledgerId: -1 },
      ],
    },
    { entries: [good] },
  ]);
  t.is(results.length, 6);
  const bad = results.filter((r) => r.status === 'ENTRY_STATUS_INVALID');
  t.is(bad.length, 5);
  t.true(bad.some((r) => /CRC32C/.test(r.message)));
  t.true(bad.some((r) => /max entry size/.test(r.message)));
  t.true(bad.some((r) => /entry id .* is invalid/.test(r.message)));
  t.like(
    results.find((r) => r.status === 'ENTRY_STATUS_OK'),
    { ledgerId: 30, entryId: 0 },
  );

  const unknown = await readEntry(client, 999, 0);
  t.is(unknown.status, 'ENTRY_STATUS_NO_LEDGER');
  t.regex(unknown.message, /unknown to this bookie/);
  t.like(await unary(client.readLac.bind(client), { ledgerId: 999, fence: false }), {
    status: 'ENTRY_STATUS_NO_LEDGER',
  });
  const missing = await readEntry(client, 30, 5);
  t.is(missing.status, 'ENTRY_STATUS_NO_ENTRY');
  const rangeErr = await new Promise<Error>((resolve) => {
    const s = client.readEntries({ ledgerId: 30, firstEntryId: 5, lastEntryId: 2 });
    s.on('data', () => undefined);
    s.on('error', resolve);
    s.on('end', () => resolve(new Error('no error')));
  });
  t.regex(rangeErr.message, /INVALID_ARGUMENT|last must be >= first/);
  const stopped = await new Promise<{ entries: number; stoppedBy: string; stoppedAt: number }>(
    (resolve, reject) => {
      let entries = 0;
      let last = { stoppedBy: '', stoppedAt: 0 };
      const s = client.readEntries({ ledgerId: 30, firstEntryId: 0, lastEntryId: 10 });
      s.on('data', (c) => {
        entries += c.entries.length;
        last = c;
      });
      s.on('error', reject);
      s.on('end', () => resolve({ entries, stoppedBy: last.stoppedBy, stoppedAt: last.stoppedAt }));
    },
  );
  t.deepEqual(stopped, { entries: 1, stoppedBy: 'ENTRY_STATUS_NO_ENTRY', stoppedAt: 1 });

  // The process is healthy: gRPC health, HTTP probes and metrics.
  const healthPkg = loadPackageDefinition(loadSync(healthProtoPath, { enums: String })) as unknown as {
    grpc: { health: { v1: { Health: ServiceClientConstructor } } };
  };
  const health = new healthPkg.grpc.health.v1.Health(
    `127.0.0.1:${bookie.port}`,
    credentials.createInsecure(),
  );
  t.teardown(async () => health.close());
  const h = await new Promise<{ status: string }>((resolve, reject) =>
    health.check({ service: 'sluice.v1.BookieService' }, (err: Error | null, res: { status: string }) =>
      err ? reject(err) : resolve(res),
    ),
  );
  t.is(h.status, 'SERVING');
  t.is((await fetch(`http://127.0.0.1:${bookie.httpPort}/healthz`)).status, 200);
  t.is((await fetch(`http://127.0.0.1:${bookie.httpPort}/readyz`)).status, 200);
  const metrics = await (await fetch(`http://127.0.0.1:${bookie.httpPort}/metrics`)).text();
  t.regex(metrics, /sluice_bookie_adds_total\{status="INVALID"\} 5/);
  t.regex(metrics, /sluice_bookie_journal_fsync_seconds_bucket/);
});

test('bookie service - GC drops ledgers deleted from metadata and compaction keeps live entries readable', async (t) => {
  const { bookie, client, metadata } = await startBookie(t, {
    gcIntervalMs: 200,
    gcGracePeriodMs: 0,
    compactionThreshold: 0.9,
    entryLogFileBytes: 64 * 1024,
  });
  const store = await openMetadataStore(metadata);
  t.teardown(() => store.close());
  for (const id of [21, 22]) await store.put(`ledgers/${id}`, Buffer.from(JSON.stringify({ ledgerId: id })));
  const batches = Array.from({ length: 10 }, (_, b) => ({
    entries: Array.from({ length: 10 }, (_, i) => [
      testEntry(21, b * 10 + i, 2048),
      testEntry(22, b * 10 + i, 2048),
    ]).flat(),
  }));
  const results = await addAll(client, batches);
  t.true(results.every((r) => r.status === 'ENTRY_STATUS_OK'));
  await bookie.storage.checkpoint();
  const compactedBefore = (
    await bookie.registry.getSingleMetric('sluice_bookie_compacted_entry_logs_total')!.get()
  ).values[0]?.value;

  await store.delete('ledgers/21');
  await waitFor(
    async () => (await readEntry(client, 21, 0)).status === 'ENTRY_STATUS_NO_LEDGER',
    10_000,
    'GC of ledger 21',
  );
  await waitFor(
    async () =>
      ((await bookie.registry.getSingleMetric('sluice_bookie_compacted_entry_logs_total')!.get()).values[0]
        ?.value ?? 0) > (compactedBefore ?? 0),
    10_000,
    'compaction',
  );
  for (let i = 0; i < 100; i++) {
    const r = await readEntry(client, 22, i);
    t.true(
      r.status === 'ENTRY_STATUS_OK' && r.entry?.payload.equals(testEntry(22, i, 2048).payload),
      `22:${i}`,
    );
  }
});

test('bookie service - every read returns the ledger length the writer stored with the entry', async (t) => {
  const { bookie, client } = await startBookie(t);
  const size = 1000;
  const entries = Array.from({ length: 6 }, (_, i) => ({
    ...testEntry(60, i, size),
    ledgerLength: (i + 1) * size,
  }));
  const results = await addAll(client, [{ entries }]);
  t.true(results.every((r) => r.status === 'ENTRY_STATUS_OK'));
  t.is((await readEntry(client, 60, 2)).entry?.ledgerLength, 3000, 'from the write cache');
  await bookie.storage.checkpoint();
  t.is((await readEntry(client, 60, 3)).entry?.ledgerLength, 4000, 'from the entry log');
  const ranged = await new Promise<number[]>((resolve, reject) => {
    const lengths: number[] = [];
    const s = client.readEntries({ ledgerId: 60, firstEntryId: 0, lastEntryId: 5 });
    s.on('data', (c: { entries: { ledgerLength: number }[] }) => {
      for (const e of c.entries) lengths.push(e.ledgerLength);
    });
    s.on('error', reject);
    s.on('end', () => resolve(lengths));
  });
  t.deepEqual(ranged, [1000, 2000, 3000, 4000, 5000, 6000]);
  // Recovery's question: fence, read the last entry, close the ledger at its length.
  const last = await readEntry(client, 60, -1, true);
  t.like(last, { status: 'ENTRY_STATUS_OK', entry: { entryId: 5, ledgerLength: 6000 } });
});
