import { crc32c } from '@sluice/common';
import test from 'ava';
import type { MemoryBookie } from './memory-bookie.js';
import { MemoryCluster } from './testing/memory-cluster.js';

const payload = (i: number) => Buffer.alloc(10 + ((i * 37) % 200), `entry-${i}-`);

function rangeReads(c: MemoryCluster): number {
  return c.bookies.reduce((n, b) => n + b.received.readRange, 0);
}

test('ledger recovery - closes at the length stored with the last entry without reading the ledger', async (t) => {
  const c = await MemoryCluster.start(3);
  t.teardown(() => c.stop());
  const w = await c.client().createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 2 });
  const sizes: number[] = [];
  for (let i = 0; i < 40; i++) {
    await w.addEntry(payload(i));
    sizes.push(payload(i).length);
  }
  const before = rangeReads(c);
  const r = await c.client().openLedger(w.ledgerId, { recover: true });
  t.is(r.metadata.state, 'CLOSED');
  t.is(r.metadata.lastEntryId, 39);
  t.is(
    r.metadata.length,
    sizes.reduce((a, b) => a + b, 0),
  );
  t.is(rangeReads(c) - before, 0, 'no entry before the recovered tail was read');
});

test('ledger recovery - entries stored without a ledger length are added up instead', async (t) => {
  const c = await MemoryCluster.start(3);
  t.teardown(() => c.stop());
  const w = await c.client().createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 2 });
  // A writer that predates ledger_length: every copy carries 0.
  let total = 0;
  for (let i = 0; i < 12; i++) {
    const p = payload(i);
    total += p.length;
    const entry = {
      ledgerId: w.ledgerId,
      entryId: i,
      lac: i - 1,
      payload: p,
      crc32c: crc32c(p),
      ledgerLength: 0,
    };
    for (const b of c.bookies) t.is((await b.add(entry)).status, 'OK');
  }
  const before = rangeReads(c);
  const r = await c.client().openLedger(w.ledgerId, { recover: true });
  t.is(r.metadata.lastEntryId, 11);
  t.is(r.metadata.length, total);
  t.true(rangeReads(c) - before > 0, 'the fallback read the entries');
});

test("ledger recovery - a ledger upgraded mid-way closes at the last entry's stored length", async (t) => {
  const c = await MemoryCluster.start(3);
  t.teardown(() => c.stop());
  const w = await c.client().createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 2 });
  // Entries 0-2 carry no length (written before an upgrade); entry 3 carries the full count.
  let total = 0;
  for (let i = 0; i < 4; i++) {
    const p = payload(i);
    total += p.length;
    const ledgerLength = i === 3 ? total : 0;
    const entry = {
      ledgerId: w.ledgerId,
      entryId: i,
      lac: i - 1,
      payload: p,
      crc32c: crc32c(p),
      ledgerLength,
    };
    for (const b of c.bookies) t.is((await b.add(entry)).status, 'OK');
  }
  const before = rangeReads(c);
  const r = await c.client().openLedger(w.ledgerId, { recover: true });
  t.is(r.metadata.lastEntryId, 3);
  t.is(r.metadata.length, total);
  t.is(rangeReads(c) - before, 0);
});

test('ledger recovery - a write-set bookie gone for good is replaced when fewer than Qa copies exist', async (t) => {
  const c = await MemoryCluster.start(4);
  t.teardown(() => c.stop());
  const w = await c.client().createLedger({ ensembleSize: 3, writeQuorum: 3, ackQuorum: 3 });
  for (let i = 0; i < 5; i++) await w.addEntry(payload(i));
  const ensemble = (await c.client().openLedger(w.ledgerId)).metadata.segments[0]!.bookies;
  const member = (id: string) => c.bookies.find((b) => b.bookieId === id)!;
  const [a, b, gone] = ensemble.map(member) as [MemoryBookie, MemoryBookie, MemoryBookie];
  const spare = c.bookies.find((x) => !ensemble.includes(x.bookieId))!;
  // The writer's last add reached two of its three bookies; then the third died.
  const p = payload(5);
  let length = 0;
  for (let i = 0; i <= 5; i++) length += payload(i).length;
  const tail = {
    ledgerId: w.ledgerId,
    entryId: 5,
    lac: 4,
    payload: p,
    crc32c: crc32c(p),
    ledgerLength: length,
  };
  for (const x of [a, b]) t.is((await x.add(tail)).status, 'OK');
  gone.crash();

  const r = await c.client({ recoveryTimeoutMs: 20_000 }).openLedger(w.ledgerId, { recover: true });
  t.is(r.metadata.state, 'CLOSED');
  t.is(r.metadata.lastEntryId, 5, 'the entry found on two bookies is kept');
  t.is(r.metadata.length, length);
  t.deepEqual(
    r.metadata.segments.map((s) => s.firstEntryId),
    [0, 5],
  );
  t.deepEqual(
    r.metadata.segments[1]!.bookies,
    ensemble.map((id) => (id === gone.bookieId ? spare.bookieId : id)),
    'only the dead bookie is replaced, from the tail entry on',
  );
  t.deepEqual(spare.storedEntries(w.ledgerId), [5]);
  const entries = await (await c.client().openLedger(w.ledgerId)).read(0, 5);
  t.deepEqual(
    entries.map((e) => e.payload),
    Array.from({ length: 6 }, (_, i) => payload(i)),
  );
});
