import type { EntryLocation } from './entry-log.js';

/** Entry ids below this stay in the dense arrays while they are at least a quarter full. */
const DENSE_SLACK = 1024;
const DENSE_MIN_CAPACITY = 64;

/**
 * Where each stored entry of one ledger lives: entryId → (logId, offset,
 * length). Held for every entry a bookie stores, so it must not be one heap
 * object per entry: a bookie taking 80k adds/s would otherwise add ~100 bytes
 * of GC-traced objects per add for as long as the entry lives. Entry ids of
 * a ledger run densely from 0 (a striped ensemble stores every k-th one), so
 * they index three typed arrays (16 bytes per slot, nothing for the GC to
 * trace); ids far past the dense range (at most a quarter of slots used)
 * go to a map.
 */
export class LocationTable {
  /** logId + 1 per slot; 0 = no entry. */
  private logIds = new Uint32Array(0);
  private offsets = new Float64Array(0);
  private lengths = new Uint32Array(0);
  private sparse: Map<number, EntryLocation> | undefined;
  private count = 0;

  get size(): number {
    return this.count;
  }

  get(entryId: number): EntryLocation | undefined {
    if (entryId >= 0 && entryId < this.logIds.length) {
      const id = this.logIds[entryId]!;
      return id === 0
        ? undefined
        : { logId: id - 1, offset: this.offsets[entryId]!, length: this.lengths[entryId]! };
    }
    return this.sparse?.get(entryId);
  }

  /** Store `loc` for `entryId`; returns the location it replaced. */
  set(entryId: number, loc: EntryLocation): EntryLocation | undefined {
    if (entryId >= this.logIds.length && this.fitsDense(entryId)) this.grow(entryId + 1);
    if (entryId >= 0 && entryId < this.logIds.length) {
      const old = this.get(entryId);
      if (!old) this.count++;
      this.logIds[entryId] = loc.logId + 1;
      this.offsets[entryId] = loc.offset;
      this.lengths[entryId] = loc.length;
      return old;
    }
    this.sparse ??= new Map();
    const old = this.sparse.get(entryId);
    if (!old) this.count++;
    this.sparse.set(entryId, { logId: loc.logId, offset: loc.offset, length: loc.length });
    return old;
  }

  /** Calls `fn` for every entry: dense ids ascending, then the sparse ones. */
  each(fn: (entryId: number, logId: number, offset: number, length: number) => void): void {
    const ids = this.logIds;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      if (id !== 0) fn(i, id - 1, this.offsets[i]!, this.lengths[i]!);
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

  private fitsDense(entryId: number): boolean {
    return entryId >= 0 && entryId < 4 * (this.count + DENSE_SLACK);
  }

  private grow(minCapacity: number): void {
    const capacity = Math.max(minCapacity, 2 * this.logIds.length, DENSE_MIN_CAPACITY);
    const logIds = new Uint32Array(capacity);
    const offsets = new Float64Array(capacity);
    const lengths = new Uint32Array(capacity);
    logIds.set(this.logIds);
    offsets.set(this.offsets);
    lengths.set(this.lengths);
    this.logIds = logIds;
    this.offsets = offsets;
    this.lengths = lengths;
    // Sparse ids the dense range now covers move into it: an id lives in one place only.
    if (this.sparse) {
      for (const [entryId, l] of this.sparse) {
        if (entryId < 0 || entryId >= capacity) continue;
        this.sparse.delete(entryId);
        logIds[entryId] = l.logId + 1;
        offsets[entryId] = l.offset;
        lengths[entryId] = l.length;
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
