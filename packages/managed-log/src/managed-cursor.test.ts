import { InvalidArgumentError, type Position } from '@sluice/common';
import test from 'ava';
import type { ManagedLog } from './api.js';
import { createRig, type Rig } from './test-harness.js';

let rig: Rig;
test.beforeEach(async () => {
  rig = await createRig();
});
test.afterEach.always(async () => {
  await rig.close();
});

async function fill(log: ManagedLog, n: number): Promise<Position[]> {
  const out: Position[] = [];
  for (let i = 0; i < n; i += 500) {
    const batch = Array.from({ length: Math.min(500, n - i) }, (_, j) =>
      log.append(Buffer.from(`m${i + j}`)),
    );
    out.push(...(await Promise.all(batch)));
  }
  return out;
}

test.serial('cursor - individual acks advance mark-delete and count backlog', async (t) => {
  const log = await rig.factory().open('t/ns/c1', { maxEntriesPerLedger: 4 });
  const c = await log.openCursor('sub', 'earliest');
  const ps = await fill(log, 10);
  t.is(c.backlog(), 10);
  c.ack(ps[1]!);
  c.ack(ps[3]!);
  t.is(c.ackRangeCount(), 2);
  t.is(c.backlog(), 8);
  c.ack(ps[0]!);
  t.deepEqual(c.markDelete, ps[1]);
  c.ack(ps[2]!);
  t.deepEqual(c.markDelete, ps[3], 'mark-delete crosses into the acked run');
  t.is(c.ackRangeCount(), 0);
  c.ackCumulative(ps[7]!);
  t.deepEqual(c.markDelete, ps[7]);
  t.is(c.backlog(), 2);
  t.deepEqual(c.firstUnackedFrom(ps[0]!), ps[8]);
  t.throws(() => c.ack({ ledgerId: ps[9]!.ledgerId, entryId: 999 }), { code: 'INVALID_ARGUMENT' } as never);
});

test.serial('cursor - batch index acks persist and complete the entry', async (t) => {
  const f = rig.factory();
  const log = await f.open('t/ns/c2');
  const c = await log.openCursor('sub', 'earliest');
  const ps = await fill(log, 3);
  c.ackBatchIndex(ps[1]!, 0, 3);
  c.ackBatchIndex(ps[1]!, 2, 3);
  t.deepEqual(c.ackedBatchIndexes(ps[1]!), [0, 2]);
  t.false(c.isAcked(ps[1]!));
  await c.flush();
  // A crash: the next owner opens without the first closing.
  const log2 = await rig.factory().open('t/ns/c2');
  const c2 = await log2.openCursor('sub');
  t.deepEqual(c2.ackedBatchIndexes(ps[1]!), [0, 2]);
  c2.ackBatchIndex(ps[1]!, 1, 3);
  t.true(c2.isAcked(ps[1]!));
  t.is(c2.ackedBatchIndexes(ps[1]!), undefined);
  t.throws(() => c2.ackBatchIndex(ps[2]!, 5, 3), { code: 'INVALID_ARGUMENT' } as never);
});

test.serial('cursor - 100k scattered acks persist and restore exactly after a crash', async (t) => {
  const log = await rig.factory().open('t/ns/c3', {
    maxEntriesPerLedger: 100_000,
    maxBytesPerLedger: 1 << 30,
  });
  const c = await log.openCursor('sub', 'earliest');
  const ps = await fill(log, 200_001);
  let seed = 7;
  const acked = new Set<number>();
  while (acked.size < 100_000) {
    seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff;
    const i = 1 + (seed % 200_000);
    if (acked.has(i)) continue;
    acked.add(i);
    c.ack(ps[i]!);
  }
  await c.flush();
  const ranges = c.ackRangeCount();
  t.true(ranges > 30_000, `${ranges} ranges`);
  const log2 = await rig.factory().open('t/ns/c3');
  const c2 = await log2.openCursor('sub');
  t.is(c2.ackRangeCount(), ranges);
  t.deepEqual(c2.markDelete, c.markDelete);
  for (let i = 0; i <= 200_000; i++) {
    if (c2.isAcked(ps[i]!) !== acked.has(i)) {
      t.fail(`entry ${i} acked=${c2.isAcked(ps[i]!)} after restore`);
      return;
    }
  }
  t.is(c2.backlog(), 200_001 - 100_000);
});

test.serial('cursor - acks are batched, not one write per ack', async (t) => {
  const log = await rig.factory().open('t/ns/c4', { ackFlushDelayMs: 50 });
  const c = await log.openCursor('sub', 'earliest');
  const ps = await fill(log, 300);
  const before = log.stats().cursors[0]!.cursorLedgerId;
  for (let i = 0; i < 300; i += 2) c.ack(ps[i]!);
  await new Promise((r) => setTimeout(r, 120));
  const id = log.stats().cursors[0]!.cursorLedgerId;
  t.is(before, undefined);
  t.not(id, undefined);
  const reader = await rig.ledgers.openLedger(id!);
  t.true(reader.lastAddConfirmed <= 1, `${reader.lastAddConfirmed + 1} records for 150 acks`);
  await reader.close();
});

test.serial('cursor - reset to a trimmed position is refused; reset moves the cursor', async (t) => {
  const log = await rig.factory().open('t/ns/c5', { maxEntriesPerLedger: 5 });
  const c = await log.openCursor('sub', 'earliest');
  const ps = await fill(log, 20);
  c.ackCumulative(ps[12]!);
  t.true((await log.trim()) >= 2);
  await t.throwsAsync(c.reset(ps[0]!), { code: 'OUT_OF_RANGE', message: /trimmed/ } as never);
  await c.reset(ps[14]!);
  t.deepEqual(c.readPosition, ps[14]);
  t.is(c.backlog(), 6);
  t.false(c.isAcked(ps[14]!));
  t.true(c.isAcked(ps[13]!));
});

test.serial('cursor - acks past the end of a sealed ledger are refused like unknown positions', async (t) => {
  const log = await rig.factory().open('t/ns/c-past-end', { maxEntriesPerLedger: 5 });
  const c = await log.openCursor('sub', 'earliest');
  const ps = await fill(log, 8);
  const sealed = ps[0]!.ledgerId;
  t.is(log.stats().ledgers[0]!.entries, 5);
  for (const entryId of [5, 7]) {
    const past = { ledgerId: sealed, entryId };
    t.throws(() => c.ack(past), { instanceOf: InvalidArgumentError, message: /is not an entry/ });
    t.throws(() => c.ackBatchIndex(past, 0, 2), { instanceOf: InvalidArgumentError });
    t.throws(() => c.ackCumulative(past), { instanceOf: InvalidArgumentError });
  }
  t.is(c.backlog(), 8, 'nothing was acknowledged');
  t.is(c.ackRangeCount(), 0);
  c.ack(ps[4]!);
  c.ackCumulative(ps[5]!);
  t.deepEqual(c.markDelete, ps[5], 'the last entry of the sealed ledger and the next one are acked');
});
