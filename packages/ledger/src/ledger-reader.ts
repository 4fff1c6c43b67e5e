/**
 * Reads a ledger without fencing it. A CLOSED ledger is readable up to its
 * lastEntryId and never past it; an OPEN one up to the LAC this reader
 * knows, which `refreshLac` advances by asking the last segment's bookies
 * (the LAC rides on every add) and re-reading the metadata (the ledger may
 * have been closed or have changed its ensemble).
 */
import { type EntryId, type LedgerId, OutOfRangeError } from '@sluice/common';
import type { LedgerEntry, LedgerMetadata, LedgerReader } from './api.js';
import type { BookieClientPool } from './bookie-client.js';
import type { EntryFetcher } from './entry-fetcher.js';
import type { LedgerMetadataStore, VersionedMetadata } from './ledger-metadata-store.js';

export class ReplicatedLedgerReader implements LedgerReader {
  readonly ledgerId: LedgerId;
  private vm: VersionedMetadata;
  private lac: EntryId;

  constructor(
    private readonly deps: { metadata: LedgerMetadataStore; pool: BookieClientPool; fetcher: EntryFetcher },
    vm: VersionedMetadata,
  ) {
    this.vm = vm;
    this.ledgerId = vm.metadata.ledgerId;
    this.lac = vm.metadata.state === 'CLOSED' ? vm.metadata.lastEntryId : -1;
  }

  get metadata(): LedgerMetadata {
    return this.vm.metadata;
  }

  get lastAddConfirmed(): EntryId {
    return this.lac;
  }

  async read(first: EntryId, last: EntryId): Promise<LedgerEntry[]> {
    if (!Number.isSafeInteger(first) || !Number.isSafeInteger(last) || first < 0 || last < first) {
      throw new OutOfRangeError(
        `range ${first}..${last} of ledger ${this.ledgerId} is invalid; use 0 <= first <= last`,
      );
    }
    if (last > this.lac) {
      throw new OutOfRangeError(
        `entry ${last} of ledger ${this.ledgerId} is beyond the last readable entry ${this.lac}; ${this.vm.metadata.state === 'CLOSED' ? 'the ledger is closed' : 'call refreshLac() to tail it'}`,
      );
    }
    const entries = await this.deps.fetcher.readEntries(this.vm.metadata, first, last);
    return entries.map((e) => ({ ledgerId: this.ledgerId, entryId: e.entryId, payload: e.payload }));
  }

  async refreshLac(): Promise<EntryId> {
    if (this.vm.metadata.state === 'CLOSED') return this.lac;
    const fresh = await this.deps.metadata.readOrThrow(this.ledgerId);
    this.vm = fresh;
    if (fresh.metadata.state === 'CLOSED') {
      this.lac = fresh.metadata.lastEntryId;
      return this.lac;
    }
    const last = fresh.metadata.segments.at(-1);
    const answers = await Promise.allSettled(
      (last?.bookies ?? []).map((b) => this.deps.pool.get(b).readLac(this.ledgerId)),
    );
    for (const a of answers) {
      if (a.status === 'fulfilled' && a.value.status === 'OK') this.lac = Math.max(this.lac, a.value.lac);
    }
    return this.lac;
  }

  confirmedThrough(entryId: EntryId): void {
    if (this.vm.metadata.state !== 'CLOSED') this.lac = Math.max(this.lac, entryId);
  }

  async close(): Promise<void> {}
}
