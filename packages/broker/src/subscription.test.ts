import { type Position, silentLogger } from '@sluice/common';
import type { Delivery } from '@sluice/proto';
import test from 'ava';
import { Consumer, type ConsumerSink } from './consumer.js';
import type { SubscriptionKind } from './consumer-selector.js';
import { DEFAULT_SUBSCRIPTION_OPTIONS, Subscription, type SubscriptionOptions } from './subscription.js';
import { batchEntry, MemoryLog, openMemoryTopic } from './test-support/memory-log.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function consumer(name: string, priority = 0): { c: Consumer; got: number[] } {
  const got: number[] = [];
  const sink: ConsumerSink = {
    deliver: (ds: Delivery[]) => {
      for (const d of ds) got.push(Number(d.messageId!.entryId));
    },
    activeChange: () => undefined,
    error: () => undefined,
    close: () => undefined,
  };
  return { c: new Consumer(name, priority, 1_000_000, sink), got };
}

async function subscription(
  kind: SubscriptionKind,
  entries: Buffer[],
  options: Partial<SubscriptionOptions> = {},
): Promise<{ sub: Subscription; log: MemoryLog }> {
  const log = new MemoryLog();
  for (const e of entries) await log.append(e);
  const cursor = await log.openCursor('s', 'earliest');
  const sub = new Subscription('s', kind, log.asLog(), cursor, silentLogger, {
    ...DEFAULT_SUBSCRIPTION_OPTIONS,
    ...options,
  });
  return { sub, log };
}

const singles = (n: number): Buffer[] => Array.from({ length: n }, () => batchEntry(1));

async function until(cond: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not reached in time');
    await sleep(5);
  }
}

test('subscription - a reconnecting exclusive consumer gets its backlog oldest first, before new entries', async (t) => {
  const { sub, log } = await subscription('exclusive', singles(500));
  const a = consumer('a');
  sub.addConsumer(a.c);
  sub.flow(a.c, 10_000);
  await until(() => a.got.length === 500);
  sub.removeConsumer(a.c);
  for (let i = 0; i < 100; i++) await log.append(batchEntry(1));
  const b = consumer('b');
  sub.addConsumer(b.c);
  sub.flow(b.c, 10_000);
  await until(() => b.got.length === 600);
  t.deepEqual(
    b.got,
    Array.from({ length: 600 }, (_, i) => i),
  );
  await sub.close();
});

test('subscription - acks sent right after a reconnect apply to the requeued entries', async (t) => {
  const { sub } = await subscription('exclusive', singles(10));
  const a = consumer('a');
  sub.addConsumer(a.c);
  sub.flow(a.c, 100);
  await until(() => a.got.length === 10);
  sub.removeConsumer(a.c);
  const b = consumer('b');
  sub.addConsumer(b.c);
  // Buffered acks flushed before any permits: the entries wait in the replay set.
  t.deepEqual(sub.ack(b.c, [{ ledgerId: 1, entryId: 3, batchIndex: 0 }], false), []);
  sub.flow(b.c, 100);
  await until(() => b.got.length === 9);
  t.false(b.got.includes(3));
  t.true(sub.cursor.isAcked({ ledgerId: 1, entryId: 3 }));
  await sub.close();
});

test('subscription - on shared, an ack through another consumer settles the entry', async (t) => {
  const { sub } = await subscription('shared', singles(1));
  const a = consumer('a');
  const b = consumer('b');
  sub.addConsumer(a.c);
  sub.addConsumer(b.c);
  sub.flow(a.c, 10);
  await until(() => a.got.length === 1);
  t.deepEqual(sub.ack(b.c, [{ ledgerId: 1, entryId: 0, batchIndex: 0 }], false), []);
  t.is(a.c.unackedMessages, 0);
  t.is(a.c.pending.size, 0);
  t.true(sub.cursor.isAcked({ ledgerId: 1, entryId: 0 }));
  t.deepEqual(sub.ack(b.c, [{ ledgerId: 1, entryId: 7, batchIndex: 0 }], false).length, 1);
  await sub.close();
});

test('subscription - a reader subscription keeps no pending entries', async (t) => {
  const { sub } = await subscription('exclusive', singles(50), { ackOnDelivery: true });
  const a = consumer('reader');
  sub.addConsumer(a.c);
  sub.flow(a.c, 1000);
  await until(() => a.got.length === 50);
  t.is(a.c.pending.size, 0);
  t.is(a.c.unackedMessages, 0);
  await sub.close();
});

test('subscription - a seek during an outstanding read drops what that read returned', async (t) => {
  const { sub, log } = await subscription('exclusive', singles(10));
  const a = consumer('a');
  sub.addConsumer(a.c);
  sub.flow(a.c, 100);
  await until(() => a.got.length === 10);
  log.readDelayMs = 40;
  await log.append(batchEntry(1));
  await sleep(10);
  // The round is reading entry 10; the seek back to 0 must not be overtaken by it.
  await sub.reset({ ledgerId: 1, entryId: 0 });
  const after = a.got.length;
  await until(() => a.got.length >= after + 11);
  await sleep(100);
  t.deepEqual(
    a.got.slice(after),
    Array.from({ length: 11 }, (_, i) => i),
  );
  await sub.close();
});

test('subscription - an entry in a nack delay is not redelivered early by a re-scan, and huge delays do not fire at once', async (t) => {
  const later = Date.now() + 150;
  const entries = [
    batchEntry(1, { deliverAt: later }),
    batchEntry(1, { deliverAt: later }),
    batchEntry(1, { deliverAt: later }),
    batchEntry(1),
    batchEntry(1),
  ];
  const { sub } = await subscription('shared', entries, { maxDelayedEntries: 2 });
  const a = consumer('a');
  sub.addConsumer(a.c);
  sub.flow(a.c, 100);
  await until(() => a.got.length === 2);
  t.deepEqual(a.got, [3, 4]);
  sub.nack(a.c, [{ ledgerId: 1, entryId: 3, batchIndex: 0 }], 60_000);
  sub.nack(a.c, [{ ledgerId: 1, entryId: 4, batchIndex: 0 }], 2 ** 32);
  await until(() => a.got.length >= 5, 3000);
  await sleep(100);
  t.deepEqual([...a.got].sort(), [0, 1, 2, 3, 4]);
  await sub.close();
});

test('subscription - an entry that cannot be decoded is skipped, not retried forever', async (t) => {
  const { sub } = await subscription('exclusive', [
    Buffer.from('not an envelope, not at all'),
    batchEntry(1),
  ]);
  const a = consumer('a');
  sub.addConsumer(a.c);
  sub.flow(a.c, 10);
  await until(() => a.got.length === 1);
  t.deepEqual(a.got, [1]);
  t.is(sub.corruptEntries, 1);
  t.true(sub.cursor.isAcked({ ledgerId: 1, entryId: 0 }));
  await sub.close();
});

test('subscription - a partial cumulative ack also acknowledges earlier entries waiting for redelivery', async (t) => {
  const { sub } = await subscription('exclusive', [batchEntry(1), batchEntry(1), batchEntry(3)]);
  const a = consumer('a');
  sub.addConsumer(a.c);
  sub.flow(a.c, 10);
  await until(() => a.got.length === 3);
  sub.nack(a.c, [{ ledgerId: 1, entryId: 1, batchIndex: 0 }], 60_000);
  t.deepEqual(sub.ack(a.c, [{ ledgerId: 1, entryId: 2, batchIndex: 0 }], true), []);
  const at = (entryId: number): Position => ({ ledgerId: 1, entryId });
  t.true(sub.cursor.isAcked(at(0)));
  t.true(sub.cursor.isAcked(at(1)));
  t.false(sub.cursor.isAcked(at(2)));
  t.deepEqual(sub.cursor.ackedBatchIndexes(at(2)), [0]);
  await sub.close();
});

test('subscription - reads about as many entries as the consumer has permits for, not a full batch', async (t) => {
  const { sub, log } = await subscription(
    'exclusive',
    Array.from({ length: 200 }, () => batchEntry(10)),
  );
  const asked: number[] = [];
  const read = log.read.bind(log);
  log.read = (from, maxEntries) => {
    asked.push(maxEntries);
    return read(from, maxEntries);
  };
  const a = consumer('a');
  sub.addConsumer(a.c);
  sub.flow(a.c, 1);
  await until(() => a.got.length === 1);
  // Entry 0 (10 messages) took the only permit and 9 more; 50 permits left are 5 entries.
  sub.flow(a.c, 59);
  await until(() => a.got.length === 6);
  await sleep(50);
  t.deepEqual(asked, [1, 5]);
  t.deepEqual(
    a.got,
    Array.from({ length: 6 }, (_, i) => i),
  );
  await sub.close();
});

test('subscription - an entry ack settles a whole batch, partly acked or waiting for redelivery', async (t) => {
  const { sub } = await subscription('shared', [batchEntry(5), batchEntry(5), batchEntry(5)]);
  const a = consumer('a');
  sub.addConsumer(a.c);
  sub.flow(a.c, 100);
  await until(() => a.got.length === 3);
  t.is(a.c.unackedMessages, 15);
  // Entry 0 whole; entry 1 after two of its messages were acked one by one.
  t.deepEqual(
    sub.ack(
      a.c,
      [
        { ledgerId: 1, entryId: 1, batchIndex: 3 },
        { ledgerId: 1, entryId: 1, batchIndex: 0 },
      ],
      false,
    ),
    [],
  );
  t.deepEqual(
    sub.ackEntries(a.c, [
      { ledgerId: 1, entryId: 0 },
      { ledgerId: 1, entryId: 1 },
    ]),
    [],
  );
  t.is(a.c.unackedMessages, 5);
  t.is(a.c.pending.size, 1);
  t.true(sub.cursor.isAcked({ ledgerId: 1, entryId: 0 }));
  t.true(sub.cursor.isAcked({ ledgerId: 1, entryId: 1 }));
  // Entry 2 goes back for redelivery when its consumer leaves; an entry ack still reaches it there.
  sub.removeConsumer(a.c);
  const b = consumer('b');
  sub.addConsumer(b.c);
  t.deepEqual(sub.ackEntries(b.c, [{ ledgerId: 1, entryId: 2 }]), []);
  t.true(sub.cursor.isAcked({ ledgerId: 1, entryId: 2 }));
  // Acked already, or never delivered: reported back.
  t.deepEqual(
    sub.ackEntries(b.c, [
      { ledgerId: 1, entryId: 2 },
      { ledgerId: 1, entryId: 9 },
    ]).length,
    2,
  );
  sub.flow(b.c, 100);
  await sleep(30);
  t.deepEqual(b.got, []);
  await sub.close();
});

const ids = (...entryIds: number[]) => entryIds.map((entryId) => ({ ledgerId: 1, entryId, batchIndex: 0 }));
const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);

test('subscription - failover: a new active consumer gets what the old one left unacknowledged, before newer entries', async (t) => {
  const { sub, log } = await subscription('failover', singles(10));
  const b = consumer('b', 1);
  sub.addConsumer(b.c);
  sub.flow(b.c, 100);
  await until(() => b.got.length === 10);
  sub.ack(b.c, ids(0, 1, 2, 3, 4), false);
  // A consumer of higher priority takes over while b still holds 5..9 unacknowledged.
  const a = consumer('a', 0);
  sub.addConsumer(a.c);
  t.false(b.c.active);
  // b's late acks still count, while the entry waits for a and after a got it.
  t.deepEqual(sub.ack(b.c, ids(5), false), []);
  sub.flow(a.c, 100);
  for (let i = 0; i < 5; i++) await log.append(batchEntry(1));
  await until(() => a.got.length >= 9);
  await sleep(30);
  t.deepEqual(a.got, range(6, 15));
  t.deepEqual(sub.ack(b.c, ids(6), false), []);
  t.true(sub.cursor.isAcked({ ledgerId: 1, entryId: 6 }));
  t.is(a.c.unackedMessages, 8);
  t.is(b.c.unackedMessages, 0);
  await sub.close();
});

test('subscription - key_shared: entries requeued by a consumer leaving during a read go out before what that read returned', async (t) => {
  const { sub, log } = await subscription(
    'key_shared',
    Array.from({ length: 5 }, () => batchEntry(1, { key: 'K' })),
  );
  const a = consumer('a');
  const b = consumer('b');
  sub.addConsumer(a.c);
  sub.addConsumer(b.c);
  sub.flow(a.c, 100);
  sub.flow(b.c, 100);
  await until(() => a.got.length + b.got.length === 5);
  const [owner, other] = a.got.length > 0 ? [a, b] : [b, a];
  log.readDelayMs = 50;
  for (let i = 0; i < 5; i++) await log.append(batchEntry(1, { key: 'K' }));
  await sleep(10);
  // A read of 5..9 is outstanding when the owner of K leaves with 0..4 unacknowledged.
  sub.removeConsumer(owner.c);
  await until(() => other.got.length >= 10);
  await sleep(100);
  t.deepEqual(other.got, range(0, 10));
  await sub.close();
});

test('subscription - failover: an active change during a read hands over the old backlog before what that read returned', async (t) => {
  const { sub, log } = await subscription('failover', singles(5));
  const b = consumer('b', 1);
  sub.addConsumer(b.c);
  sub.flow(b.c, 100);
  await until(() => b.got.length === 5);
  log.readDelayMs = 50;
  for (let i = 0; i < 5; i++) await log.append(batchEntry(1));
  await sleep(10);
  const a = consumer('a', 0);
  sub.addConsumer(a.c);
  sub.flow(a.c, 100);
  await until(() => a.got.length >= 10);
  await sleep(100);
  t.deepEqual(a.got, range(0, 10));
  t.deepEqual(b.got, range(0, 5));
  await sub.close();
});

test('subscription - a changed subscription type redelivers everything left unacknowledged', async (t) => {
  const log = new MemoryLog();
  for (let i = 0; i < 10; i++) await log.append(batchEntry(1));
  const topic = await openMemoryTopic('t/ns/retype', log);
  const sub = await topic.subscription('s', 'exclusive', 'earliest');
  const a = consumer('a');
  sub.addConsumer(a.c);
  sub.flow(a.c, 100);
  await until(() => a.got.length === 10);
  sub.ack(a.c, ids(0, 1, 4), false);
  sub.nack(a.c, ids(5), 60_000);
  sub.removeConsumer(a.c);
  const shared = await topic.subscription('s', 'shared', 'earliest');
  t.not(shared, sub);
  const b = consumer('b');
  shared.addConsumer(b.c);
  shared.flow(b.c, 100);
  await log.append(batchEntry(1));
  await until(() => b.got.length >= 8);
  await sleep(30);
  t.deepEqual(b.got, [2, 3, 5, 6, 7, 8, 9, 10]);
  await topic.close('test over', false);
});

test('subscription - a reader whose position was trimmed away continues at the oldest stored entry', async (t) => {
  const { sub, log } = await subscription('exclusive', singles(10), { ackOnDelivery: true });
  const r = consumer('reader');
  sub.addConsumer(r.c);
  sub.flow(r.c, 1);
  await until(() => r.got.length === 1);
  log.trimTo(6);
  sub.flow(r.c, 100);
  await until(() => r.got.length === 5);
  t.deepEqual(r.got, [0, 6, 7, 8, 9]);
  await sub.close();
});

test('subscription - a durable subscription whose read position and redeliveries were trimmed continues at the oldest stored entry', async (t) => {
  const { sub, log } = await subscription('exclusive', singles(10));
  const a = consumer('a');
  sub.addConsumer(a.c);
  sub.flow(a.c, 3);
  await until(() => a.got.length === 3);
  sub.removeConsumer(a.c);
  log.trimTo(6);
  const b = consumer('b');
  sub.addConsumer(b.c);
  sub.flow(b.c, 100);
  await until(() => b.got.length === 4);
  t.deepEqual(b.got, [6, 7, 8, 9]);
  await sub.close();
});
