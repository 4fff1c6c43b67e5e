import test from 'ava';
import { TailCache } from './entry-cache.js';

const b = (n: number) => Buffer.alloc(n, 1);

test('tail cache - evictThrough drops whole runs and a run prefix, nothing after the position', (t) => {
  const c = new TailCache(1 << 20);
  for (let e = 0; e < 5; e++) c.put(7, e, b(10));
  for (let e = 0; e < 5; e++) c.put(9, e, b(100));
  t.is(c.size, 550);
  c.evictThrough({ ledgerId: 9, entryId: 1 });
  t.is(c.get(7, 4), undefined, 'an earlier ledger goes whole');
  t.is(c.get(9, 1), undefined);
  t.is(c.get(9, 2)?.length, 100, 'the entry after the position stays');
  t.is(c.size, 300);
  c.evictThrough({ ledgerId: 8, entryId: 100 });
  t.is(c.size, 300, 'a position before every cached entry drops nothing');
  c.evictThrough({ ledgerId: 9, entryId: 4 });
  t.is(c.size, 0);
  c.put(9, 5, b(1));
  t.is(c.get(9, 5)?.length, 1, 'appends continue after a full eviction');
});

test('tail cache - entries in parts count every part, by size eviction and by position', (t) => {
  const c = new TailCache(1000);
  c.put(1, 0, [b(100), b(300)]);
  c.put(1, 1, b(200));
  t.is(c.size, 600);
  c.put(1, 2, [b(50), b(400)]);
  t.is(c.size, 650, 'over 1000 bytes: the oldest entry, both parts, went');
  t.is(c.get(1, 0), undefined);
  t.deepEqual(
    (c.get(1, 2) as Buffer[]).map((p) => p.length),
    [50, 400],
  );
  c.evictThrough({ ledgerId: 1, entryId: 2 });
  t.is(c.size, 0);
  c.put(2, 0, [b(10), b(20)]);
  c.dropLedger(2);
  t.is(c.size, 0);
});
