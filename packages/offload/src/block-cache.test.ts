import test from 'ava';
import { BlockCache } from './block-cache.js';
import type { DecodedBlock } from './block-format.js';

const block = (first: number): DecodedBlock => ({ firstEntryId: first, entries: [] });

test('block cache - evicts least recently used blocks beyond the byte bound', (t) => {
  const cache = new BlockCache(300);
  cache.set('a', block(1), 100);
  cache.set('b', block(2), 100);
  cache.set('c', block(3), 100);
  t.truthy(cache.get('a'));
  cache.set('d', block(4), 100);
  t.is(cache.get('b'), undefined, 'b was least recently used');
  t.truthy(cache.get('a'));
  t.truthy(cache.get('c'));
  t.truthy(cache.get('d'));
  t.is(cache.usedBytes, 300);
});

test('block cache - does not cache a block larger than the cache', (t) => {
  const cache = new BlockCache(100);
  cache.set('a', block(1), 50);
  cache.set('big', block(2), 101);
  t.is(cache.get('big'), undefined);
  t.truthy(cache.get('a'));
});

test('block cache - concurrent misses share one load', async (t) => {
  const cache = new BlockCache(1000);
  let loads = 0;
  let misses = 0;
  const load = async () => {
    loads++;
    await new Promise((r) => setTimeout(r, 10));
    return { block: block(5), bytes: 10 };
  };
  const results = await Promise.all([1, 2, 3].map(() => cache.getOrLoad('k', load, () => misses++)));
  t.is(loads, 1);
  t.is(misses, 1);
  t.true(results.every((r) => r === results[0]));
  await cache.getOrLoad('k', load);
  t.is(loads, 1, 'served from cache');
});

test('block cache - a failed load is not cached', async (t) => {
  const cache = new BlockCache(1000);
  await t.throwsAsync(
    cache.getOrLoad('k', () => Promise.reject(new Error('boom'))),
    { message: 'boom' },
  );
  const got = await cache.getOrLoad('k', async () => ({ block: block(1), bytes: 1 }));
  t.is(got.firstEntryId, 1);
});

test('block cache - removePrefix drops a deleted offload', (t) => {
  const cache = new BlockCache(1000);
  cache.set('l1/u.data@0', block(0), 10);
  cache.set('l1/u.data@10', block(1), 10);
  cache.set('l2/u.data@0', block(0), 10);
  cache.removePrefix('l1/u.data@');
  t.is(cache.size, 1);
  t.is(cache.usedBytes, 10);
});
