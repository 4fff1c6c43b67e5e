import { comparePositions, formatPosition, OutOfRangeError, type Position } from '@sluice/common';
import type { Cursor, ManagedLog } from '@sluice/managed-log';
import { posKey } from './consumer.js';
import { endPosition, previousPosition } from './log-positions.js';

/**
 * The cursor of a non-durable reader: the same contract as a managed-log
 * cursor, held in memory only. Nothing is stored and it holds no data back
 * from trimming; it ends with the reader's stream.
 */
export class NonDurableCursor implements Cursor {
  private mark: Position;
  private readonly acked = new Set<string>();
  private readonly batches = new Map<string, Set<number>>();
  readPosition: Position;

  /** `start` is the first position the reader receives. */
  constructor(
    readonly name: string,
    private readonly log: ManagedLog,
    start: Position,
  ) {
    this.mark = previousPosition(log, start);
    this.readPosition = start;
  }

  /**
   * Where a reader starts: a message id (inclusive: the first stored entry at
   * or after it, or the end; a trimmed one means the oldest stored entry),
   * the oldest entry, or the end.
   */
  static startPosition(
    log: ManagedLog,
    at: { id: Position } | 'earliest' | 'latest',
    name: string,
  ): Position {
    if (at === 'latest') return endPosition(log);
    const first = log.firstPosition();
    if (at === 'earliest') return first ?? endPosition(log);
    // A reader resuming from an id that was trimmed meanwhile continues at the oldest stored entry.
    if (first && comparePositions(at.id, first) < 0) return first;
    if (!first) return endPosition(log);
    checkInRange(log, at.id, name);
    // A reader resumes from the end it was given before a rollover or a
    // takeover: past the last entry of a ledger since sealed, or entry 0 of
    // one dropped because it stayed empty. Neither can be read; what was
    // published since starts at the next stored entry.
    return log.nextPosition({ ledgerId: at.id.ledgerId, entryId: at.id.entryId - 1 }) ?? endPosition(log);
  }

  get markDelete(): Position {
    return this.mark;
  }

  isAcked(p: Position): boolean {
    return comparePositions(p, this.mark) <= 0 || this.acked.has(posKey(p));
  }

  ack(p: Position): void {
    if (this.isAcked(p)) return;
    this.acked.add(posKey(p));
    this.batches.delete(posKey(p));
    this.advance();
  }

  ackCumulative(p: Position): void {
    if (comparePositions(p, this.mark) <= 0) return;
    this.mark = p;
    for (const k of [...this.acked]) if (this.isBelowMark(k)) this.acked.delete(k);
    for (const k of [...this.batches.keys()]) if (this.isBelowMark(k)) this.batches.delete(k);
    this.advance();
  }

  backlog(): number {
    return Math.max(0, this.log.entriesAfter(this.mark) - this.acked.size);
  }

  ackRangeCount(): number {
    return this.acked.size;
  }

  async reset(p: Position): Promise<void> {
    checkInRange(this.log, p, this.name);
    this.mark = previousPosition(this.log, p);
    this.acked.clear();
    this.batches.clear();
    this.readPosition = p;
  }

  ackBatchIndex(p: Position, index: number, batchSize: number): void {
    if (this.isAcked(p)) return;
    const k = posKey(p);
    let set = this.batches.get(k);
    if (!set) {
      set = new Set();
      this.batches.set(k, set);
    }
    set.add(index);
    if (set.size >= batchSize) this.ack(p);
  }

  ackedBatchIndexes(p: Position): number[] | undefined {
    const set = this.batches.get(posKey(p));
    return set ? [...set].sort((a, b) => a - b) : undefined;
  }

  firstUnackedFrom(from: Position): Position {
    let p = from;
    while (this.isAcked(p)) {
      const next = this.log.nextPosition(p);
      if (!next) return { ledgerId: p.ledgerId, entryId: p.entryId + 1 };
      p = next;
    }
    return p;
  }

  async flush(): Promise<void> {
    // Nothing is persisted for a non-durable reader.
  }

  private isBelowMark(k: string): boolean {
    const [l, e] = k.split(':').map(Number);
    return comparePositions({ ledgerId: l!, entryId: e! }, this.mark) <= 0;
  }

  private advance(): void {
    for (;;) {
      const next = this.log.nextPosition(this.mark);
      if (!next || !this.acked.has(posKey(next))) return;
      this.acked.delete(posKey(next));
      this.mark = next;
    }
  }
}

/** Refuse a position that was trimmed or lies past the end of the log. */
export function checkInRange(log: ManagedLog, p: Position, what: string): void {
  const first = log.firstPosition();
  const end = endPosition(log);
  if (first && comparePositions(p, first) < 0) {
    throw new OutOfRangeError(
      `cannot move '${what}' to ${formatPosition(p)}: it was trimmed; the earliest stored message is ${formatPosition(first)}`,
    );
  }
  if (!first && comparePositions(p, end) < 0) {
    throw new OutOfRangeError(
      `cannot move '${what}' to ${formatPosition(p)}: it was trimmed and the topic holds no messages; seek to ${formatPosition(end)} or later`,
    );
  }
  if (comparePositions(p, end) > 0) {
    throw new OutOfRangeError(
      `cannot move '${what}' to ${formatPosition(p)}: the topic ends at ${formatPosition(end)}; use a stored message id`,
    );
  }
}
