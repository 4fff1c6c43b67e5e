/**
 * Bookie benchmark (not a test): adds/s and MB/s with fsync on for 1 KiB,
 * 16 KiB and 128 KiB entries, beside the raw bound of the same disk (plain
 * write + fdatasync of the bookie's own average group size) measured in the
 * same run, plus p99 add latency at half the measured max rate.
 *
 *   node --import=tsx --conditions=sluice-src test/perf/bookie-bench.ts [seconds-per-run]
 *
 * Runs in a temp dir under $BENCH_DIR or the OS temp dir (same disk as the
 * work tree here), with an embedded metadata store; prints a Markdown table.
 */
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Bookie } from '@sluice/bookie';
import type { AddEntriesResponse__Output, BookieServiceClient } from '@sluice/proto';
import { bookieClient, testEntry } from '../support/bookie-process.js';

const SECONDS = Number(process.argv[2] ?? 5);
const SIZES = [1024, 16 * 1024, 128 * 1024];
const IN_FLIGHT_BYTES = 16 * 1024 * 1024;

async function metricValue(
  bookie: Bookie,
  name: string,
  field: 'sum' | 'count' | 'value' = 'value',
): Promise<number> {
  const m = await bookie.registry.getSingleMetric(name)!.get();
  if (field === 'value') return m.values.reduce((a, v) => a + v.value, 0);
  return (
    m.values.find((v) => ((v as { metricName?: string }).metricName ?? '').endsWith(`_${field}`))?.value ?? 0
  );
}

/** Saturate one pipelined stream for `seconds`; returns acked entries. */
function saturate(
  client: BookieServiceClient,
  ledgerId: number,
  size: number,
  seconds: number,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const proto = testEntry(ledgerId, 0, size);
    const call = client.addEntries();
    const perBatch = Math.max(1, Math.floor((256 * 1024) / size));
    const maxInFlight = Math.max(perBatch, Math.floor(IN_FLIGHT_BYTES / size));
    const deadline = Date.now() + seconds * 1000;
    let next = 0;
    let inFlight = 0;
    let acked = 0;
    let ending = false;
    const pump = () => {
      while (!ending && inFlight + perBatch <= maxInFlight) {
        if (Date.now() >= deadline) {
          ending = true;
          break;
        }
        const entries = Array.from({ length: perBatch }, () => ({ ...proto, entryId: next++ }));
        inFlight += entries.length;
        call.write({ entries });
      }
      if (ending && inFlight === 0) call.end();
    };
    call.on('data', (res: AddEntriesResponse__Output) => {
      for (const r of res.results) {
        if (r.status !== 'ENTRY_STATUS_OK') {
          reject(new Error(`add failed: ${r.status} ${r.message}`));
          return;
        }
        inFlight--;
        acked++;
      }
      pump();
    });
    call.on('error', reject);
    call.on('end', () => resolve(acked));
    pump();
  });
}

/** Send at a fixed rate; returns per-add latencies in ms. */
function paced(
  client: BookieServiceClient,
  ledgerId: number,
  size: number,
  rate: number,
  seconds: number,
): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const proto = testEntry(ledgerId, 0, size);
    const call = client.addEntries();
    const sentAt = new Map<number, bigint>();
    const latencies: number[] = [];
    const total = Math.floor(rate * seconds);
    const start = process.hrtime.bigint();
    let next = 0;
    const tick = () => {
      const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
      const due = Math.min(total, Math.floor(elapsed * rate));
      const entries = [];
      while (next < due) {
        sentAt.set(next, process.hrtime.bigint());
        entries.push({ ...proto, entryId: next++ });
      }
      if (entries.length > 0) call.write({ entries });
      if (next < total) setTimeout(tick, 1);
    };
    call.on('data', (res: AddEntriesResponse__Output) => {
      const now = process.hrtime.bigint();
      for (const r of res.results) {
        latencies.push(Number(now - sentAt.get(r.entryId)!) / 1e6);
        sentAt.delete(r.entryId);
      }
      if (latencies.length === total) call.end();
    });
    call.on('error', reject);
    call.on('end', () => resolve(latencies));
    tick();
  });
}

/** Plain write + fdatasync of `groupBytes` per group for `seconds`: the disk's bound. */
async function rawBound(dir: string, groupBytes: number, seconds: number): Promise<number> {
  const fh = await open(join(dir, 'raw.bin'), 'w');
  const buf = Buffer.alloc(groupBytes, 7);
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

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0;
};
const mb = (bytes: number) => (bytes / (1024 * 1024)).toFixed(1);

const root = await mkdtemp(join(process.env.BENCH_DIR ?? tmpdir(), 'sluice-bookie-bench-'));
const rows: string[] = [];
try {
  for (const [i, size] of SIZES.entries()) {
    const dir = join(root, `run-${size}`);
    const bookie = new Bookie({
      config: {
        metadata: `embedded://${join(dir, 'metadata')}`,
        dataDir: dir,
        port: 0,
        httpPort: -1,
        bindHost: '127.0.0.1',
        diskUsageThreshold: 1,
        diskUsageLwmThreshold: 0.99,
      },
    });
    await bookie.start();
    const client = bookieClient(`127.0.0.1:${bookie.port}`);
    try {
      const j0 = await metricValue(bookie, 'sluice_bookie_journal_bytes_total');
      const e0 = await metricValue(bookie, 'sluice_bookie_entry_log_bytes_total');
      const t0 = process.hrtime.bigint();
      const acked = await saturate(client, 100 + i, size, SECONDS);
      await bookie.storage.checkpoint();
      const secs = Number(process.hrtime.bigint() - t0) / 1e9;
      const journal = (await metricValue(bookie, 'sluice_bookie_journal_bytes_total')) - j0;
      const entryLog = (await metricValue(bookie, 'sluice_bookie_entry_log_bytes_total')) - e0;
      const groups = await metricValue(bookie, 'sluice_bookie_journal_group_bytes', 'count');
      const groupSum = await metricValue(bookie, 'sluice_bookie_journal_group_bytes', 'sum');
      const avgGroup = Math.max(4096, Math.round(groupSum / Math.max(1, groups)));
      const payload = acked * size;
      const latencies = await paced(client, 200 + i, size, acked / secs / 2, Math.min(3, SECONDS));
      const raw = await rawBound(dir, avgGroup, SECONDS);
      const written = (journal + entryLog) / secs;
      rows.push(
        `| ${size / 1024} KiB | ${Math.round(acked / secs)} | ${mb(payload / secs)} | ${mb(written)} | ${((journal + entryLog) / payload).toFixed(2)} | ${mb(raw)} (${(avgGroup / 1024).toFixed(0)} KiB groups) | ${((written / raw) * 100).toFixed(0)}% | ${pct(latencies, 50).toFixed(2)} / ${pct(latencies, 99).toFixed(2)} |`,
      );
      process.stderr.write(`${rows.at(-1)}\n`);
    } finally {
      client.close();
      await bookie.stop();
    }
  }
} finally {
  await rm(root, { recursive: true, force: true });
}
console.log(
  '| entry | adds/s | payload MB/s | bytes written MB/s (journal + entry log) | bytes written per payload byte | raw write+fdatasync MB/s | bookie / raw | p50 / p99 ms at half max rate |',
);
console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
for (const r of rows) console.log(r);
