/**
 * The disk alone (not a test): how deleting a large file disturbs a writer
 * on the same disk. A writer appends `GROUP_KIB` O_DIRECT groups + fdatasync
 * paced to `RATE_MB` MB/s; after 1.5 s a `FILE_GIB` file is deleted, by one
 * unlink or in steps (truncate from the end, `slice-MiB` at a time, paced to
 * `rate-MiB` MiB/s, then unlink) as the bookie's `FileDeleter` does. Prints
 * the writer's p50 / p99 / max (from each write's scheduled time) before and
 * while the file is deleted (until 0.5 s after).
 *
 *   node --import=tsx test/perf/delete-latency.ts [unlink | <rate-MiB>/<slice-MiB> ...]
 *
 * Defaults: `unlink 256/4 512/8`; env RATE_MB=300 GROUP_KIB=256 FILE_GIB=3,
 * BENCH_DIR (default: the OS temp dir).
 */
import { execFileSync } from 'node:child_process';
import { closeSync, constants, fdatasyncSync, openSync, writeSync } from 'node:fs';
import { mkdtemp, open, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep, setImmediate as yieldLoop } from 'node:timers/promises';
import { allocAligned } from '../../packages/bookie/src/direct-io.js';

const RATE_MB = Number(process.env.RATE_MB ?? 300);
const GROUP = Number(process.env.GROUP_KIB ?? 256) * 1024;
const FILE_GIB = Number(process.env.FILE_GIB ?? 3);
const MiB = 1024 * 1024;
const modes = process.argv.slice(2).length > 0 ? process.argv.slice(2) : ['unlink', '256/4', '512/8'];

async function remove(path: string, mode: string): Promise<void> {
  if (mode === 'unlink') return unlink(path);
  const [rate, slice] = mode.split('/').map(Number) as [number, number];
  const fh = await open(path, 'r+');
  let size = FILE_GIB * 1024 * MiB;
  while (size > 0) {
    const t0 = performance.now();
    size = Math.max(0, size - slice * MiB);
    await fh.truncate(size);
    const wait = (slice / rate) * 1000 - (performance.now() - t0);
    if (wait > 0) await sleep(wait);
  }
  await fh.close();
  await unlink(path);
}

const q = (xs: number[], p: number) => xs[Math.min(xs.length - 1, Math.floor(xs.length * p))] ?? Number.NaN;

async function run(dir: string, mode: string): Promise<string> {
  const big = join(dir, 'big.bin');
  execFileSync('dd', [
    'if=/dev/zero',
    `of=${big}`,
    'bs=8M',
    `count=${FILE_GIB * 128}`,
    'conv=fdatasync',
    'status=none',
  ]);
  const log = join(dir, 'log.bin');
  const fd = openSync(log, constants.O_WRONLY | constants.O_CREAT | constants.O_DIRECT);
  const buf = allocAligned(GROUP).subarray(0, GROUP).fill(3);
  const interval = (GROUP / (RATE_MB * 1e6)) * 1000;
  const samples: [number, number][] = [];
  const t0 = performance.now();
  let next = t0;
  let pos = 0;
  let took = -1;
  let started = false;
  try {
    for (;;) {
      const now = performance.now();
      if (!started && now - t0 > 1500) {
        started = true;
        const d0 = now;
        void remove(big, mode).then(() => {
          took = performance.now() - d0;
        });
      }
      if ((took >= 0 && now - t0 > 2000 + took) || now - t0 > 120_000) break;
      if (now < next) {
        await yieldLoop();
        continue;
      }
      const scheduled = next;
      next += interval;
      writeSync(fd, buf, 0, GROUP, pos);
      pos = pos + GROUP > 1024 * MiB ? 0 : pos + GROUP;
      fdatasyncSync(fd);
      samples.push([scheduled - t0, performance.now() - scheduled]);
      if (samples.length % 4 === 0) await yieldLoop();
    }
  } finally {
    closeSync(fd);
    await rm(log, { force: true });
    await rm(big, { force: true });
  }
  const window = (a: number, b: number) =>
    samples
      .filter(([at]) => at >= a && at < b)
      .map(([, l]) => l)
      .sort((x, y) => x - y);
  const before = window(0, 1500);
  const during = window(1500, 2000 + took);
  const over5 = (100 * during.filter((l) => l > 5).length) / Math.max(1, during.length);
  return `| ${mode === 'unlink' ? 'one unlink' : `${mode.replace('/', ' MiB/s, ')} MiB steps`} | ${(took / 1000).toFixed(1)} | ${q(before, 0.5).toFixed(2)} / ${q(before, 0.99).toFixed(2)} | ${q(during, 0.5).toFixed(2)} / ${q(during, 0.99).toFixed(2)} / ${(during.at(-1) ?? Number.NaN).toFixed(1)} | ${over5.toFixed(1)}% |`;
}

const dir = await mkdtemp(join(process.env.BENCH_DIR ?? tmpdir(), 'sluice-delete-latency-'));
try {
  console.log(
    `writer: ${GROUP / 1024} KiB O_DIRECT write + fdatasync at ${RATE_MB} MB/s; a ${FILE_GIB} GiB file deleted after 1.5 s`,
  );
  console.log(
    '| delete | took s | writer before: p50 / p99 ms | while deleting: p50 / p99 / max ms | writes over 5 ms |',
  );
  console.log('| --- | --- | --- | --- | --- |');
  for (const mode of modes) console.log(await run(dir, mode));
} finally {
  await rm(dir, { recursive: true, force: true });
}
