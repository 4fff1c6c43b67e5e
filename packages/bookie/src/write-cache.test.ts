import { crc32c } from '@sluice/common';
import test from 'ava';
import { decodeEntry, ENTRY_HEADER_BYTES, type StoredEntry } from './entry-log.js';
import { WriteCache } from './write-cache.js';

const entry = (ledgerId: number, entryId: number, size: number, fill = entryId & 0xff): StoredEntry => {
  const payload = Buffer.alloc(size, fill);
  return {
    ledgerId,
    entryId,
    lac: entryId - 1,
    crc32c: crc32c(payload),
    ledgerLength: (entryId + 1) * size,
    payload,
  };
};

test('write cache - reads return what was put, the newest copy of a re-added entry, across chunks', (t) => {
  const cache = new WriteCache(4096);
  for (let i = 0; i < 20; i++) cache.put(entry(1, i, 1000));
  cache.put(entry(2, 0, 9000)); // larger than a chunk: a chunk of its own
  cache.put(entry(1, 3, 500, 0xee));
  for (let i = 0; i < 20; i++) {
    const got = cache.get(1, i)!;
    const want = i === 3 ? entry(1, 3, 500, 0xee) : entry(1, i, 1000);
    t.deepEqual({ ...got, payload: Buffer.from(got.payload) }, want);
  }
  t.deepEqual(cache.get(2, 0)?.payload, Buffer.alloc(9000, 0));
  t.is(cache.get(1, 20), undefined);
  t.is(cache.get(3, 0), undefined);
  t.is(cache.bytes, 20 * (ENTRY_HEADER_BYTES + 1000) + ENTRY_HEADER_BYTES + 9000 + ENTRY_HEADER_BYTES + 500);
});

test('write cache - unflushed records come out oldest first as verifiable entry log records, until marked flushed', (t) => {
  const cache = new WriteCache(4096);
  for (let i = 0; i < 10; i++) cache.put(entry(7, i, 1000));
  const first = cache.peekUnflushed(2500);
  t.deepEqual(
    first.map((r) => r.entryId),
    [0, 1, 2],
  );
  // Not consumed until marked: a failed write loses nothing.
  t.deepEqual(
    cache.peekUnflushed(2500).map((r) => r.entryId),
    [0, 1, 2],
  );
  for (const r of first) {
    const decoded = decodeEntry(r.record, 7, r.entryId);
    t.true(decoded.ok);
    if (decoded.ok) t.deepEqual(decoded.entry, entry(7, r.entryId, 1000));
  }
  cache.markFlushed(first.reduce((n, r) => n + r.record.length, 0));
  t.deepEqual(
    cache.peekUnflushed(1).map((r) => r.entryId),
    [3],
    'at least one record even when it is over the limit',
  );
  const rest = cache.peekUnflushed(1 << 20);
  t.deepEqual(
    rest.map((r) => r.entryId),
    [3, 4, 5, 6, 7, 8, 9],
  );
  cache.markFlushed(rest.reduce((n, r) => n + r.record.length, 0));
  t.false(cache.hasUnflushed);
  t.deepEqual(cache.peekUnflushed(1 << 20), []);
});

test('write cache - a checkpoint evicts only chunks flushed before its mark; reused chunks never change what reads returned', (t) => {
  const cache = new WriteCache(4096, 3 * 4096);
  for (let i = 0; i < 8; i++) cache.put(entry(1, i, 1000)); // two chunks of 3 (4 KiB each) and one of 2
  const early = cache.get(1, 0)!.payload;
  const firstFive = cache.peekUnflushed(5 * 1048);
  cache.markFlushed(firstFive.reduce((n, r) => n + r.record.length, 0));
  const mark = cache.flushMark();
  cache.put(entry(1, 8, 1000));
  cache.evictBefore(mark);
  // Chunk 0 (entries 0-2) is wholly before the mark; chunk 1 (3-5) is not.
  t.is(cache.get(1, 0), undefined);
  t.is(cache.get(1, 2), undefined);
  t.truthy(cache.get(1, 3));
  t.truthy(cache.get(1, 8));
  t.deepEqual(early, Buffer.alloc(1000, 0));
  // Everything flushed, nothing added since: the chunk being filled goes too.
  const rest = cache.peekUnflushed(1 << 20);
  cache.markFlushed(rest.reduce((n, r) => n + r.record.length, 0));
  cache.evictBefore(cache.flushMark());
  t.is(cache.get(1, 8), undefined);
  t.is(cache.bytes, 0);
  for (let i = 9; i < 30; i++) cache.put(entry(1, i, 1000, 0x77));
  t.deepEqual(cache.get(1, 29)?.payload, Buffer.alloc(1000, 0x77));
  t.deepEqual(early, Buffer.alloc(1000, 0), 'a read from a chunk since reused');
});

test('write cache - a dropped ledger is no longer served', (t) => {
  const cache = new WriteCache();
  cache.put(entry(1, 0, 10));
  cache.put(entry(2, 0, 10));
  cache.dropLedger(1);
  t.is(cache.get(1, 0), undefined);
  t.truthy(cache.get(2, 0));
});
