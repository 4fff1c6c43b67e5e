import { ENTRY_HEADER_BYTES, type StoredEntry, writeEntryHeader } from './entry-log.js';
import { readInt64LE } from './int64.js';
import { LocationTable } from './location-table.js';

/** Bytes of one cache chunk (a larger record gets a chunk of its own size). */
export const WRITE_CACHE_CHUNK_BYTES = 4 * 1024 * 1024;

interface Chunk {
  seq: number;
  buf: Buffer;
  /** End of the records written into `buf`. */
  used: number;
  /** End of the records handed to an entry log. */
  flushed: number;
  /** No more records go in (a later chunk was started). */
  sealed: boolean;
  /** A read handed out a view of `buf`: it must not be reused. */
  viewed: boolean;
}

/** A flush position: every record before it has been written to an entry log. */
export interface FlushMark {
  seq: number;
  offset: number;
}

/** A cached record on its way to an entry log: header and payload, as the log stores them. */
export interface CachedRecord {
  ledgerId: number;
  entryId: number;
  record: Buffer;
}

interface CachedLedger {
  /** entryId → (chunk seq, offset in the chunk, record length). */
  table: LocationTable;
  /** Newest chunk holding one of its records. */
  lastSeq: number;
}

/**
 * Entries acknowledged but not yet covered by a checkpoint. Each entry is
 * copied on arrival into large chunks, already in the entry log's record
 * format; where each one sits is kept in typed arrays per ledger. So a
 * cache of tens of thousands of entries is a few buffers for the GC, not
 * tens of thousands of objects that every young-generation collection
 * would copy and that pile up in the old generation until a checkpoint. The
 * flusher writes runs of whole records straight from the chunks; a
 * checkpoint drops the chunks it made durable.
 *
 * Evicted chunks of the standard size are kept for reuse (up to
 * `spareBytes`), so that a busy bookie does not allocate and drop megabytes
 * of buffers every second (which also makes V8 run full collections for
 * the external memory). Reads hand out views without copying; a chunk that
 * served one is never reused, so a view never sees its bytes overwritten.
 */
export class WriteCache {
  private readonly chunks: Chunk[] = [];
  private readonly spares: Buffer[] = [];
  private nextSeq = 0;
  private readonly ledgers = new Map<number, CachedLedger>();
  /** Record bytes (headers included) in the chunks held. */
  bytes = 0;
  private unflushedBytes = 0;

  constructor(
    private readonly chunkBytes = WRITE_CACHE_CHUNK_BYTES,
    private readonly spareBytes = 0,
  ) {}

  get hasUnflushed(): boolean {
    return this.unflushedBytes > 0;
  }

  /** Bytes of records not yet in an entry log. */
  get unflushed(): number {
    return this.unflushedBytes;
  }

  /** Copy `e` in; a later put of the same entry id replaces it for reads. */
  put(e: StoredEntry): void {
    const length = ENTRY_HEADER_BYTES + e.payload.length;
    const c = this.chunkFor(length);
    writeEntryHeader(c.buf, c.used, e, e.payload.length);
    e.payload.copy(c.buf, c.used + ENTRY_HEADER_BYTES);
    let l = this.ledgers.get(e.ledgerId);
    if (!l) {
      l = { table: new LocationTable(), lastSeq: c.seq };
      this.ledgers.set(e.ledgerId, l);
    }
    l.table.set(e.entryId, { logId: c.seq, offset: c.used, length });
    l.lastSeq = c.seq;
    c.used += length;
    this.bytes += length;
    this.unflushedBytes += length;
  }

  /** The cached entry; its payload is a view of the cache's memory and must not be changed. */
  get(ledgerId: number, entryId: number): StoredEntry | undefined {
    const loc = this.ledgers.get(ledgerId)?.table.get(entryId);
    if (!loc) return undefined;
    const c = this.chunk(loc.logId);
    if (!c) return undefined;
    const at = loc.offset;
    c.viewed = true;
    return {
      ledgerId,
      entryId,
      lac: readInt64LE(c.buf, at + 24),
      ledgerLength: readInt64LE(c.buf, at + 32),
      crc32c: c.buf.readUInt32LE(at + 40),
      payload: c.buf.subarray(at + ENTRY_HEADER_BYTES, at + loc.length),
    };
  }

  /**
   * Up to `maxBytes` (at least one record) of records not yet flushed,
   * oldest first. They stay unflushed until `markFlushed` is called with
   * their bytes, so a failed write loses nothing.
   */
  peekUnflushed(maxBytes: number): CachedRecord[] {
    const out: CachedRecord[] = [];
    let bytes = 0;
    for (const c of this.chunks) {
      let at = c.flushed;
      while (at < c.used && (out.length === 0 || bytes < maxBytes)) {
        const length = c.buf.readUInt32LE(at) + 4;
        out.push({
          ledgerId: readInt64LE(c.buf, at + 8),
          entryId: readInt64LE(c.buf, at + 16),
          record: c.buf.subarray(at, at + length),
        });
        at += length;
        bytes += length;
      }
      if (out.length > 0 && bytes >= maxBytes) break;
    }
    return out;
  }

  /** The oldest `bytes` of unflushed records are in an entry log now. */
  markFlushed(bytes: number): void {
    let left = bytes;
    for (const c of this.chunks) {
      if (left === 0) break;
      const take = Math.min(left, c.used - c.flushed);
      c.flushed += take;
      left -= take;
    }
    this.unflushedBytes -= bytes - left;
  }

  /** How far the flusher has got. */
  flushMark(): FlushMark {
    for (const c of this.chunks) if (c.flushed < c.used) return { seq: c.seq, offset: c.flushed };
    const last = this.chunks.at(-1);
    return last ? { seq: last.seq, offset: last.used } : { seq: this.nextSeq, offset: 0 };
  }

  /** Drop the chunks whose every record lies before `mark` (a checkpoint made them durable). */
  evictBefore(mark: FlushMark): void {
    while (this.chunks.length > 0) {
      const c = this.chunks[0]!;
      // The chunk being filled goes too when nothing was added after the mark.
      const covered = c.seq < mark.seq || (c.seq === mark.seq && mark.offset >= c.used);
      if (!covered) break;
      this.chunks.shift();
      this.bytes -= c.used;
      const reusable = !c.viewed && c.buf.length === this.chunkBytes;
      if (reusable && (this.spares.length + 1) * this.chunkBytes <= this.spareBytes) {
        this.spares.push(c.buf);
      }
    }
    const oldest = this.chunks[0]?.seq ?? this.nextSeq;
    for (const [id, l] of this.ledgers) if (l.lastSeq < oldest) this.ledgers.delete(id);
  }

  /** Forget a deleted ledger: its records are no longer served (a flush may still write them, unindexed). */
  dropLedger(ledgerId: number): void {
    this.ledgers.delete(ledgerId);
  }

  private chunk(seq: number): Chunk | undefined {
    const first = this.chunks[0];
    if (!first) return undefined;
    const c = this.chunks[seq - first.seq];
    return c?.seq === seq ? c : undefined;
  }

  private chunkFor(length: number): Chunk {
    const last = this.chunks.at(-1);
    if (last && !last.sealed && last.used + length <= last.buf.length) return last;
    if (last) last.sealed = true;
    const c: Chunk = {
      seq: this.nextSeq++,
      buf:
        length <= this.chunkBytes
          ? (this.spares.pop() ?? Buffer.allocUnsafeSlow(this.chunkBytes))
          : Buffer.allocUnsafeSlow(length),
      used: 0,
      flushed: 0,
      sealed: false,
      viewed: false,
    };
    this.chunks.push(c);
    return c;
  }
}
