import { type Clock, FencedError, type LedgerId, type Logger, type Position } from '@sluice/common';
import type { LedgerClient } from '@sluice/ledger';
import type { MetadataStore } from '@sluice/metadata';
import type { LogOffloader, ManagedLogConfig } from './api.js';
import {
  encodeList,
  isBadVersion,
  isOutcomeUnknown,
  type LedgerList,
  type LedgerListStore,
  type LedgerRecord,
} from './ledger-list.js';
import type { LogMetrics } from './metrics.js';

/** Empty ledgers dropped at rollover that positions may still name (see `droppedEmpty`). */
const MAX_DROPPED_EMPTY = 1024;

/**
 * What the parts of one open log share: its config and services, and the
 * in-memory copy of its ledger list. Every change to the list goes through
 * `mutateList`, one at a time, as a CAS; losing a CAS means another process
 * took the log over, so the log turns fenced.
 */
export class LogContext {
  list: LedgerList;
  version: number;
  fenced = false;
  closed = false;
  /**
   * The trim in progress, set by maintenance. Trim picks its victims from the
   * cursors' positions before its CAS lands: a cursor placed in between
   * (reset, creation) waits for it, or it could land in a ledger being deleted.
   */
  trimming: Promise<unknown> | undefined;
  private listLock: Promise<unknown> = Promise.resolve();
  /** A list whose CAS may have landed unseen (the put and the read-back both failed). */
  private unsure: LedgerList | undefined;
  private readonly fencedListeners: (() => void)[] = [];
  /**
   * Ledgers a rollover dropped from the list because they held nothing,
   * oldest first. A position handed out while one was open and empty (its
   * entry 0: a cursor or reader at the end of the log) stays valid: it
   * reads on from the next ledger. Bounded; a trim past one forgets it.
   */
  private readonly droppedEmpty = new Set<LedgerId>();

  constructor(
    readonly name: string,
    readonly config: ManagedLogConfig,
    readonly store: LedgerListStore,
    readonly metadata: MetadataStore,
    readonly ledgers: LedgerClient,
    readonly offloader: LogOffloader | undefined,
    readonly clock: Clock,
    readonly logger: Logger,
    readonly metrics: LogMetrics,
    initial: { list: LedgerList; version: number },
  ) {
    this.list = initial.list;
    this.version = initial.version;
  }

  /** Apply `change` to a copy of the list and CAS it; returns what `change` returned. */
  mutateList<T>(change: (list: LedgerList) => T): Promise<T> {
    const run = async (): Promise<T> => {
      if (this.fenced) throw this.fencedError();
      const copy = structuredClone(this.list);
      const result = change(copy);
      try {
        this.version = await this.store.write(copy, this.version);
        this.unsure = undefined;
      } catch (err) {
        if (isBadVersion(err)) {
          // Our own earlier write whose answer was lost moved the version on:
          // adopt it (the in-memory list then holds what it wrote) and retry.
          const current = this.unsure && (await this.store.read());
          if (current && encodeList(current.list).equals(encodeList(this.unsure!))) {
            this.version = current.version;
            this.list = current.list;
            this.unsure = undefined;
            return run();
          }
          this.markFenced();
          throw this.fencedError(err);
        }
        if (isOutcomeUnknown(err)) this.unsure = copy;
        throw err;
      }
      this.list = copy;
      return result;
    };
    const next = this.listLock.then(run, run);
    this.listLock = next.catch(() => undefined);
    return next;
  }

  /** Resolves once no trim is running. */
  async trimSettled(): Promise<void> {
    while (this.trimming) await this.trimming.catch(() => undefined);
  }

  markFenced(): void {
    if (this.fenced) return;
    this.fenced = true;
    this.logger.warn({ log: this.name }, 'managed log fenced: another owner took it over');
    for (const l of this.fencedListeners.splice(0)) l();
  }

  onFenced(listener: () => void): void {
    if (this.fenced) listener();
    else this.fencedListeners.push(listener);
  }

  fencedError(cause?: unknown): FencedError {
    return new FencedError(
      `managed log '${this.name}' was taken over by another owner; reopen it where the topic is now owned`,
      cause === undefined ? undefined : { cause },
    );
  }

  /** Record that `ledgerId` left the list holding no entry. */
  noteDroppedEmpty(ledgerId: LedgerId): void {
    this.droppedEmpty.add(ledgerId);
    if (this.droppedEmpty.size > MAX_DROPPED_EMPTY) {
      this.droppedEmpty.delete(this.droppedEmpty.values().next().value as LedgerId);
    }
  }

  /** Trim removed ledgers up to `ledgerId`: a position before them is trimmed, not merely empty. */
  forgetDroppedThrough(ledgerId: LedgerId): void {
    for (const id of this.droppedEmpty) if (id <= ledgerId) this.droppedEmpty.delete(id);
  }

  wasDroppedEmpty(ledgerId: LedgerId): boolean {
    return this.droppedEmpty.has(ledgerId) && !this.record(ledgerId);
  }

  record(ledgerId: LedgerId): LedgerRecord | undefined {
    return this.list.ledgers.find((l) => l.ledgerId === ledgerId);
  }

  index(ledgerId: LedgerId): number {
    return this.list.ledgers.findIndex((l) => l.ledgerId === ledgerId);
  }

  /** Entries of a ledger, counting the open ledger's confirmed entries. */
  entriesOf(rec: LedgerRecord): number {
    return rec.sealed ? rec.entries : this.openEntries(rec.ledgerId);
  }

  /** Set by the writer: confirmed entries of the open ledger. */
  openEntries: (ledgerId: LedgerId) => number = () => 0;

  /** Position right after `p` in log order, or undefined when `p` is at or past the end. */
  nextPosition(p: Position): Position | undefined {
    const ls = this.list.ledgers;
    for (let i = 0; i < ls.length; i++) {
      const rec = ls[i]!;
      if (rec.ledgerId < p.ledgerId) continue;
      const n = this.entriesOf(rec);
      const candidate = rec.ledgerId === p.ledgerId ? p.entryId + 1 : 0;
      if (candidate < n) return { ledgerId: rec.ledgerId, entryId: candidate };
    }
    return undefined;
  }

  /** Position right before `p` (crossing ledgers); (first ledger, -1) when `p` is the first. */
  previousPosition(p: Position): Position {
    if (p.entryId > 0) return { ledgerId: p.ledgerId, entryId: p.entryId - 1 };
    const ls = this.list.ledgers;
    for (let i = ls.length - 1; i >= 0; i--) {
      const rec = ls[i]!;
      if (rec.ledgerId >= p.ledgerId) continue;
      const n = this.entriesOf(rec);
      if (n > 0) return { ledgerId: rec.ledgerId, entryId: n - 1 };
    }
    return { ledgerId: p.ledgerId, entryId: -1 };
  }

  firstPosition(): Position | undefined {
    for (const rec of this.list.ledgers)
      if (this.entriesOf(rec) > 0) return { ledgerId: rec.ledgerId, entryId: 0 };
    return undefined;
  }

  lastPosition(): Position | undefined {
    const ls = this.list.ledgers;
    for (let i = ls.length - 1; i >= 0; i--) {
      const n = this.entriesOf(ls[i]!);
      if (n > 0) return { ledgerId: ls[i]!.ledgerId, entryId: n - 1 };
    }
    return undefined;
  }

  entriesOfId(ledgerId: LedgerId): number {
    const rec = this.record(ledgerId);
    return rec ? this.entriesOf(rec) : 0;
  }

  /** The position the next append takes (in the last listed ledger). */
  endPosition(fallback?: Position): Position {
    const ls = this.list.ledgers;
    const last = ls[ls.length - 1];
    if (last) return { ledgerId: last.ledgerId, entryId: this.entriesOf(last) };
    return fallback
      ? { ledgerId: fallback.ledgerId, entryId: fallback.entryId + 1 }
      : { ledgerId: 0, entryId: 0 };
  }

  /** Entries strictly after `p` up to the end. */
  entriesAfter(p: Position): number {
    let n = 0;
    for (const rec of this.list.ledgers) {
      const count = this.entriesOf(rec);
      if (rec.ledgerId > p.ledgerId) n += count;
      else if (rec.ledgerId === p.ledgerId) n += Math.max(0, count - p.entryId - 1);
    }
    return n;
  }

  totalEntries(): number {
    let n = 0;
    for (const rec of this.list.ledgers) n += this.entriesOf(rec);
    return n;
  }
}
