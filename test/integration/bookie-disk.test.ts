import { execFileSync } from 'node:child_process';
import { mkdtemp, open, rm, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openMetadataStore } from '@sluice/metadata';
import type { AddResult__Output, BookieServiceClient, GetBookieInfoResponse__Output } from '@sluice/proto';
import test, { type ExecutionContext } from 'ava';
import {
  addAll,
  BookieProcess,
  bookieClient,
  bookiePorts,
  readEntry,
  testEntry,
  testMetadataUrl,
  unary,
} from '../support/bookie-process.js';
import { waitFor } from '../support/ports.js';

/** A small real filesystem (tmpfs) the bookie can fill; stops `bookies` before unmounting. */
async function smallDisk(t: ExecutionContext, size: string, bookies: () => BookieProcess[]): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-bookie-disk-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
  t.teardown(async () => {
    for (const b of bookies()) {
      b.kill('SIGKILL');
      await b.exited;
    }
    execFileSync('umount', [dir]);
    await rmdir(dir);
  });
  return dir;
}

/** Write a ballast file until the filesystem has about `leaveBytes` free. */
async function fill(path: string, leaveBytes: number, totalBytes: number): Promise<void> {
  const fh = await open(path, 'w');
  const chunk = Buffer.alloc(64 * 1024, 1);
  try {
    for (let written = 0; written + chunk.length <= totalBytes - leaveBytes; written += chunk.length) {
      await fh.write(chunk);
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    await fh.close();
  }
}

function info(c: BookieServiceClient): Promise<GetBookieInfoResponse__Output> {
  return unary(c.getBookieInfo.bind(c), {});
}

test('bookie disk - over the usage threshold the bookie turns read-only and back once space frees', async (t) => {
  const bookies: BookieProcess[] = [];
  const dir = await smallDisk(t, '8m', () => bookies);
  const metadata = testMetadataUrl('bookie-disk');
  const store = await openMetadataStore(metadata);
  t.teardown(() => store.close());
  const env = { DISK_USAGE_THRESHOLD: '0.6', DISK_USAGE_LWM_THRESHOLD: '0.5', DISK_CHECK_INTERVAL_MS: '100' };
  const b = await BookieProcess.start({
    metadata,
    dataDir: join(dir, 'data'),
    ...(await bookiePorts()),
    env,
  });
  bookies.push(b);
  const c = bookieClient(b.address);
  t.teardown(() => c.close());
  const first = await addAll(c, [{ entries: [0, 1, 2].map((i) => testEntry(40, i, 8192)) }]);
  t.true(first.every((r) => r.status === 'ENTRY_STATUS_OK'));
  const { bookieId, totalBytes } = await info(c);

  await fill(join(dir, 'ballast'), totalBytes * 0.3, totalBytes);
  await waitFor(async () => (await info(c)).readOnly, 5000, 'read-only after filling the disk');
  const refused = await addAll(c, [{ entries: [testEntry(40, 3, 8192)] }]);
  t.is(refused[0]!.status, 'ENTRY_STATUS_READ_ONLY');
  t.regex(refused[0]!.message, /RESOURCE_EXHAUSTED.*over the 60.0% threshold/);
  await waitFor(
    async () => !!(await store.get(`bookies/readonly/${bookieId}`)),
    5000,
    'readonly registration',
  );
  t.is(await store.get(`bookies/available/${bookieId}`), undefined);
  for (let i = 0; i < 3; i++) {
    const r = await readEntry(c, 40, i);
    t.true(r.status === 'ENTRY_STATUS_OK' && r.entry?.payload.equals(testEntry(40, i, 8192).payload));
  }

  await rm(join(dir, 'ballast'));
  await waitFor(async () => !(await info(c)).readOnly, 5000, 'writable after freeing space');
  const again = await addAll(c, [{ entries: [testEntry(40, 3, 8192)] }]);
  t.is(again[0]!.status, 'ENTRY_STATUS_OK');
  await waitFor(
    async () => !!(await store.get(`bookies/available/${bookieId}`)),
    5000,
    'available registration',
  );
});

// 32 KiB entries are written once by default (entry log + journal
// reference); with writing once off they go through the journal.
for (const once of [false, true]) {
  test(`bookie disk - a real ENOSPC stops adds for good (no fsync retry) and loses nothing acknowledged${once ? ' (entries written once)' : ''}`, async (t) => {
    const bookies: BookieProcess[] = [];
    const dir = await smallDisk(t, '6m', () => bookies);
    const metadata = testMetadataUrl(`bookie-enospc-${once}`);
    // Thresholds at 100%: only the real error can stop this bookie.
    const env: Record<string, string> = {
      DISK_USAGE_THRESHOLD: '1',
      DISK_USAGE_LWM_THRESHOLD: '0.99',
      CHECKPOINT_INTERVAL_MS: '200',
    };
    Object.assign(
      env,
      once
        ? { ENTRY_LOG_DIRECT_BYTES: '16K', ENTRY_LOG_DIRECT_BACKLOG_BYTES: '0' }
        : { ENTRY_LOG_DIRECT_BYTES: '0' },
    );
    const ports = await bookiePorts();
    const b1 = await BookieProcess.start({ metadata, dataDir: join(dir, 'data'), ...ports, env });
    bookies.push(b1);
    const c1 = bookieClient(b1.address);
    t.teardown(() => c1.close());
    const { totalBytes } = await info(c1);
    await fill(join(dir, 'ballast'), 1024 * 1024, totalBytes);

    const acked: number[] = [];
    let failure: AddResult__Output | undefined;
    for (let i = 0; i < 200 && !failure; i++) {
      const [r] = await addAll(c1, [{ entries: [testEntry(50, i, 32 * 1024)] }]);
      if (r!.status === 'ENTRY_STATUS_OK') acked.push(i);
      else failure = r;
    }
    t.truthy(failure, 'the disk never filled');
    t.is(failure!.status, 'ENTRY_STATUS_IO_ERROR');
    t.regex(failure!.message, /ENOSPC|disk full|no space/i);
    t.true(acked.length > 0);
    t.true((await info(c1)).readOnly);

    await rm(join(dir, 'ballast'));
    const [later] = await addAll(c1, [{ entries: [testEntry(50, 1000, 1024)] }]);
    t.is(later!.status, 'ENTRY_STATUS_IO_ERROR', 'a failed journal is never written again');
    t.true((await readEntry(c1, 50, acked[0]!)).status === 'ENTRY_STATUS_OK', 'reads still served');

    b1.kill('SIGKILL');
    await b1.exited;
    const b2 = await BookieProcess.start({ metadata, dataDir: join(dir, 'data'), ...ports, env });
    bookies.push(b2);
    const c2 = bookieClient(b2.address);
    t.teardown(() => c2.close());
    for (const i of acked) {
      const r = await readEntry(c2, 50, i);
      t.true(
        r.status === 'ENTRY_STATUS_OK' && r.entry?.payload.equals(testEntry(50, i, 32 * 1024).payload),
        `50:${i}`,
      );
    }
    const [fresh] = await addAll(c2, [{ entries: [testEntry(50, acked.length, 1024)] }]);
    t.is(fresh!.status, 'ENTRY_STATUS_OK');
  });
}
