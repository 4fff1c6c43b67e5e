import { ManualClock, type Position } from '@sluice/common';
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

const payload = (i: number) => Buffer.from(`hot-${i}`);

function fill(log: ManagedLog, from: number, n: number): Promise<Position[]> {
  return Promise.all(Array.from({ length: n }, (_, i) => log.append(payload(from + i))));
}

/**
 * One append at a time: bookies learn the LAC from the next add, so after
 * this every entry but the last is readable from them.
 */
async function fillInTurn(log: ManagedLog, from: number, n: number): Promise<Position[]> {
  const out: Position[] = [];
  for (let i = 0; i < n; i++) out.push(await log.append(payload(from + i)));
  return out;
}

async function eventually(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** Count the bookie range reads of every in-memory bookie. */
function countRangeReads(): { ranges: [number, number][] } {
  const seen = { ranges: [] as [number, number][] };
  for (const b of rig.bookies) {
    const original = b.readRange.bind(b);
    b.readRange = (ledgerId, first, last) => {
      seen.ranges.push([first, last]);
      return original(ledgerId, first, last);
    };
  }
  return seen;
}

test.serial(
  'rollover - a full ledger younger than the minimum age keeps taking appends, then rolls at that age',
  async (t) => {
    const clock = new ManualClock(Date.now());
    const log = await rig
      .factory({ clock })
      .open('t/ns/young', { maxEntriesPerLedger: 5, minLedgerAgeMs: 10_000 });
    // Twice the ledger's limit: none of these may wait for the minimum age.
    const positions = await fill(log, 0, 10);
    const ledgerId = positions[0]!.ledgerId;
    t.true(
      positions.every((p, i) => p.ledgerId === ledgerId && p.entryId === i),
      'all appended in order to the open ledger',
    );
    t.is(log.stats().ledgers.length, 1);
    clock.advance(10_001);
    await eventually(() => log.stats().ledgers.length === 2, 'rollover at the minimum age');
    const [sealed] = log.stats().ledgers;
    t.is(sealed!.entries, 10);
    t.false(sealed!.open);
    const [next] = await fill(log, 10, 1);
    t.not(next!.ledgerId, ledgerId, 'appends after the rollover go to the new ledger');
  },
);

test.serial(
  'reader - complete blocks of the open ledger are cached and read ahead; the growing block is read directly',
  async (t) => {
    const log = await rig
      .factory()
      .open('t/ns/tail-read', { readBatchEntries: 10, cacheBytes: 0, maxEntriesPerLedger: 1000 });
    const positions = await fillInTurn(log, 0, 36);
    const ledgerId = positions[0]!.ledgerId;
    t.is(log.stats().ledgers.length, 1, 'still one open ledger');
    const reads = countRangeReads();

    const first = await log.read({ ledgerId, entryId: 0 }, 10);
    t.deepEqual(
      first.map((e) => e.payload),
      Array.from({ length: 10 }, (_, i) => payload(i)),
    );
    // Block 1 is read ahead in the background.
    await eventually(() => reads.ranges.some(([a]) => a === 10), 'read-ahead of block 1');
    const second = await log.read({ ledgerId, entryId: 10 }, 10);
    t.deepEqual(
      second.map((e) => e.payload),
      Array.from({ length: 10 }, (_, i) => payload(10 + i)),
    );
    t.is(reads.ranges.filter(([a]) => a === 10).length, 1, 'block 1 came from the read-ahead cache');
    await eventually(() => reads.ranges.some(([a]) => a === 20), 'read-ahead of block 2 (complete)');

    // Entries 30..35 are in the growing block (30..39): read directly, never cached.
    const tail = await log.read({ ledgerId, entryId: 30 }, 5);
    t.deepEqual(
      tail.map((e) => e.payload),
      Array.from({ length: 5 }, (_, i) => payload(30 + i)),
    );
    t.true(
      reads.ranges.some(([a, b]) => a === 30 && b === 34),
      'read directly, just what was asked',
    );
    await fillInTurn(log, 36, 3);
    const grown = await log.read({ ledgerId, entryId: 30 }, 8);
    t.deepEqual(
      grown.map((e) => e.payload),
      Array.from({ length: 8 }, (_, i) => payload(30 + i)),
      'the growing block shows entries appended after an earlier read',
    );
    await log.close();
  },
);
