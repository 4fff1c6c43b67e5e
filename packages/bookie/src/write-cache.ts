import type { StoredEntry } from './entry-log.js';

/**
 * Entries acknowledged but not yet covered by a checkpoint. Reads of recent
 * entries are served from here; the entry log flusher drains `unflushed` in
 * arrival order; a checkpoint evicts what it made durable.
 */
export class WriteCache {
  private readonly byLedger = new Map<number, Map<number, StoredEntry>>();
  /** Entries not yet appended to an entry log, oldest first. */
  unflushed: StoredEntry[] = [];
  bytes = 0;

  put(e: StoredEntry): void {
    let m = this.byLedger.get(e.ledgerId);
    if (!m) {
      m = new Map();
      this.byLedger.set(e.ledgerId, m);
    }
    const old = m.get(e.entryId);
    if (old) this.bytes -= old.payload.length;
    m.set(e.entryId, e);
    this.bytes += e.payload.length;
    this.unflushed.push(e);
  }

  get(ledgerId: number, entryId: number): StoredEntry | undefined {
    return this.byLedger.get(ledgerId)?.get(entryId);
  }

  /** Take up to `maxBytes` of unflushed entries (at least one). */
  takeUnflushed(maxBytes: number): StoredEntry[] {
    let n = 0;
    let bytes = 0;
    while (n < this.unflushed.length && (n === 0 || bytes < maxBytes))
      bytes += this.unflushed[n++]!.payload.length;
    return this.unflushed.splice(0, n);
  }

  /** Drop entries now durable elsewhere, unless a newer copy replaced them meanwhile. */
  evict(entries: StoredEntry[], from = 0, to = entries.length): void {
    for (let i = from; i < to; i++) {
      const e = entries[i]!;
      const m = this.byLedger.get(e.ledgerId);
      if (m?.get(e.entryId) !== e) continue;
      m.delete(e.entryId);
      this.bytes -= e.payload.length;
      if (m.size === 0) this.byLedger.delete(e.ledgerId);
    }
  }

  dropLedger(ledgerId: number): void {
    const m = this.byLedger.get(ledgerId);
    if (!m) return;
    for (const e of m.values()) this.bytes -= e.payload.length;
    this.byLedger.delete(ledgerId);
    this.unflushed = this.unflushed.filter((e) => e.ledgerId !== ledgerId);
  }
}
