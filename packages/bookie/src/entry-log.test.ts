import fsp, { type FileHandle, mkdtemp, readdir, readlink, rm, stat } from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32c, silentLogger } from '@sluice/common';
import test from 'ava';
import { ENTRY_HEADER_BYTES, EntryLogs, writeEntryHeader } from './entry-log.js';
import { DELETING_SUFFIX, FileDeleter } from './file-deleter.js';

async function tempDir(t: { teardown: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'entry-log-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function record(entryId: number, size: number) {
  const payload = Buffer.alloc(size, entryId & 0xff);
  const header = Buffer.alloc(ENTRY_HEADER_BYTES);
  writeEntryHeader(
    header,
    0,
    { ledgerId: 1, entryId, lac: entryId - 1, crc32c: crc32c(payload), ledgerLength: 0 },
    size,
  );
  return { header, payload };
}

async function fileSizes(dir: string): Promise<number[]> {
  const names = (await readdir(dir)).filter((n) => n.startsWith('entrylog-')).sort();
  return Promise.all(names.map(async (n) => (await stat(join(dir, n))).size));
}

test('entry log - one large batch is split at file boundaries and a full log is rolled away at once', async (t) => {
  const dir = await tempDir(t);
  const fileBytes = 10_000;
  const logs = new EntryLogs(dir, fileBytes);
  await logs.open();
  t.teardown(() => logs.close());
  const recordBytes = ENTRY_HEADER_BYTES + 952; // 1000: ten records fill a log exactly
  const locs = await logs.append(Array.from({ length: 35 }, (_, i) => record(i, 952)));
  t.deepEqual(
    locs.map((l) => l.logId),
    Array.from({ length: 35 }, (_, i) => 1 + Math.floor(i / 10)),
  );
  t.true(locs.every((l, i) => l.offset === (i % 10) * recordBytes && l.length === recordBytes));
  // Logs 1-3 are exactly full, so none of them is still the one being written.
  t.is(logs.currentLogId, 4);
  t.deepEqual(
    [...logs.sizes],
    [
      [1, 10_000],
      [2, 10_000],
      [3, 10_000],
      [4, 5_000],
    ],
  );
  // A record that does not fit the rest of the log starts the next one; an oversized one gets a log alone.
  const more = await logs.append([record(35, 5_952), record(36, 20_000)]);
  t.deepEqual(
    more.map((l) => [l.logId, l.offset]),
    [
      [5, 0],
      [6, 0],
    ],
  );
  t.is(logs.currentLogId, 7);
  for (const [i, l] of [...locs, ...more].entries()) {
    const out = await logs.read(l, 1, i);
    t.true(out.ok, `entry ${i}`);
  }
  t.deepEqual(await fileSizes(dir), [10_000, 10_000, 10_000, 5_000, 6_000, 20_048, 0]);
});

test('entry log - empty logs left by a stop are deleted at the next open', async (t) => {
  const dir = await tempDir(t);
  const first = new EntryLogs(dir, 1000);
  await first.open();
  await first.append([record(0, 952)]);
  t.is(first.currentLogId, 2, 'the full log was rolled away');
  await first.close();
  t.deepEqual(await fileSizes(dir), [1000, 0]);
  const second = new EntryLogs(dir, 1000);
  await second.open();
  t.teardown(() => second.close());
  t.is(second.currentLogId, 3, 'ids are never reused');
  t.deepEqual(
    [...second.sizes],
    [
      [1, 1000],
      [3, 0],
    ],
  );
  t.deepEqual(await fileSizes(dir), [1000, 0]);
});

/** File descriptors of this process that point at an unlinked file named `name`. */
async function deletedFds(name: string): Promise<string[]> {
  const out: string[] = [];
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
    if (target.includes(name) && target.endsWith('(deleted)')) out.push(target);
  }
  return out;
}

test.serial(
  'entry log - a read whose open races the deletion of its log keeps no handle to it',
  async (t) => {
    const dir = await tempDir(t);
    const logs = new EntryLogs(dir, 1000);
    await logs.open();
    t.teardown(() => logs.close());
    const [loc] = await logs.append([record(0, 952)]);
    t.is(loc!.logId, 1);
    t.is(logs.currentLogId, 2, 'the full log was rolled away, so it can be deleted');
    await logs.sync(); // a checkpoint closes the rolled-away log's write handle

    // Hold the read's open() until delete() has finished.
    const realOpen = fsp.open;
    let opening!: () => void;
    const opened = new Promise<void>((r) => {
      opening = r;
    });
    let release!: () => void;
    const released = new Promise<void>((r) => {
      release = r;
    });
    fsp.open = (async (...args: Parameters<typeof realOpen>) => {
      const fh = await realOpen(...args);
      if (String(args[0]).endsWith('entrylog-0000000000000001.log') && args[1] === 'r') {
        opening();
        await released;
      }
      return fh;
    }) as typeof realOpen;
    syncBuiltinESMExports();
    t.teardown(() => {
      fsp.open = realOpen;
      syncBuiltinESMExports();
    });

    const reading = logs.read(loc!, 1, 0);
    await opened;
    await logs.delete(1);
    release();
    const out = await reading;
    t.true(out.ok, 'the read in flight still gets its entry');
    t.deepEqual(await deletedFds('entrylog-0000000000000001.log'), []);
  },
);

test('entry log - a failed fdatasync of a rolled-away log still closes every rolled-away handle, and the failure is thrown', async (t) => {
  const dir = await tempDir(t);
  const logs = new EntryLogs(dir, 1000);
  await logs.open();
  t.teardown(() => logs.close().catch(() => undefined));
  // Three full logs rolled away: their write handles wait for the next sync.
  await logs.append([record(0, 952), record(1, 952), record(2, 952)]);
  const unsynced = (logs as unknown as { unsynced: FileHandle[] }).unsynced;
  t.is(unsynced.length, 3);
  const closed: number[] = [];
  unsynced.forEach((fh, i) => {
    if (i === 0) {
      fh.datasync = async () => {
        throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
      };
    }
    const close = fh.close.bind(fh);
    fh.close = async () => {
      closed.push(i);
      return close();
    };
  });
  await t.throwsAsync(logs.sync(), { message: /EIO/ });
  t.deepEqual(closed, [0, 1, 2], 'no handle is leaked');
});

const SPARE_SIZE = 16 * 1024 * 1024;

/** A log of `records` written by another writer (as the direct log does), grown to SPARE_SIZE. */
async function directLog(logs: EntryLogs, records: ReturnType<typeof record>[]): Promise<number> {
  const { id, fh } = logs.create();
  const f = await fh;
  let at = 0;
  for (const r of records) {
    await f.writev([r.header, r.payload], at);
    at += r.header.length + r.payload.length;
  }
  await f.truncate(SPARE_SIZE);
  await f.close();
  logs.grew(id, SPARE_SIZE);
  logs.release(id);
  return id;
}

const names = async (dir: string) => (await readdir(dir)).filter((n) => n.startsWith('entrylog-')).sort();

test('entry log spares - a deleted log is kept within the budget and the next created log writes over it', async (t) => {
  const dir = await tempDir(t);
  const logs = new EntryLogs(dir, 64 * 1024 * 1024, SPARE_SIZE);
  await logs.open();
  t.teardown(() => logs.close());
  const first = await directLog(logs, [record(0, 1000)]);
  const second = await directLog(logs, [record(1, 1000)]);
  const inode = (await stat(join(dir, `entrylog-${String(first).padStart(16, '0')}.log`))).ino;
  await logs.delete(first);
  // Over the budget: deleted outright.
  await logs.delete(second);
  t.deepEqual(logs.spareLogs, { count: 1, bytes: SPARE_SIZE });
  t.deepEqual(await names(dir), ['entrylog-0000000000000001.log', 'entrylog-spare-0000000000000001.log']);
  t.false(logs.sizes.has(first));

  const { id, fh } = logs.create();
  const f = await fh;
  t.teardown(() => f.close());
  const path = join(dir, `entrylog-${String(id).padStart(16, '0')}.log`);
  t.true(id > second, 'a reused file takes a new id');
  t.is((await stat(path)).ino, inode, 'the spare became the new log');
  t.deepEqual(logs.spareLogs, { count: 0, bytes: 0 });
  t.is(logs.sizes.get(id), 0, 'nothing of it counts as written yet');
  // Not written over yet, the old record is still there: a reference naming
  // another entry at that place is refused, as replay does.
  const loc = { logId: id, offset: 0, length: ENTRY_HEADER_BYTES + 1000 };
  const other = record(7, 1000);
  t.false(await logs.holdsEntry(loc, SPARE_SIZE, { ledgerId: 1, entryId: 7, crc32c: crc32c(other.payload) }));
  // Written over from offset 0 without truncating: a new record reads back.
  await f.writev([other.header, other.payload], 0);
  t.true(await logs.holdsEntry(loc, SPARE_SIZE, { ledgerId: 1, entryId: 7, crc32c: crc32c(other.payload) }));
  t.is((await stat(path)).size, SPARE_SIZE);
  const read = await logs.read(loc, 1, 7);
  t.true(read.ok && read.entry.payload.equals(other.payload));
});

test('entry log spares - spares on disk are taken up at open within the budget; dropSpares deletes them', async (t) => {
  const dir = await tempDir(t);
  const before = new EntryLogs(dir, 64 * 1024 * 1024, 3 * SPARE_SIZE);
  await before.open();
  const ids = [];
  for (let i = 0; i < 3; i++) ids.push(await directLog(before, [record(i, 100)]));
  for (const id of ids) await before.delete(id);
  t.is(before.spareLogs.count, 3);
  await before.close();

  // A smaller budget after a restart: the oldest spares that fit are kept, the rest deleted.
  const logs = new EntryLogs(dir, 64 * 1024 * 1024, 2 * SPARE_SIZE);
  await logs.open();
  t.teardown(() => logs.close());
  t.deepEqual(logs.spareLogs, { count: 2, bytes: 2 * SPARE_SIZE });
  t.deepEqual(
    (await names(dir)).filter((n) => n.includes('spare')),
    ['entrylog-spare-0000000000000001.log', 'entrylog-spare-0000000000000002.log'],
  );
  // A new log takes the oldest spare; new spares continue the sequence.
  const id = await directLog(logs, [record(9, 100)]);
  t.deepEqual(logs.spareLogs, { count: 1, bytes: SPARE_SIZE });
  t.is(await logs.dropSpares(), 1);
  await logs.delete(id);
  t.deepEqual(
    (await names(dir)).filter((n) => n.includes('spare')),
    ['entrylog-spare-0000000000000004.log'],
  );
  t.is(await logs.dropSpares(), 1);
  t.deepEqual(
    (await names(dir)).filter((n) => n.includes('spare')),
    [],
  );
});

test('entry log spares - without a budget, or for a small log, a deleted log is deleted', async (t) => {
  const dir = await tempDir(t);
  const logs = new EntryLogs(dir, 64 * 1024 * 1024);
  await logs.open();
  t.teardown(() => logs.close());
  await logs.delete(await directLog(logs, [record(0, 100)]));
  t.deepEqual(logs.spareLogs, { count: 0, bytes: 0 });
  const small = new EntryLogs(await tempDir(t), 64 * 1024 * 1024, 4 * SPARE_SIZE);
  await small.open();
  t.teardown(() => small.close());
  const { id, fh } = small.create();
  await (await fh).close();
  small.grew(id, 4096);
  small.release(id);
  await small.delete(id);
  t.deepEqual(small.spareLogs, { count: 0, bytes: 0 });
});

test('entry log - a log deleted beyond the spare budget goes to the deleter, and a reopen does not take it for a log', async (t) => {
  const dir = await tempDir(t);
  const deleter = new FileDeleter({
    bytesPerSec: 1024 * 1024,
    sliceBytes: 1024 * 1024,
    logger: silentLogger,
  });
  t.teardown(() => deleter.close());
  const logs = new EntryLogs(dir, 64 * 1024 * 1024, 0, deleter);
  await logs.open();
  const id = await directLog(logs, [record(0, 100)]);
  await logs.delete(id);
  const deleting = (await readdir(dir)).filter((n) => n.endsWith(DELETING_SUFFIX));
  t.is(deleting.length, 1);
  t.is(deleter.pendingFiles, 1);
  await logs.close();
  // A restart while it is still being freed: the new instance neither lists nor reuses it.
  const again = new EntryLogs(dir, 64 * 1024 * 1024, SPARE_SIZE);
  await again.open();
  t.teardown(() => again.close());
  t.false(again.sizes.has(id));
  t.deepEqual(again.spareLogs, { count: 0, bytes: 0 });
  t.is(await deleter.hurry(), 1);
  t.deepEqual(
    (await readdir(dir)).filter((n) => n.endsWith(DELETING_SUFFIX)),
    [],
  );
});
