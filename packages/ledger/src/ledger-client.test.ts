import {
  ClosedError,
  FencedError,
  InvalidArgumentError,
  NotFoundError,
  OutOfRangeError,
  UnavailableError,
} from '@sluice/common';
import test from 'ava';
import type { LedgerWriter } from './api.js';
import { LedgerMetadataStore } from './ledger-metadata-store.js';
import { isEntryTooLarge, MAX_ENTRY_BYTES } from './ledger-writer.js';
import { MemoryCluster } from './testing/memory-cluster.js';

const payload = (i: number, size = 16) => Buffer.alloc(size, `entry-${i}-`);

async function writeN(w: LedgerWriter, n: number, from = 0): Promise<number[]> {
  return Promise.all(Array.from({ length: n }, (_, i) => w.addEntry(payload(from + i))));
}

test('ledger - adds are acknowledged in order and read back after close', async (t) => {
  const c = await MemoryCluster.start(3, { delayMs: 3, fsyncMs: 3 });
  t.teardown(() => c.stop());
  const client = c.client();
  const w = await client.createLedger({
    ensembleSize: 3,
    writeQuorum: 2,
    ackQuorum: 2,
    custom: { topic: 't' },
  });
  const ids = await writeN(w, 50);
  t.deepEqual(
    ids,
    Array.from({ length: 50 }, (_, i) => i),
  );
  t.is(w.lastAddConfirmed, 49);
  const closed = await w.close();
  t.is(closed.state, 'CLOSED');
  t.is(closed.lastEntryId, 49);
  t.is(closed.length, 50 * 16);
  t.deepEqual(closed.custom, { topic: 't' });
  const r = await client.openLedger(w.ledgerId);
  t.is(r.lastAddConfirmed, 49);
  const entries = await r.read(0, 49);
  t.deepEqual(
    entries.map((e) => e.payload.toString()),
    ids.map((i) => payload(i).toString()),
  );
  await t.throwsAsync(r.read(40, 50), { instanceOf: OutOfRangeError });
  // E > Qw: no bookie holds the whole range, so entries are read one by one.
  t.is(
    c.bookies.reduce((n, b) => n + b.received.readRange, 0),
    0,
  );
  await t.throwsAsync(w.addEntry(payload(99)), { instanceOf: ClosedError });
});

test('ledger - each entry lands on exactly its write set', async (t) => {
  const c = await MemoryCluster.start(4);
  t.teardown(() => c.stop());
  const w = await c.client().createLedger({ ensembleSize: 4, writeQuorum: 2, ackQuorum: 1 });
  await writeN(w, 20);
  await w.close();
  const ensemble = w.metadata.segments[0]?.bookies ?? [];
  for (let e = 0; e < 20; e++) {
    const expected = [ensemble[e % 4], ensemble[(e + 1) % 4]].sort();
    const holders = c.bookies.filter((b) => b.storedEntries(w.ledgerId).includes(e)).map((b) => b.bookieId);
    // Qa=1 acks early; the second copy may still be in flight when the entry completes, but close waited.
    t.deepEqual(holders.sort(), expected);
  }
});

test('ledger - a crashed bookie is replaced and writes continue', async (t) => {
  const c = await MemoryCluster.start(4, { delayMs: 2 });
  t.teardown(() => c.stop());
  const client = c.client();
  const w = await client.createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 2 });
  const first = await writeN(w, 20);
  const victim = w.metadata.segments[0]?.bookies[1] as string;
  const during = writeN(w, 30, 20);
  c.bookie(victim).crash();
  const second = await during;
  const third = await writeN(w, 10, 50);
  t.deepEqual(
    [...first, ...second, ...third],
    Array.from({ length: 60 }, (_, i) => i),
  );
  t.true(w.metadata.segments.length >= 2);
  t.false(w.metadata.segments.at(-1)?.bookies.includes(victim));
  await w.close();
  const stored = await new LedgerMetadataStore(c.metadata).readOrThrow(w.ledgerId);
  t.deepEqual(stored.metadata.segments, w.metadata.segments);
  const r = await client.openLedger(w.ledgerId);
  const entries = await r.read(0, 59);
  t.deepEqual(
    entries.map((e) => e.payload.toString()),
    Array.from({ length: 60 }, (_, i) => payload(i).toString()),
  );
});

test('ledger - with no replacement pending adds fail UNAVAILABLE and acknowledged entries stay readable', async (t) => {
  const c = await MemoryCluster.start(3);
  t.teardown(() => c.stop());
  const client = c.client();
  const w = await client.createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 2 });
  await writeN(w, 10);
  c.bookie('b2').crash();
  await t.throwsAsync(w.addEntry(payload(10)), { instanceOf: UnavailableError });
  await t.throwsAsync(w.addEntry(payload(11)), { instanceOf: UnavailableError });
  const r = await c.client().openLedger(w.ledgerId, { recover: true });
  t.true(r.metadata.lastEntryId >= 9);
  const entries = await r.read(0, 9);
  t.deepEqual(
    entries.map((e) => e.payload.toString()),
    Array.from({ length: 10 }, (_, i) => payload(i).toString()),
  );
});

test('ledger - recovery fences the old writer and keeps every acknowledged entry', async (t) => {
  const c = await MemoryCluster.start(3, { delayMs: 2 });
  t.teardown(() => c.stop());
  const w = await c.client().createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 2 });
  await writeN(w, 25);
  const r = await c.client().openLedger(w.ledgerId, { recover: true });
  t.is(r.metadata.state, 'CLOSED');
  t.is(r.metadata.lastEntryId, 24);
  const before = c.bookies.reduce((n, b) => n + b.received.readRange + b.received.read, 0);
  t.is((await r.read(0, 24)).length, 25);
  // E = Qw: the catch-up read is one ReadEntries range from one bookie.
  t.is(c.bookies.reduce((n, b) => n + b.received.readRange + b.received.read, 0) - before, 1);
  t.is(r.metadata.length, 25 * 16);
  await t.throwsAsync(w.addEntry(payload(25)), { instanceOf: FencedError });
  await t.throwsAsync(w.close(), { instanceOf: FencedError });
});

test('ledger - recovery re-replicates an entry found on one bookie and stops on enough NO_ENTRY answers', async (t) => {
  const c = await MemoryCluster.start(3);
  t.teardown(() => c.stop());
  const w = await c.client().createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 2 });
  await writeN(w, 5);
  // An add the old writer sent that reached only one bookie: never acknowledged, but recoverable.
  const { crc32c } = await import('@sluice/common');
  const p = payload(5);
  await c
    .bookie('b1')
    .add({ ledgerId: w.ledgerId, entryId: 5, lac: 4, payload: p, crc32c: crc32c(p), ledgerLength: 96 }, true);
  const r = await c.client().openLedger(w.ledgerId, { recover: true });
  t.is(r.metadata.lastEntryId, 5);
  t.is(r.metadata.length, 96);
  for (const b of c.bookies) t.true(b.storedEntries(w.ledgerId).includes(5), `${b.bookieId} holds entry 5`);
});

test('ledger - recovery waits while too few bookies answer NO_ENTRY', async (t) => {
  const c = await MemoryCluster.start(3);
  t.teardown(() => c.stop());
  const w = await c.client().createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 2 });
  for (let i = 0; i < 3; i++) await w.addEntry(payload(i));
  // b2 and b3 fail to answer for entry 3: b1's NO_ENTRY alone proves nothing (Qw - Qa + 1 = 2).
  const silence = (id: string) => {
    const b = c.bookie(id);
    const read = b.read.bind(b);
    b.read = (ledgerId, entryId, fence) =>
      entryId === 3 ? Promise.reject(new UnavailableError('no answer')) : read(ledgerId, entryId, fence);
    return () => {
      b.read = read;
    };
  };
  silence('b2');
  const unsilence3 = silence('b3');
  await t.throwsAsync(c.client({ recoveryTimeoutMs: 300 }).openLedger(w.ledgerId, { recover: true }), {
    instanceOf: UnavailableError,
    message: /1 of \[.*\] said it does not exist, 2 are needed/,
  });
  t.is((await c.client().getLedgerMetadata(w.ledgerId))?.state, 'IN_RECOVERY');
  unsilence3();
  const r = await c.client().openLedger(w.ledgerId, { recover: true });
  t.is(r.metadata.lastEntryId, 2);
  t.is(r.metadata.length, 48);
});

test('ledger - reads skip a corrupt replica and speculate past a slow one', async (t) => {
  const c = await MemoryCluster.start(3);
  t.teardown(() => c.stop());
  const client = c.client({ speculativeTimeoutMs: 30 });
  const w = await client.createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 3 });
  await writeN(w, 3);
  await w.close();
  const ensemble = w.metadata.segments[0]?.bookies ?? [];
  // entry 1 is read from ensemble[1] first: corrupt it there.
  c.bookie(ensemble[1] as string).corrupt(w.ledgerId, 1);
  const r = await client.openLedger(w.ledgerId);
  const [e1] = await r.read(1, 1);
  t.is(e1?.payload.toString(), payload(1).toString());
  // entry 2 is read from ensemble[2] first: make it slow.
  c.bookie(ensemble[2] as string).faults.delayMs = 2000;
  const started = Date.now();
  const [e2] = await r.read(2, 2);
  t.is(e2?.payload.toString(), payload(2).toString());
  t.true(Date.now() - started < 1000);
  c.bookie(ensemble[2] as string).faults.delayMs = 0;
});

test('ledger - a reader tails an open ledger by polling the LAC', async (t) => {
  const c = await MemoryCluster.start(3);
  t.teardown(() => c.stop());
  const client = c.client();
  const w = await client.createLedger({ ensembleSize: 3, writeQuorum: 2, ackQuorum: 2 });
  for (let i = 0; i < 5; i++) await w.addEntry(payload(i));
  const r = await client.openLedger(w.ledgerId);
  // The LAC rides on later adds, so the reader sees up to the entry before the last.
  t.is(r.lastAddConfirmed, 3);
  for (let i = 5; i < 10; i++) await w.addEntry(payload(i));
  t.is(await r.refreshLac(), 8);
  t.is((await r.read(0, 8)).length, 9);
  await w.close();
  t.is(await r.refreshLac(), 9);
  t.is(r.metadata.state, 'CLOSED');
});

test('ledger - the in-flight window back-pressures the caller', async (t) => {
  const c = await MemoryCluster.start(3, { fsyncMs: 20 });
  t.teardown(() => c.stop());
  const w = await c
    .client({ maxPendingAdds: 4 })
    .createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 2 });
  const adds = Array.from({ length: 40 }, (_, i) => w.addEntry(payload(i)));
  t.is(c.bookie('b1').received.add, 4);
  t.deepEqual(
    await Promise.all(adds),
    Array.from({ length: 40 }, (_, i) => i),
  );
});

test('ledger - delete removes the metadata and is idempotent', async (t) => {
  const c = await MemoryCluster.start(3);
  t.teardown(() => c.stop());
  const client = c.client();
  const w = await client.createLedger({ ensembleSize: 2, writeQuorum: 2, ackQuorum: 1 });
  await w.close();
  await client.deleteLedger(w.ledgerId);
  await client.deleteLedger(w.ledgerId);
  t.is(await client.getLedgerMetadata(w.ledgerId), undefined);
  await t.throwsAsync(client.openLedger(w.ledgerId), { instanceOf: NotFoundError });
});

test('ledger - ledger ids are unique across clients and reserved in blocks', async (t) => {
  const c = await MemoryCluster.start(2);
  t.teardown(() => c.stop());
  const a = c.client({ idBlockSize: 5 });
  const b = c.client({ idBlockSize: 5 });
  const ids: number[] = [];
  for (let i = 0; i < 8; i++) {
    ids.push((await a.createLedger({ ensembleSize: 2, writeQuorum: 2, ackQuorum: 1 })).ledgerId);
    ids.push((await b.createLedger({ ensembleSize: 2, writeQuorum: 2, ackQuorum: 1 })).ledgerId);
  }
  t.is(new Set(ids).size, ids.length);
  const gen = await c.metadata.get('idgen/ledgers');
  // 16 ids from blocks of 5: a and b each reserved 2 blocks.
  t.is(JSON.parse(gen?.value.toString() ?? '{}').next, 1 + 4 * 5);
});

test('ledger - invalid quorums and too few bookies are refused', async (t) => {
  const c = await MemoryCluster.start(2);
  t.teardown(() => c.stop());
  const client = c.client();
  await t.throwsAsync(client.createLedger({ ensembleSize: 2, writeQuorum: 3, ackQuorum: 2 }), {
    message: /E >= Qw >= Qa/,
  });
  await t.throwsAsync(client.createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 2 }), {
    instanceOf: UnavailableError,
  });
});

test('ledger - an entry given in parts is stored as one payload with the CRC of the whole', async (t) => {
  const c = await MemoryCluster.start(3);
  t.teardown(() => c.stop());
  const client = c.client();
  const w = await client.createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 2 });
  const parts = [Buffer.from('header:'), Buffer.alloc(0), Buffer.from('body')];
  t.is(await w.addEntry(parts), 0);
  t.is(await w.addEntry(Buffer.from('single')), 1);
  t.is(w.length, 'header:body'.length + 'single'.length);
  const closed = await w.close();
  t.is(closed.length, 17);
  const r = await client.openLedger(w.ledgerId);
  const entries = await r.read(0, 1);
  t.deepEqual(
    entries.map((e) => e.payload.toString()),
    ['header:body', 'single'],
  );
});

test('ledger - the entry size limit counts every part', async (t) => {
  const c = await MemoryCluster.start(3);
  t.teardown(() => c.stop());
  const w = await c.client().createLedger({ ensembleSize: 3, writeQuorum: 2, ackQuorum: 2 });
  const half = Buffer.alloc(3 * 1024 * 1024);
  const err = await t.throwsAsync(w.addEntry([half, half]));
  t.regex(err?.message ?? '', /exceeds the limit/);
});

test('ledger - an entry over the limit is refused alone, recognisably, and the client reports the limit', async (t) => {
  const c = await MemoryCluster.start(3);
  t.teardown(() => c.stop());
  const defaults = c.client();
  t.is(defaults.maxEntryBytes, MAX_ENTRY_BYTES);
  const client = c.client({ maxEntryBytes: 1024 });
  t.is(client.maxEntryBytes, 1024);
  const w = await client.createLedger({ ensembleSize: 3, writeQuorum: 2, ackQuorum: 2 });
  const first = w.addEntry(payload(0));
  const err = await t.throwsAsync(w.addEntry(Buffer.alloc(1025)), { instanceOf: InvalidArgumentError });
  t.true(isEntryTooLarge(err));
  t.false(isEntryTooLarge(new InvalidArgumentError('some other argument')));
  t.deepEqual(await Promise.all([first, w.addEntry(payload(1))]), [0, 1], 'the ledger keeps taking entries');
  t.is((await w.close()).lastEntryId, 1);
});
