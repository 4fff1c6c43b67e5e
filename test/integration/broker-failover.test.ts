import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, type ServiceClientConstructor } from '@grpc/grpc-js';
import { SluiceClient } from '@sluice/client';
import { loadProto } from '@sluice/proto';
import test from 'ava';
import { type BookieProcess, testMetadataUrl } from '../support/bookie-process.js';
import { type SluiceProcess, startBookies, startBroker } from '../support/cluster.js';

const N = 50_000;

function lookup(address: string, topic: string): Promise<string> {
  const pkg = loadProto('broker.proto') as unknown as {
    sluice: { v1: { LookupService: ServiceClientConstructor } };
  };
  const c = new pkg.sluice.v1.LookupService(address, credentials.createInsecure()) as unknown as {
    Lookup(req: object, cb: (err: Error | null, res: { brokerAddress: string }) => void): void;
    close(): void;
  };
  return new Promise((resolve, reject) =>
    c.Lookup({ topic }, (err, res) => {
      c.close();
      if (err) reject(err);
      else resolve(res.brokerAddress);
    }),
  );
}

test('broker failover - SIGKILL of the owner mid-stream loses nothing acknowledged and stores every message once', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-failover-'));
  const metadata = testMetadataUrl('broker-failover');
  const bookies: BookieProcess[] = [];
  const brokers: SluiceProcess[] = [];
  const clients: SluiceClient[] = [];
  t.teardown(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    for (const p of [...brokers, ...bookies]) p.kill('SIGKILL');
    await Promise.all([...brokers, ...bookies].map((p) => p.exited));
    await rm(dir, { recursive: true, force: true });
  });
  bookies.push(...(await startBookies(metadata, dir, 3)));
  brokers.push(await startBroker(metadata), await startBroker(metadata));

  const topic = 'persistent://public/default/failover';
  const ownerAddress = await lookup(brokers[0]!.address, topic);
  const owner = brokers.find((b) => b.address === ownerAddress);
  t.truthy(owner, `lookup named ${ownerAddress}, not one of the brokers`);
  const survivor = brokers.find((b) => b !== owner)!;

  const client = new SluiceClient({ serviceUrl: survivor.url });
  clients.push(client);
  const consumer = await client.subscribe({ topic, subscription: 'live', initialPosition: 'earliest' });
  const producer = await client.createProducer({ topic, batching: { maxMessages: 100, maxDelayMs: 5 } });
  t.is(await lookup(survivor.address, topic), ownerAddress);

  const received: number[] = [];
  const consuming = (async () => {
    const seen = new Set<number>();
    for await (const m of consumer) {
      const v = Number(m.value.toString());
      received.push(v);
      seen.add(v);
      consumer.ack(m);
      if (seen.size === N) break;
    }
  })();

  const acked = new Set<number>();
  const sends: Promise<void>[] = [];
  for (let i = 0; i < N; i++) {
    if (i === 15_000) {
      // Let some of the stream land, then kill the owner with sends in flight.
      await Promise.race([Promise.all(sends.slice(0, 5000)), new Promise((r) => setTimeout(r, 5000))]);
      owner!.kill('SIGKILL');
    }
    sends.push(producer.send(Buffer.from(String(i))).then(() => void acked.add(i)));
    if (i % 1000 === 999) await new Promise((r) => setImmediate(r));
  }
  await Promise.all(sends);
  t.is(acked.size, N);
  t.is(await owner!.exited, null);
  t.is(await lookup(survivor.address, topic), survivor.address);

  await consuming;
  // Every acknowledged message arrived; first deliveries keep the producer's order.
  const firstSeen: number[] = [];
  const once = new Set<number>();
  for (const v of received) {
    if (!once.has(v)) {
      once.add(v);
      firstSeen.push(v);
    }
  }
  t.is(once.size, N);
  t.true(
    firstSeen.every((v, i) => i === 0 || v > firstSeen[i - 1]!),
    'first deliveries are in send order',
  );

  // Dedup: the topic stores each message once.
  const fresh = await client.subscribe({ topic, subscription: 'audit', initialPosition: 'earliest' });
  const stored = new Map<number, number>();
  let total = 0;
  for await (const m of fresh) {
    const v = Number(m.value.toString());
    stored.set(v, (stored.get(v) ?? 0) + 1);
    fresh.ack(m);
    if (++total === N) break;
  }
  t.is(stored.size, N);
  t.true(
    [...stored.values()].every((c) => c === 1),
    'no message is stored twice',
  );
});
