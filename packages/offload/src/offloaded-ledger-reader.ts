/**
 * Reads one completed offload: the index object is fetched once at open, then
 * each read fetches only the blocks it touches (ranged GETs), through the
 * offloader's shared block cache.
 */
import {
  ClosedError,
  type EntryId,
  InvalidArgumentError,
  type LedgerId,
  OutOfRangeError,
} from '@sluice/common';
import type { BlockCache } from './block-cache.js';
import { type DecodedBlock, decodeBlock, type OffloadEntry } from './block-format.js';
import { findBlock, type LedgerIndex, type OffloadedLedgerMetadata } from './index-format.js';
import type { OffloadObjectKeys } from './object-keys.js';
import type { ObjectStore } from './object-store.js';
import type { OffloadMetrics } from './offload-metrics.js';
import type { OffloadedLedgerReader } from './offloader.js';

/** Blocks fetched at once by one read; bounds a wide read's memory and connections. */
const READ_CONCURRENCY = 4;

/**
 * An entry whose payload does not keep much more than itself in memory. A
 * decoded payload is a view into its whole block (1 MiB by default): a
 * caller caching a 100-byte payload would keep the block alive, and caches
 * that count payload bytes would hold ~100× their budget. One copy per entry
 * read is cheap next to the GET that fetched it; a payload that fills most of
 * its buffer is handed out as it is.
 */
function detached(entry: OffloadEntry): OffloadEntry {
  const { payload } = entry;
  if (payload.buffer.byteLength <= 2 * payload.length) return entry;
  // allocUnsafeSlow: a small Buffer.from() copy would share Node's 8 KiB pool slab.
  const copy = Buffer.allocUnsafeSlow(payload.length);
  payload.copy(copy);
  return { entryId: entry.entryId, payload: copy };
}

export class StoreLedgerReader implements OffloadedLedgerReader {
  private closed = false;

  constructor(
    private readonly store: ObjectStore,
    private readonly keys: OffloadObjectKeys,
    private readonly index: LedgerIndex,
    private readonly cache: BlockCache,
    private readonly metrics: OffloadMetrics,
  ) {}

  get ledgerId(): LedgerId {
    return this.index.metadata.ledgerId;
  }

  get uuid(): string {
    return this.index.metadata.uuid;
  }

  get lastEntryId(): EntryId {
    return this.index.metadata.lastEntryId;
  }

  get metadata(): OffloadedLedgerMetadata {
    return this.index.metadata;
  }

  async read(first: EntryId, last: EntryId): Promise<OffloadEntry[]> {
    if (this.closed) throw new ClosedError(`reader of offloaded ledger ${this.ledgerId} is closed`);
    if (!Number.isSafeInteger(first) || !Number.isSafeInteger(last) || first > last) {
      throw new InvalidArgumentError(
        `read range ${first}..${last} is invalid; use integers with first <= last`,
      );
    }
    if (first < 0 || last > this.lastEntryId) {
      throw new OutOfRangeError(
        `entries ${first}..${last} are outside offloaded ledger ${this.ledgerId}, which holds ${
          this.lastEntryId < 0 ? 'no entries' : `entries 0..${this.lastEntryId}`
        }`,
      );
    }
    const firstBlock = findBlock(this.index.blocks, first);
    const lastBlock = findBlock(this.index.blocks, last);
    const out: OffloadEntry[] = [];
    for (let start = firstBlock; start <= lastBlock; start += READ_CONCURRENCY) {
      const batch: Promise<DecodedBlock>[] = [];
      for (let b = start; b <= Math.min(lastBlock, start + READ_CONCURRENCY - 1); b++)
        batch.push(this.block(b));
      for (const block of await Promise.all(batch)) {
        const from = Math.max(first, block.firstEntryId) - block.firstEntryId;
        const to = Math.min(last, block.firstEntryId + block.entries.length - 1) - block.firstEntryId;
        for (let i = from; i <= to; i++) out.push(detached(block.entries[i]!));
      }
    }
    return out;
  }

  private block(i: number): Promise<DecodedBlock> {
    const entry = this.index.blocks[i]!;
    const cacheKey = `${this.keys.data}@${entry.offset}`;
    const hit = this.cache.get(cacheKey);
    if (hit) {
      this.metrics.cacheHits.inc();
      return Promise.resolve(hit);
    }
    return this.cache.getOrLoad(
      cacheKey,
      async () => {
        const bytes = await this.store.getRange(this.keys.data, entry.offset, entry.length);
        this.metrics.bytesRead.inc(bytes.length);
        return { block: decodeBlock(bytes, `${this.keys.data}@${entry.offset}`, entry), bytes: bytes.length };
      },
      () => this.metrics.cacheMisses.inc(),
    );
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
