import { setTimeout as setTimeoutPromise } from 'node:timers/promises';
import { ClosedError, type Logger } from '@sluice/common';
import { directIoWorks } from './direct-io.js';
import { DirectLog } from './direct-log.js';
import type { Durable } from './durable.js';
import {
  ENTRY_HEADER_BYTES,
  type EntryLocation,
  EntryLogs,
  type ReadOutcome,
  type StoredEntry,
  writeEntryHeader,
} from './entry-log.js';
import type { FileDeleter } from './file-deleter.js';
import { comparePositions, type JournalPosition } from './journal.js';
import { LedgerIndex, type LedgerState } from './ledger-index.js';
import { sameLocation } from './location-table.js';
import type { BookieMetrics } from './metrics.js';
import { WRITE_CACHE_CHUNK_BYTES, WriteCache } from './write-cache.js';

export interface LedgerStorageOptions {
  dir: string;
  entryLogFileBytes: number;
  /** Deleted entry logs kept for reuse (see `entryLogSpareBytes` in the bookie config); default 0. */
  entryLogSpareBytes?: number;
  /** Frees the space of deleted entry logs (at once when absent). */
  deleter?: FileDeleter;
  /** Compaction copies at most this many bytes a second (0 or absent: as fast as it goes). */
  compactionBytesPerSec?: number;
  writeCacheBytes: number;
  /** fdatasync the entry log after this many appended bytes (see `entryLogSyncBytes` in the bookie config). */
  entryLogSyncBytes: number;
  /** Write the direct log with O_DIRECT where the file system takes it (see `entryLogDirectIo` in the bookie config). */
  entryLogDirectIo?: boolean;
  logger: Logger;
  metrics: BookieMetrics;
  now?: () => number;
  /** Called once when an entry log or index write fails (the bookie must stop taking adds). */
  onFailure?: (err: Error) => void;
  /** A ledger's index records are persisted ahead of the checkpoint once this many wait (default `INDEX_SPREAD_RECORDS`). */
  indexSpreadRecords?: number;
}

export type ReadResult =
  | { status: 'OK'; entry: StoredEntry }
  | { status: 'NO_LEDGER' | 'NO_ENTRY' | 'CORRUPT'; message: string };

/** Largest batch the background flusher appends to an entry log in one write. */
const FLUSH_BATCH_BYTES = 1024 * 1024;
/**
 * Past this many unflushed bytes the flusher is behind the adds: it then
 * appends its largest batches and syncs at most every `BEHIND_SYNC_BYTES`,
 * trading the short syncs' latency for throughput while the disk is the
 * limit.
 */
const BEHIND_BYTES = 4 * 1024 * 1024;
const BEHIND_SYNC_BYTES = 8 * 1024 * 1024;
/**
 * The flusher starts once this many bytes wait (at most its batch size), or
 * `FLUSH_LINGER_MS` after the first one arrived. When every add started
 * it, at 5k small adds/s it appended each journal group's few KiB on its
 * own: ~840 writes a second, each ~40 µs of the event loop before it
 * reached the thread pool. The journal holds the entries meanwhile, and reads are served
 * from the write cache, so a later append costs nothing but memory the cache
 * holds anyway until the checkpoint.
 */
const FLUSH_MIN_BYTES = 256 * 1024;
export const FLUSH_LINGER_MS = 20;
const NO_BYTES = Buffer.alloc(0);

/**
 * A ledger with this many index records waiting (256 KiB) has them appended
 * and fsynced on the storage chain, ahead of the checkpoint. At 75k adds/s
 * to one ledger a 10 s checkpoint otherwise fdatasynced 24 MB of index at
 * once, and the journal's fdatasyncs queued behind it on the same disk.
 */
export const INDEX_SPREAD_RECORDS = 8192;

/**
 * Entry logs + index + write cache. Acknowledged entries land in the write
 * cache; a background flusher appends them to the current entry log (plain
 * writes, no fsync); a checkpoint flushes the rest, fsyncs the entry logs,
 * then the index, then records the journal position it covers. All entry log
 * and index work runs on one serial chain, so a checkpoint can never claim
 * an append that is still in flight.
 */
export class LedgerStorage {
  readonly index: LedgerIndex;
  readonly logs: EntryLogs;
  readonly cache: WriteCache;
  readonly direct: DirectLog;
  private chain: Promise<unknown> = Promise.resolve();
  private flushScheduled = false;
  private flushTimer: NodeJS.Timeout | undefined;
  private persistScheduled = false;
  private readonly now: () => number;
  private failure: Error | undefined;
  private lastCheckpoint: JournalPosition = { fileId: 0, offset: 0 };
  private unsyncedBytes = 0;
  private closed = false;
  /**
   * The flusher fdatasyncs the entry log after this many appended bytes and
   * appends at most this much between syncs. Each sync hands the disk one
   * bounded stretch of entry-log data, so a journal fdatasync queued behind
   * it on the same disk waits for little, and a checkpoint never has to push
   * a large backlog at once.
   */
  private readonly syncBytes: number;
  private readonly flushBatchBytes: number;

  constructor(private readonly opts: LedgerStorageOptions) {
    this.index = new LedgerIndex(opts.dir, opts.logger, opts.indexSpreadRecords ?? INDEX_SPREAD_RECORDS);
    this.index.onFull = () => this.schedulePersist();
    // Spare chunks as many as the cache may hold (adds wait at twice
    // `writeCacheBytes`), so a checkpoint's evictions refill the next round
    // whole. With spares for only `writeCacheBytes`, a bookie under full load
    // (the cache past its checkpoint mark while a checkpoint runs) dropped and
    // reallocated ~80 MB/s of 4 MiB chunks; each had lived long enough to be
    // promoted, and V8 ran a full collection every ~250 ms to free them.
    this.cache = new WriteCache(WRITE_CACHE_CHUNK_BYTES, 2 * opts.writeCacheBytes + WRITE_CACHE_CHUNK_BYTES);
    this.logs = new EntryLogs(opts.dir, opts.entryLogFileBytes, opts.entryLogSpareBytes ?? 0, opts.deleter);
    this.direct = new DirectLog(this.logs, opts.entryLogFileBytes, opts.metrics, (err) => this.fail(err));
    this.now = opts.now ?? Date.now;
    this.syncBytes = opts.entryLogSyncBytes;
    this.flushBatchBytes = Math.min(FLUSH_BATCH_BYTES, opts.entryLogSyncBytes);
  }

  /** Load the index and open a fresh entry log; returns where journal replay starts. */
  async open(): Promise<JournalPosition> {
    const from = await this.index.load(this.now());
    await this.logs.open();
    if (this.opts.entryLogDirectIo) {
      const works = await directIoWorks(this.opts.dir);
      if (!works)
        this.opts.logger.warn(
          { dir: this.opts.dir },
          'this file system refuses O_DIRECT: entry logs are written through the page cache',
        );
      this.direct.useDirectIo(works);
    }
    this.lastCheckpoint = from;
    return from;
  }

  get failed(): Error | undefined {
    return this.failure;
  }

  /**
   * Write an entry once, straight to the direct log; returns where it goes
   * at once, and `done.durable` runs once it is durable there. Once its
   * journal ADD_REF record is durable too, call `applyDirect` (or
   * `abandonDirect` when either write failed): until then its log is
   * neither compacted nor deleted, since no index record counts the entry
   * as live yet.
   */
  appendDirect(e: StoredEntry, done: Durable): EntryLocation {
    const header = Buffer.allocUnsafe(ENTRY_HEADER_BYTES);
    writeEntryHeader(header, 0, e, e.payload.length);
    const loc = this.direct.append(header, e.payload, done);
    this.logs.pin(loc.logId);
    return loc;
  }

  /** Index an entry written once whose both writes are durable (see `appendDirect`). */
  applyDirect(e: Omit<StoredEntry, 'payload'>, loc: EntryLocation): void {
    this.applyStored(e, loc);
    this.logs.unpin(loc.logId);
  }

  /** An entry written once that failed: it is never indexed (see `appendDirect`). */
  abandonDirect(loc: EntryLocation): void {
    this.logs.unpin(loc.logId);
  }

  /**
   * Index an entry that journal replay found at `loc`, written before a
   * crash: its log is fdatasynced before the index record can be persisted
   * (see `EntryLogs.adopt`).
   */
  applyReplayed(e: Omit<StoredEntry, 'payload'>, loc: EntryLocation): void {
    this.applyStored(e, loc);
    this.logs.adopt(loc.logId);
  }

  /** Apply an entry already durable at `loc` of an entry log (no cache copy, no flush). */
  applyStored(e: Omit<StoredEntry, 'payload'>, loc: EntryLocation): void {
    const l = this.ledgerOrCreate(e.ledgerId);
    l.noteEntry(e.entryId, e.lac);
    this.index.setLocation(l, e.entryId, loc);
  }

  /** Run `fn` after every earlier entry log / index task. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.chain.then(() => {
      if (this.closed) throw new ClosedError('ledger storage is closed');
      return fn();
    });
    this.chain = p.catch(() => undefined);
    return p;
  }

  ledger(ledgerId: number): LedgerState | undefined {
    return this.index.get(ledgerId);
  }

  ledgerOrCreate(ledgerId: number): LedgerState {
    return this.index.getOrCreate(ledgerId, this.now());
  }

  /** Apply an entry whose journal record is durable. Synchronous: a checkpoint taken after it covers it. */
  applyAdd(e: StoredEntry): void {
    const l = this.ledgerOrCreate(e.ledgerId);
    l.noteEntry(e.entryId, e.lac);
    this.cache.put(e);
    this.scheduleFlush();
  }

  applyFence(ledgerId: number): void {
    this.ledgerOrCreate(ledgerId).fenced = true;
  }

  get cacheBytes(): number {
    return this.cache.bytes;
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.failure) return;
    if (this.cache.unflushed >= Math.min(FLUSH_MIN_BYTES, this.flushBatchBytes)) this.startFlush();
    else if (!this.flushTimer) {
      this.flushTimer = setTimeout(() => this.startFlush(), FLUSH_LINGER_MS);
      this.flushTimer.unref();
    }
  }

  private startFlush(): void {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (this.flushScheduled || this.failure) return;
    this.flushScheduled = true;
    void this.serial(async () => {
      this.flushScheduled = false;
      const behind = this.cache.unflushed > BEHIND_BYTES;
      await this.flushSome(behind ? FLUSH_BATCH_BYTES : this.flushBatchBytes);
      if (this.unsyncedBytes >= (behind ? Math.max(this.syncBytes, BEHIND_SYNC_BYTES) : this.syncBytes)) {
        this.unsyncedBytes = 0;
        const t0 = performance.now();
        await this.logs.sync();
        this.opts.metrics.entryLogSyncSeconds.observe((performance.now() - t0) / 1000);
      }
      this.opts.metrics.writeCacheBytes.set(this.cache.bytes);
      if (this.cache.hasUnflushed) this.scheduleFlush();
    }).catch((err) => this.failInBackground(err as Error));
  }

  /**
   * Persist the index records of busy ledgers (`LedgerIndex.persistFull`).
   * The entry logs are synced first, whatever appended to them (the flusher,
   * compaction), so that no persisted record points at bytes a crash could
   * still take: the same rule as the checkpoint's.
   */
  private schedulePersist(): void {
    if (this.persistScheduled || this.failure) return;
    this.persistScheduled = true;
    void this.serial(async () => {
      this.persistScheduled = false;
      if (this.failure) return;
      await this.logs.sync();
      this.unsyncedBytes = 0;
      await this.index.persistFull();
    }).catch((err) => this.failInBackground(err as Error));
  }

  private async flushSome(maxBytes: number): Promise<void> {
    const batch = this.cache.peekUnflushed(maxBytes);
    if (batch.length === 0) return;
    // A failed write leaves them unflushed: still cached, readable and in the journal.
    const locations = await this.logs.append(batch.map((r) => ({ header: r.record, payload: NO_BYTES })));
    let bytes = 0;
    batch.forEach((r, i) => {
      const l = this.index.get(r.ledgerId);
      // A ledger dropped by GC while its entries waited: nothing to index.
      if (l) this.index.setLocation(l, r.entryId, locations[i]!);
      bytes += locations[i]!.length;
    });
    this.cache.markFlushed(bytes);
    this.opts.metrics.entryLogBytes.inc(bytes);
    this.unsyncedBytes += bytes;
  }

  /** A background task failed; one that found the storage closed (a stop) is no failure. */
  private failInBackground(err: Error): void {
    if (!(err instanceof ClosedError)) this.fail(err);
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    this.opts.logger.error(
      { err },
      'entry log or index write failed; the journal keeps the data until restart',
    );
    this.opts.onFailure?.(err);
  }

  /**
   * Make everything applied before `pos` durable in the entry logs and index,
   * then record `pos` so that replay starts there.
   */
  checkpoint(pos: JournalPosition): Promise<void> {
    // Taken in the caller's turn, with `pos`: entries written once whose
    // ADD_REF records lie before `pos` are applied when it resolves.
    const written = this.direct.barrier();
    return this.serial(async () => {
      await written;
      if (this.failure) throw this.failure;
      // Never move the recorded position backwards: journal files before it may be gone.
      const at = comparePositions(pos, this.lastCheckpoint) < 0 ? this.lastCheckpoint : pos;
      const t0 = process.hrtime.bigint();
      try {
        while (this.cache.hasUnflushed) await this.flushSome(FLUSH_BATCH_BYTES);
        const flushed = this.cache.flushMark();
        await this.logs.sync();
        this.unsyncedBytes = 0;
        await this.index.persist();
        await this.index.writeCheckpoint(at);
        this.lastCheckpoint = at;
        this.cache.evictBefore(flushed);
        this.opts.metrics.writeCacheBytes.set(this.cache.bytes);
      } catch (err) {
        this.fail(err as Error);
        throw err;
      }
      this.opts.metrics.checkpointSeconds.observe(Number(process.hrtime.bigint() - t0) / 1e9);
    });
  }

  async read(ledgerId: number, entryId: number): Promise<ReadResult> {
    const l = this.index.get(ledgerId);
    if (!l) return { status: 'NO_LEDGER', message: `ledger ${ledgerId} is unknown to this bookie` };
    const id = entryId === -1 ? l.lastEntryId : entryId;
    for (let attempt = 0; ; attempt++) {
      const cached = this.cache.get(ledgerId, id);
      if (cached) return { status: 'OK', entry: cached };
      const loc = l.entries.get(id);
      if (!loc)
        return { status: 'NO_ENTRY', message: `entry ${ledgerId}:${id} is not stored on this bookie` };
      let out: ReadOutcome;
      try {
        out = await this.logs.read(loc, ledgerId, id);
      } catch (err) {
        // Compaction moved the entry and deleted its old log between lookup and open: look again.
        if ((err as NodeJS.ErrnoException).code === 'ENOENT' && attempt < 2) continue;
        throw err;
      }
      if (out.ok) return { status: 'OK', entry: out.entry };
      // The log was deleted under the read (its entries moved, or the ledger dropped): look again.
      if (!this.logs.sizes.has(loc.logId) && attempt < 2) continue;
      this.opts.logger.error({ ledgerId, entryId: id, loc, reason: out.reason }, 'stored entry is corrupt');
      return {
        status: 'CORRUPT',
        message: `entry ${ledgerId}:${id} failed verification on this bookie: ${out.reason}`,
      };
    }
  }

  /** Drop a deleted ledger from the cache, index and checkpoint. */
  dropLedger(ledgerId: number, checkpointPos: () => JournalPosition): Promise<void> {
    return this.serial(async () => {
      this.cache.dropLedger(ledgerId);
      await this.index.drop(ledgerId);
    }).then(() => this.checkpoint(checkpointPos()));
  }

  /** Deleted entry logs kept for reuse. */
  get spareLogs(): { count: number; bytes: number } {
    return this.logs.spareLogs;
  }

  /** Delete the deleted entry logs kept for reuse (the disk fills up); returns how many. */
  dropSpareLogs(): Promise<number> {
    return this.logs.dropSpares();
  }

  /** Entry logs (other than the one being written) whose live fraction is below `threshold`. */
  compactionCandidates(threshold: number): number[] {
    const out: number[] = [];
    for (const [logId, size] of this.logs.sizes) {
      if (this.logs.isActive(logId) || size === 0) continue;
      const live = this.index.liveBytes.get(logId) ?? 0;
      if (live / size < threshold) out.push(logId);
    }
    return out.sort((a, b) => a - b);
  }

  /**
   * Copy the live entries of `logId` to the current log in small steps (adds
   * and the flusher interleave between steps), make the copies durable, then
   * delete the old log. Raw records are copied unverified so that corruption
   * stays detectable rather than being laundered with a fresh CRC.
   */
  async compact(logId: number, checkpointPos: () => JournalPosition): Promise<number> {
    const live: { l: LedgerState; entryId: number; loc: EntryLocation }[] = [];
    for (const l of this.index.ledgers.values()) {
      l.entries.each((entryId, at, offset, length) => {
        if (at === logId) live.push({ l, entryId, loc: { logId, offset, length } });
      });
    }
    const rate = this.opts.compactionBytesPerSec ?? 0;
    for (let i = 0; i < live.length; ) {
      const t0 = performance.now();
      const step: typeof live = [];
      let bytes = 0;
      while (i < live.length && (step.length === 0 || bytes < FLUSH_BATCH_BYTES)) {
        bytes += live[i]!.loc.length;
        step.push(live[i++]!);
      }
      await this.serial(async () => {
        const moving = step.filter(
          (s) => this.index.get(s.l.ledgerId) === s.l && sameLocation(s.l.entries.get(s.entryId), s.loc),
        );
        if (moving.length === 0) return;
        const raws = await Promise.all(moving.map((s) => this.logs.readRaw(s.loc)));
        const locs = await this.logs.append(raws.map((raw) => ({ header: raw, payload: Buffer.alloc(0) })));
        moving.forEach((s, k) => {
          // An add may have replaced the entry while we read it; the newer copy wins.
          if (sameLocation(s.l.entries.get(s.entryId), s.loc))
            this.index.setLocation(s.l, s.entryId, locs[k]!);
        });
        this.opts.metrics.entryLogBytes.inc(bytes);
      });
      // Paced outside the serial chain: adds, the flusher and checkpoints go on
      // meanwhile. The last step waits too, so the pace holds across logs.
      const waitMs = rate > 0 ? (bytes / rate) * 1000 - (performance.now() - t0) : 0;
      if (waitMs > 0 && !this.closed) await setTimeoutPromise(waitMs);
    }
    await this.checkpoint(checkpointPos());
    return this.serial(async () => {
      const remaining = this.index.liveBytes.get(logId) ?? 0;
      if (remaining > 0) return 0;
      await this.logs.delete(logId);
      this.index.liveBytes.delete(logId);
      this.opts.metrics.compactedLogs.inc();
      return 1;
    });
  }

  async close(): Promise<void> {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    await this.direct.closeAll();
    await this.serial(async () => {
      this.closed = true;
      await this.logs.close();
    });
  }
}
