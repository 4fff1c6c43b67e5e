import { waitFor } from '../support/ports.js';
import { sleep, useStandaloneWire, valuesOf, type Wire } from './features-broker-wire.js';

const test = useStandaloneWire('sluice-quotas-');

const KB = (i: string) => `${i}:${'x'.repeat(1000)}`;
const label = (v: string) => v.split(':')[0];

async function backlogOf(wire: Wire, topic: string, sub: string): Promise<number> {
  const s = await wire.call<{ subscriptions: { name: string; backlog: number }[] }>('GetTopicStats', {
    topic,
  });
  return Number(s.subscriptions.find((x) => x.name === sub)?.backlog ?? -1);
}

test('message TTL - unacknowledged messages older than the TTL expire on every subscription, set on a loaded topic', async (t) => {
  const { wire } = t.context;
  const topic = 'persistent://public/default/ttl';
  const c = await wire.subscribe(topic, 'a', { initialPosition: 'earliest' });
  await wire.call('CreateSubscription', {
    topic,
    subscription: 'b',
    initialPosition: 'INITIAL_POSITION_EARLIEST',
  });
  const p = await wire.produce(topic);
  for (const v of ['e0', 'e1', 'e2']) await p.publish([v]);
  t.is(await backlogOf(wire, topic, 'b'), 3);
  // The topic is loaded with a producer and a consumer: the policy applies without an unload.
  await wire.call('SetTopicPolicies', { topic, policies: { messageTtlMs: 1000 } });
  await waitFor(
    async () => (await backlogOf(wire, topic, 'a')) === 0 && (await backlogOf(wire, topic, 'b')) === 0,
    8000,
    'both backlogs to expire',
  );
  c.flow(10);
  t.is((await c.receive(1, 300)).length, 0, 'expired messages are not delivered');
  await p.publish(['fresh']);
  t.deepEqual(valuesOf(await c.receive(1)), ['fresh']);
  p.close();
  c.close();
});

test('backlog quota - producer_hold holds sends (no error) until consumers catch up', async (t) => {
  const { wire } = t.context;
  await wire.call('CreateNamespace', {
    namespace: 'public/hold',
    policies: { backlogQuota: { limitBytes: 4000, policy: 'BACKLOG_QUOTA_POLICY_PRODUCER_HOLD' } },
  });
  const topic = 'persistent://public/hold/t';
  const c = await wire.subscribe(topic, 's', { initialPosition: 'earliest' });
  const p = await wire.produce(topic);
  for (let i = 0; i < 12; i++) p.send([KB(`h${i}`)]);
  const receipts: number[] = [];
  for (;;) {
    const r = await p.stream.next(1500);
    if (!r) break;
    t.falsy((r as { error?: unknown }).error, 'held, never refused');
    receipts.push(1);
  }
  t.true(receipts.length < 12, `only ${receipts.length} of 12 stored while over quota`);
  t.true(receipts.length >= 3, `${receipts.length} stored before the quota was reached`);
  c.flow(100);
  let acked = 0;
  while (acked < 12) {
    const ds = await c.receive(1, 5000);
    if (ds.length === 0) break;
    for (const d of ds) c.ack(d.id);
    acked++;
  }
  t.is(acked, 12, 'every held send was stored once consumers caught up');
  for (let i = receipts.length; i < 12; i++) t.truthy((await p.response()).receipt);
  p.close();
  c.close();
});

test('backlog quota - producer_exception refuses sends with RESOURCE_EXHAUSTED until the backlog shrinks', async (t) => {
  const { wire } = t.context;
  await wire.call('CreateNamespace', {
    namespace: 'public/refuse',
    policies: { backlogQuota: { limitBytes: 4000, policy: 'BACKLOG_QUOTA_POLICY_PRODUCER_EXCEPTION' } },
  });
  const topic = 'persistent://public/refuse/t';
  const c = await wire.subscribe(topic, 's', { initialPosition: 'earliest' });
  const p = await wire.produce(topic);
  let stored = 0;
  let refused: Record<string, unknown> | undefined;
  for (let i = 0; i < 30 && !refused; i++) {
    p.send([KB(`r${i}`)]);
    const r = await p.response();
    if (r.receipt) stored++;
    else refused = r.error;
    await sleep(20);
  }
  t.is(refused?.errorCode, 'RESOURCE_EXHAUSTED');
  t.regex(String(refused?.message), /over its quota of 4000 bytes/);
  t.true(stored >= 3);
  c.flow(100);
  for (const d of await c.receive(stored)) c.ack(d.id);
  await sleep(300);
  t.truthy((await p.publish([KB('after')])).ledgerId !== undefined, 'accepted again once under quota');
  p.close();
  c.close();
});

test('backlog quota - consumer_backlog_eviction evicts the slow subscription only, never what another one needs', async (t) => {
  const { wire } = t.context;
  await wire.call('CreateNamespace', {
    namespace: 'public/evict',
    policies: {
      backlogQuota: { limitBytes: 5000, policy: 'BACKLOG_QUOTA_POLICY_CONSUMER_BACKLOG_EVICTION' },
    },
  });
  const topic = 'persistent://public/evict/t';
  for (const s of ['fast', 'slow'])
    await wire.call('CreateSubscription', {
      topic,
      subscription: s,
      initialPosition: 'INITIAL_POSITION_EARLIEST',
    });
  const p = await wire.produce(topic);
  const fast = await wire.subscribe(topic, 'fast');
  fast.flow(100);
  for (let i = 0; i < 10; i++) await p.publish([KB(`old${i}`)]);
  for (const d of await fast.receive(10)) fast.ack(d.id);
  // 'fast' still needs these three (delivered, not acknowledged).
  for (let i = 0; i < 3; i++) await p.publish([KB(`new${i}`)]);
  t.is((await fast.receive(3)).length, 3);
  await waitFor(
    async () => (await backlogOf(wire, topic, 'slow')) <= 5,
    8000,
    "the slow subscription's eviction",
  );
  t.is(await backlogOf(wire, topic, 'fast'), 3, 'the subscription within quota is untouched');

  const slow = await wire.subscribe(topic, 'slow');
  slow.flow(100);
  const slowGot = valuesOf(await slow.receive(13, 2000)).map(label);
  t.false(slowGot.includes('old0'), 'the oldest backlog was evicted');
  t.true(slowGot.length <= 5, `slow kept ${slowGot.length} entries`);
  for (const v of ['new0', 'new1', 'new2']) t.true(slowGot.includes(v));

  fast.close();
  const again = await wire.subscribe(topic, 'fast');
  again.flow(100);
  t.deepEqual(
    valuesOf(await again.receive(3)).map(label),
    ['new0', 'new1', 'new2'],
    'fast still gets what it needs',
  );
  p.close();
  slow.close();
  again.close();
});
