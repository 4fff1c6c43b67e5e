import type { SluiceError } from '@sluice/common';
import test from 'ava';
import type { SluiceClient } from './index.js';
import { setupFakeClient } from './test-support/client-rig.js';

async function setup(t: { teardown(fn: () => Promise<void> | void): void }, operationTimeoutMs = 3000) {
  return setupFakeClient(t, { operationTimeoutMs });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** 'pending' if `p` has not settled within `ms`, else how it settled. */
async function within(p: Promise<unknown>, ms: number): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve('pending'), ms);
  });
  const settled = p.then(
    () => 'resolved',
    (err: SluiceError) => `rejected ${err.code}`,
  );
  return Promise.race([settled, late]).finally(() => clearTimeout(timer));
}

async function storedValues(client: SluiceClient, topic: string): Promise<string[]> {
  const consumer = await client.subscribe({ topic, subscription: 'check', initialPosition: 'earliest' });
  const got: string[] = [];
  for (let m = await consumer.receive(500); m; m = await consumer.receive(300)) got.push(m.value.toString());
  await consumer.close();
  return got;
}

test('producer - flush waits for sends that still wait for room in the pending queue', async (t) => {
  const { broker, client } = await setup(t);
  const producer = await client.createProducer({
    topic: 'fl',
    maxPendingMessages: 2,
    batching: { maxMessages: 2, maxDelayMs: 50 },
  });
  broker.holdReceipts = true;
  const settled: string[] = [];
  const sends = ['m0', 'm1', 'm2', 'm3'].map((m) => producer.send(m).then(() => settled.push(m)));
  await sleep(100);
  const flushed = producer.flush().then(() => [...settled]);
  broker.releaseReceipts();
  t.deepEqual((await flushed).sort(), ['m0', 'm1', 'm2', 'm3']);
  t.is(producer.pending, 0);
  await Promise.all(sends);
});

test('producer - close stores the sends waiting for room while the broker is healthy', async (t) => {
  const { broker, client } = await setup(t);
  const producer = await client.createProducer({
    topic: 'cl',
    maxPendingMessages: 2,
    batching: { maxMessages: 2, maxDelayMs: 50 },
  });
  broker.holdReceipts = true;
  const sends = ['m0', 'm1', 'm2', 'm3'].map((m) => within(producer.send(m), 3000));
  await sleep(100);
  const closing = producer.close();
  setTimeout(() => broker.releaseReceipts(), 20);
  await closing;
  t.deepEqual(await Promise.all(sends), ['resolved', 'resolved', 'resolved', 'resolved']);
  t.deepEqual(await storedValues(client, 'cl'), ['m0', 'm1', 'm2', 'm3']);
});

test('producer - a send from a send callback cannot overtake sends waiting for room', async (t) => {
  const { broker, client } = await setup(t);
  const producer = await client.createProducer({
    topic: 'ord',
    maxPendingMessages: 3,
    batching: { maxMessages: 3, maxDelayMs: 50 },
  });
  broker.holdReceipts = true;
  const errors: unknown[] = [];
  const cb = (after?: () => void) => (err: unknown) => {
    if (err) errors.push(err);
    after?.();
  };
  producer.sendWithCallback(
    'm0',
    {},
    cb(() => producer.sendWithCallback('m4', {}, cb())),
  );
  producer.sendWithCallback('m1', {}, cb());
  producer.sendWithCallback('m2', {}, cb());
  producer.sendWithCallback('m3', {}, cb()); // waits for room
  await sleep(100);
  broker.releaseReceipts();
  await sleep(50);
  await producer.flush();
  t.deepEqual(errors, []);
  t.deepEqual(await storedValues(client, 'ord'), ['m0', 'm1', 'm2', 'm3', 'm4']);
});

test('producer - a send the broker never answers is rejected after sendTimeoutMs; flush and close settle', async (t) => {
  const { broker, client } = await setup(t, 1000);
  const producer = await client.createProducer({ topic: 'to', sendTimeoutMs: 300 });
  await broker.stop();
  const started = Date.now();
  const send = producer.send('x');
  t.is(await within(send, 3000), 'rejected TIMEOUT');
  t.true(Date.now() - started >= 250);
  t.is(await within(producer.flush(), 1000), 'resolved');
  t.is(producer.pending, 0);
  t.is(await within(producer.close(), 3000), 'resolved');
});

test('producer - sends waiting for room and batches in flight time out alike', async (t) => {
  const { broker, client } = await setup(t);
  const producer = await client.createProducer({
    topic: 'to2',
    maxPendingMessages: 1,
    sendTimeoutMs: 300,
    batching: { maxMessages: 1 },
  });
  broker.holdReceipts = true;
  const results = await Promise.all(['a', 'b', 'c'].map((v) => within(producer.send(v), 3000)));
  t.deepEqual(results, ['rejected TIMEOUT', 'rejected TIMEOUT', 'rejected TIMEOUT']);
  const err = await t.throwsAsync<SluiceError>(
    new Promise((_resolve, reject) => producer.sendWithCallback('d', {}, (e) => reject(e))),
  );
  t.is(err?.name, 'TimeoutError');
  t.true(err?.retriable);
  t.is(producer.pending, 0);
  // The broker answers again: the producer carries on.
  broker.releaseReceipts();
  t.regex(await producer.send('e'), /^7:\d+:0$/);
});

test('producer - sendTimeoutMs must be 0 or more', async (t) => {
  const { client } = await setup(t);
  await t.throwsAsync(client.createProducer({ topic: 'bad', sendTimeoutMs: -1 }), {
    name: 'InvalidArgumentError',
  });
});
