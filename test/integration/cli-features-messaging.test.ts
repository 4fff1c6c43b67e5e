import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { jsonLines, runSluice } from '../support/cli.js';
import { type SluiceProcess, startStandalone } from '../support/cluster.js';

// The CLI verbs of the messaging features against a real standalone:
// compressed produce, a dead-letter queue, delayed delivery, and resetting a
// subscription by time and by id on a partitioned topic.

let standalone: SluiceProcess | undefined;
let dataDir = '';
let url = '';

test.before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'sluice-cli-features-'));
  standalone = await startStandalone(dataDir);
  url = standalone.address;
});

test.after.always(() => {
  standalone?.kill('SIGKILL');
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

const sluice = (args: string[], input?: string) => runSluice(url, args, input);

test.serial('cli - produce --compression lz4 and zstd; consume reads both', async (t) => {
  for (const codec of ['lz4', 'zstd']) {
    const p = await sluice(['produce', 'cf-codec', '-m', `via ${codec}`, '-n', '5', '--compression', codec]);
    t.is(p.code, 0, p.stderr);
  }
  const bad = await sluice(['produce', 'cf-codec', '-m', 'x', '--compression', 'brotli']);
  t.is(bad.code, 1);
  t.regex(bad.stderr, /compression 'brotli' is not supported; use none, lz4, zstd, gzip, deflate/);
  const c = await sluice(['consume', 'cf-codec', '-s', 's', '--from', 'earliest', '-n', '10', '--json']);
  t.is(c.code, 0, c.stderr);
  t.deepEqual(
    jsonLines(c.stdout).map((m) => m.value),
    [...Array(5).fill('via lz4'), ...Array(5).fill('via zstd')],
  );
});

test.serial(
  'cli - consume --nack --dlq-max-redeliver dead-letters a message after N deliveries',
  async (t) => {
    const p = await sluice(['produce', 'cf-dlq', '-m', 'poison', '-p', 'why=test', '--json']);
    t.is(p.code, 0, p.stderr);
    const id = String(jsonLines(p.stdout)[0]!.id);
    const c = await sluice([
      'consume',
      'cf-dlq',
      '-s',
      'work',
      '-t',
      'shared',
      '--from',
      'earliest',
      '--nack',
      '--nack-delay',
      '100ms',
      '--dlq-max-redeliver',
      '2',
      '--wait',
      '2',
      '--json',
    ]);
    t.is(c.code, 0, c.stderr);
    t.deepEqual(
      jsonLines(c.stdout).map((m) => [m.id, m.redeliveryCount]),
      [
        [id, 0],
        [id, 1],
      ],
    );
    const dead = await sluice([
      'consume',
      'cf-dlq-work-DLQ',
      '-s',
      'x',
      '--from',
      'earliest',
      '-n',
      '1',
      '--json',
    ]);
    t.is(dead.code, 0, dead.stderr);
    const [letter] = jsonLines(dead.stdout);
    t.is(letter!.value, 'poison');
    t.deepEqual(letter!.properties, {
      why: 'test',
      REAL_TOPIC: 'persistent://public/default/cf-dlq',
      ORIGIN_MESSAGE_ID: id,
    });
    // The original was acknowledged after the dead letter was stored.
    const rest = await sluice(['consume', 'cf-dlq', '-s', 'work', '-t', 'shared', '--wait', '1', '--json']);
    t.is(rest.stdout.trim(), '');
  },
);

test.serial('cli - produce --deliver-after holds the message on a shared subscription', async (t) => {
  const sub = await sluice(['subscriptions', 'create', 'cf-delay', '-s', 's', '--from', 'earliest']);
  t.is(sub.code, 0, sub.stderr);
  const sentAt = Date.now();
  const p = await sluice(['produce', 'cf-delay', '-m', 'later', '--deliver-after', '2s']);
  t.is(p.code, 0, p.stderr);
  const c = await sluice(['consume', 'cf-delay', '-s', 's', '-t', 'shared', '-n', '1', '--json']);
  t.is(c.code, 0, c.stderr);
  t.is(jsonLines(c.stdout)[0]!.value, 'later');
  t.true(Date.now() - sentAt >= 1900, `delivered after ${Date.now() - sentAt} ms`);
});

test.serial('cli - subscriptions reset --time and --id on a partitioned topic', async (t) => {
  t.is((await sluice(['topics', 'create', 'cf-reset', '-p', '3'])).code, 0);
  t.is((await sluice(['subscriptions', 'create', 'cf-reset', '-s', 's', '--from', 'earliest'])).code, 0);
  const early = await sluice(['produce', 'cf-reset', '-m', 'early', '-n', '6', '--json']);
  t.is(early.code, 0, early.stderr);
  await new Promise((r) => setTimeout(r, 100));
  const middle = new Date().toISOString();
  await new Promise((r) => setTimeout(r, 100));
  const late = await sluice(['produce', 'cf-reset', '-m', 'late', '-n', '6', '--json']);
  t.is(late.code, 0, late.stderr);
  const all = await sluice(['consume', 'cf-reset', '-s', 's', '-n', '12', '--json']);
  t.is(all.code, 0, all.stderr);
  t.is(jsonLines(all.stdout).length, 12);

  // --time applies to every partition: exactly the 6 late messages come back.
  const byTime = await sluice(['subscriptions', 'reset', 'cf-reset', '-s', 's', '--time', middle]);
  t.is(byTime.code, 0, byTime.stderr);
  const afterTime = await sluice(['consume', 'cf-reset', '-s', 's', '-n', '6', '--wait', '2', '--json']);
  t.deepEqual(
    jsonLines(afterTime.stdout).map((m) => m.value),
    Array(6).fill('late'),
  );
  t.is((await sluice(['consume', 'cf-reset', '-s', 's', '--wait', '1', '--json'])).stdout.trim(), '');

  // --id carries its partition: only that partition moves back.
  const target = String(jsonLines(late.stdout)[0]!.id);
  t.regex(target, /^\d+:\d+:\d+:\d+$/);
  const byId = await sluice(['subscriptions', 'reset', 'cf-reset', '-s', 's', '--id', target]);
  t.is(byId.code, 0, byId.stderr);
  const afterId = jsonLines(
    (await sluice(['consume', 'cf-reset', '-s', 's', '--wait', '2', '--json'])).stdout,
  );
  t.true(afterId.length >= 1);
  t.is(afterId[0]!.id, target);
  const partition = target.split(':')[3];
  for (const m of afterId) t.is(String(m.id).split(':')[3], partition);

  const bad = await sluice(['subscriptions', 'reset', 'cf-reset', '-s', 's', '--time', 'yesterday']);
  t.is(bad.code, 1);
  t.regex(bad.stderr, /not an ISO-8601 time/);
});
