import {
  backoffDelay,
  comparePositions,
  formatPosition,
  InvalidArgumentError,
  OutOfRangeError,
  type Position,
  type Timer,
} from '@sluice/common';
import type { AckSet } from './ack-set.js';
import type { Cursor } from './api.js';
import type { BatchAcks, CursorState } from './cursor-state.js';
import type { CursorStore } from './cursor-store.js';
import type { LogContext } from './log-context.js';

const key = (p: Position): string => `${p.ledgerId}:${p.entryId}`;

/**
 * One subscription's position: everything <= markDelete is acknowledged,
 * plus individually acknowledged entries above it and partly acknowledged
 * batches. Acks are batched: the state is persisted at most
 * `ackFlushDelayMs` after the first unpersisted ack.
 */
export class ManagedCursor implements Cursor {
  markDelete: Position;
  readPosition: Position;
  private acks: AckSet;
  private batches: Map<string, BatchAcks & Position>;
  private dirty = false;
  private timer: Timer | undefined;
  private flushing: Promise<void> | undefined;
  private failures = 0;
  private closed = false;
  /** Mark-delete at which acks and batches were last pruned. */
  private clearedTo: Position = { ledgerId: -1, entryId: -1 };

  constructor(
    private readonly ctx: LogContext,
    readonly name: string,
    readonly store: CursorStore,
    state: CursorState,
    /** Called when mark-delete moves forward. */
    private readonly onMarkDeleteMoved: () => void = () => undefined,
  ) {
    this.markDelete = state.markDelete;
    this.acks = state.acks;
    this.batches = state.batches;
    this.readPosition = this.after(this.markDelete);
    this.advance();
  }

  /** Position after `p`, or the position the next append will take. */
  private after(p: Position): Position {
    return this.ctx.nextPosition(p) ?? this.ctx.endPosition(p);
  }

  isAcked(p: Position): boolean {
    return comparePositions(p, this.markDelete) <= 0 || this.acks.has(p.ledgerId, p.entryId);
  }

  private checkStored(p: Position, what: string): void {
    const last = this.ctx.lastPosition();
    if (!Number.isSafeInteger(p.ledgerId) || !Number.isSafeInteger(p.entryId) || p.entryId < 0) {
      throw new InvalidArgumentError(`${what} position ${formatPosition(p)} is malformed`);
    }
    const rec = this.ctx.record(p.ledgerId);
    // Past the end of its ledger (a sealed one's count is final) is no entry either.
    if (!last || comparePositions(p, last) > 0 || !rec || p.entryId >= this.ctx.entriesOf(rec)) {
      throw new InvalidArgumentError(
        `${what} position ${formatPosition(p)} is not an entry of log '${this.ctx.name}' (last is ${last ? formatPosition(last) : 'none'})`,
      );
    }
  }

  ack(p: Position): void {
    if (comparePositions(p, this.markDelete) <= 0) return;
    this.checkStored(p, 'ack');
    this.batches.delete(key(p));
    if (!this.acks.add(p.ledgerId, p.entryId)) return;
    this.advance();
    this.markDirty();
  }

  ackCumulative(p: Position): void {
    if (comparePositions(p, this.markDelete) <= 0) return;
    this.checkStored(p, 'cumulative ack');
    this.markDelete = { ...p };
    this.advance();
    this.markDirty();
  }

  ackBatchIndex(p: Position, index: number, batchSize: number): void {
    if (
      !Number.isSafeInteger(batchSize) ||
      batchSize < 1 ||
      !Number.isSafeInteger(index) ||
      index < 0 ||
      index >= batchSize
    ) {
      throw new InvalidArgumentError(
        `batch index ${index} of a batch of ${batchSize} is invalid; use 0 <= index < batchSize`,
      );
    }
    if (this.isAcked(p)) return;
    this.checkStored(p, 'batch ack');
    const k = key(p);
    let b = this.batches.get(k);
    if (!b) {
      b = {
        ledgerId: p.ledgerId,
        entryId: p.entryId,
        size: batchSize,
        bits: new Uint8Array(Math.ceil(batchSize / 8)),
        acked: 0,
      };
      this.batches.set(k, b);
    } else if (b.size !== batchSize) {
      throw new InvalidArgumentError(
        `entry ${k} holds a batch of ${b.size} messages, not ${batchSize}; ack with the batch size the entry was delivered with`,
      );
    }
    const mask = 1 << (index & 7);
    if (b.bits[index >> 3]! & mask) return;
    b.bits[index >> 3]! |= mask;
    b.acked++;
    if (b.acked === b.size) {
      this.ack(p);
      return;
    }
    this.markDirty();
  }

  ackedBatchIndexes(p: Position): number[] | undefined {
    const b = this.batches.get(key(p));
    if (!b) return undefined;
    const out: number[] = [];
    for (let i = 0; i < b.size; i++) if (b.bits[i >> 3]! & (1 << (i & 7))) out.push(i);
    return out;
  }

  firstUnackedFrom(from: Position): Position {
    let p: Position | undefined =
      comparePositions(from, this.markDelete) <= 0 ? this.after(this.markDelete) : from;
    while (
      p &&
      this.ctx.record(p.ledgerId) &&
      p.entryId < this.ctx.entriesOfId(p.ledgerId) &&
      this.isAcked(p)
    ) {
      const next: Position | undefined = this.ctx.nextPosition(p);
      if (!next) return this.ctx.endPosition(p);
      p = next;
    }
    return p;
  }

  /** Move mark-delete over every acknowledged entry right after it. */
  private advance(): void {
    for (;;) {
      const next = this.ctx.nextPosition(this.markDelete);
      if (!next || !this.acks.has(next.ledgerId, next.entryId)) break;
      this.markDelete = next;
    }
    if (comparePositions(this.markDelete, this.clearedTo) !== 0) {
      const forward = comparePositions(this.markDelete, this.clearedTo) > 0;
      this.clearedTo = { ...this.markDelete };
      this.acks.clearUpTo(this.markDelete.ledgerId, this.markDelete.entryId);
      for (const [k, b] of this.batches)
        if (comparePositions(b, this.markDelete) <= 0) this.batches.delete(k);
      if (forward) this.onMarkDeleteMoved();
    }
    if (comparePositions(this.readPosition, this.markDelete) <= 0)
      this.readPosition = this.after(this.markDelete);
  }

  backlog(): number {
    return Math.max(0, this.ctx.entriesAfter(this.markDelete) - this.acks.size);
  }

  ackRangeCount(): number {
    return this.acks.rangeCount;
  }

  get partialBatches(): number {
    return this.batches.size;
  }

  async reset(p: Position): Promise<void> {
    // Checked against the list a running trim is about to shrink, `p` could pass and then be trimmed away.
    if (this.ctx.trimming) await this.ctx.trimSettled();
    const first = this.ctx.firstPosition();
    const end = this.ctx.endPosition(this.ctx.lastPosition());
    if (first && comparePositions(p, first) < 0) {
      throw new OutOfRangeError(
        `cannot reset cursor '${this.name}' to ${formatPosition(p)}: it was trimmed from log '${this.ctx.name}'; the earliest available position is ${formatPosition(first)}`,
      );
    }
    if (comparePositions(p, end) > 0 || (p.entryId > 0 && !this.ctx.record(p.ledgerId)) || p.entryId < 0) {
      throw new OutOfRangeError(
        `cannot reset cursor '${this.name}' to ${formatPosition(p)}: log '${this.ctx.name}' ends at ${formatPosition(end)}`,
      );
    }
    this.markDelete = this.ctx.previousPosition(p);
    this.acks.clear();
    this.batches.clear();
    this.readPosition = { ...p };
    this.advance();
    this.dirty = true;
    await this.flush();
  }

  /** The log trimmed ledgers below `first`: a cursor behind it moves up (its entries are gone). */
  onTrimmed(first: Position | undefined): void {
    if (!first) return;
    if (comparePositions(this.markDelete, first) < 0 && this.markDelete.ledgerId < first.ledgerId) {
      this.markDelete = { ledgerId: first.ledgerId, entryId: -1 };
      this.advance();
      this.markDirty();
    }
  }

  state(): CursorState {
    return { markDelete: { ...this.markDelete }, acks: this.acks, batches: this.batches };
  }

  private markDirty(): void {
    this.dirty = true;
    if (this.timer || this.closed) return;
    this.timer = this.ctx.clock.setTimeout(() => {
      this.timer = undefined;
      this.flush().catch((err) => {
        this.ctx.logger.warn({ log: this.ctx.name, cursor: this.name, err }, 'cursor flush failed; retrying');
      });
    }, this.ctx.config.ackFlushDelayMs);
  }

  async flush(): Promise<void> {
    while (this.flushing) await this.flushing.catch(() => undefined);
    if (!this.dirty) return;
    this.dirty = false;
    const state = this.state();
    this.flushing = this.store.persist(state).then(
      () => {
        this.failures = 0;
        this.ctx.metrics.cursorFlushes.inc();
      },
      (err) => {
        this.dirty = true;
        if (!this.ctx.fenced && !this.closed) {
          this.timer?.clear();
          this.timer = this.ctx.clock.setTimeout(
            () => {
              this.timer = undefined;
              this.flush().catch(() => undefined);
            },
            backoffDelay(this.failures++),
          );
        }
        throw err;
      },
    );
    try {
      await this.flushing;
    } finally {
      this.flushing = undefined;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.timer?.clear();
    this.timer = undefined;
    while (this.flushing) await this.flushing.catch(() => undefined);
    if (this.ctx.fenced) return;
    await this.store.close(this.state());
    this.dirty = false;
  }

  async destroy(): Promise<void> {
    this.closed = true;
    this.timer?.clear();
    this.timer = undefined;
    while (this.flushing) await this.flushing.catch(() => undefined);
    await this.store.destroy();
  }
}
