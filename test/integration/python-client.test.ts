import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { type Message, SluiceClient } from '@sluice/client';
import { murmur3 } from '@sluice/common';
import { loadProto } from '@sluice/proto';
import test, { type ExecutionContext } from 'ava';
import { ensureDebianPackages } from '../support/apt.js';
import { type SluiceProcess, startStandalone } from '../support/cluster.js';

const run = promisify(execFile);
const EXAMPLES = fileURLToPath(new URL('../../examples/python', import.meta.url));
// Debian's interpreter: python3-grpcio and python3-grpc-tools install into its dist-packages.
const PYTHON = '/usr/bin/python3';

let stubs = '';

test.before(async () => {
  ensureDebianPackages('/usr/lib/python3/dist-packages/grpc_tools/__init__.py', [
    'python3-grpcio',
    'python3-grpc-tools',
  ]);
  stubs = mkdtempSync(join(tmpdir(), 'sluice-pystubs-'));
  await run('sh', [join(EXAMPLES, 'generate.sh'), stubs], { env: { ...process.env, PYTHON } });
});

test.after.always(() => {
  if (stubs) rmSync(stubs, { recursive: true, force: true });
});

async function standalone(t: ExecutionContext): Promise<SluiceProcess> {
  const dataDir = mkdtempSync(join(tmpdir(), 'sluice-python-'));
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const sa = await startStandalone(dataDir);
  t.teardown(() => sa.stop());
  return sa;
}

/** Run an example script; returns its stdout as parsed JSON lines. */
async function python<T>(script: string, args: string[]): Promise<T[]> {
  try {
    const { stdout } = await run(PYTHON, [join(EXAMPLES, script), ...args], {
      env: { ...process.env, SLUICE_STUBS: stubs },
      timeout: 60_000,
    });
    return stdout
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as T);
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${script} ${args.join(' ')} failed: ${e.message}\n${e.stderr ?? ''}`);
  }
}

interface Produced {
  index: number;
  id: string;
  key: string;
  value: string;
}

interface Consumed {
  id: string;
  key: string;
  value: string;
  properties: Record<string, string>;
  publishTime: number;
  eventTime: number;
  redeliveryCount: number;
}

async function take(consumer: AsyncIterable<Message>, n: number): Promise<Message[]> {
  const out: Message[] = [];
  for await (const m of consumer) {
    out.push(m);
    if (out.length === n) break;
  }
  return out;
}

test('python client - generated-stub producer and consumer round-trip batches, keys and ids', async (t) => {
  const sa = await standalone(t);
  const n = 25;
  const produced = await python<Produced>('producer.py', [
    '--url',
    sa.url,
    '--topic',
    'py-orders',
    '-n',
    String(n),
    '--key',
    'customer-7',
    '--batch-size',
    '10',
    '--compression',
    'gzip',
    '-p',
    'source=python',
  ]);
  t.deepEqual(
    produced.map((p) => p.value),
    Array.from({ length: n }, (_, i) => `message-${i}`),
  );
  // Ten messages per batch: batch indexes 0..9 within an entry, a new entry every ten.
  const entries = new Set(produced.map((p) => p.id.split(':').slice(0, 2).join(':')));
  t.is(entries.size, 3);
  t.deepEqual(
    produced.map((p) => Number(p.id.split(':')[2])),
    Array.from({ length: n }, (_, i) => i % 10),
  );

  const consumed = await python<Consumed>('consumer.py', [
    '--url',
    sa.url,
    '--topic',
    'py-orders',
    '--subscription',
    'py-sub',
    '--count',
    String(n),
    '--from',
    'earliest',
  ]);
  t.deepEqual(
    consumed.map((c) => [c.id, c.key, c.value]),
    produced.map((p) => [p.id, 'customer-7', p.value]),
  );
  for (const c of consumed) {
    t.deepEqual(c.properties, { source: 'python' });
    t.is(c.redeliveryCount, 0);
    t.true(c.publishTime > 0);
  }

  // The Python consumer acknowledged what it printed: the subscription is drained.
  const client = new SluiceClient({ serviceUrl: sa.url });
  t.teardown(() => client.close());
  const again = await client.subscribe({ topic: 'py-orders', subscription: 'py-sub' });
  t.is(await again.receive(500), undefined);
  await again.close();

  // Interop: the TypeScript SDK reads the Python-built batches.
  const ts = await client.subscribe({
    topic: 'py-orders',
    subscription: 'ts-sub',
    initialPosition: 'earliest',
  });
  const got = await take(ts, n);
  t.deepEqual(
    got.map((m) => [m.id, m.key, m.value.toString(), m.properties]),
    produced.map((p) => [p.id, 'customer-7', p.value, { source: 'python' }]),
  );
  for (const m of got) ts.ack(m);
});

test('python client - partitioned topic: murmur3 routing agrees with the SDK both ways', async (t) => {
  const sa = await standalone(t);
  const client = new SluiceClient({ serviceUrl: sa.url });
  t.teardown(() => client.close());
  await client.admin.createTopic('py-parts', { partitions: 3 });

  const keys = ['alpha', 'beta', 'gamma', 'delta'];
  const pyIds: string[] = [];
  for (const key of keys) {
    const produced = await python<Produced>('producer.py', [
      '--url',
      sa.url,
      '--topic',
      'py-parts',
      '-n',
      '3',
      '--key',
      key,
      '--prefix',
      `py-${key}`,
      '--compression',
      'deflate',
    ]);
    for (const p of produced) {
      t.is(Number(p.id.split(':')[3]), murmur3(key) % 3, `python routed ${key} by murmur3`);
      pyIds.push(p.id);
    }
  }
  const producer = await client.createProducer({ topic: 'py-parts', compression: 'gzip' });
  const tsIds = await Promise.all(keys.map((key) => producer.send(`ts-${key}`, { key })));
  await producer.close();
  for (const [i, key] of keys.entries()) t.is(Number(tsIds[i]!.split(':')[3]), murmur3(key) % 3);

  // The Python consumer merges every partition and reads both producers' batches.
  const consumed = await python<Consumed>('consumer.py', [
    '--url',
    sa.url,
    '--topic',
    'py-parts',
    '--subscription',
    'mixed',
    '--count',
    String(keys.length * 4),
    '--from',
    'earliest',
    '--type',
    'shared',
  ]);
  const seen = new Map(consumed.map((c) => [c.id, `${c.key}/${c.value}`]));
  t.is(seen.size, keys.length * 4);
  for (const key of keys) {
    t.is(seen.get(tsIds[keys.indexOf(key)]!), `${key}/ts-${key}`);
    for (let i = 0; i < 3; i++) t.true([...seen.values()].includes(`${key}/py-${key}-${i}`));
  }
  for (const id of pyIds) t.true(seen.has(id));
});

test('python client - producer follows a FAILED_PRECONDITION redirect to the owner named in sluice-owner', async (t) => {
  const sa = await standalone(t);
  // A broker that claims the topic on lookup but, like a broker that just lost
  // it, refuses the stream and names the real owner in the trailer.
  const pkg = loadProto('broker.proto') as unknown as {
    sluice: { v1: Record<string, { service: grpc.ServiceDefinition }> };
  };
  const server = new grpc.Server();
  let redirected = 0;
  let selfAddress = '';
  server.addService(pkg.sluice.v1.LookupService!.service, {
    Lookup: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => cb(null, { brokerAddress: selfAddress }),
    GetTopicMetadata: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => cb(null, { partitions: 0 }),
  });
  server.addService(pkg.sluice.v1.ProducerService!.service, {
    Produce: (call: grpc.ServerDuplexStream<unknown, unknown>) => {
      call.on('error', () => {});
      call.once('data', () => {
        redirected++;
        const trailer = new grpc.Metadata();
        trailer.set('sluice-owner', sa.url);
        trailer.set('sluice-error-code', 'NOT_OWNER');
        call.emit('error', {
          code: grpc.status.FAILED_PRECONDITION,
          details: `this broker does not own the topic; it is served by ${sa.url}`,
          metadata: trailer,
        });
      });
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  t.teardown(() => server.forceShutdown());
  selfAddress = `127.0.0.1:${port}`;

  const produced = await python<Produced>('producer.py', [
    '--url',
    selfAddress,
    '--topic',
    'py-moved',
    '-n',
    '4',
    '--batch-size',
    '2',
  ]);
  t.is(redirected, 1);
  t.is(produced.length, 4);

  const client = new SluiceClient({ serviceUrl: sa.url });
  t.teardown(() => client.close());
  const consumer = await client.subscribe({
    topic: 'py-moved',
    subscription: 's',
    initialPosition: 'earliest',
  });
  const got = await take(consumer, 4);
  t.deepEqual(
    got.map((m) => [m.id, m.value.toString()]),
    produced.map((p) => [p.id, p.value]),
  );
});
