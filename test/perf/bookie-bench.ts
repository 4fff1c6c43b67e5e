/**
 * Bookie benchmark (not a test): adds/s and MB/s with fsync on for 1 KiB,
 * 16 KiB and 128 KiB entries, beside the raw bound of the same disk (plain
 * write + fdatasync of the bookie's own average group size) measured in the
 * same run, plus p50/p99 add latency at half the measured max rate (from
 * the scheduled send time, after a 2 s warm-up at that rate; what came due
 * goes out every `PACE_MS`), beside the same quantiles for the disk alone
 * at that rate (`rawPaced`: the journal's durable write per `PACE_MS` and
 * the entry log's bytes, written as the
 * bookie writes them), the floor a bookie on this disk can reach, and how
 * often and how long the bookie's event loop stopped for garbage collection
 * meanwhile (from its /metrics). For entries written once, a third phase
 * runs at the same rate after the ledgers of the first two are deleted and
 * the bookie's garbage collection has kept their entry logs as spares
 * (`entryLogSpareBytes`): the direct log then writes over old blocks, as on
 * a bookie whose deleted ledgers' space is reused; beside it the disk alone
 * the same way, over a file written beforehand.
 *
 *   npx turbo run build && node --import=tsx test/perf/bookie-bench.ts [seconds-per-run]
 *
 * `BENCH_SIZES=1024,16384` runs only those entry sizes (bytes);
 * `BENCH_TIMELINE=1` prints each paced phase in twenty slices
 * (p50/p99/max ms each), to see when in the phase its slow adds fell. The bookie
 * takes its settings from `SLUICE_BOOKIE_*` in the environment, e.g.
 * `SLUICE_BOOKIE_ENTRY_LOG_SYNC_BYTES=8MiB`.
 *
 * The bookie is a real `sluice bookie` process (compiled, from dist/) with
 * its metadata on an etcd the bench starts, so the load generator does not
 * share its event loop; byte counts come from its /metrics. Runs in a temp dir under
 * $BENCH_DIR or the OS temp dir (same disk as the work tree here); prints a
 * Markdown table.
 */
import { constants } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseSize } from '@sluice/common';
import { openMetadataStore } from '@sluice/metadata';
import { type DecodedAddEntriesResponse, EncodedEntry } from '@sluice/proto';
import {
  alignDown,
  alignUp,
  allocAligned,
  DIRECT_IO_CREATE_FLAGS,
  directIoWorks,
} from '../../packages/bookie/src/direct-io.js';
import { AddChannelConnection } from '../../packages/ledger/src/add-channel-connection.js';
import type { AddStream, AddStreamOpener } from '../../packages/ledger/src/add-stream.js';
import { AddStreamConnection } from '../../packages/ledger/src/http2-add-stream.js';
import { BookieProcess, bookieMetric, bookiePorts, testEntry } from '../support/bookie-process.js';
import { EtcdServer } from '../support/etcd.js';

const SECONDS = Number(process.argv[2] ?? 5);
const SIZES = process.env.BENCH_SIZES
  ? process.env.BENCH_SIZES.split(',').map(Number)
  : [1024, 16 * 1024, 128 * 1024];
const IN_FLIGHT_BYTES = 16 * 1024 * 1024;
/** The bookie's `entryLogSyncBytes` (its default unless set in the environment). */
const ENTRY_LOG_SYNC_BYTES = parseSize(process.env.SLUICE_BOOKIE_ENTRY_LOG_SYNC_BYTES ?? '256KiB');
/** An ADD_REF journal record: header + location. */
const REF_RECORD_BYTES = 52 + 24;

/**
 * The paced phases send what came due, then wait for the next add's
 * scheduled time, at most this many ms. Node's timers fire on whole
 * milliseconds, on a busy loop 1–2 ms apart: ticking on `setTimeout(1)`,
 * the first entry of each tick went out 1.2 ms (median) and 2.2 ms (p99)
 * after its scheduled time, and that wait, the load generator's and not the
 * bookie's, counted in every latency. The wait blocks the thread (a futex,
 * no spinning), then lets the event loop run what arrived meanwhile.
 */
const PACE_MS = 0.25;
/**
 * A futex wait here ends this much later than asked (the kernel's timer
 * slack and the wake-up): 0.25 ms asked took 0.345 (p50) on an idle
 * machine. The wait asks that much less; a shorter wait is not made at all.
 */
const WAKE_LATE_MS = 0.09;
const paceCell = new Int32Array(new SharedArrayBuffer(4));
/**
 * Wait until about `nextAt` (a `performance.now()` time; at most `PACE_MS`),
 * then run `next` after the event loop has handled its I/O. Waiting a fixed
 * 0.25 ms, the 128 KiB phases sent adds 0.47 ms (p50) after their time.
 */
function afterPace(next: () => void, nextAt: number): void {
  const wait = Math.min(PACE_MS, nextAt - performance.now() - WAKE_LATE_MS);
  if (wait > 0.02) Atomics.wait(paceCell, 0, 0, wait);
  setImmediate(next);
}

/** How adds reach the bookie: its add channel (what the ledger client uses), or `grpc` (HTTP/2). */
const TRANSPORT = process.env.BENCH_ADD_TRANSPORT ?? 'channel';

/**
 * An AddEntries stream as the ledger client drives it (`AddStream`:
 * each entry's head encoded once, requests written as their parts, no
 * protobufjs and no grpc-js copy): the load generator shares the 2 cores
 * with the bookie, and at 1 KiB a generic encode of every entry was a large
 * share of its CPU and garbage. The bookie sees the same bytes either way.
 * `done` settles once the bookie has ended the call after `end()`, and rejects if the stream broke.
 */
function addStream(
  connection: AddStreamOpener,
  onResults: (res: DecodedAddEntriesResponse) => void,
): { stream: AddStream; done: Promise<void> } {
  let stream!: AddStream;
  const done = new Promise<void>((resolve, reject) => {
    stream = connection.open({ response: onResults, broken: reject, ended: resolve });
  });
  return { stream, done };
}

/** Entry `entryId` of the bench's ledger, encoded for the wire around the one shared payload. */
function wireEntry(proto: ReturnType<typeof testEntry>, entryId: number): EncodedEntry {
  return new EncodedEntry(
    { ledgerId: proto.ledgerId, entryId, lac: -1, crc32c: proto.crc32c, ledgerLength: 0 },
    proto.payload,
  );
}

const metricValue = bookieMetric;

/** Cumulative bucket counts of a histogram (`le` in seconds → count) from /metrics. */
async function histogramBuckets(bookie: BookieProcess, name: string): Promise<Map<number, number>> {
  const text = await (await fetch(`http://127.0.0.1:${bookie.httpPort}/metrics`)).text();
  const out = new Map<number, number>();
  for (const m of text.matchAll(new RegExp(`^${name}_bucket\\{le="([^"]+)"\\} (\\S+)$`, 'gm'))) {
    out.set(m[1] === '+Inf' ? Number.POSITIVE_INFINITY : Number(m[1]), Number(m[2]));
  }
  return out;
}

/** Garbage collections of the bookie process so far (every kind) and the time its event loop spent stopped in them. */
async function gcTotals(bookie: BookieProcess): Promise<{ count: number; seconds: number }> {
  return {
    count: await metricValue(bookie, 'sluice_process_nodejs_gc_duration_seconds', '_count'),
    seconds: await metricValue(bookie, 'sluice_process_nodejs_gc_duration_seconds', '_sum'),
  };
}

/** Upper bound (ms) of the bucket holding quantile `q` of the observations between two snapshots. */
function bucketQuantileMs(before: Map<number, number>, after: Map<number, number>, q: number): number {
  const les = [...after.keys()].sort((a, b) => a - b);
  const total = (after.get(Number.POSITIVE_INFINITY) ?? 0) - (before.get(Number.POSITIVE_INFINITY) ?? 0);
  for (const le of les) {
    if ((after.get(le) ?? 0) - (before.get(le) ?? 0) >= q * total) return le * 1000;
  }
  return Number.POSITIVE_INFINITY;
}

const PHASE_HISTOGRAMS = [
  ['add', 'sluice_bookie_add_latency_seconds'],
  ['journal write', 'sluice_bookie_journal_fsync_seconds'],
  ['direct log write', 'sluice_bookie_direct_log_write_seconds'],
  ['entry log sync', 'sluice_bookie_entry_log_sync_seconds'],
  ['checkpoint', 'sluice_bookie_checkpoint_seconds'],
] as const;

/**
 * What the bookie saw during a phase, for the log (stderr): p50 / p99 (to
 * the histogram bucket) of its adds, journal writes, entry-log syncs and
 * checkpoints, and its garbage-collection pauses. Call once before the
 * phase; the returned function prints the line after it.
 */
async function phaseInside(bookie: BookieProcess, label: string): Promise<() => Promise<void>> {
  const before = await Promise.all(PHASE_HISTOGRAMS.map(([, name]) => histogramBuckets(bookie, name)));
  const gc0 = await gcTotals(bookie);
  const compacted0 = await metricValue(bookie, 'sluice_bookie_compacted_entry_logs_total');
  const t0 = performance.now();
  return async () => {
    const secs = (performance.now() - t0) / 1000;
    // prom-client resets its event-loop delay histogram at every scrape, so
    // the first scrape after the phase has the phase's longest stop.
    const loopMax = await metricValue(bookie, 'sluice_process_nodejs_eventloop_lag_max_seconds');
    const after = await Promise.all(PHASE_HISTOGRAMS.map(([, name]) => histogramBuckets(bookie, name)));
    const gc1 = await gcTotals(bookie);
    const parts = PHASE_HISTOGRAMS.map(([what], i) => {
      const n =
        (after[i]!.get(Number.POSITIVE_INFINITY) ?? 0) - (before[i]!.get(Number.POSITIVE_INFINITY) ?? 0);
      return n === 0
        ? `${what} none`
        : `${what} ${n} ≤ ${bucketQuantileMs(before[i]!, after[i]!, 0.5)} / ≤ ${bucketQuantileMs(before[i]!, after[i]!, 0.99)} ms`;
    });
    const gc = `GC ${((gc1.count - gc0.count) / secs).toFixed(0)}/s, ${(((gc1.seconds - gc0.seconds) / secs) * 100).toFixed(1)}%`;
    parts.push(`longest event-loop stop ${(loopMax * 1000).toFixed(0)} ms (10 ms resolution)`);
    const compacted = (await metricValue(bookie, 'sluice_bookie_compacted_entry_logs_total')) - compacted0;
    parts.push(`${compacted} entry logs compacted`);
    process.stderr.write(`[bench] ${label}, inside the bookie: ${parts.join('; ')}; ${gc}\n`);
  };
}

/** Wait until the background flusher has caught up (entry log bytes stop growing). */
async function entryLogSettled(bookie: BookieProcess): Promise<number> {
  let last = -1;
  for (;;) {
    const now = await metricValue(bookie, 'sluice_bookie_entry_log_bytes_total');
    if (now === last) return now;
    last = now;
    await sleep(500);
  }
}

/** Saturate one pipelined stream for `seconds`; returns acked entries. */
async function saturate(
  connection: AddStreamOpener,
  ledgerId: number,
  size: number,
  seconds: number,
): Promise<number> {
  const proto = testEntry(ledgerId, 0, size);
  const perBatch = Math.max(1, Math.floor((256 * 1024) / size));
  const maxInFlight = Math.max(perBatch, Math.floor(IN_FLIGHT_BYTES / size));
  const deadline = Date.now() + seconds * 1000;
  let next = 0;
  let inFlight = 0;
  let acked = 0;
  let ending = false;
  let blocked = false;
  let failure: Error | undefined;
  const { stream, done } = addStream(connection, (res) => {
    for (const r of res.results) {
      if (r.status !== 'ENTRY_STATUS_OK') failure ??= new Error(`add failed: ${r.status} ${r.message}`);
      inFlight--;
      acked++;
    }
    pump();
  });
  const pump = () => {
    while (!ending && !blocked && inFlight + perBatch <= maxInFlight) {
      if (Date.now() >= deadline || failure) {
        ending = true;
        break;
      }
      const entries = Array.from({ length: perBatch }, () => wireEntry(proto, next++));
      inFlight += entries.length;
      if (!stream.write({ entries, recovery: false })) {
        // As the ledger client does: nothing more until HTTP/2 has sent what it holds.
        blocked = true;
        stream.onDrain(() => {
          blocked = false;
          pump();
        });
      }
    }
    if (ending && inFlight === 0) stream.end();
  };
  pump();
  await done;
  if (failure) throw failure;
  return acked;
}

/**
 * Send at a fixed rate for `warmup` + `seconds`; returns the latencies (ms,
 * from the scheduled send time) of the adds sent after the warm-up, which
 * lets both processes' JIT and the new stream settle first.
 */
async function paced(
  label: string,
  connection: AddStreamOpener,
  ledgerId: number,
  size: number,
  rate: number,
  seconds: number,
  warmup: number,
): Promise<number[]> {
  const proto = testEntry(ledgerId, 0, size);
  const skip = Math.floor(rate * warmup);
  const total = skip + Math.floor(rate * seconds);
  // Typed arrays sized up front: growing JS arrays of hundreds of thousands
  // of numbers made this process run full collections mid-measurement.
  const scheduledAt = new Float64Array(total);
  const latencies = new Float64Array(total - skip);
  // How late the load generator itself sent each measured add: its share of every latency.
  const lag = new Float64Array(total - skip);
  let measured = 0;
  let next = 0;
  let settled = 0;
  let failure: Error | undefined;
  const { stream, done } = addStream(connection, (res) => {
    const now = performance.now();
    for (const r of res.results) {
      if (r.status !== 'ENTRY_STATUS_OK') failure ??= new Error(`add failed: ${r.status} ${r.message}`);
      if (r.entryId >= skip) latencies[measured++] = now - scheduledAt[r.entryId]!;
      settled++;
    }
    if (settled === total) stream.end();
  });
  // The load generator's own event loop: a stop there delays the receipts it stamps.
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  const start = performance.now();
  // After a stall many adds are due at once: at most 1 MiB per message
  // (gRPC refuses messages over 16 MiB).
  const perMessage = Math.max(1, Math.floor((1024 * 1024) / size));
  const tick = () => {
    const elapsed = (performance.now() - start) / 1000;
    // Entry k is due at k / rate s: every entry whose time has come.
    const due = Math.min(total, Math.floor(elapsed * rate) + 1);
    while (next < due) {
      const entries: EncodedEntry[] = [];
      while (next < due && entries.length < perMessage) {
        scheduledAt[next] = start + (next / rate) * 1000;
        if (next >= skip) lag[next - skip] = performance.now() - scheduledAt[next]!;
        entries.push(wireEntry(proto, next++));
      }
      stream.write({ entries, recovery: false });
    }
    if (next < total) afterPace(tick, start + (next / rate) * 1000);
  };
  tick();
  await done;
  loop.disable();
  if (failure) throw failure;
  const lags = Array.from(lag);
  process.stderr.write(
    `[bench] ${label}: the load generator sent adds ${pct(lags, 50).toFixed(2)} / ${pct(lags, 99).toFixed(2)} ms (p50 / p99) after their scheduled time; its event loop stopped ${(loop.percentile(99) / 1e6).toFixed(1)} / ${(loop.max / 1e6).toFixed(1)} ms (p99 / max)\n`,
  );
  return Array.from(latencies.subarray(0, measured));
}

/**
 * Plain write + fdatasync of `groupBytes` per group for `seconds`: the disk's
 * bound. `direct`: the same with O_DIRECT from page-aligned memory, as the
 * bookie writes its entry logs, without the page cache's copy.
 */
async function rawBound(dir: string, groupBytes: number, seconds: number, direct = false): Promise<number> {
  const size = direct ? alignUp(groupBytes) : groupBytes;
  const fh = await open(join(dir, 'raw.bin'), direct ? DIRECT_IO_CREATE_FLAGS : 'w');
  const buf = direct ? allocAligned(size).subarray(0, size).fill(7) : Buffer.alloc(size, 7);
  const deadline = Date.now() + seconds * 1000;
  let written = 0;
  try {
    while (Date.now() < deadline) {
      await fh.write(buf, 0, buf.length, written);
      await fh.datasync();
      written += buf.length;
    }
  } finally {
    await fh.close();
    await rm(join(dir, 'raw.bin'));
  }
  return written / seconds;
}

/**
 * The disk alone at the paced phase's rate, for its latency floor, written
 * the way the bookie writes: every `PACE_MS` the bytes that arrived go to
 * one file opened with O_DSYNC, one write per group (the journal's share),
 * and are appended through the page cache to a second file fdatasynced in
 * the background every `ENTRY_LOG_SYNC_BYTES` (the entry log's share, as
 * the flusher syncs it). For entries the bookie writes once (`direct`), a
 * reference per entry goes to the first file while the bytes go to the
 * second side by side, with O_DIRECT in whole blocks from page-aligned
 * memory (the last partial block written again by the next group) and one
 * fdatasync per group, as the direct log does (buffered where the file
 * system refuses O_DIRECT). Returns each entry's time from its scheduled
 * arrival to its group being durable, in ms, after `warmup` seconds.
 */
async function rawPaced(
  dir: string,
  size: number,
  rate: number,
  seconds: number,
  warmup: number,
  direct: boolean,
  overWritten = false,
): Promise<number[]> {
  const dsync = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_DSYNC;
  const journal = await open(join(dir, 'raw-journal.bin'), dsync);
  const odirect = direct && (await directIoWorks(dir));
  const skip = Math.floor(rate * warmup);
  const total = skip + Math.floor(rate * seconds);
  const entryLogPath = join(dir, 'raw-entry-log.bin');
  if (overWritten) {
    // As a reused entry log: every block written (and synced) beforehand.
    const f = await open(entryLogPath, 'w');
    const block = Buffer.alloc(8 << 20, 3);
    const bytes = total * size + (64 << 20);
    for (let o = 0; o < bytes; o += block.length) await f.write(block, 0, block.length, o);
    await f.datasync();
    await f.close();
  }
  const entryLog = await open(
    entryLogPath,
    overWritten
      ? constants.O_WRONLY | (odirect ? constants.O_DIRECT : 0)
      : odirect
        ? DIRECT_IO_CREATE_FLAGS
        : 'w',
  );
  const latencies: number[] = [];
  const chunk = Buffer.alloc(Math.ceil(rate / 100) * size * 4, 7);
  // O_DIRECT staging: the groups' bytes plus the block they continue.
  let staging = odirect ? allocAligned(alignUp(chunk.length) + 4096).fill(7) : chunk;
  let background: Promise<void> = Promise.resolve();
  try {
    const start = performance.now();
    let sent = 0;
    let jOff = 0;
    let eOff = 0;
    let unsynced = 0;
    while (sent < total) {
      const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rate) + 1);
      if (due === sent) {
        await new Promise<void>((resolve) => afterPace(resolve, start + (sent / rate) * 1000));
        continue;
      }
      const bytes = (due - sent) * size;
      const buf = bytes <= chunk.length ? chunk.subarray(0, bytes) : Buffer.alloc(bytes, 7);
      if (direct) {
        const refs = (due - sent) * REF_RECORD_BYTES;
        const writeEntries = async () => {
          if (odirect) {
            const from = alignDown(eOff);
            const length = alignUp(eOff + bytes) - from;
            if (staging.length < length) staging = allocAligned(length).fill(7);
            await entryLog.write(staging, 0, length, from);
          } else {
            await entryLog.write(buf, 0, bytes, eOff);
          }
          await entryLog.datasync();
        };
        await Promise.all([journal.write(buf, 0, refs, jOff), writeEntries()]);
        jOff += refs;
        eOff += bytes;
      } else {
        await journal.write(buf, 0, bytes, jOff);
        jOff += bytes;
      }
      const done = performance.now();
      for (let k = sent; k < due; k++) if (k >= skip) latencies.push(done - (start + (k / rate) * 1000));
      sent = due;
      if (direct) continue;
      await entryLog.write(buf, 0, bytes, eOff);
      eOff += bytes;
      unsynced += bytes;
      if (unsynced >= ENTRY_LOG_SYNC_BYTES) {
        unsynced = 0;
        background = background.then(() => entryLog.datasync());
      }
    }
    await background;
  } finally {
    await journal.close();
    await entryLog.close();
    await rm(join(dir, 'raw-journal.bin'));
    await rm(join(dir, 'raw-entry-log.bin'));
  }
  return latencies;
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0;
};
const mb = (bytes: number) => (bytes / (1024 * 1024)).toFixed(1);

/** With `BENCH_TIMELINE`: a paced phase's latencies in twenty slices, p50/p99/max ms each. */
function timeline(label: string, xs: number[]): void {
  if (!process.env.BENCH_TIMELINE) return;
  const n = 20;
  const per = Math.ceil(xs.length / n);
  const parts: string[] = [];
  for (let k = 0; k < n; k++) {
    const c = xs.slice(k * per, (k + 1) * per);
    if (c.length)
      parts.push(`${pct(c, 50).toFixed(1)}/${pct(c, 99).toFixed(1)}/${Math.max(...c).toFixed(0)}`);
  }
  process.stderr.write(`[timeline] ${label}: ${parts.join(' ')}\n`);
}

/**
 * Until every spare-making round of garbage collection is done: the count of
 * spare entry logs has stopped changing for a second and the logs beyond the
 * spare budget are freed (`fileDeleteRate`), or 90 s passed.
 */
async function sparesSettled(bookie: BookieProcess): Promise<number> {
  let last = -1;
  for (const deadline = Date.now() + 90_000; Date.now() < deadline; ) {
    const now = await metricValue(bookie, 'sluice_bookie_entry_log_spares');
    const deleting = await metricValue(bookie, 'sluice_bookie_deleting_files');
    if (now === last && now > 0 && deleting === 0) return now;
    last = now;
    await sleep(1000);
  }
  return last;
}

const root = await mkdtemp(join(process.env.BENCH_DIR ?? tmpdir(), 'sluice-bookie-bench-'));
// Metadata on etcd, so that the bench can delete a ledger and let the
// bookie's garbage collection turn its entry logs into spares.
const etcd = await EtcdServer.start({ dataDir: join(root, 'etcd') });
const rows: string[] = [];
try {
  for (const [i, size] of SIZES.entries()) {
    const dir = join(root, `run-${size}`);
    const metadataUrl = `etcd://${etcd.endpoint}/bench-${size}`;
    const metadata = await openMetadataStore(metadataUrl);
    // Garbage collection keeps ledgers named in metadata.
    const ledgers = { max: 100 + i, paced: 200 + i, reused: 300 + i };
    for (const id of Object.values(ledgers)) await metadata.put(`ledgers/${id}`, Buffer.from('bench'));
    const bookie = await BookieProcess.start({
      metadata: metadataUrl,
      dataDir: dir,
      ...(await bookiePorts()),
      env: {
        DISK_USAGE_THRESHOLD: '1',
        DISK_USAGE_LWM_THRESHOLD: '0.99',
        GC_INTERVAL_MS: '500',
        GC_GRACE_PERIOD_MS: '0',
        // Every log of the max-rate phase is kept for reuse, so that the
        // last paced phase writes over old blocks only.
        ENTRY_LOG_SPARE_BYTES: String(2 ** 40),
      },
    });
    const connection =
      TRANSPORT === 'grpc'
        ? new AddStreamConnection('bench', bookie.address)
        : new AddChannelConnection('bench', bookie.addAddress!);
    try {
      const j0 = await metricValue(bookie, 'sluice_bookie_journal_bytes_total');
      const e0 = await metricValue(bookie, 'sluice_bookie_entry_log_bytes_total');
      const t0 = process.hrtime.bigint();
      const acked = await saturate(connection, ledgers.max, size, SECONDS);
      const secs = Number(process.hrtime.bigint() - t0) / 1e9;
      const entryLog = (await entryLogSettled(bookie)) - e0;
      const journal = (await metricValue(bookie, 'sluice_bookie_journal_bytes_total')) - j0;
      const groups = await metricValue(bookie, 'sluice_bookie_journal_group_bytes', '_count');
      const groupSum = await metricValue(bookie, 'sluice_bookie_journal_group_bytes', '_sum');
      // The raw bound writes groups the size of those that carried most of
      // the payload: journal groups, or for entries written once (the bookie
      // does that while its journal is backlogged) the entry log's, one
      // fdatasync per group.
      const once = await metricValue(bookie, 'sluice_bookie_entries_written_once_total');
      const direct = once > acked / 2;
      const syncs = await metricValue(bookie, 'sluice_bookie_entry_log_sync_seconds', '_count');
      const avgGroup = Math.max(
        4096,
        Math.round(direct ? entryLog / Math.max(1, syncs) : groupSum / Math.max(1, groups)),
      );
      const payload = acked * size;
      const h0 = await histogramBuckets(bookie, 'sluice_bookie_add_latency_seconds');
      const once0 = await metricValue(bookie, 'sluice_bookie_entries_written_once_total');
      const gc0 = await gcTotals(bookie);
      const freeing = async () => mb(await metricValue(bookie, 'sluice_bookie_deleting_bytes'));
      const freeingAtStart = await freeing();
      const pacedStart = performance.now();
      const insidePaced = await phaseInside(bookie, `${size / 1024} KiB paced`);
      const latencies = await paced(
        `${size / 1024} KiB paced`,
        connection,
        ledgers.paced,
        size,
        acked / secs / 2,
        SECONDS,
        2,
      );
      await insidePaced();
      timeline(`${size / 1024} KiB paced`, latencies);
      const pacedSecs = (performance.now() - pacedStart) / 1000;
      // Deleted files being freed (fileDeleteRate) while paced compete for the disk.
      process.stderr.write(
        `[bench] ${size / 1024} KiB paced: ${freeingAtStart} MB of deleted files being freed at the start, ${await freeing()} MB at the end\n`,
      );
      const gc1 = await gcTotals(bookie);
      // The bookie's event loop stopped for garbage collection while paced (warm-up included).
      const gcPaused = `${((gc1.count - gc0.count) / pacedSecs).toFixed(0)}/s, ${(((gc1.seconds - gc0.seconds) / pacedSecs) * 100).toFixed(1)}%`;
      const h1 = await histogramBuckets(bookie, 'sluice_bookie_add_latency_seconds');
      // Arrival → durable inside the bookie (warm-up included), to the bucket.
      const inside = `≤ ${bucketQuantileMs(h0, h1, 0.5)} / ≤ ${bucketQuantileMs(h0, h1, 0.99)}`;
      // The floor models the path most paced adds took.
      const pacedOnce = (await metricValue(bookie, 'sluice_bookie_entries_written_once_total')) - once0;
      const direct2 = pacedOnce > latencies.length / 2;
      // The same rate again, once the logs of the first two phases are
      // deleted and kept as spares: entries written once then go over old
      // blocks, as on a bookie whose deleted ledgers' space is reused.
      let reused: number[] = [];
      let spares = 0;
      if (direct2) {
        await metadata.delete(`ledgers/${ledgers.max}`);
        await metadata.delete(`ledgers/${ledgers.paced}`);
        spares = await sparesSettled(bookie);
        const insideReused = await phaseInside(bookie, `${size / 1024} KiB paced over spares`);
        reused = await paced(
          `${size / 1024} KiB paced over spares`,
          connection,
          ledgers.reused,
          size,
          acked / secs / 2,
          SECONDS,
          2,
        );
        await insideReused();
        timeline(`${size / 1024} KiB paced over spares`, reused);
      }
      // The disk alone, with the bookie stopped: its write-back of what it
      // wrote through the page cache would otherwise run beside the raw
      // bound and lower it.
      connection.close();
      await bookie.stop();
      const raw = await rawBound(dir, avgGroup, SECONDS);
      const rawDirect = await rawBound(dir, avgGroup, SECONDS, true);
      const floor = await rawPaced(dir, size, acked / secs / 2, SECONDS, 2, direct2);
      const floorOver = direct2 ? await rawPaced(dir, size, acked / secs / 2, SECONDS, 2, true, true) : [];
      const q = (xs: number[]) =>
        xs.length > 0 ? `${pct(xs, 50).toFixed(2)} / ${pct(xs, 99).toFixed(2)}` : 'n/a (not written once)';
      const written = (journal + entryLog) / secs;
      rows.push(
        `| ${size / 1024} KiB | ${Math.round(acked / secs)} | ${mb(payload / secs)} | ${mb(written)} | ${((journal + entryLog) / payload).toFixed(2)} | ${mb(raw)} (${(avgGroup / 1024).toFixed(0)} KiB groups) | ${((written / raw) * 100).toFixed(0)}% | ${mb(rawDirect)} | ${((written / rawDirect) * 100).toFixed(0)}% | ${pct(latencies, 50).toFixed(2)} / ${pct(latencies, 99).toFixed(2)} | ${inside} | ${gcPaused} | ${pct(floor, 50).toFixed(2)} / ${pct(floor, 99).toFixed(2)} | ${q(reused)}${spares > 0 ? ` (${spares} spares)` : ''} | ${q(floorOver)} |`,
      );
      process.stderr.write(`${rows.at(-1)}\n`);
    } finally {
      connection.close();
      await bookie.stop();
      await metadata.close();
    }
  }
} finally {
  await etcd.stop();
  await rm(root, { recursive: true, force: true });
}
console.log(`adds over ${TRANSPORT === 'grpc' ? 'gRPC (HTTP/2)' : 'the add channel'}`);
console.log(
  '| entry | adds/s | payload MB/s | bytes written MB/s (journal + entry log) | bytes written per payload byte | raw write+fdatasync MB/s | bookie / raw | raw O_DIRECT write+fdatasync MB/s | bookie / raw O_DIRECT | p50 / p99 ms at half max rate | same inside the bookie (histogram bucket) | bookie GC pauses while paced: per second, share of the time | the disk alone at that rate: p50 / p99 ms | p50 / p99 ms at half max rate over reused entry logs | the disk alone at that rate over written blocks: p50 / p99 ms |',
);
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
for (const r of rows) console.log(r);
