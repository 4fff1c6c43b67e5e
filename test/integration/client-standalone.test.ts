import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Message, type Reader, SluiceClient } from '@sluice/client';
import { murmur3 } from '@sluice/common';
import test from 'ava';
import { freePort, waitFor } from '../support/ports.js';
import { TcpProxy } from '../support/tcp-proxy.js';

const BIN = fileURLToPath(new URL('../../packages/cli/dist/bin.js', import.meta.url));

interface Standalone {
  url: string;
  start(): Promise<void>;
  kill(): Promise<void>;
}

/** A real `sluice standalone` process (compiled), restartable on the same ports and data dir. */
async function standalone(t: { teardown(fn: () => void | Promise<void>): void }): Promise<Standalone> {
  const dataDir = mkdtempSync(join(tmpdir(), 'sluice-client-'));
  const [port, httpPort] = [await freePort(), await freePort()];
  let child: ChildProcess | undefined;
  const sa: Standalone = {
    url: `127.0.0.1:${port}`,
    async start() {
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
    },
    async kill() {
      const proc = child;
      child = undefined;
      if (!proc || proc.exitCode !== null) return;
      const exited = new Promise((resolve) => proc.once('exit', resolve));
      proc.kill('SIGKILL');
      await exited;
    },
  };
  t.teardown(async () => {
    await sa.kill();
    rmSync(dataDir, { recursive: true, force: true });
  });
  await sa.start();
  return sa;
}

async function take(consumer: AsyncIterable<Message>, n: number): Promise<Message[]> {
  const out: Message[] = [];
  for await (const m of consumer) {
    out.push(m);
    if (out.length === n) break;
  }
  return out;
}

test('client - producer and consumer round-trip keys, properties, event time and ids', async (t) => {
  const sa = await standalone(t);
  const client = new SluiceClient({ serviceUrl: `sluice://${sa.url}` });
  t.teardown(() => client.close());
  const consumer = await client.subscribe({
    topic: 'roundtrip',
    subscription: 'sub',
    initialPosition: 'earliest',
  });
  const producer = await client.createProducer({
    topic: 'roundtrip',
    compression: 'gzip',
    batching: { maxMessages: 50, maxDelayMs: 5, maxBytes: 64 * 1024 },
  });
  const sent = await Promise.all(
    Array.from({ length: 200 }, (_, i) =>
      producer.send(Buffer.from(`value-${i}`), {
        key: `key-${i % 7}`,
        properties: { index: String(i) },
        eventTime: 1_700_000_000_000 + i,
      }),
    ),
  );
  t.is(new Set(sent).size, 200);
  const got = await take(consumer, 200);
  t.deepEqual(
    got.map((m) => m.id),
    sent,
  );
  got.forEach((m, i) => {
    t.is(m.value.toString(), `value-${i}`);
    t.is(m.key, `key-${i % 7}`);
    t.deepEqual(m.properties, { index: String(i) });
    t.is(m.eventTime, 1_700_000_000_000 + i);
    t.is(m.producerName, producer.name);
    t.true(m.publishTime > 0);
    consumer.ack(m);
  });
  await consumer.close();
  // Acked messages stay acknowledged: a new consumer on the subscription sees only new ones.
  const again = await client.subscribe({ topic: 'roundtrip', subscription: 'sub' });
  const next = await producer.send('after');
  const [after] = await take(again, 1);
  t.is(after!.id, next);
});

test('client - partitioned topic: keyed routing by murmur3 and one consumer over every partition', async (t) => {
  const sa = await standalone(t);
  const client = new SluiceClient({ serviceUrl: sa.url });
  t.teardown(() => client.close());
  await client.admin.createTopic('parts', { partitions: 3 });
  const producer = await client.createProducer({ topic: 'parts', batching: { maxDelayMs: 2 } });
  t.is(producer.partitions, 3);
  const keys = Array.from({ length: 30 }, (_, i) => `user-${i}`);
  const ids = await Promise.all(keys.map((key) => producer.send(key, { key })));
  for (const [i, key] of keys.entries()) t.is(Number(ids[i]!.split(':')[3]), murmur3(key) % 3);
  const consumer = await client.subscribe({ topic: 'parts', subscription: 's', initialPosition: 'earliest' });
  t.is(consumer.partitions, 3);
  const got = await take(consumer, 30);
  t.deepEqual(got.map((m) => m.value.toString()).sort(), [...keys].sort());
  const stats = await client.admin.topicStats('parts');
  t.is(stats.subscriptions.length, 1);
});

test('client - a producer rides out a SIGKILL of the broker: every send resolves, each value stored once', async (t) => {
  const sa = await standalone(t);
  const client = new SluiceClient({ serviceUrl: sa.url });
  t.teardown(() => client.close());
  const producer = await client.createProducer({
    topic: 'failover',
    producerName: 'steady',
    batching: { maxMessages: 20, maxDelayMs: 2 },
  });
  const total = 2000;
  const sends: Promise<string>[] = [];
  let acked = 0;
  for (let i = 0; i < total; i++) {
    const p = producer.send(`v${i}`);
    p.then(() => acked++).catch(() => undefined);
    sends.push(p);
    if (i === total / 2) {
      await waitFor(() => acked >= total / 4, 20_000, 'first acks');
      await sa.kill();
      await sa.start();
    }
    if (i % 100 === 0) await new Promise((r) => setImmediate(r));
  }
  const ids = await Promise.all(sends);
  t.is(ids.length, total);
  // A fresh subscription reading from the start sees every stored message.
  const check = await client.subscribe({
    topic: 'failover',
    subscription: 'audit',
    initialPosition: 'earliest',
  });
  const seen = new Map<string, number>();
  for (;;) {
    const m = await check.receive(3000);
    if (!m) break;
    seen.set(m.value.toString(), (seen.get(m.value.toString()) ?? 0) + 1);
  }
  t.is(seen.size, total, 'every value stored');
  t.deepEqual(
    [...seen.values()].filter((n) => n > 1),
    [],
    'no value stored twice',
  );
});

/**
 * A reader whose lookups go through a proxy the test can close: kept away
 * while the broker restarts and messages are stored, so they are published
 * after its subscribe and before its reconnect, and it has received none.
 */
async function awayReader(
  t: { teardown(fn: () => void | Promise<void>): void },
  sa: Standalone,
  topic: string,
) {
  const proxy = await TcpProxy.start('127.0.0.1', Number(sa.url.split(':')[1]));
  t.teardown(() => proxy.close());
  const client = new SluiceClient({ serviceUrl: proxy.address });
  t.teardown(() => client.close());
  const reader = await client.createReader({ topic, startMessageId: 'latest' });
  return {
    reader,
    /** Restart the broker and run `publish` while the reader cannot reconnect. */
    async restartAndPublish(publish: () => Promise<unknown>) {
      proxy.refuse(true);
      await sa.kill();
      await sa.start();
      await publish();
      proxy.refuse(false);
    },
  };
}

/** Values read until the reader goes quiet (the first may take a reconnect). */
async function readAll(reader: Reader): Promise<string[]> {
  const got: string[] = [];
  for (let m = await reader.readNext(30_000); m; m = await reader.readNext(1500))
    got.push(m.value.toString());
  return got;
}

test('client - a reader at latest that received nothing reads what was published while a broker restart kept it away', async (t) => {
  const sa = await standalone(t);
  const client = new SluiceClient({ serviceUrl: sa.url });
  t.teardown(() => client.close());
  const producer = await client.createProducer({ topic: 'idle-reader', batching: { maxMessages: 1 } });
  await producer.send('before-reader');
  // Told the end of the open ledger; the restart seals that ledger and the messages land in the next.
  const { reader, restartAndPublish } = await awayReader(t, sa, 'idle-reader');
  await restartAndPublish(() => Promise.all(['m1', 'm2', 'm3'].map((v) => producer.send(v))));
  t.deepEqual(await readAll(reader), ['m1', 'm2', 'm3']);
});

test('client - a reader at latest told entry 0 of an empty ledger reads on after a restart drops that ledger', async (t) => {
  const sa = await standalone(t);
  const client = new SluiceClient({ serviceUrl: sa.url });
  t.teardown(() => client.close());
  const producer = await client.createProducer({ topic: 'idle-reader2', batching: { maxMessages: 1 } });
  await producer.send('before-reader');
  // After a restart the topic's open ledger is new and empty: the reader is told its entry 0.
  await sa.kill();
  await sa.start();
  const { reader, restartAndPublish } = await awayReader(t, sa, 'idle-reader2');
  await restartAndPublish(() => Promise.all(['m1', 'm2'].map((v) => producer.send(v))));
  t.deepEqual(await readAll(reader), ['m1', 'm2']);
});
