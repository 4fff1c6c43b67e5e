import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type CompressionType, LETTER_PROPERTIES, SluiceClient } from '@sluice/client';
import test from 'ava';
import { freePort, waitFor } from '../support/ports.js';

// The client-side messaging features against a real standalone broker:
// compression, properties, nack backoff and redelivery counts, ack timeout,
// dead letters, retry topics, delayed delivery, seek, readers, access modes.

const BIN = fileURLToPath(new URL('../../packages/cli/dist/bin.js', import.meta.url));

let child: ChildProcess | undefined;
let dataDir = '';
let client: SluiceClient;

test.before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'sluice-features-'));
  const [port, httpPort] = [await freePort(), await freePort()];
  const proc = spawn(
    process.execPath,
    [BIN, 'standalone', '--data-dir', dataDir, '--port', String(port), '--http-port', String(httpPort)],
    { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, SLUICE_LOG_LEVEL: 'warn' } },
  );
  child = proc;
  await waitFor(
    async () => {
      if (proc.exitCode !== null) throw new Error(`standalone exited with ${proc.exitCode}`);
      return (await fetch(`http://127.0.0.1:${httpPort}/readyz`)).ok;
    },
    30_000,
    'standalone',
  );
  client = new SluiceClient({ serviceUrl: `127.0.0.1:${port}`, operationTimeoutMs: 10_000 });
});

test.after.always(async () => {
  await client?.close();
  child?.kill('SIGKILL');
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

const full = (topic: string) => `persistent://public/default/${topic}`;

test.serial('compression - lz4, zstd, gzip and deflate batches round-trip through the broker', async (t) => {
  const consumer = await client.subscribe({
    topic: 'f-codecs',
    subscription: 's',
    initialPosition: 'earliest',
  });
  const codecs: CompressionType[] = ['lz4', 'zstd', 'gzip', 'deflate', 'none'];
  const body = (c: string, i: number) => `${c}-${i}-${'payload '.repeat(50)}`;
  for (const compression of codecs) {
    const producer = await client.createProducer({
      topic: 'f-codecs',
      compression,
      batching: { maxDelayMs: 20 },
    });
    await Promise.all(Array.from({ length: 20 }, (_, i) => producer.send(body(compression, i))));
    await producer.close();
  }
  for (const compression of codecs) {
    for (let i = 0; i < 20; i++) {
      const msg = await consumer.receive(5000);
      t.is(msg?.value.toString(), body(compression, i));
      consumer.ack(msg!);
    }
  }
  await consumer.close();
});

test.serial('properties and event time - round-trip with keys through a real broker', async (t) => {
  const consumer = await client.subscribe({
    topic: 'f-props',
    subscription: 's',
    initialPosition: 'earliest',
  });
  const producer = await client.createProducer({ topic: 'f-props', compression: 'zstd' });
  const eventTime = Date.parse('2024-05-01T12:00:00.123Z');
  const id = await producer.send('with props', { key: 'k1', properties: { a: '1', ü: 'ß' }, eventTime });
  const msg = (await consumer.receive(5000))!;
  t.is(msg.id, id);
  t.is(msg.key, 'k1');
  t.deepEqual(msg.properties, { a: '1', ü: 'ß' });
  t.is(msg.eventTime, eventTime);
  t.is(msg.producerName, producer.name);
  t.true(msg.publishTime >= eventTime);
  consumer.ack(msg);
  await producer.close();
  await consumer.close();
});

test.serial('nack - redelivered after the backoff with a growing redelivery count', async (t) => {
  const consumer = await client.subscribe({
    topic: 'f-nack',
    subscription: 's',
    type: 'shared',
    initialPosition: 'earliest',
    nackRedeliveryBackoff: { minDelayMs: 200, maxDelayMs: 1000, multiplier: 2 },
  });
  const producer = await client.createProducer({ topic: 'f-nack' });
  await producer.send('retry me');
  const seen: { count: number; at: number }[] = [];
  for (let i = 0; i < 3; i++) {
    const msg = (await consumer.receive(5000))!;
    seen.push({ count: msg.redeliveryCount, at: Date.now() });
    if (i < 2) consumer.nack(msg);
    else consumer.ack(msg);
  }
  t.deepEqual(
    seen.map((s) => s.count),
    [0, 1, 2],
  );
  // 200 ms, then 400 ms (minus timer slack).
  t.true(seen[1]!.at - seen[0]!.at >= 180, `first redelivery after ${seen[1]!.at - seen[0]!.at} ms`);
  t.true(seen[2]!.at - seen[1]!.at >= 360, `second redelivery after ${seen[2]!.at - seen[1]!.at} ms`);
  t.is(await consumer.receive(500), undefined);
  await producer.close();
  await consumer.close();
});

test.serial('ack timeout - a message left unacknowledged comes back with redelivery count 1', async (t) => {
  const consumer = await client.subscribe({
    topic: 'f-ackto',
    subscription: 's',
    type: 'shared',
    initialPosition: 'earliest',
    ackTimeoutMs: 300,
  });
  const producer = await client.createProducer({ topic: 'f-ackto' });
  await producer.send('forgotten');
  const first = (await consumer.receive(5000))!;
  const again = (await consumer.receive(5000))!;
  t.is(again.id, first.id);
  t.is(again.redeliveryCount, 1);
  consumer.ack(again);
  t.is(await consumer.receive(700), undefined);
  await producer.close();
  await consumer.close();
});

test.serial(
  'dead letter - after maxRedeliverCount deliveries the message is on the DLQ with origin properties',
  async (t) => {
    const consumer = await client.subscribe({
      topic: 'f-dlq',
      subscription: 'work',
      type: 'shared',
      initialPosition: 'earliest',
      nackRedeliveryBackoff: { minDelayMs: 50, maxDelayMs: 50 },
      deadLetterPolicy: { maxRedeliverCount: 3, initialSubscriptionName: 'audit' },
    });
    const producer = await client.createProducer({ topic: 'f-dlq' });
    const poison = await producer.send('poison', { key: 'pk', properties: { origin: 'test' } });
    await producer.send('fine');
    const counts: number[] = [];
    const deadline = Date.now() + 10_000;
    let fineSeen = false;
    while (Date.now() < deadline && (counts.length < 3 || !fineSeen)) {
      const msg = await consumer.receive(1000);
      if (!msg) continue;
      if (msg.value.toString() === 'fine') {
        fineSeen = true;
        consumer.ack(msg);
      } else {
        counts.push(msg.redeliveryCount);
        consumer.nack(msg);
      }
    }
    t.deepEqual(counts, [0, 1, 2]);
    t.true(fineSeen);
    // The DLQ subscription was created before the first dead letter, from the earliest message.
    const dlq = await client.subscribe({ topic: 'f-dlq-work-DLQ', subscription: 'audit' });
    const dead = (await dlq.receive(5000))!;
    t.is(dead.value.toString(), 'poison');
    t.is(dead.key, 'pk');
    t.is(dead.properties.origin, 'test');
    t.is(dead.properties[LETTER_PROPERTIES.realTopic], full('f-dlq'));
    t.is(dead.properties[LETTER_PROPERTIES.originMessageId], poison);
    dlq.ack(dead);
    // The original was acknowledged: nothing comes back on the work subscription.
    t.is(await consumer.receive(1000), undefined);
    await Promise.all([producer.close(), consumer.close(), dlq.close()]);
  },
);

test.serial('seek - a consumer moves back to a message id and to a publish time', async (t) => {
  const producer = await client.createProducer({ topic: 'f-seek', batching: { maxMessages: 1 } });
  const consumer = await client.subscribe({
    topic: 'f-seek',
    subscription: 's',
    initialPosition: 'earliest',
  });
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) ids.push(await producer.send(`early-${i}`));
  await new Promise((r) => setTimeout(r, 50));
  const middle = Date.now();
  await new Promise((r) => setTimeout(r, 50));
  for (let i = 0; i < 3; i++) ids.push(await producer.send(`late-${i}`));
  for (let i = 0; i < 6; i++) consumer.ack((await consumer.receive(5000))!);
  await consumer.seek(ids[1]!);
  t.is((await consumer.receive(5000))!.value.toString(), 'early-1');
  await consumer.seek({ publishTime: middle });
  const afterTime = (await consumer.receive(5000))!;
  t.is(afterTime.value.toString(), 'late-0');
  await consumer.seek('latest');
  t.is(await consumer.receive(500), undefined);
  await producer.close();
  await consumer.close();
});

test.serial(
  'access modes - a second exclusive producer is refused; wait-for-exclusive waits its turn',
  async (t) => {
    const first = await client.createProducer({ topic: 'f-access', accessMode: 'exclusive' });
    const err = await t.throwsAsync(client.createProducer({ topic: 'f-access', accessMode: 'exclusive' }));
    t.regex(err!.message, /exclusive/);
    let opened = false;
    const waiting = client
      .createProducer({ topic: 'f-access', accessMode: 'wait_for_exclusive' })
      .then((p) => {
        opened = true;
        return p;
      });
    await new Promise((r) => setTimeout(r, 500));
    t.false(opened);
    await first.close();
    const second = await waiting;
    t.truthy(await second.send('mine now'));
    await second.close();
  },
);

test.serial(
  'delayed delivery - deliverAfter holds a message on a shared subscription; the past delivers now',
  async (t) => {
    const consumer = await client.subscribe({
      topic: 'f-delay',
      subscription: 's',
      type: 'shared',
      initialPosition: 'earliest',
    });
    const producer = await client.createProducer({ topic: 'f-delay' });
    const sentAt = Date.now();
    await producer.send('later', { deliverAfter: 1500 });
    await producer.send('past', { deliverAt: sentAt - 60_000 });
    const first = (await consumer.receive(5000))!;
    t.is(first.value.toString(), 'past');
    consumer.ack(first);
    const later = (await consumer.receive(5000))!;
    t.is(later.value.toString(), 'later');
    t.true(Date.now() - sentAt >= 1400, `delivered after ${Date.now() - sentAt} ms`);
    consumer.ack(later);
    await producer.close();
    await consumer.close();
  },
);

test.serial(
  'delayed delivery - a delay beyond the namespace maximum is refused with a clear error',
  async (t) => {
    await client.admin.createNamespace('public/f-delay-max', { policies: { maxDeliveryDelayMs: 60_000 } });
    const producer = await client.createProducer({ topic: 'persistent://public/f-delay-max/t' });
    const err = await t.throwsAsync(producer.send('too late', { deliverAfter: 3_600_000 }));
    t.is((err as { code?: string }).code, 'INVALID_ARGUMENT');
    t.regex(err!.message, /max delivery delay/);
    // The producer lives on: a delay within the maximum is accepted.
    t.truthy(await producer.send('soon enough', { deliverAfter: 30_000 }));
    await producer.close();
  },
);

test.serial(
  'retry topic - reconsumeLater brings a message back after its delay with RECONSUMETIMES',
  async (t) => {
    const consumer = await client.subscribe({
      topic: 'f-retry',
      subscription: 's',
      type: 'shared',
      initialPosition: 'earliest',
      enableRetry: true,
      deadLetterPolicy: { maxRedeliverCount: 5 },
    });
    const producer = await client.createProducer({ topic: 'f-retry' });
    await producer.send('again later');
    const msg = (await consumer.receive(5000))!;
    const before = Date.now();
    await consumer.reconsumeLater(msg, 1000);
    const retried = (await consumer.receive(5000))!;
    t.is(retried.value.toString(), 'again later');
    t.is(retried.properties[LETTER_PROPERTIES.reconsumeTimes], '1');
    t.is(retried.topic, full('f-retry-s-RETRY'));
    t.true(Date.now() - before >= 900, `retried after ${Date.now() - before} ms`);
    consumer.ack(retried);
    await producer.close();
    await consumer.close();
  },
);

test.serial('reader - non-durable readers start at earliest, latest or an id', async (t) => {
  const producer = await client.createProducer({ topic: 'f-reader', batching: { maxMessages: 1 } });
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) ids.push(await producer.send(`r${i}`));
  const fromId = await client.createReader({ topic: 'f-reader', startMessageId: ids[1]! });
  t.is((await fromId.readNext(5000))?.value.toString(), 'r1');
  const earliest = await client.createReader({ topic: 'f-reader', startMessageId: 'earliest' });
  t.is((await earliest.readNext(5000))?.value.toString(), 'r0');
  const latest = await client.createReader({ topic: 'f-reader', startMessageId: 'latest' });
  t.is(await latest.readNext(300), undefined);
  await producer.send('r3');
  t.is((await latest.readNext(5000))?.value.toString(), 'r3');
  // Nothing durable was left behind.
  t.deepEqual(await client.admin.listSubscriptions('f-reader'), []);
  await Promise.all([fromId.close(), earliest.close(), latest.close(), producer.close()]);
});
