/**
 * Recovery of a ledger whose writer may still be alive (DESIGN §4):
 *
 * 1. CAS the metadata OPEN → IN_RECOVERY (an IN_RECOVERY ledger is simply
 *    recovered again: concurrent recoveries run the same steps).
 * 2. Fence the last segment's bookies until, in every write set, at least
 *    Qw − Qa + 1 bookies confirmed the fence: then no write set has Qa
 *    unfenced bookies left, so the old writer can never complete another add.
 * 3. Read forward from max(LAC reported by the fences) + 1 with reads that
 *    fence as well. A fence request can be lost (the race the BookKeeper TLA+
 *    model found); a bookie that answers a fencing read is fenced before it
 *    answers, so its "no such entry" is final for normal adds.
 * 4. Every entry found is re-written to its whole write set with recovery
 *    adds (which pass fences); a bookie that keeps failing after a few
 *    attempts is left to autorecovery once Qa copies are confirmed.
 * 5. Stop at the first entry for which Qw − Qa + 1 bookies of its write set
 *    said NO_ENTRY: at most Qa − 1 copies can exist, so it was never
 *    acknowledged. Fewer answers prove nothing — the silent bookies may form
 *    an ack quorum — so the entry is asked again until the deadline.
 * 6. CAS the metadata to CLOSED with lastEntryId and length. When another
 *    recovery closed it first, its result stands and is returned.
 */
import {
  type BookieId,
  backoffDelay,
  crc32c,
  type EntryId,
  type LedgerId,
  type Logger,
  systemClock,
  UnavailableError,
} from '@sluice/common';
import type { LedgerMetadata } from './api.js';
import type { BookieClientPool, ReadOutcome, WireEntry } from './bookie-client.js';
import type { EntryFetcher } from './entry-fetcher.js';
import { type LedgerMetadataStore, type VersionedMetadata, writeSet } from './ledger-metadata-store.js';

export interface RecoveryOptions {
  /** Give up (ledger stays IN_RECOVERY, retry later) after this long. */
  recoveryTimeoutMs?: number;
}

export interface RecoveryDeps {
  metadata: LedgerMetadataStore;
  pool: BookieClientPool;
  fetcher: EntryFetcher;
  logger: Logger;
}

export class LedgerRecovery {
  private readonly deadline: number;

  constructor(
    private readonly deps: RecoveryDeps,
    private readonly ledgerId: LedgerId,
    opts: RecoveryOptions = {},
  ) {
    this.deadline = Date.now() + (opts.recoveryTimeoutMs ?? 60_000);
  }

  async run(): Promise<VersionedMetadata> {
    const vm = await this.deps.metadata.update(this.ledgerId, (m) =>
      m.state === 'OPEN' ? { ...m, state: 'IN_RECOVERY' } : undefined,
    );
    if (vm.metadata.state === 'CLOSED') return vm;
    const m = vm.metadata;
    const last = m.segments.at(-1) as { firstEntryId: EntryId; bookies: BookieId[] };
    const maxLac = await this.fence(m, last.bookies);
    let entryId = Math.max(maxLac, last.firstEntryId - 1) + 1;
    let lastFound: WireEntry | undefined;
    for (;;) {
      const found = await this.recoverEntry(m, last.bookies, entryId);
      if (!found) break;
      lastFound = found;
      entryId++;
    }
    const lastEntryId = entryId - 1;
    const length = lastEntryId < 0 ? 0 : await this.lengthAt(m, lastEntryId, lastFound);
    const closed = await this.deps.metadata.update(this.ledgerId, (cur) =>
      cur.state === 'CLOSED' ? undefined : { ...cur, state: 'CLOSED', lastEntryId, length },
    );
    this.deps.logger.info(
      {
        ledgerId: this.ledgerId,
        lastEntryId: closed.metadata.lastEntryId,
        ours: lastEntryId,
        length: closed.metadata.length,
      },
      'ledger recovered',
    );
    return closed;
  }

  /** Fence until every write set is covered; returns the highest LAC seen. */
  private async fence(m: LedgerMetadata, ensemble: BookieId[]): Promise<EntryId> {
    const fenced = new Set<BookieId>();
    let maxLac = -1;
    const need = m.writeQuorum - m.ackQuorum + 1;
    for (let attempt = 0; ; attempt++) {
      const todo = ensemble.filter((b) => !fenced.has(b));
      const results = await Promise.allSettled(todo.map((b) => this.deps.pool.get(b).fence(this.ledgerId)));
      results.forEach((r, i) => {
        if (r.status === 'fulfilled' && r.value.status === 'OK') {
          fenced.add(todo[i] as BookieId);
          maxLac = Math.max(maxLac, r.value.lac);
        }
      });
      let covered = true;
      for (let start = 0; start < ensemble.length && covered; start++) {
        const ws = writeSet(ensemble, m.writeQuorum, start);
        covered = ws.filter((b) => fenced.has(b)).length >= need;
      }
      if (covered) return maxLac;
      this.waitOrGiveUp(
        attempt,
        `only ${fenced.size} of the bookies [${ensemble.join(', ')}] confirmed the fence`,
      );
      await systemClock.sleep(backoffDelay(attempt, { minDelayMs: 50, maxDelayMs: 1000 }));
    }
  }

  /** The entry after re-replication, or undefined when it provably was never acknowledged. */
  private async recoverEntry(
    m: LedgerMetadata,
    ensemble: BookieId[],
    entryId: EntryId,
  ): Promise<WireEntry | undefined> {
    const ws = writeSet(ensemble, m.writeQuorum, entryId);
    const need = m.writeQuorum - m.ackQuorum + 1;
    for (let attempt = 0; ; attempt++) {
      const reads = await Promise.allSettled(
        ws.map((b) => this.deps.pool.get(b).read(this.ledgerId, entryId, true)),
      );
      let found: WireEntry | undefined;
      let noEntry = 0;
      const holders = new Set<BookieId>();
      reads.forEach((r, i) => {
        if (r.status !== 'fulfilled') return;
        const o: ReadOutcome = r.value;
        if (o.status === 'OK' && o.entry && crc32c(o.entry.payload) === o.entry.crc32c) {
          found ??= o.entry;
          holders.add(ws[i] as BookieId);
        } else if (o.status === 'NO_ENTRY' || o.status === 'NO_LEDGER') {
          noEntry++;
        }
      });
      if (found) {
        await this.rewrite(m, ws, holders, found);
        return found;
      }
      if (noEntry >= need) return undefined;
      this.waitOrGiveUp(
        attempt,
        `entry ${entryId}: ${noEntry} of [${ws.join(', ')}] said it does not exist, ${need} are needed to prove it was never acknowledged`,
      );
      await systemClock.sleep(backoffDelay(attempt, { minDelayMs: 50, maxDelayMs: 1000 }));
    }
  }

  /**
   * Recovery adds to every bookie of the write set that lacks the entry.
   * Qa copies must be confirmed before moving on; the rest are retried until
   * the deadline and otherwise left to autorecovery.
   */
  private async rewrite(
    m: LedgerMetadata,
    ws: BookieId[],
    holders: Set<BookieId>,
    entry: WireEntry,
  ): Promise<void> {
    let copies = holders.size;
    let missing = ws.filter((b) => !holders.has(b));
    for (let attempt = 0; missing.length > 0; attempt++) {
      const results = await Promise.allSettled(missing.map((b) => this.deps.pool.get(b).add(entry, true)));
      const still: BookieId[] = [];
      results.forEach((r, i) => {
        if (r.status === 'fulfilled' && r.value.status === 'OK') copies++;
        else still.push(missing[i] as BookieId);
      });
      missing = still;
      if (missing.length === 0) return;
      if ((attempt >= 2 || Date.now() > this.deadline - 1000) && copies >= m.ackQuorum) {
        this.deps.logger.warn(
          { ledgerId: this.ledgerId, entryId: entry.entryId, missing },
          'recovered entry is under-replicated; autorecovery will copy it once those bookies are gone for good',
        );
        return;
      }
      this.waitOrGiveUp(attempt, `entry ${entry.entryId} could not be re-written to [${missing.join(', ')}]`);
      await systemClock.sleep(backoffDelay(attempt, { minDelayMs: 50, maxDelayMs: 1000 }));
    }
  }

  /** Ledger length at lastEntryId, from the entry's own record of it. */
  private async lengthAt(
    m: LedgerMetadata,
    lastEntryId: EntryId,
    lastFound: WireEntry | undefined,
  ): Promise<number> {
    const entry =
      lastFound && lastFound.entryId === lastEntryId
        ? lastFound
        : await this.deps.fetcher.readEntry(m, lastEntryId);
    if (entry.ledgerLength >= entry.payload.length && (entry.ledgerLength > 0 || entry.entryId === 0)) {
      return entry.ledgerLength;
    }
    // A bookie that did not keep ledger_length: add the payloads up.
    let length = 0;
    const step = 1000;
    for (let first = 0; first <= lastEntryId; first += step) {
      const batch = await this.deps.fetcher.readEntries(m, first, Math.min(lastEntryId, first + step - 1));
      for (const e of batch) length += e.payload.length;
    }
    return length;
  }

  private waitOrGiveUp(attempt: number, why: string): void {
    if (Date.now() >= this.deadline) {
      throw new UnavailableError(
        `recovery of ledger ${this.ledgerId} did not finish in time: ${why}; it stays IN_RECOVERY and the next open with recovery continues it`,
      );
    }
    if (attempt > 0 && attempt % 5 === 0) this.deps.logger.warn({ ledgerId: this.ledgerId, attempt }, why);
  }
}
