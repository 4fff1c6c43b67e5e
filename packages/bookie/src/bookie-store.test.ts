import fsp, {
  type FileHandle,
  mkdir,
  mkdtemp,
  open,
  readdir,
  readFile,
  rm,
  stat,
  truncate,
  writeFile,
} from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32c, createRegistry, silentLogger } from '@sluice/common';
import test, { type ExecutionContext } from 'ava';
import { BookieStore, type BookieStoreOptions } from './bookie-store.js';
import { DIRECT_IO_ALIGN, directIoWorks } from './direct-io.js';
import { ENTRY_HEADER_BYTES, writeEntryHeader } from './entry-log.js';
import { DELETING_SUFFIX } from './file-deleter.js';
import { JOURNAL_HEADER_BYTES, REF_PAYLOAD_BYTES } from './journal-record.js';
import { FLUSH_LINGER_MS } from './ledger-storage.js';
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
    journalMaxWritesInFlight: 2,
    journalFileBytes: 64 * 1024 * 1024,
    journalSync: true,
    journalPreallocBytes: 64 * 1024,
    entryLogFileBytes: 64 * 1024 * 1024,
    checkpointIntervalMs: 60_000,
    writeCacheBytes: 16 * 1024 * 1024,
    entryLogSyncBytes: 256 * 1024,
    entryLogDirectBytes: 16 * 1024,
    // Large entries are written once whatever the journal's backlog.
    entryLogDirectBacklogBytes: 0,
    maxEntryBytes: 1024 * 1024,
    logger: silentLogger,
    metrics: createBookieMetrics(createRegistry(false)),
    ...over,
  };
}

function entry(ledgerId: number, entryId: number, size = 100) {
  const payload = Buffer.alloc(size, `${ledgerId}:${entryId};`);
  return {
    ledgerId,
    entryId,
    lac: entryId - 1,
    payload,
    crc32c: crc32c(payload),
    ledgerLength: (entryId + 1) * size,
  };
}

/** An entry lost in a crash (so never acknowledged) can be added again and reads back. */
async function addsAgain(
  t: ExecutionContext,
  s: BookieStore,
  ledgerId: number,
  entryId: number,
  size: number,
) {
  t.is((await s.add(entry(ledgerId, entryId, size), false)).status, 'OK', 'the entry can be written again');
  const again = await s.read(ledgerId, entryId);
  t.true(again.status === 'OK' && again.entry.payload.equals(entry(ledgerId, entryId, size).payload));
}

async function openStore(dir: string, over: Partial<BookieStoreOptions> = {}): Promise<BookieStore> {
  const s = new BookieStore(options(dir, over));
  await s.open();
  return s;
}

/** Hold every journal write of `s` until the returned function is called. */
function holdJournalWrites(s: BookieStore): () => void {
  const fh = (s.journal as unknown as { fh: FileHandle }).fh;
  const realWrite = fh.writev.bind(fh);
  let release!: () => void;
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  fh.writev = (async (...args: Parameters<FileHandle['writev']>) => {
    await gate;
    return realWrite(...args);
  }) as FileHandle['writev'];
  return release;
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

for (const tear of ['truncated', 'zeroed'] as const) {
  test(`bookie store - a torn journal tail (${tear}) ends replay quietly and keeps every complete record`, async (t) => {
    const dir = await tempDir(t);
    const s = await openStore(dir);
    for (let i = 0; i < 10; i++) t.is((await s.add(entry(3, i, 1000), false)).status, 'OK');
    // Simulate a crash: no close (no final checkpoint), then tear the last record.
    await s.abort();
    const jdir = join(dir, 'journal');
    // The file the records went to: the newest one with data (the journal
    // prepares the next file ahead, empty until a roll).
    const files = (await readdir(jdir)).sort();
    const sizes = await Promise.all(files.map(async (f) => (await stat(join(jdir, f))).size));
    const last = join(jdir, files[sizes.findLastIndex((n) => n > 0)]!);
    const written = 10 * (JOURNAL_HEADER_BYTES + 1000);
    if (tear === 'truncated') await truncate(last, written - 500);
    else {
      // A write torn inside preallocated space leaves zeros where its end should be.
      const fh = await open(last, 'r+');
      await fh.write(Buffer.alloc(500), 0, 500, written - 500);
      await fh.close();
    }
    const s2 = await openStore(dir);
    t.teardown(() => s2.close());
    for (let i = 0; i < 9; i++) t.is((await s2.read(3, i)).status, 'OK');
    t.is((await s2.read(3, 9)).status, 'NO_ENTRY');
    t.is((await s2.add(entry(3, 9, 1000), false)).status, 'OK');
  });
}

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
  const at = 4096 + 2 * ENTRY_HEADER_BYTES + 100; // inside the payload of entry 1
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
    { ...entry(1, 0), ledgerLength: -1 },
    { ...entry(1, 0), ledgerLength: 99 },
  ];
  const outs = await Promise.all(bad.map((e) => s.add(e, false)));
  t.deepEqual(
    outs.map((o) => o.status),
    ['INVALID', 'INVALID', 'INVALID', 'INVALID', 'INVALID', 'INVALID', 'INVALID'],
  );
  t.regex(outs[6]!.message, /ledger length 99 .*at least 100/);
  t.regex(outs[3]!.message, /CRC32C/);
  t.regex(outs[4]!.message, /max entry size/);
  t.is((await s.add(entry(1, 0), false)).status, 'OK');
});

/** Every entry 0..count-1 of `ledgerId` reads back OK with the payload `entry` made. */
async function assertReadsBack(
  t: ExecutionContext,
  s: BookieStore,
  ledgerId: number,
  count: number,
  size: number,
) {
  for (let i = 0; i < count; i++) {
    const r = await s.read(ledgerId, i);
    t.true(r.status === 'OK' && r.entry.payload.equals(entry(ledgerId, i, size).payload), `${ledgerId}:${i}`);
  }
}

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
  await assertReadsBack(t, s2, 11, 40, 2000);
});

test('bookie store - entries written once: a dropped ledger is compacted out of the direct logs, the rest stays readable', async (t) => {
  const dir = await tempDir(t);
  const size = 20 * 1024;
  const metrics = createBookieMetrics(createRegistry(false));
  const s = await openStore(dir, { entryLogFileBytes: 256 * 1024, metrics });
  for (let i = 0; i < 30; i++) {
    t.is((await s.add(entry(30, i, size), false)).status, 'OK');
    t.is((await s.add(entry(31, i, size), false)).status, 'OK');
  }
  t.is((await metrics.entriesWrittenOnce.get()).values[0]?.value, 60, 'every add took the direct path');
  await s.checkpoint();
  const before = [...s.storage.logs.sizes.keys()].length;
  await s.storage.dropLedger(30, () => s.position());
  const candidates = s.storage.compactionCandidates(0.6);
  t.true(candidates.length >= 2, `candidates: ${candidates.join(',')}`);
  let compacted = 0;
  for (const id of candidates) compacted += await s.storage.compact(id, () => s.position());
  t.is(compacted, candidates.length);
  t.true([...s.storage.logs.sizes.keys()].length < before, 'logs holding only ledger 30 are gone');
  await assertReadsBack(t, s, 31, 30, size);
  await s.close();
  const s2 = await openStore(dir);
  t.teardown(() => s2.close());
  t.is((await s2.read(30, 0)).status, 'NO_LEDGER');
  await assertReadsBack(t, s2, 31, 30, size);
});

test('bookie store - the ledger length of each entry is kept in the cache, the entry log and across journal replay', async (t) => {
  const dir = await tempDir(t);
  const lengthOf = async (s: BookieStore, entryId: number) => {
    const r = await s.read(7, entryId);
    return r.status === 'OK' ? r.entry.ledgerLength : r.status;
  };
  const s = await openStore(dir);
  // An older writer that does not send a length: stored and returned as 0.
  t.is((await s.add({ ...entry(7, 0, 300), ledgerLength: 0 }, false)).status, 'OK');
  for (let i = 1; i < 5; i++) t.is((await s.add(entry(7, i, 300), false)).status, 'OK');
  t.is(await lengthOf(s, 4), 1500);
  await s.checkpoint();
  t.is(await lengthOf(s, 4), 1500, 'from the entry log');
  t.is(await lengthOf(s, 0), 0);
  t.is((await s.add(entry(7, 5, 300), false)).status, 'OK');
  // Crash: entry 5 exists only in the journal; replay must bring its length back.
  await s.abort();
  const s2 = await openStore(dir);
  t.teardown(() => s2.close());
  t.is(await lengthOf(s2, 5), 1800, 'from journal replay');
  t.is(await lengthOf(s2, -1), 1800);
  await s2.checkpoint();
  t.is(await lengthOf(s2, 5), 1800, 'from the entry log after replay');

  // The length is covered by the header CRC: a flipped bit in it is corruption, never a wrong length.
  const ldir = join(dir, 'ledgers');
  const logs = (await readdir(ldir)).filter((n) => n.startsWith('entrylog-')).sort();
  const loc = s2.storage.index.get(7)!.entries.get(5)!;
  const fh = await open(join(ldir, logs.find((n) => Number(n.slice(9, 25)) === loc.logId)!), 'r+');
  const b = Buffer.alloc(1);
  await fh.read(b, 0, 1, loc.offset + 33);
  b[0] = b[0]! ^ 0x01;
  await fh.write(b, 0, 1, loc.offset + 33);
  await fh.close();
  const r = await s2.read(7, 5);
  t.is(r.status, 'CORRUPT');
  t.regex(r.status === 'CORRUPT' ? r.message : '', /header CRC32C/);
});

test('bookie store - a ledger dir of an older storage format is refused with a clear message', async (t) => {
  const dir = await tempDir(t);
  const s = await openStore(dir);
  await s.close();
  const cp = join(dir, 'ledgers', 'checkpoint.json');
  const { readFile, writeFile } = await import('node:fs/promises');
  const json = JSON.parse(await readFile(cp, 'utf8')) as { version: number };
  await writeFile(cp, JSON.stringify({ ...json, version: 1 }));
  const err = await t.throwsAsync(openStore(dir));
  t.regex(err!.message, /storage format 1.*wipe the data dir/);
});

test('bookie store - recycled journal files never replay their stale records', async (t) => {
  const dir = await tempDir(t);
  const metrics = createBookieMetrics(createRegistry(false));
  const s = await openStore(dir, { journalFileBytes: 32 * 1024, metrics });
  // Fill several journal files with ledger 20, checkpoint them away (they become spares)...
  for (let i = 0; i < 60; i++) t.is((await s.add(entry(20, i, 2000), false)).status, 'OK');
  await s.checkpoint();
  const jdir = join(dir, 'journal');
  t.true(
    (await readdir(jdir)).some((n) => n.startsWith('journal-spare-')),
    'retired files are kept as spares',
  );
  // ...drop ledger 20, then write ledger 21 into the recycled files and crash.
  await s.storage.dropLedger(20, () => s.position());
  for (let i = 0; i < 30; i++) t.is((await s.add(entry(21, i, 1500), false)).status, 'OK');
  t.true((await metrics.journalFilesRecycled.get()).values[0]!.value > 0, 'ledger 21 went into reused files');
  await s.abort();
  const s2 = await openStore(dir, { journalFileBytes: 32 * 1024 });
  t.teardown(() => s2.close());
  for (let i = 0; i < 30; i++) {
    const r = await s2.read(21, i);
    t.true(r.status === 'OK' && r.entry.payload.equals(entry(21, i, 1500).payload), `21:${i}`);
  }
  // Stale ledger-20 records after the new ones in a reused file must not resurrect it.
  t.is((await s2.read(20, 0)).status, 'NO_LEDGER');
});

test('bookie store - a burst flushed as one batch fills several entry logs, so a dropped ledger is compacted away', async (t) => {
  const dir = await tempDir(t);
  const fileBytes = 64 * 1024;
  // Write groups at the end of the event-loop turn: the whole burst becomes one journal group
  // and one flusher batch, several entry logs' worth of bytes.
  const s = await openStore(dir, { entryLogFileBytes: fileBytes, journalGroupWaitMs: 0 });
  t.teardown(() => s.close());
  const adds = Array.from({ length: 100 }, (_, i) => [entry(21, i, 2048), entry(22, i, 2048)]).flat();
  const outs = await Promise.all(adds.map((e) => s.add(e, false)));
  t.true(outs.every((o) => o.status === 'OK'));
  await s.checkpoint();
  const logs = s.storage.logs;
  t.true(logs.sizes.size > 5, `${logs.sizes.size} entry logs`);
  t.true([...logs.sizes.values()].every((size) => size <= fileBytes));

  await s.storage.dropLedger(21, () => s.position());
  const candidates = s.storage.compactionCandidates(0.9);
  t.true(candidates.length >= 5, `candidates ${candidates.join(',')}`);
  let compacted = 0;
  for (const id of candidates) compacted += await s.storage.compact(id, () => s.position());
  t.is(compacted, candidates.length);
  for (const id of candidates) t.false(logs.sizes.has(id));
  for (let i = 0; i < 100; i++) {
    const r = await s.read(22, i);
    t.true(r.status === 'OK' && r.entry.payload.equals(entry(22, i, 2048).payload), `22:${i}`);
  }
});

/**
 * Three adds from entry `first` of `ledger` meet a failing write: each is
 * answered IO_ERROR (never OK), none reads back, the store turns read-only,
 * and later adds on either path are refused.
 */
async function failedAdds(t: ExecutionContext, s: BookieStore, ledger: number, first: number, size: number) {
  const outs = await Promise.all([0, 1, 2].map((i) => s.add(entry(ledger, first + i, size), false)));
  t.deepEqual(
    outs.map((o) => o.status),
    ['IO_ERROR', 'IO_ERROR', 'IO_ERROR'],
  );
  t.regex(outs[0]!.message, /EIO/);
  t.true(s.readOnly);
  t.not((await s.read(ledger, first)).status, 'OK');
  t.is((await s.add(entry(ledger, first + 3, LARGE), false)).status, 'IO_ERROR');
  t.is((await s.add(entry(ledger, first + 4, 100), false)).status, 'IO_ERROR');
}

test('bookie store - a failed journal write answers its adds IO_ERROR, never OK, and every later add too', async (t) => {
  const dir = await tempDir(t);
  const s = await openStore(dir, { journalGroupWaitMs: 0 });
  t.teardown(() => s.abort().catch(() => undefined));
  t.is((await s.add(entry(9, 0), false)).status, 'OK');
  const fh = (s.journal as unknown as { fh: FileHandle }).fh;
  fh.writev = (async () => {
    throw Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' });
  }) as FileHandle['writev'];
  await failedAdds(t, s, 9, 1, 100);
  t.is((await s.read(9, 0)).status, 'OK', 'what was acknowledged stays readable');
});

test('bookie store - an add arriving while the fence record is fsynced is refused, never acked after the fence', async (t) => {
  const dir = await tempDir(t);
  const s = await openStore(dir, { journalGroupWaitMs: 0 });
  t.teardown(() => s.close());
  t.is((await s.add(entry(5, 0), false)).status, 'OK');
  // Hold the next journal write (O_DSYNC: the FENCE record's group becoming durable) until the late add is queued.
  const fh = (s.journal as unknown as { fh: FileHandle }).fh;
  const realWrite = fh.writev.bind(fh);
  let release!: () => void;
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  let syncing!: () => void;
  const inSync = new Promise<void>((resolve) => {
    syncing = resolve;
  });
  let held = false;
  fh.writev = (async (...args: Parameters<FileHandle['writev']>) => {
    if (!held) {
      held = true;
      syncing();
      await gate;
    }
    return realWrite(...args);
  }) as FileHandle['writev'];
  const fence = s.fence(5);
  await inSync;
  const late = s.add(entry(5, 1), false);
  const second = s.fence(5);
  release();
  const [f, f2, added] = await Promise.all([fence, second, late]);
  t.is(f.status, 'OK');
  t.is(f.lastEntryId, 0);
  t.is(f2.status, 'OK');
  t.is(added.status, 'FENCED');
  t.is((await s.read(5, 1)).status, 'NO_ENTRY');
  t.is((await s.add(entry(5, 1), true)).status, 'OK', 'recovery adds still pass');
});

test('bookie store - a second fence waits until the first fence record is durable', async (t) => {
  const dir = await tempDir(t);
  const s = await openStore(dir, { journalGroupWaitMs: 0 });
  t.teardown(() => s.close());
  const release = holdJournalWrites(s);
  let firstDone = false;
  const first = s.fence(9).then((r) => {
    firstDone = true;
    return r;
  });
  let secondDoneEarly = false;
  const second = s.fence(9).then((r) => {
    secondDoneEarly = !firstDone;
    return r;
  });
  await new Promise((resolve) => setTimeout(resolve, 30));
  t.false(secondDoneEarly);
  release();
  t.is((await first).status, 'OK');
  t.is((await second).status, 'OK');
  t.false(secondDoneEarly);
});

test('bookie store - a failed journal trim keeps the bookie writable; an I/O read-only state refuses adds', async (t) => {
  const dir = await tempDir(t);
  const s = await openStore(dir);
  t.teardown(() => s.close());
  t.is((await s.add(entry(1, 0), false)).status, 'OK');
  s.journal.deleteBefore = async () => {
    throw new Error('EIO: unlink failed');
  };
  await s.checkpoint();
  t.false(s.readOnly);
  t.is((await s.add(entry(1, 1), false)).status, 'OK');
  s.setReadOnly('io', 'entry log write failed');
  t.true(s.readOnly);
  const refused = await s.add(entry(1, 2), false);
  t.is(refused.status, 'IO_ERROR');
  t.regex(refused.message, /entry log write failed/);
});

test('bookie store - a damaged index record covered by a checkpoint makes missing entries CORRUPT, a torn tail does not', async (t) => {
  const dir = await tempDir(t);
  let s = await openStore(dir);
  for (let i = 0; i < 10; i++) t.is((await s.add(entry(7, i), false)).status, 'OK');
  for (let i = 0; i < 10; i++) t.is((await s.add(entry(8, i), false)).status, 'OK');
  await s.close();
  const idx = (id: number) => join(dir, 'ledgers', 'index', `${id}.idx`);
  // Ledger 7: flip a bit inside record 3 (the journal holding entry 3 is trimmed).
  let fh = await open(idx(7), 'r+');
  const b = Buffer.alloc(1);
  await fh.read(b, 0, 1, 3 * 32 + 9);
  b[0]! ^= 0x10;
  await fh.write(b, 0, 1, 3 * 32 + 9);
  await fh.close();
  // Ledger 8: a torn append after the records the checkpoint counted.
  fh = await open(idx(8), 'a');
  await fh.write(Buffer.alloc(32 + 7, 0xab));
  await fh.close();
  s = await openStore(dir);
  t.teardown(() => s.close());
  const damaged = await s.read(7, 3);
  t.is(damaged.status, 'CORRUPT');
  if (damaged.status === 'CORRUPT') t.regex(damaged.message, /index is damaged/);
  t.is((await s.read(7, 10)).status, 'CORRUPT', 'never NO_ENTRY for a ledger with a damaged index');
  t.is((await s.read(7, 2)).status, 'OK');
  for (let i = 0; i < 10; i++) t.is((await s.read(8, i)).status, 'OK', `entry 8:${i}`);
  t.is((await s.read(8, 10)).status, 'NO_ENTRY');
});

test('bookie store - a fresh journal is zero-filled ahead of its writes, and replay stops quietly at the fill', async (t) => {
  const dir = await tempDir(t);
  const prealloc = 256 * 1024;
  const s = await openStore(dir, { journalPreallocBytes: prealloc });
  const outs = await Promise.all(Array.from({ length: 20 }, (_, i) => s.add(entry(9, i, 1000), false)));
  t.true(outs.every((o) => o.status === 'OK'));
  const jdir = join(dir, 'journal');
  const [name] = (await readdir(jdir)).filter((n) => n.startsWith('journal-0'));
  const size = (await stat(join(jdir, name!))).size;
  t.true(size >= prealloc, `journal file is ${size} bytes, preallocated ${prealloc}`);
  t.true(size > 20 * 1000 + prealloc / 2, 'the fill reaches past the written records');
  await s.abort();

  const warnings: string[] = [];
  const logger = Object.assign(Object.create(silentLogger), {
    warn: (_obj: unknown, msg: string) => warnings.push(msg),
  });
  const s2 = await openStore(dir, { journalPreallocBytes: prealloc, logger });
  t.teardown(() => s2.close());
  for (let i = 0; i < 20; i++) {
    const r = await s2.read(9, i);
    t.true(r.status === 'OK' && r.entry.payload.equals(entry(9, i, 1000).payload), `9:${i}`);
  }
  t.deepEqual(warnings, [], 'zero fill is not reported as a torn tail');
});

for (const [syncBytes, expectSyncs] of [
  [64 * 1024, true],
  [8 * 1024 * 1024, false],
] as const) {
  test(`bookie store - the flusher fdatasyncs the entry log every entryLogSyncBytes (${syncBytes / 1024} KiB)`, async (t) => {
    const dir = await tempDir(t);
    const metrics = createBookieMetrics(createRegistry(false));
    const s = await openStore(dir, { entryLogSyncBytes: syncBytes, entryLogDirectBytes: 0, metrics });
    t.teardown(() => s.close());
    // 1 MiB of adds, below the write cache's checkpoint threshold: only the flusher writes the entry log.
    const outs = await Promise.all(
      Array.from({ length: 64 }, (_, i) => s.add(entry(4, i, 16 * 1024), false)),
    );
    t.true(outs.every((o) => o.status === 'OK'));
    const deadline = Date.now() + 10_000;
    while (s.storage.cache.unflushed > 0 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 10));
    t.is(s.storage.cache.unflushed, 0, 'the flusher wrote everything');
    const syncs = (await metrics.entryLogSyncSeconds.get()).values.find((v) =>
      v.metricName?.endsWith('_count'),
    )!.value;
    if (expectSyncs) t.true(syncs >= 10, `${syncs} syncs for 1 MiB at 64 KiB`);
    else t.is(syncs, 0);
    const r = await s.read(4, 63);
    t.true(r.status === 'OK' && r.entry.payload.equals(entry(4, 63, 16 * 1024).payload));
  });
}

const LARGE = 64 * 1024;

/**
 * Run `change` on each file handle of the store's direct log files created
 * from now on; `allocated` makes them count as spares of that many bytes.
 */
function onDirectFiles(s: BookieStore, change: (fh: FileHandle) => void, allocated?: number): void {
  const logs = s.storage.logs;
  const create = logs.create.bind(logs);
  logs.create = (directIo?: boolean) => {
    const made = create(directIo);
    return {
      id: made.id,
      allocated: allocated ?? made.allocated,
      fh: made.fh.then((fh) => {
        change(fh);
        return fh;
      }),
    };
  };
}

/** Wrap every fdatasync of the store's direct log files created from now on. */
function wrapDirectSyncs(s: BookieStore, wrap: (datasync: () => Promise<void>) => Promise<void>): void {
  onDirectFiles(s, (fh) => {
    const datasync = fh.datasync.bind(fh);
    fh.datasync = () => wrap(datasync);
  });
}

/**
 * Delay every fdatasync of the store's direct log by `ms`, so that the
 * journal's ADD_REF records are durable well before their entries are.
 */
function slowDirectSyncs(s: BookieStore, ms: number): void {
  wrapDirectSyncs(s, async (datasync) => {
    await new Promise((r) => setTimeout(r, ms));
    return datasync();
  });
}

const counterValue = async (c: { get(): Promise<{ values: { value: number }[] }> }) =>
  (await c.get()).values.reduce((a, v) => a + v.value, 0);

test('bookie store - large entries are written once: a reference in the journal, the bytes in an entry log, read back after a crash and a restart', async (t) => {
  const dir = await tempDir(t);
  const metrics = createBookieMetrics(createRegistry(false));
  // No zero fill ahead of the journal's writes: count only the records.
  let s = await openStore(dir, { metrics, journalPreallocBytes: 0 });
  t.teardown(() => s.close());
  const journal0 = await counterValue(metrics.journalBytes);
  const outs = await Promise.all(Array.from({ length: 20 }, (_, i) => s.add(entry(3, i, LARGE), false)));
  t.true(outs.every((o) => o.status === 'OK'));
  const journal = (await counterValue(metrics.journalBytes)) - journal0;
  const entryLog = await counterValue(metrics.entryLogBytes);
  t.is(journal, 20 * (JOURNAL_HEADER_BYTES + REF_PAYLOAD_BYTES), 'the journal holds only references');
  t.is(entryLog, 20 * (ENTRY_HEADER_BYTES + LARGE), 'each entry is written once, to an entry log');
  t.is(s.storage.cache.bytes, 0, 'large entries skip the write cache');
  const writes = (await metrics.directLogWriteSeconds.get()).values.find((v) =>
    v.metricName?.endsWith('_count'),
  )!.value;
  t.true(writes >= 1 && writes <= 20, `${writes} direct log writes timed for 20 entries in groups`);
  const r = await s.read(3, 11);
  t.true(r.status === 'OK' && r.entry.payload.equals(entry(3, 11, LARGE).payload) && r.entry.lac === 10);
  // A crash: no final checkpoint, so the references are replayed.
  await s.abort();
  s = await openStore(dir);
  for (let i = 0; i < 20; i++) {
    const back = await s.read(3, i);
    t.true(back.status === 'OK' && back.entry.payload.equals(entry(3, i, LARGE).payload), `entry ${i}`);
  }
  t.deepEqual(s.lac(3), { lac: 18, lastEntryId: 19 });
  // Mixed sizes in one ledger, then a clean stop (checkpoint) and a restart.
  t.is((await s.add(entry(3, 20, 100), false)).status, 'OK');
  await s.close();
  s = await openStore(dir);
  for (const [id, size] of [
    [19, LARGE],
    [20, 100],
  ] as const) {
    const back = await s.read(3, id);
    t.true(back.status === 'OK' && back.entry.payload.equals(entry(3, id, size).payload), `entry ${id}`);
  }
});

test('bookie store - a failed fdatasync of the direct log answers its adds IO_ERROR, never OK, and every later add too', async (t) => {
  const dir = await tempDir(t);
  const s = await openStore(dir);
  t.teardown(() => s.abort().catch(() => undefined));
  wrapDirectSyncs(s, async () => {
    throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
  });
  await failedAdds(t, s, 6, 0, LARGE);
});

test('bookie store - a reference whose entry never reached the entry log is skipped at replay; a damaged one reads as corrupt', async (t) => {
  const dir = await tempDir(t);
  let s = await openStore(dir);
  t.teardown(() => s.close());
  const outs = await Promise.all(Array.from({ length: 4 }, (_, i) => s.add(entry(5, i, LARGE), false)));
  t.true(outs.every((o) => o.status === 'OK'));
  await s.abort();
  // What a crash between the journal's write and the entry log's would
  // leave: the last entry's bytes cut off, a byte of the one before flipped.
  const logs = join(dir, 'ledgers');
  const sizes = await Promise.all(
    (await readdir(logs))
      .filter((n) => n.startsWith('entrylog-'))
      .map(async (n) => ({ path: join(logs, n), size: (await stat(join(logs, n))).size })),
  );
  const log = sizes.sort((a, b) => b.size - a.size)[0]!;
  t.is(log.size, 4 * (ENTRY_HEADER_BYTES + LARGE));
  await truncate(log.path, log.size - 100);
  const fh = await open(log.path, 'r+');
  await fh.write(Buffer.from([0xff]), 0, 1, 2 * (ENTRY_HEADER_BYTES + LARGE) + ENTRY_HEADER_BYTES + 10);
  await fh.close();
  s = await openStore(dir);
  t.is((await s.read(5, 0)).status, 'OK');
  t.is((await s.read(5, 1)).status, 'OK');
  t.is((await s.read(5, 2)).status, 'CORRUPT');
  t.is((await s.read(5, 3)).status, 'NO_ENTRY');
  await addsAgain(t, s, 5, 3, LARGE);
});

test('bookie store - a fence counts an add written once that was queued before it', async (t) => {
  const dir = await tempDir(t);
  const s = await openStore(dir);
  t.teardown(() => s.close());
  slowDirectSyncs(s, 300);
  t.is((await s.add(entry(6, 0, LARGE), false)).status, 'OK');
  const add = s.add(entry(6, 1, LARGE), false);
  const fence = await s.fence(6);
  t.is(fence.status, 'OK');
  t.is(fence.lastEntryId, 1, 'the fence answer includes the add queued before it');
  t.is((await add).status, 'OK');
  t.is((await s.add(entry(6, 2, LARGE), false)).status, 'FENCED');
  t.is((await s.add(entry(6, 2, LARGE), true)).status, 'OK', 'recovery adds pass');
});

test('bookie store - a checkpoint taken while a large entry is still being written keeps it across a crash', async (t) => {
  const dir = await tempDir(t);
  let s = await openStore(dir);
  t.teardown(() => s.close());
  // The journal's references are durable (and its position past them) long before the entries.
  slowDirectSyncs(s, 300);
  const adds = Array.from({ length: 8 }, (_, i) => s.add(entry(8, i, LARGE), false));
  const start = s.position();
  while (s.position().offset === start.offset) await new Promise((r) => setTimeout(r, 5));
  await s.checkpoint();
  t.true((await Promise.all(adds)).every((o) => o.status === 'OK'));
  await s.abort();
  s = await openStore(dir);
  for (let i = 0; i < 8; i++) t.is((await s.read(8, i)).status, 'OK', `entry ${i}`);
});

test('bookie store - large entries are written once only while the journal is backlogged', async (t) => {
  const dir = await tempDir(t);
  const metrics = createBookieMetrics(createRegistry(false));
  const s = await openStore(dir, { metrics, entryLogDirectBacklogBytes: 512 * 1024 });
  t.teardown(() => s.close());
  t.is((await s.add(entry(9, 0, LARGE), false)).status, 'OK');
  t.is(await counterValue(metrics.entriesWrittenOnce), 0, 'a lone add goes through the journal');
  // A burst in one turn: once a full group waits behind the journal's write, the rest are written once.
  const outs = await Promise.all(Array.from({ length: 64 }, (_, i) => s.add(entry(9, i + 1, LARGE), false)));
  t.true(outs.every((o) => o.status === 'OK'));
  const once = await counterValue(metrics.entriesWrittenOnce);
  t.true(once > 0 && once < 64, `${once} of 64 written once`);
  for (let i = 0; i <= 64; i++) {
    const r = await s.read(9, i);
    t.true(r.status === 'OK' && r.entry.payload.equals(entry(9, i, LARGE).payload), `entry ${i}`);
  }
});

/** The entry log files of a store's ledger dir, largest first. */
async function entryLogFiles(dir: string): Promise<{ path: string; size: number }[]> {
  const logs = join(dir, 'ledgers');
  const files = await Promise.all(
    (await readdir(logs))
      .filter((n) => n.startsWith('entrylog-'))
      .map(async (n) => ({ path: join(logs, n), size: (await stat(join(logs, n))).size })),
  );
  return files.sort((a, b) => b.size - a.size);
}

test('bookie store - entries written once with O_DIRECT: whole blocks, each group on a fresh block, read back after a crash', async (t) => {
  const dir = await tempDir(t);
  t.true(await directIoWorks(tmpdir()), 'the temp dir takes O_DIRECT (ext4 does)');
  const metrics = createBookieMetrics(createRegistry(false));
  let s = await openStore(dir, { metrics, entryLogDirectIo: true });
  t.teardown(() => s.close());
  // Odd sizes, one add at a time (a group each), then a burst.
  const sizes = Array.from({ length: 30 }, (_, i) => LARGE + 1 + i * 997);
  for (let i = 0; i < 10; i++) t.is((await s.add(entry(11, i, sizes[i]), false)).status, 'OK');
  const burst = await Promise.all(
    Array.from({ length: 20 }, (_, i) => s.add(entry(11, 10 + i, sizes[10 + i]), false)),
  );
  t.true(burst.every((o) => o.status === 'OK'));
  const record = (i: number) => ENTRY_HEADER_BYTES + sizes[i]!;
  const records = sizes.reduce((sum, n) => sum + ENTRY_HEADER_BYTES + n, 0);
  const [log] = await entryLogFiles(dir);
  t.is(log!.size % DIRECT_IO_ALIGN, 0, 'the log grows in whole blocks');
  t.true(log!.size >= records && log!.size <= records + 30 * DIRECT_IO_ALIGN);
  // The adds made one at a time: each group starts on the block after the
  // last one's end, the gap between them zeros.
  const bytes = await readFile(log!.path);
  let at = 0;
  for (let i = 0; i < 10; i++) {
    t.true(
      bytes.subarray(at, at + ENTRY_HEADER_BYTES).some((b) => b !== 0),
      `entry ${i} starts at ${at}`,
    );
    const end = at + record(i);
    const next = Math.ceil(end / DIRECT_IO_ALIGN) * DIRECT_IO_ALIGN;
    t.true(
      bytes.subarray(end, next).every((b) => b === 0),
      `zeros after entry ${i}`,
    );
    at = next;
  }
  for (let i = 0; i < 30; i++) {
    const r = await s.read(11, i);
    t.true(r.status === 'OK' && r.entry.payload.equals(entry(11, i, sizes[i]).payload), `entry ${i}`);
  }
  await s.abort();
  s = await openStore(dir, { entryLogDirectIo: true });
  for (let i = 0; i < 30; i++) {
    const r = await s.read(11, i);
    t.true(
      r.status === 'OK' && r.entry.payload.equals(entry(11, i, sizes[i]).payload),
      `entry ${i} after replay`,
    );
  }
  t.deepEqual(s.lac(11), { lac: 28, lastEntryId: 29 });
});

test('bookie store - a reference to O_DIRECT bytes that never landed (a later group did) is skipped at replay, not read as corrupt', async (t) => {
  const dir = await tempDir(t);
  let s = await openStore(dir, { entryLogDirectIo: true });
  t.teardown(() => s.close());
  const size = LARGE + 123;
  for (let i = 0; i < 3; i++) t.is((await s.add(entry(12, i, size), false)).status, 'OK');
  await s.abort();
  // Two groups are written side by side: what a crash would leave when the
  // third entry's write landed and the second's never did (a hole of zeros).
  const [log] = await entryLogFiles(dir);
  const block = Math.ceil((ENTRY_HEADER_BYTES + size) / DIRECT_IO_ALIGN) * DIRECT_IO_ALIGN;
  t.is(log!.size, 3 * block);
  const fh = await open(log!.path, 'r+');
  await fh.write(Buffer.alloc(block), 0, block, block);
  await fh.close();
  s = await openStore(dir, { entryLogDirectIo: true });
  t.is((await s.read(12, 0)).status, 'OK');
  t.is((await s.read(12, 1)).status, 'NO_ENTRY', 'never written, so never acknowledged');
  t.is((await s.read(12, 2)).status, 'OK');
  await addsAgain(t, s, 12, 1, size);
});

test('bookie store - over a spare, two direct log groups are written side by side and still acknowledged in order', async (t) => {
  const dir = await tempDir(t);
  const s = await openStore(dir, { entryLogDirectIo: true });
  t.teardown(() => s.close());
  // The first group's write is held until the second group's write has started.
  const events: string[] = [];
  let release!: () => void;
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  let writes = 0;
  onDirectFiles(
    s,
    (fh) => {
      const write = fh.write.bind(fh) as (...args: unknown[]) => Promise<{ bytesWritten: number }>;
      (fh as { write: unknown }).write = async (...args: unknown[]) => {
        const n = writes++;
        events.push(`write ${n} started`);
        if (n === 0) await held;
        else release();
        const r = await write(...args);
        events.push(`write ${n} done`);
        return r;
      };
    },
    64 * 1024 * 1024,
  );
  const size = LARGE + 5;
  const first = s.add(entry(15, 0, size), false).then((o) => {
    events.push('entry 0 acked');
    return o;
  });
  await new Promise((r) => setImmediate(r));
  const second = s.add(entry(15, 1, size), false).then((o) => {
    events.push('entry 1 acked');
    return o;
  });
  t.deepEqual([(await first).status, (await second).status], ['OK', 'OK']);
  // The second write started while the first was held (two in flight); the
  // two may finish in either order, and the acknowledgements follow both, in order.
  const at = (e: string) => events.indexOf(e);
  t.deepEqual(events.slice(0, 2), ['write 0 started', 'write 1 started'], events.join(', '));
  t.deepEqual(events.slice(4), ['entry 0 acked', 'entry 1 acked'], events.join(', '));
  t.true(at('write 0 done') > 1 && at('write 0 done') < 4 && at('write 1 done') < 4, events.join(', '));
  for (let i = 0; i < 2; i++) {
    const r = await s.read(15, i);
    t.true(r.status === 'OK' && r.entry.payload.equals(entry(15, i, size).payload), `entry ${i}`);
  }
});

test('bookie store - a direct log group that grows a fresh file waits for the write ahead of it', async (t) => {
  const dir = await tempDir(t);
  const s = await openStore(dir, { entryLogDirectIo: true });
  t.teardown(() => s.close());
  const events: string[] = [];
  let writes = 0;
  onDirectFiles(s, (fh) => {
    const write = fh.write.bind(fh) as (...args: unknown[]) => Promise<{ bytesWritten: number }>;
    (fh as { write: unknown }).write = async (...args: unknown[]) => {
      const n = writes++;
      events.push(`write ${n} started`);
      // Long enough for a second group to be cut and started beside it, were that allowed.
      if (n === 0) await new Promise((r) => setTimeout(r, 100));
      const r = await write(...args);
      events.push(`write ${n} done`);
      return r;
    };
  });
  const size = LARGE + 5;
  const first = s.add(entry(16, 0, size), false);
  await new Promise((r) => setImmediate(r));
  const second = s.add(entry(16, 1, size), false);
  t.deepEqual([(await first).status, (await second).status], ['OK', 'OK']);
  t.deepEqual(events, ['write 0 started', 'write 0 done', 'write 1 started', 'write 1 done']);
  for (let i = 0; i < 2; i++) {
    const r = await s.read(16, i);
    t.true(r.status === 'OK' && r.entry.payload.equals(entry(16, i, size).payload), `entry ${i}`);
  }
});

test('bookie store - a group larger than one O_DIRECT write goes out in several, each continuing the last', async (t) => {
  const dir = await tempDir(t);
  let s = await openStore(dir, { entryLogDirectIo: true, maxEntryBytes: 5 * 1024 * 1024 });
  t.teardown(() => s.close());
  // ~6.6 MiB in one turn, with one entry larger than a write's 4 MiB.
  const sizes = Array.from({ length: 40 }, (_, i) => (i === 17 ? 4 * 1024 * 1024 + 5 : LARGE + 333 * i));
  const outs = await Promise.all(sizes.map((n, i) => s.add(entry(14, i, n), false)));
  t.true(outs.every((o) => o.status === 'OK'));
  await s.abort();
  s = await openStore(dir, { entryLogDirectIo: true, maxEntryBytes: 5 * 1024 * 1024 });
  for (let i = 0; i < sizes.length; i++) {
    const r = await s.read(14, i);
    t.true(r.status === 'OK' && r.entry.payload.equals(entry(14, i, sizes[i]).payload), `entry ${i}`);
  }
});

test('bookie store - a busy ledger index is persisted between checkpoints, only after the entry logs it points into are synced', async (t) => {
  const dir = await tempDir(t);
  let s = await openStore(dir, { indexSpreadRecords: 64 });
  t.teardown(() => s.close());
  // Count entry log appends, and which of them a completed sync covers.
  const logs = s.storage.logs;
  let appended = 0;
  let synced = 0;
  const append = logs.append.bind(logs);
  logs.append = async (...args) => {
    const out = await append(...args);
    appended++;
    return out;
  };
  const sync = logs.sync.bind(logs);
  logs.sync = async () => {
    const upTo = appended;
    await sync();
    synced = upTo;
  };
  const unsyncedAtPersist: number[] = [];
  const index = s.storage.index;
  const persistFull = index.persistFull.bind(index);
  index.persistFull = () => {
    unsyncedAtPersist.push(appended - synced);
    return persistFull();
  };
  for (let round = 0; round < 10; round++) {
    const outs = await Promise.all(
      Array.from({ length: 50 }, (_, i) => s.add(entry(5, round * 50 + i, 1000), false)),
    );
    t.true(outs.every((o) => o.status === 'OK'));
  }
  // The flusher and the early persists run behind the acks; each persist
  // takes every record waiting by then (64 or more).
  const idx = join(dir, 'ledgers', 'index', '5.idx');
  const onDisk = async () => (await stat(idx).catch(() => ({ size: 0 }))).size;
  for (let waited = 0; (await onDisk()) < 64 * 32 && waited < 5000; waited += 20)
    await new Promise((r) => setTimeout(r, 20));
  const size = await onDisk();
  t.true(
    size >= 64 * 32 && size <= 500 * 32 && size % 32 === 0,
    `index records on disk before any checkpoint: ${size} bytes`,
  );
  t.true(unsyncedAtPersist.length > 0);
  t.deepEqual(
    unsyncedAtPersist.filter((n) => n > 0),
    [],
    'never with entry log appends not yet synced',
  );
  // A crash: every entry reads back (from the index where it was persisted, the journal for the rest).
  await s.abort();
  s = await openStore(dir);
  for (let i = 0; i < 500; i++) {
    const r = await s.read(5, i);
    t.true(r.status === 'OK' && r.entry.payload.equals(entry(5, i, 1000).payload), `entry ${i}`);
  }
});

test('bookie store - an early index persist that finds the storage closed is no I/O failure', async (t) => {
  const dir = await tempDir(t);
  const s = await openStore(dir, { indexSpreadRecords: 4 });
  await s.close();
  // A late apply (as one racing a stop would be) fills a ledger past the threshold.
  for (let i = 0; i < 4; i++) {
    s.storage.applyStored(
      { ledgerId: 9, entryId: i, lac: i - 1, crc32c: 0, ledgerLength: 0 },
      { logId: 1, offset: i * 64, length: 64 },
    );
  }
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setTimeout(r, 20));
  t.is(s.storage.failed, undefined);
});

test('bookie store - a journal record larger than a since-lowered maxEntryBytes replays, and so does every record after it', async (t) => {
  const dir = await tempDir(t);
  // Every entry through the journal, none written once.
  const sizes = [100, 600 * 1024, 100, 100];
  let s = await openStore(dir, { maxEntryBytes: 1024 * 1024, entryLogDirectBytes: 0 });
  t.teardown(() => s.close());
  for (const [i, size] of sizes.entries()) t.is((await s.add(entry(16, i, size), false)).status, 'OK');
  // A crash, then a restart with a lower limit: the records are in the journal only.
  await s.abort();
  s = await openStore(dir, { maxEntryBytes: 512 * 1024, entryLogDirectBytes: 0 });
  await assertSizedReadBack(t, s, 16, sizes);
  t.deepEqual(s.lac(16), { lac: 2, lastEntryId: 3 });
  t.is((await s.add(entry(16, 4, 600 * 1024), false)).status, 'INVALID', 'new adds obey the new limit');
  // The start-up checkpoint trimmed the journal: the entries are in the entry log now.
  await s.close();
  s = await openStore(dir, { maxEntryBytes: 512 * 1024, entryLogDirectBytes: 0 });
  await assertSizedReadBack(t, s, 16, sizes);
});

/** Entry i of `ledgerId` reads back OK with the payload `entry` made for `sizes[i]`. */
async function assertSizedReadBack(t: ExecutionContext, s: BookieStore, ledgerId: number, sizes: number[]) {
  for (const [i, size] of sizes.entries()) {
    const r = await s.read(ledgerId, i);
    t.true(r.status === 'OK' && r.entry.payload.equals(entry(ledgerId, i, size).payload), `${ledgerId}:${i}`);
  }
}

test('bookie store - a direct log is not compacted away while an add written into it waits for its journal record', async (t) => {
  const dir = await tempDir(t);
  // Room for one large entry per direct log: the second add rolls the first log away.
  let s = await openStore(dir, {
    entryLogFileBytes: ENTRY_HEADER_BYTES + LARGE + 1024,
    journalGroupWaitMs: 0,
  });
  t.teardown(() => s.close());
  // Hold the journal's writes: the ADD_REF records stay in flight while the entry-log writes complete.
  const release = holdJournalWrites(s);
  const adds = [0, 1].map((i) => s.add(entry(40, i, LARGE), false));
  // Both entries are durable in their logs; the first log is rolled away and its writes are done.
  await s.storage.direct.barrier();
  await new Promise((r) => setTimeout(r, 50));
  // GC compacts what holds no live entries: the first log, by the index's count.
  for (const id of s.storage.compactionCandidates(0.5)) await s.storage.compact(id, () => s.position());
  release();
  t.deepEqual(
    (await Promise.all(adds)).map((o) => o.status),
    ['OK', 'OK'],
  );
  const readBack = async (entryId: number) => {
    const r = await s.read(40, entryId).catch((err: Error) => ({ status: err.message }));
    return r.status === 'OK' && 'entry' in r && r.entry.payload.equals(entry(40, entryId, LARGE).payload);
  };
  t.true(await readBack(0), 'an acknowledged entry reads back');
  t.true(await readBack(1));
  await s.close();
  s = await openStore(dir);
  t.true(await readBack(0), 'and after a restart');
});

/** The path of entry log `id` in a store's ledger dir. */
const entryLogPath = (dir: string, id: number) =>
  join(dir, 'ledgers', `entrylog-${String(id).padStart(16, '0')}.log`);

test.serial(
  'bookie store - after a crash, every log replay indexes entries in is fdatasynced before the index is persisted',
  async (t) => {
    const dir = await tempDir(t);
    let s = await openStore(dir);
    for (let i = 0; i < 4; i++) t.is((await s.add(entry(41, i, LARGE), false)).status, 'OK');
    const logId = s.storage.index.get(41)!.entries.get(0)!.logId;
    // A crash: the references are replayed; the process that wrote the log (and its handle) is gone.
    await s.abort();
    // In order: every fdatasync of an entry log file, and every index persist or checkpoint.
    const events: string[] = [];
    const realOpen = fsp.open;
    fsp.open = (async (...args: Parameters<typeof realOpen>) => {
      const fh = await realOpen(...args);
      const m = /entrylog-(\d{16})\.log$/.exec(String(args[0]));
      if (m) {
        const datasync = fh.datasync.bind(fh);
        fh.datasync = async () => {
          await datasync();
          events.push(`sync ${Number(m[1])}`);
        };
      }
      return fh;
    }) as typeof realOpen;
    syncBuiltinESMExports();
    t.teardown(() => {
      fsp.open = realOpen;
      syncBuiltinESMExports();
    });
    s = new BookieStore(options(dir));
    t.teardown(() => s.close());
    const index = s.storage.index;
    for (const name of ['persist', 'persistFull', 'writeCheckpoint'] as const) {
      const real = (index[name] as (...a: unknown[]) => Promise<void>).bind(index);
      (index as unknown as Record<string, unknown>)[name] = async (...a: unknown[]) => {
        events.push(name);
        return real(...a);
      };
    }
    await s.open();
    const firstPersist = events.findIndex((e) => !e.startsWith('sync '));
    t.true(firstPersist > 0, events.join(', '));
    t.true(events.slice(0, firstPersist).includes(`sync ${logId}`), events.join(', '));
    for (let i = 0; i < 4; i++) t.is((await s.read(41, i)).status, 'OK');
  },
);

test('bookie store - a reference into a log whose id was taken again after a crash is skipped at replay, never indexed to other bytes', async (t) => {
  const dir = await tempDir(t);
  let s = await openStore(dir);
  t.teardown(() => s.close());
  t.is((await s.add(entry(42, 0, LARGE), false)).status, 'OK');
  t.is((await s.add(entry(44, 0, LARGE), false)).status, 'OK');
  const at42 = s.storage.index.get(42)!.entries.get(0)!;
  const at44 = s.storage.index.get(44)!.entries.get(0)!;
  t.is(at42.logId, at44.logId);
  await s.abort();
  // What a crash before the log's creation was durable, then a start that
  // took its id for another log, leave: the file holds other records where
  // the references point. At 42:0, another entry of the same size; at
  // 44:0, the middle of another record.
  const other = entry(43, 0, LARGE);
  const rec = Buffer.alloc(ENTRY_HEADER_BYTES + LARGE);
  writeEntryHeader(rec, 0, other, LARGE);
  other.payload.copy(rec, ENTRY_HEADER_BYTES);
  const fh = await open(entryLogPath(dir, at42.logId), 'r+');
  await fh.write(rec, 0, rec.length, at42.offset);
  await fh.write(Buffer.alloc(ENTRY_HEADER_BYTES, 0x5a), 0, ENTRY_HEADER_BYTES, at44.offset);
  await fh.close();
  s = await openStore(dir);
  for (const ledger of [42, 44]) {
    t.is((await s.read(ledger, 0)).status, 'NO_LEDGER', `ledger ${ledger}: never acknowledged here`);
    t.is(s.lac(ledger), undefined);
  }
  await addsAgain(t, s, 42, 0, LARGE);
});

test('bookie store - journal files retired beyond the spares are freed by the deleter; files a stop left half freed are freed at open', async (t) => {
  const dir = await tempDir(t);
  await mkdir(join(dir, 'journal'), { recursive: true });
  await mkdir(join(dir, 'ledgers'), { recursive: true });
  // What a stop in the middle of freeing leaves behind, in both directories.
  await writeFile(join(dir, 'journal', `journal-0000000000000001.log${DELETING_SUFFIX}`), Buffer.alloc(4096));
  await writeFile(
    join(dir, 'ledgers', `entrylog-0000000000000001.log${DELETING_SUFFIX}`),
    Buffer.alloc(4096),
  );
  const s = await openStore(dir, { journalFileBytes: 64 * 1024, fileDeleteBytesPerSec: 64 * 1024 * 1024 });
  t.teardown(() => s.close());
  await s.deleter.idle();
  const leftovers = async () =>
    [...(await readdir(join(dir, 'journal'))), ...(await readdir(join(dir, 'ledgers')))].filter((n) =>
      n.endsWith(DELETING_SUFFIX),
    );
  t.deepEqual(await leftovers(), []);
  // Fill several 64 KiB journal files, then checkpoint: two become spares, the rest go to the deleter.
  for (let i = 0; i < 40; i++) t.is((await s.add(entry(1, i, 8 * 1024), false)).status, 'OK');
  const before = (await s.journal.listFileIds()).length;
  t.true(before >= 4, `the journal rolled (${before} files)`);
  const deleted: string[] = [];
  const real = s.deleter.delete.bind(s.deleter);
  s.deleter.delete = async (path: string) => {
    deleted.push(path);
    return real(path);
  };
  await s.checkpoint();
  t.true(deleted.length >= 1, 'retired journal files went through the deleter');
  await s.deleter.idle();
  t.deepEqual(await leftovers(), []);
  for (const path of deleted) await t.throwsAsync(stat(path), { code: 'ENOENT' });
  for (let i = 0; i < 40; i++) {
    const r = await s.read(1, i);
    t.true(r.status === 'OK' && r.entry.payload.equals(entry(1, i, 8 * 1024).payload));
  }
});

test('bookie store - small adds reach the entry log in batches: after the flusher lingers, or at once when a batch is waiting', async (t) => {
  const dir = await tempDir(t);
  // Journal writes without fdatasync: the adds one after another take microseconds each.
  const s = await openStore(dir, { journalSync: false });
  t.teardown(() => s.close());
  const logs = s.storage.logs;
  const appends: number[] = [];
  const realAppend = logs.append.bind(logs);
  logs.append = (records) => {
    appends.push(records.length);
    return realAppend(records);
  };
  const started = performance.now();
  // Twenty adds, each acknowledged before the next is sent: twenty journal groups.
  for (let i = 0; i < 20; i++) t.is((await s.add(entry(31, i, 100), false)).status, 'OK');
  const elapsed = performance.now() - started;
  await new Promise((resolve) => setTimeout(resolve, 3 * FLUSH_LINGER_MS));
  t.is(
    appends.reduce((a, b) => a + b, 0),
    20,
    'every entry reached the entry log',
  );
  // One append per linger at most (the adds took `elapsed`), not one per group.
  t.true(
    appends.length <= Math.ceil(elapsed / FLUSH_LINGER_MS) + 1,
    `${appends.length} appends in ${elapsed} ms`,
  );

  // A batch's worth (256 KiB) waiting starts the flusher without the linger.
  appends.length = 0;
  const burst = Array.from({ length: 300 }, (_, i) => s.add(entry(32, i, 1024), false));
  t.true((await Promise.all(burst)).every((o) => o.status === 'OK'));
  await new Promise((resolve) => setImmediate(resolve));
  t.true(appends.length > 0, 'appended before the linger ran out');
  for (const i of [0, 150, 299]) {
    const r = await s.read(32, i);
    t.true(r.status === 'OK' && r.entry.payload.equals(entry(32, i, 1024).payload));
  }
});

test('bookie store - a read whose log is compacted away and freed under it looks the entry up again instead of reporting it corrupt', async (t) => {
  const dir = await tempDir(t);
  const s = await openStore(dir, { entryLogFileBytes: 64 * 1024, fileDeleteBytesPerSec: 64 * 1024 * 1024 });
  t.teardown(() => s.close());
  for (let i = 0; i < 40; i++) {
    await s.add(entry(10, i, 2000), false);
    await s.add(entry(11, i, 2000), false);
  }
  await s.checkpoint();
  await s.storage.dropLedger(10, () => s.position());
  const logs = s.storage.logs;
  const realRead = logs.read.bind(logs);
  let raced = 0;
  // The first read of a ledger-11 entry: its log is compacted and deleted
  // before the bytes are read, and what the read finds is no longer the entry
  // (the file was cut short).
  logs.read = async (loc, ledgerId, entryId) => {
    if (raced++ === 0) {
      t.true(s.storage.compactionCandidates(0.6).includes(loc.logId));
      t.is(await s.storage.compact(loc.logId, () => s.position()), 1);
      t.false(logs.sizes.has(loc.logId));
      return { ok: false, reason: 'short read: 0 of the entry bytes' };
    }
    return realRead(loc, ledgerId, entryId);
  };
  const r = await s.read(11, 0);
  t.is(r.status, 'OK');
  t.true(r.status === 'OK' && r.entry.payload.equals(entry(11, 0, 2000).payload));
  t.is(raced, 2);
});

test('bookie store - compaction copies at its rate while adds go on, and the entries it moved read back', async (t) => {
  const dir = await tempDir(t);
  const s = await openStore(dir, {
    entryLogFileBytes: 1024 * 1024,
    entryLogDirectBytes: 0,
    compactionBytesPerSec: 2 * 1024 * 1024,
  });
  t.teardown(() => s.close());
  // Two ledgers interleaved in ~1 MiB logs; dropping one leaves each log half live.
  for (let i = 0; i < 200; i++) {
    await s.add(entry(20, i, 10_000), false);
    await s.add(entry(21, i, 10_000), false);
  }
  await s.checkpoint();
  await s.storage.dropLedger(20, () => s.position());
  const candidates = s.storage.compactionCandidates(0.6);
  t.true(candidates.length >= 2, `${candidates.length} candidates`);
  const t0 = performance.now();
  let addsDuring = 0;
  let compacting = true;
  const adding = (async () => {
    for (let i = 200; compacting; i++) {
      t.is((await s.add(entry(21, i, 1000), false)).status, 'OK');
      addsDuring++;
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  let compacted = 0;
  for (const id of candidates) compacted += await s.storage.compact(id, () => s.position());
  compacting = false;
  await adding;
  const took = performance.now() - t0;
  t.is(compacted, candidates.length);
  // ~1 MB live in the candidates (100 entries of ledger 21 per 2 MiB of both) at 2 MiB/s.
  t.true(took >= 300, `paced (${took.toFixed(0)} ms)`);
  t.true(addsDuring > 10, `adds went on during compaction (${addsDuring})`);
  for (let i = 0; i < 200; i++) {
    const r = await s.read(21, i);
    t.true(r.status === 'OK' && r.entry.payload.equals(entry(21, i, 10_000).payload), `entry ${i}`);
  }
});
