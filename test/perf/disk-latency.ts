/**
 * The disk alone (not a test): appends of SIZE-byte records arriving at
 * RATE a second, each acknowledged once durable, written in several
 * patterns; prints p50 / p90 / p99 / max from each record's scheduled
 * arrival to its acknowledgement. It answers what latency any storage
 * process could reach on this disk at that rate, whatever its own code
 * does: the bookie bench's half-max-rate phase runs 128 KiB entries at
 * ~5,000–6,000 adds a second.
 *
 *   node --import=tsx test/perf/disk-latency.ts [size-bytes] [rate] [seconds] [runs]
 *
 * Patterns (records that arrived since the last group form the next group;
 * acknowledgements in order; O_DIRECT from page-aligned memory, each group
 * starting on a fresh 4 KiB block):
 * - `serial`: one group at a time, write then fdatasync;
 * - `two-in-flight`: up to two groups written and synced side by side (the
 *   bookie's direct log);
 * - `o-dsync`: the file opened O_DSYNC, no fdatasync, two writes in flight;
 * - `overwrite`: `two-in-flight` into a file written and synced beforehand,
 *   so a sync has no file size or extent change to commit;
 * - `o-dsync-overwrite`: `o-dsync` into a file written beforehand;
 * - `journal`: `two-in-flight` plus, per group, a 76-byte reference per
 *   record written with O_DSYNC to a second file (the bookie's journal
 *   beside its direct log), the group done when both are;
 * - `journal-overwrite`: `journal` with both files written beforehand.
 * - `hedged-overwrite`: `o-dsync-overwrite`, each group written to two
 *   files at once and done when the first write returns (durable in one
 *   copy is durable): whether a stall is one file's or the whole disk's.
 *   Run it with `UV_THREADPOOL_SIZE=16`, so that writes stuck behind a
 *   stalled copy do not hold every thread of libuv's pool.
 * `PATTERNS=journal,journal-overwrite` runs only those.
 * Runs in a temp dir under $BENCH_DIR or the OS temp dir.
 */
import { constants } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { alignUp, allocAligned, DIRECT_IO_CREATE_FLAGS } from '../../packages/bookie/src/direct-io.js';

const SIZE = Number(process.argv[2] ?? 128 * 1024);
const RATE = Number(process.argv[3] ?? 5000);
const SECONDS = Number(process.argv[4] ?? 6);
const RUNS = Number(process.argv[5] ?? 2);
const WARMUP_SECONDS = 1;
const PACE_MS = 0.25;

type Pattern =
  | 'serial'
  | 'two-in-flight'
  | 'o-dsync'
  | 'overwrite'
  | 'o-dsync-overwrite'
  | 'journal'
  | 'journal-overwrite'
  | 'hedged-overwrite';
const PATTERNS: Pattern[] = (process.env.PATTERNS?.split(',') as Pattern[] | undefined) ?? [
  'serial',
  'two-in-flight',
  'o-dsync',
  'overwrite',
  'o-dsync-overwrite',
  'journal',
  'journal-overwrite',
  'hedged-overwrite',
];

const paceCell = new Int32Array(new SharedArrayBuffer(4));
/** Wait ~PACE_MS (Node's timers fire on whole milliseconds), then yield to I/O. */
const pace = () =>
  new Promise<void>((resolve) => {
    Atomics.wait(paceCell, 0, 0, PACE_MS);
    setImmediate(resolve);
  });

async function run(dir: string, pattern: Pattern): Promise<number[]> {
  const path = join(dir, `${pattern}.bin`);
  const total = Math.floor(RATE * (WARMUP_SECONDS + SECONDS));
  const bytes = alignUp(total * SIZE + 4096 * total);
  const hedged = pattern === 'hedged-overwrite';
  const over = pattern.endsWith('-overwrite') || pattern === 'overwrite';
  const dsync = pattern === 'o-dsync' || pattern === 'o-dsync-overwrite' || hedged;
  const copyPaths = hedged ? [path, join(dir, `${pattern}.copy`)] : [path];
  const withJournal = pattern === 'journal' || pattern === 'journal-overwrite';
  const journalPath = join(dir, `${pattern}.journal`);
  if (over) {
    const block = allocAligned(8 << 20).fill(3);
    for (const copy of copyPaths) {
      const f = await open(copy, DIRECT_IO_CREATE_FLAGS);
      for (let o = 0; o < bytes; o += block.length) await f.write(block, 0, block.length, o);
      await f.datasync();
      await f.close();
    }
    if (withJournal) {
      const j = await open(journalPath, 'w');
      await j.write(Buffer.alloc(total * 128 + (1 << 20)), 0);
      await j.datasync();
      await j.close();
    }
  }
  // The bookie's journal beside its direct log: one small O_DSYNC record per group.
  if (withJournal && !over) await (await open(journalPath, 'w', 0o644)).close();
  const jh = withJournal ? await open(journalPath, constants.O_WRONLY | constants.O_DSYNC) : undefined;
  let journalAt = 0;
  const flags =
    (over ? constants.O_WRONLY | constants.O_DIRECT : DIRECT_IO_CREATE_FLAGS) |
    (dsync ? constants.O_DSYNC : 0);
  const handles = await Promise.all(copyPaths.map((copy) => open(copy, flags, 0o644)));
  /** Writes of the copy that lost a hedged race, still running. */
  const stragglers: Promise<unknown>[] = [];
  const maxWrites = pattern === 'serial' ? 1 : 2;
  const sync = !dsync;
  const skip = Math.floor(RATE * WARMUP_SECONDS);
  const latencies: number[] = [];
  const staging = [allocAligned(64 << 20).fill(7), allocAligned(64 << 20).fill(7)];
  let queued: number[] = [];
  let offset = 0;
  let inFlight = 0;
  let groups = 0;
  let previous: Promise<void> = Promise.resolve();
  let failure: Error | undefined;
  const start = performance.now();

  const flush = async (records: number[]) => {
    const length = alignUp(records.length * SIZE);
    const at = offset;
    offset += length;
    const buf = staging[groups++ % 2]!;
    const prior = previous;
    let settled!: () => void;
    previous = new Promise((resolve) => {
      settled = resolve;
    });
    try {
      // One group per write: a larger backlog than the staging memory goes in pieces.
      const refs = 76 * records.length;
      const jot = jh?.write(Buffer.alloc(refs), 0, refs, journalAt);
      journalAt += refs;
      const writeAll = async (fh: (typeof handles)[number]) => {
        for (let o = 0; o < length; o += buf.length) {
          await fh.write(buf, 0, Math.min(buf.length, length - o), at + o);
        }
        if (sync) await fh.datasync();
      };
      const copies = handles.map(writeAll);
      stragglers.push(...copies);
      await Promise.any(copies);
      await jot;
    } catch (err) {
      failure ??= err as Error;
    }
    await prior;
    const now = performance.now();
    for (const k of records) if (k >= skip) latencies.push(now - (start + (k / RATE) * 1000));
    inFlight--;
    settled();
    kick();
  };
  const kick = () => {
    if (queued.length === 0 || inFlight >= maxWrites) return;
    inFlight++;
    const records = queued;
    queued = [];
    void flush(records);
  };

  let sent = 0;
  while (sent < total) {
    // Record k arrives at k / RATE s: every record whose time has come.
    const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * RATE) + 1);
    if (due === sent) {
      await pace();
      continue;
    }
    for (let k = sent; k < due; k++) queued.push(k);
    sent = due;
    kick();
  }
  while (latencies.length < total - skip && !failure) await pace();
  for (const r of await Promise.allSettled(stragglers)) {
    if (r.status === 'rejected') failure ??= r.reason as Error;
  }
  for (const fh of handles) await fh.close();
  await jh?.close();
  for (const copy of copyPaths) await rm(copy);
  await rm(journalPath, { force: true });
  if (failure) throw failure;
  return latencies.sort((a, b) => a - b);
}

const q = (xs: number[], p: number) => xs[Math.min(xs.length - 1, Math.floor(p * xs.length))] ?? 0;

const dir = await mkdtemp(join(process.env.BENCH_DIR ?? tmpdir(), 'sluice-disk-latency-'));
try {
  console.log(
    `${SIZE} B records at ${RATE}/s (${((SIZE * RATE) / 1e6).toFixed(1)} MB/s), ${SECONDS} s after ${WARMUP_SECONDS} s warm-up, ${RUNS} interleaved runs`,
  );
  console.log('| pattern | run | p50 ms | p90 ms | p99 ms | max ms |');
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (let r = 1; r <= RUNS; r++) {
    for (const pattern of PATTERNS) {
      const l = await run(dir, pattern);
      const f = (n: number) => n.toFixed(2);
      console.log(
        `| ${pattern} | ${r} | ${f(q(l, 0.5))} | ${f(q(l, 0.9))} | ${f(q(l, 0.99))} | ${f(l[l.length - 1] ?? 0)} |`,
      );
    }
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
