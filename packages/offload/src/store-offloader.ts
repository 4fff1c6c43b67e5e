/**
 * The object format on top of any ObjectStore; S3Offloader and
 * FilesystemOffloader only choose the store.
 */
import { randomUUID } from 'node:crypto';
import {
  CorruptDataError,
  InvalidArgumentError,
  type LedgerId,
  type Logger,
  silentLogger,
} from '@sluice/common';
import { BlockCache } from './block-cache.js';
import { DEFAULT_BLOCK_SIZE } from './block-format.js';
import { decodeIndex, type LedgerIndex, type OffloadedLedgerMetadata } from './index-format.js';
import { offloadLedger } from './ledger-offload.js';
import {
  assertLedgerId,
  ledgerPrefix,
  normalizePrefix,
  offloadObjectKeys,
  parseObjectKey,
} from './object-keys.js';
import type { ObjectStore } from './object-store.js';
import { type OffloadMetrics, offloadMetrics } from './offload-metrics.js';
import { StoreLedgerReader } from './offloaded-ledger-reader.js';
import {
  DEFAULT_CACHE_BYTES,
  DEFAULT_READ_BATCH_ENTRIES,
  type OffloadedLedgerReader,
  type Offloader,
  type OffloaderOptions,
  type OffloadListing,
  type OffloadOptions,
  type OffloadResult,
  type OffloadSource,
} from './offloader.js';

const MIN_BLOCK_SIZE = 4 * 1024;
const MAX_BLOCK_SIZE = 256 * 1024 * 1024;

export class StoreOffloader implements Offloader {
  readonly description: string;
  private readonly prefix: string;
  private readonly blockSize: number;
  private readonly readBatchEntries: number;
  private readonly cache: BlockCache;
  private readonly metrics: OffloadMetrics;
  private readonly logger: Logger;

  constructor(
    private readonly store: ObjectStore,
    prefix: string,
    options: OffloaderOptions = {},
  ) {
    this.prefix = normalizePrefix(prefix);
    this.blockSize = positiveInt(
      options.blockSize ?? DEFAULT_BLOCK_SIZE,
      'blockSize',
      MIN_BLOCK_SIZE,
      MAX_BLOCK_SIZE,
    );
    this.readBatchEntries = positiveInt(
      options.readBatchEntries ?? DEFAULT_READ_BATCH_ENTRIES,
      'readBatchEntries',
    );
    this.cache = new BlockCache(positiveInt(options.cacheBytes ?? DEFAULT_CACHE_BYTES, 'cacheBytes', 0));
    this.metrics = offloadMetrics(options.registry);
    this.description = store.description;
    this.logger = (options.logger ?? silentLogger).child({
      component: 'offloader',
      target: this.description,
    });
  }

  async offload(source: OffloadSource, options: OffloadOptions = {}): Promise<OffloadResult> {
    assertLedgerId(source.ledgerId);
    if (!Number.isSafeInteger(source.lastEntryId) || source.lastEntryId < -1) {
      throw new InvalidArgumentError(
        `lastEntryId ${source.lastEntryId} of ledger ${source.ledgerId} is invalid; use -1 (empty) or more`,
      );
    }
    const uuid = options.uuid ?? randomUUID();
    const keys = offloadObjectKeys(this.prefix, source.ledgerId, uuid);
    const stopTimer = this.metrics.offloadSeconds.startTimer();
    try {
      const result = await offloadLedger(this.store, keys, uuid, source, {
        blockSize: this.blockSize,
        readBatchEntries: this.readBatchEntries,
        logger: this.logger,
        ...(options.signal ? { signal: options.signal } : {}),
      });
      this.metrics.offloads.inc({ result: 'ok' });
      this.metrics.bytesWritten.inc(result.dataBytes + result.indexBytes);
      this.logger.info(
        { ledgerId: source.ledgerId, uuid, dataBytes: result.dataBytes, blocks: result.blockCount },
        'offloaded ledger',
      );
      return result;
    } catch (err) {
      this.metrics.offloads.inc({ result: 'error' });
      this.logger.warn({ err, ledgerId: source.ledgerId, uuid }, 'offload attempt failed');
      throw err;
    } finally {
      stopTimer();
    }
  }

  async openReader(ledgerId: LedgerId, uuid: string): Promise<OffloadedLedgerReader> {
    const keys = offloadObjectKeys(this.prefix, ledgerId, uuid);
    const index = await this.readIndex(ledgerId, uuid);
    return new StoreLedgerReader(this.store, keys, index, this.cache, this.metrics);
  }

  async verify(ledgerId: LedgerId, uuid: string): Promise<OffloadedLedgerMetadata> {
    const keys = offloadObjectKeys(this.prefix, ledgerId, uuid);
    const { metadata } = await this.readIndex(ledgerId, uuid);
    const size = await this.store.size(keys.data);
    if (size !== metadata.dataObjectSize) {
      throw new CorruptDataError(
        `offloaded data object ${keys.data} holds ${size} bytes, its index says ${metadata.dataObjectSize}; re-offload the ledger from bookies`,
      );
    }
    return metadata;
  }

  /** The index object, its checksum and block table verified, and checked to be this offload's. */
  private async readIndex(ledgerId: LedgerId, uuid: string): Promise<LedgerIndex> {
    const keys = offloadObjectKeys(this.prefix, ledgerId, uuid);
    const index = decodeIndex(await this.store.get(keys.index), keys.index);
    if (index.metadata.ledgerId !== ledgerId || index.metadata.uuid !== uuid) {
      throw new InvalidArgumentError(
        `offload index ${keys.index} describes ledger ${index.metadata.ledgerId}/${index.metadata.uuid}, not ${ledgerId}/${uuid}; the object was copied or renamed`,
      );
    }
    return index;
  }

  async delete(ledgerId: LedgerId, uuid: string): Promise<void> {
    const keys = offloadObjectKeys(this.prefix, ledgerId, uuid);
    await this.store.delete(keys.index);
    await this.store.delete(keys.data);
    this.cache.removePrefix(`${keys.data}@`);
  }

  async list(ledgerId?: LedgerId): Promise<OffloadListing[]> {
    if (ledgerId !== undefined) assertLedgerId(ledgerId);
    const found = new Map<string, OffloadListing>();
    for (const key of await this.store.list(ledgerPrefix(this.prefix, ledgerId))) {
      const parsed = parseObjectKey(key);
      // Another prefix nested under ours is not ours to report.
      if (!parsed || key !== offloadObjectKeys(this.prefix, parsed.ledgerId, parsed.uuid)[parsed.kind])
        continue;
      const id = `${parsed.ledgerId}/${parsed.uuid}`;
      const listing = found.get(id) ?? { ledgerId: parsed.ledgerId, uuid: parsed.uuid, complete: false };
      if (parsed.kind === 'index') listing.complete = true;
      found.set(id, listing);
    }
    return [...found.values()].sort((a, b) => a.ledgerId - b.ledgerId || a.uuid.localeCompare(b.uuid));
  }

  async close(): Promise<void> {
    this.cache.clear();
    await this.store.close();
  }
}

function positiveInt(value: number, name: string, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new InvalidArgumentError(
      `offloader option ${name}=${value} is invalid; use an integer in ${min}..${max}`,
    );
  }
  return value;
}
