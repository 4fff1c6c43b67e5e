import {
  backoffDelay,
  ClosedError,
  FencedError,
  InvalidArgumentError,
  isRetriable,
  type LedgerId,
  type Position,
  ResourceExhaustedError,
  type Timer,
} from '@sluice/common';
import { isEntryTooLarge, type LedgerMetadata, type LedgerWriter, MAX_ENTRY_BYTES } from '@sluice/ledger';
import type { EntryBytes } from './api.js';
import { entryByteLength } from './entry-bytes.js';
import { newestLedgerId, type SealedSize, sealOrTrash, trashUnused } from './ledger-list.js';
import type { LogContext } from './log-context.js';
import { ledgerCustom } from './log-keys.js';
import { isLedgerLost, sealLedger } from './log-recovery.js';
import { DEFAULT_SWEEP_GRACE_MS } from './orphan-sweeper.js';

/**
 * Oldest ledger a failed rollover created that the next rollover may still
 * use. Well under the sweeper's default grace: an unlisted ledger younger
 * than that is never swept, so one checked at this age is still there when
 * the list write right after the check records it.
 */
export const SPARE_MAX_AGE_MS = DEFAULT_SWEEP_GRACE_MS / 2;

/** Dropped spares remembered until a list write trashes them; older ones are left to the sweeper. */
const MAX_DROPPED_SPARES = 16;

interface PendingAppend {
  payload: EntryBytes;
  bytes: number;
  resolve: (p: Position) => void;
  reject: (err: unknown) => void;
  started: number;
  /** Set once the current ledger acknowledged it (resolution waits for every earlier one). */
  entryId?: number;
}

/**
 * 'unsealed': the last rollover stopped part-way (the full ledger could not
 * be sealed, no new ledger could be created, or the list update failed), so
 * the list does not yet record the full ledger sealed; the next append
 * retries the rollover. 'failed': the open ledger lost its metadata after
 * acknowledging entries; every append fails with that error.
 */
type WriterState = 'writing' | 'rolling' | 'unsealed' | 'failed' | 'fenced' | 'closed';

/**
 * The append path of a log: many appends in flight on the open ledger,
 * resolved in order; rollover by entries, bytes or age (after a minimum age)
 * and when the ledger fails in a way its own ensemble change could not fix.
 * On such a failure every append not yet acknowledged is re-issued, in
 * order, on the new ledger; an entry that reached bookies but was never
 * acknowledged may then exist twice (at-least-once), never zero times.
 */
export class LogWriter {
  private writer: LedgerWriter | undefined;
  private state: WriterState = 'rolling';
  private inflight: PendingAppend[] = [];
  private queued: PendingAppend[] = [];
  /** Bumped for every new ledger: callbacks of an abandoned ledger are ignored. */
  private generation = 0;
  private issuedEntries = 0;
  private issuedBytes = 0;
  private confirmedEntries = 0;
  private confirmedBytes = 0;
  private ledgerCtime = 0;
  private rolling: Promise<void> | undefined;
  private ageTimer: Timer | undefined;
  /** Waiting for every in-flight append to settle: a rollover and close() may both wait. */
  private drainWaiters: (() => void)[] = [];
  /** close() was called: no new rollover starts (close seals the ledger itself). */
  private closeRequested = false;
  /**
   * A ledger a failed rollover created but could not record: the next
   * rollover uses it rather than delete it, since a list write whose answer
   * was lost may have recorded it. It is unlisted, so the orphan sweeper may
   * delete it once it is old: the next rollover checks it first (`usableSpareOrNew`).
   */
  private spare: LedgerWriter | undefined;
  /** Spares found unusable: closed, to be trashed (and unlisted) by the next list write. */
  private droppedSpares: LedgerId[] = [];
  /** Why the writer is 'failed'. */
  private failure: unknown;
  /** Rollovers after write failures since the last acknowledged append. */
  private failedRolls = 0;
  /** The age timer is set to roll this full ledger once it reaches the minimum age. */
  private sizeRollArmed = false;

  constructor(
    private readonly ctx: LogContext,
    private readonly onConfirmed: (p: Position, payload: EntryBytes, bytes: number) => void,
    private readonly onRolled: () => void,
  ) {
    ctx.openEntries = (ledgerId) => (this.writer?.ledgerId === ledgerId ? this.confirmedEntries : 0);
    ctx.onFenced(() => this.failAll(ctx.fencedError()));
  }

  get openLedgerId(): LedgerId | undefined {
    return this.writer?.ledgerId;
  }

  get openLedgerBytes(): number {
    return this.confirmedBytes;
  }

  /** Take over a ledger that is already in the list (created at open). */
  start(writer: LedgerWriter): void {
    this.install(writer);
  }

  append(payload: EntryBytes): Promise<Position> {
    if (this.state === 'fenced' || this.ctx.fenced) return Promise.reject(this.ctx.fencedError());
    if (this.state === 'failed') return Promise.reject(this.failure);
    if (this.state === 'closed') {
      return Promise.reject(new ClosedError(`managed log '${this.ctx.name}' is closed; reopen it to append`));
    }
    const bytes = entryByteLength(payload);
    const max = this.ctx.ledgers.maxEntryBytes ?? MAX_ENTRY_BYTES;
    if (bytes > max) {
      // Refused here, not by the ledger: the append never enters the pipeline.
      return Promise.reject(
        new InvalidArgumentError(
          `entry of ${bytes} bytes exceeds the largest a ledger stores (${max} bytes); send smaller messages or batches`,
          { details: { entryBytes: String(bytes), maxEntryBytes: String(max) } },
        ),
      );
    }
    if (this.inflight.length + this.queued.length >= this.ctx.config.maxPendingAppends) {
      return Promise.reject(
        new ResourceExhaustedError(
          `managed log '${this.ctx.name}' has ${this.ctx.config.maxPendingAppends} appends pending; ` +
            'wait for earlier appends or raise maxPendingAppends',
        ),
      );
    }
    return new Promise<Position>((resolve, reject) => {
      const p: PendingAppend = {
        payload,
        bytes,
        resolve,
        reject,
        started: this.ctx.clock.now(),
      };
      if (this.mayIssue()) this.issue(p);
      else {
        this.queued.push(p);
        if (this.state === 'writing') this.maybeRoll();
        else if (this.state === 'unsealed') void this.rollover('retry-seal');
      }
    });
  }

  private full(): boolean {
    const c = this.ctx.config;
    return this.issuedEntries >= c.maxEntriesPerLedger || this.issuedBytes >= c.maxBytesPerLedger;
  }

  /**
   * A full ledger younger than the minimum age keeps taking appends (as
   * Pulsar's does) and rolls once it reaches that age: holding appends back
   * instead stalled every producer for the rest of the minimum age whenever a
   * fast producer filled a ledger early (seconds at 40 MB/s).
   */
  private mayIssue(): boolean {
    if (this.state !== 'writing') return false;
    if (!this.full()) return true;
    const age = this.ctx.clock.now() - this.ledgerCtime;
    if (age >= this.ctx.config.minLedgerAgeMs) return false;
    if (!this.sizeRollArmed) {
      this.sizeRollArmed = true;
      this.armTimer(this.ctx.config.minLedgerAgeMs - age);
    }
    return true;
  }

  private maybeRoll(): void {
    if (this.rolling) return;
    const age = this.ctx.clock.now() - this.ledgerCtime;
    if (age >= this.ctx.config.minLedgerAgeMs) {
      this.rollover('size');
      return;
    }
    // Full but younger than the minimum age: appends wait until it may roll.
    this.armTimer(this.ctx.config.minLedgerAgeMs - age);
  }

  private issue(p: PendingAppend): void {
    const writer = this.writer!;
    const gen = this.generation;
    this.inflight.push(p);
    this.issuedEntries++;
    this.issuedBytes += p.bytes;
    writer.addEntry(p.payload).then(
      (entryId) => {
        if (gen !== this.generation) return;
        p.entryId = entryId;
        this.settleInOrder(writer.ledgerId);
      },
      (err) => {
        if (gen !== this.generation) return;
        this.onWriteError(err, p, writer.ledgerId);
      },
    );
  }

  private settleInOrder(ledgerId: LedgerId): void {
    while (this.inflight.length > 0 && this.inflight[0]!.entryId !== undefined) {
      const p = this.inflight.shift()!;
      this.failedRolls = 0;
      const pos = { ledgerId, entryId: p.entryId! };
      this.confirmedEntries = Math.max(this.confirmedEntries, pos.entryId + 1);
      this.confirmedBytes += p.bytes;
      const m = this.ctx.metrics;
      m.appends.inc();
      m.appendBytes.inc(p.bytes);
      m.appendLatency.observe((this.ctx.clock.now() - p.started) / 1000);
      this.onConfirmed(pos, p.payload, p.bytes);
      p.resolve(pos);
    }
    this.notifyDrained();
  }

  private onWriteError(err: unknown, p: PendingAppend, ledgerId: LedgerId): void {
    if (err instanceof FencedError || (err as { code?: string })?.code === 'FENCED') {
      this.ctx.markFenced();
      return;
    }
    if (isEntryTooLarge(err)) {
      // The ledger refused this entry alone (it took no entry id) and keeps
      // acknowledging the others: fail only this append.
      const i = this.inflight.indexOf(p);
      if (i < 0) return;
      this.inflight.splice(i, 1);
      this.issuedEntries--;
      this.issuedBytes -= p.bytes;
      p.reject(err);
      this.settleInOrder(ledgerId);
      return;
    }
    this.ctx.logger.warn(
      { log: this.ctx.name, ledgerId: this.writer?.ledgerId, err },
      'ledger write failed; rolling over and re-issuing pending appends',
    );
    // Abandon the ledger: later callbacks from it are ignored and everything
    // it did not acknowledge in order goes again, first, on the next ledger.
    this.generation++;
    for (const p of this.inflight) p.entryId = undefined;
    this.queued = [...this.inflight, ...this.queued];
    this.inflight = [];
    this.notifyDrained();
    void this.rollover('write-failure');
  }

  /** Start a rollover unless one runs; resolves when it completes. */
  rollover(reason: string): Promise<void> {
    if (this.rolling) return this.rolling;
    if (this.closeRequested) return Promise.resolve();
    if (this.state !== 'writing' && this.state !== 'unsealed') return Promise.resolve();
    const afterFailure = reason === 'write-failure' || this.state === 'unsealed';
    this.state = 'rolling';
    this.ageTimer?.clear();
    this.ageTimer = undefined;
    this.ctx.metrics.rollovers.inc({ reason });
    this.rolling = this.doRollover(afterFailure)
      .catch((err: unknown) => {
        this.ctx.logger.error({ log: this.ctx.name, err }, 'rollover failed');
        this.failAll(err);
      })
      .finally(() => {
        this.rolling = undefined;
        // A rollover that installed no new ledger must not leave 'rolling'
        // behind: appends would queue forever. The next append retries it.
        if (this.state === 'rolling') this.state = this.ctx.fenced ? 'fenced' : 'unsealed';
        // Appends that arrived while rolling may already fill the new ledger.
        if (this.state === 'writing' && this.queued.length > 0) this.maybeRoll();
      });
    return this.rolling;
  }

  private async doRollover(afterFailure: boolean): Promise<void> {
    const old = this.writer!;
    if (afterFailure) {
      // Back off when ledger after ledger fails (e.g. too few bookies up): no hot loop.
      const failures = this.failedRolls++;
      if (failures > 0) await this.ctx.clock.sleep(backoffDelay(failures - 1));
    }
    const spare = this.spare;
    this.spare = undefined;
    // A new ledger is created while the old one drains and seals; a spare is
    // checked only after the seal, right before the list write that records it.
    const fresh = spare ? undefined : this.createLedgerWithRetry();
    // Not awaited until the seal is done: an early failure must not go unhandled meanwhile.
    fresh?.catch(() => undefined);
    await this.waitDrained();
    let sealed: SealedSize | undefined;
    let sealError: unknown;
    try {
      sealed = await this.seal(old);
    } catch (err) {
      sealError = err;
    }
    if (this.state === 'fenced' || this.ctx.fenced) {
      // A spare is only closed: a list write may have recorded it, so it is
      // the new owner's (or, unlisted, the sweeper's) to delete.
      if (spare) await this.closeQuietly(spare);
      await fresh?.then(
        (w) => this.discard(w),
        () => undefined,
      );
      return;
    }
    if (!sealed) {
      // Recording it sealed with our own count would leave its metadata OPEN
      // with the last acknowledged entry past the LAC readers see: unreadable.
      // It stays unsealed in the list (a takeover recovers it); the next
      // append tries the rollover again.
      if (spare) this.spare = spare;
      await fresh?.then(
        (w) => this.discard(w),
        () => undefined,
      );
      if (isLedgerLost(sealError)) {
        await this.failLost(old.ledgerId, sealError);
        return;
      }
      this.ctx.logger.error(
        { log: this.ctx.name, ledgerId: old.ledgerId, err: sealError },
        'cannot close or recover the full ledger; appends fail until a rollover succeeds',
      );
      this.failAll(sealError);
      if (this.state === 'rolling') this.state = 'unsealed';
      return;
    }
    let writer: LedgerWriter;
    try {
      writer = fresh ? await fresh : await this.usableSpareOrNew(spare!);
    } catch (err) {
      // Sealed, but not yet recorded so: the next append retries ('unsealed').
      this.failAll(err);
      return;
    }
    const closed = sealed;
    const dropped = [...this.droppedSpares];
    try {
      await this.ctx.mutateList((list) => {
        sealOrTrash(list, old.ledgerId, closed, this.ctx.clock.now());
        trashUnused(list, dropped);
        // A retry after a list write whose answer was lost may find it recorded.
        if (list.ledgers.some((l) => l.ledgerId === writer.ledgerId)) return;
        list.ledgers.push({
          ledgerId: writer.ledgerId,
          entries: 0,
          size: 0,
          ctime: writer.metadata.ctime,
          sealed: false,
        });
      });
    } catch (err) {
      // A spare may be listed by an earlier write whose answer was lost: only close it.
      if (this.ctx.fenced) await (writer === spare ? this.closeQuietly(writer) : this.discard(writer));
      else {
        // A transient metadata failure: appends fail now, the next one retries
        // the rollover with this ledger ('unsealed').
        this.spare = writer;
        this.ctx.logger.error({ log: this.ctx.name, err }, 'ledger list update failed');
      }
      this.failAll(err);
      return;
    }
    this.droppedSpares = this.droppedSpares.filter((id) => !dropped.includes(id));
    if (closed.entries === 0) this.ctx.noteDroppedEmpty(old.ledgerId);
    if (this.state === 'closed') {
      await this.closeQuietly(writer);
      return;
    }
    this.install(writer);
    this.onRolled();
  }

  private install(writer: LedgerWriter): void {
    this.generation++;
    this.writer = writer;
    this.issuedEntries = 0;
    this.issuedBytes = 0;
    this.confirmedEntries = 0;
    this.confirmedBytes = 0;
    this.ledgerCtime = this.ctx.clock.now();
    this.state = 'writing';
    this.sizeRollArmed = false;
    this.armTimer(this.ctx.config.maxLedgerAgeMs);
    const waiting = this.queued;
    this.queued = [];
    for (const p of waiting) {
      if (this.mayIssue()) this.issue(p);
      else this.queued.push(p);
    }
    if (this.queued.length > 0) this.maybeRoll();
  }

  private armTimer(ms: number): void {
    this.ageTimer?.clear();
    this.ageTimer = this.ctx.clock.setTimeout(
      () => {
        this.ageTimer = undefined;
        if (this.state !== 'writing') return;
        const age = this.ctx.clock.now() - this.ledgerCtime;
        const c = this.ctx.config;
        if ((this.queued.length > 0 || this.full()) && age >= c.minLedgerAgeMs) void this.rollover('size');
        else if (age >= c.maxLedgerAgeMs && age >= c.minLedgerAgeMs && this.issuedEntries > 0) {
          void this.rollover('age');
        } else this.armTimer(Math.max(1, c.maxLedgerAgeMs - age));
      },
      Math.max(1, ms),
    );
  }

  private waitDrained(): Promise<void> {
    if (this.inflight.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  private notifyDrained(): void {
    if (this.inflight.length > 0 || this.drainWaiters.length === 0) return;
    for (const resolve of this.drainWaiters.splice(0)) resolve();
  }

  /**
   * The spare, if the orphan sweeper cannot have deleted it: its metadata is
   * still there and OPEN, and it is younger than SPARE_MAX_AGE_MS. Otherwise
   * it is closed, remembered for the trash, and a new ledger is created.
   */
  private async usableSpareOrNew(spare: LedgerWriter): Promise<LedgerWriter> {
    const age = this.ctx.clock.now() - spare.metadata.ctime;
    let why: string | undefined;
    if (age > SPARE_MAX_AGE_MS) why = `it is ${age} ms old, past ${SPARE_MAX_AGE_MS} ms`;
    else {
      let md: LedgerMetadata | undefined;
      try {
        md = await this.ctx.ledgers.getLedgerMetadata(spare.ledgerId);
      } catch (err) {
        // Unknown: keep it for the next attempt.
        this.spare ??= spare;
        throw err;
      }
      if (!md) why = 'its metadata is gone (an orphan sweep deleted it)';
      else if (md.state !== 'OPEN') why = `it is ${md.state}`;
    }
    if (why === undefined) return spare;
    this.ctx.logger.warn(
      { log: this.ctx.name, ledgerId: spare.ledgerId },
      `not reusing the ledger a failed rollover created: ${why}; creating a new one`,
    );
    await this.closeQuietly(spare);
    this.droppedSpares.push(spare.ledgerId);
    if (this.droppedSpares.length > MAX_DROPPED_SPARES) this.droppedSpares.shift();
    return this.createLedgerWithRetry();
  }

  private async createLedgerWithRetry(): Promise<LedgerWriter> {
    const c = this.ctx.config;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.ctx.ledgers.createLedger({
          ensembleSize: c.ensembleSize,
          writeQuorum: c.writeQuorum,
          ackQuorum: c.ackQuorum,
          custom: ledgerCustom(this.ctx.name, 'data'),
          idAbove: newestLedgerId(this.ctx.list),
        });
      } catch (err) {
        // Appends wait (bounded by maxPendingAppends) while bookies are short.
        if (!isRetriable(err) || this.state === 'closed' || this.ctx.fenced) throw err;
        const delay = backoffDelay(attempt);
        this.ctx.logger.warn({ log: this.ctx.name, err, delay }, 'cannot create a ledger yet; retrying');
        await this.ctx.clock.sleep(delay);
      }
    }
  }

  private seal(w: LedgerWriter): Promise<SealedSize> {
    const acknowledged = w === this.writer ? this.confirmedEntries : 0;
    return sealLedger(this.ctx.ledgers, w, acknowledged, this.ctx.name, (err) =>
      this.ctx.logger.warn(
        { log: this.ctx.name, ledgerId: w.ledgerId, err },
        'closing ledger failed; recovering it to seal it',
      ),
    );
  }

  private async closeQuietly(w: LedgerWriter): Promise<LedgerMetadata | undefined> {
    try {
      return await w.close();
    } catch (err) {
      this.ctx.logger.warn({ log: this.ctx.name, ledgerId: w.ledgerId, err }, 'closing ledger failed');
      return undefined;
    }
  }

  private async discard(w: LedgerWriter): Promise<void> {
    await this.closeQuietly(w);
    try {
      await this.ctx.ledgers.deleteLedger(w.ledgerId);
    } catch (err) {
      // The orphan sweeper deletes it later (its custom names this log).
      this.ctx.logger.warn(
        { log: this.ctx.name, ledgerId: w.ledgerId, err },
        'deleting unused ledger failed',
      );
    }
  }

  /**
   * The open ledger's metadata is gone although it acknowledged entries: they
   * are unreadable. Fail every append from now on rather than roll over as if
   * nothing was lost, and record the count in the list so that the next
   * owner's recovery refuses too instead of dropping the ledger as empty.
   */
  private async failLost(ledgerId: LedgerId, err: unknown): Promise<void> {
    this.state = 'failed';
    this.failure = err;
    this.ageTimer?.clear();
    this.ageTimer = undefined;
    this.ctx.logger.error(
      { log: this.ctx.name, ledgerId, err },
      'acknowledged entries lost; the log takes no appends',
    );
    this.failAll(err);
    await this.recordLoss(ledgerId, this.confirmedEntries);
  }

  private async recordLoss(ledgerId: LedgerId, acknowledged: number): Promise<void> {
    try {
      await this.ctx.mutateList((list) => {
        const rec = list.ledgers.find((l) => l.ledgerId === ledgerId);
        if (rec && !rec.sealed) rec.entries = Math.max(rec.entries, acknowledged);
      });
    } catch (err) {
      this.ctx.logger.error(
        { log: this.ctx.name, ledgerId, err },
        'could not record the lost entries in the ledger list; the next owner will drop that ledger as empty',
      );
    }
  }

  private failAll(err: unknown): void {
    if (this.ctx.fenced) this.state = 'fenced';
    this.generation++;
    const all = [...this.inflight, ...this.queued];
    this.inflight = [];
    this.queued = [];
    for (const p of all) p.reject(err);
    this.notifyDrained();
  }

  /**
   * Wait for in-flight appends, close the open ledger and record it sealed
   * (an empty one is dropped). Appends after this fail with ClosedError.
   */
  async close(): Promise<void> {
    this.closeRequested = true;
    while (this.rolling) await this.rolling.catch(() => undefined);
    const wasWriting = this.state === 'writing' || this.state === 'unsealed';
    if (this.state !== 'fenced') this.state = 'closed';
    this.ageTimer?.clear();
    this.ageTimer = undefined;
    await this.waitDrained();
    for (const p of this.queued.splice(0)) {
      p.reject(new ClosedError(`managed log '${this.ctx.name}' closed before this append was written`));
    }
    const w = this.writer;
    const spare = this.spare;
    this.spare = undefined;
    // Whatever happens below, a spare left unrecorded is the orphan sweeper's.
    if (spare) await this.closeQuietly(spare);
    if (!w || !wasWriting || this.ctx.fenced) return;
    let sealed: SealedSize;
    try {
      sealed = await this.seal(w);
    } catch (err) {
      if (isLedgerLost(err)) {
        this.ctx.logger.error({ log: this.ctx.name, ledgerId: w.ledgerId, err }, 'acknowledged entries lost');
        await this.recordLoss(w.ledgerId, this.confirmedEntries);
        return;
      }
      // Left unsealed in the list: the next owner's takeover recovers it.
      this.ctx.logger.error(
        { log: this.ctx.name, ledgerId: w.ledgerId, err },
        'cannot close or recover the open ledger at close; the next open recovers it',
      );
      return;
    }
    // Recorded or not (a list write whose answer was lost may have recorded them), spares held nothing.
    const unused = spare ? [spare.ledgerId, ...this.droppedSpares] : [...this.droppedSpares];
    await this.ctx.mutateList((list) => {
      sealOrTrash(list, w.ledgerId, sealed, this.ctx.clock.now());
      trashUnused(list, unused);
    });
    this.droppedSpares = [];
    this.confirmedEntries = sealed.entries;
  }
}
