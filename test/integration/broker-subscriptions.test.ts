import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Consumer, type Message, SluiceClient } from '@sluice/client';
import anyTest, { type TestFn } from 'ava';
import { type SluiceProcess, startStandalone } from '../support/cluster.js';

const test = anyTest as TestFn<{ dir: string; sa: SluiceProcess; client: SluiceClient }>;

test.before(async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-subs-'));
  const sa = await startStandalone(dir);
  t.context = { dir, sa, client: new SluiceClient({ serviceUrl: sa.url }) };
});

test.after.always(async (t) => {
  await t.context.client?.close().catch(() => undefined);
  t.context.sa?.kill('SIGKILL');
  await t.context.sa?.exited;
  if (t.context.dir) await rm(t.context.dir, { recursive: true, force: true });
});

async function produce(
  client: SluiceClient,
  topic: string,
  n: number,
  key?: (i: number) => string,
): Promise<void> {
  const p = await client.createProducer({ topic, batching: { maxMessages: 10, maxDelayMs: 1 } });
  await Promise.all(
    Array.from({ length: n }, (_, i) => p.send(Buffer.from(String(i)), key ? { key: key(i) } : {})),
  );
  await p.close();
}

/** Collect messages from a consumer until `stop` says so or `idleMs` passes without one. */
async function collect(
  c: Consumer,
  opts: { max?: number; idleMs?: number; ack?: boolean } = {},
): Promise<Message[]> {
  const out: Message[] = [];
  for (;;) {
    const m = await c.receive(opts.idleMs ?? 1500);
    if (!m) return out;
    out.push(m);
    if (opts.ack !== false) c.ack(m);
    if (opts.max !== undefined && out.length >= opts.max) return out;
  }
}

const values = (ms: Message[]): number[] => ms.map((m) => Number(m.value.toString()));

test('subscriptions - exclusive refuses a second consumer and hands unacked messages to the next one', async (t) => {
  const { client } = t.context;
  const topic = 'subs-exclusive';
  const a = await client.subscribe({
    topic,
    subscription: 's',
    type: 'exclusive',
    initialPosition: 'earliest',
  });
  await t.throwsAsync(client.subscribe({ topic, subscription: 's', type: 'exclusive' }), {
    message: /exclusive/,
  });
  await produce(client, topic, 100);
  const first = await collect(a, { max: 40 });
  // 10 more received but not acknowledged: they must come back.
  await collect(a, { max: 10, ack: false });
  t.deepEqual(
    values(first),
    Array.from({ length: 40 }, (_, i) => i),
  );
  await a.close();
  const b = await client.subscribe({ topic, subscription: 's', type: 'exclusive' });
  const rest = await collect(b, { max: 60 });
  t.deepEqual(
    values(rest),
    Array.from({ length: 60 }, (_, i) => i + 40),
  );
  await b.close();
});

test('subscriptions - failover sends everything to the preferred consumer and fails over when it leaves', async (t) => {
  const { client } = t.context;
  const topic = 'subs-failover';
  const a = await client.subscribe({
    topic,
    subscription: 's',
    type: 'failover',
    consumerName: 'a',
    priority: 0,
    initialPosition: 'earliest',
  });
  const b = await client.subscribe({
    topic,
    subscription: 's',
    type: 'failover',
    consumerName: 'b',
    priority: 1,
  });
  await produce(client, topic, 100);
  const fromA = await collect(a, { max: 50 });
  t.deepEqual(
    values(fromA),
    Array.from({ length: 50 }, (_, i) => i),
  );
  t.is((await collect(b, { idleMs: 500 })).length, 0, 'the standby consumer receives nothing');
  await a.close();
  const fromB = await collect(b, { max: 50 });
  t.deepEqual(
    values(fromB),
    Array.from({ length: 50 }, (_, i) => i + 50),
  );
  // A consumer that joins with a better priority takes over.
  const c = await client.subscribe({
    topic,
    subscription: 's',
    type: 'failover',
    consumerName: 'c',
    priority: -1,
  });
  await produce(client, topic, 10);
  t.is((await collect(c, { max: 10 })).length, 10);
  await b.close();
  await c.close();
});

test('subscriptions - shared spreads messages over consumers and redelivers what a leaving consumer held', async (t) => {
  const { client } = t.context;
  const topic = 'subs-shared';
  const opts = {
    topic,
    subscription: 's',
    type: 'shared' as const,
    initialPosition: 'earliest' as const,
    receiverQueueSize: 20,
  };
  const cs = [await client.subscribe(opts), await client.subscribe(opts), await client.subscribe(opts)];
  await produce(client, topic, 300);
  // Consumer 0 takes some messages and leaves without acknowledging them.
  const unacked = await collect(cs[0]!, { max: 15, ack: false });
  t.is(unacked.length, 15);
  await cs[0]!.close();
  const got = await Promise.all(cs.slice(1).map((c) => collect(c)));
  for (const g of got) t.true(g.length > 0, 'every remaining consumer gets a share');
  const all = new Set(got.flatMap(values));
  t.is(all.size, 300);
  for (const v of values(unacked)) t.true(all.has(v));
  const redelivered = got.flat().filter((m) => values(unacked).includes(Number(m.value.toString())));
  t.true(redelivered.every((m) => m.redeliveryCount >= 1));
  for (const c of cs.slice(1)) await c.close();
});

test('subscriptions - key_shared keeps per-key order while consumers join and leave', async (t) => {
  const { client } = t.context;
  const topic = 'subs-key-shared';
  const opts = {
    topic,
    subscription: 's',
    type: 'key_shared' as const,
    initialPosition: 'earliest' as const,
    receiverQueueSize: 10,
  };
  const key = (i: number): string => `k${i % 8}`;
  const c1 = await client.subscribe({ ...opts, consumerName: 'c1' });
  const c2 = await client.subscribe({ ...opts, consumerName: 'c2' });
  await produce(client, topic, 400, key);
  const seen: Message[][] = [[], [], []];
  const part1 = await Promise.all([collect(c1, { max: 60 }), collect(c2, { max: 60 })]);
  seen[0]!.push(...part1[0]!);
  seen[1]!.push(...part1[1]!);
  const c3 = await client.subscribe({ ...opts, consumerName: 'c3' });
  await c1.close();
  const part2 = await Promise.all([collect(c2), collect(c3)]);
  seen[1]!.push(...part2[0]!);
  seen[2]!.push(...part2[1]!);
  const all = seen.flat();
  t.is(new Set(values(all)).size, 400);
  // Each key's messages arrive in send order within every consumer.
  for (const ms of seen) {
    const byKey = new Map<string, number[]>();
    for (const m of ms) byKey.set(m.key, [...(byKey.get(m.key) ?? []), Number(m.value.toString())]);
    for (const [k, vs] of byKey) {
      t.true(
        vs.every((v, i) => i === 0 || v > vs[i - 1]!),
        `key ${k} out of order: ${vs.join(',')}`,
      );
    }
  }
  // While two consumers were attached, each key went to exactly one of them.
  const owners = new Map<string, Set<number>>();
  part1.forEach((ms, ci) => {
    for (const m of ms) owners.set(m.key, (owners.get(m.key) ?? new Set()).add(ci));
  });
  t.true([...owners.values()].every((s) => s.size === 1));
  await c2.close();
  await c3.close();
});
