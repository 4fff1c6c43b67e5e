import { mkdtemp, open, readdir, rm, stat, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32c, createRegistry, silentLogger } from '@sluice/common';
import test from 'ava';
import { BookieStore, type BookieStoreOptions } from './bookie-store.js';
import { createBookieMetrics } from './metrics.js';

async function tempDir(t: { teardown: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'bookie-store-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function options(dir: string, over: Partial<BookieStoreOptions> = {}): BookieStoreOptions {
  return {
    journalDir: join(dir, 'journal'),
    ledgerDir: join(dir, 'ledgers'),
    journalGroupBytes: 512 * 1024,
    journalGroupWaitMs: 1,
    journalFileBytes: 64 * 1024 * 1024,
    journalSync: true,
    entryLogFileBytes: 64 * 1024 * 1024,
    checkpointIntervalMs: 60_000,
    writeCacheBytes: 16 * 1024 * 1024,
    maxEntryBytes: 1024 * 1024,
    logger: silentLogger,
    metrics: createBookieMetrics(createRegistry(false)),
    ...over,
  };
}

function entry(ledgerId: number, entryId: number, size = 100) {
  const payload = Buffer.alloc(size, `${ledgerId}:${entryId};`);
  return { ledgerId, entryId, lac: entryId - 1, payload, crc32c: crc32c(payload) };
}

async function openStore(dir: string, over: Partial<BookieStoreOptions> = {}): Promise<BookieStore> {
  const s = new BookieStore(options(dir, over));
  await s.open();
  return s;
}

test('bookie store - acked entries read back from the cache, after a checkpoint and after a restart', async (t) => {
  const dir = await tempDir(t);
  let s = await openStore(dir);
  const outs = await Promise.all(Array.from({ length: 50 }, (_, i) => s.add(entry(1, i), false)));
  t.true(outs.every((o) => o.status === 'OK'));
  const cached = await s.read(1, 7);
  t.is(cached.status, 'OK');
  await s.checkpoint();
  const fromLog = await s.read(1, 7);
  t.true(fromLog.status === 'OK' && fromLog.entry.payload.equals(entry(1, 7).payload));
  const last = await s.read(1, -1);
  t.true(last.status === 'OK' && last.entry.entryId === 49);
  await s.close();
  s = await openStore(dir);
  t.teardown(() => s.close());
  for (let i = 0; i < 50; i++) {
    const r = await s.read(1, i);
    t.true(r.status === 'OK' && r.entry.payload.equals(entry(1, i).payload), `entry ${i}`);
  }
  t.deepEqual(s.lac(1), { lac: 48, lastEntryId: 49 });
  t.is((await s.read(1, 50)).status, 'NO_ENTRY');
  t.is((await s.read(2, 0)).status, 'NO_LEDGER');
});

test('bookie store - a torn journal tail ends replay quietly and keeps every complete record', async (t) => {
  const dir = await tempDir(t);
  const s = await openStore(dir);
  for (let i = 0; i < 10; i++) t.is((await s.add(entry(3, i, 1000), false)).status, 'OK');
  // Simulate a crash: no close (no final checkpoint), then tear the last record.
  await s.abort();
  const jdir = join(dir, 'journal');
  const files = (await readdir(jdir)).sort();
  const last = join(jdir, files.at(-1)!);
  const size = (await stat(last)).size;
  await truncate(last, size - 500);
  const s2 = await openStore(dir);
  t.teardown(() => s2.close());
  for (let i = 0; i < 9; i++) t.is((await s2.read(3, i)).status, 'OK');
  t.is((await s2.read(3, 9)).status, 'NO_ENTRY');
  t.is((await s2.add(entry(3, 9, 1000), false)).status, 'OK');
});

test('bookie store - a bit flipped in an entry log is reported as corrupt, never served', async (t) => {
  const dir = await tempDir(t);
  const s = await openStore(dir);
  t.teardown(() => s.close());
  for (let i = 0; i < 3; i++) await s.add(entry(4, i, 4096), false);
  await s.checkpoint();
  const ldir = join(dir, 'ledgers');
  const log = (await readdir(ldir)).find((n) => n.startsWith('entrylog-') && n !== undefined)!;
  const fh = await open(join(ldir, log), 'r+');
  const b = Buffer.alloc(1);
  const at = 4096 + 32 + 32 + 100; // inside the payload of entry 1
  await fh.read(b, 0, 1, at);
  b[0] = b[0]! ^ 0x10;
  await fh.write(b, 0, 1, at);
  await fh.close();
  const r = await s.read(4, 1);
  t.is(r.status, 'CORRUPT');
  t.regex(r.status === 'CORRUPT' ? r.message : '', /CRC32C/);
  t.is((await s.read(4, 0)).status, 'OK');
  t.is((await s.read(4, 2)).status, 'OK');
});

test('bookie store - a fenced ledger refuses normal adds, also after a restart; recovery adds pass', async (t) => {
  const dir = await tempDir(t);
  const s = await openStore(dir);
  await s.add(entry(5, 0), false);
  const f = await s.fence(5);
  t.is(f.status, 'OK');
  t.is(f.lastEntryId, 0);
  t.is((await s.add(entry(5, 1), false)).status, 'FENCED');
  // Crash without a checkpoint: the fence must come back from the journal.
  await s.abort();
  const s2 = await openStore(dir);
  t.is((await s2.add(entry(5, 1), false)).status, 'FENCED');
  t.is((await s2.add(entry(5, 1), true)).status, 'OK');
  await s2.close();
  // And from the checkpoint once the journal is trimmed.
  const s3 = await openStore(dir);
  t.teardown(() => s3.close());
  t.is((await s3.add(entry(5, 2), false)).status, 'FENCED');
  t.is((await s3.read(5, 1)).status, 'OK');
});

test('bookie store - bad input gets a clear INVALID status', async (t) => {
  const dir = await tempDir(t);
  const s = await openStore(dir);
  t.teardown(() => s.close());
  const bad = [
    { ...entry(1, 0), entryId: -5 },
    { ...entry(1, 0), entryId: 2 ** 60 },
    { ...entry(1, 0), ledgerId: -1 },
    { ...entry(1, 0), crc32c: 12345 },
    entry(1, 0, 2 * 1024 * 1024),
  ];
  const outs = await Promise.all(bad.map((e) => s.add(e, false)));
  t.deepEqual(
    outs.map((o) => o.status),
    ['INVALID', 'INVALID', 'INVALID', 'INVALID', 'INVALID'],
  );
  t.regex(outs[3]!.message, /CRC32C/);
  t.regex(outs[4]!.message, /max entry size/);
  t.is((await s.add(entry(1, 0), false)).status, 'OK');
});

test('bookie store - dropping a ledger and compacting keeps other entries readable and frees the log', async (t) => {
  const dir = await tempDir(t);
  const s = await openStore(dir, { entryLogFileBytes: 64 * 1024 });
  for (let i = 0; i < 40; i++) {
    await s.add(entry(10, i, 2000), false);
    await s.add(entry(11, i, 2000), false);
  }
  await s.checkpoint();
  const before = [...s.storage.logs.sizes.keys()].length;
  await s.storage.dropLedger(10, () => s.position());
  t.is((await s.read(10, 0)).status, 'NO_LEDGER');
  const candidates = s.storage.compactionCandidates(0.6);
  t.true(candidates.length > 0);
  let compacted = 0;
  for (const id of candidates) compacted += await s.storage.compact(id, () => s.position());
  t.true(compacted > 0);
  t.true([...s.storage.logs.sizes.keys()].length <= before);
  for (let i = 0; i < 40; i++) t.is((await s.read(11, i)).status, 'OK');
  await s.close();
  const s2 = await openStore(dir);
  t.teardown(() => s2.close());
  t.is((await s2.read(10, 3)).status, 'NO_LEDGER');
  for (let i = 0; i < 40; i++) {
    const r = await s2.read(11, i);
    t.true(r.status === 'OK' && r.entry.payload.equals(entry(11, i, 2000).payload));
  }
});
