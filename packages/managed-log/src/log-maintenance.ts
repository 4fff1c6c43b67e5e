import { randomUUID } from 'node:crypto';
import {
  backoffDelay,
  CorruptDataError,
  InvalidArgumentError,
  isRetriable,
  type LedgerId,
  NotFoundError,
  type Position,
  type Timer,
} from '@sluice/common';
import type { LedgerRecord, TrashRecord } from './ledger-list.js';
import type { LogContext } from './log-context.js';
import type { LogReader } from './log-reader.js';

/**
 * Backoff of one ledger whose offload failed for a reason of its own (not
 * retriable: unreadable, corrupt, refused): from a minute to an hour, so a
 * bad ledger costs a few attempts an hour, not one per pass.
 */
const LEDGER_BACKOFF = { minDelayMs: 60_000, maxDelayMs: 60 * 60_000 };
/** Ledgers remembered as backing off; the longest-remembered is forgotten beyond this. */
const MAX_BACKED_OFF_LEDGERS = 1024;

/**
 * Background work of one log: trimming consumed ledgers past retention,
 * offloading closed ledgers by policy, deleting bookie copies after the
 * offload lag, and emptying the trash. Every deletion is recorded in the
 * ledger list (CAS) first and done after, so a crash leaves work in the
 * trash to finish, never a ledger the list still needs.
 */
export class LogMaintenance {
  private offloadRunning: Promise<number> | undefined;
  /** The ledger whose objects are being uploaded; trim leaves it (and what follows it) alone. */
  private offloading: LedgerId | undefined;
  /** Consecutive passes stopped by a retriable failure (the cold tier is down). */
  private offloadFailures = 0;
  /** Ledgers whose last offload failed with a non-retriable error, and when to try each again. */
  private readonly backedOff = new Map<LedgerId, { failures: number; retryAt: number }>();
  private retryTimer: Timer | undefined;
  private trimming: Promise<number> | undefined;

  constructor(
    private readonly ctx: LogContext,
    private readonly reader: LogReader,
    /** Mark-delete positions of every cursor. */
    private readonly cursorPositions: () => Position[],
    private readonly onTrimmed: () => void,
  ) {}

  /** Trim what no cursor and no retention holds; returns the number of ledgers removed. */
  trim(): Promise<number> {
    if (!this.trimming) {
      this.trimming = this.doTrim().finally(() => {
        this.trimming = undefined;
        this.ctx.trimming = undefined;
      });
      this.ctx.trimming = this.trimming;
    }
    return this.trimming;
  }

  private async doTrim(): Promise<number> {
    if (this.ctx.fenced || this.ctx.closed) return 0;
    const c = this.ctx.config;
    const now = this.ctx.clock.now();
    const marks = this.cursorPositions();
    const ledgers = this.ctx.list.ledgers;
    let total = ledgers.reduce((n, l) => n + (l.sealed ? l.size : 0), 0);
    const victims: LedgerRecord[] = [];
    for (const rec of ledgers) {
      if (!rec.sealed || rec === ledgers[ledgers.length - 1]) break;
      // Trashing it now would delete its objects before the upload finishes writing them.
      if (rec.ledgerId === this.offloading) break;
      const consumed = marks.every(
        (m) => m.ledgerId > rec.ledgerId || (m.ledgerId === rec.ledgerId && m.entryId >= rec.entries - 1),
      );
      if (!consumed) break;
      const expired = c.retentionTimeMs >= 0 && now - (rec.sealedAt ?? rec.ctime) >= c.retentionTimeMs;
      const overSize = c.retentionSizeBytes >= 0 && total - rec.size >= c.retentionSizeBytes;
      if (!expired && !overSize) break;
      victims.push(rec);
      total -= rec.size;
    }
    if (victims.length === 0) {
      await this.emptyTrash();
      return 0;
    }
    const ids = new Set(victims.map((v) => v.ledgerId));
    await this.ctx.mutateList((list) => {
      list.ledgers = list.ledgers.filter((l) => !ids.has(l.ledgerId));
      for (const v of victims) list.trash.push(trashOf(v));
    });
    this.ctx.forgetDroppedThrough(Math.max(...ids));
    for (const id of ids) await this.reader.dropLedger(id);
    this.ctx.metrics.trimmedLedgers.inc(ids.size);
    this.ctx.logger.info({ log: this.ctx.name, ledgers: [...ids] }, 'trimmed ledgers');
    this.onTrimmed();
    await this.emptyTrash();
    return ids.size;
  }

  /** Delete what the trash lists, then drop the done records (CAS). Failures stay for the next run. */
  async emptyTrash(): Promise<void> {
    const trash = [...this.ctx.list.trash];
    if (trash.length === 0 || this.ctx.fenced) return;
    const done: TrashRecord[] = [];
    for (const t of trash) {
      try {
        if (t.bookie) await this.ctx.ledgers.deleteLedger(t.ledgerId);
        if (t.offloadUuids.length > 0) {
          if (!this.ctx.offloader) {
            this.ctx.logger.warn(
              { log: this.ctx.name, ledgerId: t.ledgerId },
              'offloaded objects to delete but no offloader is configured; keeping them in the trash',
            );
            continue;
          }
          for (const uuid of t.offloadUuids) await this.ctx.offloader.delete(t.ledgerId, uuid);
        }
        done.push(t);
      } catch (err) {
        this.ctx.logger.warn(
          { log: this.ctx.name, ledgerId: t.ledgerId, err },
          'deleting trashed ledger failed',
        );
      }
    }
    if (done.length === 0) return;
    await this.ctx.mutateList((list) => {
      list.trash = list.trash.filter((t) => !done.some((d) => sameTrash(d, t)));
    });
  }

  /** Offload ledgers the policy selects (or every closed ledger with `all`). */
  offload(all: boolean): Promise<number> {
    if (!this.ctx.offloader) return Promise.resolve(0);
    if (!this.offloadRunning) {
      this.offloadRunning = this.doOffload(all).finally(() => {
        this.offloadRunning = undefined;
      });
      return this.offloadRunning;
    }
    // One offload pass at a time; an explicit request runs after the current one.
    return all ? this.offloadRunning.then(() => this.offload(true)) : this.offloadRunning;
  }

  private candidates(all: boolean): LedgerRecord[] {
    const c = this.ctx.config;
    const now = this.ctx.clock.now();
    const sealed = this.ctx.list.ledgers.filter(
      (l) => l.sealed && l.entries > 0 && l.offload?.state !== 'complete',
    );
    if (all) return sealed;
    const picked = new Set<LedgerId>();
    if (c.offloadAgeMs >= 0) {
      for (const l of sealed) if (now - (l.sealedAt ?? l.ctime) >= c.offloadAgeMs) picked.add(l.ledgerId);
    }
    if (c.offloadThresholdBytes >= 0) {
      let resident = this.ctx.list.ledgers
        .filter((l) => !l.bookieDeleted && l.offload?.state !== 'complete')
        .reduce((n, l) => n + l.size, 0);
      for (const l of sealed) {
        if (resident <= c.offloadThresholdBytes) break;
        picked.add(l.ledgerId);
        resident -= l.size;
      }
    }
    return sealed.filter((l) => picked.has(l.ledgerId));
  }

  /**
   * One pass over the candidates. A retriable failure (the cold tier is
   * unreachable) stops the pass: every later ledger would fail the same way;
   * it is retried with backoff. Any other failure is the ledger's own: the
   * pass goes on with the next ledger and that one waits (`backedOff`). An
   * explicit request (`all`) tries backed-off ledgers too and fails at the
   * first error.
   */
  private async doOffload(all: boolean): Promise<number> {
    let done = 0;
    for (const id of this.backedOff.keys()) if (!this.ctx.record(id)) this.backedOff.delete(id);
    for (const rec of this.candidates(all)) {
      if (this.ctx.fenced || this.ctx.closed) break;
      if (!all && (this.backedOff.get(rec.ledgerId)?.retryAt ?? 0) > this.ctx.clock.now()) continue;
      try {
        await this.offloadOne(rec.ledgerId);
        done++;
        this.offloadFailures = 0;
        this.backedOff.delete(rec.ledgerId);
      } catch (err) {
        this.ctx.metrics.offloadFailures.inc();
        if (!isRetriable(err)) {
          const delay = this.backOff(rec.ledgerId);
          this.ctx.logger.error(
            { log: this.ctx.name, ledgerId: rec.ledgerId, err, retryInMs: delay },
            'offload of this ledger failed; it stays on bookies and is retried later, the next ledgers go on',
          );
          if (all) throw err;
          continue;
        }
        const delay = backoffDelay(this.offloadFailures++, { maxDelayMs: 60_000 });
        this.ctx.logger.warn(
          { log: this.ctx.name, ledgerId: rec.ledgerId, err, retryInMs: delay },
          'offload failed; the log keeps serving from bookies and retries',
        );
        this.scheduleRetry(delay, all);
        if (all) throw err;
        break;
      }
    }
    await this.deleteOffloadedBookieCopies();
    return done;
  }

  /** Record a non-retriable failure of `ledgerId`; returns the delay before its next attempt. */
  private backOff(ledgerId: LedgerId): number {
    const failures = this.backedOff.get(ledgerId)?.failures ?? 0;
    const delay = backoffDelay(failures, LEDGER_BACKOFF);
    this.backedOff.delete(ledgerId);
    this.backedOff.set(ledgerId, { failures: failures + 1, retryAt: this.ctx.clock.now() + delay });
    if (this.backedOff.size > MAX_BACKED_OFF_LEDGERS) {
      this.backedOff.delete(this.backedOff.keys().next().value as LedgerId);
    }
    return delay;
  }

  private scheduleRetry(delay: number, all: boolean): void {
    if (this.retryTimer || this.ctx.closed) return;
    this.retryTimer = this.ctx.clock.setTimeout(() => {
      this.retryTimer = undefined;
      this.offload(all).catch(() => undefined);
    }, delay);
  }

  private async offloadOne(ledgerId: LedgerId): Promise<void> {
    this.offloading = ledgerId;
    try {
      await this.upload(ledgerId);
    } finally {
      this.offloading = undefined;
    }
  }

  private async upload(ledgerId: LedgerId): Promise<void> {
    const offloader = this.ctx.offloader!;
    const uuid = randomUUID();
    // Record the attempt before any byte is uploaded: a crash leaves a
    // `pending` uuid whose objects the next attempt trashes. Readers only
    // ever use `complete` offloads.
    const rec = await this.ctx.mutateList((list) => {
      const r = list.ledgers.find((l) => l.ledgerId === ledgerId);
      if (!r || r.offload?.state === 'complete') return undefined;
      if (r.offload?.state === 'pending') {
        list.trash.push({ ledgerId, bookie: false, offloadUuids: [r.offload.uuid] });
      }
      r.offload = { uuid, state: 'pending' };
      return { ...r };
    });
    if (!rec) return;
    const reader = await this.ctx.ledgers.openLedger(ledgerId);
    try {
      await offloader.offload(
        {
          ledgerId,
          metadata: reader.metadata,
          lastEntryId: rec.entries - 1,
          read: (first, last) => reader.read(first, last),
        },
        uuid,
        { 'sluice.log': this.ctx.name },
      );
    } finally {
      await reader.close().catch(() => undefined);
    }
    const recorded = await this.ctx.mutateList((list) => {
      const r = list.ledgers.find((l) => l.ledgerId === ledgerId);
      if (r?.offload?.uuid === uuid) {
        r.offload = { uuid, state: 'complete', completedAt: this.ctx.clock.now() };
        return true;
      }
      // The ledger left the list (or its record moved on) while we uploaded:
      // whoever trashed it may have deleted our objects before they were all
      // written, so trash them again or they stay in the cold tier forever.
      list.trash.push({ ledgerId, bookie: false, offloadUuids: [uuid] });
      return false;
    });
    if (!recorded) {
      this.ctx.logger.info(
        { log: this.ctx.name, ledgerId, uuid },
        'ledger left the list during its offload; deleting the uploaded objects',
      );
      await this.emptyTrash();
      return;
    }
    this.ctx.metrics.offloadedLedgers.inc();
    this.ctx.logger.info({ log: this.ctx.name, ledgerId, uuid }, 'ledger offloaded');
  }

  /**
   * Delete bookie copies of ledgers offloaded at least `offloadDeletionLagMs`
   * ago, each only once its offload verifies (`LogOffloader.verify`): the
   * bookie copy is the last good one. An offload found damaged or missing is
   * dropped (its objects trashed) so that a later pass offloads the ledger
   * again; one that cannot be checked now is left for the next pass.
   */
  async deleteOffloadedBookieCopies(): Promise<number> {
    const offloader = this.ctx.offloader;
    const now = this.ctx.clock.now();
    const lag = this.ctx.config.offloadDeletionLagMs;
    const due = this.ctx.list.ledgers.filter(
      (l) => l.offload?.state === 'complete' && !l.bookieDeleted && now - (l.offload.completedAt ?? 0) >= lag,
    );
    if (!offloader || due.length === 0 || this.ctx.fenced) return 0;
    const verified = new Map<LedgerId, string>();
    const damaged = new Map<LedgerId, string>();
    for (const rec of due) {
      const uuid = rec.offload!.uuid;
      try {
        const { entries } = await offloader.verify(rec.ledgerId, uuid);
        if (entries !== rec.entries) {
          throw new CorruptDataError(
            `offload ${uuid} of ledger ${rec.ledgerId} holds ${entries} entries, the ledger ${rec.entries}`,
          );
        }
        verified.set(rec.ledgerId, uuid);
      } catch (err) {
        if (
          err instanceof CorruptDataError ||
          err instanceof NotFoundError ||
          err instanceof InvalidArgumentError
        ) {
          this.ctx.metrics.offloadFailures.inc();
          this.ctx.logger.error(
            { log: this.ctx.name, ledgerId: rec.ledgerId, uuid, err },
            'offloaded copy failed verification; keeping the bookie copy and offloading the ledger again',
          );
          damaged.set(rec.ledgerId, uuid);
        } else {
          this.ctx.logger.warn(
            { log: this.ctx.name, ledgerId: rec.ledgerId, uuid, err },
            'cannot verify the offloaded copy now; keeping the bookie copy until a later pass verifies it',
          );
        }
      }
    }
    if (verified.size === 0 && damaged.size === 0) return 0;
    const deleted = await this.ctx.mutateList((list) => {
      const ids: LedgerId[] = [];
      for (const l of list.ledgers) {
        const uuid = l.offload?.state === 'complete' && !l.bookieDeleted ? l.offload.uuid : undefined;
        if (uuid === undefined) continue;
        if (verified.get(l.ledgerId) === uuid) {
          l.bookieDeleted = true;
          list.trash.push({ ledgerId: l.ledgerId, bookie: true, offloadUuids: [] });
          ids.push(l.ledgerId);
        } else if (damaged.get(l.ledgerId) === uuid) {
          delete l.offload;
          list.trash.push({ ledgerId: l.ledgerId, bookie: false, offloadUuids: [uuid] });
        }
      }
      return ids;
    });
    for (const id of damaged.keys()) await this.reader.dropLedger(id, ['offload']);
    for (const id of deleted) await this.reader.dropLedger(id, ['bookie']);
    await this.emptyTrash();
    return deleted.length;
  }

  /** Periodic pass: trash, trim, offload policy, bookie-copy deletion. */
  async tick(): Promise<void> {
    await this.emptyTrash();
    await this.trim();
    await this.offload(false);
  }

  close(): void {
    this.retryTimer?.clear();
    this.retryTimer = undefined;
  }

  async idle(): Promise<void> {
    await this.offloadRunning?.catch(() => undefined);
    await this.trimming?.catch(() => undefined);
  }
}

function trashOf(rec: LedgerRecord): TrashRecord {
  return {
    ledgerId: rec.ledgerId,
    bookie: !rec.bookieDeleted,
    offloadUuids: rec.offload ? [rec.offload.uuid] : [],
  };
}

function sameTrash(a: TrashRecord, b: TrashRecord): boolean {
  return (
    a.ledgerId === b.ledgerId && a.bookie === b.bookie && a.offloadUuids.join() === b.offloadUuids.join()
  );
}
