import { CorruptDataError, type SluiceError } from '@sluice/common';
import test from 'ava';
import { encodeBatch } from './batch-codec.js';
import type { CompressionType } from './compression.js';
import { LETTER_PROPERTIES, redeliveryDelay } from './index.js';
import { setupFakeClient, waitUntil } from './test-support/client-rig.js';

async function setup(t: { teardown(fn: () => Promise<void> | void): void }) {
  return setupFakeClient(t, { operationTimeoutMs: 3000 });
}

const full = (topic: string) => `persistent://public/default/${topic}`;

test('compression - lz4, zstd, gzip and deflate producers are read by one consumer', async (t) => {
  const { cluster, client } = await setup(t);
  const consumer = await client.subscribe({ topic: 'cz', subscription: 's', initialPosition: 'earliest' });
  const codecs: CompressionType[] = ['lz4', 'zstd', 'gzip', 'deflate', 'none'];
  for (const compression of codecs) {
    const producer = await client.createProducer({ topic: 'cz', compression });
    await producer.send(`${compression} ${'x'.repeat(200)}`, { properties: { codec: compression } });
    await producer.close();
  }
  const wire = cluster.topic(full('cz')).entries.map((e) => e.batch.header!.codec);
  t.deepEqual(wire, [
    'COMPRESSION_CODEC_LZ4',
    'COMPRESSION_CODEC_ZSTD',
    'COMPRESSION_CODEC_GZIP',
    'COMPRESSION_CODEC_DEFLATE',
    'COMPRESSION_CODEC_UNSPECIFIED',
  ]);
  for (const compression of codecs) {
    const msg = await consumer.receive(3000);
    t.is(msg?.value.toString(), `${compression} ${'x'.repeat(200)}`);
    t.deepEqual(msg?.properties, { codec: compression });
    consumer.ack(msg!);
  }
});

test('compression - a batch with an unknown codec is reported for its ids; the consumer reads on', async (t) => {
  const { broker, client } = await setup(t);
  const errors: SluiceError[] = [];
  const consumer = await client.subscribe({
    topic: 'cu',
    subscription: 's',
    initialPosition: 'earliest',
    onError: (err) => errors.push(err),
  });
  const good = await encodeBatch(
    [{ key: '', value: Buffer.from('fine'), properties: {}, eventTime: 0, sendTime: 0 }],
    {
      firstSequenceId: 0,
      compression: 'zstd',
    },
  );
  const bad = { ...good, header: { ...good.header!, codec: 7 } };
  const stored = broker.publishRaw(full('cu'), bad as never);
  broker.publishRaw(full('cu'), good as never);
  const msg = await consumer.receive(3000);
  t.is(msg?.value.toString(), 'fine');
  t.is(errors.length, 1);
  t.is(errors[0]!.code, 'INVALID_ARGUMENT');
  t.regex(
    errors[0]!.message,
    new RegExp(`${stored.ledgerId}:${stored.entryId}:0 .*codec 7 is not supported`),
  );
  const corrupt = { ...good, payload: Buffer.from('garbage') };
  broker.publishRaw(full('cu'), corrupt as never);
  await waitUntil(() => errors.length === 2);
  t.true(errors[1] instanceof CorruptDataError);
});

test('nack - redelivery backoff grows with the redelivery count and the count is on every message', async (t) => {
  const { broker, client } = await setup(t);
  const backoff = { minDelayMs: 20, maxDelayMs: 70, multiplier: 3 };
  t.is(redeliveryDelay(backoff, 0), 20);
  t.is(redeliveryDelay(backoff, 1), 60);
  t.is(redeliveryDelay(backoff, 2), 70);
  const consumer = await client.subscribe({
    topic: 'nk',
    subscription: 's',
    type: 'shared',
    initialPosition: 'earliest',
    nackRedeliveryBackoff: backoff,
    ackGroupTimeMs: 1,
  });
  const producer = await client.createProducer({ topic: 'nk' });
  await producer.send('again');
  const counts: number[] = [];
  for (let i = 0; i < 3; i++) {
    const msg = (await consumer.receive(3000))!;
    counts.push(msg.redeliveryCount);
    consumer.nack(msg);
  }
  const last = (await consumer.receive(3000))!;
  consumer.ack(last);
  t.deepEqual(counts, [0, 1, 2]);
  t.is(last.redeliveryCount, 3);
  t.deepEqual(
    broker.nacks.map((n) => n.delayMs),
    [20, 60, 70],
  );
});

test('nack - a bad backoff is refused when subscribing', async (t) => {
  const { client } = await setup(t);
  await t.throwsAsync(
    client.subscribe({
      topic: 'nb',
      subscription: 's',
      nackRedeliveryBackoff: { minDelayMs: 10, multiplier: 0.5 },
    }),
    { message: /multiplier >= 1/ },
  );
});

test('ack timeout - messages held unacknowledged past it are nacked at once and come back', async (t) => {
  const { broker, client } = await setup(t);
  const consumer = await client.subscribe({
    topic: 'at',
    subscription: 's',
    type: 'shared',
    initialPosition: 'earliest',
    ackTimeoutMs: 100,
    ackGroupTimeMs: 1,
  });
  const producer = await client.createProducer({ topic: 'at' });
  await producer.send('slow');
  await producer.send('fast');
  const slow = (await consumer.receive(3000))!;
  const fast = (await consumer.receive(3000))!;
  consumer.ack(fast);
  const again = (await consumer.receive(3000))!;
  t.is(again.value.toString(), 'slow');
  t.is(again.id, slow.id);
  t.is(again.redeliveryCount, 1);
  t.deepEqual(broker.nacks, [{ ids: [slow.id], delayMs: 0 }]);
  consumer.ack(again);
  t.is(await consumer.receive(300), undefined);
});

test('dead letter - a message redelivered maxRedeliverCount times goes to <topic>-<sub>-DLQ and is acked', async (t) => {
  const { broker, cluster, client } = await setup(t);
  const consumer = await client.subscribe({
    topic: 'dl',
    subscription: 'sub',
    type: 'shared',
    initialPosition: 'earliest',
    nackRedeliveryBackoff: { minDelayMs: 1, maxDelayMs: 1 },
    deadLetterPolicy: { maxRedeliverCount: 2 },
    ackGroupTimeMs: 1,
  });
  const producer = await client.createProducer({ topic: 'dl' });
  const id = await producer.send('poison', { key: 'k', properties: { a: '1' }, eventTime: 1234 });
  for (let i = 0; i < 2; i++) {
    const msg = (await consumer.receive(3000))!;
    t.is(msg.redeliveryCount, i);
    consumer.nack(msg);
  }
  const dlq = await client.subscribe({ topic: 'dl-sub-DLQ', subscription: 'x', initialPosition: 'earliest' });
  const dead = (await dlq.receive(3000))!;
  t.is(dead.value.toString(), 'poison');
  t.is(dead.key, 'k');
  t.is(dead.eventTime, 1234);
  t.deepEqual(dead.properties, {
    a: '1',
    [LETTER_PROPERTIES.realTopic]: full('dl'),
    [LETTER_PROPERTIES.originMessageId]: id,
  });
  await waitUntil(() => broker.acks.some((a) => a.ids.includes(id)));
  t.is(await consumer.receive(200), undefined);
  t.is(cluster.topic(full('dl-sub-DLQ')).entries.length, 1);
});

test('retry - reconsumeLater publishes to the retry topic with a delay, counts, then dead-letters', async (t) => {
  const { cluster, client } = await setup(t);
  const consumer = await client.subscribe({
    topic: 'rt',
    subscription: 'sub',
    type: 'shared',
    initialPosition: 'earliest',
    enableRetry: true,
    deadLetterPolicy: { maxRedeliverCount: 2, retryLetterTopic: 'rt-retries' },
    ackGroupTimeMs: 1,
  });
  const producer = await client.createProducer({ topic: 'rt' });
  const id = await producer.send('later');
  const seen: Record<string, string>[] = [];
  for (let i = 0; i < 3; i++) {
    const msg = (await consumer.receive(3000))!;
    t.is(msg.value.toString(), 'later');
    seen.push(msg.properties);
    const before = Date.now();
    await consumer.reconsumeLater(msg, 50);
    if (i < 2) {
      const entries = cluster.topic(full('rt-retries')).entries;
      t.true(Number(entries.at(-1)!.batch.header!.deliverAt) >= before + 50);
    }
  }
  t.deepEqual(seen[0], {});
  t.is(seen[1]![LETTER_PROPERTIES.reconsumeTimes], '1');
  t.is(seen[2]![LETTER_PROPERTIES.reconsumeTimes], '2');
  t.is(seen[2]![LETTER_PROPERTIES.originMessageId], id);
  t.is(seen[2]![LETTER_PROPERTIES.delayTime], '50');
  t.is(cluster.topic(full('rt-retries')).entries.length, 2);
  const dead = cluster.topic(full('rt-sub-DLQ')).entries;
  t.is(dead.length, 1);
  await t.throwsAsync(
    (await client.subscribe({ topic: 'rt2', subscription: 's' })).reconsumeLater(seen as never, 1),
    { message: /enableRetry/ },
  );
});

test('seek - by message id and by publish time; messages queued before it are dropped', async (t) => {
  const { broker, client } = await setup(t);
  const consumer = await client.subscribe({ topic: 'sk', subscription: 's', initialPosition: 'earliest' });
  const producer = await client.createProducer({ topic: 'sk', batching: { maxMessages: 1 } });
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) ids.push(await producer.send(`m${i}`));
  const first = (await consumer.receive(3000))!;
  t.is(first.value.toString(), 'm0');
  // m1..m4 sit in the local queue now; the seek must drop them.
  await consumer.seek(ids[3]!);
  t.deepEqual(broker.seeks, [{ messageId: ids[3] }]);
  t.is((await consumer.receive(3000))!.value.toString(), 'm3');
  t.is((await consumer.receive(3000))!.value.toString(), 'm4');
  await consumer.seek({ publishTime: 0 });
  t.is((await consumer.receive(3000))!.value.toString(), 'm0');
  await consumer.seek('latest');
  t.is(await consumer.receive(200), undefined);
  await producer.send('after');
  t.is((await consumer.receive(3000))!.value.toString(), 'after');
});

test('reader - non-durable from a message id, inclusive; seek moves it', async (t) => {
  const { broker, client } = await setup(t);
  const producer = await client.createProducer({ topic: 'rd', batching: { maxMessages: 1 } });
  const ids: string[] = [];
  for (let i = 0; i < 4; i++) ids.push(await producer.send(`m${i}`));
  const reader = await client.createReader({ topic: 'rd', startMessageId: ids[2]! });
  t.like(broker.subscribes.at(-1), { nonDurable: true, startMessageId: ids[2] });
  t.is((await reader.readNext(3000))!.value.toString(), 'm2');
  t.is((await reader.readNext(3000))!.value.toString(), 'm3');
  await reader.seek(ids[0]!);
  t.is((await reader.readNext(3000))!.value.toString(), 'm0');
  t.deepEqual(broker.acks, []);
});

test('delayed delivery - deliverAt/deliverAfter travel in batches of their own; the past means now', async (t) => {
  const { cluster, client } = await setup(t);
  const producer = await client.createProducer({ topic: 'dd', batching: { maxDelayMs: 50 } });
  const at = Date.now() + 60_000;
  await Promise.all([
    producer.send('now-1'),
    producer.send('at', { deliverAt: new Date(at) }),
    producer.send('after', { deliverAfter: 5000 }),
    producer.send('now-2'),
    producer.send('past', { deliverAt: Date.now() - 1000 }),
  ]);
  const entries = cluster.topic(full('dd')).entries;
  t.is(entries.length, 3);
  const delays = entries.map((e) => Number(e.batch.header!.deliverAt)).sort((a, b) => a - b);
  t.is(delays[0], 0);
  t.is(delays[2], at);
  t.true(delays[1]! >= Date.now() + 4000);
  t.is(entries.find((e) => Number(e.batch.header!.deliverAt) === 0)!.batch.header!.count, 3);
  await t.throwsAsync(producer.send('bad', { deliverAfter: Number.NaN }), { message: /deliverAfter/ });
});

test('producer - the access mode goes to the broker; an unknown mode is refused', async (t) => {
  const { broker, client } = await setup(t);
  await (await client.createProducer({ topic: 'am', accessMode: 'exclusive' })).close();
  await (await client.createProducer({ topic: 'am', accessMode: 'wait_for_exclusive' })).close();
  await (await client.createProducer({ topic: 'am' })).close();
  t.deepEqual(
    broker.opens.map((o) => o.accessMode),
    [
      'PRODUCER_ACCESS_MODE_EXCLUSIVE',
      'PRODUCER_ACCESS_MODE_WAIT_FOR_EXCLUSIVE',
      'PRODUCER_ACCESS_MODE_UNSPECIFIED',
    ],
  );
  await t.throwsAsync(client.createProducer({ topic: 'am', accessMode: 'solo' as never }), {
    message: /access mode 'solo'/,
  });
});
