import { sleep, useStandaloneWire } from './features-broker-wire.js';

const test = useStandaloneWire('sluice-broker-fixes-');

test('broker fixes - a batch key over 64 KiB is refused and its sequence id can still be stored', async (t) => {
  const { wire } = t.context;
  const p = await wire.produce('long-key');
  p.send(['too-long'], { key: 'k'.repeat(70_000) });
  const refused = await p.response();
  t.is(refused.error?.errorCode, 'INVALID_ARGUMENT');
  t.regex(String(refused.error?.message), /batch key of 70000 bytes exceeds/);
  // The same sequence id again, with a usable key: stored, not answered as a duplicate.
  (p as unknown as { seq: number }).seq = 0;
  p.send(['ok'], { key: 'short' });
  const stored = await p.response();
  t.falsy(stored.error);
  t.false(Boolean(stored.receipt?.duplicate));
  t.true(Number(stored.receipt?.messageId.entryId) >= 0);
  p.close();
});

test('broker fixes - acks sent right after a reconnect, before any permits, are applied', async (t) => {
  const { wire } = t.context;
  const topic = 'reconnect-acks';
  const p = await wire.produce(topic);
  for (const v of ['a', 'b', 'c', 'd']) await p.publish([v]);
  p.close();
  const first = await wire.subscribe(topic, 's', {
    type: 'SUBSCRIPTION_TYPE_SHARED',
    initialPosition: 'earliest',
  });
  first.flow(10);
  const got = await first.receive(4);
  t.deepEqual(
    got.flatMap((d) => d.values),
    ['a', 'b', 'c', 'd'],
  );
  first.close();
  await sleep(300);
  const second = await wire.subscribe(topic, 's', { type: 'SUBSCRIPTION_TYPE_SHARED' });
  second.ack(got[1]!.id, got[2]!.id);
  await sleep(200);
  second.flow(10);
  const again = await second.receive(4, 1500);
  t.deepEqual(
    again.flatMap((d) => d.values),
    ['a', 'd'],
  );
  second.close();
});
