/**
 * Standalone's ledger client talks to its own bookie through this class
 * instead of gRPC. Over loopback gRPC every entry was encoded, framed,
 * decoded and copied in the same process; here the calls go straight to
 * the bookie's store.
 *
 * It keeps the BookieService contract. The store checks each add on arrival
 * (CRC32C, ids, ledger length, size). Fences refuse normal adds and let
 * recovery adds through. Reads can fence first. Statuses and messages match
 * what the service sends, and so do the bookie's add/read metrics. Bytes of
 * adds in flight are bounded (`maxInFlightBytesPerStream`, the service's
 * per-stream bound), and a bounded number of adds may wait beyond that.
 *
 * Payloads are not copied on the way in: the journal (or, for a large
 * entry written once, the direct entry log) writes the writer's buffer;
 * the write cache copies journaled entries once they are durable. Ledger writers
 * never change a payload after `addEntry` (an ensemble change resends the
 * same buffer). Reads hand out views of the cache's memory (a chunk that
 * served a read is never reused); readers do not change the entries they get.
 */
import type { Bookie, BookieStore } from '@sluice/bookie';
import {
  type BookieId,
  type EntryId,
  InvalidArgumentError,
  type LedgerId,
  ResourceExhaustedError,
  UnavailableError,
} from '@sluice/common';
import type {
  AddOutcome,
  BookieClient,
  LacOutcome,
  RangeOutcome,
  ReadOutcome,
  WireEntry,
} from '@sluice/ledger';

export interface LocalBookieClientOptions {
  /** Payload bytes of adds in flight before more adds wait (default: the bookie's per-stream bound). */
  maxInFlightBytes?: number;
  /** Adds that may wait for room; past this an add fails with RESOURCE_EXHAUSTED. */
  maxWaitingAdds?: number;
}

type StoredRead = Awaited<ReturnType<BookieStore['read']>>;

interface WaitingAdd {
  entry: WireEntry;
  recovery: boolean;
  resolve: (o: AddOutcome) => void;
  reject: (e: Error) => void;
}

/** Entries a range read fetches in parallel, as the gRPC service does. */
const READ_AHEAD = 16;

export class LocalBookieClient implements BookieClient {
  readonly bookieId: BookieId;
  private readonly maxInFlightBytes: number;
  private readonly maxWaitingAdds: number;
  private inFlightBytes = 0;
  private readonly waiting: WaitingAdd[] = [];
  private closed = false;

  constructor(
    private readonly bookie: Bookie,
    opts: LocalBookieClientOptions = {},
  ) {
    this.bookieId = bookie.bookieId;
    this.maxInFlightBytes = opts.maxInFlightBytes ?? bookie.config.maxInFlightBytesPerStream;
    this.maxWaitingAdds = opts.maxWaitingAdds ?? 16_384;
  }

  add(entry: WireEntry, recovery = false): Promise<AddOutcome> {
    if (this.closed) return Promise.reject(this.closedError());
    if (this.waiting.length === 0 && this.inFlightBytes < this.maxInFlightBytes) {
      return this.dispatch(entry, recovery);
    }
    if (this.waiting.length >= this.maxWaitingAdds) {
      return Promise.reject(
        new ResourceExhaustedError(
          `${this.waiting.length} adds are already waiting for bookie ${this.bookieId}; slow down`,
        ),
      );
    }
    return new Promise<AddOutcome>((resolve, reject) => {
      this.waiting.push({ entry, recovery, resolve, reject });
    });
  }

  private dispatch(entry: WireEntry, recovery: boolean): Promise<AddOutcome> {
    let store: BookieStore;
    try {
      store = this.store();
    } catch (err) {
      return Promise.reject(err);
    }
    const { metrics } = this.bookie;
    const bytes = entry.payload.length;
    this.inFlightBytes += bytes;
    metrics.inFlightAdds.inc();
    const t0 = performance.now();
    return new Promise<AddOutcome>((resolve) => {
      const done = (out: { status: AddOutcome['status']; message: string }) => {
        this.inFlightBytes -= bytes;
        metrics.inFlightAdds.dec();
        metrics.addsTotal.inc({ status: out.status });
        if (out.status === 'OK') {
          metrics.addBytesTotal.inc(bytes);
          metrics.addLatencySeconds.observe((performance.now() - t0) / 1000);
        }
        this.admitWaiting();
        resolve({ status: out.status, message: out.message });
      };
      try {
        store.addThen(entry, recovery, done);
      } catch (err) {
        this.bookie.logger.error({ err }, 'add failed unexpectedly');
        done({ status: 'IO_ERROR', message: (err as Error).message });
      }
    });
  }

  private admitWaiting(): void {
    while (this.waiting.length > 0 && this.inFlightBytes < this.maxInFlightBytes) {
      const w = this.waiting.shift();
      if (w) this.dispatch(w.entry, w.recovery).then(w.resolve, w.reject);
    }
  }

  async read(ledgerId: LedgerId, entryId: EntryId, fence = false): Promise<ReadOutcome> {
    const store = this.store();
    if (!Number.isSafeInteger(entryId) || entryId < -1) {
      throw new InvalidArgumentError(
        `entry id ${entryId} is invalid; use an id >= 0, or -1 for the last entry`,
      );
    }
    if (fence) {
      const f = await store.fence(ledgerId);
      if (f.status !== 'OK') return { status: f.status, message: f.message, lac: -1 };
    }
    const r = await store.read(ledgerId, entryId);
    this.countRead(r);
    const lac = store.lac(ledgerId)?.lac ?? -1;
    if (r.status === 'OK') return { status: 'OK', entry: toWireEntry(r), lac, message: '' };
    return { status: r.status, message: r.message, lac };
  }

  async readRange(ledgerId: LedgerId, first: EntryId, last: EntryId): Promise<RangeOutcome> {
    const store = this.store();
    if (!Number.isSafeInteger(first) || first < 0 || !Number.isSafeInteger(last)) {
      throw new InvalidArgumentError(`range ${first}..${last} is invalid; ids must be >= 0`);
    }
    if (last < first) {
      throw new InvalidArgumentError(`range ${first}..${last} is empty; last must be >= first`);
    }
    const entries: WireEntry[] = [];
    for (let id = first; id <= last; ) {
      const n = Math.min(READ_AHEAD, last - id + 1);
      const reads = await Promise.all(Array.from({ length: n }, (_, k) => store.read(ledgerId, id + k)));
      for (const r of reads) {
        this.countRead(r);
        if (r.status !== 'OK') return { entries, stoppedBy: r.status };
        entries.push(toWireEntry(r));
        id++;
      }
    }
    return { entries };
  }

  async readLac(ledgerId: LedgerId, fence = false): Promise<LacOutcome> {
    if (fence) return this.fence(ledgerId);
    const l = this.store().lac(ledgerId);
    return l
      ? { status: 'OK', lac: l.lac, lastEntryId: l.lastEntryId }
      : { status: 'NO_LEDGER', lac: -1, lastEntryId: -1 };
  }

  async fence(ledgerId: LedgerId): Promise<LacOutcome> {
    const f = await this.store().fence(ledgerId);
    return { status: f.status, lac: f.lac, lastEntryId: f.lastEntryId };
  }

  /** Stops taking requests; adds already handed to the store still complete. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const err = this.closedError();
    for (const w of this.waiting.splice(0)) w.reject(err);
  }

  private store(): BookieStore {
    if (this.closed) throw this.closedError();
    try {
      return this.bookie.storage;
    } catch {
      throw new UnavailableError(`bookie ${this.bookieId} is stopped; it may be restarting`);
    }
  }

  private closedError(): UnavailableError {
    return new UnavailableError(`client of bookie ${this.bookieId} is closed`);
  }

  private countRead(r: StoredRead): void {
    this.bookie.metrics.readsTotal.inc({ status: r.status });
    if (r.status === 'OK') this.bookie.metrics.readBytesTotal.inc(r.entry.payload.length);
  }
}

function toWireEntry(r: StoredRead & { status: 'OK' }): WireEntry {
  const e = r.entry;
  return {
    ledgerId: e.ledgerId,
    entryId: e.entryId,
    lac: e.lac,
    payload: e.payload,
    crc32c: e.crc32c >>> 0,
    ledgerLength: e.ledgerLength,
  };
}
