import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HeadObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { isRetriable, NotFoundError, Registry, retry, UnavailableError } from '@sluice/common';
import { type OffloadEntry, type OffloadSource, openOffloader, S3Offloader } from '@sluice/offload';
import test from 'ava';
import S3rver from 's3rver';
import { freePort } from '../support/ports.js';

const endpoint = process.env.SLUICE_TEST_S3;
const bucket = process.env.SLUICE_TEST_S3_BUCKET ?? 'sluice-test';
if (!endpoint) throw new Error('SLUICE_TEST_S3 is not set; run through scripts/with-services.ts');

// s3rver accepts these; the offloader reads them through the standard AWS SDK chain.
process.env.AWS_ACCESS_KEY_ID = 'S3RVER';
process.env.AWS_SECRET_ACCESS_KEY = 'S3RVER';

const MiB = 1024 * 1024;

/** Sizes vary from 0 to ~5 KB, with a 1 MiB entry every 500 entries. */
function payload(ledgerId: number, entryId: number): Buffer {
  const size = entryId % 500 === 250 ? MiB : (entryId * 7919 + ledgerId) % 5000;
  const buf = Buffer.allocUnsafe(size);
  const seed = (ledgerId * 131 + entryId * 31) & 0xff;
  for (let i = 0; i < size; i++) buf[i] = (seed + i * 7) & 0xff;
  return buf;
}

function source(ledgerId: number, lastEntryId: number): OffloadSource {
  return {
    ledgerId,
    lastEntryId,
    metadata: { topic: 'persistent://t/n/offload', ctime: '1700000000000' },
    async readEntries(first, last) {
      const out: OffloadEntry[] = [];
      for (let id = first; id <= last; id++) out.push({ entryId: id, payload: payload(ledgerId, id) });
      return out;
    },
  };
}

function url(prefix: string, params = ''): string {
  return `s3://${bucket}/${prefix}?endpoint=${encodeURIComponent(endpoint!)}&region=us-east-1${params}`;
}

function rawClient(): S3Client {
  return new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
  });
}

test('offload s3 - thousands of entries go up by multipart and read back byte-identical', async (t) => {
  const prefix = `s3-roundtrip-${randomUUID()}`;
  const lastEntryId = 2999;
  const writerRegistry = new Registry();
  const writer = openOffloader(url(prefix, '&partSize=5242880'), { registry: writerRegistry });
  t.teardown(() => writer.close());
  const result = await writer.offload(source(17, lastEntryId));
  t.is(result.entryCount, 3000);
  t.true(result.dataBytes > 10 * MiB, `data object is ${result.dataBytes} bytes`);
  const parts = (await writerRegistry.getSingleMetric('sluice_offload_upload_parts_total')!.get()).values[0]!;
  // Every part but the last holds at least 5 MiB, so there are at most floor(size / 5 MiB) + 1.
  t.true(
    parts.value >= 2 && parts.value <= Math.floor(result.dataBytes / (5 * MiB)) + 1,
    `${parts.value} parts`,
  );

  const client = rawClient();
  t.teardown(() => client.destroy());
  const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: result.dataKey }));
  t.is(head.ContentLength, result.dataBytes);

  const fresh = openOffloader(url(prefix));
  t.teardown(() => fresh.close());
  t.deepEqual(await fresh.list(), [{ ledgerId: 17, uuid: result.uuid, complete: true }]);
  const reader = await fresh.openReader(17, result.uuid);
  t.is(reader.lastEntryId, lastEntryId);
  t.is(reader.metadata.properties.topic, 'persistent://t/n/offload');
  let mismatches = 0;
  for (let first = 0; first <= lastEntryId; first += 400) {
    const entries = await reader.read(first, Math.min(lastEntryId, first + 399));
    for (const e of entries) if (!e.payload.equals(payload(17, e.entryId))) mismatches++;
    t.is(entries[0]!.entryId, first);
  }
  t.is(mismatches, 0);
  await reader.close();

  await fresh.delete(17, result.uuid);
  t.deepEqual(await fresh.list(17), []);
  await t.throwsAsync(fresh.openReader(17, result.uuid), { instanceOf: NotFoundError });
});

test('offload s3 - ranged reads across block boundaries fetch only the blocks they need', async (t) => {
  const prefix = `s3-ranged-${randomUUID()}`;
  const blockSize = 64 * 1024;
  const writer = new S3Offloader({
    bucket,
    prefix,
    endpoint: endpoint!,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    blockSize,
  });
  t.teardown(() => writer.close());
  const { uuid, blockCount } = await writer.offload(source(3, 1999));
  t.true(blockCount > 50, `${blockCount} blocks`);

  const registry = new Registry();
  const reader = await openOffloader(url(prefix), { registry }).openReader(3, uuid);
  t.teardown(() => reader.close());
  const bytesRead = async () =>
    (await registry.getSingleMetric('sluice_offload_read_bytes_total')!.get()).values[0]?.value ?? 0;

  const one = await reader.read(1000, 1000);
  t.true(one[0]!.payload.equals(payload(3, 1000)));
  t.true((await bytesRead()) <= blockSize, 'a one-entry read fetches one block');

  let state = 12345;
  const rand = (n: number) => {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    return state % n;
  };
  for (let i = 0; i < 40; i++) {
    const first = rand(2000);
    const last = Math.min(1999, first + rand(60));
    const entries = await reader.read(first, last);
    t.is(entries.length, last - first + 1);
    entries.forEach((e, k) => {
      if (e.entryId !== first + k || !e.payload.equals(payload(3, e.entryId))) {
        t.fail(`entry ${first + k} differs in read ${first}..${last}`);
      }
    });
  }
});

test('offload s3 - a refused endpoint gives a retriable UnavailableError quickly', async (t) => {
  const port = await freePort();
  const offloader = openOffloader(`s3://${bucket}/refused?endpoint=http://127.0.0.1:${port}`);
  t.teardown(() => offloader.close());
  const started = Date.now();
  const err = await t.throwsAsync(offloader.offload(source(1, 20)), { instanceOf: UnavailableError });
  t.true(isRetriable(err));
  t.regex(err!.message, /unreachable|ECONNREFUSED/);
  await t.throwsAsync(offloader.openReader(1, randomUUID()), { instanceOf: UnavailableError });
  t.true(Date.now() - started < 10_000, `took ${Date.now() - started} ms`);
});

test('offload s3 - an endpoint that never answers times out as UnavailableError', async (t) => {
  const sockets = new Set<Socket>();
  const silent = createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        silent.close(() => resolve());
      }),
  );
  const port = (silent.address() as { port: number }).port;
  const offloader = openOffloader(
    `s3://${bucket}/silent?endpoint=http://127.0.0.1:${port}&requestTimeoutMs=500&maxAttempts=1`,
  );
  t.teardown(() => offloader.close());
  const started = Date.now();
  const err = await t.throwsAsync(offloader.offload(source(1, 20)), { instanceOf: UnavailableError });
  t.true(isRetriable(err));
  t.true(Date.now() - started < 5000, `took ${Date.now() - started} ms`);
});

test('offload s3 - an offload retried with backoff completes once the endpoint comes up', async (t) => {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'sluice-offload-late-s3-'));
  const server = new S3rver({
    address: '127.0.0.1',
    port,
    silent: true,
    directory: dir,
    configureBuckets: [{ name: 'late', configs: [] }],
  });
  let running = false;
  t.teardown(async () => {
    if (running) await server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const offloader = openOffloader(`s3://late/p?endpoint=http://127.0.0.1:${port}`);
  t.teardown(() => offloader.close());
  const failures: unknown[] = [];
  const result = await retry(
    async (attempt) => {
      if (attempt === 2) {
        await server.run();
        running = true;
      }
      return offloader.offload(source(9, 99));
    },
    { minDelayMs: 50, maxDelayMs: 200, onRetry: (err) => failures.push(err) },
  );
  t.is(failures.length, 2);
  t.true(failures.every((e) => e instanceof UnavailableError));
  const reader = await offloader.openReader(9, result.uuid);
  t.true((await reader.read(99, 99))[0]!.payload.equals(payload(9, 99)));
});

test('offload s3 - a failure after parts were uploaded leaves no object', async (t) => {
  const prefix = `s3-failed-${randomUUID()}`;
  const registry = new Registry();
  const offloader = openOffloader(url(prefix, '&partSize=5242880'), { registry });
  t.teardown(() => offloader.close());
  const failing: OffloadSource = {
    ...source(4, 2999),
    async readEntries(first, last) {
      if (first >= 2500) throw new UnavailableError('bookies went away');
      return source(4, 2999).readEntries(first, last);
    },
  };
  await t.throwsAsync(offloader.offload(failing, { uuid: 'failed-attempt' }), {
    message: /bookies went away/,
  });
  const parts = (await registry.getSingleMetric('sluice_offload_upload_parts_total')!.get()).values[0]!;
  t.true(parts.value >= 1, 'the attempt had uploaded parts before failing');
  t.deepEqual(await offloader.list(4), []);
  const client = rawClient();
  t.teardown(() => client.destroy());
  await t.throwsAsync(
    client.send(new HeadObjectCommand({ Bucket: bucket, Key: `${prefix}/ledger-4/failed-attempt.data` })),
  );
});
