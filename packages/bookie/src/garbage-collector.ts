import type { Logger } from '@sluice/common';
import type { MetadataStore } from '@sluice/metadata';
import type { BookieStore } from './bookie-store.js';
import type { BookieMetrics } from './metrics.js';

export const LEDGERS_PREFIX = 'ledgers/';

export interface GarbageCollectorOptions {
  store: BookieStore;
  metadata: MetadataStore;
  intervalMs: number;
  gracePeriodMs: number;
  compactionThreshold: number;
  logger: Logger;
  metrics: BookieMetrics;
  now?: () => number;
}

export interface GcResult {
  deletedLedgers: number[];
  compactedLogs: number;
}

/**
 * Drops ledgers deleted from metadata, then compacts entry logs whose live
 * fraction fell low. A ledger is only collected when metadata has no key for
 * it AND this bookie first saw it longer than the grace period ago, so a
 * listing that raced a ledger's creation can never destroy fresh data.
 */
export class GarbageCollector {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<GcResult> | undefined;
  private stopped = false;

  constructor(private readonly opts: GarbageCollectorOptions) {}

  start(): void {
    this.arm();
  }

  private arm(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.runOnce()
        .catch((err) => this.opts.logger.warn({ err }, 'garbage collection failed; trying again next round'))
        .finally(() => this.arm());
    }, this.opts.intervalMs);
  }

  /** One GC + compaction round (concurrent callers share it). */
  runOnce(): Promise<GcResult> {
    this.running ??= this.collect().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async collect(): Promise<GcResult> {
    const now = (this.opts.now ?? Date.now)();
    const storage = this.opts.store.storage;
    const keys = await this.opts.metadata.listAll(LEDGERS_PREFIX, { keysOnly: true });
    const known = new Set<number>();
    for (const k of keys) {
      const id = Number(k.key.slice(k.key.lastIndexOf('/') + 1));
      if (Number.isSafeInteger(id)) known.add(id);
    }
    const deletedLedgers: number[] = [];
    for (const l of [...storage.index.ledgers.values()]) {
      if (this.stopped) break;
      if (known.has(l.ledgerId) || now - l.firstSeen < this.opts.gracePeriodMs) continue;
      await storage.dropLedger(l.ledgerId, () => this.opts.store.position());
      deletedLedgers.push(l.ledgerId);
      this.opts.metrics.gcLedgersDeleted.inc();
    }
    if (deletedLedgers.length > 0)
      this.opts.logger.info({ ledgers: deletedLedgers }, 'garbage-collected deleted ledgers');
    let compactedLogs = 0;
    if (this.opts.compactionThreshold > 0) {
      for (const logId of storage.compactionCandidates(this.opts.compactionThreshold)) {
        if (this.stopped) break;
        compactedLogs += await storage.compact(logId, () => this.opts.store.position());
      }
      if (compactedLogs > 0) this.opts.logger.info({ compactedLogs }, 'compacted entry logs');
    }
    return { deletedLedgers, compactedLogs };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running?.catch(() => undefined);
  }
}
