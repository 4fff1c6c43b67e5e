/**
 * A managed-log process for integration tests (run from dist/ through the
 * package exports): `node --import=tsx managed-log-worker.ts <command> <json>`.
 * Reports progress as JSON lines on stdout so the test can kill -9 it at a
 * precise moment.
 */
import type { Position } from '@sluice/common';
import { createLedgerClient } from '@sluice/ledger';
import { type ManagedLog, type ManagedLogConfig, ManagedLogFactory } from '@sluice/managed-log';
import { openMetadataStore } from '@sluice/metadata';
import { openOffloader } from '@sluice/offload';
import { payloadOf, scatteredIndexes } from './managed-log-cluster.js';

interface Args {
  metadata: string;
  offload?: string;
  log: string;
  count?: number;
  acks?: number;
  config?: Partial<ManagedLogConfig>;
}

const emit = (event: string, data: Record<string, unknown> = {}) =>
  process.stdout.write(`${JSON.stringify({ event, ...data })}\n`);

async function positions(log: ManagedLog, count: number): Promise<Position[]> {
  const out: Position[] = [];
  let p = log.firstPosition();
  while (p && out.length < count) {
    out.push(p);
    p = log.nextPosition(p);
  }
  return out;
}

async function main(): Promise<void> {
  const [command, json] = process.argv.slice(2);
  const args = JSON.parse(json ?? '{}') as Args;
  const metadata = await openMetadataStore(args.metadata);
  const ledgers = createLedgerClient({ metadata });
  const offloader = args.offload ? openOffloader(args.offload) : undefined;
  const factory = new ManagedLogFactory({
    metadata,
    ledgers,
    ...(offloader ? { offloader } : {}),
    defaults: { ensembleSize: 2, writeQuorum: 2, ackQuorum: 2, minLedgerAgeMs: 0, ...args.config },
  });
  const log = await factory.open(args.log);
  emit('opened', { ledgers: log.stats().ledgers.length });
  const count = args.count ?? 0;

  switch (command) {
    case 'write': {
      const payload = args.acks ? (i: number) => Buffer.from(`m${i}`) : payloadOf;
      for (let i = 0; i < count; i += 1000) {
        const n = Math.min(1000, count - i);
        await Promise.all(Array.from({ length: n }, (_, j) => log.append(payload(i + j))));
      }
      emit('written', { ledgers: log.stats().ledgers.length, last: log.lastPosition() });
      break;
    }
    case 'offload': {
      const n = await log.offloadNow();
      emit('offloaded', { ledgers: n, stats: log.stats() });
      break;
    }
    case 'verify': {
      let i = 0;
      let mismatches = 0;
      let p = log.firstPosition();
      while (p) {
        const batch = await log.read(p, 500);
        if (batch.length === 0) break;
        for (const e of batch) if (!e.payload.equals(payloadOf(i++))) mismatches++;
        p = log.nextPosition(batch[batch.length - 1]!.position);
      }
      const stats = log.stats();
      emit('verified', {
        count: i,
        mismatches,
        offloaded: stats.ledgers.filter((l) => l.offloaded).length,
        bookieDeleted: stats.ledgers.filter((l) => l.bookieCopyDeleted).length,
      });
      break;
    }
    case 'ack': {
      const cursor = await log.openCursor('sub', 'earliest');
      const ps = await positions(log, count);
      const acked = scatteredIndexes(args.acks ?? 0, count);
      for (const i of acked) cursor.ack(ps[i]!);
      await cursor.flush();
      emit('flushed', { ranges: cursor.ackRangeCount(), markDelete: cursor.markDelete, entries: ps.length });
      // Stay up with the cursor open: the test kills this process with SIGKILL.
      await new Promise(() => undefined);
      break;
    }
    case 'check-acks': {
      const cursor = await log.openCursor('sub');
      const ps = await positions(log, count);
      const acked = scatteredIndexes(args.acks ?? 0, count);
      let mismatches = 0;
      for (let i = 0; i < ps.length; i++) if (cursor.isAcked(ps[i]!) !== acked.has(i)) mismatches++;
      emit('checked', {
        mismatches,
        ranges: cursor.ackRangeCount(),
        backlog: cursor.backlog(),
        entries: ps.length,
      });
      break;
    }
    default:
      throw new Error(`unknown command ${command}`);
  }
  await factory.close();
  await offloader?.close();
  await ledgers.close();
  await metadata.close();
  emit('done');
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    emit('error', { message: err instanceof Error ? `${err.name}: ${err.message}` : String(err) });
    process.exit(1);
  },
);
