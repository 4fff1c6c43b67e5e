import { useStandaloneWire, valuesOf } from './features-broker-wire.js';

const test = useStandaloneWire('sluice-delayed-');

for (const type of ['SUBSCRIPTION_TYPE_SHARED', 'SUBSCRIPTION_TYPE_KEY_SHARED']) {
  test(`delayed delivery - ${type}: held until deliver_at, later messages flow past it, a past delay delivers now`, async (t) => {
    const { wire } = t.context;
    const topic = `delayed-${type.toLowerCase()}`;
    const c = await wire.subscribe(topic, 'work', { type, initialPosition: 'earliest' });
    c.flow(1000);
    const p = await wire.produce(topic);
    const sentAt = Date.now();
    await p.publish(['late'], { deliverAt: sentAt + 2000, key: 'k1' });
    await p.publish(['past'], { deliverAt: sentAt - 60_000, key: 'k2' });
    await p.publish(['now'], { key: 'k3' });
    const early = await c.receive(2, 1500);
    t.deepEqual(valuesOf(early).sort(), ['now', 'past']);
    for (const d of early) c.ack(d.id);
    const [late] = await c.receive(1, 5000);
    t.truthy(late, 'the delayed message arrives');
    t.deepEqual(late!.values, ['late']);
    const waited = Date.now() - sentAt;
    t.true(waited >= 1900, `delivered after ${waited} ms, not before deliver_at`);
    t.true(waited < 4500, `delivered ${waited} ms after sending, near deliver_at`);
    c.ack(late!.id);
    p.close();
    c.close();
  });
}

test('delayed delivery - exclusive subscriptions deliver at once (delays apply to shared and key_shared)', async (t) => {
  const { wire } = t.context;
  const c = await wire.subscribe('delayed-exclusive', 'ex', { initialPosition: 'earliest' });
  c.flow(10);
  const p = await wire.produce('delayed-exclusive');
  await p.publish(['x'], { deliverAt: Date.now() + 60_000 });
  const got = await c.receive(1, 3000);
  t.deepEqual(valuesOf(got), ['x']);
  p.close();
  c.close();
});

test('delayed delivery - a delay beyond the namespace max is refused with INVALID_ARGUMENT and the stream goes on', async (t) => {
  const { wire } = t.context;
  await wire.call('CreateNamespace', { namespace: 'public/delays', policies: { maxDeliveryDelayMs: 5000 } });
  const topic = 'persistent://public/delays/capped';
  const p = await wire.produce(topic);
  p.send(['too-far'], { deliverAt: Date.now() + 60_000 });
  const r = await p.response();
  t.is(r.error?.errorCode, 'INVALID_ARGUMENT');
  t.regex(String(r.error?.message), /max delivery delay of 5000 ms/);
  const id = await p.publish(['fine'], { deliverAt: Date.now() + 1000 });
  t.true(Number(id.entryId) >= 0);
  const c = await wire.subscribe(topic, 's', {
    type: 'SUBSCRIPTION_TYPE_SHARED',
    initialPosition: 'earliest',
  });
  c.flow(10);
  t.deepEqual(valuesOf(await c.receive(1, 5000)), ['fine'], 'nothing refused was stored');
  p.close();
  c.close();
});

test('delayed delivery - a nack with delay redelivers after it with the redelivery count raised', async (t) => {
  const { wire } = t.context;
  const c = await wire.subscribe('nack-delay', 'n', {
    type: 'SUBSCRIPTION_TYPE_SHARED',
    initialPosition: 'earliest',
  });
  c.flow(10);
  const p = await wire.produce('nack-delay');
  await p.publish(['m']);
  const [first] = await c.receive(1);
  t.is(first!.redeliveryCount, 0);
  const nackedAt = Date.now();
  c.nack(800, first!.id);
  t.is((await c.receive(1, 500)).length, 0, 'not redelivered before the delay');
  const [again] = await c.receive(1, 5000);
  t.true(Date.now() - nackedAt >= 750);
  t.is(again!.redeliveryCount, 1);
  t.deepEqual(again!.values, ['m']);
  c.ack(again!.id);
  p.close();
  c.close();
});

test('delayed delivery - delayed messages survive a restart of the consumer (rebuilt from the log)', async (t) => {
  const { wire } = t.context;
  const topic = 'delayed-reconnect';
  const c = await wire.subscribe(topic, 'w', {
    type: 'SUBSCRIPTION_TYPE_SHARED',
    initialPosition: 'earliest',
  });
  c.flow(100);
  const p = await wire.produce(topic);
  const at = Date.now() + 2500;
  for (let i = 0; i < 5; i++) await p.publish([`d${i}`], { deliverAt: at });
  c.close();
  // Unloading drops the in-memory index; the next owner re-reads unacknowledged entries.
  await wire.call('UnloadTopic', { topic });
  const c2 = await wire.subscribe(topic, 'w', {
    type: 'SUBSCRIPTION_TYPE_SHARED',
    initialPosition: 'earliest',
  });
  c2.flow(100);
  t.is((await c2.receive(1, Math.max(0, at - Date.now() - 300))).length, 0, 'still held after reload');
  const got = await c2.receive(5, 6000);
  t.deepEqual(valuesOf(got).sort(), ['d0', 'd1', 'd2', 'd3', 'd4']);
  t.true(Date.now() >= at - 50);
  p.close();
  c2.close();
});
