import type { SluiceError } from '@sluice/common';
import test from 'ava';
import { encodeBatch } from './batch-codec.js';
import { setupFakeClient, waitUntil } from './test-support/client-rig.js';

async function setup(t: { teardown(fn: () => Promise<void> | void): void }, operationTimeoutMs = 3000) {
  return setupFakeClient(t, { operationTimeoutMs });
}

const seekRefusal = { code: 11, errorCode: 'OUT_OF_RANGE', message: 'cannot move the subscription there' };

test('seek - an ack refused just before the seek is not taken for its answer; the seek completes', async (t) => {
  const { broker, client } = await setup(t);
  broker.refuseUnknownAcks = true;
  const producer = await client.createProducer({ topic: 'sk-ack', batching: { maxMessages: 1 } });
  for (let i = 0; i < 8; i++) await producer.send(`m${i}`);
  const errors: SluiceError[] = [];
  const consumer = await client.subscribe({
    topic: 'sk-ack',
    subscription: 's',
    initialPosition: 'earliest',
    receiverQueueSize: 4,
    onError: (err) => errors.push(err),
  });
  const m0 = (await consumer.receive(3000))!;
  t.is(m0.value.toString(), 'm0');
  await waitUntil(() => consumer.queuedMessages === 3);
  // The seek sends the pending acks first: the second ack of m0 is refused (NOT_FOUND) before SeekDone.
  consumer.ack(m0);
  consumer.ack(m0);
  await t.notThrowsAsync(consumer.seek('earliest'));
  t.is(errors.length, 1);
  t.is(errors[0]?.code, 'NOT_FOUND');
  // The messages buffered before the seek are gone; the broker's new position comes first.
  const after: string[] = [];
  for (let m = await consumer.receive(500); m; m = await consumer.receive(500)) {
    after.push(m.value.toString());
    consumer.ack(m);
  }
  t.deepEqual(after, ['m0', 'm1', 'm2', 'm3', 'm4', 'm5', 'm6', 'm7']);
});

test('seek - a refused seek rejects and asks again for the deliveries dropped while it waited', async (t) => {
  const { broker, client } = await setup(t);
  const producer = await client.createProducer({ topic: 'sk-fail', batching: { maxMessages: 1 } });
  const consumer = await client.subscribe({
    topic: 'sk-fail',
    subscription: 's',
    initialPosition: 'earliest',
    receiverQueueSize: 4,
  });
  await producer.send('m0');
  t.is((await consumer.receive(3000))!.value.toString(), 'm0');
  broker.holdSeeks = true;
  const seek = consumer.seek('earliest');
  await waitUntil(() => broker.heldSeekCount === 1);
  // Published while the seek waits: delivered from the old position and dropped.
  for (let i = 1; i <= 4; i++) await producer.send(`m${i}`);
  await new Promise((r) => setTimeout(r, 100));
  t.is(consumer.queuedMessages, 0);
  broker.answerSeek(seekRefusal);
  const err = await t.throwsAsync<SluiceError>(seek);
  t.is(err?.code, 'OUT_OF_RANGE');
  // The broker did not move: the dropped messages come again and permits for more are granted.
  const got: string[] = [];
  for (let m = await consumer.receive(1000); m; m = await consumer.receive(500)) got.push(m.value.toString());
  t.deepEqual(got, ['m1', 'm2', 'm3', 'm4']);
  await producer.send('m5');
  t.is((await consumer.receive(2000))?.value.toString(), 'm5');
});

test('seek - a timed-out seek grants its dropped permits again, and its late SeekDone does not resolve the next seek', async (t) => {
  const { broker, client } = await setup(t, 800);
  const producer = await client.createProducer({ topic: 'sk-late', batching: { maxMessages: 1 } });
  const ids: string[] = [];
  for (let i = 0; i < 6; i++) ids.push(await producer.send(`m${i}`));
  const consumer = await client.subscribe({
    topic: 'sk-late',
    subscription: 's',
    initialPosition: 'latest',
    receiverQueueSize: 10,
  });
  broker.holdSeeks = true;
  const first = consumer.seek(ids[4]!);
  await waitUntil(() => broker.heldSeekCount === 1);
  await producer.send('m6');
  const timedOut = await t.throwsAsync<SluiceError>(first);
  t.is(timedOut?.code, 'TIMEOUT');
  // The delivery dropped while waiting is asked for again.
  t.is((await consumer.receive(2000))?.value.toString(), 'm6');
  let resolved = false;
  const second = consumer.seek(ids[1]!).then(() => {
    resolved = true;
  });
  await waitUntil(() => broker.heldSeekCount === 2);
  // The broker answers the first seek only now: that moves the consumer but is not the second's answer.
  broker.answerSeek();
  await new Promise((r) => setTimeout(r, 100));
  t.false(resolved);
  broker.answerSeek();
  await second;
  t.is((await consumer.receive(2000))?.value.toString(), 'm1');
});

test('consumer - cumulative acks on a shared subscription are refused before they reach the broker', async (t) => {
  const { broker, client } = await setup(t);
  const producer = await client.createProducer({ topic: 'cum', batching: { maxMessages: 1 } });
  await producer.send('m0');
  const consumer = await client.subscribe({
    topic: 'cum',
    subscription: 's',
    type: 'shared',
    initialPosition: 'earliest',
  });
  const m = (await consumer.receive(3000))!;
  t.throws(() => consumer.ackCumulative(m), { name: 'InvalidArgumentError' });
  await new Promise((r) => setTimeout(r, 50));
  t.deepEqual(broker.acks, []);
});

test('reader - started at latest, resumes after a reconnect from the first message delivered, not latest again', async (t) => {
  const { broker, client } = await setup(t);
  const producer = await client.createProducer({ topic: 'rd-latest', batching: { maxMessages: 1 } });
  await producer.send('before-reader');
  const reader = await client.createReader({ topic: 'rd-latest', startMessageId: 'latest' });
  for (const v of ['m1', 'm2', 'm3']) await producer.send(v);
  await new Promise((r) => setTimeout(r, 100));
  broker.killStreams();
  await waitUntil(() => broker.subscribes.length === 2);
  await producer.send('m4');
  const got: string[] = [];
  for (let m = await reader.readNext(1000); m; m = await reader.readNext(300)) got.push(m.value.toString());
  t.deepEqual(got, ['m1', 'm2', 'm3', 'm4']);
  t.is(broker.subscribes[1]?.startMessageId, '7:1:0');
});

test('reader - started at latest and given nothing yet, resumes after a reconnect where it started, not at the new latest', async (t) => {
  const { broker, client } = await setup(t);
  const producer = await client.createProducer({ topic: 'rd-idle', batching: { maxMessages: 1 } });
  await producer.send('before-reader');
  const reader = await client.createReader({ topic: 'rd-idle', startMessageId: 'latest' });
  // Published while the broker is away: the reader has no delivery to learn a position from.
  const port = Number(broker.address.split(':').at(-1));
  await broker.stop();
  for (const v of ['m1', 'm2']) {
    const batch = await encodeBatch(
      [{ key: '', value: Buffer.from(v), properties: {}, eventTime: 0, sendTime: 0 }],
      { firstSequenceId: 0, compression: 'none' },
    );
    broker.publishRaw('persistent://public/default/rd-idle', batch as never);
  }
  await broker.listen(port);
  await waitUntil(() => broker.subscribes.length === 2, 10_000);
  t.is(broker.subscribes[1]?.startMessageId, '7:1:0');
  const got: string[] = [];
  for (let m = await reader.readNext(2000); m; m = await reader.readNext(300)) got.push(m.value.toString());
  t.deepEqual(got, ['m1', 'm2']);
});

test('reader - after a seek by publish time, a reconnect resumes at what that time resolved to', async (t) => {
  const { broker, client } = await setup(t);
  const producer = await client.createProducer({ topic: 'rd-time', batching: { maxMessages: 1 } });
  await producer.send('old');
  await new Promise((r) => setTimeout(r, 20));
  const since = Date.now();
  await new Promise((r) => setTimeout(r, 20));
  for (const v of ['m1', 'm2']) await producer.send(v);
  const reader = await client.createReader({ topic: 'rd-time', startMessageId: 'latest' });
  await reader.seek({ publishTime: since });
  await new Promise((r) => setTimeout(r, 100));
  broker.killStreams();
  await waitUntil(() => broker.subscribes.length === 2);
  await producer.send('m3');
  const got: string[] = [];
  for (let m = await reader.readNext(1000); m; m = await reader.readNext(300)) got.push(m.value.toString());
  t.deepEqual(got, ['m1', 'm2', 'm3']);
});

test('reader - a seek by publish time with nothing delivered yet is sought again after a reconnect', async (t) => {
  const { broker, client } = await setup(t);
  const producer = await client.createProducer({ topic: 'rd-time2', batching: { maxMessages: 1 } });
  await producer.send('old');
  const reader = await client.createReader({ topic: 'rd-time2', startMessageId: 'earliest' });
  t.is((await reader.readNext(2000))?.value.toString(), 'old');
  const since = Date.now() + 50;
  await reader.seek({ publishTime: since });
  broker.killStreams();
  await waitUntil(() => broker.subscribes.length === 2);
  await new Promise((r) => setTimeout(r, 100));
  await producer.send('new');
  const got: string[] = [];
  for (let m = await reader.readNext(1000); m; m = await reader.readNext(300)) got.push(m.value.toString());
  t.deepEqual(got, ['new']);
  t.deepEqual(broker.seeks.at(-1), { publishTime: since });
});
