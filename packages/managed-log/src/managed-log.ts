import {
  ClosedError,
  comparePositions,
  FencedError,
  type Position,
  type Timer,
  UnavailableError,
} from '@sluice/common';
import type { LedgerWriter } from '@sluice/ledger';
import { AckSet } from './ack-set.js';
import type {
  Cursor,
  CursorStats,
  EntryBytes,
  InitialPosition,
  LedgerInfo,
  LogEntry,
  LogStats,
  ManagedLog,
} from './api.js';
import { CursorStore } from './cursor-store.js';
import type { LogContext } from './log-context.js';
import { checkCursorName, cursorPrefix } from './log-keys.js';
import { LogMaintenance } from './log-maintenance.js';
import { LogReader } from './log-reader.js';
import { LogWriter } from './log-writer.js';
import { ManagedCursor } from './managed-cursor.js';

/** Holds every ledger back from trimming. */
const BEFORE_EVERYTHING: Position = { ledgerId: -1, entryId: -1 };

interface Waiter {
  after: Position | undefined;
  fire: () => void;
}

const noop = (): void => {};

/** A topic's log: the writer, reader, cursors and maintenance of one open log. */
export class ManagedLogImpl implements ManagedLog {
  private readonly writer: LogWriter;
  private readonly reader: LogReader;
  private readonly maintenance: LogMaintenance;
  private readonly cursorMap = new Map<string, ManagedCursor>();
  private readonly openingCursors = new Map<string, Promise<ManagedCursor>>();
  private waiters: Waiter[] = [];
  private tickTimer: Timer | undefined;
  /** The maintenance pass the tick timer started, awaited by close. */
  private ticking: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  /**
   * Until every persisted cursor is loaded, the loaded ones are not all the
   * positions trimming must respect: nothing is trimmed and no tick runs.
   */
  private cursorsLoaded = false;

  constructor(
    private readonly ctx: LogContext,
    firstWriter: LedgerWriter,
    private readonly onClosed: () => void,
  ) {
    this.reader = new LogReader(ctx);
    this.writer = new LogWriter(
      ctx,
      (p, payload, bytes) => {
        this.reader.tail.put(p.ledgerId, p.entryId, payload, bytes);
        this.wake();
      },
      () => {
        const c = ctx.config;
        if (c.offloadAgeMs >= 0 || c.offloadThresholdBytes >= 0) {
          this.maintenance.offload(false).catch(() => undefined);
        }
      },
    );
    this.maintenance = new LogMaintenance(
      ctx,
      this.reader,
      () => {
        if (!this.cursorsLoaded) return [BEFORE_EVERYTHING];
        const marks = [...this.cursorMap.values()].map((c) => c.markDelete);
        // A cursor being created has no position yet; it may start at the earliest entry.
        if (this.openingCursors.size > 0) marks.push(BEFORE_EVERYTHING);
        return marks;
      },
      () => {
        const first = ctx.firstPosition();
        for (const c of this.cursorMap.values()) c.onTrimmed(first);
      },
    );
    this.writer.start(firstWriter);
    ctx.onFenced(() => this.wake());
    // The maintenance tick starts once loadCursors() has loaded every cursor.
  }

  /**
   * Drop tail-cache entries every cursor has acknowledged. A tailing
   * subscription then frees each entry moments after its ack, while it is
   * still young: a cache that only evicts by size keeps every entry for as
   * long as 64 MiB of appends take, which moves all of them into V8's old
   * generation (and their buffers into external memory that only a full
   * collection frees).
   */
  private readonly evictAcked = (): void => {
    if (!this.cursorsLoaded || this.openingCursors.size > 0) return;
    let min: Position | undefined;
    for (const c of this.cursorMap.values()) {
      if (this.cacheFree.has(c.name)) continue;
      if (!min || comparePositions(c.markDelete, min) < 0) min = c.markDelete;
    }
    if (min) this.reader.tail.evictThrough(min);
  };
  /** Cursors opened with `holdsTailCache: false`. */
  private readonly cacheFree = new Set<string>();

  /**
   * Load every persisted cursor, so that trimming respects subscriptions not
   * yet reopened; only then does the maintenance tick start. Until this
   * resolves nothing is trimmed (when it fails, nothing ever was).
   */
  async loadCursors(): Promise<void> {
    const prefix = cursorPrefix(this.ctx.name);
    const keys = await this.ctx.metadata.listAll(prefix, { keysOnly: true });
    for (const k of keys) {
      const name = k.key.slice(k.key.indexOf(prefix) + prefix.length);
      const store = new CursorStore(this.ctx, name);
      const loaded = await store.load();
      if (loaded)
        this.cursorMap.set(name, new ManagedCursor(this.ctx, name, store, loaded.state, this.evictAcked));
    }
    this.cursorsLoaded = true;
    if (!this.ctx.closed && !this.closing && !this.tickTimer) this.armTick();
  }

  get name(): string {
    return this.ctx.name;
  }

  get fenced(): boolean {
    return this.ctx.fenced;
  }

  append(payload: EntryBytes): Promise<Position> {
    return this.writer.append(payload);
  }

  lastPosition(): Position | undefined {
    return this.ctx.lastPosition();
  }

  firstPosition(): Position | undefined {
    return this.ctx.firstPosition();
  }

  read(from: Position, maxEntries: number): Promise<LogEntry[]> {
    if (this.ctx.closed) return Promise.reject(this.closedError());
    return this.reader.read(from, maxEntries);
  }

  nextPosition(p: Position): Position | undefined {
    return this.ctx.nextPosition(p);
  }

  entriesAfter(p: Position): number {
    return this.ctx.entriesAfter(p);
  }

  onEntryAfter(p: Position | undefined, fn: () => void): () => void {
    if (this.hasEntryAfter(p) || this.ctx.closed || this.ctx.fenced) {
      fn();
      return noop;
    }
    const waiter: Waiter = { after: p, fire: fn };
    this.waiters.push(waiter);
    return () => {
      const i = this.waiters.indexOf(waiter);
      if (i >= 0) this.waiters.splice(i, 1);
    };
  }

  private hasEntryAfter(p: Position | undefined): boolean {
    const last = this.ctx.lastPosition();
    if (!last) return false;
    return !p || comparePositions(last, p) > 0;
  }

  private wake(): void {
    if (this.waiters.length === 0) return;
    const done = this.ctx.closed || this.ctx.fenced;
    const keep: Waiter[] = [];
    const due: Waiter[] = [];
    for (const w of this.waiters) (done || this.hasEntryAfter(w.after) ? due : keep).push(w);
    // The list is settled before any callback runs: one may register a new waiter.
    this.waiters = keep;
    for (const w of due) w.fire();
  }

  openCursor(
    name: string,
    initial: InitialPosition = 'latest',
    opts: { holdsTailCache?: boolean } = {},
  ): Promise<Cursor> {
    checkCursorName(name);
    if (this.ctx.closed) return Promise.reject(this.closedError());
    if (opts.holdsTailCache === false) this.cacheFree.add(name);
    const existing = this.cursorMap.get(name);
    if (existing) {
      if (opts.holdsTailCache === false) this.evictAcked();
      return Promise.resolve(existing);
    }
    let opening = this.openingCursors.get(name);
    if (!opening) {
      opening = this.createCursor(name, initial).finally(() => this.openingCursors.delete(name));
      this.openingCursors.set(name, opening);
    }
    return opening;
  }

  private async createCursor(name: string, initial: InitialPosition): Promise<ManagedCursor> {
    const store = new CursorStore(this.ctx, name);
    const loaded = await store.load();
    // Positions read from a list a running trim is about to shrink could name trimmed ledgers.
    await this.ctx.trimSettled();
    let cursor: ManagedCursor;
    if (loaded) {
      cursor = new ManagedCursor(this.ctx, name, store, loaded.state, this.evictAcked);
    } else {
      const markDelete =
        initial === 'earliest'
          ? this.ctx.previousPosition(this.ctx.firstPosition() ?? this.ctx.endPosition())
          : (this.ctx.lastPosition() ?? this.ctx.previousPosition(this.ctx.endPosition()));
      const state = { markDelete, acks: new AckSet(), batches: new Map() };
      await store.create(state);
      cursor = new ManagedCursor(this.ctx, name, store, state, this.evictAcked);
    }
    this.cursorMap.set(name, cursor);
    return cursor;
  }

  async deleteCursor(name: string): Promise<void> {
    await this.openingCursors.get(name)?.catch(() => undefined);
    const cursor = this.cursorMap.get(name);
    this.cacheFree.delete(name);
    if (cursor) {
      this.cursorMap.delete(name);
      await cursor.destroy();
      return;
    }
    const store = new CursorStore(this.ctx, name);
    if (await store.load()) await store.destroy();
  }

  cursors(): Cursor[] {
    return [...this.cursorMap.values()];
  }

  offloadNow(): Promise<number> {
    return this.maintenance.offload(true);
  }

  trim(): Promise<number> {
    return this.maintenance.trim();
  }

  /** Run one maintenance pass now (trash, trim, offload policy, bookie-copy deletion). */
  maintain(): Promise<void> {
    return this.maintenance.tick();
  }

  async seekByTime(time: number, timeOf: (payload: Buffer) => number): Promise<Position> {
    // Binary search over the log's global entry index.
    const spans = this.ctx.list.ledgers
      .map((rec) => ({ ledgerId: rec.ledgerId, n: this.ctx.entriesOf(rec) }))
      .filter((s) => s.n > 0);
    const total = spans.reduce((n, s) => n + s.n, 0);
    const at = (i: number): Position => {
      for (const s of spans) {
        if (i < s.n) return { ledgerId: s.ledgerId, entryId: i };
        i -= s.n;
      }
      return this.ctx.endPosition();
    };
    let lo = 0;
    let hi = total;
    while (lo < hi) {
      const mid = Math.floor((lo + hi) / 2);
      const [entry] = await this.reader.read(at(mid), 1);
      if (entry && timeOf(entry.payload) >= time) hi = mid;
      else lo = mid + 1;
    }
    return at(lo);
  }

  stats(): LogStats {
    const ls = this.ctx.list.ledgers;
    const ledgers: LedgerInfo[] = ls.map((rec) => {
      const open = !rec.sealed;
      const info: LedgerInfo = {
        ledgerId: rec.ledgerId,
        entries: this.ctx.entriesOf(rec),
        size: open && rec.ledgerId === this.writer.openLedgerId ? this.writer.openLedgerBytes : rec.size,
        ctime: rec.ctime,
        offloaded: rec.offload?.state === 'complete',
        bookieCopyDeleted: rec.bookieDeleted === true,
        open,
      };
      if (rec.offload?.state === 'complete') info.offloadUuid = rec.offload.uuid;
      return info;
    });
    const cursors: CursorStats[] = [...this.cursorMap.values()].map((c) => {
      const s: CursorStats = {
        name: c.name,
        markDelete: { ...c.markDelete },
        ackRanges: c.ackRangeCount(),
        backlog: c.backlog(),
        partialBatches: c.partialBatches,
      };
      if (c.store.ledgerId !== undefined) s.cursorLedgerId = c.store.ledgerId;
      return s;
    });
    return {
      entries: ledgers.reduce((n, l) => n + l.entries, 0),
      storageBytes: ledgers.filter((l) => !l.bookieCopyDeleted).reduce((n, l) => n + l.size, 0),
      offloadedBytes: ledgers.filter((l) => l.offloaded).reduce((n, l) => n + l.size, 0),
      ledgers,
      cursors,
    };
  }

  private armTick(): void {
    this.tickTimer = this.ctx.clock.setTimeout(() => {
      this.tickTimer = undefined;
      if (this.ctx.closed || this.ctx.fenced) return;
      this.ticking = this.maintenance
        .tick()
        .catch((err) => this.ctx.logger.warn({ log: this.ctx.name, err }, 'log maintenance failed'))
        .finally(() => {
          this.ticking = undefined;
          // close() cleared the timer while this pass ran: do not arm a new one.
          if (!this.ctx.closed && !this.closing) this.armTick();
        });
    }, this.ctx.config.maintenanceIntervalMs);
  }

  private closedError(): ClosedError {
    return new ClosedError(`managed log '${this.ctx.name}' is closed; reopen it`);
  }

  close(): Promise<void> {
    if (!this.closing) this.closing = this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    this.tickTimer?.clear();
    this.tickTimer = undefined;
    this.maintenance.close();
    try {
      await this.writer.close();
      await this.ticking;
      await this.maintenance.idle();
      // Closing trashes an empty open ledger (and earlier passes may have left
      // work behind): delete it now rather than leave it to a later owner.
      await this.maintenance
        .emptyTrash()
        .catch((err: unknown) =>
          this.ctx.logger.warn({ log: this.ctx.name, err }, 'emptying the trash on close failed'),
        );
      const errors: unknown[] = [];
      for (const c of this.cursorMap.values()) {
        await c.close().catch((err) => errors.push(err));
      }
      if (errors.length > 0 && !this.ctx.fenced) throw errors[0];
    } finally {
      this.ctx.closed = true;
      this.wake();
      await this.reader.close();
      this.onClosed();
    }
  }

  /**
   * Delete the log: its cursors, its ledgers and its list. Only the owner
   * may: a fenced log refuses, and every step is conditional on the
   * versions this owner holds (the list CAS, each cursor snapshot's), so a
   * stale owner that has not noticed the takeover fails with FencedError
   * before it deletes anything of the new owner's.
   */
  async delete(): Promise<void> {
    if (this.ctx.fenced) throw this.deleteFencedError();
    for (const opening of [...this.openingCursors.values()]) await opening.catch(() => undefined);
    const cursors = [...this.cursorMap.values()];
    try {
      // Closing seals the open ledger with a list CAS: a stale owner fails here.
      await this.close();
      // The list records every ledger in the trash before anything is
      // deleted, as a CAS against the version this owner holds.
      await this.ctx.mutateList((list) => {
        for (const rec of list.ledgers) {
          list.trash.push({
            ledgerId: rec.ledgerId,
            bookie: !rec.bookieDeleted,
            offloadUuids: rec.offload ? [rec.offload.uuid] : [],
          });
        }
        list.ledgers = [];
      });
    } catch (err) {
      throw this.ctx.fenced ? this.deleteFencedError(err) : err;
    }
    for (const c of cursors) {
      // Conditional on the snapshot version this owner knows (see CursorStore.destroy).
      await c.destroy();
      this.cursorMap.delete(c.name);
      this.cacheFree.delete(c.name);
    }
    await this.maintenance.emptyTrash();
    if (this.ctx.list.trash.length > 0) {
      throw new UnavailableError(
        `log '${this.ctx.name}' was emptied but ${this.ctx.list.trash.length} ledgers could not be deleted yet; call delete again`,
      );
    }
    await this.ctx.store.remove(this.ctx.version);
  }

  private deleteFencedError(cause?: unknown): FencedError {
    return new FencedError(
      `cannot delete managed log '${this.ctx.name}': another owner took it over; delete it where the topic is now owned`,
      cause === undefined ? undefined : { cause },
    );
  }
}
