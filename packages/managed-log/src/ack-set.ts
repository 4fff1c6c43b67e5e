import type { EntryId, LedgerId } from '@sluice/common';

/**
 * Growable bitset of entry ids of one ledger, counting set bits and runs as
 * it changes. The bits cover a window [base, base + 32 × words) that starts
 * at the lowest entry it may hold, not at entry 0: a tailing subscription
 * acks in order, so its window holds a few words however far into the
 * ledger it is (sized from entry 0, each ack at entry 50,000 grew a fresh
 * array through nine doublings, ~16 KB of garbage per ack).
 */
class LedgerBits {
  private words = new Uint32Array(4);
  /** Entry id of bit 0 of words[0]; a multiple of 32. */
  private base = 0;
  count = 0;
  ranges = 0;
  /** Every bit below this entry id is clear. */
  private low = 0;

  /** Words the window holds. */
  get wordCount(): number {
    return this.words.length;
  }

  has(e: number): boolean {
    const i = e - this.base;
    if (i < 0) return false;
    const w = i >>> 5;
    return w < this.words.length && (this.words[w]! & (1 << (i & 31))) !== 0;
  }

  set(e: number): boolean {
    if (this.has(e)) return false;
    if (this.count === 0) {
      // Empty (every word is zero): the window starts at e's word.
      this.base = e - (e % 32);
      this.low = e;
    } else if (e < this.base) {
      this.growDown(e);
    }
    if (e < this.low) this.low = e;
    const i = e - this.base;
    const w = i >>> 5;
    if (w >= this.words.length) {
      let n = this.words.length * 2;
      while (n <= w) n *= 2;
      const grown = new Uint32Array(n);
      grown.set(this.words);
      this.words = grown;
    }
    const left = e > 0 && this.has(e - 1);
    const right = this.has(e + 1);
    this.words[w]! |= 1 << (i & 31);
    this.count++;
    // A new bit starts a run, extends one, or joins two.
    if (!left && !right) this.ranges++;
    else if (left && right) this.ranges--;
    return true;
  }

  /** Moves the window's start down to e's word (an ack below every other one held). */
  private growDown(e: number): void {
    const base = e - (e % 32);
    const shift = (this.base - base) / 32;
    let n = this.words.length;
    while (n < this.words.length + shift) n *= 2;
    const grown = new Uint32Array(n);
    grown.set(this.words, shift);
    this.words = grown;
    this.base = base;
  }

  /**
   * Clear every bit <= e. Bits below `low` are already clear, so only
   * [low, e] is scanned: over a cursor's life each entry is scanned once.
   * Once the cleared words make up half the window, the rest moves down to
   * its start, so a window sliding along a ledger keeps its size.
   */
  clearUpTo(e: number): void {
    const limit = Math.min(e, this.base + this.words.length * 32 - 1);
    const from = Math.max(this.low, this.base);
    if (limit < from) return;
    let bits = 0;
    let starts = 0;
    let prev = false;
    let i = from - this.base;
    const end = limit - this.base;
    while (i <= end) {
      const w = i >>> 5;
      if ((i & 31) === 0 && i + 31 <= end && this.words[w] === 0) {
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
    const dead = (this.low - this.base) >>> 5;
    if (this.count > 0 && dead >= this.words.length / 2) {
      this.words.copyWithin(0, dead);
      this.words.fill(0, this.words.length - dead);
      this.base += dead * 32;
    }
  }

  /** Calls `fn` for each run of set bits, ascending (no allocation: cursor flushes walk 100k+ runs). */
  visitRuns(fn: (first: number, last: number) => void): void {
    const words = this.words;
    let start = -1;
    for (let w = 0; w < words.length; w++) {
      const word = words[w]!;
      const base = this.base + w * 32;
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
    if (start >= 0) fn(start, this.base + words.length * 32 - 1);
  }

  runs(): [number, number][] {
    const out: [number, number][] = [];
    this.visitRuns((a, b) => out.push([a, b]));
    return out;
  }
}

/** Largest emptied window (in 32-bit words) kept for reuse. */
const SPARE_MAX_WORDS = 1024;

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
  /**
   * A ledger's bits emptied by an ack, kept for the next ack: in-order acks
   * empty the set at every step, and this saves an object and an array each.
   */
  private spare: LedgerBits | undefined;

  has(ledgerId: LedgerId, entryId: EntryId): boolean {
    return this.byLedger.get(ledgerId)?.has(entryId) ?? false;
  }

  add(ledgerId: LedgerId, entryId: EntryId): boolean {
    let bits = this.byLedger.get(ledgerId);
    if (!bits) {
      bits = this.spare ?? new LedgerBits();
      this.spare = undefined;
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
        if (bits.count === 0) {
          this.byLedger.delete(l);
          // Every word is zero again; a small window is worth keeping.
          if (bits.wordCount <= SPARE_MAX_WORDS) this.spare = bits;
        }
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

  /** Bytes of bitset the held acks take (their windows' words). */
  get heldBytes(): number {
    let words = 0;
    for (const bits of this.byLedger.values()) words += bits.wordCount;
    return words * 4;
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
