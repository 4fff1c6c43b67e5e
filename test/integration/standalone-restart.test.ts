import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SluiceClient } from '@sluice/client';
import test from 'ava';
import { SluiceProcess, startStandalone } from '../support/cluster.js';

const N = 10_000;

test('standalone - 10k messages survive kill -9 and the subscription resumes where its acks left it', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-standalone-'));
  const procs: SluiceProcess[] = [];
  const clients: SluiceClient[] = [];
  t.teardown(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    for (const p of procs) p.kill('SIGKILL');
    await Promise.all(procs.map((p) => p.exited));
    await rm(dir, { recursive: true, force: true });
  });

  let sa = await startStandalone(dir);
  procs.push(sa);
  let client = new SluiceClient({ serviceUrl: sa.url });
  clients.push(client);
  // The subscription exists before producing, so it starts at the first message.
  const first = await client.subscribe({
    topic: 'restart',
    subscription: 'sub',
    initialPosition: 'earliest',
  });
  const producer = await client.createProducer({ topic: 'restart' });
  const sends: Promise<string>[] = [];
  for (let i = 0; i < N; i++) sends.push(producer.send(Buffer.from(`msg-${i}`)));
  const ids = await Promise.all(sends);
  t.is(new Set(ids).size, N);

  // Consume and ack the first 3000, then give the cursor time to persist its acks.
  const ACKED = 3000;
  let got = 0;
  for await (const m of first) {
    t.is(m.value.toString(), `msg-${got}`);
    first.ack(m);
    if (++got === ACKED) break;
  }
  await new Promise((r) => setTimeout(r, 1500));

  sa.kill('SIGKILL');
  await sa.exited;
  await client.close().catch(() => undefined);

  sa = await startStandalone(dir);
  procs.push(sa);
  client = new SluiceClient({ serviceUrl: sa.url });
  clients.push(client);

  // The old subscription resumes after its last ack.
  const resumed = await client.subscribe({
    topic: 'restart',
    subscription: 'sub',
    initialPosition: 'earliest',
  });
  let next = ACKED;
  for await (const m of resumed) {
    t.is(m.value.toString(), `msg-${next}`);
    resumed.ack(m);
    if (++next === N) break;
  }
  t.is(next, N);

  // A fresh subscription reads every one of the 10k messages from the start.
  const fresh = await client.subscribe({
    topic: 'restart',
    subscription: 'fresh',
    initialPosition: 'earliest',
  });
  let count = 0;
  for await (const m of fresh) {
    t.is(m.value.toString(), `msg-${count}`);
    fresh.ack(m);
    if (++count === N) break;
  }
  t.is(count, N);
});

test('standalone - bad flags give a one-line error and a non-zero exit', async (t) => {
  const r = await SluiceProcess.run(['standalone', '--port', 'not-a-port']);
  t.not(r.code, 0);
  t.regex(r.output, /--port 'not-a-port' is invalid/);
  const b = await SluiceProcess.run(['broker']);
  t.not(b.code, 0);
  t.regex(b.output, /metadata URL is required/);
});
