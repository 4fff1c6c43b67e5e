/**
 * Public surface of the managed log (DESIGN §5): a topic's unbounded log built
 * from ledgers, with one cursor per subscription.
 */
import type { Clock, EntryId, LedgerId, Logger, Position, Registry } from '@sluice/common';
import type { LedgerClient, LedgerEntry, LedgerMetadata } from '@sluice/ledger';
import type { MetadataStore } from '@sluice/metadata';
import type { Offloader } from '@sluice/offload';

/**
 * An entry's bytes as an appender hands them: one Buffer, or parts (e.g. a
 * header and a body received from a client) that are written and cached
 * without being joined.
 */
export type EntryBytes = Buffer | readonly Buffer[];

export interface LogEntry {
  position: Position;
  /** The entry's bytes (an entry appended in parts is joined on first use). */
  readonly payload: Buffer;
  /** Set when the entry came from the tail cache as it was appended in parts: read them without joining. */
  readonly parts?: readonly Buffer[];
}

export interface ManagedLogConfig {
  /** Persistence of new ledgers. */
  ensembleSize: number;
  writeQuorum: number;
  ackQuorum: number;
  /** Roll the open ledger after this many entries / bytes / ms (age needs minAgeMs). */
  maxEntriesPerLedger: number;
  maxBytesPerLedger: number;
  maxLedgerAgeMs: number;
  minLedgerAgeMs: number;
  /** Retention of acknowledged data: keep at least this long / this many bytes. -1 = forever. */
  retentionTimeMs: number;
  retentionSizeBytes: number;
  /** Offload closed ledgers once bookie-resident bytes exceed this (-1 = never). */
  offloadThresholdBytes: number;
  /** Offload closed ledgers older than this (-1 = never). */
  offloadAgeMs: number;
  /** Delete the bookie copy this long after offload. */
  offloadDeletionLagMs: number;
  /** Bytes of recent entries kept in memory for tailing reads. */
  cacheBytes: number;
  /** Entries fetched per storage read on catch-up (the next block is read ahead). */
  readBatchEntries: number;
  /** Bytes of read-ahead blocks kept in memory for catch-up readers. */
  readAheadCacheBytes: number;
  /** Longest delay between an ack and its persistence. Larger batches more acks per write; a crash redelivers at most this window. */
  ackFlushDelayMs: number;
  /** Start a new cursor ledger after this many state records. */
  cursorLedgerMaxEntries: number;
  /** Appends waiting (in flight + queued during a rollover) before append rejects with ResourceExhaustedError. */
  maxPendingAppends: number;
  /** How often trimming, the offload policy and trash deletion run in the background. */
  maintenanceIntervalMs: number;
}

export interface LedgerInfo {
  ledgerId: LedgerId;
  entries: number;
  size: number;
  /** Epoch ms of creation. */
  ctime: number;
  offloaded: boolean;
  /** True once the bookie copy is deleted (reads come from the offloader). */
  bookieCopyDeleted: boolean;
  /** Offload object id when offloaded. */
  offloadUuid?: string;
  /** True for the ledger currently written. */
  open: boolean;
}

export interface LogStats {
  entries: number;
  storageBytes: number;
  offloadedBytes: number;
  ledgers: LedgerInfo[];
  cursors: CursorStats[];
}

export interface CursorStats {
  name: string;
  markDelete: Position;
  /** Individually acknowledged ranges above mark-delete. */
  ackRanges: number;
  /** Entries not yet acknowledged. */
  backlog: number;
  /** Entries whose batch is partly acknowledged. */
  partialBatches: number;
  /** The ledger holding the cursor's persisted state, if any. */
  cursorLedgerId?: LedgerId;
}

/** Which cursor position a new cursor starts at. */
export type InitialPosition = 'earliest' | 'latest';

export interface ManagedLog {
  readonly name: string;
  /** Append one entry; resolves with its position once durable (Qa). Parts are stored as one entry. */
  append(payload: EntryBytes): Promise<Position>;
  /** Position of the last durable entry, or undefined when empty. */
  lastPosition(): Position | undefined;
  /** First position still stored (after trimming). */
  firstPosition(): Position | undefined;
  /** Read up to `maxEntries` entries starting at `from` (inclusive). */
  read(from: Position, maxEntries: number): Promise<LogEntry[]>;
  /** Position immediately after `p` (crossing ledgers), or undefined if past the end. */
  nextPosition(p: Position): Position | undefined;
  /**
   * Calls `fn` once when an entry after `p` exists or the log closes (at
   * once if one does now); returns a function that cancels the call. A
   * callback, not a promise: a tailing dispatch loop waits after every round.
   */
  onEntryAfter(p: Position | undefined, fn: () => void): () => void;
  /**
   * Open (or create) a durable cursor. A cursor opened with `holdsTailCache:
   * false` (a bookmark such as the deduplication snapshot's, which never
   * reads the tail) does not keep entries in the tail cache until its
   * mark-delete passes them; the flag applies to an already open cursor too.
   */
  openCursor(name: string, initial?: InitialPosition, opts?: { holdsTailCache?: boolean }): Promise<Cursor>;
  deleteCursor(name: string): Promise<void>;
  cursors(): Cursor[];
  /** Offload every closed ledger now. */
  offloadNow(): Promise<number>;
  /** Trim ledgers no cursor or retention holds. */
  trim(): Promise<number>;
  /**
   * First position whose entry has time >= `time` (binary search; entry times
   * must not decrease along the log), or the position after the last entry
   * when none has. `timeOf` extracts the time from an entry's payload.
   */
  seekByTime(time: number, timeOf: (payload: Buffer) => number): Promise<Position>;
  /** Number of entries after `p` (exclusive) up to the last entry. */
  entriesAfter(p: Position): number;
  /** True once a newer owner fenced this log: every append fails with FencedError. */
  readonly fenced: boolean;
  stats(): LogStats;
  close(): Promise<void>;
  /** Delete the log, its cursors and every ledger. */
  delete(): Promise<void>;
}

export interface Cursor {
  readonly name: string;
  /** Everything <= markDelete is acknowledged. */
  readonly markDelete: Position;
  /** Next position to read for this cursor's dispatcher. */
  readPosition: Position;
  isAcked(p: Position): boolean;
  /** Acknowledge one entry; batched to storage with a bounded delay. */
  ack(p: Position): void;
  /** Acknowledge everything up to and including `p`. */
  ackCumulative(p: Position): void;
  /** Entries not yet acknowledged. */
  backlog(): number;
  /** Individually acked ranges above mark-delete. */
  ackRangeCount(): number;
  /** Move the cursor: everything before `p` is acknowledged, nothing from `p` on. */
  reset(p: Position): Promise<void>;
  /**
   * Acknowledge message `index` of the batch stored in entry `p` (the batch
   * holds `batchSize` messages). The entry counts as acknowledged once every
   * index is; acknowledged members persist as a bitset and are never
   * redelivered.
   */
  ackBatchIndex(p: Position, index: number, batchSize: number): void;
  /** Acknowledged indexes of a partly acknowledged batch, ascending; undefined when none. */
  ackedBatchIndexes(p: Position): number[] | undefined;
  /** First position >= `from` that is not acknowledged (may be past the end). */
  firstUnackedFrom(from: Position): Position;
  /** Persist pending acks now. */
  flush(): Promise<void>;
}

/** Reads an offloaded ledger. */
export interface OffloadedLedgerReader {
  read(first: EntryId, last: EntryId): Promise<LedgerEntry[]>;
  close(): Promise<void>;
}

/** What the managed log hands the offloader: a closed ledger to copy. */
export interface OffloadSource {
  readonly ledgerId: LedgerId;
  readonly metadata: LedgerMetadata;
  /** Last entry id of the (closed) ledger. */
  readonly lastEntryId: EntryId;
  read(first: EntryId, last: EntryId): Promise<LedgerEntry[]>;
}

/**
 * The cold tier as the managed log uses it (implemented over @sluice/offload).
 * `uuid` is chosen by the log and recorded in the ledger list before the
 * upload starts, so a crashed attempt's objects can always be found and deleted.
 */
export interface LogOffloader {
  offload(source: OffloadSource, uuid: string, extra: Record<string, string>): Promise<void>;
  openReader(ledgerId: LedgerId, uuid: string): Promise<OffloadedLedgerReader>;
  /**
   * Check the offload is whole (index checksum, data object size) before the
   * bookie copy goes; resolves with the number of entries its index records.
   * CorruptDataError / NotFoundError when it is not.
   */
  verify(ledgerId: LedgerId, uuid: string): Promise<{ entries: number }>;
  /** Idempotent: deleting missing objects succeeds. */
  delete(ledgerId: LedgerId, uuid: string): Promise<void>;
}

export interface ManagedLogFactoryOptions {
  metadata: MetadataStore;
  ledgers: LedgerClient;
  /** The cold tier (`openOffloader(url)` from @sluice/offload); offload is off without it. */
  offloader?: Offloader;
  clock?: Clock;
  registry?: Registry;
  logger?: Logger;
  /** Defaults for every log opened by this factory. */
  defaults?: Partial<ManagedLogConfig>;
}

export interface SweepOptions {
  /** Only ledgers older than this are candidates (a ledger is created before the list references it). */
  graceMs?: number;
}

export type { EntryId, LedgerEntry, LedgerId, LedgerMetadata, Position };
