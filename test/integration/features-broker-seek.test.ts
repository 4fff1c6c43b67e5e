import type { ServiceError } from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import { waitFor } from '../support/ports.js';
import { sleep, useStandaloneWire, valuesOf, type Wire, type WireId } from './features-broker-wire.js';

const test = useStandaloneWire('sluice-seek-');

async function publishAll(wire: Wire, topic: string, values: string[], gapMs = 0) {
  const p = await wire.produce(topic);
  const ids: WireId[] = [];
  const times: number[] = [];
  for (const v of values) {
    times.push(Date.now());
    ids.push(await p.publish([v]));
    if (gapMs) await sleep(gapMs);
  }
  p.close();
  return { ids, times };
}

test('seek - by message id and by publish time on the consume stream, then SeekDone', async (t) => {
  const { wire } = t.context;
  const topic = 'seek-stream';
  const c = await wire.subscribe(topic, 's', { initialPosition: 'earliest' });
  c.flow(100);
  const { ids } = await publishAll(wire, topic, ['a', 'b', 'c', 'd', 'e'], 30);
  const all = await c.receive(5);
  t.deepEqual(valuesOf(all), ['a', 'b', 'c', 'd', 'e']);
  for (const d of all) c.ack(d.id);

  t.is(await c.seek({ messageId: ids[2]! }), undefined);
  t.deepEqual(valuesOf(await c.receive(3)), ['c', 'd', 'e']);

  t.is(await c.seek({ publishTime: all[3]!.publishTime }), undefined);
  t.deepEqual(valuesOf(await c.receive(2)), ['d', 'e']);

  t.is(await c.seek({ publishTime: Date.now() + 60_000 }), undefined);
  t.is((await c.receive(1, 500)).length, 0, 'a time after the last message delivers nothing old');
  c.close();
});

test('seek - admin reset by publish time applies to every partition of a partitioned topic', async (t) => {
  const { wire } = t.context;
  const topic = 'persistent://public/default/seek-parts';
  await wire.call('CreateTopic', { topic, partitions: 2 });
  await wire.call('CreateSubscription', {
    topic,
    subscription: 'r',
    initialPosition: 'INITIAL_POSITION_EARLIEST',
  });
  const before = await publishAll(wire, `${topic}-partition-0`, ['p0-old']);
  await publishAll(wire, `${topic}-partition-1`, ['p1-old']);
  await sleep(50);
  const cut = Date.now();
  await sleep(20);
  await publishAll(wire, `${topic}-partition-0`, ['p0-new']);
  await publishAll(wire, `${topic}-partition-1`, ['p1-new']);
  t.truthy(before.ids[0]);

  // Everything consumed and acknowledged, then reset to `cut`: the newer half comes back.
  for (const i of [0, 1]) {
    const c = await wire.subscribe(`${topic}-partition-${i}`, 'r');
    c.flow(10);
    for (const d of await c.receive(2)) c.ack(d.id);
    c.close();
  }
  await wire.call('ResetSubscription', { topic, subscription: 'r', publishTime: cut });
  const got: string[] = [];
  for (const i of [0, 1]) {
    const c = await wire.subscribe(`${topic}-partition-${i}`, 'r');
    c.flow(10);
    got.push(...valuesOf(await c.receive(1, 5000)));
    t.is((await c.receive(1, 300)).length, 0);
    c.close();
  }
  t.deepEqual(got.sort(), ['p0-new', 'p1-new']);
});

test('readers - non-durable readers from earliest, latest and a message id store no cursor', async (t) => {
  const { wire } = t.context;
  const topic = 'readers';
  const { ids } = await publishAll(wire, topic, ['r0', 'r1', 'r2', 'r3']);

  const earliest = await wire.subscribe(topic, 'reader-a', { nonDurable: true, initialPosition: 'earliest' });
  earliest.flow(100);
  t.deepEqual(valuesOf(await earliest.receive(4)), ['r0', 'r1', 'r2', 'r3']);

  const fromId = await wire.subscribe(topic, 'reader-b', { nonDurable: true, startMessageId: ids[2]! });
  fromId.flow(100);
  t.deepEqual(valuesOf(await fromId.receive(2)), ['r2', 'r3']);

  const latest = await wire.subscribe(topic, 'reader-c', { nonDurable: true, initialPosition: 'latest' });
  latest.flow(100);
  t.is((await latest.receive(1, 300)).length, 0);
  await publishAll(wire, topic, ['r4']);
  t.deepEqual(valuesOf(await latest.receive(1)), ['r4']);
  t.deepEqual(valuesOf(await earliest.receive(1)), ['r4']);

  // A reader can seek too.
  t.is(await earliest.seek({ messageId: ids[1]! }), undefined);
  t.deepEqual(valuesOf(await earliest.receive(4)), ['r1', 'r2', 'r3', 'r4']);

  const subs = await wire.call<{ subscriptions: string[] }>('ListSubscriptions', { topic });
  t.deepEqual(subs.subscriptions, [], 'readers leave no subscription behind');
  for (const r of [earliest, fromId, latest]) r.close();
});

test('seek - to a trimmed position answers OUT_OF_RANGE and changes nothing; a reset to one fails too', async (t) => {
  const { wire } = t.context;
  const topic = 'seek-trimmed';
  const c = await wire.subscribe(topic, 's', { initialPosition: 'earliest' });
  c.flow(100);
  const { ids } = await publishAll(wire, topic, ['old-0', 'old-1']);
  for (const d of await c.receive(2)) c.ack(d.id);
  c.close();
  // Roll to a new ledger, then let a short TTL expire everything so the first ledger is trimmed.
  await wire.call('UnloadTopic', { topic });
  await wire.call('SetTopicPolicies', { topic, policies: { messageTtlMs: 500 } });
  await publishAll(wire, topic, ['new-0']);
  await waitFor(
    async () => {
      const s = await wire.call<{ ledgers: { ledgerId: number }[] }>('GetTopicInternalStats', { topic });
      return s.ledgers.every((l) => Number(l.ledgerId) !== Number(ids[0]!.ledgerId));
    },
    15_000,
    'the first ledger to be trimmed',
  );
  const c2 = await wire.subscribe(topic, 's');
  c2.flow(100);
  const err = await c2.seek({ messageId: ids[0]! });
  t.is(err?.errorCode, 'OUT_OF_RANGE');
  t.regex(String(err?.message), /trimmed/);
  const reset = await t.throwsAsync<ServiceError>(
    wire.call('ResetSubscription', { topic, subscription: 's', messageId: ids[1]! }),
  );
  t.is(reset?.code, status.OUT_OF_RANGE);
  // The stream still works after the refused seek.
  await publishAll(wire, topic, ['after']);
  t.true(valuesOf(await c2.receive(1, 5000)).includes('after'));
  c2.close();
});

test('partitions - increased online (new partitions usable at once), shrinking refused, stats aggregated', async (t) => {
  const { wire } = t.context;
  const topic = 'persistent://public/default/grow';
  await wire.call('CreateTopic', { topic, partitions: 2 });
  await wire.call('CreateSubscription', {
    topic,
    subscription: 'agg',
    initialPosition: 'INITIAL_POSITION_EARLIEST',
  });
  await publishAll(wire, `${topic}-partition-0`, ['a']);
  const shrink = await t.throwsAsync<ServiceError>(wire.call('UpdatePartitions', { topic, partitions: 1 }));
  t.is(shrink?.code, status.INVALID_ARGUMENT);
  t.regex(shrink?.details ?? '', /at least the current 2/);
  await wire.call('UpdatePartitions', { topic, partitions: 4 });
  const meta = await wire.lookupCall<{ partitions: number }>('GetTopicMetadata', { topic });
  t.is(meta.partitions, 4);
  await publishAll(wire, `${topic}-partition-3`, ['b', 'c']);
  await wire.call('CreateSubscription', {
    topic,
    subscription: 'agg',
    initialPosition: 'INITIAL_POSITION_EARLIEST',
  });
  await publishAll(wire, `${topic}-partition-3`, ['d']);
  const stats = await wire.call<{ subscriptions: { name: string; backlog: number }[]; entries: number }>(
    'GetTopicStats',
    { topic },
  );
  t.is(Number(stats.entries), 4, 'entries summed over the 4 partitions');
  const agg = stats.subscriptions.find((s) => s.name === 'agg');
  t.truthy(agg);
  t.true(Number(agg!.backlog) >= 2, `backlog summed over partitions (${agg!.backlog})`);
  const c = await wire.subscribe(`${topic}-partition-3`, 'agg', { initialPosition: 'earliest' });
  c.flow(10);
  t.true(valuesOf(await c.receive(3, 5000)).includes('d'));
  c.close();
});
