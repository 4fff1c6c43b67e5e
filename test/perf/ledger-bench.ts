/**
 * Ledger add throughput against 3 real bookie processes on this machine,
 * for (E, Qw, Qa) = (3,3,2) and (3,2,2) and entries of 1, 16 and 128 KiB,
 * beside the bound the disk sets: every byte is written Qw times to the one
 * local disk (each bookie's journal, fdatasynced), so the ledger cannot go
 * faster than (sequential fdatasync'd write throughput) / Qw.
 *
 *   npx turbo run build --output-logs=errors-only
 *   node --import=tsx --conditions=sluice-src test/perf/ledger-bench.ts [--seconds 5] [--json]
 */
import { closeSync, fdatasyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createLogger } from '@sluice/common';
import { BookKeeperClient } from '@sluice/ledger';
import { openMetadataStore } from '@sluice/metadata';
import { BookieProcess, bookiePorts } from '../support/bookie-process.js';
import { EtcdServer } from '../support/etcd.js';
import { waitFor } from '../support/ports.js';

const { values } = parseArgs({
  options: { seconds: { type: 'string', default: '5' }, json: { type: 'boolean', default: false } },
});
const SECONDS = Number(values.seconds);
const SIZES = [1024, 16 * 1024, 128 * 1024];
const QUORUMS: [number, number, number][] = [
  [3, 3, 2],
  [3, 2, 2],
];

/** Sequential writes in 512 KiB groups, one fdatasync per group — what a journal group commit does. */
function diskBound(dir: string): number {
  const path = join(dir, 'disk-bound.bin');
  const chunk = Buffer.alloc(512 * 1024, 7);
  const fd = openSync(path, 'w');
  const started = process.hrtime.bigint();
  let bytes = 0;
  try {
    while (Number(process.hrtime.bigint() - started) / 1e9 < Math.min(3, SECONDS)) {
      writeSync(fd, chunk);
      fdatasyncSync(fd);
      bytes += chunk.length;
    }
  } finally {
    closeSync(fd);
    rmSync(path, { force: true });
  }
  return bytes / (Number(process.hrtime.bigint() - started) / 1e9);
}

interface Result {
  quorum: string;
  entryBytes: number;
  entriesPerSec: number;
  mibPerSec: number;
  p50Ms: number;
  p99Ms: number;
  boundMibPerSec: number;
}

async function main(): Promise<void> {
  const etcd = await EtcdServer.start();
  const base = mkdtempSync(join(tmpdir(), 'sluice-ledger-bench-'));
  const url = `etcd://${etcd.endpoint}/bench`;
  const bookies: BookieProcess[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      bookies.push(
        await BookieProcess.start({
          metadata: url,
          dataDir: join(base, `b${i}`),
          ...(await bookiePorts()),
          env: { SESSION_TTL_MS: '5000' },
        }),
      );
    }
    const disk = diskBound(base);
    const metadata = await openMetadataStore(url);
    const client = new BookKeeperClient({ metadata, logger: createLogger('ledger-bench') });
    await waitFor(async () => (await metadata.listAll('bookies/available/')).length === 3, 20_000, 'bookies');
    const results: Result[] = [];
    for (const [E, Qw, Qa] of QUORUMS) {
      for (const size of SIZES) {
        const payload = Buffer.alloc(size, 0x5a);
        const w = await client.createLedger({ ensembleSize: E, writeQuorum: Qw, ackQuorum: Qa });
        const latencies: number[] = [];
        // Enough in flight to keep group commit busy, bounded in bytes.
        const inFlight = Math.max(8, Math.min(512, Math.floor((16 * 1024 * 1024) / size)));
        const started = performance.now();
        const deadline = started + SECONDS * 1000;
        let count = 0;
        const worker = async () => {
          while (performance.now() < deadline) {
            const t0 = performance.now();
            await w.addEntry(payload);
            latencies.push(performance.now() - t0);
            count++;
          }
        };
        await Promise.all(Array.from({ length: inFlight }, worker));
        const secs = (performance.now() - started) / 1000;
        await w.close();
        await client.deleteLedger(w.ledgerId);
        latencies.sort((a, b) => a - b);
        const pct = (p: number) =>
          latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? 0;
        results.push({
          quorum: `(${E},${Qw},${Qa})`,
          entryBytes: size,
          entriesPerSec: Math.round(count / secs),
          mibPerSec: Number(((count * size) / secs / 2 ** 20).toFixed(1)),
          p50Ms: Number(pct(0.5).toFixed(2)),
          p99Ms: Number(pct(0.99).toFixed(2)),
          boundMibPerSec: Number((disk / Qw / 2 ** 20).toFixed(1)),
        });
        process.stderr.write(`${JSON.stringify(results.at(-1))}\n`);
      }
    }
    await client.close();
    await metadata.close();
    if (values.json) {
      process.stdout.write(`${JSON.stringify({ diskMibPerSec: disk / 2 ** 20, results }, null, 2)}\n`);
    } else {
      process.stdout.write(
        `disk: ${(disk / 2 ** 20).toFixed(1)} MiB/s sequential with fdatasync per 512 KiB\n\n`,
      );
      process.stdout.write(
        '| (E,Qw,Qa) | entry | entries/s | MiB/s | p50 ms | p99 ms | disk bound / Qw MiB/s |\n',
      );
      process.stdout.write('| --- | --- | --- | --- | --- | --- | --- |\n');
      for (const r of results) {
        process.stdout.write(
          `| ${r.quorum} | ${r.entryBytes / 1024} KiB | ${r.entriesPerSec} | ${r.mibPerSec} | ${r.p50Ms} | ${r.p99Ms} | ${r.boundMibPerSec} |\n`,
        );
      }
    }
  } finally {
    await Promise.all(bookies.map((b) => b.stop().catch(() => {})));
    await etcd.destroy().catch(() => {});
    rmSync(base, { recursive: true, force: true });
  }
}

await main();
