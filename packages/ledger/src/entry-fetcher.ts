/**
 * Reads entries from replicas. One replica first; a speculative read to the
 * next replica of the write set when the first has not answered within
 * `speculativeTimeoutMs`; a replica that answers NO_ENTRY, CORRUPT, a CRC
 * mismatch or an error is skipped at once. Bytes are only returned after the
 * CRC32C the writer computed matches.
 */
import {
  asSluiceError,
  type BookieId,
  CorruptDataError,
  crc32c,
  type EntryId,
  type Logger,
  UnavailableError,
} from '@sluice/common';
import type { LedgerMetadata } from './api.js';
import type { BookieClientPool, WireEntry } from './bookie-client.js';
import { segmentFor, writeSet } from './ledger-metadata-store.js';

export interface EntryFetcherOptions {
  speculativeTimeoutMs?: number;
  /** Entries read in parallel when a batch cannot come from one bookie. */
  readConcurrency?: number;
}

export class EntryFetcher {
  private readonly speculativeMs: number;
  private readonly concurrency: number;

  constructor(
    private readonly pool: BookieClientPool,
    private readonly logger: Logger,
    opts: EntryFetcherOptions = {},
  ) {
    this.speculativeMs = opts.speculativeTimeoutMs ?? 2000;
    this.concurrency = opts.readConcurrency ?? 16;
  }

  replicasOf(m: LedgerMetadata, entryId: EntryId): BookieId[] {
    return writeSet(segmentFor(m, entryId).bookies, m.writeQuorum, entryId);
  }

  readEntry(m: LedgerMetadata, entryId: EntryId): Promise<WireEntry> {
    const replicas = this.replicasOf(m, entryId);
    return new Promise<WireEntry>((resolve, reject) => {
      let next = 0;
      let outstanding = 0;
      let done = false;
      let corrupt = 0;
      const reasons: string[] = [];
      let timer: NodeJS.Timeout | undefined;
      const finishFailed = () => {
        if (done || outstanding > 0 || next < replicas.length) return;
        done = true;
        const what = `entry ${entryId} of ledger ${m.ledgerId} is not readable from any replica (${reasons.join('; ')})`;
        reject(
          corrupt === replicas.length
            ? new CorruptDataError(`${what}; every copy failed its checksum`)
            : new UnavailableError(`${what}; retry when the bookies are back`),
        );
      };
      const tryNext = () => {
        if (done || next >= replicas.length) return finishFailed();
        const bookie = replicas[next++] as BookieId;
        outstanding++;
        if (timer) clearTimeout(timer);
        timer = setTimeout(tryNext, this.speculativeMs);
        this.pool
          .get(bookie)
          .read(m.ledgerId, entryId)
          .then(
            (r) => {
              outstanding--;
              if (done) return;
              if (r.status === 'OK' && r.entry && crc32c(r.entry.payload) === r.entry.crc32c) {
                done = true;
                clearTimeout(timer);
                resolve(r.entry);
                return;
              }
              if (r.status === 'CORRUPT' || r.status === 'OK') corrupt++;
              reasons.push(`${bookie}: ${r.status === 'OK' ? 'CRC mismatch' : r.status}`);
              if (r.status !== 'NO_ENTRY' && r.status !== 'NO_LEDGER') {
                this.logger.warn(
                  { ledgerId: m.ledgerId, entryId, bookie, status: r.status },
                  'replica skipped',
                );
              }
              tryNext();
            },
            (err: unknown) => {
              outstanding--;
              if (done) return;
              reasons.push(`${bookie}: ${asSluiceError(err).message}`);
              tryNext();
            },
          );
      };
      tryNext();
    });
  }

  /**
   * Entries first..last in order. Where every bookie of a segment holds every
   * entry (E = Qw) a range comes from one bookie as one stream; whatever that
   * bookie lacks, and striped segments, are read entry by entry.
   */
  async readEntries(m: LedgerMetadata, first: EntryId, last: EntryId): Promise<WireEntry[]> {
    const out: WireEntry[] = [];
    let id = first;
    while (id <= last) {
      const seg = segmentFor(m, id);
      const segIndex = m.segments.indexOf(seg);
      const nextSeg = m.segments[segIndex + 1];
      const segLast = Math.min(last, nextSeg ? nextSeg.firstEntryId - 1 : last);
      if (m.ensembleSize === m.writeQuorum && segLast > id) {
        const bookie = seg.bookies[id % seg.bookies.length] as BookieId;
        try {
          const r = await this.pool.get(bookie).readRange(m.ledgerId, id, segLast);
          for (const e of r.entries) {
            if (e.entryId !== id || crc32c(e.payload) !== e.crc32c) break;
            out.push(e);
            id++;
          }
        } catch (err) {
          this.logger.debug(
            { ledgerId: m.ledgerId, bookie, err: asSluiceError(err).message },
            'range read failed',
          );
        }
      }
      if (id > segLast) continue;
      const ids: EntryId[] = [];
      for (let e = id; e <= segLast; e++) ids.push(e);
      const entries = await this.mapLimited(ids, (e) => this.readEntry(m, e));
      out.push(...entries);
      id = segLast + 1;
    }
    return out;
  }

  private async mapLimited<T, R>(items: T[], fn: (item: T) => Promise<R>): Promise<R[]> {
    const results = new Array<R>(items.length);
    let next = 0;
    const worker = async () => {
      while (next < items.length) {
        const i = next++;
        results[i] = await fn(items[i] as T);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.concurrency, items.length) }, worker));
    return results;
  }
}
