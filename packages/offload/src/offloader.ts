/**
 * The cold tier as the managed log sees it (DESIGN §5). An offload copies one
 * closed ledger into a data object and an index object; it exists once, and
 * only once, its index object exists. Each attempt writes under a fresh uuid,
 * and the caller records the uuid of a completed offload in its ledger list:
 * objects under any other uuid are debris from crashed attempts, which
 * `list` reports so the caller can `delete` them.
 */
import type { EntryId, LedgerId, Logger, Registry } from '@sluice/common';
import type { OffloadEntry } from './block-format.js';
import type { OffloadedLedgerMetadata } from './index-format.js';

export type { OffloadEntry } from './block-format.js';
export type { OffloadedLedgerMetadata } from './index-format.js';

/** A closed ledger to copy. Entries are 0..lastEntryId with no gaps. */
export interface OffloadSource {
  ledgerId: LedgerId;
  /** -1 for an empty ledger. */
  lastEntryId: EntryId;
  /** The ledger's custom properties, stored in the index object. */
  metadata: Record<string, string>;
  /** Entries first..last inclusive, in order. */
  readEntries(first: EntryId, last: EntryId): Promise<OffloadEntry[]>;
}

export interface OffloadOptions {
  /** Names this attempt's objects; default a random UUID. Reusing one overwrites that attempt. */
  uuid?: string;
  /** Aborting stops the offload between batches; nothing becomes visible. */
  signal?: AbortSignal;
}

export interface OffloadResult {
  ledgerId: LedgerId;
  /** Record this in the ledger list; `openReader(ledgerId, uuid)` reads the offload. */
  uuid: string;
  dataKey: string;
  indexKey: string;
  dataBytes: number;
  indexBytes: number;
  entryCount: number;
  blockCount: number;
}

export interface OffloadedLedgerReader {
  readonly ledgerId: LedgerId;
  readonly uuid: string;
  /** -1 for an empty ledger. */
  readonly lastEntryId: EntryId;
  readonly metadata: OffloadedLedgerMetadata;
  /**
   * Entries first..last inclusive. OutOfRangeError outside 0..lastEntryId,
   * CorruptDataError when a checksum fails. A payload much smaller than its
   * block is a copy, so that keeping it does not keep the block in memory;
   * one that fills most of its block is a view into the cached block. Treat
   * payloads as read-only.
   */
  read(first: EntryId, last: EntryId): Promise<OffloadEntry[]>;
  close(): Promise<void>;
}

/** Objects found under an offloader's prefix. */
export interface OffloadListing {
  ledgerId: LedgerId;
  uuid: string;
  /** True when the index object exists (the offload completed). */
  complete: boolean;
}

export interface Offloader {
  /** The target, e.g. `s3://bucket/prefix` (never includes credentials). */
  readonly description: string;
  /** Copy a closed ledger. Errors are SluiceErrors; UnavailableError is retriable with backoff. */
  offload(source: OffloadSource, options?: OffloadOptions): Promise<OffloadResult>;
  /** NotFoundError when that offload never completed or was deleted. */
  openReader(ledgerId: LedgerId, uuid: string): Promise<OffloadedLedgerReader>;
  /**
   * Check a completed offload is still whole before its source is deleted:
   * the index object reads back and passes its checksum, and the data object
   * has the size the index recorded (HEAD / stat, without downloading it).
   * Resolves with the index's metadata; CorruptDataError when they disagree,
   * NotFoundError when an object is missing.
   */
  verify(ledgerId: LedgerId, uuid: string): Promise<OffloadedLedgerMetadata>;
  /** Delete an offload (index first, so a half-deleted offload is never "complete"). Idempotent. */
  delete(ledgerId: LedgerId, uuid: string): Promise<void>;
  /** Offloads and debris of crashed attempts, for one ledger or all. */
  list(ledgerId?: LedgerId): Promise<OffloadListing[]>;
  close(): Promise<void>;
}

/** Settings shared by every offloader. */
export interface OffloaderOptions {
  /** Target block size in bytes (default 1 MiB). Larger: fewer GETs, more bytes fetched per small read. */
  blockSize?: number;
  /** Entries read from the source per batch (default 100); with blockSize it bounds an offload's memory. */
  readBatchEntries?: number;
  /** Bytes of decoded blocks cached for readers, shared by all readers (default 64 MiB). */
  cacheBytes?: number;
  logger?: Logger;
  /** Registry for `sluice_offload_*` metrics; a private one when absent. */
  registry?: Registry;
}

export const DEFAULT_READ_BATCH_ENTRIES = 100;
export const DEFAULT_CACHE_BYTES = 64 * 1024 * 1024;
