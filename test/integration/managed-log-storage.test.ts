import { type FencedError, type LedgerId, NotFoundError } from '@sluice/common';
import {
  type BookKeeperClient,
  createLedgerClient,
  GrpcBookieClientPool,
  MetadataBookieDirectory,
} from '@sluice/ledger';
import { CUSTOM_LOG, LedgerListStore, ManagedLogFactory, referencedLedgers } from '@sluice/managed-log';
import { type MetadataStore, openMetadataStore } from '@sluice/metadata';
import { openOffloader } from '@sluice/offload';
import test from 'ava';
import {
  BookieCluster,
  payloadOf,
  S3_ENV,
  s3OffloadUrl,
  uniqueMetadataUrl,
  Worker,
} from '../support/managed-log-cluster.js';
import { waitFor } from '../support/ports.js';

Object.assign(process.env, S3_ENV);

let cluster: BookieCluster;
let metadataUrl: string;
let metadata: MetadataStore;
let ledgers: BookKeeperClient;
const workers: Worker[] = [];
const factories: ManagedLogFactory[] = [];

test.before(async () => {
  metadataUrl = uniqueMetadataUrl();
  cluster = await BookieCluster.start(metadataUrl, 3);
  metadata = await openMetadataStore(metadataUrl);
  ledgers = createLedgerClient({ metadata });
});

test.after.always(async () => {
  for (const w of workers) await w.kill();
  for (const f of factories) await f.close().catch(() => undefined);
  await ledgers?.close();
  await metadata?.close();
  await cluster?.stop();
});

function worker(command: string, args: Record<string, unknown>): Worker {
  const w = Worker.start(command, { metadata: metadataUrl, ...args });
  workers.push(w);
  return w;
}

function factory(): ManagedLogFactory {
  const f = new ManagedLogFactory({
    metadata,
    ledgers: createLedgerClient({ metadata }),
    defaults: { ensembleSize: 2, writeQuorum: 2, ackQuorum: 2, minLedgerAgeMs: 0 },
  });
  factories.push(f);
  return f;
}

test('managed log - 10k entries across ledgers, offloaded to S3, read back byte-identical from a fresh process', async (t) => {
  const offload = s3OffloadUrl();
  const log = 'it/ns/offload-10k';
  const config = { maxEntriesPerLedger: 700, offloadDeletionLagMs: 0 };
  const written = await worker('write', { log, count: 10_000, config }).waitEvent('written');
  t.true((written.ledgers as number) >= 14, `${written.ledgers} ledgers`);
  const off = await worker('offload', { log, offload, config }).waitEvent('offloaded');
  t.true((off.ledgers as number) >= 14);
  const verified = await worker('verify', { log, offload, config }).waitEvent('verified');
  t.is(verified.count, 10_000);
  t.is(verified.mismatches, 0);
  t.is(verified.offloaded, verified.bookieDeleted, 'every offloaded ledger lost its bookie copy');
  t.true((verified.offloaded as number) >= 14);
  const { list } = (await new LedgerListStore(metadata, log).read())!;
  for (const rec of list.ledgers.filter((l) => l.bookieDeleted)) {
    t.is(await ledgers.getLedgerMetadata(rec.ledgerId), undefined, `bookie copy of ${rec.ledgerId} deleted`);
  }
});

test('managed log - kill -9 mid-offload: no partial object is referenced and the retry completes', async (t) => {
  const offload = s3OffloadUrl();
  const log = 'it/ns/offload-kill';
  const config = { maxEntriesPerLedger: 1000, offloadDeletionLagMs: 0 };
  await worker('write', { log, count: 8000, config }).waitEvent('written');
  const store = new LedgerListStore(metadata, log);
  const w = worker('offload', { log, offload, config });
  let pendingSeen = false;
  await waitFor(
    async () => {
      const cur = await store.read();
      pendingSeen = cur!.list.ledgers.some((l) => l.offload?.state === 'pending');
      const complete = cur!.list.ledgers.filter((l) => l.offload?.state === 'complete').length;
      return pendingSeen && complete >= 1;
    },
    60_000,
    'an offload in progress',
  );
  await w.kill();
  t.true(pendingSeen);
  const s3 = openOffloader(offload);
  t.teardown(() => s3.close());
  const after = (await store.read())!.list;
  for (const rec of after.ledgers.filter((l) => l.offload?.state === 'complete')) {
    const reader = await s3.openReader(rec.ledgerId, rec.offload!.uuid);
    t.is(reader.lastEntryId, rec.entries - 1, `complete offload of ${rec.ledgerId} is whole`);
    await reader.close();
  }
  const retry = worker('offload', { log, offload, config });
  const retried = await retry.waitEvent('offloaded');
  t.true((retried.ledgers as number) >= 1);
  // The worker still closes the log after reporting (which updates the list): judge the end state.
  await retry.done();
  const final = (await store.read())!.list;
  t.deepEqual(final.trash, []);
  const sealed = final.ledgers.filter((l) => l.sealed && l.entries > 0);
  t.true(sealed.every((l) => l.offload?.state === 'complete'));
  const referenced = new Set(sealed.map((l) => l.offload!.uuid));
  const objects = await s3.list();
  t.true(
    objects.every((o) => referenced.has(o.uuid)),
    `objects of crashed attempts were deleted: ${JSON.stringify(objects.filter((o) => !referenced.has(o.uuid)))}`,
  );
  const verified = await worker('verify', { log, offload, config }).waitEvent('verified');
  t.is(verified.count, 8000);
  t.is(verified.mismatches, 0);
});

test('managed log - a cursor with 100k scattered acks restores exactly after kill -9', async (t) => {
  const log = 'it/ns/cursor-100k';
  const count = 150_000;
  const acks = 100_000;
  const config = { maxEntriesPerLedger: 50_000, maxBytesPerLedger: 1 << 30 };
  await worker('write', { log, count, acks, config }).waitEvent('written', 170_000);
  const w = worker('ack', { log, count, acks, config });
  const flushed = await w.waitEvent('flushed');
  await w.kill();
  t.true((flushed.ranges as number) > 20_000, `${flushed.ranges} ack ranges`);
  const checked = await worker('check-acks', { log, count, acks, config }).waitEvent('checked');
  t.is(checked.entries, count);
  t.is(checked.mismatches, 0);
  t.is(checked.ranges, flushed.ranges);
  t.is(checked.backlog, count - acks);
});

test('managed log - rollover under load loses nothing and a second opener fences the first', async (t) => {
  const name = 'it/ns/rollover';
  const first = await factory().open(name, { maxEntriesPerLedger: 150 });
  const appends = Array.from({ length: 2000 }, (_, i) => first.append(payloadOf(i)));
  const positions = await Promise.all(appends);
  t.true(new Set(positions.map((p) => p.ledgerId)).size >= 13);
  const second = await factory().open(name);
  const err = await t.throwsAsync<FencedError>(first.append(payloadOf(2000)));
  t.is(err?.code, 'FENCED');
  t.true(first.fenced);
  await second.append(payloadOf(2000));
  let i = 0;
  let p = second.firstPosition();
  while (p) {
    const batch = await second.read(p, 300);
    if (batch.length === 0) break;
    for (const e of batch) t.true(e.payload.equals(payloadOf(i++)), `entry ${i - 1}`);
    p = second.nextPosition(batch[batch.length - 1]!.position);
  }
  t.is(i, 2001);
});

test('managed log - retention trims and leaves no orphan ledgers', async (t) => {
  const name = 'it/ns/retention';
  const f = factory();
  const log = await f.open(name, { maxEntriesPerLedger: 50 });
  const cursor = await log.openCursor('sub', 'earliest');
  const ps = await Promise.all(Array.from({ length: 500 }, (_, i) => log.append(payloadOf(i))));
  const before = new Set(log.stats().ledgers.map((l) => l.ledgerId));
  cursor.ackCumulative(ps[499]!);
  await cursor.flush();
  const trimmed = await log.trim();
  t.true(trimmed >= 9, `${trimmed} trimmed`);
  const remaining = new Set(log.stats().ledgers.map((l) => l.ledgerId));
  const gone = [...before].filter((id) => !remaining.has(id));
  for (const id of gone) {
    await t.throwsAsync(ledgers.openLedger(id), { instanceOf: NotFoundError });
  }
  // Ledgers in metadata that name this log == ledgers its list and cursors reference.
  const named = new Set<LedgerId>();
  for (const { key } of await metadata.listAll('ledgers/', { keysOnly: true })) {
    const id = Number(key.slice(key.lastIndexOf('/') + 1));
    if (!Number.isSafeInteger(id)) continue;
    const md = await ledgers.getLedgerMetadata(id);
    if (md?.custom[CUSTOM_LOG] === name) named.add(id);
  }
  const refs = await referencedLedgers(metadata, name);
  t.deepEqual(
    [...named].sort((a, b) => a - b),
    [...refs].sort((a, b) => a - b),
  );
  t.deepEqual((await f.sweepOrphans({ log: name, graceMs: 0 })).deleted, []);
  // After the bookies' GC, no bookie holds any trimmed ledger.
  const directory = new MetadataBookieDirectory(metadata);
  const pool = new GrpcBookieClientPool(directory);
  t.teardown(() => pool.close());
  await pool.refresh();
  const bookies = await directory.list();
  t.is(bookies.length, 3);
  await waitFor(
    async () => {
      for (const b of bookies) {
        for (const id of gone) {
          const r = await pool.get(b.bookieId).readLac(id);
          if (r.status !== 'NO_LEDGER') return false;
        }
      }
      return true;
    },
    30_000,
    'bookie GC of trimmed ledgers',
  );
  t.pass();
});

test('managed log - an S3 endpoint that refuses fails offload clearly while the log keeps working', async (t) => {
  const { freePort } = await import('../support/ports.js');
  const port = await freePort();
  const offloader = openOffloader(
    `s3://nowhere/x?endpoint=${encodeURIComponent(`http://127.0.0.1:${port}`)}&region=us-east-1`,
  );
  const f = new ManagedLogFactory({
    metadata,
    ledgers: createLedgerClient({ metadata }),
    offloader,
    defaults: { ensembleSize: 2, writeQuorum: 2, ackQuorum: 2, minLedgerAgeMs: 0, maxEntriesPerLedger: 20 },
  });
  factories.push(f);
  t.teardown(() => offloader.close());
  const log = await f.open('it/ns/s3-down');
  const ps = await Promise.all(Array.from({ length: 50 }, (_, i) => log.append(payloadOf(i))));
  const err = await t.throwsAsync(log.offloadNow());
  t.true(err instanceof Error && /refused|unavailable|ECONNREFUSED|connect/i.test(err.message), err?.message);
  const more = await log.append(payloadOf(50));
  const back = await log.read(ps[0]!, 100);
  t.is(back.length, 51);
  t.true(back[50]!.payload.equals(payloadOf(50)));
  t.deepEqual(back[50]!.position, more);
  t.true(log.stats().ledgers.every((l) => !l.offloaded));
});
