import test from 'ava';
import fc from 'fast-check';
import { AckSet } from './ack-set.js';
import { decodeCursorState, encodeCursorState } from './cursor-state.js';

test('ack set - counts entries and ranges as runs join', (t) => {
  const s = new AckSet();
  s.add(1, 5);
  s.add(1, 7);
  t.is(s.rangeCount, 2);
  s.add(1, 6);
  t.is(s.rangeCount, 1);
  t.is(s.size, 3);
  s.add(2, 0);
  t.is(s.rangeCount, 2);
  t.false(s.add(1, 6), 'adding twice is a no-op');
  s.clearUpTo(1, 6);
  t.false(s.has(1, 5));
  t.true(s.has(1, 7));
  t.is(s.size, 2);
  t.is(s.rangeCount, 2);
  s.clearUpTo(2, -1);
  t.is(s.size, 1);
  t.deepEqual([...s.ranges()], [[2, [[0, 0]]]]);
});

test('ack set - matches a model under random adds and clears', (t) => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 0, max: 200 }), fc.boolean()), {
        maxLength: 300,
      }),
      (ops) => {
        const s = new AckSet();
        let model = new Set<string>();
        for (const [l, e, clear] of ops) {
          if (clear) {
            s.clearUpTo(l, e);
            model = new Set(
              [...model].filter((k) => {
                const [ml, me] = k.split(':').map(Number) as [number, number];
                return ml > l || (ml === l && me > e);
              }),
            );
          } else {
            s.add(l, e);
            model.add(`${l}:${e}`);
          }
        }
        let ranges = 0;
        for (const [l, runs] of s.ranges()) {
          ranges += runs.length;
          for (const [a, b] of runs) for (let e = a; e <= b; e++) if (!model.has(`${l}:${e}`)) return false;
        }
        return s.size === model.size && s.rangeCount === ranges;
      },
    ),
  );
  t.pass();
});

test('ack set - matches a model far into a ledger, with acks below the window and a sliding mark-delete', (t) => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 5_000_000 }),
      fc.array(fc.tuple(fc.integer({ min: 0, max: 3000 }), fc.boolean()), { maxLength: 400 }),
      (start, ops) => {
        const s = new AckSet();
        const model = new Set<number>();
        for (const [offset, clear] of ops) {
          const e = start + offset;
          if (clear) {
            s.clearUpTo(9, e);
            for (const m of [...model]) if (m <= e) model.delete(m);
          } else {
            s.add(9, e);
            model.add(e);
          }
        }
        for (let e = start; e <= start + 3000; e++) if (s.has(9, e) !== model.has(e)) return false;
        let ranges = 0;
        for (const [, runs] of s.ranges()) {
          ranges += runs.length;
          for (const [a, b] of runs) for (let e = a; e <= b; e++) if (!model.has(e)) return false;
        }
        return s.size === model.size && s.rangeCount === ranges;
      },
    ),
  );
  t.pass();
});

test('ack set - in-order acks deep into a ledger hold a few words, and a sliding window keeps its size', (t) => {
  const s = new AckSet();
  for (let e = 2_000_000; e < 2_100_000; e++) {
    s.add(4, e);
    s.clearUpTo(4, e);
  }
  t.is(s.size, 0);
  s.add(4, 2_100_000);
  t.true(s.heldBytes <= 16, `one ack deep into a ledger holds ${s.heldBytes} bytes`);
  // Acks arrive out of order within 1,000 entries while the mark-delete trails them.
  const w = new AckSet();
  let markDelete = 999_999;
  for (let e = 1_000_000; e < 1_300_000; e += 2) {
    w.add(5, e + 1);
    w.add(5, e);
    if (e - markDelete > 1000) {
      markDelete = e - 1000;
      w.clearUpTo(5, markDelete);
    }
  }
  t.true(w.size > 900 && w.size <= 1002, `holds ${w.size}`);
  t.true(w.heldBytes <= 1024, `a window of ~1,000 entries holds ${w.heldBytes} bytes`);
});

test('cursor state - 100k scattered acks and partial batches round-trip exactly, compactly', async (t) => {
  const acks = new AckSet();
  let seed = 42;
  const rand = () => {
    seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff;
    return seed;
  };
  while (acks.size < 100_000) acks.add(10 + (rand() % 3), rand() % 250_000);
  const bits = new Uint8Array(2);
  bits[0] = 0b101;
  const batches = new Map([['11:7', { ledgerId: 11, entryId: 7, size: 10, bits, acked: 2 }]]);
  const encoded = await encodeCursorState({ markDelete: { ledgerId: 10, entryId: -1 }, acks, batches });
  const back = await decodeCursorState(encoded, 'test state');
  t.deepEqual(back.markDelete, { ledgerId: 10, entryId: -1 });
  t.is(back.acks.size, acks.size);
  t.is(back.acks.rangeCount, acks.rangeCount);
  t.deepEqual([...back.acks.ranges()], [...acks.ranges()]);
  t.deepEqual([...back.batches.values()], [...batches.values()]);
  t.true(encoded.length < 400_000, `encoded ${encoded.length} bytes`);
});

test('cursor state - corrupt input is a CorruptDataError', async (t) => {
  await t.throwsAsync(decodeCursorState(Buffer.from([9, 1, 2]), 'x'), { code: 'CORRUPT' } as never);
  await t.throwsAsync(decodeCursorState(Buffer.from([1, 0xff]), 'x'), { code: 'CORRUPT' } as never);
});

test('cursor state - a large state compresses off the event loop and snapshots acks at call time', async (t) => {
  const acks = new AckSet();
  for (let i = 0; i < 50_000; i++) acks.add(3, i * 2);
  const state = { markDelete: { ledgerId: 3, entryId: -1 }, acks, batches: new Map() };
  let ticks = 0;
  const ticker = setImmediate(() => ticks++);
  const pending = encodeCursorState(state);
  // Acks that arrive while the record is being compressed belong to the next record.
  acks.add(3, 1);
  const encoded = await pending;
  clearImmediate(ticker);
  t.is(encoded[0], 1, 'a state this large is deflated');
  t.is(ticks, 1, 'the event loop turned while zlib worked');
  const back = await decodeCursorState(encoded, 'test state');
  t.is(back.acks.size, 50_000);
  t.false(back.acks.has(3, 1));
});
