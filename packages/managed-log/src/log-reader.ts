import {
  FailedPreconditionError,
  formatPosition,
  type LedgerId,
  OutOfRangeError,
  type Position,
} from '@sluice/common';
import type { LedgerEntry, LedgerReader } from '@sluice/ledger';
import type { EntryBytes, LogEntry, OffloadedLedgerReader } from './api.js';
import { logEntry } from './entry-bytes.js';
import { BlockCache, TailCache } from './entry-cache.js';
import type { LedgerRecord } from './ledger-list.js';
import type { LogContext } from './log-context.js';

/** Open readers kept per log; the least recently used one is closed beyond this. */
const MAX_OPEN_READERS = 16;

interface StorageReader {
  read(first: number, last: number): Promise<LedgerEntry[]>;
  close(): Promise<void>;
  refresh?: () => Promise<number>;
  lac?: () => number;
  confirm?: (entryId: number) => void;
}

/**
 * Reads by position. Recent entries come from the tail cache; catch-up reads
 * fetch whole blocks of `readBatchEntries` from storage and read the next
 * block ahead. A ledger is read from bookies, or from the offloader once its
 * bookie copy is gone (or the bookies fail it and an offload exists).
 */
export class LogReader {
  readonly tail: TailCache;
  private readonly blocks: BlockCache;
  private readonly readers = new Map<string, Promise<StorageReader>>();
  private readonly inflightBlocks = new Map<string, Promise<Buffer[]>>();

  constructor(private readonly ctx: LogContext) {
    this.tail = new TailCache(ctx.config.cacheBytes);
    this.blocks = new BlockCache(ctx.config.readAheadCacheBytes);
  }

  async read(from: Position, maxEntries: number): Promise<LogEntry[]> {
    const out: LogEntry[] = [];
    let p: Position | undefined = this.validate(from);
    while (p && out.length < maxEntries) {
      const rec = this.ctx.record(p.ledgerId);
      if (!rec) break;
      const n = this.ctx.entriesOf(rec);
      const last = Math.min(n - 1, p.entryId + (maxEntries - out.length) - 1);
      if (last >= p.entryId) {
        const payloads = await this.readRange(rec, p.entryId, last);
        for (let i = 0; i < payloads.length; i++) {
          out.push(logEntry({ ledgerId: rec.ledgerId, entryId: p.entryId + i }, payloads[i]!));
        }
      }
      if (last < n - 1) break;
      p = this.ctx.nextPosition({ ledgerId: rec.ledgerId, entryId: n - 1 });
    }
    return out;
  }

  /**
   * A readable start position, or undefined at the end of the log (nothing
   * to read yet). Throws OutOfRangeError before the first stored entry or
   * beyond the end.
   */
  private validate(from: Position): Position | undefined {
    const first = this.ctx.firstPosition();
    const ls = this.ctx.list.ledgers;
    const rec = this.ctx.record(from.ledgerId);
    if (!rec && from.entryId === 0 && this.ctx.wasDroppedEmpty(from.ledgerId)) {
      // The end of the log while that ledger was open and empty: nothing was
      // skipped, reading goes on at the next stored entry (if any yet).
      return this.ctx.nextPosition({ ledgerId: from.ledgerId, entryId: -1 });
    }
    if (!rec || from.entryId < 0) {
      if (first && from.ledgerId < first.ledgerId) {
        throw new OutOfRangeError(
          `position ${formatPosition(from)} of log '${this.ctx.name}' was trimmed; the first stored entry is ${formatPosition(first)}`,
        );
      }
      const open = ls[ls.length - 1];
      throw new OutOfRangeError(
        `position ${formatPosition(from)} is not in log '${this.ctx.name}' (ledgers ${ls.map((l) => l.ledgerId).join(', ') || 'none'}${open ? `; the next entry will be ${open.ledgerId}:${this.ctx.entriesOf(open)}` : ''})`,
      );
    }
    const n = this.ctx.entriesOf(rec);
    if (from.entryId < n) return from;
    if (from.entryId === n) {
      return this.ctx.nextPosition({ ledgerId: from.ledgerId, entryId: from.entryId - 1 });
    }
    throw new OutOfRangeError(
      `position ${formatPosition(from)} is after the end of log '${this.ctx.name}' (ledger ${rec.ledgerId} has ${n} entries)`,
    );
  }

  /** Payloads of entries first..last of one ledger. */
  async readRange(rec: LedgerRecord, first: number, last: number): Promise<EntryBytes[]> {
    const out: EntryBytes[] = [];
    let e = first;
    // The open ledger's recent entries are in the tail cache; sealed ones may still be.
    while (e <= last) {
      const hit = this.tail.get(rec.ledgerId, e);
      if (!hit) break;
      out.push(hit);
      e++;
    }
    if (e > first) this.ctx.metrics.cacheHits.inc(e - first);
    if (e > last) return out;
    const B = this.ctx.config.readBatchEntries;
    // Confirmed entries never change, so the open ledger's complete blocks are
    // cached and read ahead like a sealed ledger's; only its growing last
    // block is read directly. (Reading the open ledger uncached made a
    // consumer catching up on it wait one bookie round trip per dispatch.)
    const entries = this.ctx.entriesOf(rec);
    while (e <= last) {
      const block = Math.floor(e / B);
      const start = block * B;
      if (!rec.sealed && start + B > entries) {
        this.ctx.metrics.cacheMisses.inc(last - e + 1);
        for (const x of await this.fetch(rec, e, last)) out.push(x.payload);
        return out;
      }
      const payloads = await this.block(rec, block, entries);
      const end = Math.min(last, start + payloads.length - 1);
      for (let i = e; i <= end; i++) out.push(payloads[i - start]!);
      e = end + 1;
      if (end < start + B - 1 && e <= last) {
        throw new OutOfRangeError(
          `ledger ${rec.ledgerId} returned fewer entries than its recorded ${entries}`,
        );
      }
    }
    const nextBlock = Math.floor(last / B) + 1;
    const readable = rec.sealed ? nextBlock * B < entries : (nextBlock + 1) * B <= entries;
    if (readable) this.readAhead(rec, nextBlock, entries);
    return out;
  }

  /** Block `block` of a ledger holding `entries` entries (the open ledger: a complete block only). */
  private block(rec: LedgerRecord, block: number, entries: number): Promise<Buffer[]> {
    const key = BlockCache.key(rec.ledgerId, block);
    const cached = this.blocks.get(key);
    if (cached) {
      this.ctx.metrics.cacheHits.inc(cached.length);
      return Promise.resolve(cached);
    }
    const running = this.inflightBlocks.get(key);
    if (running) return running;
    const B = this.ctx.config.readBatchEntries;
    const first = block * B;
    const last = Math.min(entries - 1, first + B - 1);
    this.ctx.metrics.cacheMisses.inc(last - first + 1);
    const p = this.fetch(rec, first, last)
      .then((entries) => {
        const payloads = entries.map((x) => x.payload);
        this.blocks.put(key, payloads);
        return payloads;
      })
      .finally(() => this.inflightBlocks.delete(key));
    this.inflightBlocks.set(key, p);
    return p;
  }

  private readAhead(rec: LedgerRecord, block: number, entries: number): void {
    const key = BlockCache.key(rec.ledgerId, block);
    if (this.blocks.has(key) || this.inflightBlocks.has(key)) return;
    this.block(rec, block, entries).catch((err) => {
      this.ctx.logger.debug({ log: this.ctx.name, ledgerId: rec.ledgerId, err }, 'read-ahead failed');
    });
  }

  private async fetch(rec: LedgerRecord, first: number, last: number): Promise<LedgerEntry[]> {
    const offload = rec.offload?.state === 'complete' ? rec.offload.uuid : undefined;
    if (rec.bookieDeleted && offload) return this.fetchFrom(rec, 'offload', offload, first, last);
    try {
      return await this.fetchFrom(rec, 'bookie', undefined, first, last);
    } catch (err) {
      if (!offload || !this.ctx.offloader) throw err;
      this.ctx.logger.warn(
        { log: this.ctx.name, ledgerId: rec.ledgerId, err },
        'bookie read failed; reading the offloaded copy',
      );
      return this.fetchFrom(rec, 'offload', offload, first, last);
    }
  }

  private async fetchFrom(
    rec: LedgerRecord,
    kind: 'bookie' | 'offload',
    uuid: string | undefined,
    first: number,
    last: number,
  ): Promise<LedgerEntry[]> {
    const key = `${kind}:${rec.ledgerId}`;
    let rp = this.readers.get(key);
    if (!rp) {
      rp = this.openReader(rec.ledgerId, kind, uuid);
      this.readers.set(key, rp);
      rp.catch(() => this.readers.delete(key));
      this.evictReaders();
    } else {
      // LRU order.
      this.readers.delete(key);
      this.readers.set(key, rp);
    }
    const reader = await rp;
    if (reader.lac && reader.refresh && last > reader.lac()) {
      await reader.refresh();
      // Entries this process appended and had acknowledged are readable even
      // where the bookies' LAC has not caught up (it rides on later adds).
      const confirmed = this.ctx.entriesOf(rec) - 1;
      if (last > reader.lac() && last <= confirmed) reader.confirm?.(confirmed);
    }
    const entries = await reader.read(first, last);
    if (entries.length !== last - first + 1) {
      throw new OutOfRangeError(
        `ledger ${rec.ledgerId} returned ${entries.length} entries for ${first}..${last}; it may have been trimmed`,
      );
    }
    return entries;
  }

  private async openReader(
    ledgerId: LedgerId,
    kind: 'bookie' | 'offload',
    uuid?: string,
  ): Promise<StorageReader> {
    if (kind === 'offload') {
      if (!this.ctx.offloader) {
        throw new FailedPreconditionError(
          `ledger ${ledgerId} of managed log '${this.ctx.name}' is only in the cold tier (offload ${uuid}; its ` +
            'bookie copy was deleted) but no offloader is configured; configure the offload target it was ' +
            'written to (sluice broker --offload <url>) to read it',
          { details: { ledgerId: String(ledgerId), offloadUuid: uuid ?? '' } },
        );
      }
      const r: OffloadedLedgerReader = await this.ctx.offloader.openReader(ledgerId, uuid!);
      return r;
    }
    const r: LedgerReader = await this.ctx.ledgers.openLedger(ledgerId);
    return {
      read: (a, b) => r.read(a, b),
      close: () => r.close(),
      refresh: () => r.refreshLac(),
      lac: () => r.lastAddConfirmed,
      confirm: (entryId) => r.confirmedThrough(entryId),
    };
  }

  private evictReaders(): void {
    while (this.readers.size > MAX_OPEN_READERS) {
      const [key, rp] = this.readers.entries().next().value as [string, Promise<StorageReader>];
      this.readers.delete(key);
      void rp.then((r) => r.close()).catch(() => undefined);
    }
  }

  /** Forget caches and readers of a ledger (trimmed, or its bookie copy deleted). */
  async dropLedger(
    ledgerId: LedgerId,
    kinds: ('bookie' | 'offload')[] = ['bookie', 'offload'],
  ): Promise<void> {
    this.tail.dropLedger(ledgerId);
    if (kinds.includes('offload') && kinds.includes('bookie')) this.blocks.dropLedger(ledgerId);
    for (const kind of kinds) {
      const rp = this.readers.get(`${kind}:${ledgerId}`);
      this.readers.delete(`${kind}:${ledgerId}`);
      if (rp) await rp.then((r) => r.close()).catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    const all = [...this.readers.values()];
    this.readers.clear();
    this.tail.clear();
    this.blocks.clear();
    await Promise.all(all.map((rp) => rp.then((r) => r.close()).catch(() => undefined)));
  }
}
