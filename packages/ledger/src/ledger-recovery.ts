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
 *    attempts is left to autorecovery once Qa copies are confirmed. With
 *    fewer than Qa copies, that bookie is replaced: this recovery's own copy
 *    of the segments gets one from this entry on naming another bookie, and
 *    this entry and every later one are re-written to its write sets. The
 *    tail is always read from the writer's last segment; the new segments
 *    are published only with the close (step 6), so no other recovery ever
 *    reads a tail from bookies the writer never wrote to.
 * 5. Stop at the first entry for which Qw − Qa + 1 bookies of its write set
 *    said NO_ENTRY: at most Qa − 1 copies can exist, so it was never
 *    acknowledged. Fewer answers prove nothing — the silent bookies may form
 *    an ack quorum — so the entry is asked again until the deadline.
 * 6. CAS the metadata to CLOSED with lastEntryId, length and the segments
 *    the tail was re-written to. When another recovery closed it first, its
 *    result stands and is returned.
 */
import {
  type BookieId,
  backoffDelay,
  crc32c,
  type EntryId,
  isRetriable,
  type LedgerId,
  type Logger,
  systemClock,
  UnavailableError,
} from '@sluice/common';
import type { LedgerMetadata, LedgerSegment } from './api.js';
import type { BookieClientPool, ReadOutcome, WireEntry } from './bookie-client.js';
import type { BookieDirectory } from './bookie-directory.js';
import type { EntryFetcher } from './entry-fetcher.js';
import {
  type LedgerMetadataStore,
  segmentFor,
  type VersionedMetadata,
  writeSet,
} from './ledger-metadata-store.js';
import type { PlacementPolicy } from './placement-policy.js';

export interface RecoveryOptions {
  /** Give up (ledger stays IN_RECOVERY, retry later) after this long. */
  recoveryTimeoutMs?: number;
}

export interface RecoveryDeps {
  metadata: LedgerMetadataStore;
  pool: BookieClientPool;
  fetcher: EntryFetcher;
  logger: Logger;
  /**
   * With both, a bookie that cannot take the tail is replaced (as the writer
   * replaces one); without, recovery waits for it until the deadline.
   */
  directory?: BookieDirectory;
  placement?: PlacementPolicy;
}

/** Ensemble changes one recovery may make before giving up. */
const MAX_ENSEMBLE_CHANGES = 10;

export class LedgerRecovery {
  private readonly deadline: number;
  /** The segments the tail is re-written to: the writer's, plus this recovery's replacements. */
  private segments: LedgerSegment[] = [];
  private readonly everFailed = new Set<BookieId>();
  private changes = 0;

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
    this.segments = [...m.segments];
    const last = m.segments.at(-1) as LedgerSegment;
    const maxLac = await this.fence(m, last.bookies);
    let entryId = Math.max(maxLac, last.firstEntryId - 1) + 1;
    let lastFound: WireEntry | undefined;
    for (;;) {
      const r = await this.recoverEntry(m, last.bookies, entryId);
      if (!r) break;
      await this.replicate(m, r.entry, r.holders);
      lastFound = r.entry;
      entryId++;
    }
    const lastEntryId = entryId - 1;
    const length = lastEntryId < 0 ? 0 : await this.lengthAt(m, lastEntryId, lastFound);
    const segments = this.segments;
    const closed = await this.deps.metadata.update(this.ledgerId, (cur) => {
      if (cur.state === 'CLOSED') return undefined;
      if (JSON.stringify(cur.segments) !== JSON.stringify(m.segments)) {
        // Nobody but a closing recovery changes an IN_RECOVERY ledger's segments.
        throw new UnavailableError(
          `ledger ${this.ledgerId}'s segments changed during recovery; recover it again`,
        );
      }
      return { ...cur, state: 'CLOSED', lastEntryId, length, segments };
    });
    this.deps.logger.info(
      {
        ledgerId: this.ledgerId,
        lastEntryId: closed.metadata.lastEntryId,
        ours: lastEntryId,
        length: closed.metadata.length,
        ensembleChanges: this.changes,
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

  /**
   * The entry and the bookies of its write set in `ensemble` holding it, or
   * undefined when it provably was never acknowledged.
   */
  private async recoverEntry(
    m: LedgerMetadata,
    ensemble: BookieId[],
    entryId: EntryId,
  ): Promise<{ entry: WireEntry; holders: Set<BookieId> } | undefined> {
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
      if (found) return { entry: found, holders };
      if (noEntry >= need) return undefined;
      this.waitOrGiveUp(
        attempt,
        `entry ${entryId}: ${noEntry} of [${ws.join(', ')}] said it does not exist, ${need} are needed to prove it was never acknowledged`,
      );
      await systemClock.sleep(backoffDelay(attempt, { minDelayMs: 50, maxDelayMs: 1000 }));
    }
  }

  /**
   * Recovery adds to every bookie of the entry's write set (in this
   * recovery's segments) not known to hold it. Qa copies must be confirmed
   * before moving on; the rest are retried for a few attempts and then left
   * to autorecovery. A bookie that keeps failing while fewer than Qa copies
   * exist is replaced when recovery may change the ensemble.
   */
  private async replicate(m: LedgerMetadata, entry: WireEntry, holders: Set<BookieId>): Promise<void> {
    const id = entry.entryId;
    const have = new Set(holders);
    for (let attempt = 0; ; attempt++) {
      const ws = writeSet(segmentFor({ ...m, segments: this.segments }, id).bookies, m.writeQuorum, id);
      const missing = ws.filter((b) => !have.has(b));
      if (missing.length === 0) return;
      const results = await Promise.allSettled(missing.map((b) => this.deps.pool.get(b).add(entry, true)));
      const failed: BookieId[] = [];
      results.forEach((r, i) => {
        if (r.status === 'fulfilled' && r.value.status === 'OK') have.add(missing[i] as BookieId);
        else failed.push(missing[i] as BookieId);
      });
      if (failed.length === 0) return;
      if (attempt >= 2 || Date.now() > this.deadline - 1000) {
        if (ws.filter((b) => have.has(b)).length >= m.ackQuorum) {
          this.deps.logger.warn(
            { ledgerId: this.ledgerId, entryId: id, missing: failed },
            'recovered entry is under-replicated; autorecovery will copy it once those bookies are gone for good',
          );
          return;
        }
        if (this.deps.directory && this.deps.placement && this.changes < MAX_ENSEMBLE_CHANGES) {
          for (const b of failed) this.everFailed.add(b);
          if (await this.replaceBookies(id, failed)) {
            attempt = -1;
            continue;
          }
        }
      }
      this.waitOrGiveUp(attempt, `entry ${id} could not be re-written to [${failed.join(', ')}]`);
      await systemClock.sleep(backoffDelay(attempt, { minDelayMs: 50, maxDelayMs: 1000 }));
    }
  }

  /**
   * Replace `failed` for entries from `fromEntry` on in this recovery's
   * segments (a new last segment, or the last one when it starts there).
   * Entries before it keep their bookies. False when no bookie can replace
   * them now (recovery then waits, as it would without replacing).
   */
  private async replaceBookies(fromEntry: EntryId, failed: BookieId[]): Promise<boolean> {
    this.changes++;
    const bookies = await (this.deps.directory as BookieDirectory).list();
    const last = this.segments.at(-1) as LedgerSegment;
    const replaced = [...last.bookies];
    try {
      for (let i = 0; i < replaced.length; i++) {
        if (!failed.includes(replaced[i] as BookieId)) continue;
        replaced[i] = (this.deps.placement as PlacementPolicy).replaceBookie(
          replaced,
          i,
          bookies,
          this.everFailed,
        );
      }
    } catch (err) {
      if (!(err instanceof UnavailableError)) throw err;
      this.deps.logger.warn(
        { ledgerId: this.ledgerId, entryId: fromEntry, err },
        'recovery found no bookie to replace',
      );
      return false;
    }
    const segment = { firstEntryId: fromEntry, bookies: replaced };
    this.segments =
      last.firstEntryId === fromEntry
        ? [...this.segments.slice(0, -1), segment]
        : [...this.segments, segment];
    this.deps.logger.info(
      { ledgerId: this.ledgerId, firstEntryId: fromEntry, ensemble: replaced, replaced: failed },
      'recovery replaces bookies for the ledger tail',
    );
    return true;
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
        : await this.retrying(`entry ${lastEntryId}`, () => this.deps.fetcher.readEntry(m, lastEntryId));
    if (entry.ledgerLength >= entry.payload.length && (entry.ledgerLength > 0 || entry.entryId === 0)) {
      return entry.ledgerLength;
    }
    // A bookie that did not keep ledger_length: add the payloads up.
    let length = 0;
    const step = 1000;
    for (let first = 0; first <= lastEntryId; first += step) {
      const last = Math.min(lastEntryId, first + step - 1);
      const batch = await this.retrying(`entries ${first}..${last}`, () =>
        this.deps.fetcher.readEntries(m, first, last),
      );
      for (const e of batch) length += e.payload.length;
    }
    return length;
  }

  /**
   * A read of entries at or below the LAC: with Qa = 1 one bookie may hold
   * the only copy, so a dropped request or a restarting bookie is waited
   * out (with backoff, until the deadline) rather than failing recovery.
   */
  private async retrying<T>(what: string, read: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await read();
      } catch (err) {
        if (!isRetriable(err)) throw err;
        this.waitOrGiveUp(attempt, `${what}: ${(err as Error).message}`);
        await systemClock.sleep(backoffDelay(attempt, { minDelayMs: 50, maxDelayMs: 1000 }));
      }
    }
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
