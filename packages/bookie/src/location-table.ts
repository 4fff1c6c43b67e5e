import type { EntryLocation } from './entry-log.js';

/** Slots the dense arrays may have beyond four per entry held, so that a small ledger is always dense. */
const DENSE_SLACK = 1024;
const DENSE_MIN_CAPACITY = 64;

/**
 * Where each stored entry of one ledger lives: entryId → (logId, offset,
 * length). Held for every entry a bookie stores, so it must not be one heap
 * object per entry: a bookie taking 80k adds/s would otherwise add ~100 bytes
 * of GC-traced objects per add for as long as the entry lives. Entry ids of
 * a ledger run densely (a striped ensemble stores every k-th one; a bookie
 * that joined the ensemble late starts mid-ledger), so from the first id
 * stored on they index three typed arrays (16 bytes per slot, nothing for
 * the GC to trace); ids before that or far past the dense range (at most a
 * quarter of slots used) go to a map.
 */
export class LocationTable {
  /** Entry id of slot 0, fixed by the first id stored. */
  private base = -1;
  /** logId + 1 per slot; 0 = no entry. */
  private logIds = new Uint32Array(0);
  private offsets = new Float64Array(0);
  private lengths = new Uint32Array(0);
  private sparse: Map<number, EntryLocation> | undefined;
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** Entries held in the map rather than the dense arrays. */
  get mapped(): number {
    return this.sparse?.size ?? 0;
  }

  get(entryId: number): EntryLocation | undefined {
    const i = entryId - this.base;
    if (this.base >= 0 && i >= 0 && i < this.logIds.length) {
      const id = this.logIds[i]!;
      return id === 0 ? undefined : { logId: id - 1, offset: this.offsets[i]!, length: this.lengths[i]! };
    }
    return this.sparse?.get(entryId);
  }

  /** Store `loc` for `entryId`; returns the location it replaced. */
  set(entryId: number, loc: EntryLocation): EntryLocation | undefined {
    if (this.base < 0 && this.count === 0 && entryId >= 0) this.base = entryId;
    if (this.base >= 0 && entryId >= 0) {
      const end = this.base + this.logIds.length;
      if (entryId >= end && this.fitsDense(entryId + 1 - this.base)) this.reshape(this.base, entryId + 1);
      // An id before the base moves the base down when the arrays stay dense enough.
      else if (entryId < this.base && this.fitsDense(end - entryId)) this.reshape(entryId, end);
    }
    const i = entryId - this.base;
    if (this.base >= 0 && i >= 0 && i < this.logIds.length) {
      const old = this.get(entryId);
      if (!old) this.count++;
      this.logIds[i] = loc.logId + 1;
      this.offsets[i] = loc.offset;
      this.lengths[i] = loc.length;
      return old;
    }
    this.sparse ??= new Map();
    const old = this.sparse.get(entryId);
    if (!old) this.count++;
    this.sparse.set(entryId, { logId: loc.logId, offset: loc.offset, length: loc.length });
    return old;
  }

  /** Calls `fn` for every entry: the dense ids ascending, then the sparse ones. */
  each(fn: (entryId: number, logId: number, offset: number, length: number) => void): void {
    const ids = this.logIds;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (id !== 0) fn(this.base + i, id - 1, this.offsets[i]!, this.lengths[i]!);
    }
    if (this.sparse) for (const [entryId, l] of this.sparse) fn(entryId, l.logId, l.offset, l.length);
  }

  /** Every stored entry id (dense ones ascending, then the sparse ones). */
  ids(): number[] {
    const out: number[] = [];
    this.each((entryId) => {
      out.push(entryId);
    });
    return out;
  }

  /** Whether dense arrays of `slots` slots stay at least a quarter full. */
  private fitsDense(slots: number): boolean {
    return slots <= 4 * (this.count + DENSE_SLACK);
  }

  /**
   * Re-allocate the dense arrays to cover at least [base, end), starting
   * lower when ids held in the map still fit at a quarter full.
   */
  private reshape(base: number, end: number): void {
    for (const id of this.sparse?.keys() ?? [])
      if (id >= 0 && id < base && this.fitsDense(end - id)) base = id;
    const capacity = Math.max(end - base, 2 * this.logIds.length, DENSE_MIN_CAPACITY);
    const shift = this.base - base;
    const logIds = new Uint32Array(capacity);
    const offsets = new Float64Array(capacity);
    const lengths = new Uint32Array(capacity);
    logIds.set(this.logIds, shift);
    offsets.set(this.offsets, shift);
    lengths.set(this.lengths, shift);
    this.base = base;
    this.logIds = logIds;
    this.offsets = offsets;
    this.lengths = lengths;
    // Sparse ids the dense range now covers move into it: an id lives in one place only.
    if (this.sparse) {
      for (const [entryId, l] of this.sparse) {
        const i = entryId - base;
        if (i < 0 || i >= capacity) continue;
        this.sparse.delete(entryId);
        logIds[i] = l.logId + 1;
        offsets[i] = l.offset;
        lengths[i] = l.length;
      }
      if (this.sparse.size === 0) this.sparse = undefined;
    }
  }
}

export function sameLocation(a: EntryLocation | undefined, b: EntryLocation | undefined): boolean {
  return (
    a !== undefined &&
    b !== undefined &&
    a.logId === b.logId &&
    a.offset === b.offset &&
    a.length === b.length
  );
}
