import { crc32c, type Logger } from '@sluice/common';
import type { EntryStatusName } from '@sluice/proto';
import type { Durable } from './durable.js';
import type { EntryLocation, StoredEntry } from './entry-log.js';
import { FileDeleter } from './file-deleter.js';
import { Journal } from './journal.js';
import { fenceRecord, type JournalRecord, RecordType, refLocation, refRecord } from './journal-record.js';
import { LedgerStorage, type ReadResult } from './ledger-storage.js';
import type { BookieMetrics } from './metrics.js';

export type { EntryStatusName };

export interface Outcome {
  status: EntryStatusName;
  message: string;
}

export interface AddRequest {
  ledgerId: number;
  entryId: number;
  lac: number;
  payload: Buffer;
  crc32c: number;
  /** The writer's total payload length of the ledger up to and including this entry (0: not given). */
  ledgerLength: number;
}

export interface BookieStoreOptions {
  journalDir: string;
  ledgerDir: string;
  journalGroupBytes: number;
  journalGroupWaitMs: number;
  journalMaxWritesInFlight: number;
  journalFileBytes: number;
  journalSync: boolean;
  journalPreallocBytes: number;
  entryLogFileBytes: number;
  /** Deleted entry logs kept for reuse (see the bookie config); default 0. */
  entryLogSpareBytes?: number;
  /** Bytes per second at which deleted journal files and entry logs are freed (see the bookie config); 0 or absent: at once. */
  fileDeleteBytesPerSec?: number;
  /** Bytes per second compaction copies at most (see the bookie config); 0 or absent: unpaced. */
  compactionBytesPerSec?: number;
  checkpointIntervalMs: number;
  writeCacheBytes: number;
  entryLogSyncBytes: number;
  /** Entries of at least this many payload bytes are written once (see the bookie config); 0: never. */
  entryLogDirectBytes: number;
  /** ...while at least this many journal bytes wait behind the group being written (0: always). */
  entryLogDirectBacklogBytes: number;
  /** Write entries that are written once with O_DIRECT where the file system takes it. */
  entryLogDirectIo?: boolean;
  maxEntryBytes: number;
  logger: Logger;
  metrics: BookieMetrics;
  /** A ledger's index records are persisted ahead of the checkpoint once this many wait (tests lower it). */
  indexSpreadRecords?: number;
}

export type ReadOnlyReason = 'disk' | 'io';

const OK: Outcome = { status: 'OK', message: '' };
const invalid = (message: string): Outcome => ({ status: 'INVALID', message });

/** An add the store accepted: its entry, and whom to tell the outcome. */
abstract class AcceptedAdd implements StoredEntry {
  readonly ledgerId: number;
  readonly entryId: number;
  readonly lac: number;
  readonly crc32c: number;
  readonly ledgerLength: number;
  readonly payload: Buffer;

  constructor(
    e: AddRequest,
    readonly done: (o: Outcome) => void,
  ) {
    this.ledgerId = e.ledgerId;
    this.entryId = e.entryId;
    this.lac = e.lac;
    this.crc32c = e.crc32c >>> 0;
    this.ledgerLength = e.ledgerLength;
    this.payload = e.payload;
  }
}

/**
 * A large entry that is written once: straight to the direct entry log, with
 * an ADD_REF record in the journal queued in the same turn (so it keeps its
 * order against FENCE records). Both writes run side by side; the add is
 * applied and acknowledged once both are durable.
 *
 * One object per add is the stored entry, its state and the target of both
 * writes' completions. The bytes a bookie allocates per add set how often V8
 * stops it for a scavenge: with a closure and object spreads instead, 16 KiB
 * adds allocated 3.0 KB each on this path (the store driven in-process,
 * sampled with V8's heap profiler), 1.7 KB with this and no closure in
 * `validate`.
 */
class DirectAdd extends AcceptedAdd implements Durable {
  loc: EntryLocation | undefined = undefined;
  private waiting = 2;
  private failure: Error | undefined = undefined;

  constructor(
    e: AddRequest,
    done: (o: Outcome) => void,
    private readonly settled: (add: DirectAdd, failure: Error | undefined) => void,
  ) {
    super(e, done);
  }

  durable(err: Error | undefined): void {
    if (err) this.failure ??= err;
    if (--this.waiting === 0) this.settled(this, this.failure);
  }
}

/**
 * An entry added through the journal: one object is its journal record,
 * what the write cache copies in once the record is durable, and the target
 * of the journal's completion (see `DirectAdd` for why not a closure).
 */
class JournalAdd extends AcceptedAdd implements JournalRecord, Durable {
  readonly type = RecordType.ADD;

  constructor(
    e: AddRequest,
    done: (o: Outcome) => void,
    private readonly settled: (add: JournalAdd, err: Error | undefined) => void,
  ) {
    super(e, done);
  }

  get payloadCrc(): number {
    return this.crc32c;
  }

  durable(err: Error | undefined): void {
    this.settled(this, err);
  }
}

/**
 * The storage engine of a bookie: adds go through the group-committed
 * journal and, once durable, into ledger storage; fences likewise. It owns
 * the checkpoint schedule and the writable / read-only state.
 */
export class BookieStore {
  readonly journal: Journal;
  readonly storage: LedgerStorage;
  readonly deleter: FileDeleter;
  private checkpointTimer: NodeJS.Timeout | undefined;
  private checkpointing: Promise<void> | undefined;
  private readonly readOnlyReasons = new Map<ReadOnlyReason, string>();
  private readonly stateListeners: ((readOnly: boolean) => void)[] = [];
  private cacheWaiters: (() => void)[] = [];
  /** FENCE records queued but not yet durable, by ledger. */
  private readonly fencing = new Map<number, Promise<Error | undefined>>();
  private closed = false;

  constructor(private readonly opts: BookieStoreOptions) {
    this.deleter = new FileDeleter({ bytesPerSec: opts.fileDeleteBytesPerSec ?? 0, logger: opts.logger });
    this.journal = new Journal({
      deleter: this.deleter,
      dir: opts.journalDir,
      groupBytes: opts.journalGroupBytes,
      groupWaitMs: opts.journalGroupWaitMs,
      fileBytes: opts.journalFileBytes,
      sync: opts.journalSync,
      preallocBytes: opts.journalPreallocBytes,
      maxWritesInFlight: opts.journalMaxWritesInFlight,
      logger: opts.logger,
      metrics: opts.metrics,
    });
    this.storage = new LedgerStorage({
      dir: opts.ledgerDir,
      entryLogFileBytes: opts.entryLogFileBytes,
      entryLogSpareBytes: opts.entryLogSpareBytes ?? 0,
      deleter: this.deleter,
      compactionBytesPerSec: opts.compactionBytesPerSec ?? 0,
      writeCacheBytes: opts.writeCacheBytes,
      entryLogSyncBytes: opts.entryLogSyncBytes,
      entryLogDirectIo: opts.entryLogDirectIo,
      logger: opts.logger,
      metrics: opts.metrics,
      onFailure: (err) => this.setReadOnly('io', `ledger storage I/O error: ${err.message}`),
      indexSpreadRecords: opts.indexSpreadRecords,
    });
  }

  /** Load the index, replay the journal since the last checkpoint, and start accepting adds. */
  async open(): Promise<void> {
    const from = await this.storage.open();
    // Files a stop left half freed: both directories (one when they are the same).
    for (const dir of new Set([this.opts.journalDir, this.opts.ledgerDir])) await this.deleter.resume(dir);
    let replayed = 0;
    let unwritten = 0;
    // Log sizes do not change during replay: one stat per log, not per reference.
    const logSizes = new Map<number, Promise<number>>();
    const count = await this.journal.replay(from, async (rec, end) => {
      if (rec.type === RecordType.FENCE) this.storage.applyFence(rec.ledgerId);
      else if (rec.type === RecordType.ADD_REF) {
        const loc = refLocation(rec.payload);
        const meta = {
          ledgerId: rec.ledgerId,
          entryId: rec.entryId,
          lac: rec.lac,
          crc32c: rec.payloadCrc,
          ledgerLength: rec.ledgerLength,
        };
        // Past the end of its log, in its zero padding, or where another
        // record lies (the log's id was taken again after a crash) the entry
        // never became durable, so its add was never acknowledged (see
        // `EntryLogs.holdsEntry`). The payload is verified on read.
        let size = logSizes.get(loc.logId);
        if (size === undefined) {
          size = this.storage.logs.fileSize(loc.logId);
          logSizes.set(loc.logId, size);
        }
        if (await this.storage.logs.holdsEntry(loc, await size, meta)) {
          this.storage.applyReplayed(meta, loc);
          replayed++;
        } else unwritten++;
      } else if (rec.type === RecordType.ADD) {
        this.storage.applyAdd({
          ledgerId: rec.ledgerId,
          entryId: rec.entryId,
          lac: rec.lac,
          crc32c: rec.payloadCrc,
          ledgerLength: rec.ledgerLength,
          // The replay buffer is reused: keep a private copy.
          payload: Buffer.from(rec.payload),
        });
        replayed++;
      }
      if (this.storage.cacheBytes > this.opts.writeCacheBytes) await this.storage.checkpoint(end);
    });
    await this.journal.start();
    // The checkpoint arms the checkpoint timer.
    await this.checkpoint();
    if (unwritten > 0) {
      this.opts.logger.warn(
        { unwritten },
        'journal named entries not found where it says (direct writes that never completed: adds that were not acknowledged); skipped',
      );
    }
    this.opts.logger.info({ from, records: count, entries: replayed }, 'journal replayed');
  }

  get readOnly(): boolean {
    return this.readOnlyReasons.size > 0;
  }

  readOnlyMessage(): string {
    return [...this.readOnlyReasons.values()].join('; ');
  }

  onStateChange(listener: (readOnly: boolean) => void): void {
    this.stateListeners.push(listener);
  }

  setReadOnly(reason: ReadOnlyReason, message: string | undefined): void {
    const before = this.readOnly;
    if (message === undefined) this.readOnlyReasons.delete(reason);
    else this.readOnlyReasons.set(reason, message);
    this.opts.metrics.readOnly.set(this.readOnly ? 1 : 0);
    if (before !== this.readOnly) for (const l of this.stateListeners) l(this.readOnly);
  }

  private refuseAdds(): Outcome | undefined {
    if (this.journal.failed || this.storage.failed) {
      const err = this.journal.failed ?? this.storage.failed!;
      return {
        status: 'IO_ERROR',
        message: `bookie failed to persist data (${err.message}); it accepts no adds until restarted`,
      };
    }
    if (this.readOnlyReasons.has('disk')) {
      return { status: 'READ_ONLY', message: `RESOURCE_EXHAUSTED: ${this.readOnlyReasons.get('disk')}` };
    }
    // Registered read-only must mean refusing adds: a writer that keeps
    // adding here would not replace this bookie.
    if (this.readOnlyReasons.has('io')) {
      return {
        status: 'IO_ERROR',
        message: `bookie is read-only after an I/O error (${this.readOnlyReasons.get('io')}); it accepts no adds until restarted`,
      };
    }
    if (this.closed)
      return { status: 'READ_ONLY', message: 'bookie is shutting down; add to another bookie' };
    return undefined;
  }

  /** Checks an entry before anything is stored; undefined when it is acceptable. */
  validate(e: AddRequest): Outcome | undefined {
    if (!Number.isSafeInteger(e.ledgerId) || e.ledgerId < 0) {
      return invalid(`ledger id ${e.ledgerId} is invalid; it must be an integer in [0, 2^53)`);
    }
    if (!Number.isSafeInteger(e.entryId) || e.entryId < 0) {
      return invalid(
        `entry id ${e.entryId} of ledger ${e.ledgerId} is invalid; it must be an integer in [0, 2^53)`,
      );
    }
    if (!Number.isSafeInteger(e.lac) || e.lac < -1) {
      return invalid(
        `lac ${e.lac} of entry ${e.ledgerId}:${e.entryId} is invalid; it must be -1 or an entry id`,
      );
    }
    if (
      !Number.isSafeInteger(e.ledgerLength) ||
      e.ledgerLength < 0 ||
      (e.ledgerLength > 0 && e.ledgerLength < e.payload.length)
    ) {
      return invalid(
        `ledger length ${e.ledgerLength} of entry ${e.ledgerId}:${e.entryId} is invalid; it must be 0 (unknown) or the ledger's payload bytes up to and including this entry (at least ${e.payload.length})`,
      );
    }
    if (e.payload.length > this.opts.maxEntryBytes) {
      return invalid(
        `entry ${e.ledgerId}:${e.entryId} has ${e.payload.length} payload bytes, over the max entry size of ${this.opts.maxEntryBytes}`,
      );
    }
    const crc = crc32c(e.payload);
    if (crc !== e.crc32c >>> 0) {
      return invalid(
        `entry ${e.ledgerId}:${e.entryId} arrived with CRC32C ${e.crc32c >>> 0} but its payload has ${crc}; resend it`,
      );
    }
    return undefined;
  }

  /** Add one entry; resolves once it is durable (OK) or refused. */
  add(e: AddRequest, recovery: boolean): Promise<Outcome> {
    return new Promise((resolve) => this.addThen(e, recovery, resolve));
  }

  /**
   * `add` for the hot paths: `done` gets the outcome (synchronously when the
   * add is refused on arrival), without a promise or an async frame per add.
   */
  addThen(e: AddRequest, recovery: boolean, done: (o: Outcome) => void): void {
    const refused = this.refuseAdds() ?? this.validate(e) ?? this.fencedOutcome(e.ledgerId, recovery);
    if (refused) {
      done(refused);
      return;
    }
    if (this.storage.cacheBytes > 2 * this.opts.writeCacheBytes) {
      void this.waitForCacheSpace().then(() => {
        // A fence may have completed while this add waited: check again, in
        // the same turn as the append.
        const late = this.refuseAdds() ?? this.fencedOutcome(e.ledgerId, recovery);
        if (late) done(late);
        else this.append(e, done);
      });
      return;
    }
    this.append(e, done);
  }

  private append(e: AddRequest, done: (o: Outcome) => void): void {
    const direct = this.opts.entryLogDirectBytes;
    if (
      direct > 0 &&
      e.payload.length >= direct &&
      this.journal.backlogBytes >= this.opts.entryLogDirectBacklogBytes
    ) {
      this.appendDirect(e, done);
      return;
    }
    const add = new JournalAdd(e, done, this.journalSettled);
    this.journal.append(add, add);
  }

  /** A journal-path add's record is durable (or failed). */
  private readonly journalSettled = (add: JournalAdd, err: Error | undefined): void => {
    if (err) {
      this.setReadOnly('io', `journal I/O error: ${err.message}`);
      add.done(this.refuseAdds() ?? { status: 'IO_ERROR', message: err.message });
      return;
    }
    this.storage.applyAdd(add);
    if (this.storage.cacheBytes > this.opts.writeCacheBytes) this.triggerCheckpoint();
    add.done(OK);
  };

  /** Write a large entry once (see `DirectAdd`). */
  private appendDirect(e: AddRequest, done: (o: Outcome) => void): void {
    const add = new DirectAdd(e, done, this.directSettled);
    const loc = this.storage.appendDirect(add, add);
    add.loc = loc;
    this.journal.append(refRecord(add, loc), add);
  }

  /** Both writes of a direct add settled (`failure` set when either failed). */
  private readonly directSettled = (add: DirectAdd, failure: Error | undefined): void => {
    if (failure) {
      this.storage.abandonDirect(add.loc!);
      this.setReadOnly('io', `I/O error: ${failure.message}`);
      add.done(this.refuseAdds() ?? { status: 'IO_ERROR', message: failure.message });
      return;
    }
    this.storage.applyDirect(add, add.loc!);
    this.opts.metrics.entriesWrittenOnce.inc();
    add.done(OK);
  };

  /** Fence a ledger durably; returns its LAC and last entry after the fence. */
  async fence(ledgerId: number): Promise<Outcome & { lac: number; lastEntryId: number }> {
    if (!Number.isSafeInteger(ledgerId) || ledgerId < 0) {
      return { status: 'INVALID', message: `ledger id ${ledgerId} is invalid`, lac: -1, lastEntryId: -1 };
    }
    let durable = this.fencing.get(ledgerId);
    if (!this.storage.ledger(ledgerId)?.fenced) {
      // The flag goes up before the FENCE record is queued: every add checks
      // it in the same turn as its own append, so an add queued after the
      // FENCE record is refused, and one queued before it is durable (and
      // counted in the answer) before the fence is. Setting it only once the
      // record was fsynced let an add slip into the next journal group and be
      // acked OK after this fence had answered.
      this.storage.applyFence(ledgerId);
      const pending = new Promise<Error | undefined>((resolve) =>
        this.journal.append(fenceRecord(ledgerId), resolve),
      );
      durable = pending;
      this.fencing.set(ledgerId, pending);
      void pending.then(() => {
        if (this.fencing.get(ledgerId) === pending) this.fencing.delete(ledgerId);
      });
    }
    // Adds written once that were queued before the fence may still be in
    // their entry-log write after the FENCE record is durable: they are
    // acknowledged, so the answer must count them.
    const written = this.storage.direct.barrier();
    // A second fence of the same ledger waits for the first one's record too.
    const err = durable ? await durable : undefined;
    await written;
    if (err) {
      this.setReadOnly('io', `journal I/O error: ${err.message}`);
      return {
        status: 'IO_ERROR',
        message: `fence of ledger ${ledgerId} failed: ${err.message}`,
        lac: -1,
        lastEntryId: -1,
      };
    }
    const after = this.storage.ledger(ledgerId);
    return { ...OK, lac: after?.lac ?? -1, lastEntryId: after?.lastEntryId ?? -1 };
  }

  private fencedOutcome(ledgerId: number, recovery: boolean): Outcome | undefined {
    if (recovery || !this.storage.ledger(ledgerId)?.fenced) return undefined;
    return { status: 'FENCED', message: `ledger ${ledgerId} is fenced; a newer writer took it over` };
  }

  async read(ledgerId: number, entryId: number): Promise<ReadResult> {
    const r = await this.storage.read(ledgerId, entryId);
    if (r.status !== 'NO_ENTRY') return r;
    const suspect = this.storage.ledger(ledgerId)?.suspect;
    // NO_ENTRY counts toward a recovery's "nobody has it" rule; with a damaged
    // index this bookie cannot know that, so it must not say so.
    if (suspect) return { status: 'CORRUPT', message: `${r.message}, but its index is damaged: ${suspect}` };
    return r;
  }

  lac(ledgerId: number): { lac: number; lastEntryId: number } | undefined {
    const l = this.storage.ledger(ledgerId);
    return l ? { lac: l.lac, lastEntryId: l.lastEntryId } : undefined;
  }

  private waitForCacheSpace(): Promise<void> {
    this.triggerCheckpoint();
    return new Promise((resolve) => this.cacheWaiters.push(resolve));
  }

  /** (Re)arm the one checkpoint timer; a second live timer would outlive close(). */
  private scheduleCheckpoint(): void {
    if (this.checkpointTimer) clearTimeout(this.checkpointTimer);
    this.checkpointTimer = undefined;
    if (this.closed) return;
    this.checkpointTimer = setTimeout(() => {
      this.checkpointTimer = undefined;
      this.triggerCheckpoint();
    }, this.opts.checkpointIntervalMs);
  }

  private triggerCheckpoint(): void {
    if (this.checkpointing || this.closed) return;
    void this.checkpoint().catch((err) => {
      this.opts.logger.error(
        { err },
        'checkpoint failed; adds stop until restart, the journal keeps the data',
      );
      this.setReadOnly('io', `checkpoint failed: ${(err as Error).message}`);
    });
  }

  /** Make everything acknowledged so far durable in entry logs + index, then trim the journal. */
  checkpoint(): Promise<void> {
    if (this.checkpointing) return this.checkpointing.then(() => this.checkpoint());
    const run = async () => {
      if (this.checkpointTimer) clearTimeout(this.checkpointTimer);
      this.checkpointTimer = undefined;
      try {
        const pos = this.journal.syncedPosition;
        await this.storage.checkpoint(pos);
        try {
          await this.journal.deleteBefore(pos);
        } catch (err) {
          // The data is safe (the checkpoint is durable); the old journal
          // files only cost disk, and the next checkpoint retries the trim.
          // Not a reason to stop taking adds: the disk watchdog covers space.
          this.opts.logger.warn({ err }, 'journal trim failed; retried at the next checkpoint');
        }
      } finally {
        this.checkpointing = undefined;
        for (const w of this.cacheWaiters.splice(0)) w();
        this.scheduleCheckpoint();
      }
    };
    this.checkpointing = run();
    return this.checkpointing;
  }

  /** Current journal position whose records are all applied (for storage maintenance checkpoints). */
  position() {
    return this.journal.syncedPosition;
  }

  /**
   * Stop at once without a final checkpoint, leaving what a crash would: the
   * next start replays the journal. For failed storage and crash tests.
   */
  async abort(): Promise<void> {
    this.closed = true;
    if (this.checkpointTimer) clearTimeout(this.checkpointTimer);
    this.checkpointTimer = undefined;
    await this.journal.close();
    await this.checkpointing?.catch(() => undefined);
    if (this.checkpointTimer) clearTimeout(this.checkpointTimer);
    for (const w of this.cacheWaiters.splice(0)) w();
    await this.storage.close().catch(() => undefined);
    await this.deleter.close();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.journal.close();
    if (this.checkpointTimer) clearTimeout(this.checkpointTimer);
    this.checkpointTimer = undefined;
    if (!this.journal.failed && !this.storage.failed) {
      try {
        await this.checkpoint();
      } catch (err) {
        this.opts.logger.warn({ err }, 'final checkpoint failed; the journal will be replayed at start');
      }
    }
    if (this.checkpointTimer) clearTimeout(this.checkpointTimer);
    this.checkpointTimer = undefined;
    for (const w of this.cacheWaiters.splice(0)) w();
    await this.storage.close();
    await this.deleter.close();
  }
}
