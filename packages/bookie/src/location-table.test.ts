import test from 'ava';
import fc from 'fast-check';
import type { EntryLocation } from './entry-log.js';
import { LocationTable, sameLocation } from './location-table.js';

const loc = (logId: number, offset: number, length: number): EntryLocation => ({ logId, offset, length });

test('location table - behaves as a map of entry id to location, dense, striped, sparse and huge ids alike', (t) => {
  const entryId = fc.oneof(
    fc.nat({ max: 5000 }),
    fc.integer({ min: 1_000_000, max: 1_000_100 }),
    fc.constant(2 ** 53 - 1),
  );
  const location = fc.record({
    logId: fc.nat({ max: 2 ** 31 }),
    offset: fc.nat({ max: Number.MAX_SAFE_INTEGER }),
    length: fc.nat({ max: 2 ** 32 - 1 }),
  });
  fc.assert(
    fc.property(fc.array(fc.tuple(entryId, location), { maxLength: 400 }), (ops) => {
      const table = new LocationTable();
      const model = new Map<number, EntryLocation>();
      for (const [id, l] of ops) {
        const old = table.set(id, l);
        t.deepEqual(old, model.get(id));
        model.set(id, { ...l });
      }
      t.is(table.size, model.size);
      for (const [id, l] of model) t.deepEqual(table.get(id), l);
      const seen = new Map<number, EntryLocation>();
      table.each((id, logId, offset, length) => seen.set(id, loc(logId, offset, length)));
      t.deepEqual(
        new Map([...seen].sort((a, b) => a[0] - b[0])),
        new Map([...model].sort((a, b) => a[0] - b[0])),
      );
      t.deepEqual(
        table.ids().sort((a, b) => a - b),
        [...model.keys()].sort((a, b) => a - b),
      );
    }),
  );
});

test('location table - ids past a sparse stretch move into the dense arrays as the ledger fills up', (t) => {
  const table = new LocationTable();
  table.set(10_000, loc(3, 30, 300));
  t.deepEqual(table.get(10_000), loc(3, 30, 300));
  for (let i = 0; i < 4000; i++) table.set(i, loc(1, i * 100, 100));
  t.is(table.size, 4001);
  t.deepEqual(table.get(10_000), loc(3, 30, 300));
  t.deepEqual(table.get(3999), loc(1, 399_900, 100));
  t.is(table.get(4000), undefined);
  t.is(table.get(-1), undefined);
  t.deepEqual(
    table.ids().sort((a, b) => a - b),
    [...Array.from({ length: 4000 }, (_, i) => i), 10_000],
  );
  t.true(table.mapped < 1300, `${table.mapped} ids in the map`);
});

test('location table - a ledger stored in order from 0 keeps every id in the dense arrays', (t) => {
  const table = new LocationTable();
  for (let i = 0; i < 100_000; i++) table.set(i, loc(1, i, 1));
  t.is(table.mapped, 0);
  t.is(table.size, 100_000);
});

test('location table - a ledger first seen mid-way keeps its ids dense from there; earlier ids still work', (t) => {
  const table = new LocationTable();
  for (let i = 0; i < 3000; i++) table.set(5_000_000 + i, loc(2, i, 10));
  table.set(17, loc(9, 9, 9));
  t.is(table.size, 3001);
  t.deepEqual(table.get(5_000_000), loc(2, 0, 10));
  t.deepEqual(table.get(5_002_999), loc(2, 2999, 10));
  t.deepEqual(table.get(17), loc(9, 9, 9));
  t.is(table.get(5_003_000), undefined);
  t.deepEqual(table.ids().slice(0, 2), [5_000_000, 5_000_001]);
  t.is(table.ids().at(-1), 17);
  t.is(table.mapped, 1);
});

test('location table - sameLocation compares by value and treats a missing location as different', (t) => {
  t.true(sameLocation(loc(1, 2, 3), loc(1, 2, 3)));
  t.false(sameLocation(loc(1, 2, 3), loc(1, 2, 4)));
  t.false(sameLocation(undefined, loc(1, 2, 3)));
  t.false(sameLocation(undefined, undefined));
});
