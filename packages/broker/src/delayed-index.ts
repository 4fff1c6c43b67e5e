import { comparePositions, type Position } from '@sluice/common';
import { posKey } from './consumer.js';

interface Delayed {
  position: Position;
  deliverAt: number;
}

const earlier = (a: Delayed, b: Delayed): boolean =>
  a.deliverAt < b.deliverAt || (a.deliverAt === b.deliverAt && comparePositions(a.position, b.position) < 0);

/**
 * Entries of a subscription held for delayed delivery: a min-heap of
 * positions by delivery time, bounded in count. Only positions live here (the
 * payload stays in the log and is read again when due), and an entry that
 * does not fit is left unread in the log for the subscription to re-scan
 * later: nothing is ever dropped.
 */
export class DelayedIndex {
  private readonly heap: Delayed[] = [];
  private readonly keys = new Set<string>();

  constructor(readonly maxEntries: number) {}

  get size(): number {
    return this.heap.length;
  }

  get full(): boolean {
    return this.heap.length >= this.maxEntries;
  }

  has(p: Position): boolean {
    return this.keys.has(posKey(p));
  }

  /** False when the index is full (the caller leaves the entry in the log). */
  add(position: Position, deliverAt: number): boolean {
    const k = posKey(position);
    if (this.keys.has(k)) return true;
    if (this.full) return false;
    this.keys.add(k);
    this.heap.push({ position, deliverAt });
    this.up(this.heap.length - 1);
    return true;
  }

  /** Delivery time of the earliest entry, if any. */
  nextTime(): number | undefined {
    return this.heap[0]?.deliverAt;
  }

  /** Remove and return every position due at `now`. */
  popDue(now: number): Position[] {
    const out: Position[] = [];
    while (this.heap.length > 0 && this.heap[0]!.deliverAt <= now) {
      const top = this.pop();
      out.push(top.position);
    }
    return out;
  }

  /** Forget positions the subscription no longer needs (expired, evicted, acknowledged). */
  removeWhere(drop: (p: Position) => boolean): void {
    const keep = this.heap.filter((d) => !drop(d.position));
    if (keep.length === this.heap.length) return;
    this.clear();
    for (const d of keep) this.add(d.position, d.deliverAt);
  }

  clear(): void {
    this.heap.length = 0;
    this.keys.clear();
  }

  private pop(): Delayed {
    const top = this.heap[0]!;
    const last = this.heap.pop()!;
    if (this.heap.length > 0) {
      this.heap[0] = last;
      this.down(0);
    }
    this.keys.delete(posKey(top.position));
    return top;
  }

  private up(i: number): void {
    const h = this.heap;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!earlier(h[i]!, h[parent]!)) return;
      [h[i], h[parent]] = [h[parent]!, h[i]!];
      i = parent;
    }
  }

  private down(i: number): void {
    const h = this.heap;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && earlier(h[l]!, h[m]!)) m = l;
      if (r < h.length && earlier(h[r]!, h[m]!)) m = r;
      if (m === i) return;
      [h[i], h[m]] = [h[m]!, h[i]!];
      i = m;
    }
  }
}
