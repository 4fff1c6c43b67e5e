import { mkdtemp, open, readdir, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '@sluice/common';
import test, { type ExecutionContext } from 'ava';
import { DELETING_SUFFIX, FileDeleter } from './file-deleter.js';

const MiB = 1024 * 1024;

async function tempDir(t: ExecutionContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'file-deleter-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A file of `bytes` with its blocks allocated (written, not sparse), so freeing it frees real space. */
async function filled(path: string, bytes: number): Promise<void> {
  const fh = await open(path, 'w');
  const chunk = Buffer.alloc(MiB, 0x5a);
  for (let at = 0; at < bytes; at += MiB) await fh.write(chunk, 0, Math.min(MiB, bytes - at), at);
  await fh.close();
}

const allocated = async (path: string) => (await stat(path)).blocks * 512;

test('file deleter - a deleted file is renamed at once and freed in steps at the rate, then unlinked', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'entrylog-0000000000000001.log');
  await filled(path, 40 * MiB);
  const deleter = new FileDeleter({ bytesPerSec: 100 * MiB, sliceBytes: 8 * MiB, logger: silentLogger });
  t.teardown(() => deleter.close());
  const t0 = performance.now();
  await deleter.delete(path);
  t.deepEqual(await readdir(dir), [`entrylog-0000000000000001.log${DELETING_SUFFIX}`]);
  t.is(deleter.pendingFiles, 1);
  t.true(deleter.pendingBytes > 0 && deleter.pendingBytes <= 40 * MiB);
  // Half way (five 8 MiB steps, 80 ms apart): some space is back, not all.
  await new Promise((r) => setTimeout(r, 150));
  const left = await allocated(join(dir, `entrylog-0000000000000001.log${DELETING_SUFFIX}`));
  t.true(left < 40 * MiB && left > 0, `freed in steps (${left} bytes left after 150 ms)`);
  await deleter.idle();
  const took = performance.now() - t0;
  t.deepEqual(await readdir(dir), []);
  t.is(deleter.pendingBytes, 0);
  t.is(deleter.pendingFiles, 0);
  // Four pauses of 80 ms between the five steps.
  t.true(took >= 280, `paced to the rate (${took.toFixed(0)} ms)`);
});

test('file deleter - without a rate, a file is unlinked at once', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'journal-0000000000000001.log');
  await writeFile(path, Buffer.alloc(MiB));
  const deleter = new FileDeleter({ bytesPerSec: 0, logger: silentLogger });
  await deleter.delete(path);
  t.deepEqual(await readdir(dir), []);
  t.is(deleter.pendingFiles, 0);
});

test('file deleter - a stop leaves the rest for resume, which frees it; other files are left alone', async (t) => {
  const dir = await tempDir(t);
  await filled(join(dir, 'a.log'), 32 * MiB);
  await writeFile(join(dir, 'keep.log'), 'live');
  const slow = new FileDeleter({ bytesPerSec: 8 * MiB, sliceBytes: 4 * MiB, logger: silentLogger });
  await slow.delete(join(dir, 'a.log'));
  await new Promise((r) => setTimeout(r, 100));
  await slow.close();
  const half = join(dir, `a.log${DELETING_SUFFIX}`);
  const size = (await stat(half)).size;
  t.true(size > 0 && size < 32 * MiB, `cut part way (${size} bytes left)`);

  const next = new FileDeleter({ bytesPerSec: 1024 * MiB, logger: silentLogger });
  t.teardown(() => next.close());
  t.is(await next.resume(dir), 1);
  await next.idle();
  t.deepEqual(await readdir(dir), ['keep.log']);
  t.is(await next.resume(join(dir, 'missing')), 0);
});

test('file deleter - hurry frees every queued file at once (the disk is filling up)', async (t) => {
  const dir = await tempDir(t);
  for (const n of ['x.log', 'y.log']) await filled(join(dir, n), 16 * MiB);
  const deleter = new FileDeleter({ bytesPerSec: MiB, sliceBytes: MiB, logger: silentLogger });
  t.teardown(() => deleter.close());
  await deleter.delete(join(dir, 'x.log'));
  await deleter.delete(join(dir, 'y.log'));
  t.is(deleter.pendingFiles, 2);
  const t0 = performance.now();
  t.is(await deleter.hurry(), 2);
  // At 1 MiB/s the two files would take 32 s.
  t.true(performance.now() - t0 < 10_000);
  t.deepEqual(await readdir(dir), []);
  t.is(deleter.pendingBytes, 0);
  t.is(await deleter.hurry(), 0);
});

test('file deleter - a file that vanished from the queue is skipped; the next one is still freed', async (t) => {
  const dir = await tempDir(t);
  await filled(join(dir, 'gone.log'), 2 * MiB);
  await filled(join(dir, 'next.log'), 2 * MiB);
  const deleter = new FileDeleter({ bytesPerSec: 4 * MiB, sliceBytes: MiB, logger: silentLogger });
  t.teardown(() => deleter.close());
  await deleter.delete(join(dir, 'gone.log'));
  await deleter.delete(join(dir, 'next.log'));
  // Someone else removes the first file while it is being freed.
  await truncate(join(dir, `gone.log${DELETING_SUFFIX}`), 0);
  await rm(join(dir, `gone.log${DELETING_SUFFIX}`));
  await deleter.idle();
  t.deepEqual(await readdir(dir), []);
  t.is(deleter.pendingBytes, 0, 'a file that vanished leaves no bytes counted');
});

test('file deleter - the pace holds across files smaller than a step', async (t) => {
  const dir = await tempDir(t);
  for (const n of ['a.log', 'b.log', 'c.log']) await filled(join(dir, n), 4 * MiB);
  const deleter = new FileDeleter({ bytesPerSec: 16 * MiB, sliceBytes: 8 * MiB, logger: silentLogger });
  t.teardown(() => deleter.close());
  const t0 = performance.now();
  for (const n of ['a.log', 'b.log', 'c.log']) await deleter.delete(join(dir, n));
  await deleter.idle();
  const took = performance.now() - t0;
  t.deepEqual(await readdir(dir), []);
  // 12 MiB at 16 MiB/s: 0.75 s, one file each 250 ms.
  t.true(took >= 600, `paced across files (${took.toFixed(0)} ms)`);
});
