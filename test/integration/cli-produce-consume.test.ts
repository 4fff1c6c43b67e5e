import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SluiceClient } from '@sluice/client';
import test from 'ava';
import { jsonLines, runSluice } from '../support/cli.js';
import { type SluiceProcess, startStandalone } from '../support/cluster.js';

let standalone: SluiceProcess | undefined;
let dataDir = '';
let url = '';

test.before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'sluice-cli-'));
  standalone = await startStandalone(dataDir);
  url = standalone.address;
});

test.after.always(() => {
  standalone?.kill('SIGKILL');
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

const sluice = (args: string[], input?: string) => runSluice(url, args, input);

test.serial('cli - produce then consume with --json output that parses', async (t) => {
  const produced = await sluice([
    'produce',
    'cli-topic',
    '-m',
    'hello',
    '-m',
    'wörld',
    '-n',
    '3',
    '--key',
    'k1',
    '-p',
    'a=b',
    '--json',
  ]);
  t.is(produced.code, 0, produced.stderr);
  const acks = jsonLines(produced.stdout);
  t.deepEqual(
    acks.map((a) => a.index),
    [0, 1, 2, 3, 4, 5],
  );
  for (const a of acks) t.regex(String(a.id), /^\d+:\d+:\d+$/);

  const consumed = await sluice([
    'consume',
    'cli-topic',
    '-s',
    'cli-sub',
    '--from',
    'earliest',
    '-n',
    '6',
    '--json',
  ]);
  t.is(consumed.code, 0, consumed.stderr);
  const msgs = jsonLines(consumed.stdout);
  t.deepEqual(
    msgs.map((m) => m.value),
    ['hello', 'wörld', 'hello', 'wörld', 'hello', 'wörld'],
  );
  t.deepEqual(
    msgs.map((m) => m.id),
    acks.map((a) => a.id),
  );
  for (const m of msgs) {
    t.is(m.key, 'k1');
    t.deepEqual(m.properties, { a: 'b' });
    t.is(m.redeliveryCount, 0);
    t.true(typeof m.publishTime === 'number' && (m.publishTime as number) > 0);
  }
  // Everything printed was acknowledged: the subscription has nothing left.
  const rest = await sluice(['consume', 'cli-topic', '-s', 'cli-sub', '--wait', '1', '--json']);
  t.is(rest.code, 0, rest.stderr);
  t.is(rest.stdout.trim(), '');
});

test.serial('cli - produce --file - sends each stdin line; non-UTF-8 values print as base64', async (t) => {
  const produced = await sluice(['produce', 'cli-file', '--file', '-', '--json'], 'one\ntwo\nthree\n');
  t.is(produced.code, 0, produced.stderr);
  t.is(jsonLines(produced.stdout).length, 3);
  const consumed = await sluice([
    'consume',
    'cli-file',
    '-s',
    's',
    '--from',
    'earliest',
    '-n',
    '3',
    '--json',
  ]);
  t.deepEqual(
    jsonLines(consumed.stdout).map((m) => m.value),
    ['one', 'two', 'three'],
  );
  const client = new SluiceClient({ serviceUrl: url });
  const producer = await client.createProducer({ topic: 'cli-file' });
  await producer.send(Buffer.from([0xff, 0xfe, 0x00, 0x41]));
  await client.close();
  const [binary] = jsonLines((await sluice(['consume', 'cli-file', '-s', 's', '-n', '1', '--json'])).stdout);
  t.is(binary!.encoding, 'base64');
  t.deepEqual([...Buffer.from(String(binary!.value), 'base64')], [0xff, 0xfe, 0x00, 0x41]);
  const file = join(dataDir, 'lines.txt');
  writeFileSync(file, 'from-file\n');
  const human = await sluice(['produce', 'cli-file', '--file', file]);
  t.is(human.code, 0, human.stderr);
  t.regex(human.stdout, /produced 1 message to persistent:\/\/public\/default\/cli-file/);
});

test.serial(
  'cli - admin verbs: tenants, namespaces, partitioned topics, policies, subscriptions',
  async (t) => {
    const ok = async (args: string[]) => {
      const r = await sluice(args);
      t.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
      return r.stdout;
    };
    await ok(['tenants', 'create', 'acme']);
    await ok(['tenants', 'create', 'acme', '--if-not-exists']);
    t.deepEqual((JSON.parse(await ok(['tenants', 'list', '--json'])) as string[]).sort(), ['acme', 'public']);
    await ok(['namespaces', 'create', 'acme/app', '--if-not-exists']);
    t.true((JSON.parse(await ok(['namespaces', 'list', 'acme', '--json'])) as string[]).includes('acme/app'));
    const persistence = JSON.parse(
      await ok([
        'namespaces',
        'set-persistence',
        'acme/app',
        '--ensemble',
        '1',
        '--write-quorum',
        '1',
        '--ack-quorum',
        '1',
        '--json',
      ]),
    ) as { persistence: { ensembleSize: number } };
    t.is(persistence.persistence.ensembleSize, 1);
    await ok(['namespaces', 'set-retention', 'acme/app', '--time', '7d', '--size', '10G']);
    await ok(['namespaces', 'set-deduplication', 'acme/app', '--enable']);
    const policies = JSON.parse(await ok(['namespaces', 'policies', 'acme/app', '--json'])) as {
      retention: { timeMs: number; sizeBytes: number };
    };
    t.is(policies.retention.timeMs, 7 * 86_400_000);
    t.is(policies.retention.sizeBytes, 10 * 1024 ** 3);

    await ok(['topics', 'create', 'acme/app/orders', '-p', '2']);
    const topics = JSON.parse(await ok(['topics', 'list', 'acme/app', '--json'])) as {
      topic: string;
      partitions: number;
    }[];
    t.true(topics.some((x) => x.topic === 'persistent://acme/app/orders' && x.partitions === 2));
    const ids = jsonLines(
      await ok(['produce', 'acme/app/orders', '-m', 'a', '-m', 'b', '-m', 'c', '-m', 'd', '--json']),
    );
    for (const a of ids) t.regex(String(a.id), /^\d+:\d+:\d+:[01]$/);
    await ok(['subscriptions', 'create', 'acme/app/orders', '-s', 'audit', '--from', 'earliest']);
    t.deepEqual(JSON.parse(await ok(['subscriptions', 'list', 'acme/app/orders', '--json'])), ['audit']);
    const consumed = jsonLines(await ok(['consume', 'acme/app/orders', '-s', 'audit', '-n', '4', '--json']));
    t.deepEqual(consumed.map((m) => m.value).sort(), ['a', 'b', 'c', 'd']);
    const stats = JSON.parse(await ok(['topics', 'stats', 'acme/app/orders', '--json'])) as {
      subscriptions: unknown[];
    };
    t.is(stats.subscriptions.length, 1);
    await ok(['subscriptions', 'reset', 'acme/app/orders', '-s', 'audit', '--time', '2000-01-01T00:00:00Z']);
    const replay = jsonLines(await ok(['consume', 'acme/app/orders', '-s', 'audit', '-n', '4', '--json']));
    t.is(replay.length, 4);
    const internal = JSON.parse(
      await ok(['topics', 'internal-stats', 'acme/app/orders-partition-0', '--json']),
    ) as {
      ledgers: unknown[];
    };
    t.true(internal.ledgers.length >= 1);
    await ok(['subscriptions', 'delete', 'acme/app/orders', '-s', 'audit']);
    t.deepEqual(JSON.parse(await ok(['subscriptions', 'list', 'acme/app/orders', '--json'])), []);
  },
);

test.serial('cli - bad input is a one-line error and a non-zero exit', async (t) => {
  const cases: [string[], RegExp][] = [
    [['consume', 'x', '-s', 's', '-t', 'fanout'], /subscription type 'fanout' is unknown/],
    [['produce', 'x'], /nothing to send/],
    [['namespaces', 'create', 'nosuchtenant/ns'], /nosuchtenant/],
    [['produce', 'bad//name', '-m', 'x'], /./],
    [['subscriptions', 'reset', 'x', '-s', 's', '--time', 'yesterday'], /ISO-8601/],
    [['namespaces', 'set-persistence', 'public/default', '-e', '1', '-w', '2', '-a', '1'], /E >= Qw >= Qa/],
  ];
  for (const [args, pattern] of cases) {
    const r = await sluice(args);
    t.not(r.code, 0, args.join(' '));
    t.regex(r.stderr, pattern, args.join(' '));
    t.is(r.stderr.trim().split('\n').length, 1, `${args.join(' ')}: ${r.stderr}`);
  }
  const down = await runSluice(url, ['tenants', 'list', '--url', '127.0.0.1:1']);
  t.not(down.code, 0);
  t.regex(down.stderr, /is a broker running at 127\.0\.0\.1:1/);
});
