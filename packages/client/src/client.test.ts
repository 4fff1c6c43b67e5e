import { AlreadyExistsError, InvalidArgumentError, murmur3, ResourceExhaustedError } from '@sluice/common';
import test from 'ava';
import { SluiceClient } from './index.js';
import type { Message } from './message.js';
import { setupFakeClient, waitUntil } from './test-support/client-rig.js';
import { FakeBroker, FakeCluster } from './test-support/fake-broker.js';

async function setup(t: { teardown(fn: () => Promise<void> | void): void }, cluster = new FakeCluster()) {
  return setupFakeClient(t, { cluster, operationTimeoutMs: 5000 });
}

async function take(consumer: AsyncIterable<Message>, n: number): Promise<Message[]> {
  const out: Message[] = [];
  if (n === 0) return out;
  for await (const m of consumer) {
    out.push(m);
    if (out.length === n) break;
  }
  return out;
}

test('producer - batches messages and resolves ids ledger:entry:index from the receipt', async (t) => {
  const { cluster, client } = await setup(t);
  const producer = await client.createProducer({
    topic: 't1',
    batching: { maxMessages: 3, maxDelayMs: 1000 },
  });
  const ids = await Promise.all(Array.from({ length: 6 }, (_, i) => producer.send(`m${i}`)));
  t.deepEqual(ids, ['7:0:0', '7:0:1', '7:0:2', '7:1:0', '7:1:1', '7:1:2']);
  const entries = cluster.topic('persistent://public/default/t1').entries;
  t.is(entries.length, 2);
  t.deepEqual(
    entries.map((e) => e.batch.header!.firstSequenceId),
    [0, 3],
  );
  t.is(producer.pending, 0);
});

test('producer - maxDelayMs 0 sends what one event-loop turn queued as one batch, at the end of that turn', async (t) => {
  const { cluster, client } = await setup(t);
  const producer = await client.createProducer({ topic: 't0', batching: { maxDelayMs: 0 } });
  // Count the flushes of the open batch (the partition producer's private flushAll).
  const part = (producer as unknown as { parts: { flushAll(): void }[] }).parts[0]!;
  const flushAll = part.flushAll.bind(part);
  let flushes = 0;
  part.flushAll = () => {
    flushes++;
    flushAll();
  };
  const sent = Promise.all(['a', 'b', 'c'].map((v) => producer.send(v)));
  t.is(flushes, 0, 'nothing leaves inside the turn that queued it');
  // An immediate queued after the sends runs before any timer could have fired.
  await new Promise((resolve) => setImmediate(resolve));
  t.is(flushes, 1, 'the batch left at the end of the turn, not after a timer');
  t.deepEqual(await sent, ['7:0:0', '7:0:1', '7:0:2']);
  t.deepEqual(await producer.send('d'), '7:1:0');
  const entries = cluster.topic('persistent://public/default/t0').entries;
  t.deepEqual(
    entries.map((e) => e.batch.header!.count),
    [3, 1],
  );
});

test('producer and consumer - keys, properties and event time round-trip', async (t) => {
  const { client } = await setup(t);
  const consumer = await client.subscribe({ topic: 't2', subscription: 's', initialPosition: 'earliest' });
  const producer = await client.createProducer({
    topic: 't2',
    compression: 'gzip',
    batching: { maxDelayMs: 5 },
  });
  const at = new Date('2024-01-02T03:04:05.678Z');
  const id = await producer.send(Buffer.from([1, 2, 3]), { key: 'k', properties: { p: 'v' }, eventTime: at });
  await producer.send('second');
  const [a, b] = await take(consumer, 2);
  t.is(a!.id, id);
  t.is(a!.key, 'k');
  t.deepEqual([...a!.value], [1, 2, 3]);
  t.deepEqual(a!.properties, { p: 'v' });
  t.is(a!.eventTime, at.getTime());
  t.is(a!.redeliveryCount, 0);
  t.is(a!.producerName, producer.name);
  t.true(a!.publishTime > 0);
  t.is(a!.topic, 'persistent://public/default/t2');
  t.is(b!.value.toString(), 'second');
  t.is(b!.eventTime, 0);
});

test('lookup - a FAILED_PRECONDITION redirect is followed to the owner named in sluice-owner', async (t) => {
  const cluster = new FakeCluster();
  const owner = await FakeBroker.start(cluster);
  let redirect: string | undefined = owner.address;
  const front = await FakeBroker.start(cluster, { redirectTo: () => redirect });
  const client = new SluiceClient({ serviceUrl: `sluice://${front.address}`, operationTimeoutMs: 5000 });
  t.teardown(async () => {
    await client.close();
    await front.stop();
    await owner.stop();
  });
  const producer = await client.createProducer({ topic: 'r', batching: { maxDelayMs: 0 } });
  t.is(await producer.send('x'), '7:0:0');
  t.is(owner.produceCalls.size, 1);
  t.is(front.produceCalls.size, 0);
  t.deepEqual(await client.admin.listTenants(), ['public', `from-${owner.address}`]);
  redirect = undefined;
  t.deepEqual(await client.admin.listTenants(), ['public', `from-${front.address}`]);
});

test('producer - after a stream failure it reconnects and resends pending batches; the broker dedups', async (t) => {
  const { cluster, broker, client } = await setup(t);
  const producer = await client.createProducer({
    topic: 'f',
    producerName: 'p1',
    batching: { maxMessages: 2, maxDelayMs: 1000 },
  });
  broker.holdReceipts = true;
  const sends = Array.from({ length: 4 }, (_, i) => producer.send(`v${i}`));
  await waitUntil(() => broker.received.length === 2);
  broker.killStreams(); // stored, but the receipts are lost with the stream
  broker.holdReceipts = false;
  const ids = await Promise.all(sends);
  t.deepEqual(ids, ['7:0:0', '7:0:1', '7:1:0', '7:1:1']);
  t.deepEqual(broker.received, [0, 2, 0, 2]);
  const entries = cluster.topic('persistent://public/default/f').entries;
  t.is(entries.length, 2, 'each batch stored once');
  t.is(await producer.send('after'), '7:2:0');
  t.is(producer.name, 'p1');
});

test('producer - a name in use fails a first create at once, but a reconnect retries until the broker lets the old stream go', async (t) => {
  const { broker, client } = await setup(t);
  const inUse = () =>
    new AlreadyExistsError(
      "producer name 'busy' is in use by a connected producer; give each producer a distinct producerName",
    );
  broker.refuseOpens.push(inUse());
  await t.throwsAsync(client.createProducer({ topic: 'busy', producerName: 'busy' }), {
    instanceOf: AlreadyExistsError,
    message: /is in use/,
  });
  t.is(broker.opens.length, 1, 'no retry of a first create');
  const producer = await client.createProducer({
    topic: 'busy',
    producerName: 'busy',
    batching: { maxDelayMs: 0 },
  });
  // The stream breaks, and the broker still holds the name for the first two attempts.
  broker.refuseOpens.push(inUse(), inUse());
  broker.killStreams();
  t.is(await producer.send('after'), '7:0:0');
  t.is(broker.opens.length, 5);
});

test('producer - a resumed producer name continues above the stored sequence id', async (t) => {
  const { cluster, client } = await setup(t);
  const first = await client.createProducer({
    topic: 'seq',
    producerName: 'same',
    batching: { maxDelayMs: 0 },
  });
  await first.send('a');
  await first.send('b');
  await first.close();
  const second = await client.createProducer({
    topic: 'seq',
    producerName: 'same',
    batching: { maxDelayMs: 0 },
  });
  await second.send('c');
  const entries = cluster.topic('persistent://public/default/seq').entries;
  t.deepEqual(
    entries.map((e) => e.batch.header!.firstSequenceId),
    [0, 1, 2],
  );
});

test('producer - send waits for room when the pending queue is full', async (t) => {
  const { broker, client } = await setup(t);
  const producer = await client.createProducer({
    topic: 'bp',
    maxPendingMessages: 3,
    batching: { maxMessages: 1, maxDelayMs: 0 },
  });
  broker.holdReceipts = true;
  const first = [producer.send('1'), producer.send('2'), producer.send('3')];
  let fourthDone = false;
  const fourth = producer.send('4').then((id) => {
    fourthDone = true;
    return id;
  });
  await waitUntil(() => broker.received.length === 3);
  await new Promise((r) => setTimeout(r, 50));
  t.false(fourthDone);
  t.is(broker.received.length, 3, 'the fourth message waits in send(), not on the wire');
  broker.releaseReceipts();
  await Promise.all(first);
  t.is(await fourth, '7:3:0');
});

test('producer - oversized messages and refused batches reject with typed errors', async (t) => {
  const { broker, client } = await setup(t);
  const producer = await client.createProducer({ topic: 'err', batching: { maxMessages: 1, maxDelayMs: 0 } });
  await t.throwsAsync(producer.send(Buffer.alloc(70 * 1024)), {
    instanceOf: InvalidArgumentError,
    message: /exceeds the max message size/,
  });
  broker.refuse.set(0, { code: 8, errorCode: 'RESOURCE_EXHAUSTED', message: 'backlog quota exceeded' });
  await t.throwsAsync(producer.send('refused'), {
    instanceOf: ResourceExhaustedError,
    message: /backlog quota/,
  });
  t.is(await producer.send('fine'), '7:0:0');
});

test('producer - sendWithCallback calls back once per message with its id or its error, never synchronously', async (t) => {
  const { broker, client } = await setup(t);
  const producer = await client.createProducer({
    topic: 'cb',
    batching: { maxMessages: 3, maxDelayMs: 1000 },
  });
  const viaCallback = (value: Buffer | string) =>
    new Promise<{ err: unknown; id: string | undefined; sync: boolean }>((resolve) => {
      let returned = false;
      producer.sendWithCallback(value, {}, (err, id) => resolve({ err, id, sync: !returned }));
      returned = true;
    });
  const ok = await Promise.all(Array.from({ length: 6 }, (_, i) => viaCallback(`m${i}`)));
  t.deepEqual(
    ok.map((r) => r.id),
    ['7:0:0', '7:0:1', '7:0:2', '7:1:0', '7:1:1', '7:1:2'],
  );
  t.true(ok.every((r) => r.err === undefined && !r.sync));
  const big = await viaCallback(Buffer.alloc(70 * 1024));
  t.true(big.err instanceof InvalidArgumentError && big.id === undefined && !big.sync);
  broker.refuse.set(6, { code: 8, errorCode: 'RESOURCE_EXHAUSTED', message: 'backlog quota exceeded' });
  const refused = await Promise.all([viaCallback('r0'), viaCallback('r1'), viaCallback('r2')]);
  t.true(refused.every((r) => r.err instanceof ResourceExhaustedError && r.id === undefined));
  t.is(producer.pending, 0, 'every slot given back');
  await producer.close();
  const closed = await viaCallback('late');
  t.true(closed.err instanceof Error && /closed/.test((closed.err as Error).message) && !closed.sync);
});

test('consumer - grants the receiver queue, then refills by halves as the app consumes', async (t) => {
  const { broker, client } = await setup(t);
  const producer = await client.createProducer({
    topic: 'flow',
    batching: { maxMessages: 1, maxDelayMs: 0 },
  });
  await Promise.all(Array.from({ length: 10 }, (_, i) => producer.send(`m${i}`)));
  const consumer = await client.subscribe({
    topic: 'flow',
    subscription: 's',
    initialPosition: 'earliest',
    receiverQueueSize: 4,
  });
  const got = await take(consumer, 10);
  t.deepEqual(
    got.map((m) => m.value.toString()),
    Array.from({ length: 10 }, (_, i) => `m${i}`),
  );
  t.is(broker.flows[0], 4);
  t.true(broker.flows.slice(1).every((p) => p === 2));
});

test('consumer - with no receiverQueueSize, an exclusive consumer of small messages grows its queue to the byte budget; shared does not', async (t) => {
  const { broker, client } = await setup(t);
  const producer = await client.createProducer({
    topic: 'grow',
    batching: { maxMessages: 100, maxDelayMs: 1 },
  });
  await Promise.all(Array.from({ length: 300 }, () => producer.send(Buffer.alloc(1024, 1))));
  const exclusive = await client.subscribe({
    topic: 'grow',
    subscription: 'ex',
    initialPosition: 'earliest',
    receiverQueueBytes: 4 * 1024 * 1024,
  });
  t.is((await take(exclusive, 300)).length, 300);
  t.is(broker.flows[0], 1000);
  // 4 MiB of 1 KiB messages: 4096 in all, the first 1000 granted at subscribe.
  // The grant goes out on the first delivery; the broker may read it after the 300 arrived.
  await waitUntil(() => broker.flows.includes(3096)).catch(() => undefined);
  t.true(broker.flows.includes(3096), `flows ${broker.flows.slice(0, 10).join(',')}`);
  await exclusive.close();

  const before = broker.flows.length;
  const shared = await client.subscribe({
    topic: 'grow',
    subscription: 'sh',
    type: 'shared',
    initialPosition: 'earliest',
    receiverQueueBytes: 4 * 1024 * 1024,
  });
  t.is((await take(shared, 300)).length, 300);
  t.true(broker.flows.slice(before).every((p) => p <= 1000));
});

test('consumer - a grown queue shrinks when messages get larger and never stalls while it pays the difference back', async (t) => {
  const { broker, client } = await setup(t);
  const producer = await client.createProducer({
    topic: 'shrink',
    batching: { maxMessages: 200, maxDelayMs: 1 },
  });
  await Promise.all(Array.from({ length: 1000 }, () => producer.send(Buffer.alloc(8, 2))));
  await Promise.all(Array.from({ length: 3000 }, () => producer.send(Buffer.alloc(1024, 3))));
  const consumer = await client.subscribe({
    topic: 'shrink',
    subscription: 's',
    initialPosition: 'earliest',
    receiverQueueBytes: 64 * 1024,
  });
  const got = await take(consumer, 4000);
  t.is(got.length, 4000);
  t.is(got.at(-1)?.value.length, 1024);
  // 64 KiB of 8-byte messages is 8192: the queue grew by 7192 and later shrank back toward 1000.
  await waitUntil(() => broker.flows.includes(7192)).catch(() => undefined);
  t.true(broker.flows.includes(7192), `flows ${broker.flows.slice(0, 10).join(',')}`);
});

test('consumer - receiverQueueBytes must be an integer >= 0', async (t) => {
  const { client } = await setup(t);
  await t.throwsAsync(client.subscribe({ topic: 'x', subscription: 's', receiverQueueBytes: -1 }), {
    message: /receiverQueueBytes must be an integer >= 0/,
  });
});

test('consumer - acks are grouped on the wire; unacked messages come back after a reconnect', async (t) => {
  const { broker, client } = await setup(t);
  const producer = await client.createProducer({ topic: 'ack', batching: { maxMessages: 2, maxDelayMs: 5 } });
  await Promise.all(['a', 'b', 'c', 'd'].map((v) => producer.send(v)));
  const consumer = await client.subscribe({
    topic: 'ack',
    subscription: 's',
    initialPosition: 'earliest',
    ackGroupTimeMs: 20,
  });
  const first = await take(consumer, 4);
  consumer.ack(first[0]!);
  consumer.ack(first[2]!.id);
  await waitUntil(() => broker.acks.length > 0);
  t.deepEqual(broker.acks, [{ ids: ['7:0:0', '7:1:0'], type: 'ACK_TYPE_UNSPECIFIED' }]);
  broker.killStreams();
  const again = await take(consumer, 2);
  t.deepEqual(
    again.map((m) => m.value.toString()),
    ['b', 'd'],
  );
  t.true(again.every((m) => m.redeliveryCount === 1));
  consumer.ackCumulative(again[1]!);
  consumer.nack(again[0]!);
  await waitUntil(() => broker.acks.length === 2 && broker.nacks.length === 1);
  t.deepEqual(broker.acks[1], { ids: ['7:1:1'], type: 'ACK_TYPE_CUMULATIVE' });
  t.deepEqual(broker.nacks[0], { ids: ['7:0:1'], delayMs: 2000 });
});

test('consumer - receive times out with undefined; close ends iteration', async (t) => {
  const { client } = await setup(t);
  const consumer = await client.subscribe({ topic: 'idle', subscription: 's' });
  t.is(await consumer.receive(30), undefined);
  const iterating = take(consumer, 1);
  await consumer.close();
  t.deepEqual(await iterating, []);
  await t.throwsAsync(consumer.receive(), { message: /closed/ });
});

test('consumer - receiveBatch waits for the first message, then takes only what is queued, in order', async (t) => {
  const { client } = await setup(t);
  const consumer = await client.subscribe({ topic: 'rb', subscription: 's', initialPosition: 'earliest' });
  t.deepEqual(await consumer.receiveBatch(10, 30), [], 'empty after the timeout');
  await t.throwsAsync(consumer.receiveBatch(0, 10), { instanceOf: InvalidArgumentError });
  const producer = await client.createProducer({ topic: 'rb', batching: { maxDelayMs: 0 } });
  const waiting = consumer.receiveBatch(3);
  await Promise.all(Array.from({ length: 7 }, (_, i) => producer.send(`m${i}`)));
  const got: string[] = (await waiting).map((m) => m.value.toString());
  t.true(got.length >= 1 && got.length <= 3, `${got.length} messages in the first batch`);
  // Once the rest is queued, one call takes all of it.
  await waitUntil(() => consumer.queuedMessages === 7 - got.length);
  const rest = await consumer.receiveBatch(10, 1000);
  t.is(rest.length, 7 - got.length);
  got.push(...rest.map((m) => m.value.toString()));
  t.deepEqual(
    got,
    Array.from({ length: 7 }, (_, i) => `m${i}`),
  );
  t.deepEqual(await consumer.receiveBatch(10, 30), [], 'nothing left');
  await consumer.close();
  await t.throwsAsync(consumer.receiveBatch(5), { message: /closed/ });
});

test('partitions - keyed sends land on murmur3(key) % n; a consumer merges every partition', async (t) => {
  const cluster = new FakeCluster();
  cluster.partitions.set('persistent://public/default/pt', 3);
  const { client } = await setup(t, cluster);
  const producer = await client.createProducer({ topic: 'pt', batching: { maxDelayMs: 1 } });
  t.is(producer.partitions, 3);
  const keys = ['alpha', 'beta', 'gamma', 'delta', 'epsilon', 'zeta'];
  const ids = await Promise.all(keys.map((key) => producer.send(key, { key })));
  for (const [i, key] of keys.entries())
    t.true(ids[i]!.endsWith(`:${murmur3(key) % 3}`), `${key} -> ${ids[i]}`);
  const unkeyed = await Promise.all([producer.send('x'), producer.send('y'), producer.send('z')]);
  t.deepEqual(unkeyed.map((id) => id.split(':')[3]).sort(), ['0', '1', '2']);

  const consumer = await client.subscribe({ topic: 'pt', subscription: 's', initialPosition: 'earliest' });
  const got = await take(consumer, 9);
  t.deepEqual(got.map((m) => m.id).sort(), [...ids, ...unkeyed].sort());
  for (const m of got) t.is(m.topic, `persistent://public/default/pt-partition-${m.id.split(':')[3]}`);
  consumer.ack(got[0]!);
});

test('reader - reads from earliest without acking', async (t) => {
  const { broker, client } = await setup(t);
  const producer = await client.createProducer({ topic: 'rd', batching: { maxDelayMs: 0 } });
  await producer.send('one');
  await producer.send('two');
  const reader = await client.createReader({ topic: 'rd', startMessageId: 'earliest' });
  t.is((await reader.readNext(2000))!.value.toString(), 'one');
  t.is((await reader.readNext(2000))!.value.toString(), 'two');
  t.is(await reader.readNext(30), undefined);
  await reader.close();
  t.deepEqual(broker.acks, []);
});

test('client - close flushes producers and stops consumers', async (t) => {
  const cluster = new FakeCluster();
  const broker = await FakeBroker.start(cluster);
  t.teardown(() => broker.stop());
  const client = new SluiceClient({ serviceUrl: broker.address });
  const producer = await client.createProducer({ topic: 'cl', batching: { maxDelayMs: 60_000 } });
  const pending = producer.send('flushed on close');
  const consumer = await client.subscribe({ topic: 'cl', subscription: 's' });
  await client.close();
  t.is(await pending, '7:0:0');
  await t.throwsAsync(consumer.receive(), { message: /closed/ });
  await t.throwsAsync(producer.send('late'), { message: /closed/ });
});

test('client - invalid options fail fast with clear errors', async (t) => {
  const { client } = await setup(t);
  await t.throwsAsync(client.subscribe({ topic: 'x', subscription: 's', type: 'fanout' as never }), {
    instanceOf: InvalidArgumentError,
    message: /unknown; use exclusive, shared, failover or key_shared/,
  });
  await t.throwsAsync(client.createProducer({ topic: 'x', compression: 'brotli' as never }), {
    instanceOf: InvalidArgumentError,
  });
  t.throws(() => new SluiceClient({ serviceUrl: 'http://nope:1' }), { instanceOf: InvalidArgumentError });
});
