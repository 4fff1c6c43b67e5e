/**
 * Public surface of the managed log (DESIGN §5): a topic's unbounded log built
 * from ledgers, with one cursor per subscription.
 */
import type { EntryId, LedgerId, Position } from '@sluice/common';

export interface LogEntry {
  position: Position;
  payload: Buffer;
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
}

/** Which cursor position a new cursor starts at. */
export type InitialPosition = 'earliest' | 'latest';

export interface ManagedLog {
  readonly name: string;
  /** Append one entry; resolves with its position once durable (Qa). */
  append(payload: Buffer): Promise<Position>;
  /** Position of the last durable entry, or undefined when empty. */
  lastPosition(): Position | undefined;
  /** First position still stored (after trimming). */
  firstPosition(): Position | undefined;
  /** Read up to `maxEntries` entries starting at `from` (inclusive). */
  read(from: Position, maxEntries: number): Promise<LogEntry[]>;
  /** Position immediately after `p` (crossing ledgers), or undefined if past the end. */
  nextPosition(p: Position): Position | undefined;
  /** Resolves when an entry after `p` exists (or the log closes). */
  waitForEntryAfter(p: Position | undefined, signal?: AbortSignal): Promise<void>;
  openCursor(name: string, initial?: InitialPosition): Promise<Cursor>;
  deleteCursor(name: string): Promise<void>;
  cursors(): Cursor[];
  /** Offload every closed ledger now. */
  offloadNow(): Promise<number>;
  /** Trim ledgers no cursor or retention holds. */
  trim(): Promise<number>;
  stats(): LogStats;
  /** Find the first position whose entry satisfies `pred` (binary search by publish time etc.). */
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
  /** Persist pending acks now. */
  flush(): Promise<void>;
}

export type { EntryId, LedgerId, Position };
