/**
 * An in-process bookie that is also its own client, for unit and property
 * tests of the replication protocol. It keeps the bookie rules that matter
 * to the client — ack only after "fsync", fences refuse normal adds but not
 * recovery adds, reads that fence, CRC verified on arrival and on read —
 * and lets a test inject the faults a network and a disk produce: dropped
 * requests (answered by a client-side timeout), delays, slow fsync, crashes
 * that lose what was not yet fsynced, restarts, and corrupted replicas.
 */
import {
  type BookieId,
  crc32c,
  type EntryId,
  type LedgerId,
  TimeoutError,
  UnavailableError,
} from '@sluice/common';
import type {
  AddOutcome,
  BookieClient,
  BookieClientPool,
  LacOutcome,
  RangeOutcome,
  ReadOutcome,
  WireEntry,
} from './bookie-client.js';

export interface MemoryBookieFaults {
  /** Probability that a request is lost (the caller sees a timeout). */
  dropRate?: number;
  /** Probability that only the fence requests are lost. */
  fenceDropRate?: number;
  /** Extra latency before a request is handled, ms (uniform in [0, delayMs]). */
  delayMs?: number;
  /** Time between receiving an add and its fsync, ms (uniform in [0, fsyncMs]). */
  fsyncMs?: number;
  /** How long a dropped request takes to fail, ms. */
  timeoutMs?: number;
}

interface LedgerState {
  entries: Map<EntryId, WireEntry>;
  fenced: boolean;
  lac: EntryId;
}

export class MemoryBookie implements BookieClient {
  private readonly ledgers = new Map<LedgerId, LedgerState>();
  private up = true;
  /** Bumped on every crash so that adds in flight across a crash are lost. */
  private incarnation = 0;
  readOnly = false;
  faults: MemoryBookieFaults;
  /** Counts of requests received, by kind (tests assert on them). */
  readonly received = { add: 0, read: 0, fence: 0, readLac: 0, readRange: 0 };

  constructor(
    readonly bookieId: BookieId,
    faults: MemoryBookieFaults = {},
    private readonly random: () => number = Math.random,
  ) {
    this.faults = faults;
  }

  get isUp(): boolean {
    return this.up;
  }

  /** Stop answering; adds not yet fsynced are lost. */
  crash(): void {
    this.up = false;
    this.incarnation++;
  }

  restart(): void {
    this.up = true;
  }

  /** Flip a byte of a stored entry (a disk that rots). */
  corrupt(ledgerId: LedgerId, entryId: EntryId): void {
    const e = this.ledgers.get(ledgerId)?.entries.get(entryId);
    if (e && e.payload.length > 0) {
      const payload = Buffer.from(e.payload);
      payload[0] = (payload[0] ?? 0) ^ 0xff;
      this.ledgers.get(ledgerId)?.entries.set(entryId, { ...e, payload });
    }
  }

  /** Entry ids stored for a ledger (tests). */
  storedEntries(ledgerId: LedgerId): EntryId[] {
    return [...(this.ledgers.get(ledgerId)?.entries.keys() ?? [])].sort((a, b) => a - b);
  }

  isFenced(ledgerId: LedgerId): boolean {
    return this.ledgers.get(ledgerId)?.fenced ?? false;
  }

  async add(entry: WireEntry, recovery = false): Promise<AddOutcome> {
    this.received.add++;
    const inc = await this.arrive();
    if (crc32c(entry.payload) !== entry.crc32c) {
      return {
        status: 'INVALID',
        message: `entry ${entry.ledgerId}:${entry.entryId} failed its CRC on arrival`,
      };
    }
    if (this.readOnly) return { status: 'READ_ONLY' };
    const ledger = this.ledger(entry.ledgerId);
    if (ledger.fenced && !recovery) return { status: 'FENCED' };
    await this.sleep(this.faults.fsyncMs ?? 0);
    if (!this.up || inc !== this.incarnation) throw this.unreachable();
    // A fence that became durable while this add waited for its fsync still wins.
    if (ledger.fenced && !recovery) return { status: 'FENCED' };
    ledger.entries.set(entry.entryId, { ...entry, payload: Buffer.from(entry.payload) });
    ledger.lac = Math.max(ledger.lac, entry.lac);
    return { status: 'OK' };
  }

  async read(ledgerId: LedgerId, entryId: EntryId, fence = false): Promise<ReadOutcome> {
    this.received.read++;
    await this.arrive();
    const ledger = this.ledgers.get(ledgerId);
    if (fence) this.ledger(ledgerId).fenced = true;
    if (!ledger) return { status: 'NO_LEDGER', lac: -1 };
    const id = entryId === -1 ? Math.max(-1, ...ledger.entries.keys()) : entryId;
    const e = ledger.entries.get(id);
    if (!e) return { status: 'NO_ENTRY', lac: ledger.lac };
    if (crc32c(e.payload) !== e.crc32c) return { status: 'CORRUPT', lac: ledger.lac };
    return { status: 'OK', entry: e, lac: ledger.lac };
  }

  async readRange(ledgerId: LedgerId, first: EntryId, last: EntryId): Promise<RangeOutcome> {
    this.received.readRange++;
    await this.arrive();
    const ledger = this.ledgers.get(ledgerId);
    if (!ledger) return { entries: [], stoppedBy: 'NO_LEDGER' };
    const entries: WireEntry[] = [];
    for (let id = first; id <= last; id++) {
      const e = ledger.entries.get(id);
      if (!e) return { entries, stoppedBy: 'NO_ENTRY' };
      if (crc32c(e.payload) !== e.crc32c) return { entries, stoppedBy: 'CORRUPT' };
      entries.push(e);
    }
    return { entries };
  }

  async readLac(ledgerId: LedgerId, fence = false): Promise<LacOutcome> {
    this.received.readLac++;
    if (fence) return this.fence(ledgerId);
    await this.arrive();
    const ledger = this.ledgers.get(ledgerId);
    if (!ledger) return { status: 'NO_LEDGER', lac: -1, lastEntryId: -1 };
    return { status: 'OK', lac: ledger.lac, lastEntryId: Math.max(-1, ...ledger.entries.keys()) };
  }

  async fence(ledgerId: LedgerId): Promise<LacOutcome> {
    this.received.fence++;
    if (this.random() < (this.faults.fenceDropRate ?? 0)) {
      await this.sleep(this.faults.timeoutMs ?? 50);
      throw new TimeoutError(`fence of ledger ${ledgerId} on bookie ${this.bookieId} timed out`);
    }
    await this.arrive();
    const ledger = this.ledger(ledgerId);
    ledger.fenced = true;
    return { status: 'OK', lac: ledger.lac, lastEntryId: Math.max(-1, ...ledger.entries.keys()) };
  }

  /** Bookie GC: forget a ledger. */
  dropLedger(ledgerId: LedgerId): void {
    this.ledgers.delete(ledgerId);
  }

  async close(): Promise<void> {}

  private ledger(ledgerId: LedgerId): LedgerState {
    let l = this.ledgers.get(ledgerId);
    if (!l) {
      l = { entries: new Map(), fenced: false, lac: -1 };
      this.ledgers.set(ledgerId, l);
    }
    return l;
  }

  /** Network leg of a request: down, dropped or delayed. Returns the incarnation it reached. */
  private async arrive(): Promise<number> {
    if (!this.up) throw this.unreachable();
    if (this.random() < (this.faults.dropRate ?? 0)) {
      await this.sleep(this.faults.timeoutMs ?? 50);
      throw new TimeoutError(`request to bookie ${this.bookieId} timed out`);
    }
    await this.sleep(this.faults.delayMs ?? 0);
    if (!this.up) throw this.unreachable();
    return this.incarnation;
  }

  private unreachable(): UnavailableError {
    return new UnavailableError(`bookie ${this.bookieId} is unreachable`);
  }

  private sleep(maxMs: number): Promise<void> {
    if (maxMs <= 0) return Promise.resolve();
    const ms = Math.floor(this.random() * maxMs);
    return new Promise((resolve) => setTimeout(resolve, ms));
  }
}

/** A pool over a fixed set of in-memory bookies. */
export class MemoryBookiePool implements BookieClientPool {
  readonly bookies = new Map<BookieId, MemoryBookie>();

  constructor(bookies: MemoryBookie[]) {
    for (const b of bookies) this.bookies.set(b.bookieId, b);
  }

  get(bookieId: BookieId): BookieClient {
    return this.bookies.get(bookieId) ?? new UnknownBookie(bookieId);
  }

  async close(): Promise<void> {}
}

/** Stands in for a bookie id nobody knows: every request fails as unreachable. */
export class UnknownBookie implements BookieClient {
  constructor(readonly bookieId: BookieId) {}
  private fail(): Promise<never> {
    return Promise.reject(new UnavailableError(`bookie ${this.bookieId} is not registered; it may be gone`));
  }
  add(): Promise<AddOutcome> {
    return this.fail();
  }
  read(): Promise<ReadOutcome> {
    return this.fail();
  }
  readRange(): Promise<RangeOutcome> {
    return this.fail();
  }
  readLac(): Promise<LacOutcome> {
    return this.fail();
  }
  fence(): Promise<LacOutcome> {
    return this.fail();
  }
  async close(): Promise<void> {}
}
