import { OutOfRangeError, type Position } from '@sluice/common';
import type { LogStats, ManagedLog } from '@sluice/managed-log';
import test from 'ava';
import { NonDurableCursor } from './non-durable-cursor.js';

/**
 * The position queries of a managed log over a ledger list (as the managed
 * log answers them), for start positions across rollovers and takeovers.
 */
function ledgerListLog(ledgers: { ledgerId: number; entries: number }[]): ManagedLog {
  const withEntries = ledgers.filter((l) => l.entries > 0);
  const last = withEntries[withEntries.length - 1];
  const log = {
    firstPosition: (): Position | undefined =>
      withEntries[0] ? { ledgerId: withEntries[0].ledgerId, entryId: 0 } : undefined,
    lastPosition: (): Position | undefined =>
      last ? { ledgerId: last.ledgerId, entryId: last.entries - 1 } : undefined,
    nextPosition(p: Position): Position | undefined {
      for (const l of ledgers) {
        if (l.ledgerId < p.ledgerId) continue;
        const candidate = l.ledgerId === p.ledgerId ? p.entryId + 1 : 0;
        if (candidate < l.entries) return { ledgerId: l.ledgerId, entryId: candidate };
      }
      return undefined;
    },
    stats: (): LogStats => ({
      entries: ledgers.reduce((n, l) => n + l.entries, 0),
      storageBytes: 0,
      offloadedBytes: 0,
      ledgers: ledgers.map((l, i) => ({
        ...l,
        size: 0,
        ctime: 0,
        offloaded: false,
        bookieCopyDeleted: false,
        open: i === ledgers.length - 1,
      })),
      cursors: [],
    }),
  };
  return log as unknown as ManagedLog;
}

const start = (log: ManagedLog, ledgerId: number, entryId: number): Position =>
  NonDurableCursor.startPosition(log, { id: { ledgerId, entryId } }, 'reader');

test('reader start - an id past the end of a ledger since sealed starts at the next stored entry, or the end', (t) => {
  // Ledger 1 held 2 entries when the reader was told 'latest' (1:2); a takeover sealed it and opened 3.
  t.deepEqual(
    start(
      ledgerListLog([
        { ledgerId: 1, entries: 2 },
        { ledgerId: 3, entries: 0 },
      ]),
      1,
      2,
    ),
    {
      ledgerId: 3,
      entryId: 0,
    },
  );
  const written = ledgerListLog([
    { ledgerId: 1, entries: 2 },
    { ledgerId: 3, entries: 2 },
  ]);
  t.deepEqual(start(written, 1, 2), { ledgerId: 3, entryId: 0 });
  t.deepEqual(start(written, 1, 1), { ledgerId: 1, entryId: 1 });
  t.deepEqual(start(written, 3, 2), { ledgerId: 3, entryId: 2 }, 'the end: the next entry to be written');
});

test('reader start - entry 0 of a ledger dropped because it stayed empty starts at the next stored entry', (t) => {
  // The reader was told 2:0 while ledger 2 was open and empty; a takeover dropped it and opened 4.
  const log = ledgerListLog([
    { ledgerId: 1, entries: 2 },
    { ledgerId: 4, entries: 3 },
  ]);
  t.deepEqual(start(log, 2, 0), { ledgerId: 4, entryId: 0 });
  const cursor = new NonDurableCursor('r', log, start(log, 2, 0));
  t.deepEqual(cursor.markDelete, { ledgerId: 1, entryId: 1 });
  const idle = ledgerListLog([
    { ledgerId: 1, entries: 2 },
    { ledgerId: 4, entries: 0 },
  ]);
  t.deepEqual(start(idle, 2, 0), { ledgerId: 4, entryId: 0 });
});

test('reader start - trimmed ids start at the oldest entry; ids beyond the end are refused', (t) => {
  const log = ledgerListLog([
    { ledgerId: 5, entries: 2 },
    { ledgerId: 6, entries: 1 },
  ]);
  t.deepEqual(start(log, 2, 0), { ledgerId: 5, entryId: 0 });
  t.throws(() => start(log, 6, 2), { instanceOf: OutOfRangeError, message: /the topic ends at 6:1/ });
});
