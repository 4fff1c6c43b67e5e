import test from 'ava';
import { DelayedIndex } from './delayed-index.js';
import { PublishRateLimiter } from './publish-rate-limiter.js';

const pos = (entryId: number) => ({ ledgerId: 1, entryId });

test('delayed index - pops due positions in time order and refuses entries beyond its bound', (t) => {
  const idx = new DelayedIndex(3);
  t.true(idx.add(pos(0), 300));
  t.true(idx.add(pos(1), 100));
  t.true(idx.add(pos(2), 200));
  t.true(idx.full);
  t.false(idx.add(pos(3), 50), 'full: the caller leaves the entry in the log');
  t.true(idx.add(pos(1), 100), 'a position already held is accepted again');
  t.is(idx.nextTime(), 100);
  t.deepEqual(idx.popDue(250), [pos(1), pos(2)]);
  t.true(idx.has(pos(0)));
  t.false(idx.has(pos(1)));
  idx.removeWhere((p) => p.entryId === 0);
  t.is(idx.size, 0);
  t.is(idx.nextTime(), undefined);
});

test('publish rate limiter - spaces batches by the slower of messages/s and bytes/s', async (t) => {
  const rl = new PublishRateLimiter({ messagesPerSecond: 100, bytesPerSecond: 0 });
  const started = Date.now();
  await rl.acquire(10, 0);
  // The next batch waits behind the first one's 10 messages at 100/s.
  await rl.acquire(1, 0);
  t.true(Date.now() - started >= 90, 'the second batch waited ~100 ms');
  const bytes = new PublishRateLimiter({ messagesPerSecond: 0, bytesPerSecond: 1000 });
  const t0 = Date.now();
  await bytes.acquire(1, 100);
  await bytes.acquire(1, 100);
  t.true(Date.now() - t0 >= 90, 'the second 100-byte batch waits ~100 ms at 1000 bytes/s');
  const closing = new PublishRateLimiter({ messagesPerSecond: 1, bytesPerSecond: 0 });
  await closing.acquire(1, 0);
  const waiting = closing.acquire(1, 0);
  closing.close();
  await t.throwsAsync(waiting, { message: /closed/ });
});
