import { comparePositions, type EntryId, type LedgerId, type Position } from '@sluice/common';
import type { EntryBytes } from './api.js';
import { entryByteLength } from './entry-bytes.js';

interface Run {
  ledgerId: LedgerId;
  first: EntryId;
  payloads: EntryBytes[];
}

/**
 * The most recent appended entries, bounded by bytes. Appends are contiguous
 * within a ledger, so the cache is a few runs; eviction drops the oldest.
 */
export class TailCache {
  private runs: Run[] = [];
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  /** Cache an entry as it was appended (one Buffer or parts); `bytes` is its length. */
  put(ledgerId: LedgerId, entryId: EntryId, payload: EntryBytes, bytes = entryByteLength(payload)): void {
    if (this.maxBytes <= 0) return;
    const last = this.runs[this.runs.length - 1];
    if (last && last.ledgerId === ledgerId && last.first + last.payloads.length === entryId) {
      last.payloads.push(payload);
    } else {
      this.runs.push({ ledgerId, first: entryId, payloads: [payload] });
    }
    this.bytes += bytes;
    while (this.bytes > this.maxBytes && this.runs.length > 0) {
      const head = this.runs[0]!;
      const dropped = head.payloads.shift()!;
      head.first++;
      this.bytes -= entryByteLength(dropped);
      if (head.payloads.length === 0) this.runs.shift();
    }
  }

  get(ledgerId: LedgerId, entryId: EntryId): EntryBytes | undefined {
    for (const run of this.runs) {
      if (run.ledgerId === ledgerId && entryId >= run.first && entryId < run.first + run.payloads.length) {
        return run.payloads[entryId - run.first];
      }
    }
    return undefined;
  }

  /** Drop every cached entry at or before `p`. */
  evictThrough(p: Position): void {
    while (this.runs.length > 0) {
      const head = this.runs[0]!;
      const last = head.first + head.payloads.length - 1;
      if (comparePositions({ ledgerId: head.ledgerId, entryId: last }, p) <= 0) {
        for (const b of head.payloads) this.bytes -= entryByteLength(b);
        this.runs.shift();
        continue;
      }
      if (head.ledgerId === p.ledgerId && head.first <= p.entryId) {
        const n = p.entryId - head.first + 1;
        for (const b of head.payloads.splice(0, n)) this.bytes -= entryByteLength(b);
        head.first += n;
      }
      return;
    }
  }

  dropLedger(ledgerId: LedgerId): void {
    this.runs = this.runs.filter((r) => {
      if (r.ledgerId !== ledgerId) return true;
      for (const p of r.payloads) this.bytes -= entryByteLength(p);
      return false;
    });
  }

  clear(): void {
    this.runs = [];
    this.bytes = 0;
  }

  get size(): number {
    return this.bytes;
  }
}

/** Blocks of entries read from storage (catch-up reads and read-ahead), LRU by bytes. */
export class BlockCache {
  private readonly blocks = new Map<string, { payloads: Buffer[]; bytes: number }>();
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  static key(ledgerId: LedgerId, block: number): string {
    return `${ledgerId}:${block}`;
  }

  get(key: string): Buffer[] | undefined {
    const hit = this.blocks.get(key);
    if (!hit) return undefined;
    this.blocks.delete(key);
    this.blocks.set(key, hit);
    return hit.payloads;
  }

  has(key: string): boolean {
    return this.blocks.has(key);
  }

  put(key: string, payloads: Buffer[]): void {
    if (this.maxBytes <= 0) return;
    const old = this.blocks.get(key);
    if (old) {
      this.bytes -= old.bytes;
      this.blocks.delete(key);
    }
    const bytes = payloads.reduce((n, p) => n + p.length, 0);
    this.blocks.set(key, { payloads, bytes });
    this.bytes += bytes;
    for (const [k, v] of this.blocks) {
      if (this.bytes <= this.maxBytes) break;
      this.blocks.delete(k);
      this.bytes -= v.bytes;
    }
  }

  dropLedger(ledgerId: LedgerId): void {
    const prefix = `${ledgerId}:`;
    for (const [k, v] of this.blocks) {
      if (k.startsWith(prefix)) {
        this.blocks.delete(k);
        this.bytes -= v.bytes;
      }
    }
  }

  clear(): void {
    this.blocks.clear();
    this.bytes = 0;
  }
}
