import {
  appendFileSync,
  closeSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Clock, SessionLostError } from '@sluice/common';
import test from 'ava';
import { CompactedError, EmbeddedMetadataStore, type WatchEvent } from '../index.js';

const b = (s: string) => Buffer.from(s);

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-embedded-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('embedded - survives a restart with every persistent key and no ephemeral one', async (t) => {
  const dir = tempDir(t);
  const s = await EmbeddedMetadataStore.open({ dataDir: dir });
  const session = await s.createSession(2000);
  await s.put('p/a', b('a'));
  const vb = await s.put('p/b', b('b1'));
  await s.put('p/b', b('b2'), { expectedVersion: vb });
  await s.put('p/gone', b('x'));
  await s.delete('p/gone');
  await s.put('e/x', b('eph'), { session });
  // A persistent key turned ephemeral must not come back as persistent.
  await s.put('p/turned', b('persistent'));
  await s.put('p/turned', b('ephemeral'), { session });
  const before = await s.revision();
  const bVersion = (await s.get('p/b'))?.version;
  await s.close();

  const s2 = await EmbeddedMetadataStore.open({ dataDir: dir });
  t.teardown(() => s2.close());
  t.deepEqual(
    (await s2.listAll('')).map((x) => `${x.key}=${x.value.toString()}`),
    ['p/a=a', 'p/b=b2'],
  );
  t.is((await s2.get('p/b'))?.version, bVersion);
  t.is(await s2.revision(), before, 'the revision counter never goes back');
  t.true((await s2.put('p/c', b('c'))) > before);
});

test('embedded - a torn tail of the log is cut off at start and the store keeps working', async (t) => {
  const dir = tempDir(t);
  const s = await EmbeddedMetadataStore.open({ dataDir: dir });
  await s.put('k/1', b('one'));
  await s.put('k/2', b('two'));
  await s.close();
  const log = join(dir, 'txn.log');
  const good = statSync(log).size;
  // A crash mid-append: a header promising more bytes than were written.
  appendFileSync(log, Buffer.from([0xff, 0x00, 0x00, 0x00, 1, 2, 3, 4, 5]));
  const s2 = await EmbeddedMetadataStore.open({ dataDir: dir });
  t.is(statSync(log).size, good);
  t.is((await s2.get('k/2'))?.value.toString(), 'two');
  await s2.put('k/3', b('three'));
  await s2.close();
  // A corrupted last record (bad CRC) is dropped the same way.
  const buf = readFileSync(log);
  buf[buf.length - 2] = (buf[buf.length - 2] as number) ^ 0xff;
  writeFileSync(log, buf);
  const s3 = await EmbeddedMetadataStore.open({ dataDir: dir });
  t.teardown(() => s3.close());
  t.is(await s3.get('k/3'), undefined);
  t.is((await s3.get('k/1'))?.value.toString(), 'one');
});

test('embedded - snapshots bound the log and replay to the same state', async (t) => {
  const dir = tempDir(t);
  const s = await EmbeddedMetadataStore.open({ dataDir: dir, snapshotThresholdBytes: 4096 });
  for (let i = 0; i < 200; i++) await s.put(`s/${i % 20}`, b(`v${i}`));
  await s.delete('s/0');
  const rev = await s.revision();
  const all = await s.listAll('s/');
  await s.close();
  t.true(statSync(join(dir, 'txn.log')).size < 4096);
  t.true(statSync(join(dir, 'snapshot')).size > 0);
  const s2 = await EmbeddedMetadataStore.open({ dataDir: dir });
  t.teardown(() => s2.close());
  t.is(await s2.revision(), rev);
  t.deepEqual(await s2.listAll('s/'), all);
});

test('embedded - a watch older than the kept history fails with CompactedError', async (t) => {
  const dir = tempDir(t);
  const s = await EmbeddedMetadataStore.open({ dataDir: dir, historyRevisions: 5 });
  t.teardown(() => s.close());
  const first = await s.put('h/a', b('1'));
  for (let i = 0; i < 10; i++) await s.put('h/a', b(String(i)));
  await t.throwsAsync(
    s.watch('h/', () => undefined, { fromRevision: first }),
    { instanceOf: CompactedError },
  );
  const rev = await s.revision();
  const seen: WatchEvent[] = [];
  const w = await s.watch('h/', (ev) => seen.push(ev), { fromRevision: rev - 4 });
  await new Promise((r) => setImmediate(r));
  t.deepEqual(
    seen.map((e) => e.version),
    [rev - 4, rev - 3, rev - 2, rev - 1, rev],
  );
  await w.close();
});

test('embedded - a session not renewed within its TTL is lost once and its keys go', async (t) => {
  const dir = tempDir(t);
  // A clock whose timers fire only when told, so a stalled event loop can be staged.
  let now = 1_000_000;
  let pending: (() => void)[] = [];
  const clock: Clock = {
    now: () => now,
    setTimeout(fn) {
      pending.push(fn);
      return { clear: () => (pending = pending.filter((f) => f !== fn)) };
    },
    sleep: () => Promise.resolve(),
  };
  const fire = (ms: number) => {
    now += ms;
    const due = pending;
    pending = [];
    for (const fn of due) fn();
  };
  const s = await EmbeddedMetadataStore.open({ dataDir: dir, clock });
  t.teardown(() => s.close());
  const session = await s.createSession(3000);
  await s.put('e/k', b('v'), { session });
  const lost: Error[] = [];
  session.onLost((err) => lost.push(err));
  for (let i = 0; i < 10; i++) fire(1000); // renewals on time
  t.false(session.lost);
  t.truthy(await s.get('e/k'));
  // The process stalled past the TTL before the next renewal.
  fire(3500);
  t.true(session.lost);
  t.is(lost.length, 1);
  t.true(lost[0] instanceof SessionLostError);
  t.is(await s.get('e/k'), undefined);
  await t.throwsAsync(s.put('e/k2', b('v'), { session }), { instanceOf: SessionLostError });
  fire(1000);
  t.is(lost.length, 1);
  t.is(pending.length, 0, 'a lost session stops its timer');
});

test('embedded - keys sort by UTF-8 bytes like etcd', async (t) => {
  const dir = tempDir(t);
  const s = await EmbeddedMetadataStore.open({ dataDir: dir });
  t.teardown(() => s.close());
  const keys = ['u/\uffff', 'u/😀', 'u/a', 'u/\u00e9'];
  for (const k of keys) await s.put(k, b('x'));
  t.deepEqual(
    (await s.listAll('u/')).map((x) => x.key),
    [...keys].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y))),
  );
});

test('embedded - concurrent txns share group writes and every answered one survives a restart', async (t) => {
  const dir = tempDir(t);
  const s = await EmbeddedMetadataStore.open({ dataDir: dir, snapshotThresholdBytes: 8192 });
  const seen: number[] = [];
  const w = await s.watch('g/', (ev) => seen.push(ev.version));
  const revs = await Promise.all(Array.from({ length: 300 }, (_, i) => s.put(`g/${i % 37}`, b(`v${i}`))));
  t.deepEqual(
    revs,
    [...revs].sort((x, y) => x - y),
    'revisions follow commit order',
  );
  t.is(new Set(revs).size, 300);
  await new Promise((r) => setImmediate(r));
  t.deepEqual(seen, revs, 'watch events arrive once durable, in revision order');
  await w.close();
  const all = await s.listAll('g/');
  await s.close();
  const s2 = await EmbeddedMetadataStore.open({ dataDir: dir });
  t.teardown(() => s2.close());
  t.deepEqual(await s2.listAll('g/'), all);
  t.is(await s2.revision(), revs[revs.length - 1] as number);
});

test('embedded - a failed log write stops the store instead of answering', async (t) => {
  const dir = tempDir(t);
  const s = await EmbeddedMetadataStore.open({ dataDir: dir });
  await s.put('f/a', b('1'));
  const errors: Error[] = [];
  await s.watch('f/', () => undefined, { onError: (err) => errors.push(err) });
  // Pull the log's file out from under it: the next write fails with EBADF.
  const log = (s as unknown as { log: { fd: number } }).log;
  closeSync(log.fd);
  log.fd = openSync(join(dir, 'txn.log'), 'r');
  await t.throwsAsync(s.put('f/b', b('2')), { message: /log write failed/ });
  await t.throwsAsync(s.get('f/a'), { message: /log write failed/ });
  t.is(errors.length, 1, 'watches learn the store stopped');
  await s.close();
  const s2 = await EmbeddedMetadataStore.open({ dataDir: dir });
  t.teardown(() => s2.close());
  t.is((await s2.get('f/a'))?.value.toString(), '1');
  t.is(await s2.get('f/b'), undefined, 'the unanswered txn is not on disk');
});
