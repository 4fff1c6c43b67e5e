import type { EntryId, LedgerId } from '@sluice/common';

/** Growable bitset of entry ids of one ledger, counting set bits and runs as it changes. */
class LedgerBits {
  words = new Uint32Array(4);
  count = 0;
  ranges = 0;
  /** Every bit below this is clear. */
  private low = 0;

  has(e: number): boolean {
    const w = e >>> 5;
    return w < this.words.length && (this.words[w]! & (1 << (e & 31))) !== 0;
  }

  set(e: number): boolean {
    if (this.has(e)) return false;
    if (e < this.low) this.low = e;
    const w = e >>> 5;
    if (w >= this.words.length) {
      let n = this.words.length * 2;
      while (n <= w) n *= 2;
      const grown = new Uint32Array(n);
      grown.set(this.words);
      this.words = grown;
    }
    const left = e > 0 && this.has(e - 1);
    const right = this.has(e + 1);
    this.words[w]! |= 1 << (e & 31);
    this.count++;
    // A new bit starts a run, extends one, or joins two.
    if (!left && !right) this.ranges++;
    else if (left && right) this.ranges--;
    return true;
  }

  /**
   * Clear every bit <= e. Bits below `low` are already clear, so only
   * [low, e] is scanned: over a cursor's life each entry is scanned once.
   */
  clearUpTo(e: number): void {
    const limit = Math.min(e, this.words.length * 32 - 1);
    if (limit < this.low) return;
    let bits = 0;
    let starts = 0;
    let prev = false;
    let i = this.low;
    while (i <= limit) {
      const w = i >>> 5;
      if ((i & 31) === 0 && i + 31 <= limit && this.words[w] === 0) {
        prev = false;
        i += 32;
        continue;
      }
      const mask = 1 << (i & 31);
      const on = (this.words[w]! & mask) !== 0;
      if (on) {
        bits++;
        if (!prev) starts++;
        this.words[w]! &= ~mask;
      }
      prev = on;
      i++;
    }
    // A run crossing e loses its head but still counts as one run.
    const continues = prev && this.has(limit + 1);
    this.count -= bits;
    this.ranges -= starts - (continues ? 1 : 0);
    this.low = limit + 1;
  }

  /** Calls `fn` for each run of set bits, ascending (no allocation: cursor flushes walk 100k+ runs). */
  visitRuns(fn: (first: number, last: number) => void): void {
    const words = this.words;
    let start = -1;
    for (let w = 0; w < words.length; w++) {
      const word = words[w]!;
      const base = w * 32;
      if (word === 0) {
        if (start >= 0) {
          fn(start, base - 1);
          start = -1;
        }
        continue;
      }
      if (word === 0xffffffff) {
        if (start < 0) start = base;
        continue;
      }
      for (let b = 0; b < 32; b++) {
        if ((word >>> b) & 1) {
          if (start < 0) start = base + b;
        } else if (start >= 0) {
          fn(start, base + b - 1);
          start = -1;
        }
      }
    }
    if (start >= 0) fn(start, words.length * 32 - 1);
  }

  runs(): [number, number][] {
    const out: [number, number][] = [];
    this.visitRuns((a, b) => out.push([a, b]));
    return out;
  }
}

/**
 * Individually acknowledged entries above a cursor's mark-delete position: a
 * bitset per ledger (entry ids are dense within a ledger), so acking is O(1),
 * memory is one bit per entry of the span, and there is no cap on the number
 * of ranges (Pulsar caps them and silently loses the rest).
 */
export class AckSet {
  private readonly byLedger = new Map<LedgerId, LedgerBits>();
  private total = 0;
  private rangeTotal = 0;

  has(ledgerId: LedgerId, entryId: EntryId): boolean {
    return this.byLedger.get(ledgerId)?.has(entryId) ?? false;
  }

  add(ledgerId: LedgerId, entryId: EntryId): boolean {
    let bits = this.byLedger.get(ledgerId);
    if (!bits) {
      bits = new LedgerBits();
      this.byLedger.set(ledgerId, bits);
    }
    const beforeRanges = bits.ranges;
    if (!bits.set(entryId)) return false;
    this.total++;
    this.rangeTotal += bits.ranges - beforeRanges;
    return true;
  }

  /** Forget everything at or below (ledgerId, entryId). */
  clearUpTo(ledgerId: LedgerId, entryId: EntryId): void {
    for (const [l, bits] of this.byLedger) {
      if (l < ledgerId) {
        this.total -= bits.count;
        this.rangeTotal -= bits.ranges;
        this.byLedger.delete(l);
      } else if (l === ledgerId && entryId >= 0) {
        this.total -= bits.count;
        this.rangeTotal -= bits.ranges;
        bits.clearUpTo(entryId);
        this.total += bits.count;
        this.rangeTotal += bits.ranges;
        if (bits.count === 0) this.byLedger.delete(l);
      }
    }
  }

  clear(): void {
    this.byLedger.clear();
    this.total = 0;
    this.rangeTotal = 0;
  }

  /** Number of acknowledged entries held. */
  get size(): number {
    return this.total;
  }

  /** Number of contiguous ranges (within a ledger). */
  get rangeCount(): number {
    return this.rangeTotal;
  }

  /** Ledgers ascending with their runs of acknowledged entries. */
  *ranges(): Generator<[LedgerId, [EntryId, EntryId][]]> {
    const ids = [...this.byLedger.keys()].sort((a, b) => a - b);
    for (const l of ids) yield [l, this.byLedger.get(l)!.runs()];
  }

  /** Ledger ids holding acks, ascending. */
  ledgerIds(): LedgerId[] {
    return [...this.byLedger.keys()].sort((a, b) => a - b);
  }

  rangeCountOf(ledgerId: LedgerId): number {
    return this.byLedger.get(ledgerId)?.ranges ?? 0;
  }

  visitRuns(ledgerId: LedgerId, fn: (first: EntryId, last: EntryId) => void): void {
    this.byLedger.get(ledgerId)?.visitRuns(fn);
  }

  /** Add a whole run (used when decoding). */
  addRange(ledgerId: LedgerId, first: EntryId, last: EntryId): void {
    for (let e = first; e <= last; e++) this.add(ledgerId, e);
  }
}
