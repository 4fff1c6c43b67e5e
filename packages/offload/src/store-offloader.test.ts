import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ClosedError,
  CorruptDataError,
  InvalidArgumentError,
  NotFoundError,
  OutOfRangeError,
  UnavailableError,
} from '@sluice/common';
import test from 'ava';
import { FilesystemObjectStore } from './filesystem-object-store.js';
import { FilesystemOffloader } from './filesystem-offloader.js';
import type { ObjectStore, ObjectUpload } from './object-store.js';
import type { OffloadEntry, OffloadSource } from './offloader.js';
import { StoreOffloader } from './store-offloader.js';

function payload(entryId: number): Buffer {
  const size = (entryId * 7919) % 3000;
  const buf = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) buf[i] = (entryId * 31 + i) & 0xff;
  return buf;
}

function source(ledgerId: number, lastEntryId: number, onRead?: (first: number) => void): OffloadSource {
  return {
    ledgerId,
    lastEntryId,
    metadata: { topic: 't/n/x' },
    async readEntries(first, last) {
      onRead?.(first);
      const out: OffloadEntry[] = [];
      for (let id = first; id <= last; id++) out.push({ entryId: id, payload: payload(id) });
      return out;
    },
  };
}

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-offload-unit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('filesystem offloader - round trips a ledger across many blocks', async (t) => {
  const dir = tempDir(t);
  const offloader = new FilesystemOffloader({
    dir,
    prefix: 'cold',
    blockSize: 16 * 1024,
    readBatchEntries: 37,
  });
  const result = await offloader.offload(source(5, 499));
  t.is(result.entryCount, 500);
  t.true(result.blockCount > 10);
  await offloader.close();

  const fresh = new FilesystemOffloader({ dir, prefix: 'cold' });
  const reader = await fresh.openReader(5, result.uuid);
  t.is(reader.lastEntryId, 499);
  t.deepEqual(reader.metadata.properties, { topic: 't/n/x' });
  t.is(reader.metadata.dataObjectSize, result.dataBytes);
  const all = await reader.read(0, 499);
  t.is(all.length, 500);
  all.forEach((e, i) => {
    t.is(e.entryId, i);
    t.true(e.payload.equals(payload(i)));
  });
  const middle = await reader.read(123, 321);
  t.deepEqual(
    middle.map((e) => e.entryId),
    Array.from({ length: 199 }, (_, i) => 123 + i),
  );
  t.deepEqual(await fresh.list(), [{ ledgerId: 5, uuid: result.uuid, complete: true }]);
  await reader.close();
  await t.throwsAsync(reader.read(0, 0), { instanceOf: ClosedError });
  await fresh.close();
});

test('filesystem offloader - empty ledger', async (t) => {
  const offloader = new FilesystemOffloader({ dir: tempDir(t) });
  const result = await offloader.offload(source(1, -1));
  t.is(result.dataBytes, 0);
  const reader = await offloader.openReader(1, result.uuid);
  t.is(reader.lastEntryId, -1);
  await t.throwsAsync(reader.read(0, 0), { instanceOf: OutOfRangeError });
});

test('filesystem offloader - bad reads and missing offloads are clear errors', async (t) => {
  const offloader = new FilesystemOffloader({ dir: tempDir(t) });
  const { uuid } = await offloader.offload(source(2, 9));
  const reader = await offloader.openReader(2, uuid);
  await t.throwsAsync(reader.read(5, 10), { instanceOf: OutOfRangeError, message: /0\.\.9/ });
  await t.throwsAsync(reader.read(-1, 3), { instanceOf: OutOfRangeError });
  await t.throwsAsync(reader.read(4, 3), { instanceOf: InvalidArgumentError });
  await t.throwsAsync(offloader.openReader(2, 'no-such-uuid'), { instanceOf: NotFoundError });
  await t.throwsAsync(offloader.openReader(2, '../../etc'), { instanceOf: InvalidArgumentError });
  await t.throwsAsync(offloader.offload(source(2, 3), { uuid: 'a/b' }), { instanceOf: InvalidArgumentError });
});

test('filesystem offloader - corrupted data object gives CorruptDataError', async (t) => {
  const dir = tempDir(t);
  const offloader = new FilesystemOffloader({ dir, blockSize: 4096 });
  const { uuid } = await offloader.offload(source(3, 99));
  const path = join(dir, 'ledger-3', `${uuid}.data`);
  const bytes = readFileSync(path);
  bytes[bytes.length - 2]! ^= 0xff;
  writeFileSync(path, bytes);
  const reader = await offloader.openReader(3, uuid);
  await t.notThrowsAsync(reader.read(0, 0));
  await t.throwsAsync(reader.read(99, 99), { instanceOf: CorruptDataError, message: /checksum/ });
  writeFileSync(path, bytes.subarray(0, 100));
  const again = await new FilesystemOffloader({ dir }).openReader(3, uuid);
  await t.throwsAsync(again.read(99, 99), { instanceOf: CorruptDataError, message: /truncated/ });
});

test('filesystem offloader - delete is idempotent and list reports debris', async (t) => {
  const dir = tempDir(t);
  const offloader = new FilesystemOffloader({ dir });
  const a = await offloader.offload(source(7, 5));
  const b = await offloader.offload(source(7, 5));
  t.not(a.uuid, b.uuid);
  rmSync(join(dir, 'ledger-7', `${b.uuid}.index`));
  const listed = await offloader.list(7);
  t.deepEqual(
    listed.find((l) => l.uuid === b.uuid),
    { ledgerId: 7, uuid: b.uuid, complete: false },
  );
  await offloader.delete(7, a.uuid);
  await offloader.delete(7, a.uuid);
  await offloader.delete(7, b.uuid);
  t.deepEqual(await offloader.list(), []);
  await t.throwsAsync(offloader.openReader(7, a.uuid), { instanceOf: NotFoundError });
});

test('filesystem offloader - a failed source leaves no object behind', async (t) => {
  const dir = tempDir(t);
  const offloader = new FilesystemOffloader({ dir, blockSize: 4096, readBatchEntries: 10 });
  const failing = source(9, 200, (first) => {
    if (first >= 100) throw new UnavailableError('bookies unreachable');
  });
  await t.throwsAsync(offloader.offload(failing), { instanceOf: UnavailableError });
  t.deepEqual(await offloader.list(), []);
  t.deepEqual(readdirSync(join(dir, 'ledger-9')), [], 'temp file removed');
  const abort = new AbortController();
  abort.abort();
  await t.throwsAsync(offloader.offload(source(9, 5), { signal: abort.signal }), { instanceOf: ClosedError });
  t.deepEqual(await offloader.list(), []);
});

test('offloader - a source with gaps is rejected', async (t) => {
  const offloader = new FilesystemOffloader({ dir: tempDir(t) });
  const gappy: OffloadSource = {
    ...source(4, 10),
    readEntries: async (first) => [{ entryId: first, payload: Buffer.from('x') }],
  };
  await t.throwsAsync(offloader.offload(gappy), { instanceOf: CorruptDataError, message: /gaps/ });
  t.deepEqual(await offloader.list(), []);
});

/** A store whose index put fails, to check the data object is removed too. */
class FailingIndexStore implements ObjectStore {
  readonly description = 'failing';
  constructor(private readonly inner: ObjectStore) {}
  startUpload(key: string): ObjectUpload {
    return this.inner.startUpload(key);
  }
  async put(key: string, body: Buffer): Promise<void> {
    if (key.endsWith('.index')) throw new UnavailableError('index put failed');
    await this.inner.put(key, body);
  }
  get(key: string) {
    return this.inner.get(key);
  }
  getRange(key: string, offset: number, length: number) {
    return this.inner.getRange(key, offset, length);
  }
  size(key: string) {
    return this.inner.size(key);
  }
  delete(key: string) {
    return this.inner.delete(key);
  }
  list(prefix: string) {
    return this.inner.list(prefix);
  }
  close() {
    return this.inner.close();
  }
}

test('offloader - a failed index write removes the data object', async (t) => {
  const dir = tempDir(t);
  const offloader = new StoreOffloader(new FailingIndexStore(new FilesystemObjectStore(dir)), 'p');
  await t.throwsAsync(offloader.offload(source(6, 50)), { instanceOf: UnavailableError });
  t.deepEqual(await new FilesystemObjectStore(dir).list(''), []);
});

test('offloader - the block cache serves repeated reads', async (t) => {
  const { Registry } = await import('@sluice/common');
  const registry = new Registry();
  const offloader = new FilesystemOffloader({ dir: tempDir(t), blockSize: 4096, registry });
  const { uuid } = await offloader.offload(source(8, 99));
  const reader = await offloader.openReader(8, uuid);
  await reader.read(0, 99);
  const misses = (await registry.getSingleMetric('sluice_offload_block_cache_misses_total')!.get()).values[0]!
    .value;
  await reader.read(0, 99);
  const after = await registry.getSingleMetric('sluice_offload_block_cache_misses_total')!.get();
  t.is(after.values[0]!.value, misses);
  const hits = await registry.getSingleMetric('sluice_offload_block_cache_hits_total')!.get();
  t.is(hits.values[0]!.value, misses);
});

test('offloaded ledger reader - a small payload read does not keep its whole block in memory', async (t) => {
  const offloader = new FilesystemOffloader({ dir: tempDir(t) });
  t.teardown(() => offloader.close());
  const count = 20_000;
  const small = (id: number) => Buffer.alloc(100, id & 0xff);
  const { uuid, blockCount } = await offloader.offload({
    ledgerId: 9,
    lastEntryId: count - 1,
    metadata: {},
    readEntries: async (first, last) =>
      Array.from({ length: last - first + 1 }, (_, i) => ({ entryId: first + i, payload: small(first + i) })),
  });
  t.true(blockCount < 10, 'entries share ~1 MiB blocks');
  const reader = await offloader.openReader(9, uuid);
  for (const round of ['fetched', 'cached']) {
    const got = await reader.read(5000, 5099);
    t.is(got.length, 100);
    for (const e of got) {
      t.true(e.payload.equals(small(e.entryId)));
      t.true(
        e.payload.buffer.byteLength <= 2 * e.payload.length,
        `${round}: entry ${e.entryId} (${e.payload.length} bytes) keeps ${e.payload.buffer.byteLength} bytes alive`,
      );
    }
  }
});

test('offloader - verify checks the index checksum and the data object size', async (t) => {
  const dir = tempDir(t);
  const offloader = new FilesystemOffloader({ dir, blockSize: 4096 });
  const result = await offloader.offload(source(12, 60));
  const metadata = await offloader.verify(12, result.uuid);
  t.is(metadata.entryCount, 61);
  t.is(metadata.dataObjectSize, result.dataBytes);

  const dataPath = join(dir, ...result.dataKey.split('/'));
  const data = readFileSync(dataPath);
  writeFileSync(dataPath, data.subarray(0, data.length - 1));
  await t.throwsAsync(offloader.verify(12, result.uuid), { instanceOf: CorruptDataError, message: /bytes/ });
  writeFileSync(dataPath, data);

  const indexPath = join(dir, ...result.indexKey.split('/'));
  const index = readFileSync(indexPath);
  const flipped = Buffer.from(index);
  flipped[20]! ^= 1;
  writeFileSync(indexPath, flipped);
  await t.throwsAsync(offloader.verify(12, result.uuid), {
    instanceOf: CorruptDataError,
    message: /checksum/,
  });
  writeFileSync(indexPath, index);

  rmSync(dataPath);
  await t.throwsAsync(offloader.verify(12, result.uuid), { instanceOf: NotFoundError });
});
