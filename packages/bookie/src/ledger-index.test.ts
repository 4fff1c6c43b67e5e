import { mkdtemp, open, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32c, silentLogger } from '@sluice/common';
import test from 'ava';
import { LedgerIndex, PendingRecords } from './ledger-index.js';

async function tempDir(t: { teardown: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ledger-index-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('pending records - encoded in order across growing chunks, each with its CRC', (t) => {
  const p = new PendingRecords();
  const n = 5000;
  for (let i = 0; i < n; i++) p.add(i, { logId: i % 7, offset: i * 1000 + 2 ** 40, length: 100 + i });
  t.is(p.count, n);
  const bytes = Buffer.concat(p.buffers());
  t.is(bytes.length, n * 32);
  t.true(p.buffers().length > 2, 'records span several chunks');
  for (const i of [0, 31, 32, 95, 96, 4999]) {
    const at = i * 32;
    t.is(Number(bytes.readBigUInt64LE(at)), i);
    t.is(bytes.readUInt32LE(at + 8), i % 7);
    t.is(Number(bytes.readBigUInt64LE(at + 12)), i * 1000 + 2 ** 40);
    t.is(bytes.readUInt32LE(at + 20), 100 + i);
    t.is(bytes.readUInt32LE(at + 24), crc32c(bytes.subarray(at, at + 24)));
  }
});

test('ledger index - locations set between persists load back, the latest of a twice-set id winning', async (t) => {
  const dir = await tempDir(t);
  const a = new LedgerIndex(dir, silentLogger);
  await a.load(0);
  const l = a.getOrCreate(3, 0);
  for (let i = 0; i < 3000; i++) a.setLocation(l, i, { logId: 1, offset: i * 64, length: 64 });
  await a.persist();
  // Moved after the first persist (as compaction does), and moved twice before the next one.
  a.setLocation(l, 10, { logId: 2, offset: 0, length: 64 });
  a.setLocation(l, 11, { logId: 2, offset: 64, length: 64 });
  a.setLocation(l, 11, { logId: 2, offset: 128, length: 64 });
  for (let i = 3000; i < 3100; i++) a.setLocation(l, i, { logId: 2, offset: 192 + i, length: 64 });
  await a.persist();
  await a.writeCheckpoint({ fileId: 1, offset: 0 });
  t.is((await stat(join(dir, 'index', '3.idx'))).size, (3000 + 3 + 100) * 32);

  const b = new LedgerIndex(dir, silentLogger);
  await b.load(0);
  const m = b.get(3)!;
  t.is(m.entries.size, 3100);
  t.deepEqual(m.entries.get(0), { logId: 1, offset: 0, length: 64 });
  t.deepEqual(m.entries.get(10), { logId: 2, offset: 0, length: 64 });
  t.deepEqual(m.entries.get(11), { logId: 2, offset: 128, length: 64 });
  t.deepEqual(m.entries.get(2999), { logId: 1, offset: 2999 * 64, length: 64 });
  t.deepEqual(m.entries.get(3099), { logId: 2, offset: 192 + 3099, length: 64 });
  t.is(m.suspect, undefined);
  t.is(m.pending.count, 0, 'loaded records are not pending again');
  const cp = JSON.parse(await readFile(join(dir, 'checkpoint.json'), 'utf8'));
  t.deepEqual(cp.ledgers[0].slice(0, 1), [3]);
  t.is(cp.ledgers[0][4], 3103);
});

test('ledger index - a busy ledger is persisted ahead of the checkpoint; its records load back without one', async (t) => {
  const dir = await tempDir(t);
  const a = new LedgerIndex(dir, silentLogger, 100);
  await a.load(0);
  let fulls = 0;
  a.onFull = () => fulls++;
  const busy = a.getOrCreate(4, 0);
  const quiet = a.getOrCreate(5, 0);
  for (let i = 0; i < 150; i++) a.setLocation(busy, i, { logId: 1, offset: i * 64, length: 64 });
  for (let i = 0; i < 20; i++) a.setLocation(quiet, i, { logId: 1, offset: 20_000 + i * 64, length: 64 });
  t.is(fulls, 1, 'told once, when the busy ledger reached the threshold');
  await a.persistFull();
  const idx = (id: number) => join(dir, 'index', `${id}.idx`);
  t.is((await stat(idx(4))).size, 150 * 32);
  t.is(busy.pending.count, 0);
  t.is(busy.durableRecords, 150);
  await t.throwsAsync(stat(idx(5)), { code: 'ENOENT' }, 'a quiet ledger waits for the checkpoint');
  t.is(quiet.pending.count, 20);

  // Taken by a checkpoint's persist after it filled up: nothing left to append early.
  for (let i = 150; i < 250; i++) a.setLocation(busy, i, { logId: 1, offset: i * 64, length: 64 });
  t.is(fulls, 2);
  await a.persist();
  await a.persistFull();
  t.is((await stat(idx(4))).size, 250 * 32);

  // A crash before any checkpoint file: the fsynced records still load back,
  // and a torn append after them is skipped, not taken for damage.
  for (let i = 250; i < 300; i++) a.setLocation(busy, i, { logId: 2, offset: i * 64, length: 64 });
  const fh = await open(idx(4), 'a');
  await fh.write(Buffer.alloc(32 + 5, 0xcd));
  await fh.close();
  const b = new LedgerIndex(dir, silentLogger, 100);
  await b.load(0);
  const m = b.get(4)!;
  t.is(m.entries.size, 250);
  t.deepEqual(m.entries.get(249), { logId: 1, offset: 249 * 64, length: 64 });
  t.is(m.entries.get(250), undefined);
  t.is(m.suspect, undefined);
  t.is(b.get(5)!.entries.size, 20);
});
